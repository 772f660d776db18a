"""The experiment report: a results table with honest statistics, plots, `report.md`, a self-contained
`report.html` (figures embedded as base64) and `results.csv` (the table's numbers at full precision).

Everything is read back from the run folders (summary.json, metrics.csv, routing.csv), so a report can be
rebuilt at any time. Plots use matplotlib's object-oriented API on the Agg canvas: no display, no pyplot
state, safe in a worker thread. matplotlib is an optional dependency: pip install 'ikd-gui[report]'.
"""

from __future__ import annotations

import base64
import csv
import html
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import IKDError
from .hybrid import check_architectures
from .runs import read_metrics, read_routing, read_summary
from .schedules import Schedule

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .experiments import Manifest, RunEntry, RunPlan

SPLITS = {"best_val": "val", "test": "test"}  # summary.json key -> name in the report
METRICS = {"accuracy": "acc.", "balanced_accuracy": "bal. acc.", "auc": "AUC"}
COMPARED_METRIC = "balanced_accuracy"  # the monitor runs select their best epoch by
REFERENCE = "student alone"
HEATMAP_COLUMNS = 200  # routing steps are averaged into at most this many columns
DPI = 100
FIGURES = "figures"


def require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is None:
        raise IKDError("experiment reports need matplotlib, which is not installed: pip install 'ikd-gui[report]'")


# ---------------------------------------------------------------------------------------------------------
# Results and statistics


@dataclass
class RunResult:
    plan: RunPlan
    folder: Path
    summary: dict

    def metric(self, split: str, metric: str) -> float | None:
        value = (self.summary.get(split) or {}).get(metric)
        return None if value is None else float(value)


@dataclass
class Statistic:
    """Values of one metric over the seeds of a configuration."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (n - 1): None from a single value, which shows no spread at all."""
        return float(np.std(self.values, ddof=1)) if self.n >= 2 else None

    def text(self) -> str:
        if not self.values:
            return "—"
        return f"{self.mean:.3f}" if self.std is None else f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class Configuration:
    """The runs of one configuration (an IKD schedule and p0, or a baseline), one per seed."""

    label: str
    mode: str
    schedule: str | None
    p0: float | None
    runs: list[RunResult] = field(default_factory=list)
    without_result: list[str] = field(default_factory=list)  # names of runs that failed or never finished

    def statistic(self, split: str, metric: str) -> Statistic:
        values = [run.metric(split, metric) for run in self.runs]
        return Statistic([v for v in values if v is not None])


def collect(manifest: Manifest) -> list[Configuration]:
    """Configurations in the grid's order (baselines first), each with its finished runs' summaries."""
    configurations: dict[str, Configuration] = {}
    for entry in manifest.entries:
        plan = entry.plan
        configuration = configurations.setdefault(
            plan.configuration, Configuration(plan.configuration, plan.mode, plan.schedule, plan.p0))
        folder = manifest.run_folder(entry)
        summary = read_summary(folder) if folder else {}
        if entry.status in ("completed", "early_stopped") and summary.get("best_val"):
            configuration.runs.append(RunResult(plan, folder, summary))
        else:
            configuration.without_result.append(plan.name)
    return list(configurations.values())


def difference_from_reference(statistic: Statistic, reference: Statistic) -> str:
    """Mean difference, marked "n.s." (not significant) when smaller than the larger of the two standard
    deviations: seed-to-seed noise alone could explain it."""
    if statistic.mean is None or reference.mean is None:
        return "—"
    difference = statistic.mean - reference.mean
    if statistic.std is None or reference.std is None:
        return f"{difference:+.3f} (one seed: no spread)"
    return f"{difference:+.3f}" + (" (n.s.)" if abs(difference) < max(statistic.std, reference.std) else "")


def report_split(configurations: list[Configuration]) -> str:
    """The split the headline numbers come from: test when the data has one, else validation."""
    has_test = any(run.summary.get("test") for c in configurations for run in c.runs)
    return "test" if has_test else "best_val"


# ---------------------------------------------------------------------------------------------------------
# Figures


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _colours(count: int) -> list:
    from matplotlib import colormaps

    return [colormaps["viridis"](x) for x in np.linspace(0.0, 0.85, max(count, 1))]


def _baselines(configurations: list[Configuration]) -> list[Configuration]:
    return [c for c in configurations if c.mode != "ikd"]


BASELINE_STYLES = {"student": ("dimgray", "--"), "kd": ("firebrick", ":")}


def accuracy_figure(configurations: list[Configuration], schedules: list[str], split: str) -> Figure:
    figure = _new_figure(9.0, 3.6)
    for axes, metric in zip(figure.subplots(1, 2), ("accuracy", "balanced_accuracy")):
        for baseline in _baselines(configurations):
            statistic = baseline.statistic(split, metric)
            if statistic.mean is None:
                continue
            colour, style = BASELINE_STYLES[baseline.mode]
            axes.axhline(statistic.mean, color=colour, linestyle=style, label=baseline.label)
            if statistic.std is not None:
                axes.axhspan(statistic.mean - statistic.std, statistic.mean + statistic.std, color=colour, alpha=0.12)
        for schedule, colour in zip(schedules, _colours(len(schedules))):
            points = [(c.p0, c.statistic(split, metric)) for c in configurations if c.schedule == schedule]
            points = [(p0, s) for p0, s in sorted(points) if s.mean is not None]
            axes.errorbar([p0 for p0, _ in points], [s.mean for _, s in points],
                          yerr=[s.std or 0.0 for _, s in points], color=colour, marker="o", capsize=3, label=schedule)
        axes.set_xlabel("p0 (initial probability of a student block)")
        axes.set_ylabel(f"{SPLITS[split]} {METRICS[metric]}")
        axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.suptitle(f"{SPLITS[split]} accuracy against p0 (mean ± std over seeds; bands: baselines ± std)",
                    fontsize=10)
    return figure


CURVES = {"train_loss": "training loss", "val_loss": "validation loss", "val_balanced_acc": "validation bal. acc."}


def _mean_curve(runs: list[RunResult], column: str) -> tuple[list[float], list[float]]:
    """Per-epoch mean over the runs that logged that epoch."""
    by_epoch: dict[float, list[float]] = {}
    for run in runs:
        for row in read_metrics(run.folder):
            if row.get(column) is not None:
                by_epoch.setdefault(row["epoch"], []).append(row[column])
    epochs = sorted(by_epoch)
    return epochs, [float(np.mean(by_epoch[e])) for e in epochs]


def learning_curves_figure(configurations: list[Configuration], schedules: list[str]) -> Figure:
    from matplotlib.ticker import MaxNLocator

    figure = _new_figure(3.2 * len(schedules) + 1.6, 2.2 * len(CURVES) + 0.5)
    grid = np.asarray(figure.subplots(len(CURVES), len(schedules), sharex=True, squeeze=False))
    for column, schedule in enumerate(schedules):
        ikd = [c for c in configurations if c.schedule == schedule]
        for row, (key, title) in enumerate(CURVES.items()):
            axes = grid[row, column]
            for baseline in _baselines(configurations):
                colour, style = BASELINE_STYLES[baseline.mode]
                axes.plot(*_mean_curve(baseline.runs, key), color=colour, linestyle=style, marker=".",
                          label=baseline.label)
            for configuration, colour in zip(ikd, _colours(len(ikd))):
                axes.plot(*_mean_curve(configuration.runs, key), color=colour, marker="o", markersize=3,
                          label=f"p0 {configuration.p0:g}")
            axes.grid(alpha=0.3)
            if column == 0:
                axes.set_ylabel(title)
            if row == 0:
                axes.set_title(schedule)
            if row == len(CURVES) - 1:
                axes.set_xlabel("epoch")
                axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.legend(*grid[0, 0].get_legend_handles_labels(), loc="outside right upper", fontsize=8)
    figure.suptitle("learning curves (mean over seeds)", fontsize=10)
    return figure


def schedules_figure(schedules: list[str], p0_values: list[float], cycles: int) -> Figure:
    figure = _new_figure(3.2 * len(schedules) + 0.6, 2.8)
    for axes, name in zip(np.atleast_1d(figure.subplots(1, len(schedules), sharey=True)), schedules):
        for p0, colour in zip(p0_values, _colours(len(p0_values))):
            t, p = Schedule(name, p0, cycles).curve()
            axes.plot(t, p, color=colour, label=f"p0 {p0:g}")
        axes.set_title(name)
        axes.set_xlabel("training progress t")
        axes.set_ylim(-0.02, 1.02)
        axes.grid(alpha=0.3)
    figure.axes[0].set_ylabel("p(t): probability of a student block")
    figure.axes[0].legend(fontsize=7)
    return figure


def routing_share(masks: np.ndarray, columns: int = HEATMAP_COLUMNS) -> np.ndarray:
    """[positions x columns]: the fraction of steps in each column that used the student block."""
    edges = np.unique(np.linspace(0, len(masks), min(columns, len(masks)) + 1).round().astype(int))
    return np.stack([masks[a:b].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])], axis=1)


def routing_figure(runs: list[RunResult], position_labels: list[str]) -> Figure:
    figure = _new_figure(9.0, 0.35 * len(position_labels) * len(runs) + 0.9 * len(runs) + 0.4)
    grid = np.atleast_1d(figure.subplots(len(runs), 1, squeeze=False)[:, 0])
    for axes, run in zip(grid, runs):
        steps, _, _, masks = read_routing(run.folder)  # a finished IKD run has at least one step
        image = axes.imshow(routing_share(masks.astype(np.float32)), aspect="auto", interpolation="nearest",
                            vmin=0.0, vmax=1.0, cmap="viridis",
                            extent=(steps[0], steps[-1] + 1, len(position_labels), 0))
        axes.set_yticks(np.arange(len(position_labels)) + 0.5, position_labels, fontsize=7)
        axes.set_title(run.plan.name, fontsize=9)
        axes.set_xlabel("step")
    figure.colorbar(image, ax=list(grid), label="share of steps on the student block")
    return figure


def confusion_figure(runs: list[tuple[str, RunResult]], split: str) -> Figure:
    figure = _new_figure(3.3 * len(runs), 3.3)
    for axes, (title, run) in zip(np.atleast_1d(figure.subplots(1, len(runs))), runs):
        matrix = np.asarray(run.summary[split]["confusion_matrix"])
        classes = run.summary["classes"]
        recall = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)  # colour: share of each true class
        axes.imshow(recall, vmin=0.0, vmax=1.0, cmap="Blues")
        for (i, j), count in np.ndenumerate(matrix):
            axes.text(j, i, str(count), ha="center", va="center", color="white" if recall[i, j] > 0.5 else "black")
        axes.set_xticks(range(len(classes)), classes, fontsize=8)
        axes.set_yticks(range(len(classes)), classes, fontsize=8)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(f"{title}\n{run.plan.name}", fontsize=9)
    figure.suptitle(f"confusion matrices ({SPLITS[split]})", fontsize=10)
    return figure


# ---------------------------------------------------------------------------------------------------------
# The document: a list of blocks rendered to Markdown and to HTML


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Image:
    file: str  # relative to the report
    caption: str


def render_markdown(blocks: list) -> str:
    lines = []
    for block in blocks:
        if isinstance(block, Table):
            lines += ["| " + " | ".join(block.header) + " |", "|" + "---|" * len(block.header)]
            lines += ["| " + " | ".join(row) + " |" for row in block.rows]
        elif isinstance(block, Image):
            lines.append(f"![{block.caption}]({block.file})")
        else:
            level, text = block
            lines.append({"h1": "# ", "h2": "## ", "p": ""}[level] + text)
        lines.append("")
    return "\n".join(lines)


HTML_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:0.9em;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}img{max-width:100%}figcaption{color:#555}"""


def render_html(blocks: list, title: str, folder: Path) -> str:
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{HTML_STYLE}</style></head><body>"]
    for block in blocks:
        if isinstance(block, Table):
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block.header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in block.rows]
            parts.append("</table>")
        elif isinstance(block, Image):
            data = base64.b64encode((folder / block.file).read_bytes()).decode("ascii")
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(block.caption)}'>"
                         f"<figcaption>{html.escape(block.caption)}</figcaption></figure>")
        else:
            level, text = block
            parts.append(f"<{level}>{html.escape(text)}</{level}>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------------------
# The report


def results_table(configurations: list[Configuration], split: str) -> Table:
    splits = [s for s in SPLITS if s == "best_val" or split == "test"]
    header = ["configuration", "runs"] + [f"{SPLITS[s]} {label}" for s in splits for label in METRICS.values()]
    header.append(f"Δ {SPLITS[split]} {METRICS[COMPARED_METRIC]} vs {REFERENCE}")
    reference = next(c for c in configurations if c.label == REFERENCE).statistic(split, COMPARED_METRIC)
    rows = []
    for configuration in configurations:
        runs = str(len(configuration.runs))
        if configuration.without_result:
            runs += f" of {len(configuration.runs) + len(configuration.without_result)}"
        cells = [configuration.statistic(s, m).text() for s in splits for m in METRICS]
        difference = ("reference" if configuration.label == REFERENCE
                      else difference_from_reference(configuration.statistic(split, COMPARED_METRIC), reference))
        rows.append([configuration.label, runs, *cells, difference])
    return Table(header, rows)


def write_results_csv(path: Path, configurations: list[Configuration]) -> None:
    columns = ["configuration", "mode", "schedule", "p0", "runs"]
    columns += [f"{SPLITS[s]}_{m}_{stat}" for s in SPLITS for m in METRICS for stat in ("mean", "std")]
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        for c in configurations:
            numbers = []
            for s in SPLITS:
                for m in METRICS:
                    statistic = c.statistic(s, m)
                    numbers += ["" if v is None else f"{v:.6g}" for v in (statistic.mean, statistic.std)]
            p0 = "" if c.p0 is None else f"{c.p0:g}"
            writer.writerow([c.label, c.mode, c.schedule or "", p0, len(c.runs), *numbers])


def _describe_data(run: RunResult) -> str:
    counts = run.summary.get("counts", {})
    splits = "; ".join(f"{split} {sum(per_class.values())} ({', '.join(f'{k} {v}' for k, v in per_class.items())})"
                       for split, per_class in counts.items())
    return f"Images: {splits}. Validation set: {run.summary.get('val_origin', 'unknown')}."


def write_report(manifest: Manifest) -> tuple[Path, Path]:
    """report.md, report.html, results.csv and figures/*.png in the experiment folder; returns (md, html)."""
    spec = manifest.spec
    directory = manifest.directory
    configurations = collect(manifest)
    finished = [run for c in configurations for run in c.runs]
    if not finished:
        raise IKDError(f"no run of {directory.name} finished with a result: nothing to report")
    split = report_split(configurations)
    figures = directory / FIGURES
    figures.mkdir(exist_ok=True)

    def save(figure: Figure, name: str, caption: str) -> Image:
        figure.savefig(figures / name)
        return Image(f"{FIGURES}/{name}", caption)

    ikd_runs = [run for c in configurations if c.mode == "ikd" for run in c.runs]
    middle_p0 = sorted(spec.p0)[len(spec.p0) // 2]
    routed = [next((r for r in ikd_runs if r.plan.schedule == s and r.plan.p0 == middle_p0), None)
              for s in spec.schedules]
    routed = [run for run in routed if run is not None]
    positions = [p.label for p in check_architectures(manifest.teacher_arch, spec.student_arch)]
    # The best run is chosen on validation, like each run's best epoch; the test split never chooses anything.
    best = max(ikd_runs, key=lambda run: run.metric("best_val", COMPARED_METRIC)) if ikd_runs else None
    same_seed_baselines = [(c.label, run) for c in _baselines(configurations) for run in c.runs
                           if best is not None and run.plan.seed == best.plan.seed]

    seeds = f"{spec.seeds} seed{'s' if spec.seeds != 1 else ''}"
    blocks: list = [
        ("h1", f"Experiment {spec.name}"),
        ("p", f"Student {spec.student_arch} trained from teacher {Path(spec.teacher).name} "
              f"({manifest.teacher_arch}) on {spec.data}: {len(spec.schedules)} schedules x {len(spec.p0)} p0 "
              f"values x {seeds} in IKD mode, plus the student alone and classic KD with the same {seeds}. Every run: "
              f"{spec.image_size} px, {spec.epochs} epochs (no early stopping), batch {spec.batch_size}, learning rate "
              f"{spec.lr:g}, {spec.labels} labels, review cycles {spec.cycles}, the same validation split (fraction "
              f"{spec.val_fraction:g}, split seed {spec.split_seed}). " + _describe_data(finished[0])),
        ("h2", "Results"),
        ("p", f"Mean ± sample standard deviation over {seeds} (0 to {spec.seeds - 1}; runs counts the seeds with a "
              "result). Validation metrics are those of each run's best epoch, selected on validation balanced "
              "accuracy" + ("; test metrics are of that same checkpoint, on images no run selected anything on. "
                            if split == "test" else
                            "; the data has no test split, so these validation numbers are optimistic. ")
              + f"Δ is the difference of the mean {SPLITS[split]} balanced accuracy from the student trained alone; "
                "(n.s.) marks a difference smaller than the larger of the two standard deviations, which seed-to-seed "
                f"noise alone could explain. With {seeds}, the standard deviations are themselves rough: read every "
                "difference as tentative."),
        results_table(configurations, split),
    ]
    without_result = [name for c in configurations for name in c.without_result]
    if without_result:
        blocks.append(("p", f"Runs without a result, left out of the statistics: {', '.join(without_result)}."))
    blocks += [
        ("h2", "Accuracy against p0"),
        save(accuracy_figure(configurations, spec.schedules, split), "accuracy_vs_p0.png",
             f"{SPLITS[split]} accuracy and balanced accuracy against p0, per schedule"),
        ("h2", "Learning curves"),
        save(learning_curves_figure(configurations, spec.schedules), "learning_curves.png",
             "training loss, validation loss and validation balanced accuracy per epoch, per schedule"),
        ("h2", "Schedules"),
        save(schedules_figure(spec.schedules, spec.p0, spec.cycles), "schedules.png",
             "p(t), the probability that a swap position uses the student block, for each schedule and p0"),
    ]
    if routed:
        blocks += [("h2", "Routing"),
                   save(routing_figure(routed, positions), "routing.png",
                        f"routing of one run per schedule (p0 {middle_p0:g}, from routing.csv): the share of steps "
                        "in which each swap position used the student block (the rest used the teacher's blocks)")]
    if best is not None:
        blocks += [("h2", "Confusion matrices"),
                   save(confusion_figure([("best IKD run (on validation)", best)] + same_seed_baselines, split),
                        "confusion.png", f"{SPLITS[split]} confusion matrices of the best IKD run and of the "
                        f"baselines with the same seed ({best.plan.seed})")]
    blocks += [("h2", "Runs"),
               Table(["run", "status", "best epoch", "val bal. acc.", "test bal. acc.", "folder"],
                     [_run_row(manifest, entry) for entry in manifest.entries])]

    write_results_csv(directory / "results.csv", configurations)
    markdown, page = directory / "report.md", directory / "report.html"
    markdown.write_text(render_markdown(blocks))
    page.write_text(render_html(blocks, f"Experiment {spec.name}", directory))
    return markdown, page


def _run_row(manifest: Manifest, entry: RunEntry) -> list[str]:
    folder = manifest.run_folder(entry)
    summary = read_summary(folder) if folder else {}

    def balanced(split: str) -> str:
        value = (summary.get(split) or {}).get(COMPARED_METRIC)
        return "—" if value is None else f"{value:.3f}"

    best_epoch = summary.get("best_epoch")
    return [entry.plan.name, entry.status, "—" if best_epoch is None else str(best_epoch), balanced("best_val"),
            balanced("test"), entry.folder or "—"]
