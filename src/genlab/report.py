"""A self-contained HTML report of the demo: one file, inline CSS, PNGs referenced relatively."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from genlab.demo_text import text_section

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th { background: #f3f3f3; } td.l, th.l { text-align: left; }
tr.ok td.meets { background: #dff5df; } tr.miss td.meets { background: #fbe3e3; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figcaption { font-size: 0.85em; color: #555; text-align: center; }
img { max-width: 100%; border: 1px solid #eee; }
.note { color: #555; font-size: 0.9em; }
"""

_COLUMNS = (("sliced_wasserstein", "SW2"), ("sw2_floor", "SW2 floor"), ("sw2_ratio", "ratio"),
            ("mmd_rbf", "MMD&sup2;"), ("energy_distance", "energy"),
            ("log_density_gap", "log p gap"), ("seconds", "sample s"))  # fmt: skip


def _num(value: Any) -> str:
    return "&ndash;" if value is None else f"{value:.4g}"


def _row(res: dict[str, Any], row: dict[str, Any]) -> str:
    cls = "ok" if row["meets_target"] else "miss"
    cells = [
        f'<td class="l">{html.escape(res["dataset"])}</td>',
        f'<td class="l">{html.escape(res["preset"])}</td>',
        f'<td class="l">{html.escape(row["sampler"])}</td>',
        f"<td>{row['nfe']}</td>",
    ]
    cells += [f"<td>{_num(row.get(key))}</td>" for key, _ in _COLUMNS]
    cells.append(f'<td class="meets">{"yes" if row["meets_target"] else "no"}</td>')
    return f'<tr class="{cls}">' + "".join(cells) + "</tr>"


def metrics_table(results: list[dict[str, Any]]) -> str:
    head = [
        '<th class="l">data</th>',
        '<th class="l">model</th>',
        '<th class="l">sampler</th>',
        "<th>NFE</th>",
        *(f"<th>{label}</th>" for _, label in _COLUMNS),
        "<th>meets</th>",
    ]
    rows = [_row(res, row) for res in results for row in res["rows"]]
    return "<table><tr>" + "".join(head) + "</tr>\n" + "\n".join(rows) + "</table>"


def _best(res: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in res["rows"] if r.get("sw2_ratio") is not None]
    return min(rows, key=lambda r: r["sw2_ratio"]) if rows else res["rows"][0]


def summary_table(results: list[dict[str, Any]]) -> str:
    """Per model: the best (sampler, NFE) by sliced W2 ratio, and how many rows meet the target."""
    head = ('<tr><th class="l">data</th><th class="l">model</th><th class="l">best sampler</th>'
            "<th>NFE</th><th>SW2 / floor</th><th>log p gap</th><th>rows meeting target</th>"
            "<th>train s</th></tr>")  # fmt: skip
    rows = []
    for res in results:
        best = _best(res)
        met = sum(r["meets_target"] for r in res["rows"])
        rows.append(
            f'<tr class="{"ok" if best["meets_target"] else "miss"}">'
            f'<td class="l">{html.escape(res["dataset"])}</td>'
            f'<td class="l">{html.escape(res["preset"])}</td>'
            f'<td class="l">{html.escape(best["sampler"])}</td><td>{best["nfe"]}</td>'
            f'<td class="meets">{_num(best.get("sw2_ratio"))}</td>'
            f"<td>{_num(best.get('log_density_gap'))}</td>"
            f"<td>{met}/{len(res['rows'])}</td><td>{res['train_seconds']:.0f}</td></tr>"
        )
    return "<table>" + head + "\n".join(rows) + "</table>"


def _figure(src: str, caption: str) -> str:
    return (f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def _model_section(res: dict[str, Any]) -> str:
    images = res["images"]
    loss = "&ndash;" if res["final_loss"] is None else f"{res['final_loss']:.4g}"
    return (
        f"<h3>{html.escape(res['dataset'])} &middot; {html.escape(res['preset'])}</h3>"
        f'<p class="note">{res["steps"]} steps, final loss {loss}, '
        f"trained in {res['train_seconds']:.0f} s</p>"
        + _figure(images["samples"], "samples per sampler (blue) over held-out data (grey)")
        + _figure(images["loss"], "training loss")
        + _figure(images["trajectory"], "probability-flow ODE paths (euler, 20 NFE)")
    )


_IMAGE_COLUMNS = (("fd", "FD"), ("kid", "KID"), ("precision", "precision"),
                  ("recall", "recall"), ("accuracy", "class accuracy"))  # fmt: skip


def image_metrics_table(rows: list[dict[str, Any]]) -> str:
    """Digits rows: every image metric next to its floor (real train vs real test images;
    for accuracy, the feature network's accuracy on the test split)."""
    head = ['<th class="l">sampler</th>', "<th>NFE</th>", "<th>guidance w</th>"]
    for _, label in _IMAGE_COLUMNS:
        head += [f"<th>{label}</th>", f"<th>{label} floor</th>"]
    head += ["<th>FD / floor</th>", "<th>sample s</th>"]
    body = []
    for row in rows:
        cells = [f'<td class="l">{html.escape(row["sampler"])}</td>', f"<td>{row['nfe']}</td>",
                 f"<td>{row['guidance']:g}</td>"]  # fmt: skip
        for key, _ in _IMAGE_COLUMNS:
            cells += [f"<td>{_num(row.get(key))}</td>", f"<td>{_num(row.get(key + '_floor'))}</td>"]
        cells += [f"<td>{_num(row.get('fd_ratio'))}</td>", f"<td>{_num(row.get('seconds'))}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return "<table><tr>" + "".join(head) + "</tr>\n" + "\n".join(body) + "</table>"


def digits_section(digits: dict[str, Any]) -> str:
    """The digits part of the report: metrics tables and sample grids (a row per class)."""
    d = digits["dir"]
    loss = "&ndash;" if digits["final_loss"] is None else f"{digits['final_loss']:.4g}"
    n = digits["rows"][0].get("n_samples", 0) if digits["rows"] else 0
    intro = (
        f"<p>A class-conditional UNet ({digits['params']:,} parameters, preset "
        f"<code>{html.escape(digits['preset'])}</code>, label dropout for classifier-free "
        f"guidance) trained {digits['steps']} steps on scikit-learn's 8&times;8 digits in "
        f"{digits['train_seconds']:.0f} s (final loss {loss}). Metrics use the shipped digits "
        f"network's features: {n:g} samples (labels in the test split's proportions) against "
        "the 360 test images. Each <em>floor</em> is the same metric for as many real "
        "training images against the test images, i.e. a perfect model at this sample size; "
        "the accuracy floor is the network's accuracy on real test images. Lower FD/KID and "
        "higher precision/recall/accuracy are better.</p>"
    )
    figures = "".join(
        _figure(f"{d}/{row['grid']}", f"{row['sampler']} @ {row['nfe']}, w = {row['guidance']:g}")
        for row in digits["rows"] + digits["guidance_rows"]
    )
    return (
        f"<h2>Digits</h2>\n{intro}\n<h3>Samplers (conditional, w = 1)</h3>\n"
        f"{image_metrics_table(digits['rows'])}\n<h3>Classifier-free guidance</h3>\n"
        f"{image_metrics_table(digits['guidance_rows'])}\n"
        f"<h3>Samples (a row per class 0-9)</h3>\n{figures}"
        + _figure(f"{d}/loss.png", "training loss")
    )


def render(
    results: list[dict[str, Any]],
    meta: dict[str, Any],
    digits: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
) -> str:
    """The report as an HTML string."""
    met = sum(r["meets_target"] for res in results for r in res["rows"])
    total = sum(len(res["rows"]) for res in results)
    plan = meta["plan"]
    intro = (
        f"<p>{len(results)} models ({plan['hidden']}x{plan['depth']} MLP, {plan['steps']} steps, "
        f"batch {plan['batch_size']}): {meta['seconds']:.0f} s on "
        f"{meta['workers']} worker(s), {meta['cpu_seconds']:.0f} CPU seconds. "
        "Target: sliced W2 to the held-out test split at most "
        f"{meta['target_ratio']:g}&times; the <em>floor</em>, the sliced W2 between two "
        f"independent draws of the data of the same size. <b>{met}/{total}</b> (model, sampler) "
        "runs meet it. The log-density gap (gmm-ring only) is mean log p(samples) &minus; "
        "mean log p(test data) under the exact mixture density: 0 is ideal.</p>"
    )
    sections = "\n".join(_model_section(res) for res in results)
    return (
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>genlab demo</title>"
        f"<style>{_CSS}</style></head><body>\n<h1>genlab demo</h1>\n{intro}\n"
        f"<h2>Summary</h2>\n{summary_table(results)}\n"
        f"<h2>All samplers</h2>\n{metrics_table(results)}\n<h2>Models</h2>\n{sections}\n"
        + ("" if digits is None else digits_section(digits) + "\n")
        + ("" if text is None else text_section(text) + "\n")
        + "</body></html>\n"
    )


def write_report(
    out: Path | str,
    results: list[dict[str, Any]],
    meta: dict[str, Any],
    *,
    digits: dict[str, Any] | None = None,
    text: dict[str, Any] | None = None,
) -> Path:
    """Write `out/index.html` and return its path."""
    path = Path(out) / "index.html"
    path.write_text(render(results, meta, digits, text), encoding="utf-8")
    return path
