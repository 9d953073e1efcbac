"""resnet-spec: declarative architecture specs for residual networks.

The validator path (this package) imports no deep-learning framework; backends are loaded
lazily through the ``resnet_spec.backends`` entry-point group.

>>> import resnet_spec
>>> result = resnet_spec.validate("examples/resnet20_cifar10.yaml")
>>> result.ok, result.architecture.params_trainable
"""

from __future__ import annotations

from typing import Any

from .diagnostics import CODES, Diagnostic, Report, Severity, SpecError
from .graph import Graph
from .pipeline import Architecture, Result, build_architecture, load, validate
from .spec import ResNetSpec

__version__ = "0.1.0"

__all__ = [
    "CODES",
    "Architecture",
    "Diagnostic",
    "Graph",
    "Report",
    "ResNetSpec",
    "Result",
    "Severity",
    "SpecError",
    "__version__",
    "build",
    "build_architecture",
    "load",
    "validate",
]  # fmt: skip


def build(source: Any, backend: str = "torch", **options: Any) -> Any:
    """Validate ``source`` (path, text, mapping or :class:`Architecture`) and compile it to a
    native model with the named backend. Raises :class:`SpecError` for spec problems."""
    from .backends import get_backend

    arch = source if isinstance(source, Architecture) else build_architecture(source)
    return get_backend(backend).build(arch, **options)


