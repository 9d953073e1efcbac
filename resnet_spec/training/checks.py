"""The data checks made before a run directory is created: each problem a one-line
:class:`DataError` (what, where, what to do), each conversion the recipe asks for a one-line note.

What is checked up front, without reading every pixel (the data is streamed):

* counts: non-empty training and test sets; a training set that keeps at least :data:`FEWEST`
  examples after the validation hold-out (:func:`enough_to_train`, when a run is prepared; one
  smaller than a batch is said in a note);
* labels (in memory): class numbers (:mod:`.labels`) from 0 to ``classes - 1``, and as many classes
  as the spec has (the class names of the data set, else the distinct training labels);
* arrays (npz, HDF5, CIFAR, memory maps): integer or float pixels, the input's shape (another
  height and width only when the recipe resizes; channels never: arrays are not converted),
  finite values (float arrays are scanned a chunk at a time: one pass of reading), and the first
  and last example readable (a truncated file);
* image files: the headers (Pillow, nothing decoded) of up to :data:`HEADER_SAMPLE` images of each
  split, spread over it: readable, not a decompression bomb, a supported bit depth, and the
  input's size and channels unless the recipe converts them. Files left unchecked here are
  checked as they are decoded (:func:`.images.decode_image` with the split's ``expect``)."""

from __future__ import annotations

import numpy as np

from ..spec import ResNetSpec, Training
from .errors import DataError
from .images import describe, open_image, require
from .sources import ImageFiles, Split

HEADER_SAMPLE = 256  # image headers read per split before training (256 JPEGs: about 0.2 s, page cache warm)
SCAN_BYTES = 64 << 20  # float pixels read at a time by the finite scan
FEWEST = 2  # training examples a run needs (batch norm's statistics need two values)


def held_out(count: int, fraction: float) -> int:
    """Examples the validation hold-out takes from ``count`` training examples."""
    return max(1, round(count * fraction)) if fraction > 0 else 0


def check(name: str, train: Split, test: Split, class_names: list[str], spec: ResNetSpec) -> list[str]:
    """Every check above; the notes (conversions the recipe asked for) to show the user."""
    _counts(name, train, test, spec)
    if spec.classes is None:  # a backbone: the schema check refuses a `training` section on one (RS211)
        raise DataError("a backbone (`head.features`) has no classes to train; train the spec with a classifier head")
    _named_classes(name, class_names, spec.classes)
    for split in (train, test):
        _label_range(split, spec.classes)
    if not class_names:
        _used_classes(name, train, spec.classes)
    notes = _small_batch(len(train), spec.training)
    for part, split in (("training", train), ("test", test)):
        notes += _files(part, split, spec) if split.is_files else _arrays(part, split, spec)
    return notes


def _counts(name: str, train: Split, test: Split, spec: ResNetSpec) -> None:
    if len(train) == 0:
        raise DataError(f"{name}: the training set is empty")
    if len(test) == 0:
        raise DataError(f"{name}: the test set is empty (0 examples), so there would be no test accuracy; add test "
                        "examples")  # fmt: skip


def enough_to_train(name: str, count: int, training: Training) -> None:
    """A training set of ``count`` examples keeps :data:`FEWEST` after the validation hold-out
    (checked when a run is prepared: loading a set to evaluate needs no batch)."""
    held = held_out(count, training.validation_split)
    if count - held < min(FEWEST, training.batch_size):
        needed = _needed(min(FEWEST, training.batch_size), training.validation_split)
        after = f" ({held} held out for validation)" if held else ""
        raise DataError(f"{name}: {count} training examples{after} leave {count - held} to train on; at least "
                        f"{needed} are needed (a batch of one example has no batch statistics); add examples or "
                        "lower training.validation_split")  # fmt: skip


def _small_batch(count: int, training: Training | None) -> list[str]:
    """The note of a training set smaller than one batch: every step then trains on all of it."""
    if training is None:
        return []
    kept = count - held_out(count, training.validation_split)
    if FEWEST <= kept < training.batch_size:
        return [f"note: {kept} training examples, fewer than a batch of {training.batch_size}: every step trains on all of them"]
    return []


def _needed(batch: int, fraction: float) -> int:
    """The fewest training examples that leave ``batch`` after the hold-out."""
    count = max(batch, int(batch / (1.0 - fraction)) - 2)
    while count - held_out(count, fraction) < batch:
        count += 1
    return count


def _label_range(split: Split, classes: int) -> None:
    labels = split.labels
    if not len(labels):
        return
    bad = np.flatnonzero((labels < 0) | (labels >= classes))
    if len(bad):
        raise DataError(f"{split.name}: label {bad[0]} is {labels[bad[0]]} but the spec has {classes} classes (labels "
                        f"0 to {classes - 1}); {len(bad)} labels are out of range (labels run from {labels.min()} to "
                        f"{labels.max()})")  # fmt: skip


def _named_classes(name: str, class_names: list[str], classes: int) -> None:
    if class_names and len(class_names) != classes:
        shown = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
        raise DataError(f"{name}: the data set has {len(class_names)} classes ({shown}) but the spec has "
                        f"classes: {classes}; set classes: {len(class_names)} or use matching data")  # fmt: skip


def _used_classes(name: str, train: Split, classes: int) -> None:
    """Without class names, the distinct training labels are the data set's classes."""
    used = np.unique(train.labels)
    if len(used) != classes:
        shown = ", ".join(map(str, used[:10])) + (", ..." if len(used) > 10 else "")
        raise DataError(f"{name}: the training labels hold {len(used)} distinct classes ({shown}) but the spec has "
                        f"classes: {classes}; set classes: {len(used)} or use matching data")  # fmt: skip


# ---------------------------------------------------------------------------- arrays


def _arrays(part: str, split: Split, spec: ResNetSpec) -> list[str]:
    expected = (spec.input.height, spec.input.width, spec.input.channels)
    if split.dtype.kind not in "uif":
        raise DataError(f"{split.name}: pixels are {split.dtype}; images are arrays of integers or floats")
    shape = split.example_shape
    assert shape is not None  # arrays have one
    if len(shape) != 3:
        raise DataError(f"{split.name}: examples of shape {shape}; images are (height, width, channels) arrays")
    if shape[-1] != expected[-1]:
        raise DataError(f"{split.name}: {part} images are {_shape(shape)} but the spec's input is {_shape(expected)} "
                        "(height x width x channels); arrays are not converted: change `input` in the spec or the "
                        "data")  # fmt: skip
    notes = []
    if shape != expected:
        asker = _resizer(spec, part)
        if asker is None:
            raise DataError(f"{split.name}: {part} images are {_shape(shape)} but the spec's input is "
                            f"{_shape(expected)} (height x width x channels); set training.preprocessing.resize: true "
                            "to resize them, or change `input` in the spec or the data")  # fmt: skip
        notes.append(f"resizing {part} images of {_shape(shape)} to {_shape(expected)} as {asker} asks")
    _readable(split)
    if split.dtype.kind == "f":
        _finite(split)
    return notes


def _readable(split: Split) -> None:
    """The first and last example, read (a truncated HDF5 file fails here, not mid-training)."""
    split.read(np.unique(np.array([0, len(split) - 1])))


def _finite(split: Split) -> None:
    """One pass over a float split, a chunk at a time: the first non-finite pixel, named."""
    per_example = max(1, int(np.prod(split.example_shape or (1,))) * split.dtype.itemsize)
    chunk = max(1, SCAN_BYTES // per_example)
    for start in range(0, len(split), chunk):
        block = split.read(np.arange(start, min(start + chunk, len(split))))
        bad = ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        if bad.any():
            first = start + int(np.flatnonzero(bad)[0])
            value = block[first - start][~np.isfinite(block[first - start])].flat[0]
            raise DataError(f"{split.name}: example {first} has a non-finite pixel value ({value}; {int(bad.sum())} "
                            f"of examples {start} to {start + len(block) - 1} hold NaN or infinity); every pixel must "
                            "be a finite number")  # fmt: skip


# ---------------------------------------------------------------------------- image files


def _files(part: str, split: Split, spec: ResNetSpec) -> list[str]:
    expected = (spec.input.height, spec.input.width, spec.input.channels)
    training = spec.training
    converts = training is not None and training.preprocessing.resizing is not None
    resizer = _resizer(spec, part)
    # What decoding must find in every file: 0 where the recipe converts
    expect = (0 if resizer else expected[0], 0 if resizer else expected[1], 0 if converts else expected[2])
    if isinstance(split, ImageFiles):
        split.required = expect if any(expect) else None
    shapes: dict[str, int] = {}
    indices = np.unique(np.linspace(0, len(split) - 1, min(len(split), HEADER_SAMPLE)).astype(np.int64))
    for path in split.files(indices):
        with open_image(path) as image:
            require(path, image, expect)
            got = describe(image)
        if got != _shape(expected):
            shapes[got] = shapes.get(got, 0) + 1
    if not shapes:
        return []
    common = sorted(shapes, key=lambda s: -shapes[s])
    seen = ", ".join(common[:3]) + (f" and {len(common) - 3} other shapes" if len(common) > 3 else "")
    counted = f"{sum(shapes.values())} of {len(indices)} checked"
    return [f"resizing {part} images ({seen}: {counted}) to {_shape(expected)} as {resizer} asks"]


def _resizer(spec: ResNetSpec, part: str) -> str | None:
    """What in the recipe resizes the images of ``part``, if anything."""
    training = spec.training
    if training is None:
        return None
    if training.preprocessing.resizing is not None:
        return "training.preprocessing.resize"
    if part == "training" and training.augmentation.random_resized_crop is not None:
        return "training.augmentation.random_resized_crop"
    return None


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
