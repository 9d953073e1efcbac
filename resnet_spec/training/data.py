"""Data sets, read only from local paths (nothing is ever downloaded), as :mod:`.sources` splits
whose pixels stay on disk until a backend's input pipeline reads them.

``load(source, spec)`` understands:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images; the zero-set-up
  demo), held in memory; a fixed, seeded 80/20 train/test split;
* a CIFAR-10 or CIFAR-100 "python version" directory (``data_batch_1`` .. ``_5`` and
  ``test_batch``, or ``train`` and ``test``), memory-mapped (:mod:`.formats`);
* an image folder: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (the chest X-ray and
  ImageNet layouts; ``val`` is ignored), or ``ROOT/<class>/*`` split 80/20; only the file names are
  read here (and a sample of headers, :mod:`.checks`): the pipelines decode the images (resized
  and converted to the spec's channel count only when ``preprocessing.resize`` asks);
* ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally ``class_names``);
* HDF5 like the hand-signs set: a directory with ``train_*.h5`` (``train_set_x``,
  ``train_set_y``, ``list_classes``) and ``test_*.h5`` (``test_set_x``, ``test_set_y``), or one
  file holding both.

Every problem found without decoding the images (a missing folder, a class without images,
shapes, labels or classes that disagree with the spec, non-finite pixels: :mod:`.checks`) raises
:class:`DataError` before the run directory is made; an image that does not decode (or, unchecked
before, has the wrong size) stops training with a :class:`DataError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..spec import ResNetSpec
from . import checks
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
    notes: list[str] = field(default_factory=list)  # conversions the recipe asked for (checks.check)

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
        held = checks.held_out(len(order), fraction)
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
    """The data checks of :mod:`.checks` (counts, labels, classes, shapes, pixels, image headers);
    the conversions the recipe asks for go to ``dataset.notes``."""
    dataset.notes = checks.check(dataset.name, dataset.train, dataset.test, dataset.class_names, spec)


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
