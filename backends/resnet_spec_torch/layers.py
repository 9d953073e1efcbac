"""PyTorch modules for the graph's node types, with the exact semantics the graph documents.

Feature maps are NCHW here. Graph padding is ``(top, bottom, left, right)``; ``F.pad`` wants
``(left, right, top, bottom)``, hence :func:`pad_arg`. Where PyTorch's native padding can express
a node exactly (symmetric padding) the native module is used, so the common case keeps native
speed and a familiar ``repr``; only asymmetric cases (TensorFlow "same" with stride 2) pad first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from resnet_spec import graph as g

Shape = tuple[int, ...]


def pad_arg(padding: g.Padding4) -> tuple[int, int, int, int]:
    top, bottom, left, right = padding
    return (left, right, top, bottom)


def symmetric(padding: g.Padding4) -> bool:
    return padding[0] == padding[1] and padding[2] == padding[3]


def native_pool_padding(padding: g.Padding4, kernel: g.Pair) -> bool:
    # PyTorch pooling refuses padding above half the window; such nodes pad explicitly.
    return symmetric(padding) and 2 * padding[0] <= kernel[0] and 2 * padding[2] <= kernel[1]


class DeferredInit:
    """Mixin for conv / dense modules: construction skips PyTorch's default initialization and
    leaves the weights uninitialized, since the node's initializer (``init.initialize``, which
    the model always runs next) overwrites them at once; drawing the default first would cost
    as much as the initializer itself. After construction ``reset_parameters`` works as usual."""

    _constructed = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._constructed = True

    def reset_parameters(self) -> None:
        if self._constructed:
            super().reset_parameters()  # type: ignore[misc]


class Conv2d(DeferredInit, nn.Conv2d):
    pass


class Linear(DeferredInit, nn.Linear):
    pass


class PaddedConv2d(Conv2d):
    """A convolution with per-side padding: pad with zeros, then a valid convolution."""

    def __init__(self, cin: int, cout: int, kernel: g.Pair, *, pad: g.Padding4, **kwargs: Any) -> None:
        super().__init__(cin, cout, kernel, padding=0, **kwargs)
        self.pad = pad_arg(pad)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self.pad))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad(l,r,t,b)={self.pad}"


class PaddedMaxPool2d(nn.MaxPool2d):
    """Max pooling whose padded cells hold -inf, so they never win (never zero-padding)."""

    def __init__(self, kernel: g.Pair, stride: g.Pair, pad: g.Padding4) -> None:
        super().__init__(kernel, stride)
        self.pad = pad_arg(pad)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self.pad, value=float("-inf")))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pad(l,r,t,b)={self.pad} with -inf"


class PaddedAvgPool2d(nn.Module):
    """Average pooling with per-side zero padding.

    ``count_padding`` true divides by the whole window. False divides each window's sum by its
    number of real cells (TensorFlow "same"). Those counts depend only on the architecture's
    input size, so they are computed once and kept as a non-persistent buffer (not saved, not
    counted as a parameter); the window sums come exact from ``divisor_override=1``.
    """

    real_cells: Tensor | None

    def __init__(self, kernel: g.Pair, stride: g.Pair, pad: g.Padding4, count_padding: bool, in_hw: g.Pair) -> None:
        super().__init__()
        self.kernel, self.stride, self.pad, self.count_padding = kernel, stride, pad_arg(pad), count_padding
        cells = None
        if not count_padding:
            cells = F.avg_pool2d(F.pad(torch.ones(1, 1, *in_hw), self.pad), kernel, stride, divisor_override=1)
        self.register_buffer("real_cells", cells, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(x, self.pad)
        if self.real_cells is None:
            return F.avg_pool2d(x, self.kernel, self.stride)
        return F.avg_pool2d(x, self.kernel, self.stride, divisor_override=1) / self.real_cells

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel}, stride={self.stride}, pad(l,r,t,b)={self.pad}, count_padding={self.count_padding}"


class BatchNorm(nn.BatchNorm2d):
    """Batch norm over (N, C, H, W) maps or (N, C) vectors with the graph's options.

    ``center`` / ``scale`` switch beta / gamma independently (PyTorch's ``affine`` switches both):
    a parameter that is not learned is simply absent (``None``), as in Keras.

    ``biased_running_var``: PyTorch's running variance accumulates the unbiased batch variance
    (times n / (n - 1)). Rather than recompute statistics, the native update is corrected after
    the fact: with m = momentum and n = N*H*W, native = (1 - m) old + m v n/(n - 1) and the wanted
    value is (1 - m) old + m v, i.e. native - (native - (1 - m) old) / n.
    """

    def __init__(self, channels: int, *, eps: float, momentum: float, center: bool, scale: bool,
                 biased_running_var: bool) -> None:  # fmt: skip
        super().__init__(channels, eps=eps, momentum=momentum, affine=center or scale)
        if not scale:
            self.register_parameter("weight", None)
        if not center:
            self.register_parameter("bias", None)
        self.biased_running_var = biased_running_var

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 4):
            raise ValueError(f"expected a 2D or 4D input, got {input.dim()}D")

    def forward(self, x: Tensor) -> Tensor:
        mean, var, counter = self.running_mean, self.running_var, self.num_batches_tracked
        if not (self.biased_running_var and self.training) or mean is None or var is None or counter is None:
            return super().forward(x)
        self._check_input_dim(x)
        counter.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(counter)  # None: PyTorch's cumulative mean
        # The kernel updates a copy: autograd keeps the running variance it was given for the
        # backward pass, so the buffer itself must stay free to be corrected afterwards.
        native = var.clone()
        y = F.batch_norm(x, mean, native, self.weight, self.bias, True, m, self.eps)
        n = x.numel() // x.size(1)
        with torch.no_grad():
            var.copy_(native - (native - (1.0 - m) * var) / n)
        return y

    def extra_repr(self) -> str:
        learned = [p for p, on in (("gamma", self.weight is not None), ("beta", self.bias is not None)) if on]
        kind = "biased" if self.biased_running_var else "unbiased"
        return (
            f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum:.6g}, learns={learned}, running_var={kind}"
        )


class DropPath(nn.Module):
    """Stochastic depth: drop a sample's whole branch with probability ``rate`` in training, scale
    the kept ones by 1 / (1 - rate); identity in eval mode."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Add(nn.Module):
    """Residual merge. ``inplace`` writes into the branch tensor (torchvision's
    ``out += identity``); the model only asks for it where nothing else reads that tensor."""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, branch: Tensor, shortcut: Tensor) -> Tensor:
        return branch.add_(shortcut) if self.inplace else branch + shortcut

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Scale(nn.Module):
    """Channel-wise multiply: (N, C, H, W) times (N, C, 1, 1) gates."""

    def forward(self, x: Tensor, gates: Tensor) -> Tensor:
        return x * gates


class GlobalAvgPool(nn.Module):
    def __init__(self, keepdims: bool) -> None:
        super().__init__()
        self.keepdims = keepdims

    def forward(self, x: Tensor) -> Tensor:
        return x.mean((2, 3), keepdim=self.keepdims)

    def extra_repr(self) -> str:
        return f"keepdims={self.keepdims}"


class ChannelPadShortcut(nn.Module):
    """Option A shortcut: every ``stride``-th row and column, then zero channels before/after."""

    def __init__(self, stride: int, pad_before: int, pad_after: int) -> None:
        super().__init__()
        self.stride, self.pad_before, self.pad_after = stride, pad_before, pad_after

    def forward(self, x: Tensor) -> Tensor:
        s = self.stride
        return F.pad(x[:, :, ::s, ::s], (0, 0, 0, 0, self.pad_before, self.pad_after))

    def extra_repr(self) -> str:
        return f"stride={self.stride}, channels_before={self.pad_before}, channels_after={self.pad_after}"


ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "silu": nn.SiLU,
    "gelu": nn.GELU,  # approximate='none': the exact erf form
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "softmax": lambda: nn.Softmax(dim=1),  # the class / channel axis
}
