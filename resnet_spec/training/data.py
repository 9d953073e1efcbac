"""Data sets, read only from local paths (nothing is ever downloaded), as NumPy arrays.

``load(source, spec)`` understands:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 real images; the zero-set-up
  demo); a fixed, seeded 80/20 train/test split;
* a CIFAR-10 or CIFAR-100 "python version" directory (``data_batch_1`` .. ``_5`` and
  ``test_batch``, or ``train`` and ``test``);
* an image folder: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (the chest X-ray layout;
  ``val`` is ignored), or ``ROOT/<class>/*`` split 80/20; images are decoded with Pillow, converted
  to the spec's channel count and resized to its input size;
* ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (and optionally ``class_names``);
* HDF5 like the hand-signs set: a directory with ``train_*.h5`` (``train_set_x``,
  ``train_set_y``, ``list_classes``) and ``test_*.h5`` (``test_set_x``, ``test_set_y``), or one
  file holding both.

Every problem (missing folder, a class without images, a corrupt image, shapes or channel
counts that disagree with the spec) raises :class:`DataError` before any training starts.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..spec import ResNetSpec

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class DataError(ValueError):
    """A data problem found before training; the message says what and where."""


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, H, W, C), uint8 or float32
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] = field(default_factory=list)

    def validation_split(self, fraction: float, seed: int) -> tuple[Dataset, np.ndarray, np.ndarray]:
        """Hold out ``fraction`` of the training set (seeded), return (train part, x_val, y_val)."""
        if fraction <= 0:
            return self, self.x_train[:0], self.y_train[:0]
        order = np.random.default_rng([seed, 7919]).permutation(len(self.x_train))
        held = max(1, round(len(order) * fraction))
        keep, val = np.sort(order[held:]), np.sort(order[:held])
        train = Dataset(self.name, self.x_train[keep], self.y_train[keep], self.x_test, self.y_test, self.class_names)
        return train, self.x_train[val], self.y_train[val]


def load(source: str, spec: ResNetSpec) -> Dataset:
    if source == "digits":
        dataset = _digits()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"data path {path} does not exist")
        dataset = _load_path(path, spec)
    check(dataset, spec)
    return dataset


def _load_path(path: Path, spec: ResNetSpec) -> Dataset:
    if path.is_file() and path.suffix == ".npz":
        return _npz(path)
    if path.is_file() and path.suffix in {".h5", ".hdf5"}:
        return _hdf5([path])
    if path.is_dir():
        if (path / "data_batch_1").exists() or (path / "train").is_file():
            return _cifar(path)
        h5 = sorted(path.glob("*.h5"))
        if h5:
            return _hdf5(h5)
        return _image_folder(path, spec)
    raise DataError(f"{path}: not a data set resnet-spec can read (npz, h5, a CIFAR batch directory or an image folder)")


def check(dataset: Dataset, spec: ResNetSpec) -> None:
    expected = (spec.input.height, spec.input.width, spec.input.channels)
    for part, x, y in (("training", dataset.x_train, dataset.y_train), ("test", dataset.x_test, dataset.y_test)):
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            got = "x".join(map(str, x.shape[1:])) if x.ndim == 4 else f"an array of shape {x.shape}"
            raise DataError(
                f"{dataset.name}: {part} images are {got} but the spec's input is {'x'.join(map(str, expected))} "
                "(height x width x channels); change `input` in the spec or the data"
            )
        if len(x) != len(y):
            raise DataError(f"{dataset.name}: {len(x)} {part} images but {len(y)} labels")
        if len(y) and (y.min() < 0 or y.max() >= spec.classes):
            raise DataError(
                f"{dataset.name}: {part} labels run from {y.min()} to {y.max()} but the spec has {spec.classes} classes"
            )
    if len(dataset.x_train) == 0:
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
    return Dataset("digits", images[train], labels[train], images[test], labels[test], names)


def _npz(path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as data:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(data.files)
        if missing:
            raise DataError(f"{path}: missing arrays {', '.join(sorted(missing))} (found {', '.join(data.files)})")
        names = [str(n) for n in data["class_names"]] if "class_names" in data.files else []
        return Dataset(path.name, _nhwc(data["x_train"]), _labels(data["y_train"]), _nhwc(data["x_test"]),
                       _labels(data["y_test"]), names)  # fmt: skip


def _cifar(path: Path) -> Dataset:
    def read(name: str) -> dict[bytes, object]:
        file = path / name
        if not file.exists():
            raise DataError(f"{path}: CIFAR file {name} is missing")
        with open(file, "rb") as handle:
            return pickle.load(handle, encoding="bytes")  # CIFAR's own format; local files the user names

    if (path / "data_batch_1").exists():
        parts = [read(f"data_batch_{i}") for i in range(1, 6)]
        test = read("test_batch")
        label_key, meta_name, names_key = b"labels", "batches.meta", b"label_names"
    else:
        parts, test = [read("train")], read("test")
        label_key, meta_name, names_key = b"fine_labels", "meta", b"fine_label_names"
    x_train = np.concatenate([_cifar_images(p) for p in parts])
    y_train = np.concatenate([np.asarray(p[label_key], np.int64) for p in parts])
    names: list[str] = []
    if (path / meta_name).exists():
        raw_names: list[bytes] = read(meta_name)[names_key]  # type: ignore[assignment]
        names = [n.decode() for n in raw_names]
    return Dataset(path.name, x_train, y_train, _cifar_images(test), np.asarray(test[label_key], np.int64), names)


def _cifar_images(batch: dict[bytes, object]) -> np.ndarray:
    data = np.asarray(batch[b"data"], np.uint8)
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _hdf5(files: list[Path]) -> Dataset:
    import h5py

    arrays: dict[str, np.ndarray] = {}
    for file in files:
        try:
            with h5py.File(file, "r") as h5:
                arrays.update({key: np.asarray(h5[key]) for key in h5})
        except OSError as exc:
            raise DataError(f"{file}: not a readable HDF5 file ({exc})") from exc
    needed = {"train_set_x", "train_set_y", "test_set_x", "test_set_y"}
    if not needed <= set(arrays):
        raise DataError(f"{', '.join(map(str, files))}: missing datasets {', '.join(sorted(needed - set(arrays)))}")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in arrays.get("list_classes", [])]
    return Dataset(files[0].parent.name, _nhwc(arrays["train_set_x"]), _labels(arrays["train_set_y"]),
                   _nhwc(arrays["test_set_x"]), _labels(arrays["test_set_y"]), names)  # fmt: skip


def _image_folder(root: Path, spec: ResNetSpec) -> Dataset:
    if (root / "train").is_dir() and (root / "test").is_dir():
        names = _classes(root / "train")
        x_train, y_train = _read_images(root / "train", names, spec)
        x_test, y_test = _read_images(root / "test", names, spec)
        return Dataset(root.name, x_train, y_train, x_test, y_test, names)
    names = _classes(root)
    x, y = _read_images(root, names, spec)
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(len(order) * 0.8)
    return Dataset(root.name, x[order[:cut]], y[order[:cut]], x[order[cut:]], y[order[cut:]], names)


def _classes(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not names:
        raise DataError(f"{folder}: no class folders (expected one subfolder per class)")
    return names


def _read_images(folder: Path, names: list[str], spec: ResNetSpec) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(spec.input.channels)
    if mode is None:
        raise DataError(f"image folders hold 1, 3 or 4 channel images; the spec asks for {spec.input.channels}")
    size = (spec.input.width, spec.input.height)
    images, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{folder / name}: class '{name}' has no images")
        for file in files:
            try:
                with Image.open(file) as image:
                    images.append(np.asarray(image.convert(mode).resize(size, Image.Resampling.BILINEAR), np.uint8))
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{file}: cannot decode image ({exc})") from exc
            labels.append(label)
    x = np.stack(images)
    return (x[..., None] if x.ndim == 3 else x), np.asarray(labels, np.int64)


def _nhwc(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 3 else x


def _labels(y: np.ndarray) -> np.ndarray:
    return np.asarray(y).reshape(-1).astype(np.int64)
