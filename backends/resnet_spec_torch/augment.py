"""Pad-and-crop and flip on the device, with the core's random numbers.

:mod:`resnet_spec.training.augment` defines the operation (zero padding, a random crop back to
the input size with offsets in [0, 2 * padding], a left-right flip with probability 1/2) and
draws its numbers from (seed, epoch, batch) (they arrive in the plan's shards); :func:`apply`
moves the pixels with two gathers on the device. A batch is therefore augmented identically by
this backend, by the Keras backend, by the NumPy reference and by a resumed run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def apply(x: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor, *, padding: int,
          flip: bool) -> torch.Tensor:  # fmt: skip
    """Pad NCHW ``x`` with zeros, crop each image at its (top, left), flip where asked: pure data
    movement, bit-identical to the reference, in two gathers (rows, then columns, the flip folded
    into the column indices) with no per-image work on the host.

    The result has ``x``'s strides: the network's speed depends on its input's memory layout
    (a CPU convolution given an NCHW batch is about 10% slower on the digits network than given
    the channels-last one the preprocessed single-channel images come as), so augmenting must
    not change it."""
    if not padding and not flip:
        return x
    n, c, h, w = x.shape
    device = x.device
    cols = torch.arange(w, device=device).expand(n, w)
    if flip:
        cols = torch.where(flips.to(device)[:, None], cols.flip(1), cols)
    source = x
    if padding:
        source = F.pad(x, (padding, padding, padding, padding))
        rows = tops.to(device)[:, None] + torch.arange(h, device=device)
        source = torch.gather(source, 2, rows[:, None, :, None].expand(n, c, h, source.shape[3]))
        cols = cols + lefts.to(device)[:, None]
    index = cols[:, None, None, :].expand(n, c, h, w)
    return torch.gather(source, 3, index, out=torch.empty_like(x))
