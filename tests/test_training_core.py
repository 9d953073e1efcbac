"""The framework-free half of training: schedule, batch order, data sets, preprocessing,
augmentation and the run directory."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import resnet_spec
from resnet_spec.spec import Augmentation, Preprocessing
from resnet_spec.training import batches, checkpoint, data, events, schedule
from resnet_spec.training.augment import augment
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
    assert d.x_train.shape == (1437, 8, 8, 1) and d.x_test.shape == (360, 8, 8, 1)
    assert d.x_train.max() == 16 and set(np.unique(d.y_train)) == set(range(10))
    train, x_val, _ = d.validation_split(0.1, seed=0)
    assert len(x_val) == 144 and len(train.x_train) == 1437 - 144


def _cifar_dir(root: Path, n: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(10)]}))
    return root


def test_cifar_batches_directory(tmp_path: Path) -> None:
    spec = resnet_spec.build_architecture("examples/resnet20_cifar10.yaml").spec
    d = data.load(str(_cifar_dir(tmp_path)), spec)
    assert d.x_train.shape == (20, 32, 32, 3) and d.x_test.shape == (4, 32, 32, 3) and d.class_names[1] == "c1"
    raw = pickle.loads((tmp_path / "data_batch_1").read_bytes())[b"data"][0]
    assert np.array_equal(d.x_train[0, :, :, 0].reshape(-1), raw[:1024])  # channel-first rows -> NHWC


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


def test_image_folder_is_resized_to_the_spec(tmp_path: Path) -> None:
    spec = spec_with({"epochs": 1}, classes=2)
    d = data.load(str(_image_folder(tmp_path, {"NORMAL": 2, "PNEUMONIA": 3})), spec)
    assert d.x_train.shape == (5, 8, 8, 3) and d.class_names == ["NORMAL", "PNEUMONIA"]
    assert d.y_train.tolist() == [0, 0, 1, 1, 1]


def test_data_errors_are_clear(tmp_path: Path) -> None:
    spec = spec_with({"epochs": 1}, classes=2)
    with pytest.raises(data.DataError, match="does not exist"):
        data.load(str(tmp_path / "nowhere"), spec)
    root = _image_folder(tmp_path / "a", {"x": 1, "y": 1})
    for f in (root / "train" / "y").iterdir():
        f.unlink()
    with pytest.raises(data.DataError, match="class 'y' has no images"):
        data.load(str(root), spec)
    root = _image_folder(tmp_path / "b", {"x": 1, "y": 1})
    (root / "train" / "y" / "0.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match="cannot decode image"):
        data.load(str(root), spec)
    np.savez(tmp_path / "gray.npz", x_train=np.zeros((4, 8, 8, 1)), y_train=np.zeros(4), x_test=np.zeros((2, 8, 8, 1)), y_test=np.zeros(2))
    with pytest.raises(data.DataError, match=r"8x8x1 but the spec's input is 8x8x3"):
        data.load(str(tmp_path / "gray.npz"), spec)
    np.savez(tmp_path / "labels.npz", x_train=np.zeros((4, 8, 8, 3)), y_train=np.full(4, 7), x_test=np.zeros((2, 8, 8, 3)), y_test=np.zeros(2))
    with pytest.raises(data.DataError, match="labels run from 7 to 7 but the spec has 2 classes"):
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
    assert d.x_train.shape == (6, 64, 64, 3) and d.y_test.tolist() == [1, 2]


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


def test_augmentation_reference() -> None:
    x = np.arange(2 * 4 * 4 * 1, dtype=np.float32).reshape(2, 4, 4, 1) + 1
    out = augment(x, Augmentation(random_crop_padding=1, horizontal_flip=True), np.random.default_rng(0))
    assert out.shape == x.shape
    assert not np.array_equal(out, x)
    same = augment(x, Augmentation(random_crop_padding=1, horizontal_flip=True), np.random.default_rng(0))
    assert np.array_equal(out, same)


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
    run.truncate_history(1)
    assert [r["epoch"] for r in run.history()] == [1]


def read_scalars(path: Path) -> dict[str, list[tuple[int, float]]]:
    """An event file's scalars by tag, read with tensorboard's own TFRecord reader (which checks
    every record's CRCs) and protocol buffers, without TensorFlow."""
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
    scalars: dict[str, list[tuple[int, float]]] = {}
    for event in events[1:]:
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def test_event_records_and_crc32c() -> None:
    assert events.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert events.crc32c(b"") == 0
    data = events.encode_event(1.5, 2**40, scalars={"loss": 0.25})
    framed = events.record(data)
    assert len(framed) == len(data) + 16 and framed[12:-4] == data
    pytest.importorskip("tensorboard")
    from tensorboard.compat.proto import event_pb2

    decoded = event_pb2.Event.FromString(data)
    assert (decoded.wall_time, decoded.step, decoded.summary.value[0].tag) == (1.5, 2**40, "loss")
    assert decoded.summary.value[0].simple_value == 0.25
    assert event_pb2.Event.FromString(events.encode_event(0.0, -3)).step == -3


def test_a_crash_between_the_renames_is_recovered(tmp_path: Path) -> None:
    target = tmp_path / "checkpoint"
    for step in (1, 2):
        checkpoint.save(target, lambda folder, step=step: (folder / "w.txt").write_text(str(step)), {"step": step})
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]
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
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]


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
