"""Reference augmentation in NumPy: pad with zeros and crop back at random, flip left-right.

Backends run the same operations on the device or in their input pipelines; this reference
defines them (offsets in [0, 2 * padding], flip with probability 1/2) and is used in tests."""

from __future__ import annotations

import numpy as np

from ..spec import Augmentation


def augment(x: np.ndarray, settings: Augmentation, rng: np.random.Generator) -> np.ndarray:
    out = x
    if settings.random_crop_padding:
        p = settings.random_crop_padding
        n, h, w, _ = x.shape
        padded = np.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
        offsets = rng.integers(0, 2 * p + 1, (n, 2))
        out = np.stack([padded[i, top : top + h, left : left + w] for i, (top, left) in enumerate(offsets.tolist())])
    if settings.horizontal_flip:
        flip = rng.random(len(out)) < 0.5
        out = np.where(flip[:, None, None, None], out[:, :, ::-1], out)
    return out
