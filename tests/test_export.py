"""``resnet-spec export`` (a trained run -> .pt / .keras / .onnx) and ``parity A B`` (two files on
one batch), as a user runs them. The runs are the digits ResNet trained for a step or two on a
tiny data set; the exported models are checked against the checkpoints read independently (the
trainer's own files, loaded with plain torch / Keras calls), the ONNX files against the PyTorch
forward with onnxruntime."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resnet_spec.cli import main
from resnet_spec.pipeline import build_architecture

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("tensorflow") is not None
HAVE_ORT = importlib.util.find_spec("onnxruntime") is not None and importlib.util.find_spec("onnxscript") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
needs_keras = pytest.mark.skipif(not HAVE_KERAS, reason="needs TensorFlow/Keras")
needs_onnx = pytest.mark.skipif(not (HAVE_TORCH and HAVE_ORT), reason="needs torch, onnxruntime and onnxscript")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 17, (40, 8, 8, 1)).astype(np.float32), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 17, (20, 8, 8, 1)).astype(np.float32), y_test=np.arange(20) % 10)  # fmt: skip
    return path


def _train(backend: str, data: Path, out: Path) -> Path:
    code = main(["train", str(DIGITS), "--backend", backend, "--data", str(data), "--out", str(out),
                 "--max-steps", "2", "--batch-size", "16", "--no-progress"])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def torch_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_TORCH:
        pytest.skip("needs torch")
    return _train("torch", data, tmp_path_factory.mktemp("runs") / "torch")


@pytest.fixture(scope="module")
def keras_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_KERAS:
        pytest.skip("needs TensorFlow/Keras")
    return _train("keras", data, tmp_path_factory.mktemp("runs") / "keras")


def _images(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 8, 8, 1)).astype(np.float32)


def _torch_checkpoint_model(run: Path) -> Any:
    """The reference: the trainer's training.pt, read with plain torch calls."""
    import torch
    from resnet_spec_torch.model import build_module

    model = build_module(build_architecture(run / "spec.yaml"))
    model.load_state_dict(torch.load(run / "checkpoint" / "training.pt", weights_only=True)["model"])
    return model.eval()


def _torch_forward(model: Any, images: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()


def _evaluate(target: Path, data: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    assert main(["evaluate", str(target), "--data", str(data), "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


# -- .pt / .keras ------------------------------------------------------------------------------


@pytest.mark.torch
@needs_torch
def test_torch_run_exports_its_checkpoint_exactly(torch_run: Path, data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import torch
    from resnet_spec_torch.io import load

    out = tmp_path / "digits.pt"
    assert main(["export", str(torch_run), "-o", str(out)]) == 0
    assert "from " + str(torch_run) + ": last checkpoint, step 2, trained with torch" in capsys.readouterr().out
    exported, meta = load(out)
    reference = _torch_checkpoint_model(torch_run)
    state, expected = exported.state_dict(), reference.state_dict()
    assert state.keys() == expected.keys() and any("running_var" in k for k in state)
    assert all(torch.equal(state[k], expected[k]) for k in state)  # weights and norm statistics, bit for bit
    images = _images(5)
    assert np.array_equal(_torch_forward(exported.eval(), images), _torch_forward(reference, images))
    assert meta["hash"] == json.loads((torch_run / "run.json").read_text())["hash"]
    assert main(["load", str(out)]) == 0 and "verified" in capsys.readouterr().out
    assert _evaluate(out, data, capsys) == _evaluate(torch_run, data, capsys) | {"run_dir": str(out)}


@pytest.mark.keras
@needs_keras
def test_keras_run_exports_its_checkpoint_exactly(keras_run: Path, data: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    from resnet_spec_keras.io import load
    from resnet_spec_keras.model import build_model

    out = tmp_path / "digits.keras"
    assert main(["export", str(keras_run), "-o", str(out)]) == 0
    capsys.readouterr()
    exported, _ = load(out)
    reference = build_model(build_architecture(keras_run / "spec.yaml"))
    reference.load_weights(keras_run / "checkpoint" / "model.weights.h5")
    names = [w.path for w in reference.weights]
    assert [w.path for w in exported.weights] == names and any("moving_variance" in n for n in names)
    assert all(np.array_equal(a, b) for a, b in zip(exported.get_weights(), reference.get_weights()))
    images = _images(5)
    assert np.array_equal(exported(images, training=False).numpy(), reference(images, training=False).numpy())
    assert _evaluate(out, data, capsys) == _evaluate(keras_run, data, capsys) | {"run_dir": str(out)}


@pytest.mark.keras
@pytest.mark.torch
@needs_keras
@needs_torch
def test_a_keras_run_exports_to_torch_and_convert_reads_it(keras_run: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "digits.pt"
    assert main(["export", str(keras_run), "-o", str(out)]) == 0
    assert main(["convert", str(out), "--to", "keras", "-o", str(tmp_path / "back.keras")]) == 0
    capsys.readouterr()
    exported = tmp_path / "direct.keras"
    assert main(["export", str(keras_run), "-o", str(exported)]) == 0
    capsys.readouterr()
    # the weights went keras -> torch -> keras: the same function as the checkpoint's own export
    assert main(["parity", str(exported), str(tmp_path / "back.keras"), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["checks"]["eval"]["rows"] > 10
    assert report["checks"]["eval"]["worst"]["max_abs"] == 0.0


@pytest.mark.torch
@needs_torch
def test_best_checkpoint_is_read_from_its_folder_and_missing_is_one_line(torch_run: Path, tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = tmp_path / "run"
    shutil.copytree(torch_run, run)
    assert main(["export", str(run), "--checkpoint", "best", "-o", str(tmp_path / "a.pt")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no best checkpoint" in err[0] and "--checkpoint last" in err[0]
    shutil.copytree(run / "checkpoint", run / "checkpoint-best")
    assert main(["export", str(run), "--checkpoint", "best", "-o", str(tmp_path / "a.pt")]) == 0
    assert "best checkpoint, step 2" in capsys.readouterr().out


@pytest.mark.torch
@needs_torch
def test_export_errors_are_one_line(torch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def refused(*args: str) -> tuple[int, str]:
        code = main(["export", *args])
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return code, lines[0]

    code, line = refused(str(tmp_path), "-o", str(tmp_path / "m.pt"))
    assert code == 1 and "not a run directory (no run.json)" in line
    code, line = refused(str(tmp_path / "absent"), "-o", str(tmp_path / "m.pt"))
    assert code == 1 and "no such run directory or model file" in line
    code, line = refused(str(torch_run), "-o", str(tmp_path / "m.h5"))
    assert code == 2 and "unknown model suffix '.h5'" in line and ".keras, .onnx, .pt" in line
    code, line = refused(str(torch_run), "-o", str(tmp_path / "m.pt"), "--opset", "18")
    assert code == 2 and "--opset applies to .onnx" in line
    empty = tmp_path / "empty-run"
    shutil.copytree(torch_run, empty)
    shutil.rmtree(empty / "checkpoint")
    code, line = refused(str(empty), "-o", str(tmp_path / "m.pt"))
    assert code == 1 and "no complete checkpoint" in line
    mine = tmp_path / "mine.pt"
    mine.write_text("a file the tool did not write")
    code, line = refused(str(torch_run), "-o", str(mine))
    assert code == 2 and "already exists" in line and "--force" in line
    assert mine.read_text() == "a file the tool did not write"
    assert main(["export", str(torch_run), "-o", str(mine), "--force"]) == 0


@pytest.mark.torch
@needs_torch
def test_load_convert_evaluate_parity_point_a_run_path_to_export(torch_run: Path, data: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    paths = [torch_run, torch_run / "checkpoint", torch_run / "checkpoint" / "training.pt"]
    commands = [["load"], ["convert", "--to", "keras", "-o", str(tmp_path / "x.keras")]]
    for path in paths:
        for command in commands:
            code = main([command[0], str(path), *command[1:]])
            lines = capsys.readouterr().err.strip().splitlines()
            assert code == 1 and len(lines) == 1, lines
            assert f"resnet-spec export {torch_run} -o model.pt" in lines[0]
    for path in paths[1:]:
        code = main(["evaluate", str(path), "--data", str(data)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert code == 1 and len(lines) == 1 and "resnet-spec export" in lines[0]
    assert main(["parity", str(paths[2]), str(paths[2])]) == 1
    assert "resnet-spec export" in capsys.readouterr().err


@pytest.mark.torch
@needs_torch
def test_a_pt2_program_loads_in_plain_pytorch_without_resnet_spec(torch_run: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "digits.pt2"
    assert main(["export", str(torch_run), "-o", str(out)]) == 0
    assert "torch.export.load vs the network on a batch of 3: max abs 0, max rel 0" in capsys.readouterr().out
    images = _images(4)
    np.save(tmp_path / "images.npy", images)
    plain = textwrap.dedent(f"""
        import sys, numpy as np, torch
        module = torch.export.load({str(out)!r}).module()
        x = torch.from_numpy(np.load({str(tmp_path / "images.npy")!r}).transpose(0, 3, 1, 2).copy())
        np.save({str(tmp_path / "out.npy")!r}, module(x).detach().numpy())
        assert not [m for m in sys.modules if m.startswith("resnet_spec")], "resnet_spec was imported"
    """)
    done = subprocess.run([sys.executable, "-c", plain], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          check=False, env={"PATH": "/usr/bin:/bin"})  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = _torch_forward(_torch_checkpoint_model(torch_run), images)
    assert np.array_equal(np.load(tmp_path / "out.npy"), expected)


# -- ONNX --------------------------------------------------------------------------------------


def _onnx_check(path: Path, reference: Callable[[np.ndarray], np.ndarray], batches: tuple[int, ...] = (1, 3)) -> list[float]:
    """onnxruntime against ``reference(images)`` at each batch size: the relative differences."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (spec_input,) = session.get_inputs()
    assert spec_input.name == "images" and spec_input.shape[0] == "batch"  # the batch dimension is dynamic
    found = []
    for batch in batches:
        images = np.random.default_rng(batch).standard_normal((batch, *spec_input.shape[2:], spec_input.shape[1]))
        images = images.astype(np.float32)
        expected = reference(images)
        got = session.run(None, {"images": images.transpose(0, 3, 1, 2).copy()})[0]
        assert got.shape == expected.shape
        found.append(float(np.max(np.abs(got - expected)) / np.max(np.abs(expected))))
    assert max(found) <= 1e-5, found
    return found


@pytest.mark.torch
@needs_onnx
def test_torch_run_to_onnx_matches_torch_at_batch_1_and_3(torch_run: Path, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import onnx

    out = tmp_path / "digits.onnx"
    assert main(["export", str(torch_run), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "onnxruntime vs torch on a batch of 3: max abs" in printed and "(limit 1e-05 rel)" in printed
    reference = _torch_checkpoint_model(torch_run)
    _onnx_check(out, lambda images: _torch_forward(reference, images))
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [21]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["resnet_spec.hash"] == json.loads((torch_run / "run.json").read_text())["hash"]
    assert json.loads(props["resnet_spec.spec"])["name"] == "resnet_digits" and props["resnet_spec.layout"] == "NCHW"

    assert main(["parity", str(tmp_path / "digits.onnx"), str(tmp_path / "digits.onnx")]) == 0
    capsys.readouterr()
    pt = tmp_path / "digits.pt"
    assert main(["export", str(torch_run), "-o", str(pt)]) == 0
    capsys.readouterr()
    assert main(["parity", str(pt), str(out), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["precision"] == "float32" and report["backends"] == ["digits.pt (torch)",
                                                                                         "digits.onnx (onnxruntime)"]  # fmt: skip
    assert 0.0 < report["checks"]["eval"]["worst"]["max_abs"] <= 1e-5


@pytest.mark.keras
@pytest.mark.torch
@needs_keras
@needs_onnx
def test_keras_run_to_onnx_through_torch(keras_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnet_spec_keras.model import build_model

    out = tmp_path / "digits.onnx"
    assert main(["export", str(keras_run), "-o", str(out), "--opset", "20"]) == 0
    assert "trained with keras" in capsys.readouterr().out
    reference = build_model(build_architecture(keras_run / "spec.yaml"))
    reference.load_weights(keras_run / "checkpoint" / "model.weights.h5")
    # against the Keras model itself: another framework's float32 arithmetic, so a looser bound than torch's
    import onnxruntime

    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = _images(3)
    got = session.run(None, {"images": images.transpose(0, 3, 1, 2).copy()})[0]
    expected = reference(images, training=False).numpy()
    assert np.max(np.abs(got - expected)) / np.max(np.abs(expected)) <= 1e-5


@pytest.mark.torch
@pytest.mark.slow
@needs_onnx
def test_resnet18_to_onnx_matches_torch_at_batch_1_and_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from resnet_spec_torch.io import load

    model = tmp_path / "resnet18.pt"
    assert main(["compile", str(REPO / "examples" / "resnet18.yaml"), "--backend", "torch", "-o", str(model)]) == 0
    started = time.perf_counter()
    assert main(["export", str(model), "-o", str(tmp_path / "resnet18.onnx")]) == 0
    print(f"resnet18 export + check: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    assert "onnxruntime vs torch" in capsys.readouterr().out
    net, _ = load(model)
    _onnx_check(tmp_path / "resnet18.onnx", lambda images: _torch_forward(net.eval(), images))


def test_a_missing_onnxruntime_is_the_extras_one_line_hint(tmp_path: Path) -> None:
    block = textwrap.dedent("""
        import importlib.abc
        class _Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "onnxruntime":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, _Absent())
    """)
    code = f"import sys\n{block}\nfrom resnet_spec.cli import main\nsys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "export", str(tmp_path), "-o", str(tmp_path / "m.onnx")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: this needs onnxruntime (module onnxruntime), which is not installed: pip install 'resnet-spec[onnx]'"]


# -- parity on two files -----------------------------------------------------------------------


@pytest.mark.torch
@needs_torch
def test_parity_of_two_model_files(torch_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trained = tmp_path / "trained.pt"
    assert main(["export", str(torch_run), "-o", str(trained)]) == 0
    untrained = tmp_path / "untrained.pt"
    assert main(["compile", str(DIGITS), "--backend", "torch", "-o", str(untrained)]) == 0
    capsys.readouterr()
    assert main(["parity", str(trained), str(trained)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("parity trained.pt (torch) vs trained.pt (torch) (float64, seed 0")
    assert "result: the two models are the same function" in text
    assert main(["parity", str(trained), str(untrained)]) == 1  # same architecture, other weights
    assert "first diverging layer: stem.conv1" in capsys.readouterr().out
    for extra in (["--steps", "1"], ["--set", "depth=8"]):
        assert main(["parity", str(trained), str(untrained), *extra]) == 2
        assert "two files are compared as they are" in capsys.readouterr().err
    assert main(["parity", str(trained), str(tmp_path / "absent.pt")]) == 2
    assert "no such model file" in capsys.readouterr().err
