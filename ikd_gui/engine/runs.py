"""The run folder: config, per-epoch metrics, per-step routing, checkpoints and summary.

    OUT/<timestamp>-<name>/
        config.json          the full training configuration
        metrics.csv          one row per epoch, appended as epochs end
        routing.csv          one row per step: step, epoch, p, mask as a 0/1 string per swap position
        checkpoints/last.pt  everything a resume needs, written atomically every epoch
        checkpoints/best.pt  the best epoch by the validation metric
        summary.json         status, best epoch and metrics, test metrics; rewritten atomically
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import IKDError

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.csv"
ROUTING_FILE = "routing.csv"
SUMMARY_FILE = "summary.json"
ROUTING_COLUMNS = ("step", "epoch", "p", "mask")


def write_json_atomically(path: Path, data: Any) -> None:
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        json.dump(data, stream, indent=2)
    os.replace(tmp, path)


class _CheckpointPaths:
    checkpoints: Path

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.pt"


class RunFolder(_CheckpointPaths):
    """Writes one run's logs. Rows are flushed as they are written, so a crash loses nothing logged."""

    def __init__(self, path: Path, metric_columns: list[str]):
        self.path = path
        self.checkpoints = path / "checkpoints"
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        self._metrics = _open_csv(path / METRICS_FILE, metric_columns)
        self._routing = _open_csv(path / ROUTING_FILE, list(ROUTING_COLUMNS))

    @classmethod
    def create(cls, out: str | os.PathLike, name: str, config: dict, metric_columns: list[str]) -> "RunFolder":
        out = Path(out).expanduser()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "run"
        try:
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{stamp}-{slug}"
            suffix = 1
            while path.exists():
                suffix += 1
                path = out / f"{stamp}-{slug}-{suffix}"
            path.mkdir()
            write_json_atomically(path / CONFIG_FILE, config)
        except OSError as exc:
            raise IKDError(f"cannot write the run folder in {out}: {exc.strerror or exc}") from exc
        return cls(path, metric_columns)

    @classmethod
    def reopen(cls, path: Path, metric_columns: list[str], keep_epochs: int, keep_steps: int) -> "RunFolder":
        """Open an existing run for resuming, dropping log rows written after its last checkpoint."""
        _truncate_csv(path / METRICS_FILE, lambda row: int(row["epoch"]) <= keep_epochs)
        _truncate_csv(path / ROUTING_FILE, lambda row: int(row["step"]) < keep_steps)
        return cls(path, metric_columns)

    def log_epoch(self, row: dict) -> None:
        self._metrics[1].writerow(row)
        self._metrics[0].flush()

    def log_step(self, step: int, epoch: int, p: float, mask: Iterable[int]) -> None:
        self._routing[1].writerow(_routing_row(step, epoch, p, mask))

    def write_summary(self, summary: dict) -> None:
        write_json_atomically(self.path / SUMMARY_FILE, summary)

    def close(self) -> None:
        for stream, _ in (self._metrics, self._routing):
            stream.close()


def _open_csv(path: Path, columns: list[str]):
    """An append-mode, line-buffered CSV writer; the header is written when the file is new."""
    new = not path.exists() or path.stat().st_size == 0
    stream = open(path, "a", newline="", buffering=1)
    writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="ignore")
    if new:
        writer.writeheader()
    return stream, writer


def _routing_row(step: int, epoch: int, p: float, mask: Iterable[int]) -> dict:
    return {"step": step, "epoch": epoch, "p": f"{p:.6g}", "mask": "".join(str(int(m)) for m in mask)}


class SecondaryRankFolder(_CheckpointPaths):
    """The run folder as seen by a torchrun rank other than 0: it reads checkpoints and writes no logs, except
    its own routing.rankN.csv when auditing that every rank routes identically."""

    def __init__(self, path: Path, rank: int, audit_routing: bool, keep_steps: int | None = None):
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self._routing = None
        if audit_routing:
            routing = self.path / f"routing.rank{rank}.csv"
            if keep_steps is not None:
                _truncate_csv(routing, lambda row: int(row["step"]) < keep_steps)
            self._routing = _open_csv(routing, list(ROUTING_COLUMNS))

    def log_step(self, step: int, epoch: int, p: float, mask: Iterable[int]) -> None:
        if self._routing is not None:
            self._routing[1].writerow(_routing_row(step, epoch, p, mask))

    def log_epoch(self, row: dict) -> None:
        """Epoch rows are rank 0's to write."""

    def write_summary(self, summary: dict) -> None:
        """The summary is rank 0's to write."""

    def close(self) -> None:
        if self._routing is not None:
            self._routing[0].close()


def _complete_rows(path: Path) -> csv.DictReader:
    """A reader over the CSV's complete lines: a last line cut short by a crash (no newline) is dropped,
    since even its first field may be partial."""
    text = path.read_text()
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    return csv.DictReader(io.StringIO(text, newline=""))


def _truncate_csv(path: Path, keep) -> None:
    if not path.exists():
        return
    reader = _complete_rows(path)
    columns = reader.fieldnames or []
    rows = []
    for row in reader:
        try:
            if keep(row):
                rows.append(row)
        except (TypeError, ValueError):
            break
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(handle, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------
# Reading runs back (CLI, app history, monitor mode)


def is_run_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(run: str | os.PathLike) -> dict:
    path = Path(run) / CONFIG_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise IKDError(f"not a run folder (no readable {CONFIG_FILE}): {run}") from exc


def read_summary(run: str | os.PathLike) -> dict:
    try:
        return json.loads((Path(run) / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}


def _float_or_none(text: str) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def read_metrics(run: str | os.PathLike) -> list[dict[str, float | None]]:
    """Per-epoch rows with numeric values (None where empty)."""
    path = Path(run) / METRICS_FILE
    return _metric_rows(_complete_rows(path)) if path.exists() else []


def _metric_rows(rows: Iterable[dict[str, str]]) -> list[dict[str, float | None]]:
    numeric = [{k: _float_or_none(v) for k, v in row.items() if k is not None} for row in rows]
    return [row for row in numeric if row.get("epoch") is not None]


Routing = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # steps, epochs, p, masks [steps x positions]


def read_routing(run: str | os.PathLike) -> Routing:
    """(steps, epochs, p, masks [steps x positions] uint8) from routing.csv; masks have 0 columns outside ikd."""
    path = Path(run) / ROUTING_FILE
    return _routing_arrays(list(_complete_rows(path)) if path.exists() else [])


def _routing_arrays(rows: list[dict[str, str]]) -> Routing:
    masks = "".join(row["mask"] for row in rows)
    width = len(rows[0]["mask"]) if rows else 0
    mask_array = np.frombuffer(masks.encode(), np.uint8).reshape(len(rows), width) - ord("0")
    return (np.array([int(r["step"]) for r in rows], np.int64), np.array([int(r["epoch"]) for r in rows], np.int64),
            np.array([float(r["p"]) for r in rows], np.float64), mask_array)


class LogTail:
    """The complete rows appended to a CSV log since the previous read, while another process may still be
    writing it. A last line without its newline yet is left for the next read; only new bytes are read."""

    def __init__(self, path: Path):
        self.path = path
        self._offset = 0
        self._columns: list[str] | None = None
        self._file_id: tuple[int, int] | None = None

    def read(self) -> list[dict[str, str]] | None:
        """New rows (none while the file does not exist yet); None when the file was replaced or shortened since
        the previous read, as a resume does when it drops rows: the caller reads the log again from the start."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return []
        file_id = (stat.st_dev, stat.st_ino)
        if self._file_id is not None and (file_id != self._file_id or stat.st_size < self._offset):
            return None
        self._file_id = file_id
        if stat.st_size == self._offset:
            return []
        with open(self.path, "rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read(stat.st_size - self._offset)
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        lines = complete.decode().splitlines()
        if self._columns is None and lines:
            self._columns = next(csv.reader(lines[:1]))
            lines = lines[1:]
        return list(csv.DictReader(lines, fieldnames=self._columns)) if lines else []


class RunTail:
    """A run folder read as it is written (the app follows runs of other processes): each call returns only what
    was added since the previous one, starting with everything already there. None from `new_metrics` or
    `new_routing` means a log was rewritten (a resume dropped rows): make a new RunTail and start over."""

    def __init__(self, run: str | os.PathLike):
        self.path = Path(run)
        self._metrics = LogTail(self.path / METRICS_FILE)
        self._routing = LogTail(self.path / ROUTING_FILE)
        self._summary_stamp: tuple[int, int] | None = None

    def new_metrics(self) -> list[dict[str, float | None]] | None:
        rows = self._metrics.read()
        return None if rows is None else _metric_rows(rows)

    def new_routing(self) -> Routing | None:
        rows = self._routing.read()
        return None if rows is None else _routing_arrays(rows)

    def changed_summary(self) -> dict | None:
        """summary.json when it was written since the previous call (it is replaced atomically), else None."""
        try:
            stat = (self.path / SUMMARY_FILE).stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_ino, stat.st_mtime_ns)
        if stamp == self._summary_stamp:
            return None
        self._summary_stamp = stamp
        return read_summary(self.path)


def list_runs(out: str | os.PathLike) -> list[Path]:
    """Run folders directly below `out`, newest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted((p for p in out.iterdir() if is_run_folder(p)), key=lambda p: p.name, reverse=True)
