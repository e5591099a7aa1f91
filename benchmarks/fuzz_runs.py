"""Run directories for the input fuzzer: trained reference runs, copied and damaged
(files deleted, cut short, replaced by garbage, links, FIFOs or directories; config.json
mangled; the latest pointer rewritten; junk checkpoints added), then sampled or evaluated;
and how a case is executed and judged.

A case runs `genlab.cli.main` in-process; the caller isolates it (a forked process in the
benchmark, an address-space limit and an alarm in the tests)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fuzz_configs import BASES, TRAIN, Case, Chooser, mutate_config
from fuzz_files import damage_bytes

REF_TRAIN = {**TRAIN, "val_every": 1, "val_fraction": 0.25, "keep_checkpoints": 2}
REFERENCES: dict[str, dict[str, Any]] = {
    "fm": {**BASES["fm-moons"], "train": REF_TRAIN,
           "sample": {"sampler": "euler", "nfe": 2, "n": 8}},
    "nice": {**BASES["nice"], "train": TRAIN},
    "vae-digits": {"data": {"name": "digits"}, "model": {"family": "vae"},
                   "vae": {"hidden": 8, "latent_dim": 2}, "train": TRAIN},
}  # fmt: skip
POINTERS = [b"../../x", b"/etc/passwd", b"step_99999999", b"\xff\xfe", b"best", b"", b"step_1"]
SHAPES = [[10**9, 10**9], [-1], [0], ["a"], [2, 3], [1, 8, 8], [3, 8, 8], [], None, 10**12,
          [2**40], [1, 2**31, 2**31]]  # fmt: skip


def train_references(root: Path) -> dict[str, Path]:
    """Train the reference runs (a few steps each) under `root`; their directories by name."""
    from genlab.config import RunConfig
    from genlab.runs import train_run

    runs = {}
    for name, values in REFERENCES.items():
        train_run(RunConfig.from_dict(values), root / name, progress=False)
        runs[name] = root / name
    return runs


def _entries(run: Path) -> list[Path]:
    return sorted(run.rglob("*"))


def _damage_config(rng: Chooser, path: Path) -> str:
    if path.is_symlink() or not path.is_file():
        return "config.json already replaced"
    try:
        record = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "config.json already damaged"
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict):
        return "config.json already damaged"
    op = rng.choice(["config", "config", "shape", "dim", "drop", "not-a-dict"])
    if op == "config":
        record["config"], done, _ = mutate_config(rng, record["config"])
        op = "; ".join(done)
    elif op == "shape":
        record["data_shape"] = rng.choice(SHAPES)
        op = f"data_shape={record['data_shape']!r}"
    elif op == "dim":
        record["data_dim"] = rng.choice([10**12, -2, "x", None])
        record.pop("data_shape", None)
    elif op == "drop":
        record.pop(rng.choice(sorted(record)))
    else:
        record = rng.choice([[], "x", 3, None])
    path.write_text(json.dumps(record))
    return f"config.json {op}"


def _damage_checkpoints(rng: Chooser, root: Path, op: str) -> str:
    """Rewrite the `latest` pointer, or add a junk checkpoint directory."""
    if root.is_symlink() or not root.is_dir():
        return "checkpoints already replaced"
    if op == "pointer":
        (root / "latest").unlink(missing_ok=True)  # it may be a link or a FIFO by now
        (root / "latest").write_bytes(rng.choice(POINTERS))
        return "latest pointer"
    junk = root / rng.choice([".tmp-step_00000009", ".best-old", "step_00000009", "step_abc",
                              "best"])  # fmt: skip
    if junk.is_symlink() or junk.is_file():
        junk.unlink()
    shutil.rmtree(junk, ignore_errors=True)
    junk.mkdir()
    (junk / "model.safetensors").write_bytes(rng.randbytes(rng.randint(0, 64)))
    return f"junk {junk.name}"


def _damage_entry(rng: Chooser, run: Path, target: Path, op: str, outside: Path) -> str:
    """Delete, damage, link, swap or replace by a FIFO one file or directory of a run."""
    rel = target.relative_to(run)
    if target.is_symlink() or not (target.is_file() or target.is_dir()):
        return f"{rel} already replaced"  # never read a link or a FIFO
    if target.is_dir():
        shutil.rmtree(target)
        if op == "link":
            target.symlink_to(outside)
        elif op == "swap":
            target.write_bytes(b"x")
        return f"{op} dir {rel}"
    if op == "bytes":
        data, how = damage_bytes(rng, target.read_bytes())
        target.write_bytes(data)
        return f"{how} {rel}"
    target.unlink()
    if op == "link":
        target.symlink_to(rng.choice([outside, Path("/dev/zero"), run / "config.json"]))
    elif op == "swap":
        target.mkdir()
    elif op == "fifo":
        os.mkfifo(target)
    return f"{op} {rel}"


def damage_run(rng: Chooser, run: Path, outside: Path) -> str:
    """Damage a copied run directory in one random way; returns what was done."""
    target = rng.choice(_entries(run))
    op = rng.choice(["delete", "bytes", "bytes", "config", "pointer", "link", "swap", "junk",
                     "fifo", "nothing"])  # fmt: skip
    if op == "config":
        return _damage_config(rng, run / "config.json")
    if op in ("pointer", "junk"):
        return _damage_checkpoints(rng, run / "checkpoints", op)
    if op == "nothing":
        return "intact"
    return _damage_entry(rng, run, target, op, outside)


def run_case(rng: Chooser) -> Case:
    """`genlab sample` or `genlab eval` on a damaged copy of a reference run."""
    name = rng.choice(sorted(REFERENCES))
    command = rng.choice(["sample", "eval"])
    argv = [command, "{dir}/run"]
    argv += ["--out", "{dir}/s.npy", "-n", "8"] if command == "sample" else ["-n", "16"]
    if rng.randint(0, 3) == 0:
        argv += ["--checkpoint", rng.choice(["best", "latest", "1", "step_00000002", "../x",
                                             "step_00000099"])]  # fmt: skip
    seed = rng.randint(0, 2**32)  # the damage is drawn when the case is prepared

    def damage(run: Path) -> str:
        own = random.Random(seed)
        return "; ".join(damage_run(own, run, run.parent / "outside.bin")
                         for _ in range(own.randint(1, 2)))  # fmt: skip

    return Case("run", f"{command} {name} {' '.join(argv[2:])}", argv,
                files={"outside.bin": b"{}"}, run=name, damage=damage)  # fmt: skip


# ----------------------------------------------------------------------------- executing


def tree_digest(root: Path) -> dict[str, str]:
    """What a directory holds, without following links or opening special files."""
    if not root.exists():
        return {}
    digest = {}
    for path in [root, *_entries(root)]:
        rel = str(path.relative_to(root))
        if path.is_symlink():
            digest[rel] = f"link {os.readlink(path)}"
        elif path.is_dir():
            digest[rel] = "dir"
        elif path.is_file():
            digest[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest[rel] = "special"
    return digest


@dataclass
class Result:
    """How a case ended: `outcome` is ok, refused, diverged (documented exits) or a failure
    (traceback, exit status, not one line, changed, timeout, crash)."""

    outcome: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok", "refused", "diverged")


def call_cli(argv: list[str]) -> tuple[int | None, str, str]:
    """Run `genlab` in-process: (exit status or None for an escaped exception, stderr,
    the traceback of an escaped exception)."""
    from genlab.cli import main

    err = io.StringIO()
    status: int | None = 0
    tb = ""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 1
        except BaseException:  # the fuzzer's whole point: record whatever escaped
            status, tb = None, traceback.format_exc()
    return status, err.getvalue(), tb


def prepare(case: Case, work: Path, references: dict[str, Path]) -> None:
    """Write the case's files into `work` and copy (and damage) its reference run."""
    for rel, data in case.files.items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.replace(b"{dir}", str(work).encode()))
    if case.run is not None:
        shutil.copytree(references[case.run], work / "run", symlinks=True)
        assert case.damage is not None
        case.label += f": {case.damage(work / 'run')}"


def classify(status: int | None, stderr: str, tb: str) -> Result:
    """The outcome of one command from its exit status and stderr."""
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("warning: ")]
    if status is None or "Traceback" in stderr:
        return Result("traceback", (tb or stderr).strip().splitlines()[-1][:300])
    if status == 0:
        return Result("ok")
    one = len(lines) == 1
    if status == 2 and one and "error" in lines[0]:
        return Result("refused", lines[0][:300])
    if status == 1 and one and lines[0].startswith("training diverged"):
        return Result("diverged", lines[0][:300])
    return Result("exit status" if one else "not one line", f"{status}: {stderr[-300:]}")


def execute(case: Case, work: Path, references: dict[str, Path]) -> Result:
    """Prepare and run one case in this process; check its run directory did not change."""
    prepare(case, work, references)
    run = work / "run"
    before = tree_digest(run) if case.run is not None else {}
    argv = [a.replace("{dir}", str(work)) for a in case.argv]
    result = classify(*call_cli(argv))
    if case.run is not None:
        after = tree_digest(run)
        if result.outcome == "ok" and case.argv[0] == "eval":
            before.pop("eval.json", None), after.pop("eval.json", None)
        if after != before:
            changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            return Result("changed", f"{result.outcome}; changed: {', '.join(changed)}")
    return result
