"""Run directories that cannot hurt (issue 15): ``train --out`` creates a run only in a new or
empty folder (or in a failed start of one), ``--resume`` only from a resnet-spec run with an
intact checkpoint and the same recipe (unless ``--allow-recipe-change``), and a second train into
a folder that one holds fails at once, naming its pid.

Every hostile case asserts the exit status, a one-line message naming the problem, no traceback,
and that nothing under the test's folder changed (a refused train writes nothing anywhere). The
refusals come before any framework is imported, so these run in milliseconds."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from run_dirs import architecture, assert_refused, cli, fake_run, snapshot, tiny_data, train_args

from resnet_spec.training import checkpoint, run_state


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_data(tmp_path_factory.mktemp("data"))


def _with(*names: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        out = root / "out"
        out.mkdir()
        for name in names:
            if name.endswith("/"):
                (out / name).mkdir()
            else:
                (out / name).write_text(f"the user's own {name}\n")
        return out

    return make


def _file(root: Path) -> Path:
    (root / "out").write_text("a file, not a folder\n")
    return root / "out"


def _symlink_to_file(root: Path) -> Path:
    (root / "target.txt").write_text("x\n")
    (root / "out").symlink_to(root / "target.txt")
    return root / "out"


def _broken_symlink(root: Path) -> Path:
    (root / "out").symlink_to(root / "nowhere")
    return root / "out"


def _fifo(root: Path) -> Path:
    os.mkfifo(root / "out")
    return root / "out"


def _inside_file(root: Path) -> Path:
    (root / "plain").write_text("x\n")
    return root / "plain" / "run"


def _finished(root: Path) -> Path:
    return fake_run(root / "out")


def _checkpoint_no_result(root: Path) -> Path:
    return fake_run(root / "out", result=False, status="started")


def _only_previous(root: Path) -> Path:
    out = fake_run(root / "out", steps=(3, 6), result=False)
    os.rename(out / "checkpoint", root / "moved-away")
    return out


def _complete_tmp_sibling(root: Path) -> Path:
    """A crash between the renames of a save: the only checkpoint is a temporary sibling."""
    out = fake_run(root / "out", result=False)
    os.rename(out / "checkpoint", out / ".checkpoint.tmp-abc")
    return out


def _run_json(text: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        out = root / "out"
        out.mkdir()
        (out / "run.json").write_text(text)
        return out

    return make


FRESH_REFUSALS = [
    ("users-spec-yaml", _with("spec.yaml"), "is not empty and is not a resnet-spec run (it holds spec.yaml)"),
    ("users-metrics", _with("metrics.csv", "curves.png"), "it holds curves.png, metrics.csv"),
    ("a-text-file", _with("notes.txt"), "notes.txt"),
    ("a-sub-folder", _with("data/"), "it holds data"),
    ("a-hidden-file", _with(".git/"), "it holds .git"),
    ("many-files", _with("a", "b", "c", "d", "e"), "it holds a, b, c and 2 more"),
    ("a-result-json-alone", _with("result.json"), "not a resnet-spec run"),
    ("a-checkpoint-folder-alone", _with("checkpoint/"), "not a resnet-spec run"),
    ("out-is-a-file", _file, "is a file, not a folder"),
    ("out-is-a-symlink-to-a-file", _symlink_to_file, "is a file, not a folder"),
    ("out-is-a-broken-symlink", _broken_symlink, "is a broken symbolic link"),
    ("out-is-a-fifo", _fifo, "is a file, not a folder"),
    ("out-is-dev-null", lambda root: Path(os.devnull), "is a file, not a folder"),
    ("out-inside-a-file", _inside_file, "is a file, so the run directory cannot be made there"),
    ("a-finished-run", _finished, "already holds a run; use --resume"),
    ("a-run-with-a-checkpoint", _checkpoint_no_result, "already holds a run; use --resume"),
    ("a-run-with-only-a-previous-checkpoint", _only_previous, "already holds a run"),
    ("a-run-mid-rename", _complete_tmp_sibling, "already holds a run"),
    ("run-json-garbage", _run_json("{not json"), "run.json is unreadable"),
    ("run-json-empty", _run_json(""), "run.json is unreadable"),
    ("run-json-a-list", _run_json("[1, 2]"), "holds no run description"),
    ("run-json-a-string", _run_json('"run"'), "holds no run description"),
    ("run-json-binary", _run_json("\x00\x01\x02"), "run.json is unreadable"),
]


@pytest.mark.parametrize(("make", "needle"), [c[1:] for c in FRESH_REFUSALS], ids=[c[0] for c in FRESH_REFUSALS])
def test_a_fresh_train_refuses(make: Callable[[Path], Path], needle: str, data: Path, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    root = tmp_path / "root"
    root.mkdir()
    out = make(root)
    before = snapshot(root)
    code, _, err = cli(train_args(data, out), capsys)
    assert_refused(code, err, 1, needle)
    assert snapshot(root) == before


def _changed(*overrides: str) -> Callable[[Path], Path]:
    return lambda root: fake_run(root / "out", overrides=list(overrides))


RESUME_REFUSALS = [
    ("a-missing-folder", lambda root: root / "missing", [], "nothing to resume (not a resnet-spec run"),
    ("an-empty-folder", _with(), [], "nothing to resume (not a resnet-spec run"),
    ("a-folder-of-other-files", _with("spec.yaml", "notes.txt"), [], "nothing to resume"),
    ("a-file", _file, [], "is a file, not a folder"),
    ("a-failed-start", lambda root: fake_run(root / "out", steps=(), result=False, status="started"), [],
     "stopped before its first checkpoint; start it afresh with the same command without --resume"),
    ("another-backend", lambda root: fake_run(root / "out", backend="keras"), [], "was trained with backend keras"),
    ("another-architecture", lambda root: fake_run(root / "out"), ["stages.1.filters=48"], "resume needs the same spec"),
    ("more-epochs", _changed("training.epochs=40"), [], "training.epochs: 40 in the run, 2 now"),
    ("another-learning-rate", _changed("training.optimizer.learning_rate=0.1"), [],
     "training.optimizer.learning_rate: 0.1 in the run, 0.001 now"),
    ("another-batch-size", _changed("training.batch_size=8"), [], "training.batch_size: 8 in the run, 16 now"),
    ("another-optimizer", _changed("training.optimizer.kind=sgd"), [], "training.optimizer.kind"),
    ("another-seed", _changed("training.seed=7"), [], "training.seed: 7 in the run, 0 now"),
    ("another-augmentation", _changed("training.augmentation.horizontal_flip=true"), [],
     "training.augmentation.horizontal_flip"),
    ("another-smoothing", _changed("training.loss.label_smoothing=0.1"), [], "training.loss.label_smoothing"),
    ("another-validation-split", _changed("training.validation_split=0.5"), [], "training.validation_split"),
    ("another-schedule", _changed("training.schedule={kind: cosine}"), [], "training.schedule.kind"),
    ("iterations-not-epochs", _changed("training.iterations=9", "training.epochs=null"), [],
     "training.epochs: null in the run, 2 now"),
]


@pytest.mark.parametrize(("make", "sets", "needle"), [c[1:] for c in RESUME_REFUSALS], ids=[c[0] for c in RESUME_REFUSALS])
def test_resume_refuses(make: Callable[[Path], Path], sets: list[str], needle: str, data: Path, tmp_path: Path,
                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    root = tmp_path / "root"
    root.mkdir()
    out = make(root)
    before = snapshot(root)
    code, _, err = cli(train_args(data, out, "--resume", sets=sets), capsys)
    assert_refused(code, err, 1, needle)
    assert snapshot(root) == before


def test_a_changed_recipe_says_how_to_go_on(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = fake_run(tmp_path / "out", overrides=["training.epochs=40"])
    code, _, err = cli(train_args(data, out, "--resume"), capsys)
    assert_refused(code, err, 1, "the recipe changed since the run started", "--allow-recipe-change")


@pytest.mark.parametrize("value", ["", " ", "\t"], ids=["empty", "space", "tab"])
def test_an_empty_out_is_a_usage_error(value: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # what `--out ""` would have trained into
    (tmp_path / "mine.txt").write_text("x")
    before = snapshot(tmp_path)
    code, _, err = cli(train_args(data, value), capsys)
    assert code == 2 and "argument --out: an empty RUN_DIR" in err and "Traceback" not in err
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resume"])
def test_a_held_folder_is_refused_at_once_naming_the_pid(resume: bool, data: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = fake_run(tmp_path / "out", steps=(3,) if resume else (), result=False, status="started")
    lock = run_state.RunLock(out).acquire()  # another train (here: this process, another descriptor)
    try:
        before = snapshot(tmp_path)
        code, _, err = cli(train_args(data, out, *(["--resume"] if resume else [])), capsys)
        assert_refused(code, err, 1, f"is in use by another train (pid {os.getpid()})")
        assert snapshot(tmp_path) == before
    finally:
        lock.release()
    assert not (out / run_state.LOCK_FILE).exists()  # released: the file goes with the lock


def test_a_stale_lock_file_of_a_killed_run_is_ignored(tmp_path: Path) -> None:
    out = fake_run(tmp_path / "out", steps=(), result=False, status="started")
    (out / run_state.LOCK_FILE).write_text("12345\n")  # nobody holds it
    arch = architecture()
    found = run_state.inspect(out, arch_hash=arch.hash, backend="torch", recipe=run_state.recipe_of(arch.spec.training),
                              resume=False)  # fmt: skip
    assert found.action == "restart"
    lock = run_state.RunLock(out).acquire()
    assert (out / run_state.LOCK_FILE).read_text().strip() == str(os.getpid())
    lock.release()


def _inspect(out: Path, resume: bool = False, **kwargs: object) -> run_state.Inspection:
    arch = architecture()
    return run_state.inspect(out, arch_hash=arch.hash, backend="torch", recipe=run_state.recipe_of(arch.spec.training),
                             resume=resume, **kwargs)  # fmt: skip


@pytest.mark.parametrize("leftover", ["nothing", "lock", "run-json-temporary", "lock-and-temporary"])
def test_what_a_start_killed_at_once_leaves_is_an_empty_folder(leftover: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    if "lock" in leftover:
        (out / run_state.LOCK_FILE).write_text("999\n")
    if "temporary" in leftover:
        (out / ".run.json.abc.tmp.json").write_text("{")
    assert _inspect(out).action == "create"


def test_a_failed_start_is_started_afresh_keeping_foreign_files(tmp_path: Path) -> None:
    """run.json (started), metrics and events of the killed start, an incomplete checkpoint
    temporary: all removed by the fresh start; a file the user put there stays."""
    out = fake_run(tmp_path / "out", steps=(), result=False, status="started")
    for name in ("metrics.csv", "metrics.jsonl", "curves.png", "events.out.tfevents.1.host.1.0", "notes.txt"):
        (out / name).write_text("old\n")
    (out / ".checkpoint.tmp-x").mkdir()
    (out / ".checkpoint.tmp-x" / "training.pt").write_bytes(b"half")
    arch = architecture()
    folder = {"arch_hash": arch.hash, "backend": "torch", "recipe": run_state.recipe_of(arch.spec.training),
              "resume": False, "allow_recipe_change": False}  # fmt: skip
    assert run_state.inspect(out, **folder).action == "restart"
    lock = run_state.open_run(out, **folder, meta={"backend": "torch", "hash": arch.hash})
    try:
        assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "run.json", "run.lock"]
        assert json.loads((out / "run.json").read_text())["status"] == "started"
    finally:
        lock.release()


def test_an_allowed_recipe_change_is_recorded(tmp_path: Path) -> None:
    out = fake_run(tmp_path / "out", overrides=["training.epochs=40"])
    arch = architecture()
    folder = {"arch_hash": arch.hash, "backend": "torch", "recipe": run_state.recipe_of(arch.spec.training),
              "resume": True, "allow_recipe_change": True}  # fmt: skip
    found = run_state.inspect(out, **folder)
    assert found.action == "resume" and found.changes == ["training.epochs: 40 in the run, 2 now"]
    run_state.open_run(out, **folder, meta={}).release()
    meta = json.loads((out / "run.json").read_text())
    assert meta["recipe"]["epochs"] == 2 and meta["status"] == "resumed"
    (change,) = meta["recipe_changes"]
    assert change["changed"] == ["training.epochs: 40 in the run, 2 now"] and change["before"]["epochs"] == 40


def test_execution_settings_may_change_on_resume(tmp_path: Path) -> None:
    out = fake_run(tmp_path / "out", overrides=["training.execution.workers=3", "training.checkpoint_every=2",
                                                "training.tensorboard=false", "training.on_divergence=continue"])  # fmt: skip
    assert _inspect(out, resume=True).changes == []


def test_a_run_recorded_before_recipes_were_recorded_resumes(tmp_path: Path) -> None:
    out = fake_run(tmp_path / "out", overrides=["training.epochs=40"])
    meta = json.loads((out / "run.json").read_text())
    del meta["recipe"]
    run_state.write_meta(out, meta)
    assert _inspect(out, resume=True).action == "resume"


def test_a_run_whose_checkpoints_are_all_damaged_is_not_resumed(data: Path, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = fake_run(tmp_path / "out", steps=(3, 6))
    for folder in (out / "checkpoint", checkpoint.previous_of(out / "checkpoint")):
        (folder / "training.pt").write_bytes(b"flipped")
    before = snapshot(tmp_path)
    code, _, err = cli(train_args(data, out, "--resume"), capsys)
    assert_refused(code, err, 1, "no intact checkpoint to resume from", "training.pt differs from its recorded sha256")
    assert snapshot(tmp_path) == before


def test_event_files_are_cut_back_to_the_checkpoint(tmp_path: Path) -> None:
    """Steps 3, 6 and 9 logged, then a kill in the middle of a record: resuming from step 6 leaves
    steps 3 and 6 in the old file, every record whole (tensorboard's reader checks each CRC)."""
    pytest.importorskip("tensorboard")
    from test_training_core import read_scalars

    from resnet_spec.training.run_dir import RunDir

    run = RunDir(tmp_path)
    for epoch in (1, 2, 3):
        run.log_epoch({"epoch": epoch, "step": 3 * epoch, "learning_rate": 0.1, "loss": 1.0 / epoch, "accuracy": 0.5,
                       "seconds": 1.0})  # fmt: skip
    run.close()
    (events,) = tmp_path.glob("events.out.tfevents.*")
    with open(events, "ab") as handle:
        handle.write(b"\x20\x00\x00\x00\x00\x00\x00\x00half a record")
    run.truncate_history(2, 6)
    assert [r["step"] for r in run.history()] == [3, 6]
    assert read_scalars(events)["loss"] == [(3, 1.0), (6, 0.5)]
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3
