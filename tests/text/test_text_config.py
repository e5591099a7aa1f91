"""Text-conditioned run configs: `data.captions` and `[text]` validated with one-line errors
naming the key, round-tripped, and built into a network that takes what `text.condition`
says and a model that drops captions to the empty caption group."""

from __future__ import annotations

from typing import Any

import pytest

from genlab.config import RunConfig
from genlab.errors import ConfigError
from genlab.runs.run import build_model
from genlab.text.table import EMPTY_GROUP

BASE: dict[str, Any] = {
    "data": {"name": "digits", "captions": "digits"},
    "model": {"preset": "ddpm"},
    "net": {"name": "unet", "channels": 8, "attention_levels": [1], "head_dim": 8},
    "text": {"condition": "tokens", "dropout": 0.2},
}


def _cfg(**sections: dict[str, Any]) -> RunConfig:
    values = {k: dict(v) for k, v in BASE.items()}
    for name, table in sections.items():
        merged = table if name == "net" else {**values.get(name, {}), **table}
        values[name] = {k: v for k, v in merged.items() if v is not None}
    return RunConfig.from_dict(values)


def test_round_trip_and_defaults() -> None:
    cfg = _cfg()
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    assert RunConfig.from_toml(cfg.to_toml()) == cfg
    values = {k: v for k, v in BASE.items() if k != "text"}
    default = RunConfig.from_dict(values).text  # captions without [text]: the defaults
    assert default is not None and default.encoder == "all-MiniLM-L6-v2"


@pytest.mark.parametrize(
    ("sections", "needle"),
    [
        ({"data": {"captions": None}, "text": {}}, "text: only for text-conditioned runs"),
        ({"data": {"captions": "subtitles"}}, "data.captions: 'subtitles' is not one of"),
        ({"data": {"name": "images", "path": "x"}}, "data.captions: 'digits' captions need"),
        ({"data": {"captions": "metadata"}}, "data.captions: 'metadata' captions need"),
        ({"data": {"labels": True}}, "data.labels: a text-conditioned run"),
        ({"text": {"encoder": "clip"}}, "text.encoder: 'clip' is not one of"),
        ({"text": {"condition": "words"}}, "text.condition"),
        ({"text": {"dropout": 1.0}}, "text.dropout"),
        ({"text": {"max_length": 1}}, "text.max_length"),
        ({"text": {"tokens": 3}}, "text.tokens: unknown key"),
        ({"net": {"name": "mlp"}}, "net.name: text conditioning needs"),
        ({"model": {"num_classes": 10}}, "model.num_classes: a text-conditioned run"),
    ],
)
def test_mistakes_are_one_line_naming_the_key(sections: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        _cfg(**sections)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_a_family_without_text_is_refused() -> None:
    values = {"data": {"name": "digits", "captions": "digits", "dequantize": True},
              "model": {"family": "realnvp"}}  # fmt: skip
    with pytest.raises(ConfigError, match="data.captions: model.family = 'realnvp' is not text"):
        RunConfig.from_dict(values)


DIMS = [("tokens", (384, None)), ("pooled", (None, 384)), ("both", (384, 384))]


@pytest.mark.parametrize(("condition", "dims"), DIMS)
@pytest.mark.parametrize("net", ["unet", "dit"])
def test_the_network_takes_what_condition_says(condition: str, dims: tuple, net: str) -> None:
    net_table = {"name": "dit", "hidden": 32, "depth": 1, "num_heads": 2} if net == "dit" \
        else BASE["net"]  # fmt: skip
    model: Any = build_model(_cfg(text={"condition": condition}, net=net_table), (1, 8, 8))
    assert (model.net.config.context_dim, model.net.config.pooled_dim) == dims
    assert (model.label_dropout, model.null_label) == (0.2, EMPTY_GROUP)
    plain: Any = build_model(_cfg(text={"dropout": 0.0}), (1, 8, 8))
    assert plain.null_label is None  # no caption dropout: no guidance
