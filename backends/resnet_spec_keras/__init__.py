"""The Keras 3 (TensorFlow) backend of resnet-spec.

Importing this package does not import TensorFlow or Keras: the registry loads
:class:`KerasBackend` to list backends and check the framework is installed, and every method
imports its submodule (and so Keras) on first use.

To load a saved model with plain ``keras.models.load_model`` in a new process, import
``resnet_spec_keras.layers`` first: it registers the custom layers under the ``resnet_spec``
package (Keras imports saved modules by itself only for its own packages), or pass
``custom_objects=resnet_spec_keras.layers.CUSTOM_OBJECTS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import numpy as np

    from resnet_spec.pipeline import Architecture

__all__ = ["KerasBackend"]


class KerasBackend:
    name: ClassVar[str] = "keras"
    framework_module: ClassVar[str] = "tensorflow"
    install_hint: ClassVar[str] = "pip install 'resnet-spec[keras]'"
    suffix: ClassVar[str] = ".keras"

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
