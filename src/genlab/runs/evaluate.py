"""Sample quality of a run against its held-out test split, next to the noise floor.

Point data: sliced W2, MMD and energy distance, each with the distance a perfect generator
would show at this sample size; on analytic data the exact log-density gap. Images: FD, KID,
precision/recall and class accuracy in the shipped digits network's feature space.
"""

from __future__ import annotations

import torch
from torch import Tensor

from genlab.errors import DataError
from genlab.eval.metrics import log_density_gap, sample_metrics, sliced_wasserstein
from genlab.runs.data import Data

__all__ = ["evaluate", "evaluate_images", "test_labels"]

def evaluate(samples: Tensor, data: Data, *, seed: int = 0) -> dict[str, float]:
    """Distances of `samples` to the held-out test split, next to their floor.

    `sw2_floor` is the sliced W2 between two independent draws of the data of the test
    split's size (disjoint sets of training points vs the test points, averaged over up to 8
    sets); `sw2_ratio` = sliced W2 / floor, so 2 means "twice as far from the test set as
    fresh data is". On analytic data,
    `log_density_gap` = mean log p(samples) - mean log p(test) under the exact density.
    """

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    metrics = sample_metrics(samples, data.test, generator=gen())
    floors = [sliced_wasserstein(ref, data.test, generator=gen())
              for ref in data.floor_references(data.test.shape[0])]  # fmt: skip
    metrics["sw2_floor"] = sum(floors) / len(floors)
    metrics["sw2_ratio"] = metrics["sliced_wasserstein"] / metrics["sw2_floor"]
    if data.gmm is not None:
        metrics["log_density_gap"] = log_density_gap(samples, data.test, data.gmm.log_prob)
    return metrics


def test_labels(data: Data, n: int) -> Tensor:
    """n class labels in the proportions of the test split (its labels, cycled)."""
    if data.test_labels is None:
        raise DataError("the data set has no class labels")
    reps = -(-n // data.test_labels.shape[0])
    return data.test_labels.repeat(reps)[:n]


def _real_like(data: Data, n: int, labels: Tensor | None, generator: torch.Generator) -> Tensor:
    """n real training images (capped at the train size) -- with `labels`, drawn class by
    class in the same proportions, so that the floor of a class-conditional evaluation is not
    penalised for the class mix of a random draw."""
    perm = torch.randperm(data.train.shape[0], generator=generator)  # (N_train,)
    if labels is None or data.train_labels is None:
        return data.train[perm[: min(n, data.train.shape[0])]]
    picks = []
    for k in labels.unique().tolist():
        pool = perm[data.train_labels[perm] == k]  # shuffled train indices of class k
        count = min(int((labels == k).sum()), pool.shape[0])
        picks.append(pool[:count])
    return data.train[torch.cat(picks)]


def evaluate_images(
    samples: Tensor, data: Data, *, labels: Tensor | None = None, seed: int = 0
) -> dict[str, float]:
    """FD, KID, precision/recall (and class accuracy, given the requested `labels`) of image
    `samples` (N, 1, 8, 8) against the test split, in the digits network's feature space
    (`genlab.eval.image_metrics`), each next to its `<metric>_floor`: the same metric for
    N real training images (capped at the train size; with `labels`, in the same class
    proportions) against the test split, i.e. a perfect generator at this sample size.
    The accuracy floor is the network's accuracy on the test split (the ceiling a conditional
    model can reach). `fd_ratio` = fd / fd_floor. Samples are clamped to [-1, 1] first."""
    from genlab.eval.image_metrics import classifier_accuracy, image_metrics

    if data.shape != (1, 8, 8):
        raise DataError(f"image metrics use the shipped digits network and need 8x8 grey "
                        f"images (got {'x'.join(map(str, data.shape))})")  # fmt: skip

    def gen() -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    x = samples.float().clamp(-1, 1)
    metrics = image_metrics(x, data.test, labels=labels, generator=gen())
    floor = image_metrics(_real_like(data, x.shape[0], labels, gen()), data.test, generator=gen())
    for key in ("fd", "kid", "precision", "recall"):
        metrics[f"{key}_floor"] = floor[key]
    if labels is not None and data.test_labels is not None:
        metrics["accuracy_floor"] = classifier_accuracy(data.test, data.test_labels)
    metrics["fd_ratio"] = metrics["fd"] / metrics["fd_floor"]
    return {k: float(v) for k, v in metrics.items()}
