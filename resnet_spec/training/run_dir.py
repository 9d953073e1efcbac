"""The run directory every trainer writes, whatever the backend:

    RUN_DIR/
      spec.yaml              the validated spec as given (with overrides applied)
      run.json               backend, architecture hash, data source, fitted preprocessor
      metrics.csv            one row per epoch
      metrics.jsonl          the same, one JSON object per line
      events.out.tfevents.*  TensorBoard scalars (tensorboardX; no TensorFlow needed)
      curves.png             loss and accuracy curves
      checkpoint/            the latest checkpoint (backend files + state.json with their digests)
      checkpoint.previous/   the one before it (used when the latest one is damaged)
      checkpoint-best/       with validation data: the epoch of the best validation accuracy
                             (ties: the lower validation loss, then the earlier epoch)
      result.json            final test accuracy and where everything is
      run.lock               while a train runs: its pid (an exclusive lock, see .run_state)

Only the chief process (rank 0) creates and writes it (:meth:`RunDir.create`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import loader
from ..atomic import atomic_path
from . import events
from .events import EventWriter

COLUMNS = ["epoch", "step", "learning_rate", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]


@dataclass
class RunDir:
    path: Path
    tensorboard: bool = True
    _writer: EventWriter | None = field(default=None, init=False, repr=False)
    _purge_step: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def create(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint"

    @property
    def best(self) -> Path:
        return self.path / "checkpoint-best"

    def write_spec(self, spec_data: dict[str, Any]) -> None:
        self.create()
        with atomic_path(self.path / "spec.yaml") as tmp:
            # The loader's own dumper: yaml.safe_dump follows YAML 1.1 and writes strings like 1e5 bare,
            # which the loader (YAML 1.2 numbers, as JSON) would read back as floats.
            tmp.write_text(loader.dump_yaml(spec_data), encoding="utf-8")

    def history(self) -> list[dict[str, Any]]:
        file = self.path / "metrics.jsonl"
        if not file.exists():
            return []
        return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]

    def truncate_history(self, epochs: int, step: int) -> None:
        """On resume from ``step``: forget the epochs logged after the checkpoint's ``epochs``, and
        have TensorBoard forget the scalars logged after ``step``."""
        kept = [row for row in self.history() if row["epoch"] <= epochs]
        with atomic_path(self.path / "metrics.jsonl") as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")
        self._rewrite_csv(kept)
        self.close()  # the next scalars go to a new event file, which starts with the purge
        self._purge_step = step + 1
        if any(self.path.glob("events.out.tfevents.*")):
            events.truncate(self.path, step)

    def log_epoch(self, row: dict[str, Any]) -> None:
        self.create()
        row = {key: row.get(key) for key in COLUMNS}
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        self._rewrite_csv(self.history())
        if self.tensorboard:
            self._scalars(row)
        self.plot()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _rewrite_csv(self, rows: list[dict[str, Any]]) -> None:
        with atomic_path(self.path / "metrics.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)

    def _scalars(self, row: dict[str, Any]) -> None:
        if self._writer is None:
            self._writer = EventWriter(self.path, self._purge_step)
        values = {key: float(row[key]) for key in COLUMNS[2:-1] if row.get(key) is not None}
        self._writer.scalars(int(row["step"]), values)

    def plot(self) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.history()
        epochs = [r["epoch"] for r in rows]
        figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
        for axis, key, title in ((loss_axis, "loss", "loss"), (accuracy_axis, "accuracy", "accuracy")):
            axis.plot(epochs, [r[key] for r in rows], marker="o", label="training")
            if any(r.get(f"val_{key}") is not None for r in rows):
                axis.plot(epochs, [r.get(f"val_{key}") for r in rows], marker="o", label="validation")
            axis.set_xlabel("epoch")
            axis.set_title(title)
            axis.grid(alpha=0.3)
            axis.legend()
        figure.tight_layout()
        target = self.path / "curves.png"
        with atomic_path(target) as tmp:
            figure.savefig(tmp, dpi=100, format="png")
        plt.close(figure)
        return target

    def write_result(self, result: dict[str, Any]) -> None:
        with atomic_path(self.path / "result.json") as tmp:
            tmp.write_text(json.dumps(result, indent=2), encoding="utf-8")
