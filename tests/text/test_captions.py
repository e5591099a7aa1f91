"""Digit captions (training and held-out phrasings disjoint, each naming its digit and no
other), caption sets, and caption tables against brute-force padding."""

from __future__ import annotations

import re

import pytest
import torch
from text_helpers import fake_embeddings

from genlab.text.captions import (
    DIGIT_WORDS,
    HELDOUT_TEMPLATES,
    TRAIN_TEMPLATES,
    CaptionSet,
    digit_caption_set,
    digit_captions,
    digit_prompts,
)
from genlab.text.table import Captions, CaptionTable

NUMBER = re.compile(r"\b(" + "|".join(DIGIT_WORDS) + r"|\d)\b")


def test_phrasings_split_disjointly_and_name_their_digit() -> None:
    all_train, all_heldout = set(), set()
    for d in range(10):
        train, heldout = digit_captions(d, "train"), digit_captions(d, "heldout")
        assert len(train) == 2 * len(TRAIN_TEMPLATES) == len(set(train))  # word and numeral
        assert len(heldout) == 2 * len(HELDOUT_TEMPLATES) == len(set(heldout))
        assert not set(train) & set(heldout)
        for caption in train + heldout:
            assert set(NUMBER.findall(caption)) <= {DIGIT_WORDS[d], str(d)}, caption
            assert NUMBER.findall(caption), caption
        all_train |= set(train)
        all_heldout |= set(heldout)
    assert len(all_train) == 10 * 2 * len(TRAIN_TEMPLATES)  # no caption shared by digits
    assert not all_train & all_heldout
    assert not set(TRAIN_TEMPLATES) & set(HELDOUT_TEMPLATES)
    assert "an image of an eight" in digit_captions(8) and "this is a 1" in digit_captions(1)
    with pytest.raises(ValueError, match="0..9"):
        digit_captions(10)


def test_prompts_cycle_through_every_heldout_phrasing() -> None:
    labels = [3] * 2 * len(HELDOUT_TEMPLATES)
    assert sorted(digit_prompts(labels)) == sorted(digit_captions(3, "heldout"))
    assert digit_prompts([7, 1]) == [digit_captions(7, "heldout")[0],
                                     digit_captions(1, "heldout")[1]]  # fmt: skip


def test_caption_sets() -> None:
    digits = digit_caption_set()
    assert digits.groups[0] == ("",) and len(digits.groups) == 11
    assert digits.groups[8] == digit_captions(7, "train")
    assert CaptionSet.of([("a", "b"), ("b",)]).texts() == ["", "a", "b"]
    with pytest.raises(ValueError, match="empty caption"):
        CaptionSet((("a",),))


def test_table_gathers_padded_batches() -> None:
    embs = fake_embeddings([2, 5, 1, 3])
    table = CaptionTable(embs, [[0], [1, 3], [2]])
    ids = torch.tensor([3, 0, 1, 3])
    ctx = table.context(ids)
    assert ctx.tokens.shape == (4, 5, embs[0].tokens.shape[1])
    for row, k in enumerate(ids.tolist()):
        n = embs[k].tokens.shape[0]
        assert ctx.mask[row].tolist() == [True] * n + [False] * (5 - n)
        assert torch.equal(ctx.tokens[row, :n], embs[k].tokens)
        assert torch.equal(ctx.tokens[row, n:], torch.zeros(5 - n, ctx.tokens.shape[2]))
        assert torch.equal(ctx.pooled[row], embs[k].pooled)


def test_captions_index_drop_and_resolve() -> None:
    table = CaptionTable(fake_embeddings([2, 5, 1, 3]), [[0], [1, 3], [2]])
    caps = Captions(torch.tensor([1, 2, 1, 1]), table)
    assert caps.shape == (4,) and len(caps[torch.tensor([0, 2])]) == 2 and len(caps[1:3]) == 2
    dropped = caps.dropped(torch.tensor([True, False, False, True]), 0)
    assert dropped.groups.tolist() == [0, 2, 1, 0]
    assert table.pick(caps.groups, random=False).tolist() == [1, 2, 1, 1]  # first members
    torch.manual_seed(0)
    picks = table.pick(torch.ones(2000, dtype=torch.long), random=True)
    assert set(picks.tolist()) == {1, 3} and abs(float((picks == 1).float().mean()) - 0.5) < 0.05
    with pytest.raises(ValueError, match="caption groups"):
        Captions(torch.tensor([3]), table)
