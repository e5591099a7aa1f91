"""`genlab demo --quick` writes a self-contained report and its metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from genlab.cli import main


def test_quick_demo_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as info:
        main(["demo", "--quick", "--out", str(out)])
    assert info.value.code == 0, capsys.readouterr().err
    assert "index.html" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    names = {res["name"] for res in metrics["results"]}
    assert {"gmm-ring-flow-matching", "gmm-ring-edm", "gmm-ring-ddpm"} <= names
    for res in metrics["results"]:
        for row in res["rows"]:
            assert {"sliced_wasserstein", "sw2_floor", "sw2_ratio", "mmd_rbf"} <= set(row)
            assert ("log_density_gap" in row) == (res["dataset"] == "gmm-ring")
    text = metrics["text"]  # the text-to-image section: a latent model, held-out prompts
    assert (out / "text" / "prompts.png").is_file() and len(text["prompts"]) == 10
    assert text["metrics"]["fd"] > 0 and 0 <= text["metrics"]["accuracy"] <= 1
    assert text["scale_factor"] > 0
    page = (out / "index.html").read_text()
    assert "Text to image" in page
    images = re.findall(r'<img src="([^"]+)"', page)
    assert images and all(not Path(src).is_absolute() for src in images)
    assert all((out / src).is_file() for src in images)
