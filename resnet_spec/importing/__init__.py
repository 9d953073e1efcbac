"""Import weights from elsewhere into a spec's network, matched by structure and shapes.

>>> from resnet_spec import build_architecture
>>> from resnet_spec.importing import import_weights
>>> arch = build_architecture("examples/resnet50.yaml")
>>> result = import_weights(arch, "resnet50-11ad3fa6.pth")      # torchvision's state dict
>>> result.matched["stage2.block0.shortcut.conv"]
{'kernel': 'layer2.0.downsample.0.weight'}

Sources: PyTorch state dicts and checkpoints (``.pth``, ``.pt``, ``.bin``), ``.safetensors``,
Keras weights (``.h5``, ``.weights.h5``, ``.keras``), resnet-spec model files and run
directories (their checkpoint, :mod:`.run_dirs`), and in-memory
``torch.nn.Module`` s and ``keras.Model`` s. Importing this package imports no framework; each
reader imports what it needs (torch, safetensors, h5py, keras) when it runs. See
docs/importing.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import Classifier, import_weights, read_source
    from .result import ImportResult
    from .safety import ReadLimits, WeightsImportError, limits_for

__all__ = [
    "Classifier",
    "ImportResult",
    "ReadLimits",
    "WeightsImportError",
    "import_weights",
    "limits_for",
    "read_source",
]

_HOMES = {"Classifier": "api", "import_weights": "api", "read_source": "api", "ImportResult": "result",
          "ReadLimits": "safety", "WeightsImportError": "safety", "limits_for": "safety"}  # fmt: skip


def __getattr__(name: str) -> Any:
    """Lazy: the CLI imports :mod:`.command` at start-up without the readers and matchers."""
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
