"""Preprocessing modes, fitted on the training set and applied identically by every backend.
The fitted statistics travel in checkpoints (``to_dict`` / ``from_dict``).

:meth:`Preprocessor.apply` uses only arithmetic operators and a channel-reversing slice on
float32 values, so the same code runs on NumPy arrays (the PyTorch input workers, in-memory data)
and on TensorFlow tensors (inside tf.data), with the same IEEE operations in the same order."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import Preprocessing
from .sources import Split

CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)
FIT_CHUNK = 1024  # examples read at a time when fitting means


@dataclass
class Preprocessor:
    mode: str
    scale: float
    mean: np.ndarray | None = None  # per-pixel (H, W, C) or per-channel (C,), on the scaled values
    std: np.ndarray | None = None  # mean_std: per channel, on the scaled values

    @classmethod
    def fit(cls, settings: Preprocessing, train: Split | np.ndarray,
            size: tuple[int, int, int] | None = None) -> Preprocessor:  # fmt: skip
        """The preprocessor of ``settings`` for the training examples ``train`` (a split, or an
        array of them); the mean modes read the set once, a chunk at a time. Image files are
        brought to ``size`` (the input's height, width, channels) by Pillow's bilinear resize
        for the mean."""
        pre = cls(settings.mode, settings.scale)
        if settings.mode == "mean_std":
            pre.mean = np.asarray(settings.mean, np.float32)
            pre.std = np.asarray(settings.std, np.float32)
        elif settings.mode in ("per_pixel_mean", "per_channel_mean"):
            total = _sum(train, size, settings.scale)
            count = len(train)
            mean = (total / max(count, 1)).astype(np.float32)
            pre.mean = mean if settings.mode == "per_pixel_mean" else mean.reshape(-1, mean.shape[-1]).mean(axis=0)
        return pre

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.apply(np.asarray(x).astype(np.float32))

    def apply_inplace(self, x: np.ndarray) -> np.ndarray:
        """:meth:`apply` on a float32 NumPy array, overwriting it: the same operations in the same
        order (so the same values), without a temporary array per operation."""
        if self.mode == "caffe":
            x[...] = x[..., ::-1]
            np.subtract(x, CAFFE_BGR_MEAN, out=x)
        elif self.mode == "torch":
            np.divide(x, 255.0, out=x)
            np.subtract(x, TORCH_MEAN, out=x)
            np.divide(x, TORCH_STD, out=x)
        elif self.mode != "none":
            np.multiply(x, np.float32(self.scale), out=x)
            if self.mean is not None:
                np.subtract(x, self.mean, out=x)
            if self.mode == "mean_std" and self.std is not None:
                np.divide(x, self.std, out=x)
        return x

    def apply(self, x: Any) -> Any:
        """Float32 NHWC (or HWC) values in, preprocessed values out (NumPy or TensorFlow)."""
        if self.mode == "none":
            return x
        if self.mode == "caffe":  # Keras' "caffe": RGB -> BGR, subtract ImageNet means on 0..255
            return x[..., ::-1] - CAFFE_BGR_MEAN
        if self.mode == "torch":  # Keras' "torch": 0..1, then ImageNet mean and std
            return (x / 255.0 - TORCH_MEAN) / TORCH_STD
        if self.mode == "mean_std":
            return (x * np.float32(self.scale) - self.mean) / self.std
        x = x * np.float32(self.scale)
        return x - self.mean if self.mean is not None else x

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "scale": self.scale, "mean": None if self.mean is None else self.mean.tolist(),
                "std": None if self.std is None else self.std.tolist()}  # fmt: skip

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        mean = None if data.get("mean") is None else np.asarray(data["mean"], np.float32)
        std = None if data.get("std") is None else np.asarray(data["std"], np.float32)
        return cls(data["mode"], float(data["scale"]), mean, std)


def _sum(train: Split | np.ndarray, size: tuple[int, int, int] | None, scale: float) -> np.ndarray:
    """The per-pixel sum of the scaled training examples, accumulated in float64."""
    if isinstance(train, np.ndarray):
        return (train.astype(np.float32) * np.float32(scale)).astype(np.float64).sum(axis=0)
    total: np.ndarray | None = None
    if train.is_files and len(train) > FIT_CHUNK:
        print(f"note: computing the mean of {len(train):,} training images (one decoding pass)", file=sys.stderr)
    for start in range(0, len(train), FIT_CHUNK):
        indices = np.arange(start, min(start + FIT_CHUNK, len(train)))
        block = train.read(indices) if not train.is_files else _resized_files(train, indices, size)
        part = (block.astype(np.float32) * np.float32(scale)).astype(np.float64).sum(axis=0)
        total = part if total is None else total + part
    assert total is not None  # training sets are never empty (data.check)
    return total


def _resized_files(train: Split, indices: np.ndarray, size: tuple[int, int, int] | None) -> np.ndarray:
    from PIL import Image

    if size is None:
        raise ValueError("fitting a mean over image files needs the input size")
    height, width, channels = size
    images = []
    for index in indices:
        image = train.decode(int(index), channels)
        pillow = Image.fromarray(image[..., 0] if channels == 1 else image)
        resized = pillow.resize((width, height), Image.Resampling.BILINEAR)
        images.append(np.asarray(resized, np.uint8).reshape(height, width, channels))
    return np.stack(images)
