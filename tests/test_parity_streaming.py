"""Parity compares node by node and releases as it goes, and that changes no number: each
backend's streaming probe (results handed out as they exist, segments recomputed under
autograd, momentum buffers on disk) and streaming eval give bitwise what the plain ones give;
a run whose sides are child processes gives bitwise the in-process report; the pieces (cut
points, the spill) do what they say."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import resnet_spec
from resnet_spec import graph as g
from resnet_spec import parity
from resnet_spec.backends import BackendError, get_backend
from resnet_spec.canonical import architecture_hash
from resnet_spec.parity import engine, sides
from resnet_spec.parity.spill import Spill, SpilledWeights
from resnet_spec.parity.stream import CollectingSink, cut_points, segments
from resnet_spec.weights import initial_weights

SPECS = Path(__file__).resolve().parent / "parity_specs"
TINY = SPECS / "tiny.yaml"
# kernel_l2 puts the penalty term in every segment's backward; a conv bias and dense head too.
PENALISED = {**resnet_spec.load(TINY).data, "defaults": {"kernel_l2": 1e-3, "conv_bias": True}}  # type: ignore[dict-item]


# --------------------------------------------------------------------------- framework-free pieces


def test_cut_points_are_where_one_value_crosses() -> None:
    arch = resnet_spec.build_architecture(TINY)
    names = [node.name for node in arch.graph]
    cuts = [names[p] for p in cut_points(arch.graph)]
    # Inside a residual block the shortcut and the branch are both live: from the block's add on.
    assert "stage1.block0.out_act" in cuts and "stage1.block0.add" in cuts and "stem.act1" in cuts
    inside = ("conv1", "norm1", "act1", "conv2", "norm2")
    assert not any(f"stage{s}.block0.{n}" in cuts for s in (1, 2) for n in inside)
    assert "stage2.block0.shortcut.norm" not in cuts
    split = segments(arch, 2, 8, budget=1)  # every cut ends a segment
    assert [name for s in split for name in s] == names[1:]
    assert all(s[-1] in cuts or s[-1] == names[-1] for s in split) and len(split) == len(cuts)  # the input: no segment
    assert segments(arch, 2, 8, budget=1 << 40) == (tuple(names[1:]),)


def test_spill_round_trip_on_disk_and_in_memory() -> None:
    for spill in (Spill(), Spill(on_disk=False)):
        with spill:
            spill.put("eval/stage1.block0.conv1", np.arange(6.0).reshape(2, 3))
            spill.put_tensors("gradients/stem.conv1", {"kernel": np.ones((3, 3)), "bias": np.zeros(3)})
            assert spill.keys("eval/") == ["eval/stage1.block0.conv1"]
            np.testing.assert_array_equal(spill.take("eval/stage1.block0.conv1"), np.arange(6.0).reshape(2, 3))
            assert spill.take("eval/stage1.block0.conv1") is None and spill.keys("eval/") == []
            assert sorted(spill.take_tensors("gradients/stem.conv1") or {}) == ["bias", "kernel"]
            with pytest.raises(ValueError, match="not a plain name"):
                spill.put("../escape", np.zeros(1))
        if spill.on_disk:
            assert not spill.root.exists()  # its maker removes the folder


def test_spilled_weights_load_node_by_node_with_overrides() -> None:
    arch = resnet_spec.build_architecture(TINY)
    start = initial_weights(arch, 3)
    with Spill() as spill:
        lazy = SpilledWeights.store(spill, "start", start)
        assert list(lazy) == list(start) and len(lazy) == len(start)
        np.testing.assert_array_equal(lazy["stem.conv1"]["kernel"], start["stem.conv1"]["kernel"])
        moved = lazy.with_overrides({"stem.norm1": {"moving_mean": np.full(8, 2.0, np.float32)}})
        assert moved["stem.norm1"]["moving_mean"][0] == 2.0 and lazy["stem.norm1"]["moving_mean"][0] == 0.0


def test_calibration_builds_an_architecture_with_its_own_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    """issue 14: the decay-0 copy used to be copy.copy(arch) with the graph swapped, which kept
    the cached hash of the original graph."""
    arch = resnet_spec.build_architecture(TINY)
    original = arch.hash  # computed, so cached
    seen: list[Any] = []

    def side(self: Any, index: int, tasks: Any, arch: Any = None, **kw: Any) -> sides.SideResult:
        seen.append(arch)
        return sides.SideResult(stats={})

    monkeypatch.setattr(engine._Run, "side", side)
    run = engine._Run(arch, ("keras", "torch"), Spill(on_disk=False), parity.Tolerances(), False, None, [])
    run.weights = {"keras": {}, "torch": {}}
    run.calibrated()
    instant = seen[0]
    assert instant is not arch and instant.hash == architecture_hash(instant.graph) != original
    assert all(n.decay == 0.0 for n in instant.graph if isinstance(n, g.BatchNorm))


# --------------------------------------------------------------------------- the backends stream


@pytest.fixture(autouse=True)
def _frameworks(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("torch"):
        pytest.importorskip("torch")
        pytest.importorskip("tensorflow")


def _batches(arch: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(4)
    return [(rng.standard_normal((2, 8, 8, 3)).astype(np.float32), rng.integers(0, 5, 2)) for _ in range(2)]


def _probe(name: str, arch: Any, **streaming: Any) -> Any:
    backend: Any = get_backend(name)
    model = backend.build(arch, dtype="float64")
    backend.set_weights(model, arch, initial_weights(arch, 1))
    sink = CollectingSink() if streaming else None
    result = backend.train_probe(model, arch, _batches(arch), steps=2, learning_rate=0.05, momentum=0.9,
                                 weight_decay=1e-3, **({"sink": sink} | streaming if streaming else {}))  # fmt: skip
    if sink is not None:
        sink.result.losses = result.losses
        return sink.result
    return result


@pytest.mark.parametrize("name", ["keras", "torch"])
@pytest.mark.keras
@pytest.mark.torch
def test_segmented_streaming_probe_is_bitwise_the_plain_probe(name: str) -> None:
    arch = resnet_spec.build_architecture(PENALISED)
    plain = _probe(name, arch)
    with Spill() as spill:
        split = segments(arch, 2, 8, budget=1)
        assert len(split) > 3
        streamed = _probe(name, arch, segments=split, spill=spill)
        assert spill.keys("momentum/") == []  # buffers left the spill at the last step
    assert streamed.losses == plain.losses
    for field in ("train_outputs", "stats_after_forward", "gradients", "weights_after"):
        got, want = getattr(streamed, field), getattr(plain, field)
        assert list(got) == list(want) or sorted(got) == sorted(want), field
        for node in want:
            if isinstance(want[node], dict):
                for key in want[node]:
                    np.testing.assert_array_equal(got[node][key], want[node][key], err_msg=f"{field} {node}.{key}")
            else:
                np.testing.assert_array_equal(got[node], want[node], err_msg=f"{field} {node}")


@pytest.mark.parametrize("name", ["keras", "torch"])
@pytest.mark.keras
@pytest.mark.torch
def test_streaming_eval_is_the_whole_eval_in_graph_order(name: str) -> None:
    arch = resnet_spec.build_architecture(TINY)
    backend: Any = get_backend(name)
    model = backend.build(arch)
    backend.set_weights(model, arch, initial_weights(arch, 0))
    images = _batches(arch)[0][0]
    streamed = list(backend.iter_node_outputs(model, arch, images))
    assert [n for n, _ in streamed] == [node.name for node in arch.graph]
    whole = backend.node_outputs(model, arch, images)
    for node, value in streamed:
        np.testing.assert_array_equal(value, whole[node], err_msg=node)
    if name == "torch":  # abandoning the walk half-way restores the model's modes
        model.train()
        walk = backend.iter_node_outputs(model, arch, images)
        next(walk), next(walk)
        walk.close()
        assert model.training


@pytest.mark.keras
@pytest.mark.torch
def test_sides_in_child_processes_give_the_in_process_report() -> None:
    """Segments, momentum buffers on disk and child processes together: the plain run's report,
    row for row (the same checks, nodes, tensors, limits and verdicts; numbers to 1e-9 relative or
    1e-12 absolute: a child process's float64 reductions may round the last bits differently, so
    a float64 difference of 8.9e-16 in one process is 1.1e-15 in another)."""
    arch = resnet_spec.build_architecture(PENALISED)
    plain = parity.run(arch, isolate=False, low_memory=False, steps=2)
    lean = parity.run(arch, isolate=True, low_memory=True, steps=2)
    assert plain.ok and lean.ok
    lean_rows, plain_rows = ([dataclasses.astuple(d) for d in r.differences] for r in (lean, plain))
    assert [[f for f in row if not isinstance(f, float)] for row in lean_rows] == \
        [[f for f in row if not isinstance(f, float)] for row in plain_rows]
    for got, want in zip(lean_rows, plain_rows, strict=True):
        floats = [(g, w) for g, w in zip(got, want, strict=True) if isinstance(w, float)]
        assert all(math.isclose(g, w, rel_tol=1e-9, abs_tol=1e-12) for g, w in floats), (got, want)
    assert lean.losses.keys() == plain.losses.keys() and lean.kink_flips == plain.kink_flips
    for side, losses in plain.losses.items():
        assert lean.losses[side] == pytest.approx(losses, rel=1e-12, abs=0), side
    assert {t["task"] for t in lean.timings} >= {"import", "eval", "probe", "process"}


@pytest.mark.keras
@pytest.mark.torch
def test_a_side_that_fails_in_its_child_raises_its_error_here() -> None:
    arch = resnet_spec.build_architecture(TINY)
    with pytest.raises(parity.SettingsError, match="steps must be >= 0"):
        parity.run(arch, steps=-1)
    with Spill() as spill:
        job = sides.Job(arch, "torch", {}, _batches(arch), [sides.Task("eval")], spill, compare=False)
        with pytest.raises(BackendError,
                           match="no weights given for 'stem.conv1'"):  # fmt: skip
            engine._in_child(job)
