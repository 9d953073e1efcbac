"""Data sets, read only from local paths (nothing is ever downloaded), as :mod:`.sources` splits
whose pixels stay on disk until a backend's input pipeline reads them.

``load(source, spec)`` understands:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images; the zero-set-up
  demo), held in memory; a fixed, seeded 80/20 train/test split;
* a CIFAR-10 or CIFAR-100 "python version" directory (``data_batch_1`` .. ``_5`` and
  ``test_batch``, or ``train`` and ``test``), memory-mapped (:mod:`.formats`);
* an image folder: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (the chest X-ray and
  ImageNet layouts; ``val`` is ignored), or ``ROOT/<class>/*`` split 80/20; only the file names are
  read here: the pipelines decode the images (converted to the spec's channel count, resized as
  ``preprocessing`` says);
* ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally ``class_names``);
* HDF5 like the hand-signs set: a directory with ``train_*.h5`` (``train_set_x``,
  ``train_set_y``, ``list_classes``) and ``test_*.h5`` (``test_set_x``, ``test_set_y``), or one
  file holding both.

Every problem found without decoding the images (a missing folder, a class without images,
shapes or labels that disagree with the spec) raises :class:`DataError` before the run directory
is made; an image that does not decode stops training with a :class:`DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..spec import ResNetSpec
from .errors import DataError
from .formats import IMAGE_SUFFIXES, cifar, hdf5, image_folder, npz
from .sources import ArraySplit, Split

__all__ = ["IMAGE_SUFFIXES", "DataError", "Dataset", "check", "load"]


@dataclass
class Dataset:
    name: str
    train: Split
    test: Split
    class_names: list[str] = field(default_factory=list)

    @classmethod
    def from_arrays(cls, name: str, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                    class_names: list[str] | None = None) -> Dataset:  # fmt: skip
        return cls(name, ArraySplit(f"{name}/train", x_train, y_train), ArraySplit(f"{name}/test", x_test, y_test),
                   list(class_names or []))  # fmt: skip

    def validation_split(self, fraction: float, seed: int) -> tuple[Split, Split | None]:
        """Hold out ``fraction`` of the training set (seeded): (the rest, the held-out part)."""
        if fraction <= 0:
            return self.train, None
        order = np.random.default_rng([seed, 7919]).permutation(len(self.train))
        held = max(1, round(len(order) * fraction))
        keep, val = np.sort(order[held:]), np.sort(order[:held])
        return self.train.subset(keep), self.train.subset(val)


def load(source: str, spec: ResNetSpec) -> Dataset:
    if source == "digits":
        dataset = _digits()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"data path {path} does not exist")
        dataset = _load_path(path)
    check(dataset, spec)
    return dataset


def _load_path(path: Path) -> Dataset:
    if path.is_file() and path.suffix == ".npz":
        return Dataset(path.name, *npz(path))
    if path.is_file() and path.suffix in {".h5", ".hdf5"}:
        return Dataset(path.parent.name, *hdf5([path]))
    if path.is_dir():
        if (path / "data_batch_1").exists() or (path / "train").is_file():
            return Dataset(path.name, *cifar(path))
        h5 = sorted(path.glob("*.h5"))
        if h5:
            return Dataset(path.name, *hdf5(h5))
        return Dataset(path.name, *image_folder(path))
    raise DataError(f"{path}: not a data set resnet-spec can read (npz, h5, a CIFAR batch directory or an image folder)")


def check(dataset: Dataset, spec: ResNetSpec) -> None:
    """What can be checked without decoding: example shapes (unless the recipe resizes), label
    ranges, a non-empty training set."""
    expected = (spec.input.height, spec.input.width, spec.input.channels)
    resizes = spec.training is not None and (
        spec.training.preprocessing.resize is not None or spec.training.augmentation.random_resized_crop is not None
    )
    for part, split in (("training", dataset.train), ("test", dataset.test)):
        shape = split.example_shape
        if shape is not None and (len(shape) != 3 or (shape[-1] != expected[-1] if resizes else shape != expected)):
            got = "x".join(map(str, shape)) if len(shape) == 3 else f"arrays of shape {shape}"
            raise DataError(
                f"{dataset.name}: {part} images are {got} but the spec's input is {'x'.join(map(str, expected))} "
                "(height x width x channels); change `input` in the spec or the data"
            )
        labels = split.labels
        if len(labels) and (labels.min() < 0 or labels.max() >= spec.classes):
            raise DataError(
                f"{dataset.name}: {part} labels run from {labels.min()} to {labels.max()} but the spec has "
                f"{spec.classes} classes"
            )
    if len(dataset.train) == 0:
        raise DataError(f"{dataset.name}: the training set is empty")


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.float32)[..., None]  # values 0..16
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(images))
    cut = int(len(order) * 0.8)
    train, test = order[:cut], order[cut:]
    names = [str(i) for i in range(10)]
    return Dataset.from_arrays("digits", images[train], labels[train], images[test], labels[test], names)
