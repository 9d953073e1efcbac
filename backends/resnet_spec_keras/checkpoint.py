"""The Keras trainer's checkpoint files. Writing them atomically, replacing and recovering the
folder are the backends' shared :mod:`resnet_spec.training.checkpoint`.

Layout of ``RUN_DIR/checkpoint/``::

    model.weights.h5   every model weight (Keras ``save_weights``; float32 even in mixed precision)
    optimizer.npz      the optimizer's variables (iterations, learning rate, momentum / Adam
                       slots, loss scale), keyed by position, with their paths to check on load
    random.npz         the dropout / drop-path seed-generator states
    state.json         written by the core's loop, last (its presence marks a complete
                       checkpoint): step, completed epochs, the running epoch's metric sums, the
                       preprocessor, the architecture hash, the mixed precision, the world size
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHTS = "model.weights.h5"
OPTIMIZER = "optimizer.npz"
RANDOM = "random.npz"


def load_model(arch: Any, folder: Path) -> Any:
    """The model of a checkpoint folder written by the trainer: built from ``arch`` (float32),
    with the checkpoint's weights and norm statistics."""
    from resnet_spec.backends import BackendError

    from .model import build_model, deep_recursion

    file = Path(folder) / WEIGHTS
    if not file.is_file():
        raise BackendError(f"{folder}: no {WEIGHTS} (not a Keras checkpoint; was the run trained with PyTorch?)")
    model = build_model(arch)
    try:
        with deep_recursion(len(model.layers)):
            model.load_weights(file)
    except (OSError, ValueError) as exc:
        raise BackendError(f"{file}: the weights do not fit the run's architecture: {exc}") from exc
    return model
