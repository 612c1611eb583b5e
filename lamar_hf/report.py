"""``lamar report``: one self-contained HTML page (and a markdown twin) about an enrichment + training run.

The page shows the dataset statistics, example items with their signals, the signal-analysis figures and plots, the
recommender comparison (table and chart), the results of experiments run by ``benchmarks/experiment.py`` (the same
table as their results files, and per backbone the variants' Recall@20 with the gain over ID-only) and the provenance
of every artefact. Images are embedded as data URIs, so
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


@dataclass
class ReportInputs:
    """What a report is made of; every part is optional."""

    title: str = "lamar-hf report"
    statistics: dict | None = None
    examples: list[dict] = field(default_factory=list)  # item rows with their signal columns
    analysis: dict | None = None  # flat {figure: value} or {signal: {figure: value}}
    analysis_plots: list[Path] = field(default_factory=list)
    comparison: list[dict] = field(default_factory=list)  # [{"variant": ..., "recall@10": ..., ...}]
    experiments: list[dict] = field(default_factory=list)  # results files of benchmarks/experiment.py
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


def recall_chart(groups: dict[str, list[dict]], path: Path, title: str, metric: str = "recall@20",
                 baseline: str = "id-only") -> Path | None:
    """One panel per group (e.g. per backbone): a bar per entry (``{"label", "mean", "std"}``, ``mean`` None when
    missing) with its std as error bar, and above each bar its gain over the group's ``baseline`` entry."""
    if not any(groups.values()):
        return None
    import matplotlib.pyplot as plt

    fig = recall_figure(groups, title, metric, baseline)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return path


def recall_figure(groups: dict[str, list[dict]], title: str, metric: str = "recall@20", baseline: str = "id-only"):
    """The matplotlib figure of :func:`recall_chart` (left open)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(max(4.5, 3.2 * len(groups)), 4.2), dpi=110, squeeze=False,
                             sharey=True)
    for axis, (group, bars) in zip(axes[0], groups.items()):
        base = next((bar["mean"] for bar in bars if bar["label"] == baseline and bar["mean"]), None)
        for index, bar in enumerate(bars):
            if bar["mean"] is None:
                axis.text(index, 0, "missing", ha="center", va="bottom", rotation=90, color="#9aa5b1")
                continue
            axis.bar(index, bar["mean"], 0.7, yerr=bar.get("std") or 0.0, capsize=4,
                     color="#9aa5b1" if bar["label"] == baseline else "#3e7cb1")
            if base and bar["label"] != baseline:
                axis.annotate(f"{bar['mean'] / base - 1:+.1%}", (index, bar["mean"] + (bar.get("std") or 0.0)),
                              xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)
        axis.set_xticks(range(len(bars)), [bar["label"] for bar in bars], rotation=25, ha="right", fontsize=8)
        axis.set_title(group, fontsize=10)
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"test {metric_label(metric)} (full ranking)")
    fig.suptitle(title, fontsize=10)
    return fig


def metric_label(metric: str) -> str:
    return metric.replace("recall", "Recall").replace("ndcg", "NDCG").replace("mrr", "MRR")


# ---- experiments: results written by benchmarks/experiment.py (settings chosen on validation)

EXPERIMENT_TEST_METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10")


def check_experiment_results(results: dict, path) -> dict:
    """``results`` if it is a results file of ``benchmarks/experiment.py``.

    Raises:
        ValueError: naming the file, for anything else (e.g. a summary of the old beauty_experiment.py, whose
            settings were not chosen on validation).
    """
    missing = [key for key in ("split_fingerprint", "device", "grid", "rows") if key not in results]
    if missing:
        raise ValueError(f"{path} is not a results file of benchmarks/experiment.py (it lacks {', '.join(missing)}); "
                         "write one with `python benchmarks/experiment.py collect`")
    return results


def mean_cell(figures: dict, metric: str) -> str:
    return f"{figures[metric]:.4f} ± {figures[f'{metric}_std']:.4f}"


def experiment_summary(results: dict) -> str:
    """One paragraph: what the table measured, on which split and device, and how the settings were chosen."""
    grid = results["grid"]
    text = (f"Full ranking over all items, leave-one-out, ties counted against the target. Split "
            f"`{results['split_fingerprint']}`; every run on **{results['device']}**. Grid `{grid['file']}`: "
            f"{len(grid['settings'])} settings x seeds {grid['seeds']} per backbone and variant; for each, the setting "
            f"with the best mean validation {metric_label(grid['selection_metric'])} over the seeds is chosen, and "
            "only then are its test figures read. Mean ± std over seeds.")
    if results.get("max_users"):
        text += (f" **Smoke run** on the first {results['max_users']} users: the figures show that the pipeline runs, "
                 "they measure nothing.")
    if results.get("time_budget"):
        text += f" Each run had a training time budget of {results['time_budget']:g} s."
    return text


def experiment_table_rows(results: dict) -> list[dict]:
    """The main table: per backbone x variant, the chosen setting with validation and test side by side."""
    rows = []
    for row in results["rows"]:
        cells = {"backbone": row["backbone"], "variant": row["variant"]}
        if row["missing"]:
            cells["chosen setting"] = (f"missing: no setting has all seeds "
                                       f"({row['settings_complete']} of {row['settings_declared']} complete)")
            rows.append(cells)
            continue
        cells["chosen setting"] = row["setting"]["name"] + (
            "" if row["settings_complete"] == row["settings_declared"]
            else f" (among {row['settings_complete']} of {row['settings_declared']} settings)")
        cells["seeds"] = len(row["seeds"])
        cells["validation NDCG@10"] = mean_cell(row["validation"], "ndcg@10")
        cells["validation Recall@10"] = mean_cell(row["validation"], "recall@10")
        for metric in EXPERIMENT_TEST_METRICS:
            cells[f"test {metric_label(metric)}"] = mean_cell(row["test"], metric)
        gain = row.get("test_recall@20_gain_over_id_only")
        cells["test Recall@20 vs ID-only"] = "—" if gain is None else f"{gain:+.1%}"
        cells["epochs"] = ", ".join(
            f"{epochs:g}" + ("*" if budget else "†" if limit else "")
            for epochs, limit, budget in zip(row["epochs"], row["reached_max_epochs"], row["stopped_by_time_budget"]))
        rows.append(cells)
    return rows


def experiment_excluded_rows(results: dict) -> list[dict]:
    """Outside the protocol: the chosen models' test figures with every history item excluded, and the learned
    repeat score where the model has one."""
    rows = []
    for row in results["rows"]:
        if row["missing"] or "test_excluding_history" not in row:
            continue
        cells = {"backbone": row["backbone"], "variant": row["variant"], "chosen setting": row["setting"]["name"]}
        for metric in EXPERIMENT_TEST_METRICS:
            cells[f"test {metric_label(metric)}"] = mean_cell(row["test_excluding_history"], metric)
        cells["repeat score"] = f"{row['repeat_score']:.2f}" if "repeat_score" in row else "—"
        rows.append(cells)
    return rows


def experiment_grid_rows(results: dict) -> list[dict]:
    """The settings study: every setting of the grid with its validation figures (test figures are read only for
    the chosen ones)."""
    overrides = results["grid"]["settings"]
    rows = []
    for entry in results["settings"]:
        validation = entry.get("validation")
        rows.append({
            "backbone": entry["backbone"], "variant": entry["variant"], "setting": entry["setting"],
            "overrides of the base": ", ".join(f"{k} {v}" for k, v in overrides[entry["setting"]].items()) or "—",
            "seeds done": (", ".join(map(str, entry["seeds"])) or "none") + (
                f" (missing {', '.join(map(str, entry['missing_seeds']))})" if entry["missing_seeds"] else ""),
            "validation NDCG@10": mean_cell(validation, "ndcg@10") if validation else "missing",
            "validation Recall@10": mean_cell(validation, "recall@10") if validation else "missing",
            "chosen": "**chosen**" if entry["chosen"] else "",
        })
    return rows


def experiment_markdown(results: dict) -> str:
    """The results page of an experiment: summary, main table, the history-excluded table and the grid."""
    grid = results["grid"]
    lines = [f"# {results['dataset']}: {results['experiment']} (settings chosen on validation)", "",
             experiment_summary(results), "", table(experiment_table_rows(results))[1]]
    if any(not row["missing"] and any(row["reached_max_epochs"]) for row in results["rows"]):
        lines += ["† reached the epoch limit before early stopping: the run may not have converged.", ""]
    if any(not row["missing"] and any(row["stopped_by_time_budget"]) for row in results["rows"]):
        lines += ["\\* ended by the time budget before early stopping: the best validation model so far was "
                  "tested.", ""]
    excluded = experiment_excluded_rows(results)
    if excluded:
        lines += ["Outside the protocol, for comparison with evaluators that filter the history (RecBole's, "
                  "`filter_seen`): the chosen models' test figures when no item of a user's history may be "
                  "recommended.",
                  "", table(excluded)[1]]
    lines += ["## The grid", "",
              "Base settings (every setting starts from them; the rest are each backbone's defaults): "
              + (", ".join(f"{key} {value}" for key, value in grid["base"].items()) or "none") + ".", "",
              table(experiment_grid_rows(results))[1]]
    versions = "; ".join(", ".join(f"{name} {version}" for name, version in entry.items())
                         for entry in results.get("versions", []) if entry)
    lines += [f"Libraries: {versions}.", "", f"Command: `{results['command']}`", ""]
    return "\n".join(lines)


def experiment_chart_groups(results: dict) -> dict[str, list[dict]]:
    """The bars of :func:`experiment_chart`: per backbone, each variant's test Recall@20 (None where missing)."""
    groups = {}
    for row in results["rows"]:
        groups.setdefault(row["backbone"], []).append({
            "label": row["variant"], "mean": None if row["missing"] else row["test"]["recall@20"],
            "std": None if row["missing"] else row["test"]["recall@20_std"]})
    return groups


def experiment_chart(results: dict, path: Path) -> Path | None:
    """Per backbone, the variants' test Recall@20 (chosen settings, std over seeds) and their gain over ID-only."""
    title = (f"{results['dataset']} · {results['device']}\ntest Recall@20 of the settings chosen on validation "
             "(mean ± std over seeds; % = gain over ID-only)")
    return recall_chart(experiment_chart_groups(results), Path(path), title)


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
    bars = [{"label": str(row["variant"]), "mean": row.get("recall@20"), "std": row.get("recall@20_std")}
            for row in inputs.comparison if row.get("recall@20") is not None]
    chart = recall_chart({"single runs": bars}, out_dir / "recommender_comparison.png",
                         "test Recall@20 of each model") if bars else None
    if chart:
        images_html, images_md = image_tags([chart], out_dir, full_width=True)
        h.append(images_html)
        md.append(images_md)

    for results in inputs.experiments:
        heading = f"Experiment: {results['dataset']} · {results['experiment']} (settings chosen on validation)"
        h.append(f"<h2>{html.escape(heading)}</h2><p>{html.escape(experiment_summary(results))}</p>")
        md.append(f"\n## {heading}\n\n{experiment_summary(results)}\n")
        for rows in (experiment_table_rows(results), experiment_excluded_rows(results)):
            if rows:
                html_table, md_table = table(rows)
                h.append(html_table)
                md.append(md_table)
        chart = experiment_chart(results, out_dir / f"experiment_{results['experiment']}.png")
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
