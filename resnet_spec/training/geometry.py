"""How each example is brought to the network's input size, one definition for every backend.

A :class:`Geometry` says what happens to a decoded image (uint8, height x width x channels)
before preprocessing; the backends' input pipelines carry it out with their own operations
(PyTorch in DataLoader workers, TensorFlow in tf.data), tested against each other and against the
NumPy reference :func:`resize_reference`:

* ``none``: the example already has the input's size (arrays);
* ``stretch``: bilinear resize to (height, width);
* ``shorter_side``: bilinear resize so the shorter side is ``shorter_side`` (the longer one
  ``int(shorter_side * long / short)``, torchvision's rule), then the centered crop of the input's
  size (top ``round((h - height) / 2)``, rounding half to even, as torchvision);
* ``random_resized_crop``: a box from :func:`crop_box`, resized to the input.

Bilinear resizing uses half-pixel centres; with ``antialias`` a shrinking resize widens its
triangle filter by the scale factor (Pillow's and torchvision's antialiasing).

The random numbers of ``random_resized_crop`` are drawn here, for a whole global batch at a time,
from ``np.random.default_rng([seed, epoch, batch, 2])`` (:func:`crop_draws`): TRIES tries of
(area fraction, aspect ratio, top, left uniforms), so the box is a function of (seed, epoch,
position in the epoch) and the image's size alone: both backends, every DDP rank and a resumed
run cut the same boxes. :func:`crop_box` is torchvision's ``RandomResizedCrop.get_params`` on
those numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..spec import RandomResizedCrop, ResNetSpec
from .sources import Split

TRIES = 10
CROP_STREAM = 2  # the fourth word of the crop generator's seed (augment.py's generator has three)
FRACTION, ASPECT, TOP, LEFT = range(4)  # the columns of crop_draws
Resize = Callable[[np.ndarray, int, int, bool], np.ndarray]  # (image, height, width, antialias) -> resized


@dataclass(frozen=True)
class Geometry:
    mode: str  # none | stretch | shorter_side | random_resized_crop
    height: int
    width: int
    channels: int
    shorter_side: int | None = None
    ratio: tuple[float, float] = (0.75, 4.0 / 3.0)  # random_resized_crop's fallback needs the bounds
    antialias: bool = True

    @property
    def random(self) -> bool:
        return self.mode == "random_resized_crop"


def geometry_for(split: Split, spec: ResNetSpec, *, train: bool) -> Geometry:
    """The geometry of ``split``'s examples in training (``train``) or evaluation."""
    size = (spec.input.height, spec.input.width, spec.input.channels)
    training = spec.training
    crop = training.augmentation.random_resized_crop if training is not None else None
    resize = training.preprocessing.resizing if training is not None else None
    antialias = training.preprocessing.antialias if training is not None else True
    if train and crop is not None:
        return Geometry("random_resized_crop", *size, ratio=(crop.ratio[0], crop.ratio[1]), antialias=antialias)
    if resize is not None and resize.shorter_side is not None:
        return Geometry("shorter_side", *size, shorter_side=resize.shorter_side, antialias=antialias)
    if split.example_shape is not None and tuple(split.example_shape[:2]) == size[:2]:
        return Geometry("none", *size)
    return Geometry("stretch", *size, antialias=antialias)


def crop_draws(settings: RandomResizedCrop, seed: int, epoch: int, batch: int, count: int) -> np.ndarray:
    """(count, TRIES, 4) float64: area fraction, aspect ratio (drawn log-uniformly), and the top and
    left positions as uniforms in [0, 1), for the ``count`` examples of batch ``batch``."""
    rng = np.random.default_rng([seed, epoch, batch, CROP_STREAM])
    draws = rng.random((count, TRIES, 4))
    low, high = settings.scale
    draws[..., FRACTION] = low + (high - low) * draws[..., FRACTION]
    log_low, log_high = math.log(settings.ratio[0]), math.log(settings.ratio[1])
    draws[..., ASPECT] = np.exp(log_low + (log_high - log_low) * draws[..., ASPECT])
    return draws


def crop_box(height: int, width: int, draws: np.ndarray, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """(top, left, box height, box width) for an image of ``height`` x ``width`` from one
    example's (TRIES, 4) draws: the first try that fits, else the centered largest box within
    ``ratio``."""
    area = float(height * width)
    for fraction, aspect, top, left in draws:
        target = area * fraction
        w = int(np.rint(math.sqrt(target * aspect)))
        h = int(np.rint(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return math.floor(top * (height - h + 1)), math.floor(left * (width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(np.rint(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(np.rint(height * ratio[1]))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def shorter_side_size(height: int, width: int, side: int) -> tuple[int, int]:
    """The size after scaling the shorter side to ``side`` (torchvision's ``Resize(side)``)."""
    if height <= width:
        return side, int(side * width / height)
    return int(side * height / width), side


def center_offset(size: int, crop: int) -> int:
    return int(np.rint((size - crop) / 2.0))


# ---------------------------------------------------------------------------- the NumPy reference


def resize_weights(size_in: int, size_out: int, antialias: bool) -> np.ndarray:
    """(size_out, size_in) float64 interpolation matrix of bilinear resizing with half-pixel
    centres: a triangle filter, widened by the scale factor when shrinking with ``antialias``,
    normalized over the pixels it covers (so the borders repeat the edge pixel)."""
    scale = size_in / size_out
    support = max(scale, 1.0) if antialias else 1.0
    centers = (np.arange(size_out) + 0.5) * scale
    if not antialias:  # sample points clamped to the first and last pixel centre
        centers = np.clip(centers, 0.5, size_in - 0.5)
    taps = np.arange(size_in) + 0.5
    weights = np.clip(1.0 - np.abs(taps[None, :] - centers[:, None]) / support, 0.0, None)
    return weights / weights.sum(axis=1, keepdims=True)


def resize_reference(image: np.ndarray, height: int, width: int, antialias: bool) -> np.ndarray:
    """(h, w, c) -> (height, width, c) in float64: the arithmetic every backend's resize follows."""
    rows = resize_weights(image.shape[0], height, antialias)
    cols = resize_weights(image.shape[1], width, antialias)
    return np.einsum("ij,jkc,lk->ilc", rows, image.astype(np.float64), cols)


def apply(image: np.ndarray, geometry: Geometry, draws: np.ndarray | None, resize: Resize) -> np.ndarray:
    """One decoded example (h, w, c) through ``geometry``, resizing with ``resize(image, height,
    width, antialias)``: the PyTorch pipeline's (``F.interpolate``) or the reference's."""
    h, w = image.shape[:2]
    out_h, out_w = geometry.height, geometry.width
    if geometry.mode == "none" or (geometry.mode == "stretch" and (h, w) == (out_h, out_w)):
        return image.astype(np.float32)
    if geometry.mode == "stretch":
        return resize(image, out_h, out_w, geometry.antialias)
    if geometry.mode == "shorter_side":
        assert geometry.shorter_side is not None
        nh, nw = shorter_side_size(h, w, geometry.shorter_side)
        scaled = image.astype(np.float32) if (nh, nw) == (h, w) else resize(image, nh, nw, geometry.antialias)
        top, left = center_offset(nh, out_h), center_offset(nw, out_w)
        return scaled[top : top + out_h, left : left + out_w]
    assert draws is not None, "random_resized_crop needs the core's draws"
    top, left, bh, bw = crop_box(h, w, draws, geometry.ratio)
    return resize(image[top : top + bh, left : left + bw], out_h, out_w, geometry.antialias)


def apply_reference(image: np.ndarray, geometry: Geometry, draws: np.ndarray | None = None) -> np.ndarray:
    """One example through ``geometry`` with the float64 reference resize (tests compare the
    backends' pipelines with it)."""
    return apply(image, geometry, draws, resize_reference).astype(np.float64)
