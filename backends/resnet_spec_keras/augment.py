"""Augmentation on the device, with the reference's random numbers.

:func:`resnet_spec.training.augment.augment` defines the operation (zero padding, a random crop
back to the input size with offsets in [0, 2 * padding], a left-right flip with probability
1/2) and the order in which it draws its random numbers. :func:`draw` draws exactly those
numbers on the host from ``np.random.default_rng([seed, epoch, batch])`` (a few integers per
image, cheap), and :func:`apply` performs the pixel work with TensorFlow ops inside the
(optionally XLA-compiled) training step. So a batch is augmented identically by this backend,
by the NumPy reference given the same generator, and by a resumed run: the numbers are a pure
function of (seed, epoch, batch index) and no generator state needs checkpointing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from resnet_spec.spec import Augmentation


def enabled(settings: Augmentation) -> bool:
    return bool(settings.random_crop_padding) or settings.horizontal_flip


def generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, batch])


def draw(settings: Augmentation, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, 3) int32: each image's crop (top, left) and flip (0/1), drawn in the reference's
    order (all offsets, then all flips). One array: one argument to the compiled step."""
    numbers = np.zeros((count, 3), np.int32)
    if settings.random_crop_padding:
        numbers[:, :2] = rng.integers(0, 2 * settings.random_crop_padding + 1, (count, 2))
    if settings.horizontal_flip:
        numbers[:, 2] = rng.random(count) < 0.5
    return numbers


def apply(images: Any, numbers: Any, *, padding: int, flip: bool) -> Any:
    """Pad with zeros, crop each image at its (top, left), flip where asked. Pure data
    movement: bit-identical to the NumPy reference."""
    out = images
    if padding:
        shape = tf.shape(images)
        height, width = shape[1], shape[2]
        padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
        rows = numbers[:, 0:1] + tf.range(height)[None, :]
        cols = numbers[:, 1:2] + tf.range(width)[None, :]
        out = tf.gather(padded, rows, axis=1, batch_dims=1)
        out = tf.gather(out, cols, axis=2, batch_dims=1)
    if flip:
        out = tf.where(numbers[:, 2, None, None, None] > 0, tf.reverse(out, axis=[2]), out)
    return out
