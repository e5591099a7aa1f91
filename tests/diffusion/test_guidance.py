"""Guidance against exactly solvable cases: class-conditional Gaussian mixtures whose
conditional and unconditional denoisers and noisy class posterior are known in closed form.

- classifier-free guidance at w = 0 / 1 is exactly the unconditional / conditional denoiser,
  in between the linear combination, and works through samplers with cond tensors;
- classifier guidance at scale 1 with the exact noisy posterior is the exact
  class-conditional denoiser (Bayes: grad log p(x|y) = grad log p(x) + grad log p(y|x));
- a small trained noise-aware classifier steers unconditional samples towards a class.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from genlab.data.gmm import GaussianMixture
from genlab.diffusion.classifier import MixtureBayesClassifier, MLPClassifier, NoiseAwareClassifier
from genlab.diffusion.denoiser import Denoiser
from genlab.diffusion.guidance import ClassifierFreeGuidance, ClassifierGuidance
from genlab.diffusion.objectives import UniformT
from genlab.diffusion.parameterization import EpsParam
from genlab.diffusion.paths import VEPath
from genlab.diffusion.sample import sample
from genlab.nets.mlp import MLP

NULL = 2  # the null label of the two-class set-ups below


class LabelledMixtures:
    """Exact class-conditional denoiser: class y is the mixture ``classes[y]``; the null label
    (or cond=None) means the union p = sum_y pi_y p_y. Counts calls and examples seen."""

    def __init__(self, classes: list[GaussianMixture], prior: Tensor) -> None:
        self.classes, self.prior = classes, prior / prior.sum()
        means = torch.cat([g.means for g in classes])
        stds = torch.cat([g.stds for g in classes])
        weights = torch.cat([p * g.weights for p, g in zip(self.prior, classes, strict=True)])
        self.union = GaussianMixture(means, stds, weights, sigma_min=0.01, sigma_max=20.0)
        self.sigma_min, self.sigma_max = 0.01, 20.0
        self.calls, self.examples = 0, 0

    def __call__(self, x: Tensor, sigma: Tensor, cond: Tensor | None = None) -> Tensor:
        self.calls += 1
        self.examples += x.shape[0]
        out = self.union.denoiser(x, sigma)  # (B, D)
        if cond is None:
            return out
        for y, g in enumerate(self.classes):
            pick = (cond == y)[:, None]  # (B, 1)
            out = torch.where(pick, g.denoiser(x, sigma), out)
        return out


def _two_classes(overlap: bool = False) -> LabelledMixtures:
    """Class 0: two components on the left; class 1: one on the right (2-D, float64)."""
    spread = 1.0 if overlap else 2.0
    std = 0.8 if overlap else 0.4
    class0 = GaussianMixture(
        torch.tensor([[-spread, 1.0], [-spread, -1.0]]), std, torch.tensor([0.3, 0.7])
    )
    class1 = GaussianMixture(torch.tensor([[spread, 0.0]]), std)
    return LabelledMixtures([class0, class1], torch.tensor([0.6, 0.4], dtype=torch.float64))


def _bayes(mix: LabelledMixtures) -> MixtureBayesClassifier:
    return MixtureBayesClassifier(mix.classes, mix.prior)


def _points(n: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(n, 2, generator=g, dtype=torch.float64)
    return x, torch.randint(0, 2, (n,), generator=g)


@pytest.mark.parametrize("sigma", [0.05, 0.5, 2.0, 10.0])
def test_cfg_endpoints_and_linear_combination(sigma: float) -> None:
    mix = _two_classes()
    x, y = _points()
    s = torch.full((x.shape[0],), sigma, dtype=torch.float64)
    d_cond, d_uncond = mix(x, s, y), mix(x, s, None)

    for w, expected in [(1.0, d_cond), (0.0, d_uncond)]:
        mix.calls = mix.examples = 0
        out = ClassifierFreeGuidance(mix, w, NULL)(x, s, y)
        assert torch.equal(out, expected)
        assert (mix.calls, mix.examples) == (1, x.shape[0])  # short-circuited: one plain call

    for w in (-0.5, 0.5, 3.0):
        mix.calls = mix.examples = 0
        cfg = ClassifierFreeGuidance(mix, w, NULL)
        out = cfg(x, sigma, y)  # a scalar sigma is broadcast
        torch.testing.assert_close(out, d_uncond + w * (d_cond - d_uncond), rtol=1e-12, atol=1e-12)
        assert (mix.calls, mix.examples) == (1, 2 * x.shape[0])  # one call on a doubled batch
        assert cfg.evaluations_per_call == 2


def test_cfg_batched_call_matches_separate_calls_on_a_network() -> None:
    """Through a real `Denoiser` (float32 network): the 2B batch gives the two calls' results."""
    torch.manual_seed(0)
    net = MLP(2, hidden=32, depth=2, num_classes=2)
    den = Denoiser(net, VEPath(0.01, 20.0), EpsParam())
    x, y = torch.randn(16, 2), torch.randint(0, 2, (16,))
    s = torch.full((16,), 1.3)
    with torch.no_grad():
        d_c, d_u = den(x, s, y), den(x, s, torch.full_like(y, NULL))
        out = ClassifierFreeGuidance(den, 2.5, NULL)(x, s, y)
    torch.testing.assert_close(out, d_u + 2.5 * (d_c - d_u), rtol=1e-5, atol=1e-5)


def test_wrappers_pass_range_through_and_need_cond() -> None:
    mix = _two_classes()
    x, _ = _points(4)
    for wrapper in (
        ClassifierFreeGuidance(mix, 2.0, NULL),
        ClassifierGuidance(mix, _bayes(mix), 1.0),
    ):
        assert (wrapper.sigma_min, wrapper.sigma_max) == (mix.sigma_min, mix.sigma_max)
        with pytest.raises(ValueError, match="cond"):
            wrapper(x, torch.ones(4, dtype=torch.float64))


def _shifted_gaussian(x: Tensor, sigma: Tensor, cond: Tensor | dict) -> Tensor:
    """Exact denoiser of N(mu, I) data, mu = cond (B, D) or cond["mean"]:
    D = (x + sigma^2 mu) / (1 + sigma^2)."""
    mu = cond["mean"] if isinstance(cond, dict) else cond
    s2 = sigma.view(-1, 1) ** 2
    return (x + s2 * mu) / (1 + s2)


def test_cfg_with_a_null_condition_tensor() -> None:
    """With null condition mu = 0 the guided denoiser of N(mu, I) is exactly the denoiser of
    N(w mu, I), whether the null is one example's condition, a full batch or a dict."""
    x, mu = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    s, w = torch.linspace(0.1, 4.0, 5, dtype=torch.float64), 2.5
    want = _shifted_gaussian(x, s, w * mu)
    for null, cond in [(torch.zeros(3), mu), (torch.zeros(5, 3), mu),
                       ({"mean": torch.zeros(3)}, {"mean": mu})]:  # fmt: skip
        guided = ClassifierFreeGuidance(_shifted_gaussian, w, uncond=null)
        torch.testing.assert_close(guided(x, s, cond), want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="a condition of 2 rows cannot serve a batch of 5"):
        ClassifierFreeGuidance(_shifted_gaussian, w, uncond=torch.zeros(2))(x, s, mu)
    with pytest.raises(ValueError, match="condition keys"):
        ClassifierFreeGuidance(_shifted_gaussian, w, uncond={"m": torch.zeros(3)})(
            x, s, {"mean": mu}
        )
    with pytest.raises(ValueError, match="needs a condition"):
        ClassifierFreeGuidance(_shifted_gaussian, w, uncond=torch.zeros(3))(x, s)


def _posterior_mean(mix: LabelledMixtures, x: Tensor, target: int) -> float:
    """Mean exact posterior probability of ``target`` at a small noise level."""
    return float(_bayes(mix)(x.double(), 1e-3)[:, target].exp().mean())


@pytest.mark.parametrize("name", ["euler", "heun", "dpmpp_2m", "ddpm"])
def test_cfg_through_samplers(name: str) -> None:
    """w = 1 samples equal conditional samples exactly (same noise, same generator);
    w = 3 stays finite and lands in the target class more often than w = 1."""
    mix = _two_classes(overlap=True)
    n = 256
    y = torch.ones(n, dtype=torch.long)
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def run(den: Callable[..., Tensor]) -> Tensor:
        g = torch.Generator().manual_seed(2)
        out = sample(den, noise, sampler=name, nfe=12, cond=y, generator=g)
        assert isinstance(out, Tensor)
        return out

    conditional = run(mix)
    guided_one = run(ClassifierFreeGuidance(mix, 1.0, NULL))
    torch.testing.assert_close(guided_one, conditional, rtol=0, atol=0)
    guided = run(ClassifierFreeGuidance(mix, 3.0, NULL))
    assert guided.shape == noise.shape and bool(torch.isfinite(guided).all())
    assert _posterior_mean(mix, guided, 1) > _posterior_mean(mix, conditional, 1) + 0.05


@pytest.mark.parametrize("sigma", [0.05, 0.3, 1.0, 4.0, 15.0])
def test_classifier_guidance_with_exact_posterior_is_conditional_denoiser(sigma: float) -> None:
    mix = _two_classes(overlap=True)
    x, y = _points(128, seed=3)
    s = torch.full((x.shape[0],), sigma, dtype=torch.float64)
    guided = ClassifierGuidance(mix, _bayes(mix), 1.0)
    with torch.no_grad():  # gradients are enabled inside the wrapper
        out = guided(x, s, y)
    torch.testing.assert_close(out, mix(x, s, y), rtol=1e-8, atol=1e-8)
    assert not out.requires_grad
    # scale 0 is the unconditional denoiser, scale 2 doubles the shift
    torch.testing.assert_close(ClassifierGuidance(mix, _bayes(mix), 0.0)(x, s, y), mix(x, s))
    two = ClassifierGuidance(mix, _bayes(mix), 2.0)(x, s, y)
    torch.testing.assert_close(
        two - mix(x, s), 2 * (mix(x, s, y) - mix(x, s)), rtol=1e-8, atol=1e-8
    )


def test_condition_denoiser_passes_labels() -> None:
    """With ``condition_denoiser`` the labels reach the denoiser (guiding a conditional model)."""
    mix = _two_classes(overlap=True)
    x, y = _points(32, seed=4)
    s = torch.full((32,), 0.7, dtype=torch.float64)
    bayes = _bayes(mix)
    out = ClassifierGuidance(mix, bayes, 0.5, condition_denoiser=True)(x, s, y)
    shift = ClassifierGuidance(mix, bayes, 0.5)(x, s, y) - mix(x, s)
    torch.testing.assert_close(out, mix(x, s, y) + shift, rtol=1e-10, atol=1e-10)


def _train_classifier(
    mix: LabelledMixtures, steps: int = 300
) -> tuple[NoiseAwareClassifier, list[float]]:
    torch.manual_seed(0)
    path = VEPath(0.01, 20.0)  # uniform t = log-uniform noise level over the sampling range
    clf = NoiseAwareClassifier(MLPClassifier(2, 2, hidden=64, depth=2), path, UniformT())
    opt = torch.optim.Adam(clf.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        labels = (torch.rand(256, generator=g) < mix.prior[1]).long()  # class 1 w.p. pi_1
        x1, x0 = mix.classes[1].sample(256, generator=g), mix.classes[0].sample(256, generator=g)
        assert isinstance(x1, Tensor) and isinstance(x0, Tensor)
        x = torch.where(labels[:, None] == 1, x1, x0).float()  # (256, 2)
        loss = clf.loss(x, labels, generator=g)
        assert loss.shape == (256,)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
        losses.append(float(loss.detach().mean()))
    return clf, losses


def test_trained_classifier_guides_samples_towards_class() -> None:
    mix = _two_classes()  # well separated: the posterior at sigma ~ 0 is ~0 or ~1
    clf, losses = _train_classifier(mix)
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    assert last < 0.8 * first, (first, last)  # the training loss decreases

    n = 400
    noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(5))
    target = torch.ones(n, dtype=torch.long)

    def union(x: Tensor, s: Tensor, cond: Tensor | None = None) -> Tensor:
        return mix.union.denoiser(x, s)  # the unconditional exact denoiser

    def frac(den: Callable[..., Tensor]) -> float:
        with torch.no_grad():
            x = sample(
                den, noise, sampler="heun", nfe=21, cond=target, sigma_min=0.01, sigma_max=20.0
            )
        assert isinstance(x, Tensor)
        return float((_bayes(mix)(x.double(), 1e-3).argmax(-1) == 1).double().mean())

    unguided = frac(union)
    guided = frac(ClassifierGuidance(union, clf, 3.0))
    assert 0.25 < unguided < 0.55  # about pi_1 = 0.4
    assert guided > 0.9 and guided > unguided + 0.4, (unguided, guided)


def test_noise_aware_classifier_maps_canonical_state_to_path() -> None:
    """forward(x~, sigma) = net(alpha x~, net_time(t(sigma))) and rejects missing labels."""
    torch.manual_seed(0)
    path = VEPath(0.01, 20.0)
    net = MLPClassifier(2, 3, hidden=16, depth=2)
    clf = NoiseAwareClassifier(net, path)
    x, s = torch.randn(5, 2), torch.tensor([0.02, 0.1, 1.0, 5.0, 19.0])
    t = path.t_from_noise(s.double())
    torch.testing.assert_close(clf(x, s), net(x, path.net_time(t).float()))
    assert clf(x, 1.0).shape == (5, 3)
    with pytest.raises(ValueError, match="labels"):
        clf.loss(x)


def test_classifier_guidance_with_network_leaves_parameters_alone() -> None:
    """Inside no_grad, guidance differentiates x only: parameters get no .grad, output is
    detached and has x's shape and dtype."""
    torch.manual_seed(0)
    clf = NoiseAwareClassifier(MLPClassifier(2, 2, hidden=16, depth=2), VEPath(0.01, 20.0))
    mix = _two_classes()
    x, y = torch.randn(8, 2), torch.randint(0, 2, (8,))
    with torch.no_grad():
        out = ClassifierGuidance(lambda x, s, c=None: mix(x, s, c), clf, 2.0)(x, 0.5, y)
    assert out.shape == x.shape and out.dtype == x.dtype and not out.requires_grad
    assert all(p.grad is None for p in clf.parameters())
