"""The time-conditioned MLP: dropout option."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genlab.nets.mlp import MLP


def test_no_dropout_builds_no_dropout_layers() -> None:
    net = MLP(6, hidden=16, depth=3)
    assert not any(isinstance(m, nn.Dropout) for m in net.modules())
    # the state-dict layout of checkpoints saved before the option existed
    assert sorted(k for k in net.state_dict() if k.startswith("body")) == [
        "body.1.bias", "body.1.weight", "body.3.bias", "body.3.weight",
        "body.5.bias", "body.5.weight",
    ]  # fmt: skip


def test_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    net = MLP(6, hidden=32, depth=3, dropout=0.5)
    assert sum(isinstance(m, nn.Dropout) for m in net.modules()) == 3  # after every activation
    x, t = torch.randn(4, 6), torch.rand(4) * 1000
    net.train()
    assert not torch.allclose(net(x, t), net(x, t))
    net.eval()
    torch.testing.assert_close(net(x, t), net(x, t))


def test_dropout_is_checked() -> None:
    with pytest.raises(ValueError, match="dropout"):
        MLP(6, dropout=1.0)
