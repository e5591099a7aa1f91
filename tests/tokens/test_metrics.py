"""Codebook statistics over a whole split against hand counts, the tokenizer metrics'
independence of the batch size, and the codes file round trip and its errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.density import LN2
from genlab.errors import DataError
from genlab.tokens.autoencoder import VQAutoencoder
from genlab.tokens.codes import TokenCodes, load_codes, save_codes
from genlab.tokens.metrics import code_statistics, reconstruct_all, tokenizer_metrics
from genlab.tokens.nets import conv_pair
from genlab.tokens.quantizers import FSQ


def test_code_statistics_match_hand_counts() -> None:
    """Codes 0 x2, 1 x3, 3 x1 of K = 5: usage 3/5, 2 dead, perplexity exp(H) of (2, 3, 1)/6."""
    codes = torch.tensor([0, 0, 1, 1, 1, 3]).view(3, 1, 2)
    stats = code_statistics(codes, 5)
    p = torch.tensor([2, 3, 1], dtype=torch.float64) / 6
    assert stats.usage == pytest.approx(3 / 5) and stats.dead == 2
    assert stats.perplexity == pytest.approx(math.exp(float(-(p * p.log()).sum())))
    uniform = code_statistics(torch.arange(8).view(2, 2, 2), 8)
    assert uniform.perplexity == pytest.approx(8.0) and uniform.usage == 1.0


def test_metrics_are_over_the_whole_split_whatever_the_batch_size() -> None:
    torch.manual_seed(0)
    model = VQAutoencoder(*conv_pair(1, 2, channels=4), FSQ((3, 3)), (1, 4, 4), 17).eval()
    model.code_usage.copy_(torch.arange(9.0))  # a unigram prior for the bound
    x = torch.randint(0, 17, (23, 1, 4, 4)).float() / 8 - 1
    small = reconstruct_all(model, x, batch_size=5)
    whole = reconstruct_all(model, x, batch_size=1000)
    for a, b in zip(small, whole, strict=True):
        torch.testing.assert_close(a, b)
    values, recon = tokenizer_metrics(model, x)
    codes, _, log_p = whole
    stats = code_statistics(codes, 9)
    assert values["codebook_usage"] == stats.usage and values["perplexity"] == stats.perplexity
    assert values["recon_mse"] == pytest.approx(float((recon - x).square().mean()), rel=1e-6)
    decoder = float(-log_p.mean()) / (16 * LN2)
    assert values["decoder_bpd"] == pytest.approx(decoder, rel=1e-5)
    probs = torch.arange(9.0) / 36
    code_bits = float(-probs[codes.flatten(1)].log2().sum(1).mean()) / 16
    assert values["unigram_bound_bpd"] == pytest.approx(decoder + code_bits, rel=1e-5)


def test_codes_file_round_trips_and_refuses_bad_input(tmp_path: Path) -> None:
    codes = TokenCodes(torch.randint(0, 7, (5, 2, 3)), torch.randint(0, 7, (2, 2, 3)), 7,
                       torch.arange(5), None)  # fmt: skip
    path = save_codes(tmp_path / "codes.npz", codes)
    back = load_codes(path)
    assert torch.equal(back.train, codes.train) and torch.equal(back.test, codes.test)
    assert back.codebook_size == 7 and back.grid == (2, 3) and back.test_labels is None
    assert torch.equal(back.train_labels, codes.train_labels)
    with pytest.raises(DataError, match="exists"):
        save_codes(path, codes)
    assert torch.equal(load_codes(path).train, codes.train)  # kept
    with pytest.raises(DataError, match="outside 0..6"):
        TokenCodes(codes.train + 7, codes.test, 7).check("x")
    np.savez(tmp_path / "bad.npz", train=np.zeros((2, 2, 2), dtype=np.int64))
    with pytest.raises(DataError, match="missing test, codebook_size"):
        load_codes(tmp_path / "bad.npz")
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not a readable"):
        load_codes(tmp_path / "junk.npz")
