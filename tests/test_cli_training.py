"""``train``, ``evaluate``, ``compile`` and ``load`` as a user runs them: the ``--epochs``,
``--batch-size`` and ``--lr`` shorthands, ``--format json``, the confusion matrix with the data
set's class names, a missing optional package as a one-line hint, and TensorFlow's start-up
noise hidden unless ``--verbose``."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from resnet_spec.cli import main
from resnet_spec.loader import load_file

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("tensorflow") is not None


def _cli(*args: str, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\nfrom resnet_spec.cli import main\nsys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          check=False)  # fmt: skip


@pytest.fixture(scope="module")
def named_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny .npz in the digits' shape whose classes have names."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "named.npz"
    np.savez(path, x_train=rng.integers(0, 17, (40, 8, 8, 1)).astype(np.float32), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 17, (20, 8, 8, 1)).astype(np.float32), y_test=np.arange(20) % 10,
             class_names=np.array(NAMES))  # fmt: skip
    return path


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_train_shorthands_json_result_and_class_names(named_digits: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    run = tmp_path / "run"
    code = main(["train", str(DIGITS), "--backend", "torch", "--data", str(named_digits), "--out", str(run),
                 "--epochs", "2", "--batch-size", "16", "--lr", "0.005", "--no-progress", "--format", "json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert code == 0, err
    result = json.loads(out)  # standard output holds the JSON alone; epoch lines went to standard error
    assert "epoch 1/2" in err and "epoch 2/2" in err
    assert result["run_dir"] == str(run) and result["class_names"] == NAMES and result["backend"] == "torch"
    assert sum(map(sum, result["confusion_matrix"])) == 20 and 0.0 <= result["test_accuracy"] <= 1.0
    training = load_file(run / "spec.yaml").data["training"]
    assert (training["epochs"], training["batch_size"], training["optimizer"]["learning_rate"]) == (2, 16, 0.005)
    assert training["iterations"] is None
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]  # 36 training images (10% held out) in batches of 16

    code = main(["evaluate", str(run), "--data", str(named_digits), "--format", "json"])
    evaluation = json.loads(capsys.readouterr().out)
    assert code == 0 and evaluation["class_names"] == NAMES
    assert evaluation["confusion_matrix"] == result["confusion_matrix"]
    assert evaluation["accuracy"] == pytest.approx(result["test_accuracy"])

    code = main(["evaluate", str(run), "--data", str(named_digits)])
    text = capsys.readouterr().out
    assert code == 0 and text.splitlines()[2].split() == [n[:8] for n in NAMES]


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_train_prints_the_confusion_matrix_with_class_names(named_digits: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code = main(["train", str(DIGITS), "--backend", "torch", "--data", str(named_digits), "--out", str(tmp_path / "r"),
                 "--max-steps", "1", "--no-progress"])  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix"))
    assert code == 0 and lines[header + 1].split() == [n[:8] for n in NAMES]
    assert [line.split()[0] for line in lines[header + 2:header + 12]] == NAMES


def test_a_bad_shorthand_is_located_at_the_override(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", str(DIGITS), "--backend", "torch", "--data", "digits", "--out", str(tmp_path / "r"), "--epochs", "0"])
    _, err = capsys.readouterr()
    assert code == 1 and not (tmp_path / "r").exists()
    assert err.startswith("--set training.epochs=0: error RS105: training.epochs is 0; it must be at least 1")


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_a_missing_optional_package_is_one_line_naming_the_extra(tmp_path: Path) -> None:
    """`pip install 'resnet-spec[torch]'` without the train extra, then `train --data digits`."""
    block = textwrap.dedent("""
        import importlib.abc
        class _Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "sklearn":
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        sys.meta_path.insert(0, _Absent())
    """)
    done = _cli("train", str(DIGITS), "--backend", "torch", "--data", "digits", "--out", str(tmp_path / "r"), prelude=block)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: this needs scikit-learn (module sklearn), which is not installed: pip install 'resnet-spec[train]'"]


def test_every_hinted_extra_holds_its_package() -> None:
    import tomllib

    from packaging.requirements import Requirement

    from resnet_spec.cli.environment import OPTIONAL_PACKAGES

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, (distribution, extra) in OPTIONAL_PACKAGES.items():
        names = {Requirement(r).name.lower() for r in extras[extra]}
        assert distribution.lower() in names, f"{module}: extra [{extra}] does not install {distribution}"


@pytest.mark.torch
@pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")
def test_compile_then_load_as_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = tmp_path / "digits.pt"
    assert main(["compile", str(DIGITS), "--backend", "torch", "-o", str(model)]) == 0
    capsys.readouterr()
    assert main(["load", str(model), "--format", "json"]) == 0
    loaded = json.loads(capsys.readouterr().out)
    assert loaded["backend"] == "torch" and loaded["verified"] and loaded["name"] == "resnet_digits"
    assert loaded["hash"].startswith("sha256:") and loaded["params_trainable"] > 0
    assert main(["compile", str(DIGITS), "--backend", "torch", "-o", str(tmp_path / "digits.keras")]) == 2
    assert "this backend writes .pt files" in capsys.readouterr().err


NOISE = ("absl::InitializeLog", "oneDNN custom operations", "cuInit", "cuda drivers", "cpu_feature_guard")


@pytest.mark.keras
@pytest.mark.skipif(not HAVE_KERAS, reason="needs TensorFlow/Keras")
def test_tensorflow_start_up_noise_only_with_verbose(tmp_path: Path) -> None:
    quiet = _cli("compile", str(DIGITS), "--backend", "keras", "-o", str(tmp_path / "a.keras"))
    assert quiet.returncode == 0, quiet.stderr
    assert not [word for word in NOISE if word in quiet.stderr], quiet.stderr
    loud = _cli("--verbose", "compile", str(DIGITS), "--backend", "keras", "-o", str(tmp_path / "b.keras"))
    # the filter hides something real (which lines TensorFlow prints depends on the CPU: oneDNN's note is not on every one)
    assert loud.returncode == 0 and [word for word in NOISE if word in loud.stderr], loud.stderr
