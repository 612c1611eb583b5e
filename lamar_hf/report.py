"""``lamar report``: one self-contained HTML page (and a markdown twin) about an enrichment + training run.

The page shows the dataset statistics, example items with their signals, the signal-analysis figures and plots, the
recommender comparison (table and chart) and the provenance of every artefact. Images are embedded as data URIs, so
the HTML file can be mailed or opened anywhere; the markdown twin links the PNG files written beside it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

SIGNAL_COLUMNS = ("scenario", "intent", "topic")
METRIC_ORDER = ("recall@10", "recall@20", "ndcg@10", "ndcg@20", "mrr@10")


@dataclass
class ReportInputs:
    """What a report is made of; every part is optional."""

    title: str = "lamar-hf report"
    statistics: dict | None = None
    examples: list[dict] = field(default_factory=list)  # item rows with their signal columns
    analysis: dict | None = None  # flat {figure: value} or {signal: {figure: value}}
    analysis_plots: list[Path] = field(default_factory=list)
    comparison: list[dict] = field(default_factory=list)  # [{"variant": ..., "recall@10": ..., ...}]
    provenance: dict[str, dict] = field(default_factory=dict)  # artefact -> {path, sha256, ...}
    notes: list[str] = field(default_factory=list)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artefact(path, **details) -> dict:
    """A provenance entry: the path, its sha256 (or file count for a folder) and any details given."""
    path = Path(path)
    entry = {"path": str(path)}
    if path.is_file():
        entry["sha256"] = file_digest(path)
    elif path.is_dir():
        entry["files"] = sum(1 for p in path.rglob("*") if p.is_file())
    entry.update({key: value for key, value in details.items() if value is not None})
    return entry


def pick_examples(items, signals, count: int = 5, seed: int = 0) -> list[dict]:
    """``count`` random items (fixed seed) that have an ok/retried signal row, joined with their metadata."""
    by_id = {row["item_id"]: row for row in signals if row.get("status", "ok") in ("ok", "retried")}
    chosen = sorted(random.Random(seed).sample(sorted(by_id), min(count, len(by_id))))
    examples = []
    for item_id in chosen:
        item = items[item_id - 1]
        row = {"item_id": item_id, "title": item["title"], "categories": " > ".join(item["categories"][1:])}
        row.update({name: by_id[item_id][name] for name in SIGNAL_COLUMNS if name in by_id[item_id]})
        examples.append(row)
    return examples


def comparison_cells(rows: list[dict]) -> list[dict]:
    """Comparison rows for the table: a metric with a ``<metric>_std`` beside it becomes one "mean ± std" cell."""
    shown = []
    for row in rows:
        cells = {}
        for key, value in row.items():
            if key.endswith("_std"):
                continue
            std = row.get(f"{key}_std")
            cells[key] = f"{format_value(float(value))} ± {std:.4f}" if std is not None else value
        shown.append(cells)
    return shown


def comparison_chart(rows: list[dict], path: Path) -> Path | None:
    """A grouped bar chart of the comparison metrics (mean, with std as error bars when given)."""
    metrics = [m for m in METRIC_ORDER if any(m in row for row in rows)]
    if not rows or not metrics:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    for index, row in enumerate(rows):
        positions = [m + index * width for m in range(len(metrics))]
        values = [float(row.get(metric) or 0.0) for metric in metrics]
        errors = [float(row.get(f"{metric}_std") or 0.0) for metric in metrics]
        ax.bar(positions, values, width, yerr=errors, capsize=2, label=str(row["variant"]))
    ax.set_xticks([m + width * (len(rows) - 1) / 2 for m in range(len(metrics))])
    ax.set_xticklabels(metrics)
    ax.set_ylabel("test metric (full ranking)")
    # Below the axes, so that no bar hides behind it.
    ax.legend(fontsize=8, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def format_value(value) -> str:
    if isinstance(value, float):
        if value.is_integer() and abs(value) >= 1:  # epochs and counts kept as floats by the Trainer
            return f"{int(value):,}"
        if value and abs(value) < 0.001:
            return f"{value:.2e}"
        return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def flatten(mapping: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def table(rows: list[dict], columns: list[str] | None = None) -> tuple[str, str]:
    """(HTML, markdown) of rows sharing columns."""
    if not rows:
        return "<p><em>none</em></p>", "_none_\n"
    columns = columns or list(dict.fromkeys(key for row in rows for key in row))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(format_value(row.get(c, '')))}</td>" for c in columns) + "</tr>" for row in rows
    )
    markdown = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    markdown += "".join(
        "| " + " | ".join(format_value(row.get(c, "")).replace("|", "/").replace("\n", " ") for c in columns) + " |\n"
        for row in rows
    )
    # A wide table scrolls inside its own box instead of widening the page.
    return f"<div class='wide'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>", markdown


def image_tags(paths: list[Path], out_dir: Path, full_width: bool = False) -> tuple[str, str]:
    html_parts, md_parts = [], []
    figure = "<figure class='full'>" if full_width else "<figure>"
    for path in paths:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        html_parts.append(f'{figure}<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>')
        target = out_dir / Path(path).name
        if Path(path).resolve() != target.resolve():
            target.write_bytes(Path(path).read_bytes())
        md_parts.append(f"![{path.stem}]({target.name})\n")
    return "".join(html_parts), "\n".join(md_parts)


STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;color:#1f2933;padding:0 1rem}
h1{font-size:1.7rem;margin-bottom:.2rem} h2{font-size:1.25rem;border-bottom:2px solid #e4e7eb;padding-bottom:.3rem;margin-top:2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0} th,td{border:1px solid #e4e7eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f7fa} tr:nth-child(even) td{background:#fbfcfd} figure{display:inline-block;margin:.5rem;max-width:48%}
figure img{max-width:100%;border:1px solid #e4e7eb} figure.full{display:block;max-width:100%}
.wide{overflow-x:auto} td:last-child{overflow-wrap:anywhere} figcaption{font-size:.8rem;color:#616e7c;text-align:center}
.cards{display:flex;flex-wrap:wrap;gap:.8rem} .card{background:#f5f7fa;border-radius:8px;padding:.6rem 1rem;min-width:150px}
.card b{display:block;font-size:1.3rem} .muted{color:#616e7c;font-size:.85rem} code{background:#f5f7fa;padding:0 .2rem}
"""


def render_report(inputs: ReportInputs, out_dir) -> tuple[Path, Path]:
    """Write ``report.html`` (self-contained) and ``report.md`` (with PNGs beside it) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    h, md = [f"<h1>{html.escape(inputs.title)}</h1>"], [f"# {inputs.title}\n"]
    for note in inputs.notes:
        h.append(f'<p class="muted">{html.escape(note)}</p>')
        md.append(f"_{note}_\n")

    h.append("<h2>Dataset</h2>")
    md.append("## Dataset\n")
    if inputs.statistics:
        stats = {k: v for k, v in inputs.statistics.items() if not isinstance(v, dict)}
        h.append('<div class="cards">' + "".join(f"<div class='card'><b>{html.escape(format_value(v))}</b>{html.escape(k.replace('_', ' '))}</div>" for k, v in stats.items()) + "</div>")
        md.append(table([stats])[1])
        coverage = inputs.statistics.get("metadata_coverage") or {}
        if coverage:
            rows = [{"field": k, "coverage": f"{v:.1%}"} for k, v in coverage.items()]
            html_table, md_table = table(rows)
            h.append("<h3>Metadata coverage</h3>" + html_table)
            md.append("\nMetadata coverage:\n\n" + md_table)

    h.append("<h2>Example items and their signals</h2>")
    md.append("\n## Example items and their signals\n")
    html_table, md_table = table(inputs.examples)
    h.append(html_table)
    md.append(md_table)

    h.append("<h2>Signal analysis</h2>")
    md.append("\n## Signal analysis\n")
    if inputs.analysis:
        # Scalars as one summary row, per-signal figures as a table; histograms and top lists are in the plots.
        summary = {k: v for k, v in flatten({k: v for k, v in inputs.analysis.items() if k != "signals"}).items()
                   if not isinstance(v, list) and not k.startswith("length_histogram")}
        per_signal = [{"signal": name, **{k: v for k, v in figures.items() if not isinstance(v, (list, dict))}}
                      for name, figures in (inputs.analysis.get("signals") or {}).items()]
        for rows in ([summary] if summary else [], per_signal):
            html_table, md_table = table(rows)
            h.append(html_table)
            md.append(md_table)
    images_html, images_md = image_tags(list(inputs.analysis_plots), out_dir)
    h.append(images_html)
    md.append(images_md)

    h.append("<h2>Recommender comparison</h2>")
    md.append("\n## Recommender comparison\n")
    shown = comparison_cells(inputs.comparison)
    columns = ["variant"] + [c for c in dict.fromkeys(k for r in shown for k in r) if c != "variant"]
    html_table, md_table = table(shown, columns if shown else None)
    h.append(html_table)
    md.append(md_table)
    chart = comparison_chart(inputs.comparison, out_dir / "recommender_comparison.png")
    if chart:
        images_html, images_md = image_tags([chart], out_dir, full_width=True)
        h.append(images_html)
        md.append(images_md)

    h.append("<h2>Provenance</h2>")
    md.append("\n## Provenance\n")
    # One row per recorded field: artefacts record different fields, and a wide sparse table is unreadable.
    rows = [{"artefact": name if index == 0 else "", "field": key,
             "value": json.dumps(value) if isinstance(value, (dict, list)) else value}
            for name, entry in inputs.provenance.items()
            for index, (key, value) in enumerate((k, v) for k, v in entry.items() if v not in (None, "", [], {}))]
    html_table, md_table = table(rows, ["artefact", "field", "value"])
    h.append(html_table)
    md.append(md_table)

    page = f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(inputs.title)}</title><style>{STYLE}</style></head><body>{''.join(h)}</body></html>\n"
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    html_path.write_text(page, encoding="utf-8")
    md_path.write_text("\n".join(md), encoding="utf-8")
    return html_path, md_path
