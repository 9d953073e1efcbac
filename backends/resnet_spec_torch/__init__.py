"""The PyTorch backend of resnet-spec.

Importing this package does not import torch (the backend registry loads it just to read the
class attributes); every method imports its submodule, and with it torch, on first use.

>>> from resnet_spec import build_architecture
>>> from resnet_spec.backends import get_backend
>>> arch = build_architecture("examples/resnet20_cifar10.yaml")
>>> model = get_backend("torch").build(arch)   # an nn.Module taking (N, C, H, W) tensors
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from resnet_spec.pipeline import Architecture

from .capabilities import TorchCapabilities

__all__ = ["TorchBackend"]

_BUILD_OPTIONS = ("seed", "device", "dtype", "channels_last")


class TorchBackend(TorchCapabilities):
    name: ClassVar[str] = "torch"
    framework_module: ClassVar[str] = "torch"
    install_hint: ClassVar[str] = "pip install 'resnet-spec[torch]'"
    suffix: ClassVar[str] = ".pt"

    def build(self, arch: Architecture, **options: Any) -> nn.Module:
        """Compile ``arch`` to a ``torch.nn.Module`` (input NCHW; see ``resnet_spec_torch.model``).

        Options: ``seed`` (initialize under ``torch.manual_seed(seed)`` without disturbing the
        global generator), ``device``, ``dtype``, ``channels_last`` (bool). Without a seed the
        global generator is used, so ``torch.manual_seed`` before ``build`` seeds it too."""
        import torch

        from resnet_spec.backends import BackendError

        from .model import build_module

        unknown = sorted(set(options) - set(_BUILD_OPTIONS))
        if unknown:
            raise BackendError(
                f"unknown torch build option(s) {', '.join(unknown)}; known: {', '.join(_BUILD_OPTIONS)}"
            )
        seed = options.get("seed")
        if seed is None:
            model = build_module(arch)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = build_module(arch)
        dtype = options.get("dtype")
        if isinstance(dtype, str):  # "float64", as every backend accepts it
            dtype = getattr(torch, dtype)
        if options.get("device") is not None or dtype is not None:
            model = model.to(device=options.get("device"), dtype=dtype)
        if options.get("channels_last"):
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        return model

    def save(self, model: Any, arch: Architecture, spec_data: Mapping[str, Any], path: Path) -> None:
        from .io import save

        save(model, arch, spec_data, Path(path))

    def load(self, path: Path) -> tuple[Any, dict[str, Any]]:
        from .io import load

        return load(Path(path))

    def framework_summary(self, model: Any) -> str:
        from .introspect import summary

        return summary(model)

    def count_params(self, model: Any) -> tuple[int, int]:
        from .introspect import count_params

        return count_params(model)

    def node_outputs(self, model: Any, arch: Architecture, images: np.ndarray) -> dict[str, np.ndarray]:
        from .introspect import node_outputs

        return node_outputs(model, arch, images)

    def iter_node_outputs(self, model: Any, arch: Architecture, images: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
        """``node_outputs`` one node at a time, in graph order, without holding them all."""
        from .introspect import iter_node_outputs

        return iter_node_outputs(model, arch, images)
