"""Backend protocol and registry (lazy built-ins plus entry points, as fsspec does).

A backend is any object registered in the ``resnet_spec.backends`` entry-point group that
implements :class:`Backend`. The built-in Keras and PyTorch backends are registered the same way
by this distribution's ``pyproject.toml``; the core never imports them directly. Loading an
entry point must not import the framework (backends import it inside their methods), so that
listing backends and reporting a missing framework stays cheap.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .pipeline import Architecture

GROUP = "resnet_spec.backends"


class BackendError(RuntimeError):
    """A backend cannot be used (unknown name, framework missing) or a saved model is refused."""


@runtime_checkable
class Backend(Protocol):
    name: ClassVar[str]
    #: importable module the backend needs (``torch``, ``tensorflow``); checked before use
    framework_module: ClassVar[str]
    #: what to tell users who lack it
    install_hint: ClassVar[str]
    #: file suffix of saved models (``.keras``, ``.pt``)
    suffix: ClassVar[str]

    def build(self, arch: Architecture, **options: Any) -> Any:
        """A native model whose layer / submodule names are the graph's node names."""

    def save(self, model: Any, arch: Architecture, spec_data: Mapping[str, Any], path: Path) -> None:
        """Write ``model`` with the spec and its hash to ``path``, atomically."""

    def load(self, path: Path) -> tuple[Any, dict[str, Any]]:
        """Return the native model and its metadata (``spec``, ``hash``); refuse a mismatched hash."""

    def framework_summary(self, model: Any) -> str:
        """The framework's own summary text."""

    def count_params(self, model: Any) -> tuple[int, int]:
        """(trainable, non-trainable) as the framework counts them, non-trainable including norm statistics."""

    def node_outputs(self, model: Any, arch: Architecture, images: np.ndarray) -> dict[str, np.ndarray]:
        """Eval-mode output of every graph node for a batch of NHWC images, as NHWC / (N, C) arrays."""


@dataclass
class ProbeResult:
    """What :meth:`WeightAccess.train_probe` returns; every weight dict is in the neutral layout
    of :mod:`resnet_spec.weights`, every output NHWC / (N, C) as in ``node_outputs``."""

    train_outputs: dict[str, np.ndarray]  # one train-mode forward: norms use batch statistics
    stats_after_forward: dict[str, dict[str, np.ndarray]]  # norm moving statistics after that forward
    gradients: dict[str, dict[str, np.ndarray]]  # d loss / d weight at the starting weights
    weights_after: dict[str, dict[str, np.ndarray]]  # after `steps` SGD steps
    losses: list[float]  # loss before each step


@runtime_checkable
class WeightAccess(Protocol):
    """Optional capability for weight transfer and parity checks (both built-ins have it).

    ``train_probe`` semantics, identical in every backend:

    * loss = mean softmax cross-entropy of the classifier's logits (``head.classifier``, before
      any softmax output layer) + sum over conv and dense kernels of ``kernel_l2 * sum(w ** 2)``;
      a backbone (``head.features``: no classifier, labels unused) has the sum over its feature
      outputs of ``mean(f ** 2)`` in place of the cross-entropy, and runs in one segment (a
      backend may refuse ``segments`` of more than one for it);
    * dropout and drop-path act as identity (random masks cannot be shared between frameworks);
      batch norms are in training mode (batch statistics, running statistics updated);
    * SGD at a constant learning rate: ``b = momentum * b + g + weight_decay * w`` (weight decay
      on kernels only), ``w -= learning_rate * b``; step k uses ``batches[k % len(batches)]``.
    """

    def get_weights(self, model: Any, arch: Architecture) -> dict[str, dict[str, np.ndarray]]:
        """All weights of ``model`` in the neutral layout."""

    def set_weights(self, model: Any, arch: Architecture, weights: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        """Load neutral-layout weights (every weight of the model must be given)."""

    def train_probe(
        self, model: Any, arch: Architecture, batches: list[tuple[np.ndarray, np.ndarray]], *,
        steps: int, learning_rate: float, momentum: float, weight_decay: float,
    ) -> ProbeResult:  # fmt: skip
        """Run the probe described in the class docstring on ``model`` (it is modified)."""


@dataclass(frozen=True)
class BackendInfo:
    name: str
    value: str  # "module:attribute"
    distribution: str | None


def available() -> dict[str, BackendInfo]:
    """Registered backends, without importing any of them."""
    found: dict[str, BackendInfo] = {}
    for ep in entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist is not None else None
        found.setdefault(ep.name, BackendInfo(ep.name, ep.value, dist))
    return found


def get_backend(name: str) -> Backend:
    eps: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        eps.setdefault(ep.name, ep)
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise BackendError(f"unknown backend '{name}'; installed backends: {known}")
    try:
        backend_class = eps[name].load()
    except ImportError as exc:
        raise BackendError(f"backend '{name}' could not be imported: {exc}") from exc
    module = getattr(backend_class, "framework_module", None)
    if module and not _installed(module):
        hint = getattr(backend_class, "install_hint", f"pip install {module}")
        raise BackendError(f"backend '{name}' needs {module}, which is not installed: {hint}")
    backend = backend_class() if isinstance(backend_class, type) else backend_class
    if not isinstance(backend, Backend):
        raise BackendError(f"backend '{name}' ({eps[name].value}) does not implement the resnet_spec Backend protocol")
    return backend


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or blocked install counts as absent
        return False


def backend_for_file(path: Path) -> str:
    """Guess the backend of a saved model from its suffix."""
    for name in available():
        try:
            backend = get_backend(name)
        except BackendError:
            continue
        if path.suffix == backend.suffix:
            return name
    raise BackendError(f"no installed backend saves '{path.suffix}' files; pass --backend")
