"""Pad-and-crop and flip on the device, with the core's random numbers.

:mod:`resnet_spec.training.augment` defines the operation (zero padding, a random crop back to
the input size with offsets in [0, 2 * padding], a left-right flip with probability 1/2) and
draws its numbers from (seed, epoch, batch); they reach the step as one (n, 3) int32 array of
(top, left, flip) per image, and :func:`apply` does the pixel work with TensorFlow ops inside the
(optionally XLA-compiled) step: bit-identical to the NumPy reference.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


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
