"""Checkpoints that cannot mislead (issue 15): the last two are kept, each with the sha256 of
every file and a digest of its state; a damaged latest one is reported in one line and the
previous one is used (and set aside, so that the next save cannot push the good one out); with
none intact, a one-line error. Every damage below is checked against resume's choice
(:func:`checkpoint.recover`), evaluation's (:func:`checkpoint.for_evaluation`) and the command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from run_dirs import assert_refused, cli, fake_run, snapshot, tiny_data, train_args

from resnet_spec.backends import BackendError
from resnet_spec.training import checkpoint

WEIGHTS = "training.pt"


def _flip(offset: int) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        data = bytearray((folder / WEIGHTS).read_bytes())
        data[offset] ^= 0xFF
        (folder / WEIGHTS).write_bytes(bytes(data))

    return damage


def _truncate(size: int) -> Callable[[Path], None]:
    return lambda folder: (folder / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes()[:size])


def _edit_state(change: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(folder: Path) -> None:
        state = json.loads((folder / "state.json").read_text())
        change(state)
        (folder / "state.json").write_text(json.dumps(state))

    return damage


def _write_state(text: str) -> Callable[[Path], None]:
    return lambda folder: (folder / "state.json").write_text(text)


DAMAGES = [
    ("a-flipped-first-byte", _flip(0), "training.pt differs from its recorded sha256"),
    ("a-flipped-middle-byte", _flip(512), "training.pt differs from its recorded sha256"),
    ("a-flipped-last-byte", _flip(-1), "training.pt differs from its recorded sha256"),
    ("truncated-to-half", _truncate(512), "training.pt differs from its recorded sha256"),
    ("truncated-to-nothing", _truncate(0), "training.pt differs from its recorded sha256"),
    ("weights-missing", lambda folder: (folder / WEIGHTS).unlink(), "training.pt is missing"),
    ("weights-replaced-by-a-folder", lambda folder: ((folder / WEIGHTS).unlink(), (folder / WEIGHTS).mkdir()),
     "training.pt is missing"),
    ("step-edited", _edit_state(lambda s: s.update(step=999)), "state.json does not match its digest"),
    ("hash-edited", _edit_state(lambda s: s.update(hash="sha256:0")), "state.json does not match its digest"),
    ("file-digest-edited", _edit_state(lambda s: s["files"].update({WEIGHTS: "0" * 64})),
     "state.json does not match its digest"),
    ("files-removed", _edit_state(lambda s: s.pop("files")), "state.json does not match its digest"),
    ("digest-removed", _edit_state(lambda s: s.pop("digest")), "state.json does not match its digest"),
    ("step-a-string", _edit_state(lambda s: s.update(step="abc")), "state.json holds no step number"),
    ("format-a-string", _edit_state(lambda s: s.update(format="two")), "unknown format ('two')"),
    ("format-from-the-future", _edit_state(lambda s: s.update(format=99)), "unknown format (99)"),
    ("state-truncated", _write_state('{"format": 2, "st'), "state.json is unreadable"),
    ("state-empty", _write_state(""), "state.json is unreadable"),
    ("state-a-list", _write_state("[1, 2, 3]"), "state.json holds no step number"),
    ("state-not-utf8", lambda folder: (folder / "state.json").write_bytes(b"\xff\xfe\x00"), "state.json is unreadable"),
    ("state-missing", lambda folder: (folder / "state.json").unlink(), "no state.json"),
]
IDS = [d[0] for d in DAMAGES]
CASES = [d[1:] for d in DAMAGES]


def _run(tmp_path: Path) -> Path:
    """A run with checkpoints at steps 3 (previous) and 6 (latest)."""
    return fake_run(tmp_path / "out", steps=(3, 6))


def test_the_last_two_are_kept_and_verify(tmp_path: Path) -> None:
    out = fake_run(tmp_path / "out", steps=(3, 6, 9))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "checkpoint.previous", "result.json", "run.json",
                                                     "spec.yaml"]  # fmt: skip
    assert checkpoint.read_state(out / "checkpoint")["step"] == 9
    assert checkpoint.read_state(out / "checkpoint.previous")["step"] == 6
    assert checkpoint.problem(out / "checkpoint") is None and checkpoint.problem(out / "checkpoint.previous") is None
    state = checkpoint.read_state(out / "checkpoint")
    assert state["format"] == 2 and set(state["files"]) == {WEIGHTS} and len(state["digest"]) == 64


@pytest.mark.parametrize(("damage", "needle"), CASES, ids=IDS)
def test_a_damaged_latest_one_falls_back_to_the_previous(damage: Callable[[Path], None], needle: str,
                                                         tmp_path: Path) -> None:  # fmt: skip
    out = _run(tmp_path)
    damage(out / "checkpoint")
    assert checkpoint.problem(out / "checkpoint") is not None and needle in str(checkpoint.problem(out / "checkpoint"))
    said: list[str] = []
    folder, state = checkpoint.for_evaluation(out / "checkpoint", state_hash(out), report=said.append)
    assert folder == out / "checkpoint.previous" and state["step"] == 3  # nothing moved by evaluation
    assert len(said) == 1 and needle in said[0] and "\n" not in said[0]
    said.clear()
    assert checkpoint.recover(out / "checkpoint", said.append) == out / "checkpoint"
    assert checkpoint.read_state(out / "checkpoint")["step"] == 3 and checkpoint.problem(out / "checkpoint") is None
    assert len(said) == 1 and needle in said[0] and "kept as checkpoint.corrupt" in said[0]
    assert (out / "checkpoint.corrupt").is_dir() and not (out / "checkpoint.previous").exists()
    # The next save makes the good one the previous: the damaged one can no longer push it out.
    checkpoint.save(out / "checkpoint", lambda f: (f / WEIGHTS).write_bytes(b"step 4"), {"step": 4})
    assert checkpoint.read_state(out / "checkpoint.previous")["step"] == 3


@pytest.mark.parametrize(("damage", "needle"), CASES, ids=IDS)
def test_with_both_damaged_nothing_is_used(damage: Callable[[Path], None], needle: str, tmp_path: Path) -> None:
    out = _run(tmp_path)
    arch_hash = state_hash(out)
    damage(out / "checkpoint")
    damage(out / "checkpoint.previous")
    before = snapshot(tmp_path)
    assert checkpoint.recover(out / "checkpoint") is None
    with pytest.raises(BackendError, match="no intact checkpoint there") as caught:
        checkpoint.for_evaluation(out / "checkpoint", arch_hash)
    assert needle in str(caught.value) and "\n" not in str(caught.value)
    assert snapshot(tmp_path) == before


def test_a_damaged_previous_one_behind_an_intact_latest_one_is_not_reported(tmp_path: Path) -> None:
    out = _run(tmp_path)
    _flip(3)(out / "checkpoint.previous")
    said: list[str] = []
    assert checkpoint.recover(out / "checkpoint", said.append) == out / "checkpoint" and said == []


def test_a_checkpoint_written_before_digests_is_still_read(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    folder.mkdir()
    (folder / WEIGHTS).write_bytes(b"weights")
    (folder / "state.json").write_text(json.dumps({"format": 1, "step": 5, "hash": "h"}))
    assert checkpoint.problem(folder) is None
    assert checkpoint.for_evaluation(folder, "h")[1]["step"] == 5


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_data(tmp_path_factory.mktemp("data"))


@pytest.mark.parametrize(("damage", "needle"), CASES[:6], ids=IDS[:6])
def test_resume_with_every_checkpoint_damaged_is_one_line(damage: Callable[[Path], None], needle: str, data: Path,
                                                          tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = _run(tmp_path)
    damage(out / "checkpoint")
    damage(out / "checkpoint.previous")
    before = snapshot(tmp_path)
    code, _, err = cli(train_args(data, out, "--resume"), capsys)
    assert_refused(code, err, 1, "no intact checkpoint to resume from", needle, "start afresh with another --out")
    assert snapshot(tmp_path) == before


def state_hash(out: Path) -> str:
    return str(json.loads((out / "run.json").read_text())["hash"])
