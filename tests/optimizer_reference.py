"""A NumPy reference of the optimizers both trainers must implement (tests/test_train_keras.py and
tests/test_train_torch.py compare against it)."""

from __future__ import annotations

import numpy as np


def numpy_optimizer(kind: str, w: np.ndarray, grads: list[np.ndarray], rates: list[float], decay: bool,
                     m: float = 0.9, nesterov: bool = False, wd: float = 0.1) -> np.ndarray:  # fmt: skip
    """The trainer contract's SGD / Adam / AdamW, i.e. PyTorch's documented algorithms, in float64:
    ``decay`` applies weight decay ``wd`` to ``w``; one step per (gradient, learning rate)."""
    w = w.astype(np.float64)
    b = mom = vel = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(grads, rates), start=1):
        g = g.astype(np.float64)
        if kind == "sgd":
            g = g + wd * w if decay else g
            b = m * b + g
            w = w - lr * ((g + m * b) if nesterov else b)
            continue
        if kind == "adam" and decay:
            g = g + wd * w
        if kind == "adamw" and decay:
            w = w * (1 - lr * wd)
        mom = 0.9 * mom + 0.1 * g
        vel = 0.999 * vel + 0.001 * g * g
        w = w - lr / (1 - 0.9**t) * mom / (np.sqrt(vel) / np.sqrt(1 - 0.999**t) + 1e-8)
    return w
