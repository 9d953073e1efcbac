"""``resnet-spec compare``: run directories written with the trainers' own writer
(:class:`~resnet_spec.training.run_dir.RunDir`, so the format cannot drift) are read back into one
picture and a table; folders that are not runs, and files that are not what train writes, are
one-line errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from resnet_spec import compare
from resnet_spec.cli import main
from resnet_spec.training import commands
from resnet_spec.training.run_dir import RunDir

pytest.importorskip("matplotlib")

CURVES = {  # loss, accuracy, val_loss, val_accuracy per epoch
    "fast": [(1.2, 0.60, 1.0, 0.70), (0.5, 0.85, 0.6, 0.82), (0.2, 0.95, 0.4, 0.90)],
    "slow": [(2.0, 0.30, 1.9, 0.35), (1.4, 0.55, 1.3, 0.58), (1.0, 0.70, 1.1, 0.66), (0.8, 0.78, 1.0, 0.64)],
}


@pytest.fixture(scope="module", autouse=True)
def templates(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Runs are written once per module and copied (every log_epoch redraws curves.png)."""
    global TEMPLATES
    TEMPLATES = tmp_path_factory.mktemp("written-runs")


TEMPLATES = Path()


def make_run(folder: Path, name: str, backend: str = "torch", finished: bool = True) -> Path:
    template = TEMPLATES / f"{name}-{backend}-{finished}"
    if not template.exists():
        _write_run(template, name, backend, finished)
    shutil.copytree(template, folder / name)
    return folder / name


def _write_run(path: Path, name: str, backend: str, finished: bool) -> Path:
    run_dir = RunDir(path, tensorboard=False).create()
    (run_dir.path / commands.RUN_FILE).write_text(
        json.dumps({"backend": backend, "hash": "sha256:0", "data": "digits"})
    )
    for epoch, (loss, accuracy, val_loss, val_accuracy) in enumerate(CURVES[name], 1):
        run_dir.log_epoch({"epoch": epoch, "step": 10 * epoch, "learning_rate": 0.1, "loss": loss, "accuracy": accuracy,
                           "val_loss": val_loss, "val_accuracy": val_accuracy, "seconds": 1.5})  # fmt: skip
    if finished:
        run_dir.write_result({"backend": backend, "test_accuracy": CURVES[name][-1][3] - 0.01, "test_loss": 0.5})
    return run_dir.path


def run_compare(capsys: pytest.CaptureFixture[str], *args: Any) -> tuple[int, str, str]:
    code = main(["compare", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_run_file_name_is_the_trainers() -> None:
    assert compare.RUN_FILE == commands.RUN_FILE


def test_two_runs_in_one_picture_and_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image_module = pytest.importorskip("PIL.Image")
    fast, slow = make_run(tmp_path, "fast"), make_run(tmp_path, "slow", backend="keras", finished=False)
    out_png = tmp_path / "both.png"
    code, out, _ = run_compare(capsys, fast, slow, "-o", out_png, "--format", "json")
    assert code == 0
    report = json.loads(out)
    assert report["plot"] == str(out_png)
    first, second = report["runs"]
    assert (first["run"], first["backend"], first["epochs"], first["steps"]) == ("fast", "torch", 3, 30)
    assert (first["loss"], first["val_accuracy"], first["best_val_accuracy"], first["best_epoch"]) == (
        0.2,
        0.90,
        0.90,
        3,
    )
    assert math.isclose(first["test_accuracy"], 0.89) and math.isclose(first["seconds"], 4.5)
    assert (second["run"], second["backend"], second["epochs"], second["steps"]) == ("slow", "keras", 4, 40)
    assert (second["best_val_accuracy"], second["best_epoch"]) == (0.66, 3)  # the last epoch is not the best
    assert second["test_accuracy"] is None  # no result.json: the run has not finished
    with image_module.open(out_png) as image:
        image.load()
        assert image.format == "PNG" and image.size == (1100, 420)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    for r, g, b in ((0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)):  # matplotlib's first two colours: one per run
        assert sum(n for n, (x, y, z) in colours if abs(x - r) + abs(y - g) + abs(z - b) < 30) > 200


def test_text_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fast, slow = make_run(tmp_path, "fast"), make_run(tmp_path, "slow", finished=False)
    code, out, _ = run_compare(capsys, fast, slow, "--label", "lr 0.1", "--label", "lr 0.01")
    assert code == 0
    header, rule, row_fast, row_slow = out.splitlines()
    assert header.split()[:4] == ["run", "backend", "epochs", "steps"] and set(rule) == {"-", " "}
    assert row_fast.startswith("lr 0.1 ") and "90.00% (epoch 3)" in row_fast and "89.00%" in row_fast
    assert row_slow.startswith("lr 0.01") and "66.00% (epoch 3)" in row_slow and row_slow.split()[-3] == "-"
    assert not list(tmp_path.glob("*.png"))  # no -o, no picture


def test_csv_when_jsonl_is_gone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fast = make_run(tmp_path, "fast")
    _, from_jsonl, _ = run_compare(capsys, fast, "--format", "json")
    (fast / "metrics.jsonl").unlink()
    code, from_csv, _ = run_compare(capsys, fast, "--format", "json")
    assert code == 0 and json.loads(from_csv) == json.loads(from_jsonl)


def test_x_axis_in_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_compare(capsys, make_run(tmp_path, "fast"), "-o", tmp_path / "c.svg", "--x", "step")
    assert code == 0 and "against step" in out
    assert ">step<" in (tmp_path / "c.svg").read_text()  # the axis label, as SVG text


def broken(folder: Path, file: str, text: str) -> Path:
    run = make_run(folder, "fast")
    (run / file).write_text(text)
    return run


@pytest.mark.parametrize(
    ("file", "text", "message"),
    [
        ("metrics.jsonl", '{"epoch": 1}\nnot json\n', "metrics.jsonl:1: expected the columns"),
        ("metrics.jsonl", "[1, 2]\n", "metrics.jsonl:1: expected the columns"),
        ("metrics.jsonl", "{]\n", "metrics.jsonl:1: not a JSON line"),
        ("metrics.jsonl", "", "metrics.jsonl: no epochs logged"),
        ("result.json", "{", "result.json: not JSON"),
        ("result.json", "[]", "result.json: expected a JSON object"),
        ("metrics.csv", "epoch,loss\n1,0.5\n", "metrics.csv:1: the header is"),
    ],
)  # fmt: skip
def test_unreadable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], file: str, text: str, message: str
) -> None:
    run = broken(tmp_path, file, text)
    if file == "metrics.csv":
        (run / "metrics.jsonl").unlink()
    code, out, err = run_compare(capsys, run, "-o", tmp_path / "c.png")
    assert code == 1 and out == "" and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c.png").exists()


def test_bad_values_are_located(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    metrics = make_run(tmp_path, "fast") / "metrics.jsonl"
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    for change, message in (({"step": 2.5}, "step is 2.5; expected a whole number"), ({"loss": "low"}, "loss is 'low'"),
                            ({"epoch": 1}, "epoch 1 (step 20) follows epoch 1")):  # fmt: skip
        rows_now = [rows[0], {**rows[1], **change}]
        metrics.write_text("".join(json.dumps(r) + "\n" for r in rows_now))
        code, _, err = run_compare(capsys, tmp_path / "fast")
        assert code == 1 and message in err, err


def test_not_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_compare(capsys, tmp_path / "missing")
    assert code == 1 and "missing: no such folder" in err
    assert not (tmp_path / "missing").exists()  # reading never creates the folder
    (tmp_path / "empty").mkdir()
    code, _, err = run_compare(capsys, tmp_path / "empty")
    assert code == 1 and "not a run directory" in err and "--out folder of `resnet-spec train`" in err
    (tmp_path / "started").mkdir()
    (tmp_path / "started" / "run.json").write_text("{}")
    code, _, err = run_compare(capsys, tmp_path / "started")
    assert code == 1 and "no epoch was logged yet" in err


def test_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fast = make_run(tmp_path, "fast")
    curves = (fast / "curves.png").read_bytes()
    assert run_compare(capsys, fast, "-o", fast / "curves.png")[0] == 2  # the run's own picture
    assert (fast / "curves.png").read_bytes() == curves
    assert run_compare(capsys, fast, "-o", tmp_path / "table.txt")[0] == 2
    assert run_compare(capsys, fast, fast)[0] == 2
    assert run_compare(capsys, fast, "--label", "a", "--label", "b")[0] == 2


def test_a_diverged_run_shows_its_nans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = make_run(tmp_path, "slow")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows[2:]:
        row.update(loss=float("nan"), val_loss=float("nan"))
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # as json.dumps writes NaN
    code, out, _ = run_compare(capsys, run, "-o", tmp_path / "c.png")
    assert code == 0 and (tmp_path / "c.png").exists()
    assert out.splitlines()[2].split()[3:5] == ["40", "nan"]  # steps, then the last loss: NaN, not hidden
