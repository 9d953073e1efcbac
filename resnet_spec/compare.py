"""``resnet-spec compare RUN...``: the learning curves of several training runs in one picture
and a table of their final metrics.

A run is the ``--out`` folder of ``resnet-spec train`` (:mod:`resnet_spec.training.run_dir`):
``metrics.jsonl`` (or, failing that, ``metrics.csv``) gives one row per epoch, ``result.json`` the
test accuracy once training finished, ``run.json`` the backend. Every file is checked as it is
read: a folder that is not a run, or a row that is not what the trainer writes, is a one-line
error naming the file and line before anything is drawn.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diagnostics import printable
from .plotting import PlotUnavailable, new_figure, output_problem, save
from .training.run_dir import COLUMNS

NAME, HELP = "compare", "learning curves of several training runs in one PNG, and a table of their final metrics"
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
RUN_FILE, RESULT_FILE = "run.json", "result.json"  # written by resnet_spec.training.commands.train
INTEGERS = ("epoch", "step")


class RunError(ValueError):
    """A folder that is not a readable run directory."""


@dataclass
class Run:
    path: Path
    label: str
    rows: list[dict[str, Any]]  # one per epoch, COLUMNS as keys
    backend: str | None
    result: dict[str, Any] | None  # result.json, once training finished

    def summary(self) -> dict[str, Any]:
        last = self.rows[-1]
        validated = [r for r in self.rows if _number(r.get("val_accuracy"))]
        best = max(validated, key=lambda r: r["val_accuracy"]) if validated else None
        result = self.result or {}
        return {
            "run": self.label, "path": str(self.path), "backend": self.backend, "epochs": last["epoch"],
            "steps": last["step"], "loss": last["loss"], "accuracy": last["accuracy"], "val_loss": last["val_loss"],
            "val_accuracy": last["val_accuracy"], "best_val_accuracy": best["val_accuracy"] if best else None,
            "best_epoch": best["epoch"] if best else None, "test_accuracy": result.get("test_accuracy"),
            "test_loss": result.get("test_loss"), "seconds": sum(r["seconds"] or 0.0 for r in self.rows),
        }  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs", nargs="+", type=Path, metavar="RUN", help="run directories written by `resnet-spec train`"
    )
    parser.add_argument("-o", "--output", type=Path, help="write the curves to this picture (NAME.png or NAME.svg)")
    parser.add_argument(
        "--label", action="append", default=[], help="a name for each run, in order (default: folder names)"
    )
    parser.add_argument(
        "--x", dest="x_axis", choices=("epoch", "step"), default="epoch", help="curves against epochs or steps"
    )
    parser.add_argument("--format", choices=("text", "json"), default="text", help="the table's format")


def run(args: argparse.Namespace) -> int:
    problem = _usage_problem(args)
    if problem:
        print(f"error: {printable(problem)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        runs = [read_run(path, label) for path, label in zip(args.runs, _labels(args.runs, args.label))]
    except RunError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_INVALID
    rows = [r.summary() for r in runs]
    if args.output:
        try:
            plot(runs, args.output, x_axis=args.x_axis)
        except PlotUnavailable as exc:
            print(f"error: {printable(exc)}", file=sys.stderr)
            return EXIT_USAGE
    if args.format == "json":
        print(json.dumps({"runs": rows, "plot": str(args.output) if args.output else None}, indent=2))
    else:
        print(render_table(rows))
        if args.output:
            print(
                "\n" + printable(f"wrote {args.output} ({len(runs)} run{'s' if len(runs) != 1 else ''}, loss and accuracy against {args.x_axis})")
            )
    return EXIT_OK


def _usage_problem(args: argparse.Namespace) -> str | None:
    if args.label and len(args.label) != len(args.runs):
        return f"{len(args.label)} --label for {len(args.runs)} runs; give one per run or none"
    resolved = [p.resolve() for p in args.runs]
    if len(set(resolved)) != len(resolved):
        return "a run is given twice"
    if args.output:
        if args.output.resolve() in {p / "curves.png" for p in resolved}:
            return f"{args.output} is a run's own curves.png (written by train); choose another name"
        return output_problem(args.output, [])
    return None


def _labels(paths: list[Path], given: list[str]) -> list[str]:
    if given:
        return given
    names = [p.resolve().name for p in paths]
    return names if len(set(names)) == len(names) else [str(p) for p in paths]


def read_run(path: Path, label: str) -> Run:
    """The run in ``path``; :class:`RunError` if it is not one or a file in it is not as train writes it."""
    if not path.is_dir():
        raise RunError(f"{path}: no such folder")
    jsonl, table = path / "metrics.jsonl", path / "metrics.csv"
    if not jsonl.is_file() and not table.is_file():
        hint = (
            "no epoch was logged yet" if (path / RUN_FILE).is_file() else "pass the --out folder of `resnet-spec train`"
        )
        raise RunError(f"{path}: not a run directory with metrics (no metrics.jsonl or metrics.csv); {hint}")
    rows = _read_jsonl(jsonl) if jsonl.is_file() else _read_csv(table)
    if not rows:
        raise RunError(f"{jsonl if jsonl.is_file() else table}: no epochs logged")
    meta = _read_object(path / RUN_FILE)
    result = _read_object(path / RESULT_FILE)
    backend = (meta or result or {}).get("backend")
    return Run(path, label, rows, backend if isinstance(backend, str) else None, result)


def _read_jsonl(file: Path) -> list[dict[str, Any]]:
    rows = []
    for number, line in enumerate(_text(file).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise RunError(f"{file}:{number}: not a JSON line ({exc.args[0]})") from None
        rows.append(_checked(row, file, number))
    return _in_order(rows, file)


def _read_csv(file: Path) -> list[dict[str, Any]]:
    reader = csv.DictReader(_text(file).splitlines())
    if reader.fieldnames != COLUMNS:
        raise RunError(f"{file}:1: the header is {reader.fieldnames}, expected {COLUMNS}")
    rows = []
    for number, raw in enumerate(reader, 2):
        try:
            row: dict[str, Any] = {key: _csv_value(key, value) for key, value in raw.items()}
        except ValueError as exc:
            raise RunError(f"{file}:{number}: {exc.args[0]}") from None
        rows.append(_checked(row, file, number))
    return _in_order(rows, file)


def _csv_value(key: str, text: str | None) -> int | float | None:
    if text in ("", None):
        return None
    value = float(text)
    return int(value) if key in INTEGERS and value.is_integer() else value


def _checked(row: Any, file: Path, number: int) -> dict[str, Any]:
    """A row as :meth:`RunDir.log_epoch` writes it: every column, numbers or null, whole epoch and step."""
    if not isinstance(row, dict) or set(row) != set(COLUMNS):
        keys = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise RunError(f"{file}:{number}: expected the columns {COLUMNS}, found {keys}")
    for key in COLUMNS:
        value = row[key]
        whole = key in INTEGERS
        if (value is None and (whole or key == "loss")) or (value is not None and not _is_number(value, whole)):
            raise RunError(f"{file}:{number}: {key} is {value!r}; expected {'a whole number' if whole else 'a number'}")
    return row


def _in_order(rows: list[dict[str, Any]], file: Path) -> list[dict[str, Any]]:
    for before, after in itertools.pairwise(rows):
        if after["epoch"] <= before["epoch"] or after["step"] < before["step"]:
            raise RunError(f"{file}: epoch {after['epoch']} (step {after['step']}) follows epoch {before['epoch']} "
                           f"(step {before['step']}); the rows must go forward")  # fmt: skip
    return rows


def _read_object(file: Path) -> dict[str, Any] | None:
    if not file.is_file():
        return None
    try:
        value = json.loads(_text(file))
    except ValueError as exc:
        raise RunError(f"{file}: not JSON ({exc.args[0]})") from None
    if not isinstance(value, dict):
        raise RunError(f"{file}: expected a JSON object, found {type(value).__name__}")
    return value


def _text(file: Path, limit: int = 64 << 20) -> str:
    if file.stat().st_size > limit:
        raise RunError(f"{file}: {file.stat().st_size:,} bytes; a run's metrics are far smaller (limit {limit:,})")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _is_number(value: Any, whole: bool) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) and value >= 0 if whole else True  # NaN and inf are kept: a diverged run shows so


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


# ----------------------------------------------------------------------------- output


def plot(runs: list[Run], target: Path, *, x_axis: str = "epoch") -> None:
    """Loss and accuracy of every run: training solid, validation dashed, one colour per run."""
    figure = new_figure(11.0, 4.2)
    loss_axis, accuracy_axis = figure.subplots(1, 2, sharex=True)  # a NaN tail still spans the axis
    colours = [f"C{i % 10}" for i in range(len(runs))]
    for run_, colour in zip(runs, colours):
        xs = [r[x_axis] for r in run_.rows]
        for axis, key in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
            axis.plot(xs, [_or_nan(r[key]) for r in run_.rows], color=colour, marker="o", ms=3, label=run_.label)
            if any(r[f"val_{key}"] is not None for r in run_.rows):
                axis.plot(xs, [_or_nan(r[f"val_{key}"]) for r in run_.rows], color=colour, ls="--", marker="o", ms=3)
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.set_title(f"{title} (solid: training, dashed: validation)", fontsize=10)
        axis.set_xlabel(x_axis)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    accuracy_axis.yaxis.set_major_formatter(PercentFormatter(1.0))
    accuracy_axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    save(figure, target, dpi=100)


def _or_nan(value: Any) -> float:
    return float("nan") if value is None else float(value)


def render_table(rows: list[dict[str, Any]]) -> str:
    columns = (("run", "run"), ("backend", "backend"), ("epochs", "epochs"), ("steps", "steps"), ("loss", "loss"),
               ("accuracy", "accuracy"), ("val_loss", "val loss"), ("val_accuracy", "val acc"),
               ("best_val_accuracy", "best val acc"), ("test_accuracy", "test acc"), ("seconds", "time"))  # fmt: skip
    table = [tuple(title for _, title in columns)]
    for row in rows:
        best = _cell("best_val_accuracy", row["best_val_accuracy"])
        cells = [_cell(key, row[key]) for key, _ in columns]
        cells[8] = f"{best} (epoch {row['best_epoch']})" if row["best_epoch"] is not None else best
        table.append(tuple(cells))
    widths = [max(len(r[i]) for r in table) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "seconds":
        return f"{value:.1f} s"
    if "accuracy" in key:
        return f"{value:.2%}"
    return f"{value:.4f}" if isinstance(value, float) else str(value)
