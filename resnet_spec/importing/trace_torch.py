"""An in-memory ``torch.nn.Module`` as a graph source: one traced forward pass.

The module runs once, in eval mode and without gradients, on a random batch of the spec's input
size, under a :class:`torch.overrides.TorchFunctionMode` that sees every torch function and
tensor method called (``F.conv2d``, ``F.batch_norm``, ``out += identity``, ``x * gate``,
``torch.flatten``...). Tensors are followed by identity, so the dataflow comes from what ran,
whatever the module's attribute names or registration order; parameters and buffers are
recognized by identity too and named by ``named_parameters`` / ``named_buffers``. Unlike
``torch.fx``, nothing has to be symbolically traceable.

A weighted layer is a call of ``conv2d`` (with its stride and groups), ``batch_norm`` (with
running statistics) or ``linear``. A parameter used by any other function (weight
standardization, layer norm, PReLU...) or used twice is an error naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .read_torch import tensor_array
from .safety import WeightsImportError, one_line
from .source import GraphOp, GraphSource, SourceTensor, Unit, split_name

_ADD = {"add", "add_", "__add__", "__iadd__", "__radd__"}
_MUL = {"mul", "mul_", "__mul__", "__imul__", "__rmul__"}


def trace_module(module: Any, input_shape: tuple[int, int, int], description: str) -> GraphSource:
    import torch
    from torch.overrides import TorchFunctionMode

    first = next(module.parameters(), None)
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    device = first.device if first is not None else "cpu"
    h, w, c = input_shape
    images = torch.randn(1, c, h, w, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    recorder = _Recorder(module, images)

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            recorder.record(func, args, kwargs, out)
            return out

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), Mode():
            out = module(images)
    except WeightsImportError:
        raise
    except Exception as exc:  # the source model's own failure on this input
        raise WeightsImportError(
            f"running the source model on a {tuple(images.shape)} input failed ({type(exc).__name__}: {one_line(exc)})"
        ) from exc
    finally:
        module.train(was_training)
    if not isinstance(out, torch.Tensor) or id(out) not in recorder.producer:
        raise WeightsImportError(
            f"the source model returned a {type(out).__name__}, not one tensor computed from its input"
        )
    unused = [name for name, p in module.named_parameters() if id(p) not in recorder.used]
    return GraphSource(description, recorder.ops, recorder.producer[id(out)], recorder.units, unused)


class _Recorder:
    def __init__(self, module: Any, images: Any):
        self.names = {id(p): n for n, p in module.named_parameters()}
        self.names.update({id(b): n for n, b in module.named_buffers()})
        self.ops: list[GraphOp] = [GraphOp("input", (), "input")]
        self.producer: dict[int, int] = {id(images): 0}
        self.keep: list[Any] = [images]  # ids stay unique while the tensors live
        self.units: list[Unit] = []
        self.used: set[int] = set()

    def record(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        outputs = list(_tensors(out))
        if not outputs:
            return  # .dim(), .size(), .shape
        given = list(_tensors((args, kwargs)))
        weights = [t for t in given if id(t) in self.names]
        data = [self.producer[id(t)] for t in given if id(t) in self.producer and id(t) not in self.names]
        name = getattr(func, "__name__", str(func))
        if weights:
            op = self._weighted(name, args, kwargs, weights, data)
        elif not data:
            return  # a constant (torch.zeros...): not part of the dataflow
        elif name in _ADD and len(data) == 2:
            op = GraphOp("add", tuple(data), name)
        elif name in _MUL and len(data) == 2:
            op = GraphOp("mul", tuple(data), name)
        else:
            op = GraphOp("other", tuple(data), name)
        for tensor in outputs:  # an in-place op's output is its input: it now comes from this op
            self.producer[id(tensor)] = len(self.ops)
            self.keep.append(tensor)
        self.ops.append(op)

    def _weighted(self, name: str, args: Any, kwargs: Any, weights: list[Any], data: list[int]) -> GraphOp:
        bound = _bind(name, args, kwargs)
        if bound is None or len(data) != 1:
            raise WeightsImportError(
                f"{self.names[id(weights[0])]} is used by {name}, which a spec has no layer for "
                "(a spec holds convolutions, dense layers and batch norms with running statistics)"
            )
        for tensor in weights:
            if id(tensor) in self.used:
                raise WeightsImportError(
                    f"{self.names[id(tensor)]} is used twice (shared weights); each spec layer has its own"
                )
            self.used.add(id(tensor))
        kind, tensors, extra = bound
        if kind == "norm" and ("moving_mean" not in tensors or "moving_variance" not in tensors):
            raise WeightsImportError(f"a batch norm without running statistics reads {self.names[id(weights[0])]}")
        named = {key: self._tensor(t) for key, t in tensors.items() if t is not None}
        label = next(iter(named.values())).name.rpartition(".")[0]
        unit = Unit(kind, label, split_name(label, "."), named, "torch", **extra)
        self.units.append(unit)
        return GraphOp(kind, (data[0],), label, unit=unit)

    def _tensor(self, tensor: Any) -> SourceTensor:
        name = self.names.get(id(tensor))
        if name is None:
            raise WeightsImportError("a weight of the source model is not one of its parameters or buffers")
        array = tensor_array(name, tensor)
        assert array is not None  # bookkeeping counters are never an op's weight
        return SourceTensor(name, array.copy())


def _bind(name: str, args: Any, kwargs: Any) -> tuple[Any, dict[str, Any], dict[str, Any]] | None:
    """(kind, {neutral key: tensor}, unit extras) for the functions that make a weighted layer."""
    a = list(args) + [None] * 9
    if name == "conv2d":
        weight, bias = kwargs.get("weight", a[1]), kwargs.get("bias", a[2])
        stride, dilation, groups = (
            kwargs.get("stride", a[3] or 1),
            kwargs.get("dilation", a[5] or 1),
            kwargs.get("groups", a[6] or 1),
        )
        if _pair(dilation) != (1, 1):
            raise WeightsImportError(
                f"a dilated convolution (dilation {_pair(dilation)}); a spec's convolutions are not dilated"
            )
        return "conv", {"kernel": weight, "bias": bias}, {"strides": _pair(stride), "groups": int(groups)}
    if name == "batch_norm":  # F.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
        mean, var = kwargs.get("running_mean", a[1]), kwargs.get("running_var", a[2])
        gamma, beta = kwargs.get("weight", a[3]), kwargs.get("bias", a[4])
        eps = kwargs.get("eps", a[7] if a[7] is not None else 1e-5)
        tensors = {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": var}
        return "norm", {k: v for k, v in tensors.items() if v is not None}, {"epsilon": float(eps)}
    if name == "linear":
        return "dense", {"kernel": kwargs.get("weight", a[1]), "bias": kwargs.get("bias", a[2])}, {}
    return None


def _pair(value: Any) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    values = tuple(int(v) for v in value)
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _tensors(value: Any) -> Iterator[Any]:
    import torch

    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            yield item
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
