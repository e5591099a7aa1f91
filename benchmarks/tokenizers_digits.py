"""The shipped digits tokenizers side by side at equal bits: VQ-VAE, VQGAN and FSQ.

Each config (``configs/digits-vqvae.toml``, ``digits-vqgan.toml``, ``digits-fsq.toml``:
4x4 codes of K = 128, i.e. 112 bits per image) is trained with genlab's trainer exactly as
``genlab train`` would (or loaded when ``--cache`` already holds the finished run), then
measured as ``genlab eval`` reports a tokenizer: test reconstruction MSE, codebook usage
and perplexity over the whole test split, dead codes, the decoder's bits/dim
-ln p(x | z(x)) / (D ln 2), the two-stage bound with the unigram code prior, and the
Frechet distance of the test reconstructions to the test split next to its floor (real
training images against the test split). The question it answers: does the adversarial
loss help at this size, at equal bits?

    PYTHONPATH=src .venv/bin/python benchmarks/tokenizers_digits.py [--configs vqvae,vqgan,fsq]
        [--cache runs/bench-tokenizers] [--set train.steps=1000] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from genlab.config import load_config
from genlab.errors import DataError
from genlab.families.tokenizer import metrics as tokenizer_metrics
from genlab.runs import load_run, make_data, train_run

CONFIGS = Path(__file__).parents[1] / "configs"
COLUMNS = [("recon_mse", "test MSE", ".5f"), ("codebook_usage", "usage", ".1%"),
           ("perplexity", "perplexity", ".1f"), ("dead_codes", "dead", ".0f"),
           ("decoder_bpd", "decoder bits/dim", ".4f"),
           ("unigram_bound_bpd", "bound, unigram prior", ".4f"),
           ("recon_fd", "recon FD", ".3f"), ("recon_fd_floor", "FD floor", ".3f")]  # fmt: skip


def _run(name: str, cache: Path, overrides: list[str]) -> tuple[dict[str, float], float]:
    """Train (or load the finished) run of `configs/digits-<name>.toml`; its metrics."""
    cfg = load_config(CONFIGS / f"digits-{name}.toml", overrides)
    run_dir = cache / name
    start = time.perf_counter()
    try:
        run = load_run(run_dir)
        done = run.config == cfg and run.checkpoint.name.endswith(f"{cfg.train.steps:08d}")
    except DataError:
        done = False
    if not done:
        train_run(cfg.updated(["train.progress=false"]), run_dir, progress=False)
        run = load_run(run_dir)
    seconds = time.perf_counter() - start
    return tokenizer_metrics(run, make_data(cfg.data)), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="vqvae,vqgan,fsq")
    parser.add_argument("--cache", type=Path, default=Path("runs/bench-tokenizers"))
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        help="a config override for every run, e.g. train.steps=1000")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {}
    for name in (c.strip() for c in args.configs.split(",") if c.strip()):
        values, seconds = _run(name, args.cache, args.overrides)
        rows[name] = values
        print(f"{name}: {json.dumps({k: round(v, 5) for k, v in values.items()})} "
              f"({seconds:.0f} s, under load)", flush=True)  # fmt: skip
    print()
    print("| tokenizer | " + " | ".join(title for _, title, _ in COLUMNS) + " |")
    print("|---" * (len(COLUMNS) + 1) + "|")
    for name, values in rows.items():
        cells = [format(values[key], fmt) for key, _, fmt in COLUMNS]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
