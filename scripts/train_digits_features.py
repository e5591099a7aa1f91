"""Train the shipped digits feature network (:class:`genlab.eval.features.DigitsFeatureNet`).

Trains deterministically (seeded, one CPU thread, deterministic algorithms) on the TRAIN
split of :func:`genlab.data.digits.digits_split` only (1437 images; the 360 test images are
used once, at the end, to report accuracy -- never for model selection). A little
augmentation (random shifts of up to one pixel, Gaussian pixel noise, random contrast) makes
the features less brittle on generated images, which are continuous-valued and imperfect.

Writes ``src/genlab/assets/digits_features.safetensors`` and ``digits_features.json``
(architecture, split, test accuracy, sha256 of the settings below -- independent of the
commit, so an unchanged recipe keeps its hash).

Usage:  PYTHONPATH=src .venv/bin/python scripts/train_digits_features.py [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor

from genlab.data.digits import DIGITS_N_TRAIN, digits_split
from genlab.eval.features import DigitsFeatureNet, digits_to_unit


@dataclass(frozen=True)
class Settings:
    seed: int = 0
    split_seed: int = 0
    epochs: int = 80
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    dropout: float = 0.3
    max_shift: int = 1  # pixels, each axis
    noise_std: float = 0.15  # in [-1, 1] units, scaled by a uniform factor per image
    contrast: float = 0.2  # pixel contrast factor drawn from [1 - c, 1]


def settings_hash(settings: Settings) -> str:
    text = json.dumps(asdict(settings), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def augment(x: Tensor, s: Settings, g: torch.Generator) -> Tensor:
    """x (B, 1, 8, 8) in [-1, 1] -> shifted (background -1 filled in), contrast-jittered,
    noisy copy."""
    b = x.shape[0]
    m = s.max_shift
    padded = torch.nn.functional.pad(x, (m, m, m, m), value=-1.0)  # (B, 1, 8+2m, 8+2m)
    dy = torch.randint(0, 2 * m + 1, (b,), generator=g)
    dx = torch.randint(0, 2 * m + 1, (b,), generator=g)
    out = torch.stack([padded[i, :, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8] for i in range(b)])
    c = 1.0 - s.contrast * torch.rand(b, 1, 1, 1, generator=g)  # (B, 1, 1, 1)
    out = (out + 1.0) * c - 1.0
    scale = s.noise_std * torch.rand(b, 1, 1, 1, generator=g)  # (B, 1, 1, 1)
    return out + scale * torch.randn(out.shape, generator=g)


@torch.no_grad()
def accuracy(net: DigitsFeatureNet, x: Tensor, y: Tensor) -> float:
    net.eval()
    return (net.logits(x).argmax(1) == y).double().mean().item()


def train(s: Settings) -> tuple[DigitsFeatureNet, float, float]:
    torch.manual_seed(s.seed)
    g = torch.Generator().manual_seed(s.seed)
    split = digits_split(seed=s.split_seed, n_train=DIGITS_N_TRAIN)
    x_tr, y_tr = digits_to_unit(split.train_x), split.train_y  # (1437, 1, 8, 8), (1437,)
    net = DigitsFeatureNet(dropout=s.dropout)
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    steps_per_epoch = math.ceil(x_tr.shape[0] / s.batch_size)
    total = s.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, total) / total))
    )
    for epoch in range(s.epochs):
        net.train()
        perm = torch.randperm(x_tr.shape[0], generator=g)
        for i in range(steps_per_epoch):
            idx = perm[i * s.batch_size : (i + 1) * s.batch_size]
            xb = augment(x_tr[idx], s, g)
            loss = torch.nn.functional.cross_entropy(net.logits(xb), y_tr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 10 == 0:
            print(
                f"epoch {epoch + 1}: loss {loss.item():.4f}, "
                f"train acc {accuracy(net, x_tr, y_tr):.4f}",
                flush=True,
            )
    train_acc = accuracy(net, x_tr, y_tr)
    test_acc = accuracy(net, digits_to_unit(split.test_x), split.test_y)
    return net, train_acc, test_acc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("src/genlab/assets"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    s = Settings()
    net, train_acc, test_acc = train(s)
    print(f"train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f}")
    args.out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().float() for k, v in net.state_dict().items()}
    weights = args.out / "digits_features.safetensors"
    save_file(state, str(weights))
    info = {
        "architecture": (
            "DigitsFeatureNet: conv3x3(1->32) ReLU, conv3x3(32->64) ReLU, maxpool2, avgpool2, "
            "linear(256->128) ReLU [features], dropout, linear(128->10) [logits]"
        ),
        "input": "(B, 1, 8, 8) float in [-1, 1]; digits 0..16 map by x / 16 * 2 - 1",
        "feature_dim": 128,
        "num_parameters": sum(v.numel() for v in state.values()),
        "file_bytes": weights.stat().st_size,
        "training_data": (
            f"genlab.data.digits.digits_split(seed={s.split_seed}): train split only, "
            f"{DIGITS_N_TRAIN} images (default_rng({s.split_seed}).permutation(1797)[:1437])"
        ),
        "train_accuracy": round(train_acc, 6),
        "test_accuracy": round(test_acc, 6),
        "test_split": "the last 360 indices of the permutation",
        "settings": asdict(s),
        "settings_sha256": settings_hash(s),
        "torch_version": torch.__version__,
    }
    (args.out / "digits_features.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {weights} ({info['file_bytes']} bytes) and digits_features.json")


if __name__ == "__main__":
    main()
