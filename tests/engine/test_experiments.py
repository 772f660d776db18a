"""Experiments end to end on real X-rays: the grid and baselines, the report checked against the runs' own
summaries, valid figures, skipping finished runs, resuming an interrupted one, and the command line."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics

import pytest
from PIL import Image

from helpers import tiny_config
from ikd_gui.engine.errors import IKDError
from ikd_gui.engine.experiments import ExperimentObserver, ExperimentSpec, Manifest, run_experiment
from ikd_gui.engine.runs import read_metrics
from ikd_gui.engine.training import CancelToken, train

pytest.importorskip("matplotlib")

SIZE = 32
ROUNDING = 0.0005 + 1e-9  # the report rounds to 3 decimals


class Recorder(ExperimentObserver):
    """Records the experiment's events; cancels during `cancel_at` = (run name, epoch) when given."""

    def __init__(self, cancel: CancelToken | None = None, cancel_at: tuple[str, int] | None = None):
        self.started, self.skipped, self.ended, self.report = [], [], [], None
        self.cancel, self.cancel_at, self.current = cancel, cancel_at, None

    def on_run_start(self, index, total, name, resuming):
        self.started.append((index, total, name, resuming))
        self.current = name

    def on_run_skipped(self, index, total, name, status):
        self.skipped.append((name, status))

    def on_run_end(self, index, total, name, result):
        self.ended.append((name, result.status))

    def on_batch(self, event):
        if self.cancel_at == (self.current, event.epoch):
            self.cancel.cancel()

    def on_report(self, markdown, html):
        self.report = (markdown, html)


@pytest.fixture(scope="module")
def data_with_test(tmp_path_factory, demo_data):
    """40 demo images per class in the Kermany layout: 32 train and 8 test (so test metrics appear). Few
    images keep the 12-run experiment quick: 3 steps per epoch at batch 16."""
    root = tmp_path_factory.mktemp("demo-with-test")
    for class_dir in sorted((demo_data / "chest_xray" / "train").iterdir()):
        for index, image in enumerate(sorted(class_dir.iterdir())[:40]):
            folder = root / ("test" if index % 5 == 0 else "train") / class_dir.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / image.name).symlink_to(image)
    return root


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, data_with_test):
    # A resnet18 teacher (8 swap positions with a resnet18 student, like resnet34) is the cheapest to train.
    out = tmp_path_factory.mktemp("teacher")
    result = train(tiny_config(data_with_test, out, mode="teacher", image_size=SIZE, val_fraction=0.2, name="teacher"))
    return result.best_checkpoint


def tiny_spec(data, teacher, out, **overrides) -> ExperimentSpec:
    values = dict(data=str(data), teacher=str(teacher), student_arch="resnet18", schedules=["uniform", "linear"],
                  p0=[0.2, 0.8], seeds=2, epochs=1, image_size=SIZE, batch_size=16, val_fraction=0.2, device="cpu",
                  out=str(out), name="tiny")
    values.update(overrides)
    return ExperimentSpec(**values)


@pytest.fixture(scope="module")
def experiment(tmp_path_factory, data_with_test, teacher):
    spec = tiny_spec(data_with_test, teacher, tmp_path_factory.mktemp("experiments"))
    recorder = Recorder()
    result = run_experiment(spec, recorder)
    return spec, result, recorder


def test_experiment_trains_the_grid_and_the_baselines(experiment):
    spec, result, recorder = experiment
    assert result.status == "completed" and result.statuses == {"completed": 12}
    # 2 seeds x (student + kd + 2 schedules x 2 p0), announced as "run i of 12".
    assert [(i, total) for i, total, _, _ in recorder.started] == [(i, 12) for i in range(1, 13)]
    assert [name for name, _ in recorder.ended][:6] == ["student-seed0", "kd-seed0", "ikd-uniform-p0.2-seed0",
                                                         "ikd-uniform-p0.8-seed0", "ikd-linear-p0.2-seed0",
                                                         "ikd-linear-p0.8-seed0"]
    manifest = json.loads((result.directory / "experiment.json").read_text())
    assert manifest["spec"]["p0"] == [0.2, 0.8] and len(manifest["runs"]) == 12
    configs = []
    for run in manifest["runs"]:
        assert run["status"] == "completed"
        config = json.loads((result.directory / run["folder"] / "config.json").read_text())
        assert config["seed"] == run["seed"] and config["mode"] == run["mode"]
        configs.append(config)
    # Same split and budget for everyone: only the seed, mode and schedule differ.
    assert {(c["split_seed"], c["val_fraction"], c["epochs"], c["image_size"], c["batch_size"]) for c in configs} \
        == {(0, 0.2, 1, SIZE, 16)}
    summaries = [json.loads((result.directory / r["folder"] / "summary.json").read_text()) for r in manifest["runs"]]
    assert len({json.dumps(s["counts"]) for s in summaries}) == 1
    assert recorder.report == (result.directory / "report.md", result.directory / "report.html")


def _results_table(markdown: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header and rows (by configuration) of the first table after the Results heading."""
    section = markdown.split("## Results", 1)[1]
    table = next(block for block in section.split("\n\n") if block.startswith("|"))
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()]
    return cells[0], {row[0]: row for row in cells[2:]}


def test_report_table_matches_the_runs_own_summaries(experiment):
    spec, result, _ = experiment
    header, rows = _results_table((result.directory / "report.md").read_text())
    assert header[:2] == ["configuration", "runs"] and "test bal. acc." in header

    # Group the run folders by configuration from their own config.json, independently of the manifest.
    groups: dict[str, list[dict]] = {}
    for folder in (result.directory / "runs").iterdir():
        config = json.loads((folder / "config.json").read_text())
        label = {"student": "student alone", "kd": "classic KD"}.get(config["mode"]) \
            or f"IKD {config['schedule']}, p0 {config['p0']:g}"
        groups.setdefault(label, []).append(json.loads((folder / "summary.json").read_text()))
    assert set(rows) == set(groups) and len(groups) == 6

    columns = {"val acc.": ("best_val", "accuracy"), "val bal. acc.": ("best_val", "balanced_accuracy"),
               "val AUC": ("best_val", "auc"), "test acc.": ("test", "accuracy"),
               "test bal. acc.": ("test", "balanced_accuracy"), "test AUC": ("test", "auc")}
    for label, summaries in groups.items():
        row = dict(zip(header, rows[label]))
        assert row["runs"] == "2"
        for column, (split, metric) in columns.items():
            values = [s[split][metric] for s in summaries]
            mean, std = re.fullmatch(r"(\S+) ± (\S+)", row[column]).groups()
            assert float(mean) == pytest.approx(statistics.mean(values), abs=ROUNDING)
            assert float(std) == pytest.approx(statistics.stdev(values), abs=ROUNDING)

    reference = [s["test"]["balanced_accuracy"] for s in groups["student alone"]]
    delta_column = next(h for h in header if h.startswith("Δ"))
    for label, summaries in groups.items():
        if label == "student alone":
            continue
        values = [s["test"]["balanced_accuracy"] for s in summaries]
        difference = statistics.mean(values) - statistics.mean(reference)
        cell = dict(zip(header, rows[label]))[delta_column]
        assert float(cell.split()[0]) == pytest.approx(difference, abs=ROUNDING)
        smaller_than_spread = abs(difference) < max(statistics.stdev(values), statistics.stdev(reference))
        assert cell.endswith("(n.s.)") == smaller_than_spread
    report = (result.directory / "report.md").read_text()
    assert "over 2 seeds" in report


def test_figures_are_valid_images_embedded_in_the_html(experiment):
    _, result, _ = experiment
    figures = sorted((result.directory / "figures").glob("*.png"))
    assert [f.name for f in figures] == ["accuracy_vs_p0.png", "confusion.png", "learning_curves.png", "routing.png",
                                         "schedules.png"]
    for figure in figures:
        with Image.open(figure) as image:
            image.verify()
            assert image.format == "PNG" and min(image.size) > 100
    markdown = (result.directory / "report.md").read_text()
    assert all(f"](figures/{f.name})" in markdown for f in figures)
    page = (result.directory / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == len(figures)
    assert "figures/" not in page  # self-contained
    assert (result.directory / "results.csv").read_text().startswith("configuration,mode,schedule,p0,runs,")


def test_rerunning_skips_finished_runs(experiment):
    spec, result, _ = experiment
    folders = sorted((result.directory / "runs").iterdir())
    recorder = Recorder()
    again = run_experiment(spec, recorder)
    assert again.status == "completed" and recorder.started == []
    assert len(recorder.skipped) == 12 and {status for _, status in recorder.skipped} == {"completed"}
    assert sorted((result.directory / "runs").iterdir()) == folders


def test_interrupted_runs_resume_from_their_last_checkpoint_or_start_again(tmp_path, data_with_test, teacher):
    spec = tiny_spec(data_with_test, teacher, tmp_path, schedules=["linear"], p0=[0.5], seeds=1, epochs=2)
    cancel = CancelToken()
    first = run_experiment(spec, Recorder(cancel, cancel_at=("student-seed0", 2)), cancel)
    assert first.status == "cancelled" and first.report is None
    manifest = Manifest.load(first.directory)
    assert [e.status for e in manifest.entries] == ["cancelled", "pending", "pending"]
    student = manifest.run_folder(manifest.entries[0])
    assert (student / "checkpoints" / "last.pt").exists()

    # The student continues in its folder; the KD run is stopped before finishing an epoch.
    cancel = CancelToken()
    recorder = Recorder(cancel, cancel_at=("kd-seed0", 1))
    assert run_experiment(spec, recorder, cancel).status == "cancelled"
    assert [(name, resuming) for _, _, name, resuming in recorder.started] == [("student-seed0", True),
                                                                               ("kd-seed0", False)]
    assert [row["epoch"] for row in read_metrics(student)] == [1, 2]
    manifest = Manifest.load(first.directory)
    assert [e.status for e in manifest.entries] == ["completed", "cancelled", "pending"]
    stale = manifest.run_folder(manifest.entries[1])
    assert not (stale / "checkpoints" / "last.pt").exists()

    # Nothing of the KD run was worth keeping: it starts again, in a new folder.
    recorder = Recorder()
    assert run_experiment(spec, recorder).status == "completed"
    assert [(name, resuming) for _, _, name, resuming in recorder.started] == [("kd-seed0", False),
                                                                               ("ikd-linear-p0.5-seed0", False)]
    assert recorder.skipped == [("student-seed0", "completed")]
    assert not stale.exists() and len(list((first.directory / "runs").iterdir())) == 3


def test_the_same_folder_refuses_an_experiment_with_other_settings(experiment):
    spec, _, _ = experiment
    changed = ExperimentSpec(**{**spec.to_dict(), "epochs": 2})
    with pytest.raises(IKDError, match="other settings.*epochs"):
        run_experiment(changed)


@pytest.mark.parametrize("values, message", [
    ({"schedules": "uniform,sideways"}, "unsupported schedule 'sideways'"),
    ({"schedules": "fixed"}, "unsupported schedule 'fixed'"),
    ({"p0": "0.5,1.5"}, "p0 must be between 0 and 1"),
    ({"p0": "half"}, "p0 must be numbers"),
    ({"seeds": 0}, "at least 1"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"colour": "blue"}, "unknown experiment setting"),
])
def test_invalid_settings_are_one_line_errors(tmp_path, demo_data, values, message):
    with pytest.raises(IKDError, match=message):
        ExperimentSpec.from_dict({"data": str(demo_data), "teacher": "t.pt", "out": str(tmp_path), **values}).validate()


# ---------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    from ikd_gui.experiments_cli import add_experiment_parser

    parser = argparse.ArgumentParser(prog="ikd")
    add_experiment_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_cli_config_file_with_command_line_overrides(tmp_path, demo_data):
    from ikd_gui.experiments_cli import spec_from_args

    config = tmp_path / "exp.json"
    config.write_text(json.dumps({"data": "demo", "teacher": "teacher.pt", "student-arch": "resnet18",
                                  "schedules": ["uniform", "review"], "p0": [0.1, 0.9], "seeds": 3, "epochs": 4}))
    args = _parser().parse_args(["experiment", "--config", str(config), "--epochs", "2", "--p0", "0.3,0.6",
                                 "--image-size", "48"])
    spec = spec_from_args(args)
    assert (spec.schedules, spec.p0, spec.seeds, spec.epochs, spec.image_size) == (["uniform", "review"], [0.3, 0.6],
                                                                                   3, 2, 48)
    assert spec.data == str(tmp_path / "demo") and spec.teacher == str(tmp_path / "teacher.pt")  # relative to the file


def test_cli_without_matplotlib_says_so_before_running_anything(tmp_path, demo_data, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "matplotlib" else real_find_spec(name, *rest))
    args = _parser().parse_args(["experiment", "--data", str(demo_data), "--teacher", "t.pt", "--out", str(tmp_path)])
    with pytest.raises(IKDError, match=r"matplotlib.*pip install 'ikd-gui\[report\]'"):
        args.func(args)
    assert list(tmp_path.iterdir()) == []


def test_cli_resume_of_a_finished_experiment_rewrites_the_report(experiment, capsys):
    _, result, _ = experiment
    args = _parser().parse_args(["experiment", "--resume", str(result.directory.parent), "--quiet"])
    assert args.func(args) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(result.directory / "report.md")
    assert "completed: 12 completed" in captured.err
