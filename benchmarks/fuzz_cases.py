"""The cases of the input fuzzer, one entry point: `make_case(rng, kind)` draws a mutated
config (`fuzz_configs`), a data file (`fuzz_files`) or a damaged run directory
(`fuzz_runs`); `execute` runs one in-process and judges how it ended."""

from __future__ import annotations

import copy

from fuzz_configs import BASES, TRAIN, Case, Chooser, caps_for, mutate_config, render_toml
from fuzz_files import data_case, images_arrays, npy_bytes, points_array
from fuzz_runs import Result, execute, run_case, train_references

__all__ = ["Case", "Chooser", "Result", "execute", "make_case", "train_references"]


def config_case(rng: Chooser) -> Case:
    """A mutated config of a random base, trained with caps into a fresh run directory."""
    name = rng.choice(sorted(BASES))
    values = {**copy.deepcopy(BASES[name]), "train": dict(TRAIN)}
    files = {}
    if values["data"].get("path") == "POINTS":
        values["data"]["path"], files["p.npy"] = "{dir}/p.npy", npy_bytes(points_array(rng))
    if values["data"].get("path") == "IMAGES":
        values["data"]["path"], files["i.npy"] = "{dir}/i.npy", npy_bytes(images_arrays(rng)[0])
    values, done, touched = mutate_config(rng, values)
    files["c.toml"], damage = render_toml(rng, values)
    caps = caps_for(values, touched)
    label = f"config {name}: {'; '.join(done)}" + ("" if damage == "none" else f"; toml {damage}")
    return Case("config", label, ["train", "{dir}/c.toml", "--out", "{dir}/run", *caps],
                files=files)  # fmt: skip


def make_case(rng: Chooser, kind: str | None = None) -> Case:
    """A case of `kind` (config, data, run; random if None)."""
    kind = kind or rng.choice(["config", "config", "data", "run"])
    return {"config": config_case, "data": data_case, "run": run_case}[kind](rng)
