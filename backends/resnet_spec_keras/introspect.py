"""Summary text, parameter counts and per-node outputs of a compiled Keras model."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np

from resnet_spec import graph as g
from resnet_spec.backends import BackendError

from .walk import last_readers, walk

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
    """Inference-mode output of every graph node (extra ``.pad`` layers are skipped: they are
    not nodes)."""
    return dict(iter_node_outputs(model, arch, images))


def iter_node_outputs(model: keras.Model, arch: Any, images: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """:func:`node_outputs` one node at a time, in graph order (the input first): each node's
    layer called on its inputs in inference mode (the probe's walk over the model's own
    layers, :func:`.probe.walk`), each value dropped after its last reader, so a deep
    network's outputs never all exist at once."""
    images = np.asarray(images, dtype=np.float32)
    expected = arch.graph.input.shape
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected):
        raise BackendError(f"images must be NHWC with (H, W, C) = {tuple(expected)}, got shape {images.shape}")
    layers = {layer.name: layer for layer in model.layers}
    missing = [node.name for node in arch.graph if not isinstance(node, g.Input) and node.name not in layers]
    if missing:
        raise BackendError(f"the model does not match the architecture: it has no layer '{missing[0]}'")
    nodes = [node for node in arch.graph if not isinstance(node, g.Input)]
    last = last_readers(nodes)
    values: dict[str, Any] = {arch.graph.input.name: keras.ops.convert_to_tensor(images)}
    yield arch.graph.input.name, images
    for node in nodes:
        walk(layers, [node], values, norms_training=False, dropout=False, release=False)
        output = np.array(keras.ops.convert_to_numpy(values[node.name]))
        for name in node.inputs:
            if last.get(name) == node.name:
                values.pop(name, None)
        yield node.name, output
