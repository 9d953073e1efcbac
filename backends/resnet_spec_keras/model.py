"""Compile a resolved :class:`~resnet_spec.graph.Graph` into a Keras functional model.

Every graph node becomes one Keras layer named exactly like the node (Keras 3 accepts dots in
layer names, and they survive saving), so ``model.get_layer("stage2.block0.conv1")`` works and
weights can be matched by name across frameworks. The one exception: a convolution whose
explicit padding is neither zero nor what TensorFlow's "same" gives for its input, and an
average pool that counts padded cells (``count_padding``) with any non-zero padding, get an
extra ``ZeroPadding2D`` named ``f"{node.name}.pad"`` in front of a "valid" layer; the node's own
name stays on the layer that computes its output (the expander never names a node like that;
Keras would refuse the duplicate name if it did). Max pools, and average pools over real cells
only, with such paddings use the registered layers in :mod:`.layers` instead, because zero
padding would be wrong for them (-inf cells for max, excluded cells for average).

No ``Lambda`` layers, so saved models load with ``safe_mode=True``.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import keras

from resnet_spec import graph as g
from resnet_spec.backends import BackendError
from resnet_spec.shapes import same_padding

from . import engine
from . import layers as custom
from .init import bias_initializer, kernel_initializer

PAD_SUFFIX = ".pad"
# Keras' recursive graph walk (keras.src.ops.function._build_map_helper) takes one frame per
# layer, measured on ResNet-1202 (4,208 layers); twice that leaves room for the rest of the stack.
FRAMES_PER_LAYER = 2


@contextlib.contextmanager
def deep_recursion(layers: int) -> Iterator[None]:
    """Raise Python's recursion limit for the duration of a Keras graph operation.

    Keras 3 walks a functional model's graph recursively, one level per layer, whenever it
    builds a functional model (``keras.Model(...)`` here, and again inside ``load_model`` and
    for the probe model of ``node_outputs``), so a network of a few thousand layers
    (ResNet-1202) fails with RecursionError under the default limit of 1000. The old limit
    is restored afterwards.
    """
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 1000 + FRAMES_PER_LAYER * layers))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


DTYPES = ("float32", "float64")


def build_model(arch: Any, *, dtype: str = "float32", **options: Any) -> keras.Model:
    """``dtype`` (the only option): ``float64`` builds every layer under Keras' float64 dtype
    policy (float64 variables and computation), for parity checks whose tolerances float32
    cannot meet on deep, ill-conditioned networks."""
    if options:
        raise BackendError(
            f"the keras backend takes no build options but dtype (float32, float64); got {', '.join(sorted(options))}"
        )
    if dtype not in DTYPES:
        raise BackendError(f"dtype must be float32 or float64 (mixed precision is a training setting), not {dtype!r}")
    if dtype == "float64":
        engine.enable_float64()
    graph, info = arch.graph, arch.analysis.info
    position = {node.name: index for index, node in enumerate(graph)}
    tensors: dict[str, Any] = {}
    # float32 keeps the global policy, which the trainer sets to a mixed one while it builds.
    precision = _dtype_policy(dtype) if dtype != "float32" else contextlib.nullcontext()
    with deep_recursion(len(graph)), precision:
        for node in graph:
            if isinstance(node, g.Input):
                tensors[node.name] = keras.Input(shape=node.shape, name=node.name)
                continue
            names = sorted(node.inputs, key=position.__getitem__) if isinstance(node, g.Add) else node.inputs
            inputs = [tensors[name] for name in names]
            tensors[node.name] = _BUILDERS[type(node)](node, inputs, info[node.inputs[0]].output_shape)
        # A backbone's model returns a dict, output name -> feature map (a multi-output model).
        outputs = {name: tensors[node] for name, node in graph.outputs.items()} if graph.outputs else tensors[graph.output]
        return keras.Model(tensors[graph.input.name], outputs, name=model_name(arch.name))


@contextlib.contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    old = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(old)


def model_name(name: str) -> str:
    # Keras refuses "/" in names; keep the spec's name readable otherwise.
    return re.sub(r"[^A-Za-z0-9_.\-]", "_", name)


# ---------------------------------------------------------------------- padding decisions


def _padding_mode(node: Any, shape: tuple[int, ...], window: g.Pair) -> str | None:
    """'valid' for no padding, 'same' when the explicit padding is TF's "same", else None."""
    if node.padding == (0, 0, 0, 0):
        return "valid"
    h, w, _ = shape
    same = same_padding(h, window[0], node.strides[0]) + same_padding(w, window[1], node.strides[1])
    return "same" if tuple(node.padding) == same else None


def _zero_pad(name: str, padding: g.Padding4) -> keras.layers.ZeroPadding2D:
    top, bottom, left, right = padding
    return keras.layers.ZeroPadding2D(((top, bottom), (left, right)), name=name)


# ---------------------------------------------------------------------- one builder per node type

Builder = Callable[[Any, list[Any], tuple[int, ...]], Any]


def _conv(node: g.Conv2D, inputs: list[Any], shape: tuple[int, ...]) -> Any:
    x = inputs[0]
    mode = _padding_mode(node, shape, node.kernel_size)
    if mode is None:
        x = _zero_pad(node.name + PAD_SUFFIX, node.padding)(x)
        mode = "valid"
    fan_in = node.kernel_size[0] * node.kernel_size[1] * shape[-1] // node.groups
    layer = keras.layers.Conv2D(
        node.filters, node.kernel_size, strides=node.strides, padding=mode, groups=node.groups,
        use_bias=node.use_bias, kernel_initializer=kernel_initializer(node.initializer),
        bias_initializer=bias_initializer(node.initializer, fan_in), kernel_regularizer=_l2(node.kernel_l2),
        name=node.name,
    )  # fmt: skip
    return layer(x)


def _dense(node: g.Dense, inputs: list[Any], shape: tuple[int, ...]) -> Any:
    layer = keras.layers.Dense(
        node.units, use_bias=node.use_bias, kernel_initializer=kernel_initializer(node.initializer),
        bias_initializer=bias_initializer(node.initializer, shape[0]), kernel_regularizer=_l2(node.kernel_l2),
        name=node.name,
    )  # fmt: skip
    return layer(inputs[0])


def _l2(value: float) -> keras.regularizers.Regularizer | None:
    return keras.regularizers.L2(value) if value > 0 else None


def _batch_norm(node: g.BatchNorm, inputs: list[Any], shape: tuple[int, ...]) -> Any:
    cls = custom.UnbiasedBatchNormalization if node.running_variance == "unbiased" else keras.layers.BatchNormalization
    layer = cls(
        axis=-1, momentum=node.decay, epsilon=node.epsilon, center=node.center, scale=node.scale,
        gamma_initializer="zeros" if node.zero_init else "ones", name=node.name,
    )  # fmt: skip
    return layer(inputs[0])


def _max_pool(node: g.MaxPool, inputs: list[Any], shape: tuple[int, ...]) -> Any:
    mode = _padding_mode(node, shape, node.pool_size)
    if mode is None:  # TF "same" max pool ignores padded cells; other paddings need -inf cells
        return custom.PaddedMaxPool2D(node.pool_size, node.strides, node.padding, name=node.name)(inputs[0])
    return keras.layers.MaxPooling2D(node.pool_size, node.strides, padding=mode, name=node.name)(inputs[0])


def _avg_pool(node: g.AvgPool, inputs: list[Any], shape: tuple[int, ...]) -> Any:
    x = inputs[0]
    mode = _padding_mode(node, shape, node.pool_size)
    if node.count_padding and mode != "valid":
        # Dividing by the whole window is exactly a zero pad followed by a valid average.
        x, mode = _zero_pad(node.name + PAD_SUFFIX, node.padding)(x), "valid"
    elif mode is None:  # real-cell average with a padding TF "same" does not produce
        return custom.PaddedAvgPool2D(node.pool_size, node.strides, node.padding, name=node.name)(x)
    return keras.layers.AveragePooling2D(node.pool_size, node.strides, padding=mode, name=node.name)(x)


def _simple(make: Callable[[Any], keras.layers.Layer]) -> Builder:
    return lambda node, inputs, shape: make(node)(inputs[0])


def _add(node: g.Add, inputs: list[Any], shape: tuple[int, ...]) -> Any:
    # The operands come in graph order (build_model sorts them): Keras orders model.layers by
    # depth, ties by a depth-first walk that follows this list, so get_weights() lists equally
    # deep layers of the branch and the shortcut in the order the graph writes them, as the
    # hand-written model does (`Add()([x, shortcut])`, or keras.applications'
    # `Add()([shortcut, x])` for `order: shortcut_first`). Float addition is commutative: the
    # output is the same either way.
    return keras.layers.Add(name=node.name)(inputs)


_BUILDERS: dict[type[g.Node], Builder] = {
    g.Conv2D: _conv,
    g.Dense: _dense,
    g.BatchNorm: _batch_norm,
    g.MaxPool: _max_pool,
    g.AvgPool: _avg_pool,
    # Keras 3's "gelu" is the exact erf form (approximate=False is its default).
    g.Activation: _simple(lambda n: keras.layers.Activation(n.function, name=n.name)),
    g.ZeroPad: _simple(lambda n: _zero_pad(n.name, n.padding)),
    g.GlobalAvgPool: _simple(lambda n: keras.layers.GlobalAveragePooling2D(keepdims=n.keepdims, name=n.name)),
    g.Flatten: _simple(lambda n: keras.layers.Flatten(name=n.name)),
    g.Dropout: _simple(lambda n: keras.layers.Dropout(n.rate, name=n.name)),
    g.DropPath: _simple(lambda n: custom.DropPath(n.rate, name=n.name)),
    g.ChannelPadShortcut: _simple(
        lambda n: custom.ChannelPadShortcut(n.stride, n.pad_before, n.pad_after, name=n.name)
    ),
    g.Add: _add,
    g.Scale: lambda node, inputs, shape: keras.layers.Multiply(name=node.name)(inputs),  # (N,H,W,C) * (N,1,1,C)
}
