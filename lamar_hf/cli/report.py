"""``lamar report``: one self-contained HTML page and a markdown twin about a dataset, its signals and models."""

from __future__ import annotations

import json
from pathlib import Path

from . import UserError, add_command


def add_parser(subparsers) -> None:
    parser = add_command(
        subparsers,
        "report",
        help="write report.html (self-contained) and report.md: statistics, example signals, analysis, comparison",
        example="lamar report --dataset outputs/beauty --analysis outputs/analysis "
        "--model id-only=outputs/sasrec-id --model signals=outputs/sasrec-signals "
        "--experiment benchmarks/results/amazon_beauty/beauty_sasrec_study.json --out outputs/report",
        run=run,
    )
    parser.add_argument("--dataset", required=True, type=Path, help="a prepared benchmark folder (with signals/)")
    parser.add_argument("--analysis", type=Path, help="folder written by `lamar analyze --out` (analysis.json, PNGs)")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=DIR",
                        help="a `lamar train` output folder (results.json) to compare; repeat for each model")
    parser.add_argument("--experiment", type=Path, action="append", default=[],
                        help="a results file of benchmarks/experiment.py (benchmarks/results/<dataset>/<name>.json) "
                             "to include; repeat for each")
    parser.add_argument("--examples", type=int, default=5, help="random example items to show (default 5)")
    parser.add_argument("--title", default=None, help="page title")
    parser.add_argument("--out", required=True, type=Path, help="output folder")


def comparison_rows(models: list[str]) -> tuple[list[dict], dict]:
    from lamar_hf.report import artefact

    rows, provenance = [], {}
    for spec in models:
        label, sep, folder = spec.partition("=")
        if not sep:
            raise UserError(f"--model expects LABEL=DIR, got {spec!r}")
        results_path = Path(folder) / "results.json"
        if not results_path.is_file():
            raise UserError(f"--model {label}: {results_path} not found (a folder written by `lamar train`)")
        results = json.loads(results_path.read_text())
        row = {"variant": label}
        row.update({k: v for k, v in results["test"].items() if "@" in k})
        row["best epoch"] = results.get("best_epoch")
        rows.append(row)
        provenance[f"model: {label}"] = artefact(folder, backbone=results.get("model_args", {}).get("backbone"),
                                                 seed=results.get("seed"), epochs=results.get("epochs"))
    return rows, provenance


def experiment_results(paths: list[Path]) -> tuple[list[dict], dict]:
    """The results files of ``benchmarks/experiment.py`` and their provenance entries."""
    from lamar_hf.report import artefact, check_experiment_results

    experiments, provenance = [], {}
    for path in paths:
        if not path.is_file():
            raise UserError(f"--experiment {path} not found")
        try:
            results = json.loads(path.read_text())
        except ValueError as error:
            raise UserError(f"--experiment {path} is not valid JSON: {error}") from error
        try:
            results = check_experiment_results(results, path)
        except ValueError as error:
            raise UserError(f"--experiment {error}") from error
        experiments.append(results)
        provenance[f"experiment: {results['experiment']}"] = artefact(
            path, split_fingerprint=results["split_fingerprint"], device=results["device"],
            grid=results["grid"]["file"])
    return experiments, provenance


def run(args) -> int:
    from lamar_hf.data import load_prepared
    from lamar_hf.report import ReportInputs, artefact, pick_examples, render_report

    if not args.dataset.is_dir():
        raise UserError(f"--dataset {args.dataset} is not a folder")
    benchmark = load_prepared(args.dataset)
    inputs = ReportInputs(title=args.title or f"lamar-hf report: {benchmark.name}", statistics=benchmark.statistics())
    inputs.provenance["dataset"] = artefact(args.dataset, source=json.dumps(benchmark.source.get("files", [])))
    if benchmark.signals is not None:
        signals = benchmark.signals.to_list()
        inputs.examples = pick_examples(benchmark.items, signals, args.examples)
        first = signals[0]
        inputs.provenance["signals"] = artefact(
            args.dataset / "signals" / "train-00000-of-00001.parquet",
            **{k: first[k] for k in ("generator", "generator_revision", "adapter", "prompt_version", "decoding")
               if k in first},
        )
    if args.analysis:
        analysis_file = args.analysis / "analysis.json"
        if not analysis_file.is_file():
            raise UserError(f"--analysis {args.analysis} has no analysis.json (run `lamar analyze --out`)")
        inputs.analysis = json.loads(analysis_file.read_text())
        inputs.analysis_plots = sorted(args.analysis.glob("*.png"))
        inputs.provenance["analysis"] = artefact(analysis_file)
    inputs.comparison, model_provenance = comparison_rows(args.model)
    inputs.experiments, experiment_provenance = experiment_results(args.experiment)
    inputs.provenance.update({**model_provenance, **experiment_provenance})
    html_path, md_path = render_report(inputs, args.out)
    print(f"report: {html_path} and {md_path}")
    return 0
