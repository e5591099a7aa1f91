"""Training of `diffusers_digits.py`'s model by diffusers' own DDPM recipe.

The recipe of diffusers' unconditional-image training example, on a class-conditional
``UNet2DModel`` of the 8x8 digits: ``DDPMScheduler(num_train_timesteps=1000)`` (linear betas
1e-4..0.02, eps-prediction), timesteps uniform in 0..999, ``scheduler.add_noise``, MSE
between the UNet's output and the noise, AdamW (betas 0.95 / 0.999, weight decay 1e-6),
cosine learning rate with linear warm-up, gradient clipping at 1, and diffusers'
``EMAModel`` with its warm-up (decay 1 - (1 + step)^(-3/4), at most 0.9999). The EMA
weights are saved with ``save_pretrained`` (safetensors) next to the scheduler config.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler, UNet2DModel
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from torch import Tensor
from torch.nn import functional as F

from genlab.runs import Data

BATCH, LR, WARMUP = 128, 2e-3, 100
NOTE = "training.txt"  # how the saved model was trained


def build_unet(quick: bool) -> UNet2DModel:
    """8x8, one channel, ten classes: two levels of (16, 32) or, quick, (8, 16) channels."""
    width = (8, 16) if quick else (16, 32)
    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=width,
        layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4, num_class_embeds=10,
    )  # fmt: skip


def _batch(data: Data, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    idx = torch.randint(0, data.train.shape[0], (BATCH,), generator=gen)
    assert data.train_labels is not None
    return data.train[idx], data.train_labels[idx]  # (B, 1, 8, 8), (B,)


def _fit(unet: UNet2DModel, scheduler: DDPMScheduler, data: Data, steps: int) -> None:
    """The training loop; leaves the EMA weights in ``unet``."""
    opt = torch.optim.AdamW(unet.parameters(), lr=LR, betas=(0.95, 0.999), weight_decay=1e-6)
    lr = get_scheduler("cosine", opt, num_warmup_steps=min(WARMUP, steps // 10),
                       num_training_steps=steps)  # fmt: skip
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, power=0.75)
    gen = torch.Generator().manual_seed(0)
    k = scheduler.config.num_train_timesteps
    unet.train()
    for step in range(steps):
        x0, y = _batch(data, gen)
        eps = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, k, (BATCH,), generator=gen)
        loss = F.mse_loss(unet(scheduler.add_noise(x0, eps, t), t, class_labels=y).sample, eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr.step()
        ema.step(unet.parameters())
        if step % 250 == 0 or step == steps - 1:
            print(f"  step {step}: loss {loss.item():.4f}", flush=True)
    ema.copy_to(unet.parameters())
    unet.eval()


def train_unet(
    model_dir: Path, data: Data, steps: int, quick: bool
) -> tuple[UNet2DModel, Any, str]:
    """The trained UNet (reused from ``model_dir`` when saved there), its scheduler config
    and a line describing both."""
    if (model_dir / "config.json").exists():
        unet = UNet2DModel.from_pretrained(model_dir, low_cpu_mem_usage=False).eval()
        scheduler = DDPMScheduler.from_pretrained(model_dir)
        print(f"reusing {model_dir} (delete it to retrain)", flush=True)
        note = (model_dir / NOTE).read_text().strip()
    else:
        scheduler = DDPMScheduler(num_train_timesteps=1000)
        torch.manual_seed(0)
        unet = build_unet(quick)
        start = time.perf_counter()
        _fit(unet, scheduler, data, steps)
        note = f"{steps} steps, trained in {time.perf_counter() - start:.0f} s under load"
        print(note, flush=True)
        unet.save_pretrained(model_dir)  # safetensors
        scheduler.save_pretrained(model_dir)
        (model_dir / NOTE).write_text(note + "\n")
    params = sum(p.numel() for p in unet.parameters())
    cfg = unet.config
    line = (f"Model: diffusers UNet2DModel, block_out_channels {tuple(cfg.block_out_channels)}, "
            f"{params} parameters, 10 classes; DDPMScheduler (1000 linear betas, epsilon); "
            f"batch {BATCH}, lr {LR}, EMA with warm-up ({note}). Data: digits train split "
            f"(1437 images, [-1, 1]); metrics against the 360 test images.")  # fmt: skip
    return unet, scheduler.config, line
