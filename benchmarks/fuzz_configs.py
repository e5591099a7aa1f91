"""Mutated TOML configs for the input fuzzer (`fuzz_inputs.py`, `tests/test_fuzz_inputs.py`).

Every random choice goes through a `Chooser` (Python's `random.Random` in the benchmark; a
Hypothesis adapter in the tests), so both draw the same kinds of cases. Sizes are mutated
to absurd values (which genlab must refuse before allocating) or to small ones, never to
values in between: a valid but large run is not a bug, only slow. For the same reason the
number of steps, the training time and the ODE tolerances are capped with `--set` after
mutating (unless the mutation set that key).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from genlab.config import dumps_toml

T = TypeVar("T")


class Chooser(Protocol):
    """The random choices a case generator makes (`random.Random` has exactly these)."""

    def choice(self, options: Sequence[T]) -> T: ...
    def randint(self, a: int, b: int) -> int: ...
    def randbytes(self, n: int) -> bytes: ...


# ----------------------------------------------------------------------------- configs

NET = {"hidden": 8, "depth": 1, "time_dim": 4}
VEC = {"name": "moons", "n_train": 48, "n_test": 8}
TRAIN = {"steps": 2, "batch_size": 8, "warmup_steps": 1, "checkpoint_every": 1,
         "log_every": 1, "progress": False}  # fmt: skip
BASES: dict[str, dict[str, Any]] = {
    "fm-moons": {"data": VEC, "model": {"preset": "flow-matching"}, "net": NET},
    "ddpm-ring": {"data": {**VEC, "name": "gmm-ring"}, "model": {"preset": "ddpm"}, "net": NET},
    "edm-points": {"data": {"name": "points", "path": "POINTS", "n_train": 24, "n_test": 4},
                   "model": {"preset": "edm"}, "net": NET},
    "nice": {"data": VEC, "model": {"family": "nice"}, "flow": {"steps": 2, "hidden": 8}},
    "realnvp": {"data": VEC, "model": {"family": "realnvp"}, "flow": {"steps": 2, "hidden": 8}},
    "glow": {"data": VEC, "model": {"family": "glow"}, "flow": {"steps": 1, "hidden": 8}},
    "vae": {"data": VEC, "model": {"family": "vae"}, "vae": {"hidden": 8, "latent_dim": 2}},
    "cat-vae": {"data": VEC, "model": {"family": "categorical-vae"},
                "categorical-vae": {"hidden": 8, "n_latents": 2, "n_classes": 3}},
    "cnf": {"data": VEC, "model": {"family": "cnf"}, "net": NET,
            "cnf": {"rtol": 0.01, "atol": 0.01}},
    "unet-digits": {"data": {"name": "digits", "labels": True},
                    "model": {"preset": "ddim", "num_classes": 10, "label_dropout": 0.1},
                    "net": {"name": "unet", "channels": 4, "channel_mult": [1],
                            "attention_levels": []}},
    "dit-images": {"data": {"name": "images", "path": "IMAGES", "n_test": 4},
                   "model": {"preset": "edm"},
                   "net": {"name": "dit", "hidden": 8, "depth": 1, "num_heads": 2}},
    "nice-digits": {"data": {"name": "digits", "dequantize": True}, "model": {"family": "nice"},
                    "flow": {"steps": 1, "hidden": 8}},
}  # fmt: skip
# caps applied after mutating (a key the mutation touched keeps its mutated value; the
# training caps always, since a damaged TOML text falls back to the default 2000 steps)
CAPS = {"train.steps": 2, "train.max_seconds": 10, "train.progress": False,
        "cnf.rtol": 0.01, "cnf.atol": 0.01}  # fmt: skip
# sizes: mutated to absurd values, which must be refused before anything is allocated
SIZE_KEYS = {"data.n_train", "data.n_test", "data.size", "train.batch_size", "net.hidden",
             "net.depth", "net.time_dim", "net.channels", "net.num_res_blocks", "flow.steps",
             "flow.hidden", "flow.layers", "flow.levels", "vae.hidden", "vae.depth",
             "vae.latent_dim", "model.num_classes", "categorical-vae.hidden",
             "categorical-vae.n_latents", "categorical-vae.n_classes", "net.head_dim",
             "net.num_heads", "net.patch_size", "net.input_size", "net.mlp_ratio"}  # fmt: skip
# the time a run takes: never huge (capped), only invalid or small
TIME_KEYS = {"train.steps", "train.grad_accum", "train.max_seconds", "cnf.rtol", "cnf.atol",
             "categorical-vae.n_samples", "likelihood.val_n", "likelihood.draws"}  # fmt: skip
ABSURD = [10**12, 10**15, 2**62, 1e300]
WRONG = ["", "abc", "digits", [1, 2], [], {"a": 1}, True, False, 1.5, -1, 0, -(10**9),
         float("nan"), float("inf"), -float("inf"), 0.999999, 1, 2, 3, "1", None, [0], [5],
         [1, 10**6], {"num_steps": 10**12}, {"num_steps": 1}, {"num_steps": 0},
         {"sigma_max": 1e300}, {"schedule": "x"}, {"gamma": -1}]  # fmt: skip
NEW_KEYS = ["stepz", "Steps", "", "a.b", "ü", "path_options", "name", "family", "1"]
SECTIONS = ["data", "model", "net", "train", "sample", "likelihood", "flow", "vae", "cnf",
            "categorical-vae", "trainer", "", "Model", "x"]  # fmt: skip


def known_keys(section: str) -> list[str]:
    """Every key genlab's tables accept in `section` (plus a few it does not)."""
    from genlab import families
    from genlab.config import DataConfig, LikelihoodSection, ModelConfig, SampleSection
    from genlab.config.errors import section_keys
    from genlab.nets.table import NETS
    from genlab.train import TrainConfig

    common = {"data": DataConfig, "train": TrainConfig, "sample": SampleSection,
              "likelihood": LikelihoodSection, "model": ModelConfig}  # fmt: skip
    keys = set(section_keys(common[section])) if section in common else set()
    for family in families.all_families():
        if family.table == section:
            keys |= set(section_keys(family.options))
    if section == "net":
        keys = {k for spec in NETS.values() for k in section_keys(spec.options)} | {"name"}
    return sorted(keys) or ["x"]


def _value(rng: Chooser, key: str) -> Any:
    """A value for `key`: absurd half the time for a size, else wrong or out of range (and
    absurd now and then, except for the time a run takes)."""
    if key in SIZE_KEYS and rng.randint(0, 1):
        return rng.choice(ABSURD)
    absurd = key not in TIME_KEYS and rng.randint(0, 3) == 0
    return copy.deepcopy(rng.choice(WRONG + (ABSURD if absurd else [])))


def mutate_config(
    rng: Chooser, values: dict[str, Any]
) -> tuple[dict[str, Any], list[str], set[str]]:
    """1-3 mutations of a config dict: wrong or absurd values, unknown keys and sections,
    deleted keys, sections replaced by values. Returns the dict, what was done and the
    dotted keys it touched."""
    values, done, touched = copy.deepcopy(values), [], set()
    for _ in range(rng.randint(1, 3)):
        op = rng.choice(["value", "value", "value", "new-key", "new-section", "delete", "scalar"])
        section = rng.choice(sorted(values) * 4 + SECTIONS[:10])  # mostly its own sections
        if op in ("new-section", "scalar"):
            name = rng.choice(SECTIONS) if op == "new-section" else section
            values[name] = rng.choice([{}, {"x": 1}, 3, "s", [1], True])
            done.append(f"[{name}] = {values[name]!r}")
            continue
        table = values.setdefault(section, {})
        if not isinstance(table, dict):
            table = values[section] = {}
        key = rng.choice(known_keys(section) + sorted(table) if op == "value" else
                         NEW_KEYS if op == "new-key" else sorted(table) or ["x"])  # fmt: skip
        if op == "delete":  # the key's default; a cap still applies
            table.pop(key, None)
            done.append(f"{section}.{key} deleted")
        else:
            table[key] = _value(rng, f"{section}.{key}")
            done.append(f"{section}.{key}={table[key]!r}")
            if table[key] is not None:  # None is not written: the key's default
                touched.add(f"{section}.{key}")
    return values, done, touched


def render_toml(rng: Chooser, values: dict[str, Any]) -> tuple[bytes, str]:
    """The TOML text of `values`, sometimes damaged (cut short, bytes inserted, invalid
    UTF-8, a duplicated line)."""
    values = {k: ({kk: vv for kk, vv in v.items() if vv is not None} if isinstance(v, dict)
                  else v) for k, v in values.items() if v is not None}  # fmt: skip
    try:
        text = dumps_toml(values).encode()
    except Exception as err:  # a value TOML cannot write: a case of its own
        text = f"# {type(err).__name__}\n".encode()
    damage = rng.choice(["none"] * 15 + ["cut", "insert", "utf8", "duplicate", "empty"])
    if damage == "cut":
        text = text[: rng.randint(0, len(text))]
    elif damage == "insert":
        at = rng.randint(0, len(text))
        text = text[:at] + rng.randbytes(rng.randint(1, 8)) + text[at:]
    elif damage == "utf8":
        text = b"\xff\xfe" + text
    elif damage == "duplicate" and text:
        lines = text.splitlines(keepends=True)
        text = b"".join(lines + lines[: rng.randint(1, len(lines))])
    elif damage == "empty":
        text = b""
    return text, damage


def caps_for(values: dict[str, Any], touched: set[str]) -> list[str]:
    """`--set` caps of the keys no mutation touched, in sections the config has."""
    return [a for key, value in CAPS.items() if key not in touched
            and (key.startswith("train.") or isinstance(values.get(key.split(".")[0]), dict))
            for a in ("--set", f"{key}={json.dumps(value)}")]  # fmt: skip


@dataclass
class Case:
    """One generated input: the command line (`{dir}` is the case's own directory), the files
    to write there first, and for run cases the reference run to copy and how to damage it."""

    kind: str
    label: str
    argv: list[str]
    files: dict[str, bytes] = field(default_factory=dict)
    run: str | None = None  # name of the reference run copied to {dir}/run
    damage: Callable[[Path], str] | None = None  # damages the copy, says how
