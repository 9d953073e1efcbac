"""Keras and PyTorch compile one spec into the same function: layer by layer in eval mode, in a
train-mode forward with its norm statistics, in gradients and after SGD steps; and a broken
mapping is caught and the layer named. Tolerances (float32, CPU): docs/parity.md."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import resnet_spec
from resnet_spec import graph as g
from resnet_spec import parity
from resnet_spec.backends import get_backend
from resnet_spec.cli import main
from resnet_spec.parity import engine, sides
from resnet_spec.weights import initial_weights

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytestmark = [pytest.mark.keras, pytest.mark.torch]

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.yaml"))


def small(**extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "version": 1,
        "input": {"height": 8, "width": 8, "channels": 3},
        "classes": 5,
        "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
        "stages": [
            {"block": "basic", "blocks": 1, "filters": 8},
            {"block": "basic", "blocks": 1, "filters": 16, "stride": 2, "shortcut": "projection"},
        ],
    }
    spec.update(extra)
    return spec


ROOMY = small(input={"height": 16, "width": 16, "channels": 3})  # last stage 8x8: norms over 2*64 values


def reduced(path: Path) -> list[str]:
    """Smaller even inputs where the head pools globally; the spec's own size otherwise."""
    arch = resnet_spec.build_architecture(path)
    head = arch.spec.head.layers
    if arch.spec.input.height >= 64 and head and head[0].type == "global_avg_pool":
        return ["input.height=64", "input.width=64"]
    return []


# --------------------------------------------------------------------------- every example


@pytest.mark.exhaustive
@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in EXAMPLES])
def test_every_example_is_one_function_in_both_frameworks(path: Path) -> None:
    """float32, the production precision, at the documented tolerances. Where float32 rounding
    puts a ReLU input on different sides of zero in the two frameworks, gradients (and weights
    after the steps) are decided in float64 and the report says so. ResNet-1202 overflows in
    eval mode with its initial statistics in both frameworks; its checks use statistics set
    from the first batch (also reported). One line per example is printed for docs/parity.md
    (run with -s)."""
    arch = resnet_spec.build_architecture(path, overrides=reduced(path))
    report = parity.run(arch, seed=0, steps=2, batch_size=2, precision="float32")
    if arch.graph.outputs and engine.BACKBONE_LEAN in report.notes:  # lean: the eval check alone, said so
        assert report.ok and report.checks() == ["eval"], parity.render_text(report)
        return
    if arch.graph.outputs:  # a backbone: trained on the sum over its features of mean(f ** 2)
        assert engine.BACKBONE in report.notes
    print("\n" + sweep_row(path.stem, arch, report), flush=True)
    assert report.ok, parity.render_text(report)
    assert set(report.checks()) == {"eval", "train_forward", "norm_stats", "gradients", "weights_after"}
    assert (parity.CALIBRATED in report.notes) == (path.stem == "resnet1202_cifar10")


def sweep_row(name: str, arch: Any, report: parity.ParityReport) -> str:
    """| example | input | eval logits abs | eval other rel | gradients rel | weights rel | flips | notes |"""
    logits = next(d for d in report.differences if d.check == "eval" and d.node == parity.LOGITS)
    others = max((d.max_rel for d in report.differences if d.check == "eval" and d.measure == "rel"), default=0.0)

    def rel(check: str) -> str:
        worst = report.worst(check)
        assert worst is not None
        text = f"{worst.max_rel:.1e}"
        if check in report.float32_worst:
            text = f"{report.float32_worst[check].max_rel:.1e} (float64: {text})"
        return text

    size = f"{arch.spec.input.height}x{arch.spec.input.width}"
    notes = "statistics from batch 1" if parity.CALIBRATED in report.notes else ""
    flips = str(sum(report.kink_flips.values()))
    later = sum(count for step in report.later_kink_flips.values() for count in step.values())
    flips += f" (later steps: {later})" if report.later_kink_flips else ""
    return (
        f"| {name} | {size} | {logits.max_abs:.1e} | {others:.1e} | {rel('gradients')} | {rel('weights_after')} "
        f"| {flips} | {notes} | {'ok' if report.ok else 'FAIL'} |"
    )


# --------------------------------------------------------------------------- float32


def test_float32_meets_the_documented_tolerances() -> None:
    """docs/parity.md's float32 CPU tolerances, checked in float32 itself: eval logits within
    1e-5 absolute, gradients and post-step weights within 1e-4 relative (max |a - b| over the
    largest magnitude of the node's tensors). This network has neither float32 hazard (no ReLU
    input within rounding of zero, every norm's statistics over >= 64 values), so every check
    is decided in float32."""
    arch = resnet_spec.build_architecture(ROOMY)
    report = parity.run(arch, seed=0, steps=2, precision="float32")
    assert report.ok, parity.render_text(report)
    assert parity.float32_hazards(arch, 2, report.kink_flips) == []
    assert report.decided_in == {} and report.notes == []
    logits = next(d for d in report.differences if d.check == "eval" and d.node == parity.LOGITS)
    assert logits.measure == "abs" and logits.limit == 1e-5 and logits.max_abs <= 1e-5
    assert [report.worst(check).limit for check in ("gradients", "weights_after")] == [1e-4, 1e-4]  # type: ignore[union-attr]


def test_small_norm_groups_are_a_float32_hazard() -> None:
    """small(): the last stage is 4x4, so with batch 2 its norms average 32 values per channel."""
    hazards = parity.float32_hazards(resnet_spec.build_architecture(small()), 2, {})
    assert len(hazards) == 1 and "as few as 32, first at stage2.block0.norm1" in hazards[0]
    assert parity.float32_hazards(resnet_spec.build_architecture(ROOMY), 2, {}) == []


def test_kink_flips_counts_elements_active_in_one_forward_only() -> None:
    arch = resnet_spec.build_architecture(small())
    a = {"stem.act1": np.array([[0.0, 1e-7, 2.0]]), "stem.conv1": np.array([[-1.0]])}
    b = {"stem.act1": np.array([[3e-8, 0.0, 2.0]]), "stem.conv1": np.array([[1.0]])}  # a conv has no kink
    assert parity.kink_flips(arch, a, b) == {"stem.act1": 2}


def test_kink_flips_counts_max_pool_windows_whose_maximum_moved() -> None:
    spec = small(stem=[{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"},
                       {"type": "max_pool", "pool_size": 2, "stride": 2}])  # fmt: skip
    arch = resnet_spec.build_architecture(spec)
    x = np.random.default_rng(0).standard_normal((1, 8, 8, 8))
    x[0, 0, 0, 0] = 5.0  # the top-left window's maximum
    y = x.copy()
    y[0, 0, 0, 0], y[0, 0, 1, 0] = x[0, 0, 1, 0], x[0, 0, 0, 0]  # one window's values trade places
    moved = {"stem.norm1": x, "stem.maxpool1": x[:, ::2, ::2]}, {"stem.norm1": y, "stem.maxpool1": x[:, ::2, ::2]}
    assert parity.kink_flips(arch, *moved) == {"stem.maxpool1": 1}


def test_a_relu_kink_sends_the_failing_float32_check_to_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ReLU input on different sides of zero in the two float32 forwards makes the float32
    gradients differ by that element's whole gradient. Forced here: a flip is reported and the
    gradient limit is below float32 agreement (~1e-6) but far above float64's."""
    monkeypatch.setattr(sides._Comparer, "count_flips", _flips({"stem.act1": 1}, first_forward=True))
    arch = resnet_spec.build_architecture(ROOMY)
    tight = parity.Tolerances(gradients_rel=1e-8)
    report = parity.run(arch, seed=0, steps=1, precision="float32", tolerances=tight)
    assert report.ok, parity.render_text(report)
    assert report.decided_in == {"gradients": "float64"}
    assert report.float32_worst["gradients"].max_rel > 1e-8
    assert "1 element(s) on different sides of a ReLU or max-pool kink" in parity.render_text(report)
    assert "gradients were decided in float64" in parity.render_text(report)
    assert report.to_json()["checks"]["gradients"]["precision"] == "float64"


def _flips(flips: dict[str, int], *, first_forward: bool) -> Any:
    """A kink-flip count that finds ``flips`` in the first step's forward (``first_forward``) or
    only in later steps' forwards, and nothing elsewhere."""

    def fake(self: Any, node: str, *arrays: Any) -> int:
        later = self.prefix.startswith("l/")
        return flips.get(node, 0) if later != first_forward else 0

    return fake


def test_a_kink_in_a_later_step_sends_only_weights_after_to_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """resnet18_xray: no hazard in the first forward, but a ReLU flip in the second step's
    forward (each framework at its own weights after step 1) put 1.4e-3 between the weights after
    two steps. Forced here: the flip appears only in the later forward, and the weights limit is
    below float32 agreement. weights_after is decided in float64; the gradients (step 1 only)
    stay in float32."""
    monkeypatch.setattr(sides._Comparer, "count_flips", _flips({"stage1.block0.act1": 1}, first_forward=False))
    arch = resnet_spec.build_architecture(ROOMY)
    report = parity.run(arch, seed=0, steps=2, precision="float32", tolerances=parity.Tolerances(weights_rel=1e-9))
    assert report.ok, parity.render_text(report)
    assert report.kink_flips == {} and report.later_kink_flips == {2: {"stage1.block0.act1": 1}}
    assert report.decided_in == {"weights_after": "float64"}
    assert report.float32_worst["weights_after"].max_rel > 1e-9
    assert "first at stage1.block0.act1 (forward of step 2)" in parity.render_text(report)


def test_a_kink_in_a_later_step_does_not_excuse_the_first_steps_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sides._Comparer, "count_flips", _flips({"stage1.block0.act1": 1}, first_forward=False))
    arch = resnet_spec.build_architecture(ROOMY)
    tight = parity.Tolerances(gradients_rel=1e-9, weights_rel=1e-9)
    report = parity.run(arch, seed=0, steps=2, precision="float32", tolerances=tight)
    assert not report.check_ok("gradients") and report.decided_in == {"weights_after": "float64"}


def test_without_a_float32_hazard_a_failing_float32_check_fails() -> None:
    arch = resnet_spec.build_architecture(ROOMY)
    report = parity.run(arch, seed=0, steps=1, precision="float32", tolerances=parity.Tolerances(gradients_rel=1e-8))
    assert not report.ok and report.decided_in == {}
    assert report.first_divergence() is not None and report.first_divergence().check == "gradients"  # type: ignore[union-attr]


def test_an_eval_overflow_in_both_frameworks_uses_batch_statistics(monkeypatch: pytest.MonkeyPatch) -> None:
    """ResNet-1202 at initialization overflows float32 in eval mode in both frameworks (moving
    variance 1: each block's residual sum grows, ~1.4x per block). Reproduced small: moving
    variance 0 and epsilon 1e-20 make each eval-mode norm multiply by 1e10. Parity then sets the
    statistics from the first batch, says so, and compares finite values."""
    real = engine.initial_weights

    def zero_variance(arch: Any, seed: int) -> Any:
        weights = real(arch, seed)
        for entry in weights.values():
            if "moving_variance" in entry:
                entry["moving_variance"] = np.zeros_like(entry["moving_variance"])
        return weights

    monkeypatch.setattr(engine, "initial_weights", zero_variance)
    arch = resnet_spec.build_architecture(small(defaults={"norm": {"epsilon": 1e-20}}))
    report = parity.run(arch, seed=0, steps=1, precision="float32")
    assert parity.CALIBRATED in report.notes
    assert report.ok, parity.render_text(report)


def test_torch_vectors_after_a_flatten_are_compared_in_the_graph_order() -> None:
    """A flatten of a 2x2 map: PyTorch's vector is in (c, h, w) order, the graph's in (h, w, c).
    The norm and dropout after it (element-wise, so still in PyTorch's order) must be reordered
    as the flatten itself is, and the dense layer's rows are permuted on transfer."""
    head = {"layers": [{"type": "avg_pool", "pool_size": 2, "stride": 2}, {"type": "flatten"}, {"type": "norm"},
                       {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 6}]}  # fmt: skip
    arch = resnet_spec.build_architecture(small(head=head))
    assert arch.shape_of("head.avgpool1") == (2, 2, 16)
    start = initial_weights(arch, 0)
    start["head.norm1"]["moving_mean"] = np.linspace(-1.0, 1.0, 64, dtype=np.float32)  # not symmetric in the order
    images = np.random.default_rng(6).standard_normal((2, 8, 8, 3)).astype(np.float32)
    keras_out, torch_out = (get_backend(n).node_outputs(_with(get_backend(n), arch, start), arch, images)
                            for n in ("keras", "torch"))  # fmt: skip
    for node in ("head.flatten1", "head.norm1", "head.dropout1", "head.dense1", "head.classifier"):
        np.testing.assert_allclose(torch_out[node], keras_out[node], rtol=1e-5, atol=1e-5, err_msg=node)
    report = parity.run(arch, seed=2, steps=1)
    assert report.ok, parity.render_text(report)


# --------------------------------------------------------------------------- a broken mapping is caught


class _Broken:
    """Wraps a backend and corrupts the graph it compiles, as a mistaken mapping would."""

    def __init__(self, inner: Any, corrupt: Any):
        self.inner, self.corrupt = inner, corrupt

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def build(self, arch: Any, **options: Any) -> Any:
        broken = dataclasses.replace(arch, graph=g.Graph([self.corrupt(n) for n in arch.graph], arch.graph.output))
        return self.inner.build(broken, **options)


def _symmetric_padding(node: g.Node) -> g.Node:
    if isinstance(node, (g.Conv2D, g.MaxPool)) and node.padding != (0, 0, 0, 0):
        k = node.kernel_size if isinstance(node, g.Conv2D) else node.pool_size
        return dataclasses.replace(node, padding=(k[0] // 2, k[0] // 2, k[1] // 2, k[1] // 2))
    return node


def _default_epsilon(node: g.Node) -> g.Node:
    return dataclasses.replace(node, epsilon=1e-3) if isinstance(node, g.BatchNorm) else node


@pytest.mark.parametrize(
    ("corrupt", "first_node"),
    [(_symmetric_padding, "stage2.block0.conv1"), (_default_epsilon, "stem.norm1")],
    ids=["symmetric-padding", "default-bn-epsilon"],
)
def test_a_broken_mapping_fails_and_names_the_layer(monkeypatch: pytest.MonkeyPatch, corrupt: Any, first_node: str) -> None:
    real = sides.get_backend

    def patched(name: str) -> Any:
        backend = real(name)
        return _Broken(backend, corrupt) if name == "torch" else backend

    monkeypatch.setattr(sides, "get_backend", patched)
    arch = resnet_spec.build_architecture(small())
    report = parity.run(arch, seed=1, steps=1)
    assert not report.ok
    first = report.first_divergence("eval")
    assert first is not None and first.node == first_node


# --------------------------------------------------------------------------- one semantics where the frameworks differ


def test_same_padding_and_max_pool_on_negative_inputs() -> None:
    """Stride-2 'same' conv and max pool on an even input: TensorFlow pads (0, 1); a symmetric pad
    or a zero pad before the max would differ. The inputs are standard normal (half negative)."""
    spec = small(stem=[{"type": "conv", "filters": 8, "kernel_size": 3, "stride": 2}, {"type": "norm"},
                       {"type": "max_pool", "pool_size": 3, "stride": 2, "padding": "same"}])  # fmt: skip
    arch = resnet_spec.build_architecture(spec)
    assert arch.graph["stem.conv1"].padding == (0, 1, 0, 1)  # type: ignore[attr-defined]
    assert arch.graph["stem.maxpool1"].padding == (0, 1, 0, 1)  # type: ignore[attr-defined]
    report = parity.run(arch, seed=3, steps=1)
    assert report.ok, parity.render_text(report)


@pytest.mark.parametrize("mode", ["biased", "unbiased"])
def test_running_variance_update_on_a_tiny_map(mode: str) -> None:
    """N*H*W = 1*6*6 = 36, so unbiased/biased = 36/35 is far above the tolerance. Both backends
    must store what the spec says, checked against a NumPy computation."""
    spec = {
        "version": 1, "input": {"height": 6, "width": 6, "channels": 2}, "classes": 3,
        "defaults": {"norm": {"running_stats_decay": 0.9, "epsilon": 1e-3, "running_variance": mode}},
        "stem": [{"type": "norm"}],
        "stages": [{"block": "basic", "blocks": 1, "filters": 2}],
    }  # fmt: skip
    arch = resnet_spec.build_architecture(spec)
    images = np.random.default_rng(0).standard_normal((1, 6, 6, 2)).astype(np.float32)
    batch_var = images.reshape(-1, 2).var(axis=0, ddof=0 if mode == "biased" else 1)
    expected = 0.9 * 1.0 + 0.1 * batch_var
    start = initial_weights(arch, 0)
    for name in ("keras", "torch"):
        backend = get_backend(name)
        model = backend.build(arch)
        backend.set_weights(model, arch, start)
        probe = backend.train_probe(model, arch, [(images, np.array([1]))], steps=1, learning_rate=0.0, momentum=0.0, weight_decay=0.0)
        got = probe.stats_after_forward["stem.norm1"]["moving_variance"]
        np.testing.assert_allclose(got, expected, rtol=1e-5, err_msg=name)


def test_l2_penalty_is_twice_lambda_w_on_kernels_only() -> None:
    """kernel_l2 = l adds 2*l*w to kernel gradients (Keras' L2) and nothing to gamma/beta/bias."""
    lam = 0.05
    base = resnet_spec.build_architecture(small(defaults={"conv_bias": True}))
    with_l2 = resnet_spec.build_architecture(small(defaults={"conv_bias": True, "kernel_l2": lam}))
    start = initial_weights(base, 0)
    batch = [(np.random.default_rng(1).standard_normal((2, 8, 8, 3)).astype(np.float32), np.array([0, 3]))]
    for name in ("keras", "torch"):
        backend = get_backend(name)
        grads = []
        for arch in (base, with_l2):
            model = backend.build(arch)
            backend.set_weights(model, arch, start)
            grads.append(backend.train_probe(model, arch, batch, steps=1, learning_rate=0.0, momentum=0.0, weight_decay=0.0).gradients)
        kernel = start["stage1.block0.conv1"]["kernel"]
        np.testing.assert_allclose(grads[1]["stage1.block0.conv1"]["kernel"] - grads[0]["stage1.block0.conv1"]["kernel"],
                                   2 * lam * kernel, atol=1e-5, err_msg=name)  # fmt: skip
        for key in ("gamma", "beta"):
            np.testing.assert_allclose(grads[1]["stem.norm1"][key], grads[0]["stem.norm1"][key], atol=1e-7)
        np.testing.assert_allclose(grads[1]["stem.conv1"]["bias"], grads[0]["stem.conv1"]["bias"], atol=1e-7)


def test_weight_decay_touches_kernels_only() -> None:
    arch = resnet_spec.build_architecture(small())
    start = initial_weights(arch, 0)
    batch = [(np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype(np.float32), np.array([1, 2]))]
    for name in ("keras", "torch"):
        backend = get_backend(name)
        after = []
        for decay in (0.0, 0.1):
            model = backend.build(arch)
            backend.set_weights(model, arch, start)
            after.append(backend.train_probe(model, arch, batch, steps=1, learning_rate=0.1, momentum=0.0, weight_decay=decay).weights_after)
        kernel_delta = after[1]["stem.conv1"]["kernel"] - after[0]["stem.conv1"]["kernel"]
        np.testing.assert_allclose(kernel_delta, -0.1 * 0.1 * start["stem.conv1"]["kernel"], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(after[1]["stem.norm1"]["gamma"], after[0]["stem.norm1"]["gamma"], atol=1e-7)


def test_softmax_output_is_trained_on_its_logits() -> None:
    """With `output: softmax` the model ends in a softmax, but the loss is computed from the
    logits in both frameworks (a saturated softmax would otherwise give a wrong loss and a zero
    gradient in Keras' eager mode): the losses equal those of the logits model."""
    logits = resnet_spec.build_architecture(small())
    softmax = resnet_spec.build_architecture(small(head={"output": "softmax"}))
    start = initial_weights(logits, 0)
    batch = [(10 * np.random.default_rng(4).standard_normal((2, 8, 8, 3)).astype(np.float32), np.array([0, 4]))]
    for name in ("keras", "torch"):
        backend = get_backend(name)
        losses = []
        for arch in (logits, softmax):
            model = backend.build(arch)
            backend.set_weights(model, arch, start)
            losses.append(backend.train_probe(model, arch, batch, steps=1, learning_rate=0.0, momentum=0.0, weight_decay=0.0).losses[0])
        assert losses[0] == pytest.approx(losses[1], rel=1e-6), name
    outputs = get_backend("torch").node_outputs(_with(get_backend("torch"), softmax, start), softmax, batch[0][0])
    np.testing.assert_allclose(outputs["head.softmax"].sum(axis=1), 1.0, rtol=1e-5)


def test_dropout_is_where_the_spec_puts_it() -> None:
    """Dropout sits between the named nodes in both frameworks and is the identity at inference."""
    spec = small(head={"layers": [{"type": "global_avg_pool"}, {"type": "dropout", "rate": 0.5}]})
    arch = resnet_spec.build_architecture(spec)
    assert arch.graph["head.classifier"].inputs == ("head.dropout1",)
    report = parity.run(arch, seed=5, steps=1)
    assert report.ok, parity.render_text(report)
    images = np.random.default_rng(5).standard_normal((2, 8, 8, 3)).astype(np.float32)
    start = initial_weights(arch, 0)
    for name in ("keras", "torch"):
        backend = get_backend(name)
        out = backend.node_outputs(_with(backend, arch, start), arch, images)
        np.testing.assert_array_equal(out["head.dropout1"], out["head.pool1"])


def _with(backend: Any, arch: Any, weights: Any) -> Any:
    model = backend.build(arch)
    backend.set_weights(model, arch, weights)
    return model


# --------------------------------------------------------------------------- transfer and the commands


def test_weights_move_both_ways_with_their_statistics(tmp_path: Path) -> None:
    arch = resnet_spec.build_architecture("examples/resnet34_cifar10.yaml")  # flatten + dense: the row permutation
    keras_backend, torch_backend = get_backend("keras"), get_backend("torch")
    weights = initial_weights(arch, 7)
    weights["stem.norm1"]["moving_mean"] += 0.5  # statistics must travel too
    keras_model = _with(keras_backend, arch, weights)
    torch_model = torch_backend.build(arch)
    parity.transfer(keras_model, "keras", torch_model, "torch", arch)
    back = keras_backend.build(arch)
    parity.transfer(torch_model, "torch", back, "keras", arch)
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    a = keras_backend.node_outputs(keras_model, arch, images)["head.softmax"]
    b = torch_backend.node_outputs(torch_model, arch, images)["head.softmax"]
    c = keras_backend.node_outputs(back, arch, images)["head.softmax"]
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_array_equal(a, c)


def test_convert_command_round_trip(tmp_path: Path, repo_root: Path) -> None:
    keras_file, torch_file, again = tmp_path / "m.keras", tmp_path / "m.pt", tmp_path / "again.keras"
    assert main(["compile", "examples/resnet20_cifar10.yaml", "--backend", "keras", "-o", str(keras_file)]) == 0
    assert main(["convert", str(keras_file), "--to", "torch", "-o", str(torch_file)]) == 0
    assert main(["convert", str(torch_file), "--to", "keras", "-o", str(again)]) == 0
    arch = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml")
    images = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    keras_backend = get_backend("keras")
    first, _ = keras_backend.load(keras_file)
    last, _ = keras_backend.load(again)
    np.testing.assert_array_equal(keras_backend.node_outputs(first, arch, images)["head.classifier"],
                                  keras_backend.node_outputs(last, arch, images)["head.classifier"])  # fmt: skip


def test_parity_command(repo_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", "examples/resnet20_cifar10.yaml", "--steps", "1", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["first_divergence"] is None
    assert report["checks"]["eval"]["ok"] and report["checks"]["weights_after"]["ok"]


def test_same_seed_same_initial_weights_in_both_backends() -> None:
    arch = resnet_spec.build_architecture(small())
    start = initial_weights(arch, 11)
    for name in ("keras", "torch"):
        backend = get_backend(name)
        got = backend.get_weights(_with(backend, arch, start), arch)
        for node, tensors in start.items():
            for key, value in tensors.items():
                np.testing.assert_array_equal(got[node][key], value, err_msg=f"{name} {node}.{key}")
