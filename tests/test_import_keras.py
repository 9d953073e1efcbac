"""Importing Keras weights: keras.applications.ResNet50 (weights=None, batch-norm statistics and
biases randomized) saved as a Keras 2 style .h5, a Keras 3 .weights.h5 and a .keras archive and
imported by the structure of its names, and from the model itself by its graph; the seed
systems written by hand as Keras models (tests/import_seeds_keras.py); a resnet-spec .keras
file. Outputs are checked against the reference's within 1e-5 relative."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

import h5py
from import_helpers import assert_same_weights, tiny
from import_seeds_keras import SEEDS
from keras.src.legacy.saving import legacy_h5_format

from resnet_spec import build_architecture
from resnet_spec.backends import get_backend
from resnet_spec.importing import WeightsImportError, import_weights

pytestmark = pytest.mark.keras

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["input.height=64", "input.width=64"]
BACKEND: Any = get_backend("keras")


def randomized(model: Any, seed: int = 0) -> Any:
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        name = variable.path.rsplit("/", 1)[-1]
        if name in ("gamma", "moving_variance"):
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))
        elif name in ("beta", "moving_mean", "bias"):
            variable.assign(rng.uniform(-0.2, 0.2, variable.shape))
    return model


def images(arch: Any, seed: int = 1) -> np.ndarray:
    h, w, c = arch.graph.input.shape
    return np.random.default_rng(seed).standard_normal((2, h, w, c)).astype(np.float32)


def assert_close(ours: np.ndarray, theirs: np.ndarray, rtol: float = 1e-5) -> None:
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= rtol * np.abs(theirs).max()


@pytest.fixture(scope="module")
def applications(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    keras.utils.set_random_seed(0)
    reference = randomized(keras.applications.ResNet50(weights=None, include_top=True, input_shape=(64, 64, 3)))
    folder = tmp_path_factory.mktemp("applications")
    reference.save_weights(folder / "resnet50.weights.h5")
    with h5py.File(folder / "resnet50.h5", "w") as f:  # the layout of the keras.applications downloads
        legacy_h5_format.save_weights_to_hdf5_group(f, reference)
    reference.save(folder / "resnet50.keras")
    return reference, folder


def test_keras_applications_resnet50_imports_from_every_file_and_from_the_model(applications: tuple[Any, Path]) -> None:
    reference, folder = applications
    arch = build_architecture(EXAMPLES / "keras_resnet50_imagenet.yaml", overrides=SMALL)
    model = BACKEND.build(arch)
    x = images(arch)
    want = reference(x, training=False).numpy()
    matched = []
    for source in (folder / "resnet50.h5", folder / "resnet50.weights.h5", folder / "resnet50.keras", reference):
        result = import_weights(arch, source)
        BACKEND.set_weights(model, arch, result.complete(BACKEND.get_weights(model, arch)))
        assert_close(model(x, training=False).numpy(), want)
        matched.append({node: {k: v.rsplit("/", 1)[-1] for k, v in keys.items()} | {"layer": next(iter(keys.values())).rsplit("/", 1)[0]}
                        for node, keys in result.matched.items()})  # fmt: skip
    assert matched[0] == matched[1] == matched[2] == matched[3]
    assert matched[0]["stage1.block0.shortcut.conv"]["layer"] == "conv2_block1_0_conv"


@pytest.mark.torch
def test_keras_weights_into_a_torch_network(applications: tuple[Any, Path]) -> None:
    """The same file into the spec compiled for PyTorch: equal outputs across frameworks."""
    pytest.importorskip("torch")
    import torch

    reference, folder = applications
    arch = build_architecture(EXAMPLES / "keras_resnet50_imagenet.yaml", overrides=SMALL)
    torch_backend: Any = get_backend("torch")
    model = torch_backend.build(arch).eval()
    result = import_weights(arch, folder / "resnet50.weights.h5")
    torch_backend.set_weights(model, arch, result.complete(torch_backend.get_weights(model, arch)))
    x = images(arch)
    with torch.no_grad():
        ours = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert_close(ours, reference(x, training=False).numpy())  # measured: 1.3e-6


@pytest.mark.parametrize("name", SEEDS)
def test_hand_written_seed_models_import(name: str) -> None:
    keras.utils.set_random_seed(0)
    reference = randomized(SEEDS[name]())
    arch = build_architecture(EXAMPLES / f"{name}.yaml")
    result = import_weights(arch, reference)
    assert result.method == "graph" and not result.notes
    model = BACKEND.build(arch)
    BACKEND.set_weights(model, arch, result.complete(BACKEND.get_weights(model, arch)))
    x = images(arch)
    assert_close(model(x, training=False).numpy(), reference(x, training=False).numpy())


def test_a_weights_file_whose_names_have_no_blocks_says_so(tmp_path: Path) -> None:
    reference = SEEDS["resnet20_cifar10"]()  # Keras' own names: conv2d_3, batch_normalization_7
    reference.save_weights(tmp_path / "resnet20.weights.h5")
    arch = build_architecture(EXAMPLES / "resnet20_cifar10.yaml")
    with pytest.raises(
        WeightsImportError, match=r"stage1\.block0: the source's names do not group its layers into blocks"
    ):
        import_weights(arch, tmp_path / "resnet20.weights.h5")


def test_a_resnet_spec_keras_file_is_read_without_load_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arch = tiny()
    reference = randomized(BACKEND.build(arch))
    BACKEND.save(reference, arch, arch.spec.model_dump(mode="json", exclude_none=True), tmp_path / "tiny.keras")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("load_model deserializes config.json; the importer must not call it")

    monkeypatch.setattr(keras.models, "load_model", refuse)
    result = import_weights(arch, tmp_path / "tiny.keras")
    assert result.method == "graph" and "resnet-spec Keras model tiny" in result.source
    assert_same_weights(result.weights, BACKEND.get_weights(reference, arch))
