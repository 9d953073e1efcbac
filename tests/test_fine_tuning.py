"""Fine-tuning (``train --init-from``, ``training.freeze``, ``optimizer.head_lr_multiplier``):
frozen names checked where they are written; the head's learning rate in both optimizers against
the NumPy reference; both backends taking the same steps from the same imported start; and the
whole flow (a network pretrained on the digits 0 to 5 (6 classes), saved, imported by structure,
fine-tuned to all 10 classes with its stem and first stage frozen) reaching 97% in each backend with
the frozen weights and batch-norm statistics unchanged, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from optimizer_reference import numpy_optimizer

import resnet_spec
from resnet_spec.cli import main
from resnet_spec.training import fine_tune
from resnet_spec.weights import weight_nodes

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
FROZEN = ["stem", "stage1"]
FREEZE = f"training.freeze=[{', '.join(FROZEN)}]"
# A weight node is frozen when it sits under a frozen part: names start with "stem." / "stage1.".
FROZEN_PREFIXES = tuple(f"{part}." for part in FROZEN)


# ---------------------------------------------------------------------------- the recipe keys


def test_unknown_frozen_parts_are_located_errors(tmp_path: Path) -> None:
    text = DIGITS.read_text().replace("  seed: 0\n", "  seed: 0\n  freeze: [stem, stage3, stge1]\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    problems = resnet_spec.validate(spec).report.sorted()
    line = text.splitlines().index("  freeze: [stem, stage3, stge1]") + 1
    assert [(d.code, d.key, d.line) for d in problems] == [("RS305", "training.freeze.1", line), ("RS305", "training.freeze.2", line)]
    assert "'stage3' is not a part of this network (it has stem, stage1, stage2, backbone)" in problems[0].message
    assert problems[1].hint is not None and "did you mean 'stage1'?" in problems[1].hint


def test_frozen_parts_and_head_name_the_weight_nodes() -> None:
    arch = resnet_spec.build_architecture(DIGITS, overrides=["training.freeze=[backbone]"])
    assert arch.spec.training is not None
    weighted = [n.name for n in weight_nodes(arch)]
    assert fine_tune.frozen_nodes(arch, arch.spec.training) == [n for n in weighted if not n.startswith("head.")]
    assert fine_tune.head_nodes(arch) == ["head.classifier"]
    arch = resnet_spec.build_architecture(DIGITS, overrides=[FREEZE])
    assert arch.spec.training is not None
    frozen = fine_tune.frozen_nodes(arch, arch.spec.training)
    assert frozen == [n for n in weighted if n.startswith(FROZEN_PREFIXES)] and len(frozen) == 6
    assert not any(n.startswith("stage2") for n in frozen)


# ---------------------------------------------------------------------------- the head's learning rate

RATES = [0.1, 0.1, 0.01, 0.05]
TINY = {"version": 1, "input": {"height": 2, "width": 2, "channels": 1}, "classes": 3,
        "defaults": {"conv_bias": True}, "stem": [{"type": "conv", "filters": 2, "kernel_size": 1}],
        "stages": [{"block": "basic", "blocks": 1, "filters": 2}]}  # fmt: skip


def _expected(kind: str, start: dict[str, np.ndarray], grads: list[dict[str, np.ndarray]], scale: float) -> dict[str, np.ndarray]:
    return {key: numpy_optimizer(kind, start[key], [g[key] for g in grads], [r * scale for r in RATES],
                                 decay=key == "kernel", m=0.9) for key in start}  # fmt: skip


def _settings(kind: str) -> Any:
    from resnet_spec.spec import Optimizer

    return Optimizer(kind=kind, learning_rate=0.1, momentum=0.9, weight_decay=0.1, head_lr_multiplier=10.0)


def _gradients(shapes: dict[str, dict[str, tuple[int, ...]]]) -> list[dict[str, dict[str, np.ndarray]]]:
    rng = np.random.default_rng(1)
    return [{node: {k: rng.standard_normal(s).astype(np.float32) for k, s in keys.items()} for node, keys in shapes.items()}
            for _ in RATES]  # fmt: skip


@pytest.mark.torch
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_torch_head_learns_at_its_multiple_of_the_rate(kind: str) -> None:
    torch = pytest.importorskip("torch")
    from resnet_spec_torch.optim import make_optimizer, set_learning_rate

    from resnet_spec.backends import get_backend

    arch = resnet_spec.build_architecture(TINY)
    model = get_backend("torch").build(arch, seed=0)
    layers = {"stem.conv1": model.stem.conv1, "head.classifier": model.get_submodule("head.classifier")}
    start = {n: {"kernel": m.weight.detach().numpy().copy(), "bias": m.bias.detach().numpy().copy()} for n, m in layers.items()}
    grads = _gradients({n: {k: v.shape for k, v in e.items()} for n, e in start.items()})
    optimizer = make_optimizer(_settings(kind), model, arch, head=fine_tune.head_nodes(arch))
    for step, rate in zip(grads, RATES):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        for name, module in layers.items():
            module.weight.grad, module.bias.grad = (torch.from_numpy(step[name][k]) for k in ("kernel", "bias"))
        set_learning_rate(optimizer, rate)
        optimizer.step()
    for name, module in layers.items():
        expected = _expected(kind, start[name], [g[name] for g in grads], 10.0 if name.startswith("head.") else 1.0)
        for key, tensor in (("kernel", module.weight), ("bias", module.bias)):
            np.testing.assert_allclose(tensor.detach().numpy(), expected[key], rtol=2e-6, atol=2e-6, err_msg=f"{name}.{key}")


@pytest.mark.keras
@pytest.mark.parametrize("kind", ["sgd", "adamw"])
def test_keras_head_learns_at_its_multiple_of_the_rate(kind: str) -> None:
    keras = pytest.importorskip("keras")
    from resnet_spec_keras.optim import TorchFormOptimizer
    from resnet_spec_keras.train import head_variables

    from resnet_spec.backends import get_backend

    arch = resnet_spec.build_architecture(TINY)
    model = get_backend("keras").build(arch)
    layers = {name: model.get_layer(name) for name in ("stem.conv1", "head.classifier")}
    start = {n: {"kernel": keras.ops.convert_to_numpy(layer.kernel), "bias": keras.ops.convert_to_numpy(layer.bias)}
             for n, layer in layers.items()}  # fmt: skip
    grads = _gradients({n: {k: v.shape for k, v in e.items()} for n, e in start.items()})
    optimizer = TorchFormOptimizer.from_settings(_settings(kind), head_variables(model, frozenset(fine_tune.head_nodes(arch))))
    variables = model.trainable_variables
    optimizer.build(variables)
    for step, rate in zip(grads, RATES):
        by_path = {f"{n}/{k}": v for n, e in step.items() for k, v in e.items()}
        optimizer.learning_rate.assign(rate)
        optimizer.apply([keras.ops.convert_to_tensor(by_path.get(v.path, np.zeros(v.shape, np.float32))) for v in variables],
                        variables)  # fmt: skip
    for name, layer in layers.items():
        expected = _expected(kind, start[name], [g[name] for g in grads], 10.0 if name.startswith("head.") else 1.0)
        for key, variable in (("kernel", layer.kernel), ("bias", layer.bias)):
            # Keras' float32 Adam arithmetic (bias corrections by ops.power) is about 1e-6 of a step
            # off the float64 reference; the head's steps are 10x larger (a missed scale: 10x off).
            np.testing.assert_allclose(keras.ops.convert_to_numpy(variable), expected[key], rtol=2e-5, atol=2e-5,
                                       err_msg=f"{name}.{key}")  # fmt: skip


# ---------------------------------------------------------------------------- the imported start


def _source_state_dict(path: Path, classes: int = 12) -> dict[str, Any]:
    """A saved reference: the digits network with ``classes`` classes, random weights and random batch-norm
    statistics, as a plain PyTorch state dict (imported by the structure of its names)."""
    torch = pytest.importorskip("torch")
    from resnet_spec.backends import get_backend

    model = get_backend("torch").build(resnet_spec.build_architecture(DIGITS, overrides=[f"classes={classes}"]), seed=7)
    generator = torch.Generator().manual_seed(7)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def _checkpoint_weights(run: Path) -> dict[str, np.ndarray]:
    """The final checkpoint's model weights in the neutral layout, by ``node.key``."""
    state = json.loads((run / "run.json").read_text())
    arch = resnet_spec.build_architecture(run / "spec.yaml")
    from resnet_spec.backends import get_backend

    backend = get_backend(state["backend"])
    if state["backend"] == "torch":
        import torch

        model = backend.build(arch)
        model.load_state_dict(torch.load(run / "checkpoint" / "training.pt", weights_only=True)["model"])
    else:
        model = backend.build(arch)
        model.load_weights(run / "checkpoint" / "model.weights.h5")
    return {f"{n}.{k}": v for n, e in backend.get_weights(model, arch).items() for k, v in e.items()}


def _neutral(state: dict[str, Any]) -> dict[str, np.ndarray]:
    from resnet_spec.backends import get_backend

    backend = get_backend("torch")
    classes = state["head.classifier.weight"].shape[0]
    arch = resnet_spec.build_architecture(DIGITS, overrides=[f"classes={classes}"])
    model = backend.build(arch)
    model.load_state_dict(state)
    return {f"{n}.{k}": v for n, e in backend.get_weights(model, arch).items() for k, v in e.items()}


def _assert_frozen_unchanged(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> None:
    frozen = [k for k in before if k.startswith(FROZEN_PREFIXES)]
    assert len(frozen) == 15  # 3 convs, 3 batch norms (gamma, beta, mean, variance)
    assert any(k.endswith("moving_mean") for k in frozen)
    for key in frozen:
        np.testing.assert_array_equal(after[key], before[key], err_msg=key)
    trained = [k for k in before if k.startswith("stage2.") and not np.array_equal(after[k], before[k])]
    assert len(trained) == len([k for k in before if k.startswith("stage2.")])  # the rest trained, statistics too


@pytest.mark.keras
@pytest.mark.torch
def test_backends_take_the_same_fine_tuning_steps(tmp_path: Path) -> None:
    """One imported start, stem and stage 1 frozen, the head at 10x the rate, SGD with momentum
    and weight decay: both backends see the same losses step for step, keep the frozen tensors
    bit for bit, and end with the same weights."""
    pytest.importorskip("tensorflow")
    from resnet_spec.training.commands import train

    source = tmp_path / "reference.pth"
    before = _neutral(_source_state_dict(source))
    overrides = [FREEZE, "training.batch_size=128", "training.epochs=1",
                 "training.optimizer={kind: sgd, learning_rate: 0.05, momentum: 0.9, weight_decay: 0.0005, head_lr_multiplier: 10}"]  # fmt: skip
    result = resnet_spec.validate(DIGITS, overrides=overrides)
    assert result.architecture is not None and result.document is not None
    losses, weights = {}, {}
    for backend in ("keras", "torch"):
        seen: list[float] = []
        train(result.architecture, result.document.data, backend=backend, source="digits", out=tmp_path / backend,
              max_steps=6, progress=False, init_from=source, on_step=lambda s, lr, loss, seen=seen: seen.append(loss))  # fmt: skip
        losses[backend], weights[backend] = seen, _checkpoint_weights(tmp_path / backend)
        _assert_frozen_unchanged(before, weights[backend])
    np.testing.assert_allclose(losses["keras"], losses["torch"], rtol=1e-4)
    for key, value in weights["torch"].items():
        np.testing.assert_allclose(weights["keras"][key], value, rtol=1e-3, atol=1e-4, err_msg=key)  # float32 order of sums


@pytest.mark.torch
def test_a_state_dict_of_one_block_stages_finds_its_blocks_below_the_stages(tmp_path: Path) -> None:
    """``stage2`` holds the same shapes as ``stage2.block0`` when a stage has one block: the
    blocks are the containers where the shortcut can be told from the branch."""
    from resnet_spec.importing import import_weights

    source = tmp_path / "reference.pth"
    before = _neutral(_source_state_dict(source))
    result = import_weights(resnet_spec.build_architecture(DIGITS), source, classifier="auto")
    assert result.method == "names" and result.new == ["head.classifier"]
    assert result.matched["stage2.block0.shortcut.conv"] == {"kernel": "stage2.block0.shortcut.conv.weight"}
    assert result.matched["stage2.block0.conv1"] == {"kernel": "stage2.block0.conv1.weight"}
    for node, entry in result.weights.items():
        for key, value in entry.items():
            np.testing.assert_array_equal(value, before[f"{node}.{key}"], err_msg=f"{node}.{key}")


@pytest.mark.torch
def test_a_source_that_does_not_fit_fails_with_the_importers_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "reference.pth"
    _source_state_dict(source)
    run = tmp_path / "run"
    code = main(["train", str(DIGITS), "--backend", "torch", "--data", "digits", "--out", str(run), "--no-progress",
                 "--init-from", str(source), "--set", "stages.1.filters=48"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {source} (PyTorch state dict") and "stage2" in err and "48" in err
    assert not run.exists()  # refused before the run directory is created


@pytest.mark.torch
def test_a_model_file_of_the_same_classes_keeps_its_classifier(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``import-weights -o model.pt`` writes a resnet-spec model file; ``--init-from`` reads it by
    its stored graph, classifier included (the classes agree), and trains with stage 1 frozen."""
    source = tmp_path / "reference.pth"
    before = _neutral(_source_state_dict(source, classes=10))
    model = tmp_path / "digits10.pt"
    assert main(["import-weights", str(DIGITS), str(source), "-o", str(model)]) == 0
    run = tmp_path / "run"
    code = main(["train", str(DIGITS), "--backend", "torch", "--data", "digits", "--out", str(run), "--no-progress",
                 "--init-from", str(model), "--set", FREEZE, "--max-steps", "2"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "matched by its dataflow" in out and "initialized fresh" not in out and "frozen: stem, stage1" in out
    after = _checkpoint_weights(run)
    _assert_frozen_unchanged(before, after)
    assert not np.array_equal(after["head.classifier.kernel"], before["head.classifier.kernel"])  # imported, then trained
    assert np.abs(after["head.classifier.kernel"] - before["head.classifier.kernel"]).max() < 0.05


# ---------------------------------------------------------------------------- the whole flow, per backend


def _fine_tune(tmp_path: Path, backend: str, source: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    run = tmp_path / f"tuned-{backend}"
    code = main(["train", str(DIGITS), "--backend", backend, "--data", "digits", "--out", str(run), "--no-progress",
                 "--init-from", str(source), "--epochs", "4", "--set", FREEZE,
                 "--set", "training.optimizer.head_lr_multiplier=10"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "head.classifier: 6 -> 10 classes, initialized fresh" in out
    assert "frozen: stem, stage1 (6 layers; their weights and the running statistics of their 3 batch norms" in out
    result = json.loads((run / "result.json").read_text())
    assert json.loads((run / "run.json").read_text())["init_from"] == str(source)
    return {"accuracy": result["test_accuracy"], "weights": _checkpoint_weights(run), "out": out}


def _six_digits(tmp_path: Path) -> Path:
    """Another task to pretrain on: the bundled digits 0 to 5 only, as an npz (a 6-class data set;
    the data checks refuse a spec whose classes differ from its data's)."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    keep = labels < 6
    x, y = images[keep].reshape(-1, 8, 8, 1).astype(np.float32), labels[keep]
    path = tmp_path / "six_digits.npz"
    np.savez(path, x_train=x[:-200], y_train=y[:-200], x_test=x[-200:], y_test=y[-200:])
    return path


def _pretrain(tmp_path: Path, backend: str) -> Path:
    run = tmp_path / f"pretrained-{backend}"
    code = main(["train", str(DIGITS), "--backend", backend, "--data", str(_six_digits(tmp_path)), "--out", str(run),
                 "--no-progress", "--epochs", "2", "--set", "classes=6"])  # fmt: skip
    assert code == 0
    return run


@pytest.mark.slow
@pytest.mark.torch
def test_torch_fine_tunes_an_imported_reference_to_97_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pretrained (2 epochs, digits 0-5), saved as a plain state dict, imported by its names'
    structure, fine-tuned 4 epochs with the stem and stage 1 frozen."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    pretrained = _pretrain(tmp_path, "torch")
    state = torch.load(pretrained / "checkpoint" / "training.pt", weights_only=True)["model"]
    torch.save(state, tmp_path / "reference.pth")
    tuned = _fine_tune(tmp_path, "torch", tmp_path / "reference.pth", capsys)
    assert "matched by the structure of its names" in tuned["out"]
    assert tuned["accuracy"] >= 0.97, tuned["accuracy"]
    _assert_frozen_unchanged(_neutral(state), tuned["weights"])


@pytest.mark.slow
@pytest.mark.keras
def test_keras_fine_tunes_a_pretrained_run_to_97_percent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Pretrained (2 epochs, digits 0-5) in a run directory, imported from its checkpoint by the
    graph of its spec, fine-tuned 4 epochs with the stem and stage 1 frozen."""
    pytest.importorskip("tensorflow")
    pretrained = _pretrain(tmp_path, "keras")
    before = _checkpoint_weights(pretrained)
    tuned = _fine_tune(tmp_path, "keras", pretrained, capsys)
    assert "matched by its dataflow" in tuned["out"] and f"{pretrained}, its checkpoint at step" in tuned["out"]
    assert tuned["accuracy"] >= 0.97, tuned["accuracy"]
    _assert_frozen_unchanged(before, tuned["weights"])
