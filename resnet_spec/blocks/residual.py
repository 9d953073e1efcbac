"""What every block kind shares, written once: the shortcut, the add and the activation after
it, and what is applied to the residual branch's output whatever kind built it: zero-init of the
norm that ends it, squeeze-and-excitation and stochastic depth.

A block is built in the order people write it: the kind's pre-activation (if any), then the
shortcut if its ``order`` is ``shortcut_first``, the branch, zero-init, squeeze-and-excitation,
drop path, the shortcut (``branch_first``, the default), the add, and the activation after it.
"""

from __future__ import annotations

from .. import graph as g
from .builder import BlockBuilder
from .kind import BlockKind
from .options import AnyShortcut, ProjectionShortcut


def build(kind: BlockKind, b: BlockBuilder, x: str) -> tuple[str, int]:
    """Build one block reading ``x``; returns its output node and channels."""
    out_channels = kind.out_channels(b.place, b.whole)
    shortcut = kind.shortcut(b)
    preactivated = kind.preactivation(b, x)
    first = isinstance(shortcut, ProjectionShortcut) and shortcut.order == "shortcut_first"
    short = make_shortcut(b, x, preactivated, out_channels, shortcut) if first else None
    h = kind.branch(b, x if preactivated is None else preactivated)
    if getattr(b.options, "zero_init_last_norm", False) and kind.ends_with_norm(b.spec, b.name):
        h = zero_init(b, h)
    h = squeeze_excite(b, h, out_channels)
    if b.drop_rate > 0:
        h = b.add(g.DropPath(f"{b.prefix}.drop_path", (h,), b.origin, rate=b.drop_rate))
    if short is None:
        short = make_shortcut(b, x, preactivated, out_channels, shortcut)
    out = b.add(g.Add(f"{b.prefix}.add", (h, short), (*b.origin, "shortcut")))
    if kind.activation_after_add(b.spec, b.name):
        out = b.act("out_act", out)
    return out, out_channels


def zero_init(b: BlockBuilder, branch: str) -> str:
    """Gamma of the norm that ends the branch starts at 0: the block starts as an identity."""
    node = b.net.graph[branch]
    assert isinstance(node, g.BatchNorm), f"{branch} does not end the branch with a norm"
    b.net.graph.replace(g.evolve(node, zero_init=True))
    return branch


def squeeze_excite(b: BlockBuilder, x: str, channels: int) -> str:
    se = b.options.squeeze_excite
    if se is None:
        return x
    net, origin, p = b.net, (*b.origin, "squeeze_excite"), f"{b.prefix}.se"
    pooled = net.add(g.GlobalAvgPool(f"{p}.pool", (x,), origin, keepdims=True))
    h = net.conv(f"{p}.reduce", pooled, origin, b.settings, filters=max(1, channels // se.reduction), kernel=1,
                 padding="valid", bias=True)  # fmt: skip
    h = net.act(f"{p}.act", h, origin, b.settings.activation)
    h = net.conv(f"{p}.expand", h, origin, b.settings, filters=channels, kernel=1, padding="valid", bias=True)
    h = net.act(f"{p}.gate", h, origin, "sigmoid")
    return net.add(g.Scale(f"{p}.scale", (x, h), origin))


def make_shortcut(b: BlockBuilder, x: str, preactivated: str | None, out_channels: int, sc: AnyShortcut) -> str:
    """What reaches the add besides the branch. Parameter-free shortcuts read the block input;
    a projection reads the pre-activated input when the block has one and ``source`` says so."""
    same_channels = b.in_channels == out_channels
    projects = isinstance(sc, ProjectionShortcut) and sc.every_block
    if sc.kind == "identity" or (same_channels and b.stride == 1 and not projects):
        return x
    net, origin = b.net, (*b.origin, "shortcut")
    if sc.kind == "zero_pad":
        extra = out_channels - b.in_channels
        before = extra // 2 if extra > 0 else extra  # negative: the shape pass reports RS204
        after = extra - before if extra > 0 else 0
        return net.add(g.ChannelPadShortcut(f"{b.prefix}.shortcut.pad", (x,), origin, stride=b.stride,
                                            pad_before=before, pad_after=after))  # fmt: skip
    assert isinstance(sc, ProjectionShortcut)
    if same_channels and b.stride != 1 and sc.same_channels == "subsample":
        return net.add(g.ChannelPadShortcut(f"{b.prefix}.shortcut.subsample", (x,), origin, stride=b.stride))
    source = x if preactivated is None or getattr(sc, "source", "preactivated") == "block_input" else preactivated
    stride = b.stride
    if sc.kind == "avg_pool_projection" and stride > 1:
        source = net.pool(g.AvgPool, f"{b.prefix}.shortcut.pool", source, origin, size=(stride, stride),
                          strides=(stride, stride), padding="same", count_padding=False)  # fmt: skip
        stride = 1
    out = net.conv(f"{b.prefix}.shortcut.conv", source, origin, b.settings, filters=out_channels, kernel=1,
                   stride=stride, padding="valid", bias=sc.bias)  # fmt: skip
    if sc.norm:
        out = net.norm(f"{b.prefix}.shortcut.norm", out, origin, b.settings)
    return out
