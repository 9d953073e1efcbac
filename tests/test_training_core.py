"""The framework-free half of training: schedule, batch order and plan, data sets read lazily
(memory-mapped CIFAR and npz, HDF5, image files), geometry, preprocessing, augmentation, the run
directory and its TensorBoard events, checkpoints."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import resnet_spec
from resnet_spec.spec import Augmentation, Preprocessing, RandomResizedCrop
from resnet_spec.training import batches, checkpoint, data, geometry, schedule
from resnet_spec.training.augment import augment
from resnet_spec.training.plan import Plan
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.run_dir import RunDir


def spec_with(training: dict[str, Any], **extra: Any) -> Any:
    spec = {
        "version": 1, "input": {"height": 8, "width": 8, "channels": 3}, "classes": 3,
        "stages": [{"block": "basic", "blocks": 1, "filters": 4}], "training": training, **extra,
    }  # fmt: skip
    return resnet_spec.build_architecture(spec).spec


def test_piecewise_boundaries_count_like_multisteplr() -> None:
    """Boundaries [2]: steps 0 and 1 at the first rate, step 2 at the next (Keras'
    PiecewiseConstantDecay would switch one step later; parity-notes.md)."""
    t = spec_with({"iterations": 5, "optimizer": {"learning_rate": 1.0},
                   "schedule": {"kind": "piecewise", "boundaries": [2], "multipliers": [1, 0.1]}}).training  # fmt: skip
    assert [schedule.learning_rate(t, s, 10) for s in range(4)] == [1.0, 1.0, 0.1, 0.1]


def test_resnet20_recipe_schedule() -> None:
    t = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml").spec.training
    lr = [schedule.learning_rate(t, s, 352) for s in (0, 31_999, 32_000, 47_999, 48_000, 63_999)]
    assert lr == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert schedule.total_steps(t, 352) == 64_000


def test_epoch_boundaries_cosine_and_warmup() -> None:
    t = spec_with({"epochs": 4, "optimizer": {"learning_rate": 1.0},
                   "schedule": {"kind": "piecewise", "unit": "epoch", "boundaries": [2], "multipliers": [1, 0.5]}}).training  # fmt: skip
    assert schedule.learning_rate(t, 19, 10) == 1.0 and schedule.learning_rate(t, 20, 10) == 0.5
    t = spec_with({"iterations": 100, "optimizer": {"learning_rate": 2.0}, "schedule": {"kind": "cosine"},
                   "warmup": {"iterations": 10}}).training  # fmt: skip
    assert schedule.learning_rate(t, 0, 10) == 0.0
    assert schedule.learning_rate(t, 5, 10) == pytest.approx(0.5 * 2.0 * 0.5 * (1 + np.cos(np.pi * 0.05)))
    assert schedule.learning_rate(t, 50, 10) == pytest.approx(1.0)
    assert schedule.learning_rate(t, 100, 10) == pytest.approx(0.0)


def test_batch_order_is_a_function_of_seed_and_epoch() -> None:
    a = batches.batch_indices(10, 4, seed=3, epoch=1)
    assert [len(b) for b in a] == [4, 4, 2]
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert all(np.array_equal(x, y) for x, y in zip(a, batches.batch_indices(10, 4, seed=3, epoch=1)))
    assert not np.array_equal(np.concatenate(a), np.concatenate(batches.batch_indices(10, 4, seed=3, epoch=2)))


def test_digits_are_real_and_split() -> None:
    spec = resnet_spec.build_architecture("examples/resnet_digits.yaml").spec
    d = data.load("digits", spec)
    assert d.train.example_shape == (8, 8, 1) and len(d.train) == 1437 and len(d.test) == 360
    assert d.train.in_memory and d.train.read(np.arange(len(d.train))).max() == 16
    assert set(np.unique(d.train.labels)) == set(range(10))
    train, val = d.validation_split(0.1, seed=0)
    assert val is not None and len(val) == 144 and len(train) == 1437 - 144


def test_the_plan_shards_every_global_batch_in_order() -> None:
    """Shards of a step are contiguous np.array_split slices of the global batch, with its
    augmentation numbers; together they are the single-process batch."""
    t = spec_with({"iterations": 7, "batch_size": 5, "augmentation": {"random_crop_padding": 2, "horizontal_flip": True,
                                                                         "random_resized_crop": {}}}).training  # fmt: skip
    plan = Plan(t, 12)
    assert plan.steps_per_epoch == 3 and plan.total == 7 and plan.epochs == 3 and plan.smallest_batch() == 2
    whole = plan.shard(4)
    assert (whole.epoch, whole.batch, whole.count) == (1, 1, 5)
    assert np.array_equal(whole.indices, batches.batch_indices(12, 5, 0, 1)[1])
    parts = [plan.shard(4, r, 2) for r in range(2)]
    assert [len(p) for p in parts] == [3, 2] and all(p.count == 5 for p in parts)
    for key in ("indices", "tops", "lefts", "flips", "crops"):
        assert np.array_equal(np.concatenate([getattr(p, key) for p in parts]), getattr(whole, key)), key
    assert np.array_equal(Plan(t, 12).shard(4).crops, whole.crops)  # a pure function of (seed, epoch, batch)
    with pytest.raises(ValueError, match="cannot be split"):
        plan.shard(2, 0, 3)  # the epoch's last batch holds 2 examples


def _cifar_dir(root: Path, n: int = 4, protocol: int = pickle.DEFAULT_PROTOCOL) -> Path:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def _python2_batch(data: np.ndarray, labels: list[int]) -> bytes:
    """A CIFAR batch pickled as CIFAR's own files are (Python 2's cPickle, protocol 2): byte
    strings as BINSTRING, the array through numpy.core.multiarray._reconstruct."""

    def string(value: bytes) -> bytes:
        return (b"U" + bytes([len(value)]) if len(value) < 256 else b"T" + len(value).to_bytes(4, "little")) + value

    def integer(value: int) -> bytes:
        return b"K" + bytes([value]) if value < 256 else b"M" + value.to_bytes(2, "little")

    array = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + integer(0) + b"\x85" + string(b"b")
             + b"\x87R" + b"(" + integer(1) + integer(data.shape[0]) + integer(data.shape[1]) + b"\x86"
             + b"cnumpy\ndtype\n" + string(b"u1") + integer(0) + integer(1) + b"\x87R"
             + b"(" + integer(3) + string(b"|") + b"NNN" + b"J\xff\xff\xff\xff" + b"J\xff\xff\xff\xff" + integer(0)
             + b"tb" + b"\x89" + string(data.tobytes()) + b"tb")  # fmt: skip
    items = b"(" + b"".join(integer(v) for v in labels) + b"l"
    return b"\x80\x02}(" + string(b"data") + array + string(b"labels") + items + b"u."


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar_batches_directory(tmp_path: Path, protocol: int) -> None:
    spec = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml").spec
    d = data.load(str(_cifar_dir(tmp_path, protocol=protocol)), spec)
    assert d.train.example_shape == (32, 32, 3) and len(d.train) == 20 and len(d.test) == 4 and d.class_names[1] == "c1"
    first = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"]
    second = pickle.loads((tmp_path / "data_batch_2").read_bytes())[b"data"]
    got = d.train.read(np.array([4, 0, 5]))
    assert np.array_equal(got[1, :, :, 0].reshape(-1), first[0][:1024])  # channel-first rows -> NHWC
    assert np.array_equal(got[2].transpose(2, 0, 1).reshape(-1), second[1])
    # Bytes stored raw (protocols 3-5) are memory-mapped in place; Python 3's protocol 2 stores them as text
    assert d.train.in_memory is (protocol == 2)


def test_cifar_in_cifars_own_pickle_format_is_memory_mapped(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    rows = {f"data_batch_{i}": rng.integers(0, 256, (3, 3072), dtype=np.uint8) for i in range(1, 6)}
    rows["test_batch"] = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
    for k, (name, block) in enumerate(rows.items()):  # labels of all ten classes
        (tmp_path / name).write_bytes(_python2_batch(block, [(3 * k + i) % 10 for i in range(len(block))]))
    loaded = pickle.loads((tmp_path / "test_batch").read_bytes(), encoding="bytes")  # as CIFAR's page reads them
    assert np.array_equal(loaded[b"data"], rows["test_batch"])
    d = data.load(str(tmp_path), resnet_spec.build_architecture("examples/resnet20_cifar10.yaml").spec)
    assert not d.train.in_memory and not d.test.in_memory
    assert np.array_equal(d.train.read(np.array([14])).transpose(0, 3, 1, 2).reshape(-1), rows["data_batch_5"][2])


def test_a_cifar_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    _cifar_dir(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(data.DataError, match=r"data_batch_3: refers to os.system, which a CIFAR batch never holds"):
        data.load(str(tmp_path), resnet_spec.build_architecture("examples/resnet20_cifar10.yaml").spec)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_arrays_are_memory_mapped(tmp_path: Path, compressed: bool) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8)
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "set.npz", x_train=x, y_train=np.arange(30) % 3, x_test=x[:4], y_test=np.zeros(4),
         class_names=np.array(["a", "b", "c"]))  # fmt: skip
    d = data.load(str(tmp_path / "set.npz"), spec_with({"epochs": 1}))
    assert not d.train.in_memory and d.class_names == ["a", "b", "c"]
    assert np.array_equal(d.train.read(np.array([7, 2, 7])), x[[7, 2, 7]])
    assert d.train.labels.tolist() == (np.arange(30) % 3).tolist()


def _image_folder(root: Path, classes: dict[str, int], size: tuple[int, int] = (20, 12)) -> Path:
    from PIL import Image

    rng = np.random.default_rng(1)
    for part in ("train", "test"):
        for name, count in classes.items():
            folder = root / part / name
            folder.mkdir(parents=True)
            for i in range(count):
                Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def test_an_image_folder_is_listed_not_decoded(tmp_path: Path) -> None:
    spec = spec_with({"epochs": 1, "preprocessing": {"resize": True}}, classes=2)  # 20x12 images, an 8x8 input
    root = _image_folder(tmp_path, {"NORMAL": 2, "PNEUMONIA": 3})
    d = data.load(str(root), spec)
    assert d.train.is_files and d.train.example_shape is None and d.class_names == ["NORMAL", "PNEUMONIA"]
    assert d.train.labels.tolist() == [0, 0, 1, 1, 1] and d.train.suffixes() == {".png"}
    assert d.train.files(np.array([2])) == [str(root / "train" / "PNEUMONIA" / "0.png")]
    assert d.train.decode(2, 3).shape == (20, 12, 3) and d.train.decode(2, 1).shape == (20, 12, 1)
    assert geometry.geometry_for(d.train, spec, train=True).mode == "stretch"
    train, val = d.validation_split(0.4, 0)
    assert val is not None
    every = [*train.files(np.arange(len(train))), *val.files(np.arange(len(val)))]
    assert sorted(every) == sorted(d.train.files(np.arange(5)))


def test_data_errors_are_clear(tmp_path: Path) -> None:
    spec = spec_with({"epochs": 1, "preprocessing": {"resize": True}}, classes=2)
    with pytest.raises(data.DataError, match="does not exist"):
        data.load(str(tmp_path / "nowhere"), spec)
    root = _image_folder(tmp_path / "a", {"x": 1, "y": 1})
    for f in (root / "train" / "y").iterdir():
        f.unlink()
    with pytest.raises(data.DataError, match="class 'y' has no images"):
        data.load(str(root), spec)
    root = _image_folder(tmp_path / "b", {"x": 1, "y": 1})
    (root / "train" / "y" / "0.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match=r"0\.png: cannot decode image"):  # its header is read before training
        data.load(str(root), spec)
    np.savez(tmp_path / "gray.npz", x_train=np.zeros((4, 8, 8, 1)), y_train=np.arange(4) % 2, x_test=np.zeros((2, 8, 8, 1)), y_test=np.zeros(2))
    with pytest.raises(data.DataError, match=r"8x8x1 but the spec's input is 8x8x3"):
        data.load(str(tmp_path / "gray.npz"), spec)
    np.savez(tmp_path / "labels.npz", x_train=np.zeros((4, 8, 8, 3)), y_train=np.full(4, 7), x_test=np.zeros((2, 8, 8, 3)), y_test=np.zeros(2))
    with pytest.raises(data.DataError, match="label 0 is 7 but the spec has 2 classes"):
        data.load(str(tmp_path / "labels.npz"), spec)


def test_hdf5_signs_layout(tmp_path: Path) -> None:
    import h5py

    spec = resnet_spec.build_architecture("examples/resnet50_signs.yaml").spec
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "train_signs.h5", "w") as f:
        f["train_set_x"] = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
        f["train_set_y"] = np.arange(6)
        f["list_classes"] = np.arange(6)
    with h5py.File(tmp_path / "test_signs.h5", "w") as f:
        f["test_set_x"] = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
        f["test_set_y"] = np.array([[1, 2]])  # the original stores labels as a (1, N) row
    d = data.load(str(tmp_path), spec)
    assert d.train.example_shape == (64, 64, 3) and len(d.train) == 6 and d.test.labels.tolist() == [1, 2]
    assert not d.train.in_memory  # read by index through h5py
    with h5py.File(tmp_path / "train_signs.h5", "r") as f:
        assert np.array_equal(d.train.read(np.array([5, 1, 5])), f["train_set_x"][[1, 5]][[1, 0, 1]])


def test_preprocessing_modes() -> None:
    x = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3)).astype(np.uint8)
    pixel = Preprocessor.fit(Preprocessing(mode="per_pixel_mean", scale=1 / 255), x)
    assert np.allclose(pixel(x).mean(axis=0), 0, atol=1e-6)
    channel = Preprocessor.fit(Preprocessing(mode="per_channel_mean", scale=1.0), x)
    assert np.allclose(channel(x).mean(axis=(0, 1, 2)), 0, atol=1e-4)
    caffe = Preprocessor.fit(Preprocessing(mode="caffe"), x)
    assert np.allclose(caffe(x)[..., 0], x[..., 2] - 103.939)
    again = Preprocessor.from_dict(json.loads(json.dumps(pixel.to_dict())))
    assert np.array_equal(again(x), pixel(x))
    mean_std = Preprocessor.fit(Preprocessing(mode="mean_std", mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.5]), x)
    expected = (x.astype(np.float32) / 255 - np.array([0.5, 0.4, 0.3], np.float32)) / np.array([0.2, 0.25, 0.5], np.float32)
    np.testing.assert_allclose(mean_std(x), expected, rtol=1e-6, atol=1e-6)
    streamed = Preprocessor.fit(Preprocessing(mode="per_pixel_mean", scale=1 / 255),
                                data.Dataset.from_arrays("x", x, np.zeros(5), x, np.zeros(5)).train)  # fmt: skip
    np.testing.assert_allclose(streamed.mean, pixel.mean, rtol=1e-6)  # a chunk at a time, summed in float64


def test_augmentation_reference() -> None:
    x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1) + 1
    out = augment(x, Augmentation(random_crop_padding=1, horizontal_flip=True), np.random.default_rng(0))
    assert out.shape == x.shape
    assert not np.array_equal(out, x)
    same = augment(x, Augmentation(random_crop_padding=1, horizontal_flip=True), np.random.default_rng(0))
    assert np.array_equal(out, same)


def test_random_resized_crop_boxes() -> None:
    """Boxes lie inside the image and have the drawn area and aspect ratio (up to rounding) when
    a try fits; otherwise the centred largest box within the ratio."""
    settings = RandomResizedCrop(scale=[0.1, 0.9], ratio=[0.5, 2.0])
    draws = geometry.crop_draws(settings, 7, 0, 0, 300)
    assert draws.shape == (300, geometry.TRIES, 4)
    assert 0.1 <= draws[..., 0].min() and draws[..., 0].max() <= 0.9
    assert 0.5 <= draws[..., 1].min() and draws[..., 1].max() <= 2.0
    fitted = 0
    for k, (h, w) in enumerate(np.random.default_rng(1).integers(5, 300, (300, 2)).tolist()):
        top, left, bh, bw = geometry.crop_box(h, w, draws[k], (0.5, 2.0))
        assert 0 <= top <= h - bh and 0 <= left <= w - bw and bh >= 1 and bw >= 1
        for fraction, aspect, _, _ in draws[k]:  # the first try that fits is the box
            tw, th = round(np.sqrt(h * w * fraction * aspect)), round(np.sqrt(h * w * fraction / aspect))
            if 0 < tw <= w and 0 < th <= h:
                assert (bh, bw) == (th, tw)
                fitted += 1
                break
    assert fitted > 250
    never = np.zeros((geometry.TRIES, 4))
    never[:, 0], never[:, 1] = 1.0, 3.0  # the whole area at ratio 3 never fits
    assert geometry.crop_box(10, 10, never, (0.5, 2.0)) == (0, 0, 10, 10)
    assert geometry.crop_box(10, 40, never, (0.5, 2.0)) == (0, 10, 10, 20)  # wider than 2: the widest box
    assert geometry.crop_box(40, 10, never, (0.5, 2.0)) == (10, 0, 20, 10)


def test_resize_reference_and_the_evaluation_crop() -> None:
    image = np.random.default_rng(0).integers(0, 256, (6, 9, 2)).astype(np.float64)
    np.testing.assert_allclose(geometry.resize_reference(image, 6, 9, True), image, atol=1e-12)  # same size: itself
    up = geometry.resize_weights(3, 6, antialias=False)  # half-pixel centres, clamped at the borders
    np.testing.assert_allclose(up[:3], [[1, 0, 0], [0.75, 0.25, 0], [0.25, 0.75, 0]])
    # 8 -> 2: the first output's centre is at 2.0; plain bilinear takes the two nearest pixels, the
    # antialiased filter is four pixels wide on each side (the scale factor), as Pillow and torch
    np.testing.assert_allclose(geometry.resize_weights(8, 2, antialias=False)[0], [0, 0.5, 0.5, 0, 0, 0, 0, 0])
    # 8 -> 2: the first output's centre is at 2.0; plain bilinear takes the two nearest pixels, the
    # antialiased filter is four pixels wide on each side (the scale factor), as Pillow and torch
    np.testing.assert_allclose(geometry.resize_weights(8, 2, antialias=False)[0], [0, 0.5, 0.5, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(geometry.resize_weights(8, 2, antialias=True)[0], np.array([5, 7, 7, 5, 3, 1, 0, 0]) / 28)
    assert geometry.shorter_side_size(480, 640, 256) == (256, 341) and geometry.shorter_side_size(641, 480, 256) == (341, 256)
    assert [geometry.center_offset(n, 224) for n in (256, 257, 259)] == [16, 16, 18]  # round half to even, as torchvision


def test_run_directory(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "run")
    run.write_spec({"version": 1})
    for epoch in (1, 2):
        run.log_epoch({"epoch": epoch, "step": epoch * 10, "learning_rate": 0.1, "loss": 1.0 / epoch, "accuracy": 0.5,
                       "val_loss": 1.2, "val_accuracy": 0.4, "seconds": 1.0})  # fmt: skip
    assert (tmp_path / "run" / "metrics.csv").read_text().count("\n") == 3
    assert [r["epoch"] for r in run.history()] == [1, 2]
    assert (tmp_path / "run" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (events,) = (tmp_path / "run").glob("events.out.tfevents.*")
    scalars = read_scalars(events)
    assert scalars["loss"] == [(10, 1.0), (20, 0.5)]
    assert scalars["val_accuracy"] == [(10, pytest.approx(0.4)), (20, pytest.approx(0.4))]
    run.truncate_history(1, 10)
    assert [r["epoch"] for r in run.history()] == [1]
    run.log_epoch({"epoch": 2, "step": 20, "learning_rate": 0.1, "loss": 0.25, "accuracy": 0.5, "seconds": 1.0})
    run.close()
    files = sorted((tmp_path / "run").glob("events.out.tfevents.*"), key=lambda p: p.stat().st_mtime)
    assert len(files) == 2  # the resumed run's file starts by purging the steps after 10 from the first
    assert read_scalars(files[1], purge=11)["loss"] == [(20, 0.25)]


def test_tensorboard_events_need_neither_tensorflow_nor_torch(tmp_path: Path) -> None:
    probe = (
        "import sys; from pathlib import Path; from resnet_spec.training.run_dir import RunDir\n"
        "run = RunDir(Path(sys.argv[1]))\n"
        "run.log_epoch({'epoch': 1, 'step': 3, 'learning_rate': 0.1, 'loss': 1.0, 'accuracy': 0.5, 'seconds': 1})\n"
        "run.close()\n"
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=120,
                          check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr[-2000:]
    (events,) = tmp_path.glob("events.out.tfevents.*")
    assert read_scalars(events)["loss"] == [(3, 1.0)]




def read_scalars(path: Path, purge: int | None = None) -> dict[str, list[tuple[int, float]]]:
    """An event file's scalars by tag, read with tensorboard's own TFRecord reader (which checks
    every record's CRCs) and protocol buffers, without TensorFlow; with ``purge``, the file must
    first tell TensorBoard to drop the earlier files' steps from ``purge`` on (a resumed run)."""
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto import event_pb2
    from tensorboard.compat.tensorflow_stub import errors, pywrap_tensorflow

    reader = pywrap_tensorflow.PyRecordReader_New(str(path))
    events = []
    while True:
        try:
            reader.GetNext()
        except errors.OutOfRangeError:
            break
        events.append(event_pb2.Event.FromString(reader.record()))
    assert events[0].file_version == "brain.Event:2"
    sessions = [e for e in events if e.HasField("session_log")]
    if purge is not None:
        assert sessions and sessions[0].step == purge and sessions[0].session_log.status == event_pb2.SessionLog.START
    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in events[1:]:
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_a_crash_between_the_renames_is_recovered(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    for step in (1, 2):
        checkpoint.save(target, lambda folder, step=step: (folder / "w.txt").write_text(str(step)), {"step": step})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "checkpoint.previous"]  # the last two kept
    assert (tmp_path / "checkpoint.previous" / "w.txt").read_text() == "1"
    old = tmp_path / ".checkpoint.old-x"  # the old checkpoint renamed away, the new one not yet in
    old.mkdir()
    target.rename(old / "previous")
    newer = tmp_path / ".checkpoint.tmp-y"
    newer.mkdir()
    (newer / "w.txt").write_text("3")
    (newer / "state.json").write_text(json.dumps({"step": 3}))
    (tmp_path / ".checkpoint.tmp-z").mkdir()  # a crash while writing: no state.json
    assert checkpoint.locate(target) == newer
    assert checkpoint.recover(target) == target and (target / "w.txt").read_text() == "3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint", "checkpoint.previous"]


def test_a_failed_write_leaves_the_old_checkpoint_whole(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    checkpoint.save(target, lambda folder: (folder / "w.txt").write_text("1"), {"step": 1})

    def broken(folder: Path) -> None:
        (folder / "w.txt").write_text("2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(target, broken, {"step": 2})
    assert (target / "w.txt").read_text() == "1" and checkpoint.read_state(target)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
