"""Preprocessing modes, fitted on the training set and applied identically by every backend.
The fitted statistics travel in checkpoints (``to_dict`` / ``from_dict``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import Preprocessing

CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], np.float32)
TORCH_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.array([0.229, 0.224, 0.225], np.float32)


@dataclass
class Preprocessor:
    mode: str
    scale: float
    mean: np.ndarray | None = None  # per-pixel (H, W, C) or per-channel (C,), on the scaled values

    @classmethod
    def fit(cls, settings: Preprocessing, x_train: np.ndarray) -> Preprocessor:
        pre = cls(settings.mode, settings.scale)
        scaled = x_train.astype(np.float32) * settings.scale
        if settings.mode == "per_pixel_mean":
            pre.mean = scaled.mean(axis=0)
        elif settings.mode == "per_channel_mean":
            pre.mean = scaled.mean(axis=(0, 1, 2))
        return pre

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float32)
        if self.mode == "none":
            return x
        if self.mode == "caffe":  # Keras' "caffe": RGB -> BGR, subtract ImageNet means on 0..255
            return x[..., ::-1] - CAFFE_BGR_MEAN
        if self.mode == "torch":  # Keras' "torch": 0..1, then ImageNet mean and std
            return (x / 255.0 - TORCH_MEAN) / TORCH_STD
        x = x * self.scale
        return x - self.mean if self.mean is not None else x

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "scale": self.scale, "mean": None if self.mean is None else self.mean.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessor:
        mean = None if data.get("mean") is None else np.asarray(data["mean"], np.float32)
        return cls(data["mode"], float(data["scale"]), mean)
