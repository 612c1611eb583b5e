"""`lamar report --experiment`: the validation-chosen table of benchmarks/experiment.py and its per-backbone chart."""

import json

from test_cli import tiny_p5_layout
from test_experiment import FINGERPRINT, experiment, write_grid, write_rigged_run

from lamar_hf.cli import main as lamar
from lamar_hf.report import ReportInputs, experiment_chart_groups, recall_figure, render_report


def rigged_results(tmp_path):
    """A results file written by the runner's own collect from run records it wrote."""
    grid = experiment.load_grid(write_grid(tmp_path / "study.json", variants=["id-only", "signals"], seeds=[0, 1],
                                           settings=[{"name": "reference"}, {"name": "wide", "hidden_size": 32}]))
    work = tmp_path / "runs"
    for seed in (0, 1):
        write_rigged_run(work, grid, "reference", seed, validation=0.05, test=0.10 + seed / 100)
        write_rigged_run(work, grid, "wide", seed, validation=0.04, test=0.30)
        write_rigged_run(work, grid, "reference", seed, validation=0.06, test=0.12 + seed / 100, variant="signals")
    experiment.main(["collect", "--config", grid.path, "--runs", str(work), "--results_dir", str(tmp_path / "results")])
    return tmp_path / "results" / "study.json"


def test_the_report_shows_the_experiment_table_of_its_results_file_and_one_panel_per_backbone(tmp_path, capsys):
    results_path = rigged_results(tmp_path)
    dataset = tmp_path / "beauty"
    assert lamar(["prepare", "--source", "p5", "--path", str(tiny_p5_layout(tmp_path / "raw", users=6, items=8)),
                  "--out", str(dataset)]) == 0
    assert lamar(["report", "--dataset", str(dataset), "--experiment", str(results_path), "--out",
                  str(tmp_path / "report")]) == 0
    markdown = (tmp_path / "report" / "report.md").read_text()
    results_table = results_path.with_suffix(".md").read_text().split("## The grid")[0]
    # The same main table as the results file, row for row.
    main_rows = [line for line in results_table.splitlines() if line.startswith("| sasrec | ") and "± " in line]
    assert main_rows and all(line in markdown for line in main_rows)
    assert "| sasrec | id-only | reference | 2 | 0.0500 ± 0.0000 |" in markdown
    assert "+19.0%" in markdown  # signals' test Recall@20 (0.125) over ID-only's (0.105)
    assert FINGERPRINT in markdown and "Test CPU Model 1" in markdown
    section = markdown[markdown.index("## Experiment:"):markdown.index("## Provenance")]
    assert "0.3000" not in section and "0.3100" not in section  # the unchosen setting's test figures appear nowhere
    page = (tmp_path / "report" / "report.html").read_text()
    assert "Experiment: chains · study (settings chosen on validation)" in page and "data:image/png;base64," in page
    assert (tmp_path / "report" / "experiment_study.png").stat().st_size > 0


def test_a_summary_of_the_old_runner_is_refused_with_one_clear_line(tmp_path, capsys):
    dataset = tmp_path / "beauty"
    assert lamar(["prepare", "--source", "p5", "--path", str(tiny_p5_layout(tmp_path / "raw", users=6, items=8)),
                  "--out", str(dataset)]) == 0
    old = tmp_path / "beauty_experiment.json"
    old.write_text(json.dumps({"summary": {"sasrec": {"id-only": {"seeds": [0]}}}}))
    capsys.readouterr()
    assert lamar(["report", "--dataset", str(dataset), "--experiment", str(old), "--out", str(tmp_path / "r")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lamar report: error:")]
    assert len(errors) == 1 and "is not a results file of benchmarks/experiment.py" in errors[0]
    assert "split_fingerprint" in errors[0]


def test_the_chart_has_one_panel_per_backbone_with_a_gap_for_a_missing_variant():
    rows = []
    for backbone in ("sasrec", "gru4rec"):
        for variant, mean in (("id-only", 0.10), ("signals", 0.12)):
            missing = backbone == "gru4rec" and variant == "signals"
            rows.append({"backbone": backbone, "variant": variant, "missing": missing,
                         "test": {"recall@20": mean, "recall@20_std": 0.01}})
    figure = recall_figure(experiment_chart_groups({"rows": rows}), "title")
    assert [axis.get_title() for axis in figure.axes] == ["sasrec", "gru4rec"]
    assert [len(axis.patches) for axis in figure.axes] == [2, 1]  # the missing variant has no bar
    assert [text.get_text() for text in figure.axes[0].texts] == ["+20.0%"]
    assert [text.get_text() for text in figure.axes[1].texts] == ["missing"]


def test_render_report_without_experiments_has_no_experiment_section(tmp_path):
    html_path, md_path = render_report(ReportInputs(title="t"), tmp_path)
    assert "Experiment:" not in md_path.read_text() and "Experiment:" not in html_path.read_text()
