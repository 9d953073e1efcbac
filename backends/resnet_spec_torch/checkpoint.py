"""The PyTorch trainer's checkpoint files. Writing them atomically, replacing and recovering the
folder are the backends' shared :mod:`resnet_spec.training.checkpoint`.

Layout of ``RUN_DIR/checkpoint/``::

    training.pt   one dict that ``torch.load(..., weights_only=True)`` reads (tensors and plain
                  Python values only, nothing pickled that could run code): the model's state
                  dict (CPU, contiguous: independent of device and memory format), the
                  optimizer's state dict, the loss scaler's and every rank's torch random states
    state.json    written by the core's loop, last (its presence marks a complete checkpoint):
                  step, completed epochs, steps per epoch, the running epoch's metric sums, the
                  preprocessor, the architecture hash, the world size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TRAINING = "training.pt"


def load_model(arch: Any, folder: Path) -> Any:
    """The network of a checkpoint folder written by the trainer: built from ``arch``, with the
    checkpoint's model state (weights and norm statistics), in eval mode, on the CPU."""
    import torch

    from resnet_spec.backends import BackendError

    from .model import build_module

    file = Path(folder) / TRAINING
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise BackendError(f"{folder}: no {TRAINING} (not a PyTorch checkpoint; was the run trained with Keras?)") from exc
    except Exception as exc:  # torch raises many types for damaged files
        raise BackendError(f"{file}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
    model = build_module(arch)
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise BackendError(f"{file}: no model state inside (not written by resnet-spec's trainer)")
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        raise BackendError(f"{file}: the weights do not fit the run's architecture: {exc}") from exc
    return model.eval()
