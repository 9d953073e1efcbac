"""Augmentation on the device, with the NumPy reference's random numbers.

:func:`resnet_spec.training.augment.augment` defines the operation (zero padding, a random crop
back to the input size with offsets in [0, 2 * padding], a left-right flip with probability 1/2)
and the order of its random draws. :func:`draw` draws exactly those numbers on the host from
``np.random.default_rng([seed, epoch, batch])`` (a few integers per image), and :func:`apply`
moves the pixels with one gather on the device. A batch is therefore augmented identically by
this backend, by the Keras backend, by the NumPy reference and by a resumed run: the numbers are
a pure function of (seed, epoch, batch index), so no generator state is checkpointed.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from resnet_spec.spec import Augmentation


def enabled(settings: Augmentation) -> bool:
    return bool(settings.random_crop_padding) or settings.horizontal_flip


def generator(seed: int, epoch: int, batch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, batch])


def draw(settings: Augmentation, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tops, lefts, flips) for ``count`` images, drawn in the reference's order."""
    tops = lefts = np.zeros(count, np.int64)
    if settings.random_crop_padding:
        offsets = rng.integers(0, 2 * settings.random_crop_padding + 1, (count, 2))
        tops, lefts = offsets[:, 0], offsets[:, 1]
    flips = rng.random(count) < 0.5 if settings.horizontal_flip else np.zeros(count, bool)
    return tops, lefts, flips


def apply(x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor, *, padding: int,
          flip: bool, channels_last: bool = False, method: str | None = None) -> torch.Tensor:  # fmt: skip
    """Pad NCHW ``x`` with zeros, crop each image at its (top, left), flip where asked; pure data
    movement, bit-identical to the reference. The result is contiguous in the memory format asked
    for (``channels_last`` or NCHW).

    ``method``: ``gather`` (one indexing kernel: the choice on GPUs) or ``slices`` (one slice
    copy per distinct crop offset, at most (2 * padding + 1) ** 2, then one ``where`` for the
    flips: the choice on CPUs, where a network was measured to run about 10% slower on the
    output of the gather than on this one, values being equal). Default: by ``x``'s device."""
    if not padding and not flip:
        return x
    method = method or ("slices" if x.device.type == "cpu" else "gather")
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    if method == "slices":
        return _slices(x, tops, lefts, flips, padding, flip, memory_format)
    n, c, h, w = x.shape
    device = x.device
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        cols = torch.where(flips[:, None], cols.flip(1), cols)
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
        rows = tops[:, None] + torch.arange(h, device=device)
        cols = cols + lefts[:, None]
    else:
        rows = torch.arange(h, device=device).expand(n, h)
    batch = torch.arange(n, device=device)
    if channels_last:  # index (n, h, w) and keep channels as the slice: an NHWC result
        return x[batch[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    channel = torch.arange(c, device=device)
    return x[batch[:, None, None, None], channel[None, :, None, None], rows[:, None, :, None], cols[:, None, None, :]]


def _slices(x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor, padding: int, flip: bool,
            memory_format: torch.memory_format) -> torch.Tensor:  # fmt: skip
    h, w = x.shape[2], x.shape[3]
    if padding:
        padded = F.pad(x, (padding, padding, padding, padding))
        out = torch.empty_like(x, memory_format=memory_format)
        key = (tops * (2 * padding + 1) + lefts).cpu().numpy()
        for k in np.unique(key):
            top, left = divmod(int(k), 2 * padding + 1)
            chosen = torch.from_numpy(np.flatnonzero(key == k)).to(x.device)
            out[chosen] = padded[chosen, :, top : top + h, left : left + w]
    else:
        out = x.contiguous(memory_format=memory_format)
    if flip:
        out = torch.where(flips.to(x.device)[:, None, None, None], out.flip(3), out)
        out = out.contiguous(memory_format=memory_format)
    return out
