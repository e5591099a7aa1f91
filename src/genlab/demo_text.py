"""The text-to-image part of `genlab demo`: a small latent diffusion model of the captioned
8x8 digits, prompted with phrasings it never saw.

Two ordinary runs under `out/text/`: a KL autoencoder (`autoencoder/`, 4x4x4 latents,
`genlab.families.autoencoder`) and a text-conditioned flow-matching model (Lipman et al.
2023) over its scaled latents
(`latent/`, `genlab.families.latent_diffusion`; captions encoded once by the frozen
all-MiniLM-L6-v2, caption dropout for classifier-free guidance). Latents are cheap to train
on (a quarter of the positions of the pixels), which keeps the section within the demo's
budget. Then `genlab.runs.generate` draws a grid, a row per held-out prompt ("a sketch of
a 7", ...) with guidance, and the model is evaluated on the test split's held-out prompts:
FD and the digits network's accuracy on the prompted digit, next to their floors.

The job runs in the demo's worker pool like the other models (one torch thread). It needs
the text extra (`pip install 'genlab[text]'`); without it the section says so and the rest
of the demo runs.
"""

from __future__ import annotations

import html
import importlib.util
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.config import RunConfig
from genlab.progress import torch_threads

__all__ = ["TEXT_FULL", "TEXT_QUICK", "TextJob", "TextPlan", "run_text_job", "text_section"]

TRAIN_SHARE = 0.85  # the part of the job's progress bar that is training


@dataclass(frozen=True)
class TextPlan:
    """What the text-to-image section trains and draws."""

    ae_steps: int
    ae_channels: int
    preset: str
    steps: int
    channels: int
    batch_size: int
    per_prompt: int  # images per prompt in the grid
    guidance: float
    sampler: tuple[str, int]  # (sampler, nfe)
    n_eval: int  # samples for FD and accuracy (the test split has 360 images)


TEXT_FULL = TextPlan(ae_steps=300, ae_channels=16, preset="flow-matching", steps=400,
                     channels=16, batch_size=64, per_prompt=8, guidance=3.0,
                     sampler=("dpmpp_2m", 20), n_eval=360)  # fmt: skip
TEXT_QUICK = TextPlan(ae_steps=20, ae_channels=8, preset="flow-matching", steps=10, channels=8,
                      batch_size=32, per_prompt=2, guidance=3.0, sampler=("ddim", 4),
                      n_eval=60)  # fmt: skip


@dataclass(frozen=True)
class TextJob:
    plan: TextPlan
    run_dir: str
    name: str = "text"


def _train(steps: int, batch_size: int) -> dict[str, Any]:
    return {"steps": steps, "batch_size": batch_size, "lr": 2e-3,
            "warmup_steps": min(100, steps), "ema_decay": 0.995 if steps >= 200 else 0.9,
            "checkpoint_every": steps, "log_every": max(1, steps // 30),
            "progress": False}  # fmt: skip


def autoencoder_config(plan: TextPlan) -> RunConfig:
    """The section's KL autoencoder: 8x8 digits -> 4x4x4 latents."""
    return RunConfig.from_dict({
        "data": {"name": "digits"},
        "model": {"family": "kl-autoencoder"},
        "kl-autoencoder": {"channels": plan.ae_channels, "latent_dim": 4, "kl_weight": 1e-6},
        "train": {**_train(plan.ae_steps, 128), "ema_decay": 0.0},
    })  # fmt: skip


def latent_config(plan: TextPlan, autoencoder: Path) -> RunConfig:
    """The section's text-conditioned latent diffusion model over the autoencoder run (flow
    matching: on these latents it reached a lower FD than DDPM at the same budget)."""
    return RunConfig.from_dict({
        "data": {"name": "digits", "captions": "digits"},
        "model": {"family": "latent-diffusion"},
        "latent-diffusion": {"autoencoder": str(autoencoder), "preset": plan.preset},
        "text": {"dropout": 0.15, "max_length": 32},
        "net": {"name": "unet", "channels": plan.channels, "channel_mult": [1, 2],
                "num_res_blocks": 1, "attention_levels": [0, 1], "head_dim": plan.channels},
        "train": _train(plan.steps, plan.batch_size),
        "sample": {"sampler": plan.sampler[0], "nfe": plan.sampler[1], "n": plan.n_eval},
    })  # fmt: skip


def text_available() -> bool:
    """Whether the text extra (transformers) is installed."""
    return importlib.util.find_spec("transformers") is not None


def run_text_job(job: TextJob, reporter: Any = None) -> dict[str, Any]:
    """Train both runs, draw the prompt grid, evaluate on held-out prompts (one thread)."""
    if not text_available():
        return {"name": job.name, "skipped": "the text extra is not installed "
                "(pip install 'genlab[text]')", "cpu_seconds": 0.0}  # fmt: skip
    with torch_threads(1):
        return _run(job, reporter)


def _run(job: TextJob, reporter: Any) -> dict[str, Any]:
    from genlab import viz
    from genlab.imagegrid import save_image_grid
    from genlab.runs import (
        METRICS_FILE,
        SampleSpec,
        draw,
        eval_condition,
        evaluate_images,
        generate,
        load_run,
        make_data,
        train_run,
    )
    from genlab.text.captions import digit_prompts

    plan, root = job.plan, Path(job.run_dir)
    shutil.rmtree(root, ignore_errors=True)  # the demo owns out/text
    start, cpu_start = time.perf_counter(), time.process_time()
    ae_share = TRAIN_SHARE * plan.ae_steps / (plan.ae_steps + plan.steps)
    ae_log = None if reporter is None else reporter.steps(plan.ae_steps, ae_share)
    train_run(autoencoder_config(plan), root / "autoencoder", on_log=ae_log)
    ae_seconds = time.perf_counter() - start
    log = None if reporter is None else reporter.steps(plan.steps, TRAIN_SHARE - ae_share,
                                                       ae_share)  # fmt: skip
    result, _ = train_run(latent_config(plan, root / "autoencoder"), root / "latent", on_log=log)
    train_seconds = time.perf_counter() - start
    if reporter is not None:
        reporter.report("sampling", TRAIN_SHARE)
    run = load_run(root / "latent")
    spec = SampleSpec(*plan.sampler, guidance=plan.guidance)
    prompts = digit_prompts(range(10))  # held-out phrasings, one per digit
    t = time.perf_counter()
    x = generate(run, prompts, plan.per_prompt, spec, seed=0)
    grid_seconds = time.perf_counter() - t
    save_image_grid(x.clamp(-1, 1), root / "prompts.png", nrow=plan.per_prompt, scale=4)
    data = make_data(run.config.data)
    cond, uncond, labels = eval_condition(run, data, plan.n_eval, plan.guidance)
    samples = draw(run, plan.n_eval, spec, seed=0, cond=cond, uncond=uncond)
    metrics = evaluate_images(samples, data, labels=labels, seed=0)
    viz.plot_loss_curve(root / "latent" / METRICS_FILE, root / "loss.png")
    return {"name": job.name, "steps": result.steps, "ae_steps": plan.ae_steps,
            "ae_seconds": ae_seconds, "train_seconds": train_seconds,
            "grid_seconds": grid_seconds, "total_seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start,
            "params": sum(p.numel() for p in run.model.diffusion.parameters()),
            "preset": plan.preset,
            "scale_factor": float(run.model.scale_factor), "prompts": prompts,
            "guidance": plan.guidance, "sampler": plan.sampler[0], "nfe": plan.sampler[1],
            "metrics": {k: float(v) for k, v in metrics.items()},
            "dir": root.name}  # fmt: skip


def text_section(text: dict[str, Any]) -> str:
    """The text-to-image part of the HTML report."""
    if "skipped" in text:
        return f"<h2>Text to image</h2>\n<p>Skipped: {html.escape(text['skipped'])}.</p>"
    d, m = text["dir"], text["metrics"]
    rows = "".join(f"<tr><td class='l'>{html.escape(key)}</td><td>{m[key]:.3g}</td>"
                   f"<td>{m[key + '_floor']:.3g}</td></tr>"
                   for key in ("fd", "accuracy") if key in m)  # fmt: skip
    prompts = ", ".join(f"&ldquo;{html.escape(p)}&rdquo;" for p in text["prompts"])
    return (
        "<h2>Text to image (latent diffusion)</h2>\n"
        f"<p>A KL autoencoder ({text['ae_steps']} steps, {text['ae_seconds']:.0f} s) maps the "
        "8&times;8 digits to 4&times;4&times;4 latents, scaled by "
        f"{text['scale_factor']:.3g} to unit variance on the training split; a text-"
        f"conditioned UNet ({html.escape(text['preset'])}, {text['params']:,} parameters) "
        "over them trained "
        f"{text['steps']} steps on captions (total training {text['train_seconds']:.0f} s). "
        f"Rows: the held-out prompts {prompts}; {text['sampler']} at NFE {text['nfe']}, "
        f"guidance w = {text['guidance']:g} ({text['grid_seconds']:.1f} s for the grid). "
        "FD and the digits network's accuracy on the prompted digit, for the test split's "
        "held-out prompts:</p>\n"
        f"<table><tr><th class='l'>metric</th><th>value</th><th>floor</th></tr>{rows}</table>\n"
        f'<figure><img src="{d}/prompts.png" alt="a row per prompt">'
        "<figcaption>a row per prompt</figcaption></figure>"
        f'<figure><img src="{d}/loss.png" alt="training loss">'
        "<figcaption>training loss (latent model)</figcaption></figure>"
    )
