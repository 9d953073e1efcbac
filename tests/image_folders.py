"""Image folders written for the tests: ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``, as
the chest X-ray and ImageNet layouts (``train`` and ``test`` are what the loader reads)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A small network for 8x8 RGB image folders: random-resized crops and flips in training, resize
# of the shorter side + centre crop in evaluation, ImageNet normalization (the ImageNet recipe
# in miniature).
FOLDER_SPEC = {
    "version": 1, "input": {"height": 8, "width": 8, "channels": 3}, "classes": 3,
    "stem": [{"type": "conv", "filters": 4, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 4}],
    "training": {
        "batch_size": 8, "epochs": 3, "optimizer": {"kind": "sgd", "learning_rate": 0.1, "momentum": 0.9},
        "loss": {"label_smoothing": 0.1},
        "augmentation": {"random_resized_crop": {"scale": [0.25, 1.0]}, "horizontal_flip": True},
        "preprocessing": {"mode": "torch", "resize": {"shorter_side": 10}}, "validation_split": 0.2, "seed": 1,
        "tensorboard": False,
    },
}  # fmt: skip


def picture(rng: np.random.Generator, height: int, width: int, channels: int, kind: int) -> np.ndarray:
    """Smooth stripes that depend on ``kind`` (a class a network can learn) plus noise."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.sin(xx / (1.5 + kind)) * 70 + np.cos(yy / (2.0 + kind)) * 50 + 128
    image = base[..., None] + rng.integers(-25, 26, (height, width, channels))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_folder(root: Path, per_class: int = 12, classes: int = 3, *, sizes: tuple[int, int] = (10, 24),
                 channels: int = 3, seed: int = 0) -> Path:  # fmt: skip
    """Images of random sizes (``sizes``: the smallest and largest side), two of three JPEG (quality
    90), one PNG; ``per_class`` training images per class and a quarter as many test images."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for part, count in (("train", per_class), ("test", max(2, per_class // 4))):
        for kind in range(classes):
            folder = root / part / f"class{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                height, width = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, 2))
                pixels = picture(rng, height, width, channels, kind)
                image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels)
                if i % 3:
                    image.save(folder / f"{i:04d}.jpg", "JPEG", quality=90)
                else:
                    image.save(folder / f"{i:04d}.png", "PNG")
    return root


def digits_folder(root: Path, count: int | None = None) -> Path:
    """scikit-learn's digits as 8x8 grayscale PNGs (values 0..16 times 15: lossless), in the same
    80/20 split as ``--data digits``; the first ``count`` training images when given."""
    from PIL import Image
    from sklearn.datasets import load_digits

    bunch = load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.images))
    cut = int(len(order) * 0.8)
    for part, indices in (("train", order[:cut][:count]), ("test", order[cut:])):
        for n, i in enumerate(indices):
            folder = root / part / str(bunch.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((bunch.images[i] * 15).astype(np.uint8)).save(folder / f"{n:05d}.png")
    return root
