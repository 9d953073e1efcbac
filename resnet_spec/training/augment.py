"""Pad-and-crop and flip augmentation: the random numbers (drawn here, for every backend) and the
NumPy reference of the pixel work (backends do it on the device; tests compare them with this).

The numbers of batch ``b`` of epoch ``e`` come from ``np.random.default_rng([seed, e, b])``, for
the whole global batch: the crop offsets (``count`` x 2 integers in [0, 2 * padding]), then the
flips (probability 1/2). They are a pure function of (seed, epoch, batch), so both backends, every
rank's slice of the batch and a resumed run use the same ones, and no generator state is saved.
"""

from __future__ import annotations

import numpy as np

from ..spec import Augmentation


def enabled(settings: Augmentation) -> bool:
    """Whether anything is done on the device (random-resized crops happen in the input pipeline)."""
    return bool(settings.random_crop_padding) or settings.horizontal_flip


def generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, batch])


def draw(settings: Augmentation, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tops, lefts, flips) for ``count`` images: int64, int64, bool."""
    tops = lefts = np.zeros(count, np.int64)
    if settings.random_crop_padding:
        offsets = rng.integers(0, 2 * settings.random_crop_padding + 1, (count, 2))
        tops, lefts = offsets[:, 0], offsets[:, 1]
    flips = rng.random(count) < 0.5 if settings.horizontal_flip else np.zeros(count, bool)
    return tops, lefts, flips


def augment(x: np.ndarray, settings: Augmentation, rng: np.random.Generator) -> np.ndarray:
    """The reference: zero padding, a crop back to the input size at the drawn offsets, flips."""
    tops, lefts, flips = draw(settings, len(x), rng)
    out = x
    if settings.random_crop_padding:
        p = settings.random_crop_padding
        _, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        out = np.stack([padded[i, top : top + h, left : left + w] for i, (top, left) in enumerate(zip(tops, lefts))])
    if settings.horizontal_flip:
        out = np.where(flips[:, None, None, None], out[:, :, ::-1], out)
    return out
