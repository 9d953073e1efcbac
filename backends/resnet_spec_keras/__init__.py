"""The Keras 3 backend of resnet-spec, on Keras' TensorFlow or JAX engine (``KERAS_BACKEND``;
:mod:`.engine` says what runs on which).

Importing this package does not import TensorFlow or Keras: the registry loads
:class:`KerasBackend` to list backends and check the framework is installed, and every method
imports its submodule (and so Keras) on first use.

To load a saved model with plain ``keras.models.load_model`` in a new process, import
``resnet_spec_keras.layers`` first: it registers the custom layers under the ``resnet_spec``
package (Keras imports saved modules by itself only for its own packages), or pass
``custom_objects=resnet_spec_keras.layers.CUSTOM_OBJECTS``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from . import engine

if TYPE_CHECKING:
    import numpy as np

    from resnet_spec.backends import ProbeResult
    from resnet_spec.pipeline import Architecture
    from resnet_spec.spec import Execution
    from resnet_spec.training.job import Predictor, TrainingJob, TrainingSession
    from resnet_spec.training.preprocess import Preprocessor

__all__ = ["KerasBackend"]


class KerasBackend:
    name: ClassVar[str] = "keras"
    # The engine's module: Keras picks its engine when first imported, from KERAS_BACKEND.
    framework_module: ClassVar[str] = engine.framework_module()
    install_hint: ClassVar[str] = (
        "pip install 'resnet-spec[jax]'" if framework_module == "jax" else "pip install 'resnet-spec[keras]'"
    )
    suffix: ClassVar[str] = ".keras"

    @property
    def engine(self) -> str:
        """The Keras engine this process runs on (``tensorflow`` or ``jax``)."""
        return engine.current()

    def build(self, arch: Architecture, **options: Any) -> Any:
        """A functional ``keras.Model``, input (H, W, C), layer names = node names."""
        from .model import build_model

        return build_model(arch, **options)

    build_model = build

    def save(self, model: Any, arch: Architecture, spec_data: Mapping[str, Any], path: Path) -> None:
        from .io import save

        save(model, arch, spec_data, path)

    def load(self, path: Path) -> tuple[Any, dict[str, Any]]:
        from .io import load

        return load(path)

    def framework_summary(self, model: Any) -> str:
        from .introspect import framework_summary

        return framework_summary(model)

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

    # ------------------------------------------------------------------ WeightAccess (parity)

    def get_weights(self, model: Any, arch: Architecture) -> dict[str, dict[str, np.ndarray]]:
        """Every weight in the neutral layout (Keras' own layout), by layer and variable name."""
        from .weights import get_weights

        return get_weights(model, arch)

    def set_weights(self, model: Any, arch: Architecture, weights: Mapping[str, Mapping[str, np.ndarray]]) -> None:
        from .weights import set_weights

        set_weights(model, arch, weights)

    def train_probe(
        self, model: Any, arch: Architecture, batches: list[tuple[np.ndarray, np.ndarray]], *,
        steps: int, learning_rate: float, momentum: float, weight_decay: float, **streaming: Any,
    ) -> ProbeResult:  # fmt: skip
        """``streaming``: ``sink``, ``segments``, ``spill`` (:mod:`resnet_spec.parity.stream`)."""
        if engine.require() == "jax":
            from .probe_jax import train_probe
        else:
            from .probe import train_probe

        return train_probe(model, arch, batches, steps=steps, learning_rate=learning_rate, momentum=momentum,
                           weight_decay=weight_decay, **streaming)  # fmt: skip

    # ------------------------------------------------------------------ Export

    def checkpoint_model(self, arch: Architecture, folder: Path) -> Any:
        """The model of a run's checkpoint folder (weights and norm statistics)."""
        from .checkpoint import load_model

        return load_model(arch, folder)

    # ------------------------------------------------------------------ Trainer

    def check_training(self) -> None:
        """A one-line BackendError where this engine cannot train (JAX): before a run starts."""
        engine.require_training()

    def training_session(self, job: TrainingJob) -> TrainingSession:
        """A training session for the core's loop (:mod:`resnet_spec.training.loop`); see :mod:`.train`."""
        engine.require_training()
        from .train import KerasSession

        return KerasSession(job)

    def predictor(self, arch: Architecture, weights: Path, preprocessor: Preprocessor,
                  execution: Execution | None = None) -> Predictor:  # fmt: skip
        """Eval-mode logits of a run's checkpoint folder or a ``.keras`` file this backend saved."""
        engine.require_training()
        from .inference import predictor

        return predictor(arch, weights, preprocessor, execution)
