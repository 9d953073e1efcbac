"""The two input pipelines do the same arithmetic (resnet_spec.training.geometry): on fixed
inputs, PyTorch's (F.interpolate in DataLoader workers) and TensorFlow's (tf.image in tf.data)
resizes, crop boxes, evaluation crops, channel conversions and JPEG decoding agree with each
other and with the NumPy reference; a whole training request gives the same batch in both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("tensorflow")

from image_folders import FOLDER_SPEC, write_folder
from resnet_spec_keras import pipeline as keras_pipeline
from resnet_spec_torch import pipeline as torch_pipeline

import resnet_spec
from resnet_spec.spec import RandomResizedCrop
from resnet_spec.training import data, geometry, sources
from resnet_spec.training.geometry import Geometry
from resnet_spec.training.job import TrainingJob

pytestmark = [pytest.mark.torch, pytest.mark.keras]

SIZES = [(37, 53), (224, 224), (256, 300), (500, 375), (9, 31), (64, 20)]
GEOMETRIES = [
    Geometry("stretch", 32, 24, 3, antialias=True), Geometry("stretch", 32, 24, 3, antialias=False),
    Geometry("shorter_side", 24, 24, 3, shorter_side=28, antialias=True),
    Geometry("shorter_side", 24, 24, 3, shorter_side=28, antialias=False),
    Geometry("random_resized_crop", 24, 24, 3, ratio=(0.75, 4 / 3), antialias=True),
]  # fmt: skip


def _image(rng: np.random.Generator, h: int, w: int, c: int = 3) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    smooth = np.sin(xx / 5.0)[..., None] * 80 + np.cos(yy / 7.0)[..., None] * 60 + 120
    return np.clip(smooth + rng.integers(-40, 41, (h, w, c)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda g: f"{g.mode}-aa{int(g.antialias)}")
def test_geometry_agrees_between_frameworks_and_with_numpy(geo: Geometry) -> None:
    rng = np.random.default_rng(0)
    draws = geometry.crop_draws(RandomResizedCrop(), 3, 0, 0, len(SIZES))
    for k, (h, w) in enumerate(SIZES):
        image = _image(rng, h, w)
        crops = draws[k] if geo.random else None
        reference = geometry.apply_reference(image, geo, crops)
        from_torch = torch_pipeline.transform(image, geo, crops)
        from_tf = keras_pipeline.transform(tf.constant(image), geo, None if crops is None else tf.constant(crops)).numpy()
        assert from_torch.shape == from_tf.shape == reference.shape == (geo.height, geo.width, 3)
        # float32 interpolation against float64 on values 0..255: agreement to about 1e-5 of the range
        np.testing.assert_allclose(from_torch, reference, atol=4e-3, err_msg=f"torch {h}x{w}")
        np.testing.assert_allclose(from_tf, reference, atol=4e-3, err_msg=f"tf {h}x{w}")
        np.testing.assert_allclose(from_torch, from_tf, atol=4e-3, err_msg=f"torch vs tf {h}x{w}")


def test_crop_boxes_are_the_same_integers_in_both_frameworks() -> None:
    """The box arithmetic (float64 area, sqrt, round half to even, floor) of the TensorFlow graph
    and of the core's NumPy, on 2,000 draws including many that fall back to the centre crop."""
    rng = np.random.default_rng(5)
    settings = RandomResizedCrop(scale=[0.05, 1.0], ratio=[0.3, 3.0])
    draws = geometry.crop_draws(settings, 11, 2, 7, 2000)
    sizes = rng.integers(1, 400, (2000, 2))
    sizes[::7] = [[5, 400]]  # very wide images: no try fits, the fallback decides
    for (h, w), d in zip(sizes.tolist(), draws):
        expected = geometry.crop_box(h, w, d, (0.3, 3.0))
        got = tuple(int(v) for v in keras_pipeline.crop_box(tf.constant(h), tf.constant(w), tf.constant(d), (0.3, 3.0)))
        assert got == expected, (h, w)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channel_conversion_is_pillows(tmp_path: Path, mode: str, channels: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGBA").convert(mode)
    path = tmp_path / f"image_{mode}.png"
    image.save(path)
    expected = sources.decode_image(str(path), channels)
    decoded = tf.io.decode_image(tf.io.read_file(str(path)), channels=0, expand_animations=False)
    np.testing.assert_array_equal(keras_pipeline.to_channels(decoded, channels).numpy(), expected)


def test_jpeg_decoding_is_pillows_bit_for_bit(tmp_path: Path) -> None:
    """TensorFlow's reader decodes JPEGs with libjpeg's accurate integer DCT: Pillow's pixels
    exactly (its default fast DCT differs by up to 6 levels here)."""
    from PIL import Image

    rng = np.random.default_rng(2)
    names = []
    for quality, subsampling, progressive in ((75, 2, False), (95, 0, True), (50, 1, False)):
        names.append(f"q{quality}.jpg")
        Image.fromarray(_image(rng, 61, 47)).save(tmp_path / names[-1], "JPEG", quality=quality,
                                                  subsampling=subsampling, progressive=progressive)  # fmt: skip
    split = sources.ImageFiles("x", tmp_path, np.array([n.encode() for n in names]), np.zeros(len(names)))
    reader = keras_pipeline.Reader(split, Geometry("stretch", 61, 47, 3), None, 1)  # type: ignore[arg-type]
    assert reader.native
    for index, path in enumerate(split.files(np.arange(len(names)))):
        decoded = reader._file(tf.constant(path)).numpy()
        np.testing.assert_array_equal(decoded, split.decode(index, 3).astype(np.float32))


def test_a_training_request_gives_the_same_batch_in_both_pipelines(tmp_path: Path) -> None:
    """Shard 1 of 2 of step 5 of the miniature ImageNet recipe over a folder of JPEG and PNG files:
    decode, random-resized crop, ImageNet normalization: the same (n, 8, 8, 3) batch."""
    folder = write_folder(tmp_path / "images", per_class=10)
    arch = resnet_spec.build_architecture(FOLDER_SPEC)
    job = TrainingJob.prepare(arch, data.load(str(folder), arch.spec), tmp_path / "run")
    geo = job.geometry(job.train, train=True)
    shard = job.plan.shard(5, 1, 2)
    x_torch, y_torch = torch_pipeline.ExampleReader(job.train, geo, job.preprocessor)[shard]
    reader = keras_pipeline.Reader(job.train, geo, job.preprocessor, 2)
    x_tf, y_tf, numbers = next(iter(reader.training(job.plan, 5, 6, [1], 2)))
    np.testing.assert_array_equal(y_tf.numpy(), y_torch)
    np.testing.assert_array_equal(numbers.numpy(), np.stack([shard.tops, shard.lefts, shard.flips], 1))
    np.testing.assert_allclose(x_tf.numpy(), x_torch.numpy(), atol=1e-4)  # normalized values, about -2 .. 2.6
    # evaluation: resize of the shorter side to 10, then the centred 8x8
    evaluation = job.geometry(job.test, train=False)
    block = torch_pipeline.Block(np.arange(len(job.test)))
    x_eval, _ = torch_pipeline.ExampleReader(job.test, evaluation, job.preprocessor)[block]
    tf_eval = keras_pipeline.Reader(job.test, evaluation, job.preprocessor, 1)
    np.testing.assert_allclose(next(iter(tf_eval.evaluation(64)))[0].numpy(), x_eval.numpy(), atol=1e-4)
