"""DiffusersDenoiser: the canonical denoiser of a diffusers UNet and its scheduler config.

- at every timestep and for each prediction type, D(x_t / sqrt(abar_t), s_t) is the x0 that
  diffusers' own scheduler computes (``step(...).pred_original_sample``);
- the path is the scheduler's float32 alphas_cumprod exactly, for every beta schedule;
- `genlab.log_prob` on a v-prediction UNet whose output is zero, i.e. the exact denoiser of
  N(0, I) data, D = x / (1 + s^2), gives the closed form of its linear PF-ODE;
- guidance on a UNet2DConditionModel, by class labels and by encoder_hidden_states, is the
  linear combination of the conditional and null evaluations, and reproduces diffusers'
  classifier-free guided DDIM loop (guidance on eps, as its pipelines do);
- bad input is one ConfigError naming the key.
"""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DConditionModel, UNet2DModel
from diffusers_models import noise, tiny_unet

import genlab
from genlab.adapters.diffusers import DiffusersDenoiser, scheduler_grid, unet_kwargs
from genlab.density import standard_normal_log_prob
from genlab.diffusion.guidance import ClassifierFreeGuidance
from genlab.errors import ConfigError
from genlab.ode import ODEOptions


def _sigma(sch: DDIMScheduler, t: int) -> float:
    abar = float(sch.alphas_cumprod[t])
    return math.sqrt((1 - abar) / abar)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction", "sample"])
def test_denoiser_is_the_schedulers_x0(unet: UNet2DModel, prediction: str) -> None:
    sch = DDIMScheduler(prediction_type=prediction, clip_sample=False)
    sch.set_timesteps(10)
    d = DiffusersDenoiser(unet, sch)
    x_t = noise()
    with torch.no_grad():
        for t in [999, 900, 500, 37, 0]:
            ref = sch.step(unet(x_t, t).sample, t, x_t).pred_original_sample  # (B, 1, 8, 8)
            s = _sigma(sch, t)
            got = d(x_t * math.sqrt(1 + s * s), torch.full((x_t.shape[0],), s))
            assert float((got - ref).abs().max()) <= 4e-6 * float(ref.abs().max())


@pytest.mark.parametrize(
    "config",
    [{"beta_schedule": "linear"}, {"beta_schedule": "scaled_linear", "beta_start": 0.00085,
      "beta_end": 0.012, "num_train_timesteps": 500}, {"beta_schedule": "squaredcos_cap_v2"},
     {"trained_betas": torch.linspace(1e-3, 0.05, 64).tolist()}],
)  # fmt: skip
def test_path_is_the_schedulers_table(unet: UNet2DModel, config: dict) -> None:
    sch = DDPMScheduler(**config)
    for given in (sch, sch.config):  # a scheduler or its config
        path = DiffusersDenoiser(unet, given).path
        assert torch.equal(path.alphas_cumprod, sch.alphas_cumprod.double())
        assert path.num_steps == len(sch.alphas_cumprod)


def test_zero_terminal_snr_is_finite(unet: UNet2DModel) -> None:
    """abar_{K-1} = 0 is an infinite level: it becomes the continuation of the last ratio."""
    sch = DDIMScheduler(rescale_betas_zero_snr=True)
    abar = DiffusersDenoiser(unet, sch).path.alphas_cumprod
    table = sch.alphas_cumprod.double()
    assert table[-1] == 0 and torch.equal(abar[:-1], table[:-1])
    assert abar[-1] == pytest.approx(float(table[-2] ** 2 / table[-3]), rel=1e-12)


def test_time_input_of_the_unet(unet: UNet2DModel) -> None:
    """nearest: a float32 grid point hits its integer step; round: every t; continuous: none."""
    sch = DDIMScheduler()
    t = torch.tensor([900.0, 899.99999, 450.4, 450.6], dtype=torch.float64)
    expect = {"nearest": [900.0, 900.0, 450.4, 450.6], "round": [900.0, 900.0, 450.0, 451.0],
              "continuous": t.tolist()}  # fmt: skip
    for mode, want in expect.items():
        path = DiffusersDenoiser(unet, sch, time_input=mode).path
        assert path.net_time(t).tolist() == want
    levels = DiffusersDenoiser(unet, sch).path
    s32 = levels.noise_levels[[900, 17]].float().double()  # levels as a float32 sampler sees them
    assert levels.net_time(levels.t_from_noise(s32)).tolist() == [900.0, 17.0]


def test_learned_variance_channels_are_dropped() -> None:
    net = tiny_unet(out_channels=2)
    d = DiffusersDenoiser(net, DDPMScheduler(variance_type="learned_range"))
    x = noise()
    s = torch.full((x.shape[0],), 3.0)
    with torch.no_grad():
        out = d(x, s)
        c = d.path.coefs(d.path.t_from_noise(s.double()))
        eps = net(x * c.alpha.float().view(-1, 1, 1, 1), d.path.net_time(c.t).float()).sample
    assert out.shape == x.shape
    torch.testing.assert_close(out, x - 3.0 * eps[:, :1])  # D = x - s eps in canonical form


def test_log_prob_of_the_exact_gaussian_denoiser() -> None:
    """v-prediction with v = 0 is D = alpha^2 x = x / (1 + s^2), the denoiser of N(0, I)
    data. Its PF-ODE is linear, x(s) = x sqrt((1 + s^2) / (1 + s_min^2)), with divergence
    d s^2 / (1 + s^2) in u = log s, so genlab.log_prob must return exactly
    log N(z; 0, s_max^2 I) + (d / 2) log r, z = x sqrt(r), r = (1 + s_max^2) / (1 + s_min^2),
    up to the solver's tolerance (relative to the log-determinant, about 600 nats here)."""
    net = tiny_unet()
    torch.nn.init.zeros_(net.conv_out.weight)
    torch.nn.init.zeros_(net.conv_out.bias)
    d = DiffusersDenoiser(net, DDPMScheduler(prediction_type="v_prediction"))
    x = noise(shape=(2, 1, 8, 8))
    # dD/dx = I / (1 + s^2): Hutchinson's estimate with one Rademacher probe is exact
    ode = ODEOptions(trace="hutchinson", probes=1, probe="rademacher", rtol=1e-4, atol=1e-4)
    lp = genlab.log_prob(d, x, sigma_min=d.sigma_min, sigma_max=d.sigma_max, ode=ode)
    r = (1 + d.sigma_max**2) / (1 + d.sigma_min**2)
    z = x.double().flatten(1) * math.sqrt(r)  # (2, 64)
    exact = standard_normal_log_prob(z, d.sigma_max) + 32 * math.log(r)
    assert lp.shape == (2,)
    assert float((lp - exact).abs().max()) < 0.05


def test_class_label_guidance(cond_unet: UNet2DConditionModel) -> None:
    sch = DDIMScheduler(clip_sample=False)
    d = DiffusersDenoiser(cond_unet, sch)
    x, s = noise(), torch.full((4,), 2.5)
    emb = torch.randn(4, 3, 12, generator=torch.Generator().manual_seed(3))
    y, null = torch.tensor([0, 3, 5, 9]), 10
    cond = {"encoder_hidden_states": emb, "class_labels": y}
    guided = ClassifierFreeGuidance(d, 3.0, uncond={"encoder_hidden_states": emb[0] * 0,
                                             "class_labels": torch.tensor(null)})  # fmt: skip
    with torch.no_grad():
        d_c = d(x, s, cond)
        d_u = d(x, s, {"encoder_hidden_states": emb * 0, "class_labels": torch.full((4,), null)})
        torch.testing.assert_close(guided(x, s, cond), d_u + 3.0 * (d_c - d_u))


@torch.no_grad()
def test_text_guidance_reproduces_diffusers_guided_ddim(cond_unet: UNet2DConditionModel) -> None:
    """Guidance on eps (diffusers' pipelines) is guidance on x0 (genlab): x0 = x - s eps is
    affine in eps at a fixed state, so the guided DDIM trajectories coincide."""
    sch = DDIMScheduler(clip_sample=False, timestep_spacing="trailing")
    emb = torch.randn(4, 3, 12, generator=torch.Generator().manual_seed(3))
    empty = torch.randn(3, 12, generator=torch.Generator().manual_seed(4))  # "" embedding
    y, w = torch.tensor([1, 1, 2, 2]), 4.0
    x = x_t = noise()
    sch.set_timesteps(8)
    for t in sch.timesteps:
        both = cond_unet(torch.cat([x, x]), t, torch.cat([emb, empty.expand(4, 3, 12)]),
                         class_labels=torch.cat([y, y])).sample  # fmt: skip
        e_c, e_u = both.chunk(2)
        x = sch.step(e_u + w * (e_c - e_u), t, x).prev_sample
    d = DiffusersDenoiser(cond_unet, sch)
    null = {"encoder_hidden_states": empty, "class_labels": y}
    guided = ClassifierFreeGuidance(d, w, uncond=null)
    grid = scheduler_grid(sch, 8)
    s0 = float(grid[0])
    cond = {"encoder_hidden_states": emb, "class_labels": y}
    start = x_t * (1 + s0**2) ** 0.5 / s0
    out = genlab.sample(guided, start, sampler="ddim", nfe=8, schedule=grid, cond=cond)
    assert float((out - x).abs().max()) < 4e-6 * float(x.abs().max())


def test_cond_is_routed_to_the_unet() -> None:
    labels, emb = torch.tensor([1, 2]), torch.zeros(2, 3, 4)
    assert unet_kwargs(None) == {}
    assert unet_kwargs(labels) == {"class_labels": labels}
    assert unet_kwargs(emb) == {"encoder_hidden_states": emb}
    assert unet_kwargs({"added_cond_kwargs": {}}) == {"added_cond_kwargs": {}}
    with pytest.raises(ValueError, match="cond: expected None, a tensor or a dict"):
        unet_kwargs([1, 2])


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [({"prediction_type": "flow_prediction", "beta_schedule": "linear",
       "num_train_timesteps": 10}, "scheduler.prediction_type: 'flow_prediction'"),
     ({"use_flow_sigmas": True}, "scheduler.use_flow_sigmas"),
     ({"prediction_type": "epsilon"}, "not a DDPM-type scheduler config"),
     (42, "expected a diffusers scheduler or its config, got int")],
)  # fmt: skip
def test_bad_scheduler_is_one_config_error(unet: UNet2DModel, scheduler, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DiffusersDenoiser(unet, scheduler)


def test_bad_options_are_config_errors(unet: UNet2DModel) -> None:
    with pytest.raises(ConfigError, match="time_input 'nearst'"):
        DiffusersDenoiser(unet, DDIMScheduler(), time_input="nearst")
    with pytest.raises(ConfigError, match="clip_denoised must be positive"):
        DiffusersDenoiser(unet, DDIMScheduler(), clip_denoised=0.0)
