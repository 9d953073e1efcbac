"""A hostile data corpus for ``resnet-spec train``: every case a tiny data set in tmp_path that is
wrong in one way (non-finite pixels, labels that are not class numbers or out of range, empty
or too-small splits, classes or shapes that differ from the spec, bit depths, decompression
bombs, damaged npz / HDF5 / CIFAR files, pickles that would run code). Each must end with exit
status 1 and a one-line message naming the problem (the file, index or class), no traceback, and
no run directory (every check runs before it is created).

Mostly the torch backend (the checks are in the core); a few on Keras prove that they are shared."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from resnet_spec.cli import main
from resnet_spec.training import checks
from resnet_spec.training.errors import DataError
from resnet_spec.training.images import decode_image

HAVE_TORCH = importlib.util.find_spec("torch") is not None
HAVE_KERAS = importlib.util.find_spec("keras") is not None and importlib.util.find_spec("tensorflow") is not None
TORCH = pytest.mark.skipif(not HAVE_TORCH, reason="needs torch")

# 8x8 grayscale, two classes, batches of 4: the smallest network the harness trains.
SPEC: dict[str, Any] = {
    "version": 1, "input": {"height": 8, "width": 8, "channels": 1}, "classes": 2,
    "stem": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 4}],
    "training": {"batch_size": 4, "epochs": 1, "tensorboard": False},
}  # fmt: skip


def spec_file(root: Path, training: dict[str, Any] | None = None, **top: Any) -> Path:
    spec = {**SPEC, **top, "training": {**SPEC["training"], **(training or {})}}
    path = root / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def train(root: Path, data: Path | str, spec: Path | None = None, backend: str = "torch",
          extra: tuple[str, ...] = ()) -> tuple[int, str, str, Path]:  # fmt: skip
    out = root / "run"
    import sys

    capture_out, capture_err = io.StringIO(), io.StringIO()
    real = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = capture_out, capture_err
    try:
        code = main(["train", str(spec or spec_file(root)), "--backend", backend, "--data", str(data), "--out", str(out),
                     "--no-progress", "--workers", "0", *extra])  # fmt: skip
    finally:
        sys.stdout, sys.stderr = real
    return code, capture_out.getvalue(), capture_err.getvalue(), out


def assert_refused(root: Path, data: Path | str, *needles: str, spec: Path | None = None, backend: str = "torch") -> str:
    code, out, err, run = train(root, data, spec, backend)
    message = err.strip()
    assert code == 1, (code, out, err)
    assert "Traceback" not in out + err, err
    assert len(message.splitlines()) == 1, message  # one line
    for needle in needles:
        assert needle in message, (needle, message)
    assert not run.exists(), "the run directory was created"
    assert "nan%" not in out
    return message


# ---------------------------------------------------------------------------- builders


def arrays(n: int = 8, m: int = 4, shape: tuple[int, ...] = (8, 8, 1), dtype: Any = np.uint8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"x_train": rng.integers(0, 255, (n, *shape)).astype(dtype), "y_train": np.arange(n) % 2,
            "x_test": rng.integers(0, 255, (m, *shape)).astype(dtype), "y_test": np.arange(m) % 2}  # fmt: skip


def npz(root: Path, change: Callable[[dict[str, Any]], None] | None = None, **kw: Any) -> Path:
    data = arrays(**kw)
    if change:
        change(data)
    path = root / "set.npz"
    np.savez(path, **data)
    return path


def set_at(key: str, index: Any, value: Any, dtype: Any = None) -> Callable[[dict[str, Any]], None]:
    def change(d: dict[str, Any]) -> None:
        if dtype is not None:
            d[key] = d[key].astype(dtype)
        d[key][index] = value

    return change


def replace(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda d: d.__setitem__(key, value)


def folder(root: Path, classes: dict[str, dict[str, int]] | None = None, size: tuple[int, int] = (8, 8),
           mode: str = "L", count: int = 4) -> Path:  # fmt: skip
    """``root/images/{train,test}/<class>/*.png``; ``classes`` maps a part to {class: count}."""
    from PIL import Image

    parts = classes or {"train": {"a": count, "b": count}, "test": {"a": 2, "b": 2}}
    rng = np.random.default_rng(1)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    for part, counts in parts.items():
        for name, k in counts.items():
            where = root / "images" / part / name
            where.mkdir(parents=True, exist_ok=True)
            for i in range(k):
                pixels = rng.integers(0, 256, (*size, channels), dtype=np.uint8)
                Image.fromarray(pixels[..., 0] if channels == 1 else pixels).save(where / f"{i}.png")
    return root / "images"


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` (8-bit gray) with one tiny data chunk:
    what a decompression bomb looks like before decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def cifar_dir(root: Path) -> Path:
    """A CIFAR-10 'python version' directory: five training batches of 2 and a test batch of 2,
    all ten classes."""
    where = root / "cifar"
    where.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for k, name in enumerate(names):
        block = {b"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), b"labels": [(2 * k) % 10, (2 * k + 1) % 10]}
        (where / name).write_bytes(pickle.dumps(block, protocol=4))
    return where


CIFAR_SPEC = {"input": {"height": 32, "width": 32, "channels": 3}, "classes": 10}


class Marker:
    """Unpickled, it would create a file: the proof that a pickle ran code."""

    def __init__(self, path: Path, call: Any = os.system) -> None:
        self.path, self.call = path, call

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.call, (f"touch {self.path}",))


# ---------------------------------------------------------------------------- arrays (npz)

NPZ_CASES: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "nan pixel": ({"change": set_at("x_train", (3, 2, 2, 0), np.nan, np.float32)}, ("set.npz/train", "example 3", "nan")),
    "inf pixel": ({"change": set_at("x_train", (5, 0, 0, 0), np.inf, np.float32)}, ("example 5", "inf")),
    "-inf test pixel": ({"change": set_at("x_test", (1, 7, 7, 0), -np.inf, np.float64)}, ("set.npz/test", "example 1")),
    "float labels": ({"change": set_at("y_train", 2, 1.5, np.float64)}, ("label 2 is 1.5", "not a whole number")),
    "nan label": ({"change": set_at("y_test", 1, np.nan, np.float32)}, ("set.npz/test", "label 1 is nan")),
    "text labels": ({"change": replace("y_train", np.array(["cat", "dog"] * 4))}, ("labels are text", "'cat'")),
    "boolean labels": ({"change": replace("y_train", np.arange(8) % 2 == 0)}, ("labels are booleans",)),
    "one-hot labels": ({"change": replace("y_train", np.eye(2)[np.arange(8) % 2])}, ("(8, 2)", "one-hot")),
    "complex labels": ({"change": replace("y_train", np.arange(8) % 2 + 0j)}, ("complex numbers",)),
    "negative label": ({"change": set_at("y_train", 6, -1)}, ("label 6 is -1", "2 classes")),
    "label = classes": ({"change": set_at("y_train", 4, 2)}, ("label 4 is 2", "labels 0 to 1")),
    "test label out of range": ({"change": set_at("y_test", 0, 9)}, ("set.npz/test", "label 0 is 9")),
    "empty training set": ({"n": 0}, ("training set is empty",)),
    "empty test set": ({"m": 0}, ("test set is empty",)),
    "images without labels": ({"change": replace("y_train", np.arange(5) % 2)}, ("8 images but 5 labels",)),
    "16x16 for an 8x8 input": ({"shape": (16, 16, 1)}, ("16x16x1 but the spec's input is 8x8x1", "resize: true")),
    "RGB arrays for a gray input": ({"shape": (8, 8, 3)}, ("8x8x3 but the spec's input is 8x8x1", "not converted")),
    "complex pixels": ({"dtype": np.complex64}, ("pixels are complex64",)),
    "flat images": ({"change": replace("x_train", np.zeros((8, 64), np.uint8))}, ("images of shape (8, 64)",)),
    "one class of two": ({"change": replace("y_train", np.zeros(8, np.int64))}, ("1 distinct classes", "classes: 2")),
    "three class names for two": ({"change": lambda d: d.update(class_names=np.array(["a", "b", "c"]))},
                                  ("3 classes (a, b, c)", "classes: 2")),
}  # fmt: skip


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("case", list(NPZ_CASES))
def test_hostile_arrays_are_refused_before_the_run(tmp_path: Path, case: str) -> None:
    options, needles = NPZ_CASES[case]
    assert_refused(tmp_path, npz(tmp_path, **options), *needles)


@pytest.mark.torch
@TORCH
def test_a_10_class_spec_on_2_class_data(tmp_path: Path) -> None:
    message = assert_refused(tmp_path, npz(tmp_path), spec=spec_file(tmp_path, classes=10))
    assert "2 distinct classes (0, 1) but the spec has classes: 10" in message


@pytest.mark.torch
@TORCH
def test_a_hold_out_that_leaves_one_example_says_how_many_are_needed(tmp_path: Path) -> None:
    """Two examples, one held out for validation: one left, and batch norm needs two."""
    spec = spec_file(tmp_path, {"validation_split": 0.25})
    message = assert_refused(tmp_path, npz(tmp_path, n=2), spec=spec)
    assert "2 training examples (1 held out for validation) leave 1 to train on; at least 3 are needed" in message
    assert [n - checks.held_out(n, 0.25) for n in (2, 3)] == [1, 2]  # 3 is the fewest that leave two


@pytest.mark.torch
@TORCH
def test_a_set_smaller_than_a_batch_trains_and_says_so(tmp_path: Path) -> None:
    code, out, err, _ = train(tmp_path, npz(tmp_path, n=3), extra=("--max-steps", "1"))
    assert code == 0, err
    assert "note: 3 training examples, fewer than a batch of 4: every step trains on all of them" in out


# ---------------------------------------------------------------------------- damaged npz files


def _stored_member_grown(root: Path) -> Path:
    """x_train's header edited to declare more rows than the member holds (it would read the next member)."""
    path = npz(root)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(b"'shape': (8, 8, 8, 1)", b"'shape': (9, 8, 8, 1)", 1))
    return path


def _compressed_flipped(root: Path) -> Path:
    path = root / "set.npz"
    np.savez_compressed(path, **arrays())
    raw = bytearray(path.read_bytes())
    raw[200:220] = bytes(20)  # inside x_train's deflated bytes
    path.write_bytes(bytes(raw))
    return path


def _write(name: str, content: bytes) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        (root / name).write_bytes(content)
        return root / name

    return make


def _npy_as_npz(root: Path) -> Path:
    np.save(root / "set.npy", np.zeros((2, 8, 8, 1)))
    (root / "set.npy").rename(root / "set.npz")
    return root / "set.npz"


def _truncated_npz(root: Path) -> Path:
    path = npz(root)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _object_npz(root: Path) -> Path:
    data = arrays()
    data["x_train"] = np.array([object()] * 8, dtype=object)
    np.savez(root / "set.npz", **data)
    return root / "set.npz"


def _missing_member(root: Path) -> Path:
    data = arrays()
    del data["y_test"]
    np.savez(root / "set.npz", **data)
    return root / "set.npz"


DAMAGED_NPZ: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "not a zip": (_write("set.npz", b"just some text, not a zip archive"), ("not a readable .npz file",)),
    "empty file": (_write("set.npz", b""), ("not a readable .npz file",)),
    "a .npy named .npz": (_npy_as_npz, ("not a readable .npz file",)),
    "truncated": (_truncated_npz, ("set.npz",)),
    "object arrays": (_object_npz, ("x_train", "Python objects")),
    "missing member": (_missing_member, ("missing arrays y_test",)),
    "header grown": (_stored_member_grown, ("x_train", "truncated or altered")),
    "deflated bytes zeroed": (_compressed_flipped, ("set.npz",)),
}  # fmt: skip


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("case", list(DAMAGED_NPZ))
def test_damaged_npz_files_are_one_line_errors(tmp_path: Path, case: str) -> None:
    make, needles = DAMAGED_NPZ[case]
    assert_refused(tmp_path, make(tmp_path), *needles)


# ---------------------------------------------------------------------------- HDF5


def _h5(root: Path, edit: Callable[[Any], None] | None = None, **values: Any) -> Path:
    import h5py

    data = arrays()
    with h5py.File(root / "signs.h5", "w") as f:
        f["train_set_x"] = values.get("train_set_x", data["x_train"])
        f["train_set_y"] = values.get("train_set_y", data["y_train"])
        f["test_set_x"] = data["x_test"]
        f["test_set_y"] = data["y_test"]
        if edit:
            edit(f)
    return root / "signs.h5"


def _h5_truncated(root: Path) -> Path:
    path = _h5(root)
    path.write_bytes(path.read_bytes()[:1500])
    return path


def _h5_group(root: Path) -> Path:
    def edit(f: Any) -> None:
        del f["train_set_x"]
        f.create_group("train_set_x")

    return _h5(root, edit)


def _h5_missing(root: Path) -> Path:
    return _h5(root, lambda f: f.__delitem__("test_set_y"))


def _h5_nan(root: Path) -> Path:
    x = arrays()["x_train"].astype(np.float32)
    x[7, 1, 1, 0] = np.nan
    return _h5(root, train_set_x=x)


HDF5_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "not HDF5": (_write("signs.h5", b"\x89HDF\r\n\x1a\n but then nothing"), ("signs.h5", "not a readable HDF5 file")),
    "truncated": (_h5_truncated, ("signs.h5",)),
    "a group for a dataset": (_h5_group, ("train_set_x is a Group, not a dataset",)),
    "missing labels": (_h5_missing, ("missing datasets test_set_y",)),
    "nan pixel": (_h5_nan, ("signs.h5/train", "example 7", "nan")),
    "text labels": (lambda root: _h5(root, train_set_y=np.array([b"a", b"b"] * 4)), ("train_set_y", "labels are text")),
}  # fmt: skip


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("case", list(HDF5_CASES))
def test_hostile_hdf5_files_are_refused(tmp_path: Path, case: str) -> None:
    pytest.importorskip("h5py")
    make, needles = HDF5_CASES[case]
    assert_refused(tmp_path, make(tmp_path), *needles)


# ---------------------------------------------------------------------------- CIFAR


def _cut(fraction: float) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        where = cifar_dir(root)
        batch = where / "data_batch_2"
        batch.write_bytes(batch.read_bytes()[: int(batch.stat().st_size * fraction)])
        return where

    return make


def _replace_batch(content: Any) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        where = cifar_dir(root)
        (where / "data_batch_3").write_bytes(pickle.dumps(content(root), protocol=2))
        return where

    return make


def _without_test_batch(root: Path) -> Path:
    where = cifar_dir(root)
    (where / "test_batch").unlink()
    return where


CIFAR_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "cut at 1%": (_cut(0.01), ("data_batch_2", "truncated or damaged")),
    "cut at half": (_cut(0.5), ("data_batch_2", "truncated or damaged")),
    "cut before STOP": (_cut(0.999), ("data_batch_2", "truncated or damaged")),
    "a list, not a dict": (_replace_batch(lambda root: [1, 2, 3]), ("data_batch_3", "not a dictionary")),
    "wrong data shape": (_replace_batch(lambda root: {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}),
                         ("data_batch_3", "(N, 3072) uint8")),
    "text labels": (_replace_batch(lambda root: {b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}),
                    ("data_batch_3", "labels are text")),
    "missing test batch": (_without_test_batch, ("test_batch is missing",)),
}  # fmt: skip


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("case", list(CIFAR_CASES))
def test_damaged_cifar_batches_are_one_line_errors(tmp_path: Path, case: str) -> None:
    make, needles = CIFAR_CASES[case]
    assert_refused(tmp_path, make(tmp_path), *needles, spec=spec_file(tmp_path, **CIFAR_SPEC))


CODE_RUNNERS = {"os.system": os.system, "builtins.eval": eval, "subprocess.call": __import__("subprocess").call}


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("runner", list(CODE_RUNNERS))
def test_a_cifar_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path, runner: str) -> None:
    marker = tmp_path / "ran"
    call = CODE_RUNNERS[runner]
    payload = Marker(marker, call) if runner != "builtins.eval" else _EvalMarker(marker)
    for protocol in (2, 4):
        where = tmp_path / f"p{protocol}"
        where.mkdir()
        made = cifar_dir(where)
        block = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1], b"batch_label": payload}
        (made / "data_batch_4").write_bytes(pickle.dumps(block, protocol=protocol))
        message = assert_refused(where, made, "data_batch_4", "which a CIFAR batch never holds", "refused",
                                 spec=spec_file(where, **CIFAR_SPEC))  # fmt: skip
        assert call.__name__ in message
        assert not marker.exists(), "the pickle ran code"


class _EvalMarker:
    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.path)!r}, 'w')",))


def test_the_unpickler_still_reads_what_cifar_batches_hold(tmp_path: Path) -> None:
    """NumPy arrays (both module paths NumPy pickles with), lists, bytes, numbers: read."""
    from resnet_spec.training.formats import read_cifar_pickle

    block = {b"data": np.arange(3072 * 2, dtype=np.uint8).reshape(2, 3072), b"labels": np.array([3, 4]),
             b"batch_label": b"training batch 1 of 5", b"filenames": [b"a.png", b"b.png"], b"n": np.int64(2)}  # fmt: skip
    for protocol in (2, 3, 4, 5):
        (tmp_path / "batch").write_bytes(pickle.dumps(block, protocol=protocol))
        got = read_cifar_pickle(tmp_path / "batch")
        assert np.array_equal(got[b"data"], block[b"data"]) and got[b"labels"].tolist() == [3, 4]
        assert got[b"filenames"] == [b"a.png", b"b.png"] and got[b"n"] == 2


# ---------------------------------------------------------------------------- image folders


def _missing_test_class(root: Path) -> Path:
    return folder(root, {"train": {"a": 4, "b": 4}, "test": {"a": 2}})


def _extra_test_class(root: Path) -> Path:
    return folder(root, {"train": {"a": 4, "b": 4}, "test": {"a": 2, "b": 2, "c": 1}})


def _empty_test_class(root: Path) -> Path:
    made = folder(root)
    for f in (made / "test" / "b").iterdir():
        f.unlink()
    return made


def _bomb(width: int, height: int) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        made = folder(root)
        (made / "train" / "b" / "2.png").write_bytes(png_header(width, height))
        return made

    return make


def _wide_pixels(mode: str) -> Callable[[Path], Path]:
    def make(root: Path) -> Path:
        from PIL import Image

        made = folder(root)
        values = np.full((8, 8), 7, np.int32 if mode == "I" else np.float32)
        Image.fromarray(values).save(made / "train" / "a" / "1.tif")
        return made

    return make


def _garbage_image(root: Path) -> Path:
    made = folder(root)
    (made / "test" / "a" / "1.png").write_bytes(b"\x89PNG but not really")
    return made


def _one_big_image(root: Path) -> Path:
    from PIL import Image

    made = folder(root)
    Image.fromarray(np.zeros((9, 8), np.uint8)).save(made / "train" / "b" / "3.png")
    return made


FOLDER_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "test/ misses a class": (_missing_test_class, ("test/ misses 'b'",)),
    "test/ has an extra class": (_extra_test_class, ("has 'c' that train/ has not",)),
    "an empty test class": (_empty_test_class, ("class 'b' has no images",)),
    "bomb over twice the limit": (_bomb(30_000, 30_000), ("2.png", "decompression bomb")),
    "bomb between the limit and twice": (_bomb(10_000, 10_000), ("2.png", "decompression bomb")),
    "32-bit integer image": (_wide_pixels("I"), ("1.tif", "32-bit integer")),
    "floating-point image": (_wide_pixels("F"), ("1.tif", "32-bit floating-point")),
    "undecodable image": (_garbage_image, ("test/a/1.png", "cannot decode image")),
    "12x12 images, 8x8 input": (lambda root: folder(root, size=(12, 12)), ("0.png", "12x12x1", "8x8x1", "resize: true")),
    "RGB images, gray input": (lambda root: folder(root, mode="RGB"), ("8x8x3 but the spec's input is 8x8x1",)),
    "RGBA images, gray input": (lambda root: folder(root, mode="RGBA"), ("8x8x4",)),
    "one image a row taller": (_one_big_image, ("b/3.png", "9x8x1")),
    "three class folders, two classes": (
        lambda root: folder(root, {"train": {"a": 4, "b": 4, "c": 4}, "test": {"a": 1, "b": 1, "c": 1}}),
        ("3 classes (a, b, c)", "classes: 2")),
}  # fmt: skip


@pytest.mark.torch
@TORCH
@pytest.mark.parametrize("case", list(FOLDER_CASES))
def test_hostile_image_folders_are_refused(tmp_path: Path, case: str) -> None:
    make, needles = FOLDER_CASES[case]
    assert_refused(tmp_path, make(tmp_path), *needles)


@pytest.mark.torch
@TORCH
def test_rgb_images_in_a_gray_spec_are_refused_even_with_random_resized_crops(tmp_path: Path) -> None:
    """A crop resizes training images; it converts no channels: only preprocessing.resize does."""
    spec = spec_file(tmp_path, {"augmentation": {"random_resized_crop": {}}})
    assert_refused(tmp_path, folder(tmp_path, size=(12, 12), mode="RGB"), "12x12x3 but the spec's input is *x*x1",
                   spec=spec)  # fmt: skip


@pytest.mark.torch
@TORCH
def test_random_resized_crops_still_need_resize_for_test_images(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, {"augmentation": {"random_resized_crop": {}}})
    assert_refused(tmp_path, folder(tmp_path, size=(12, 12)), "test/a/0.png", "12x12x1", spec=spec)


# ---------------------------------------------------------------------------- asked-for conversion


@pytest.mark.torch
@TORCH
def test_resize_true_converts_and_says_so_in_one_line(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, {"preprocessing": {"resize": True}})
    code, out, err, run = train(tmp_path, folder(tmp_path, size=(12, 10), mode="RGB"), spec, extra=("--max-steps", "1"))
    assert code == 0, err
    notes = [line for line in out.splitlines() if line.startswith("resizing")]
    assert notes == [
        "resizing training images (12x10x3: 8 of 8 checked) to 8x8x1 as training.preprocessing.resize asks",
        "resizing test images (12x10x3: 4 of 4 checked) to 8x8x1 as training.preprocessing.resize asks",
    ]
    assert (run / "result.json").exists()


@pytest.mark.torch
@TORCH
def test_nothing_is_said_when_nothing_is_converted(tmp_path: Path) -> None:
    code, out, err, _ = train(tmp_path, folder(tmp_path), extra=("--max-steps", "1"))
    assert code == 0, err
    assert "resizing" not in out + err


@pytest.mark.torch
@TORCH
def test_an_image_past_the_header_sample_is_refused_when_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a sample of headers is read up front; the rest are checked as they are decoded, and
    the run stops with the file named (after the run directory exists: the one check that can)."""
    from PIL import Image

    made = folder(tmp_path, count=6)
    Image.fromarray(np.zeros((8, 9), np.uint8)).save(made / "train" / "a" / "3.png")
    monkeypatch.setattr(checks, "HEADER_SAMPLE", 2)
    code, _, err, _ = train(tmp_path, made)
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "a/3.png: the image is 8x9x1 but the spec's input is 8x8x1" in err


# ---------------------------------------------------------------------------- bit depth


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    """16-bit grayscale is read by its high byte (65535 -> 255, 1000 -> 3), as 16-bit RGB PNGs are
    by Pillow and TensorFlow; Pillow's own conversion to L would clip every value above 255."""
    from PIL import Image

    values = np.array([[0, 255, 256, 1000], [32768, 40000, 65280, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    got = decode_image(str(tmp_path / "deep.png"), 1)[..., 0]
    assert got.tolist() == (values >> 8).tolist()
    assert decode_image(str(tmp_path / "deep.png"), 3)[..., 2].tolist() == (values >> 8).tolist()


def test_the_bomb_limit_is_an_error_not_a_warning(tmp_path: Path) -> None:
    (tmp_path / "big.png").write_bytes(png_header(10_000, 9_000))  # 90 M pixels: Pillow only warns
    with pytest.raises(DataError, match="big.png: refused as a decompression bomb"):
        decode_image(str(tmp_path / "big.png"), 1)


# ---------------------------------------------------------------------------- the same checks with Keras

KERAS_CASES: dict[str, tuple[Callable[[Path], Path], tuple[str, ...]]] = {
    "nan pixel": (lambda root: npz(root, set_at("x_train", (3, 2, 2, 0), np.nan, np.float32)), ("example 3", "nan")),
    "text labels": (lambda root: npz(root, replace("y_train", np.array(["cat", "dog"] * 4))), ("labels are text",)),
    "test/ misses a class": (_missing_test_class, ("test/ misses 'b'",)),
    "RGB images, gray input": (lambda root: folder(root, mode="RGB"), ("8x8x3 but the spec's input is 8x8x1",)),
    "empty test set": (lambda root: npz(root, m=0), ("test set is empty",)),
}  # fmt: skip


@pytest.mark.keras
@pytest.mark.skipif(not HAVE_KERAS, reason="needs keras")
@pytest.mark.parametrize("case", list(KERAS_CASES))
def test_the_checks_are_shared_by_keras(tmp_path: Path, case: str) -> None:
    make, needles = KERAS_CASES[case]
    assert_refused(tmp_path, make(tmp_path), *needles, backend="keras")


@pytest.mark.keras
@pytest.mark.skipif(not HAVE_KERAS, reason="needs keras")
@pytest.mark.parametrize("case", ["bomb", "taller", "jpeg bomb", "taller jpeg"])
def test_keras_native_decoding_guards_files_past_the_header_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   case: str) -> None:  # fmt: skip
    """TensorFlow decodes JPEG and PNG itself, with no pixel limit: the pipeline checks the header's
    size (and the shape, when nothing is converted) first, and the file is named through Pillow.
    A JPEG whose header must name the input's size is checked against it before decoding."""
    from PIL import Image

    made = folder(tmp_path, count=6)
    target = made / "train" / "a" / ("3.jpg" if "jpeg" in case else "3.png")
    (made / "train" / "a" / "3.png").unlink()
    if case == "bomb":
        target.write_bytes(png_header(30_000, 30_000))
    elif case == "jpeg bomb":
        target.write_bytes(jpeg_claiming(30_000, 30_000))
    else:
        Image.fromarray(np.zeros((9, 8), np.uint8)).save(target)
    monkeypatch.setattr(checks, "HEADER_SAMPLE", 2)  # index 3 is not among the headers read up front
    code, _, err, _ = train(tmp_path, made, backend="keras")
    assert code == 1 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert f"a/{target.name}" in err and ("decompression bomb" if "bomb" in case else "the image is 9x8x1") in err


def jpeg_claiming(height: int, width: int) -> bytes:
    """A real 8x8 gray JPEG whose frame header (SOF0) says ``height`` x ``width``."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    frame = data.index(b"\xff\xc0")  # marker, length (2), precision (1), height (2), width (2)
    data[frame + 5 : frame + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)
