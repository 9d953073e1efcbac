"""Summary text, parameter counts and per-node outputs of a compiled Keras model."""

from __future__ import annotations

import math
import os
from typing import Any

import keras
import numpy as np

from resnet_spec import graph as g
from resnet_spec.backends import BackendError

from .model import deep_recursion

SUMMARY_WIDTH = 150


def framework_summary(model: keras.Model) -> str:
    lines: list[str] = []
    # Keras sizes the table to the terminal (about 80 columns when captured), which cuts
    # hierarchical names like "stage3.block0.shortcut.conv" and the layer types. Its rich
    # console takes its width from COLUMNS, so widen that for this call only.
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(SUMMARY_WIDTH)
    try:
        model.summary(
            line_length=SUMMARY_WIDTH,
            positions=[0.34, 0.56, 0.66, 1.0],
            print_fn=lambda text, line_break=True: lines.append(text),
        )
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
    return "\n".join(lines)


def count_params(model: keras.Model) -> tuple[int, int]:
    """(trainable, non-trainable) weights, as ``model.count_params()`` splits them: batch-norm
    moving mean and variance are non-trainable weights in Keras."""
    return (
        sum(math.prod(w.shape) for w in model.trainable_weights),
        sum(math.prod(w.shape) for w in model.non_trainable_weights),
    )


def node_outputs(model: keras.Model, arch: Any, images: np.ndarray) -> dict[str, np.ndarray]:
    """Inference-mode output of every graph node, from one auxiliary model that exposes the
    output of each node's layer (extra ``.pad`` layers are skipped: they are not nodes)."""
    images = np.asarray(images, dtype=np.float32)
    expected = arch.graph.input.shape
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected):
        raise BackendError(f"images must be NHWC with (H, W, C) = {tuple(expected)}, got shape {images.shape}")
    names = [node.name for node in arch.graph if not isinstance(node, g.Input)]
    try:
        outputs = [model.get_layer(name).output for name in names]
    except ValueError as exc:
        raise BackendError(f"the model does not match the architecture: {exc}") from exc
    with deep_recursion(len(model.layers)):
        probe = keras.Model(model.input, outputs)
        values = probe(images, training=False)
    result = {arch.graph.input.name: images}
    result.update({name: keras.ops.convert_to_numpy(v) for name, v in zip(names, values)})
    return result
