"""Optional capabilities of the PyTorch backend: weight exchange and the parity probe
(:class:`resnet_spec.backends.WeightAccess`) and training (:class:`resnet_spec.training.job.Trainer`).

``TorchBackend`` inherits :class:`TorchCapabilities`. Like the backend itself, importing this
module does not import torch: each method imports its submodule on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

    from resnet_spec.backends import ProbeResult
    from resnet_spec.pipeline import Architecture
    from resnet_spec.spec import Execution
    from resnet_spec.training.job import Predictor, TrainingJob, TrainingSession
    from resnet_spec.training.preprocess import Preprocessor

__all__ = ["TorchCapabilities"]


class TorchCapabilities:
    # ------------------------------------------------------------------ WeightAccess

    def get_weights(self, model: Any, arch: Architecture) -> dict[str, dict[str, np.ndarray]]:
        """All weights in the neutral layout (``resnet_spec.weights``): conv kernels HWIO, dense
        kernels (in, out) with rows in the graph's (h, w, c) flatten order, norm statistics."""
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
        from .probe import train_probe

        return train_probe(model, arch, batches, steps=steps, learning_rate=learning_rate, momentum=momentum,
                           weight_decay=weight_decay, **streaming)  # fmt: skip

    # ------------------------------------------------------------------ Trainer

    def training_session(self, job: TrainingJob) -> TrainingSession:
        """A training session for the core's loop (:mod:`resnet_spec.training.loop`); see ``resnet_spec_torch.train``."""
        from .train import TorchSession

        return TorchSession(job)

    def predictor(self, arch: Architecture, weights: Path, preprocessor: Preprocessor,
                  execution: Execution | None = None) -> Predictor:  # fmt: skip
        """Eval-mode logits of a run's checkpoint folder or a ``.pt`` file this backend saved."""
        from .inference import predictor

        return predictor(arch, weights, preprocessor, execution)

    # ------------------------------------------------------------------ Export

    def checkpoint_model(self, arch: Architecture, folder: Path) -> Any:
        """The network of a run's checkpoint folder (weights and norm statistics), eval mode, CPU."""
        from .checkpoint import load_model

        return load_model(arch, folder)

    def export_onnx(self, model: Any, arch: Architecture, spec_data: Mapping[str, Any], path: Path,
                    opset: int | None = None) -> None:  # fmt: skip
        """Write ``model`` as ONNX (dynamic batch, NCHW input ``images``); see ``resnet_spec_torch.onnx_export``."""
        from .onnx_export import DEFAULT_OPSET, export_onnx

        export_onnx(model, arch, spec_data, path, opset=opset or DEFAULT_OPSET)

    def export_program(self, model: Any, arch: Architecture, spec_data: Mapping[str, Any], path: Path) -> None:
        """Write ``model`` as a ``torch.export`` archive (``.pt2``, dynamic batch); see ``resnet_spec_torch.program``."""
        from .program import export_program

        export_program(model, arch, spec_data, path)

    def predict_program(self, path: Path, images: np.ndarray, arch: Architecture) -> dict[str, np.ndarray]:
        """The outputs (name -> array) of a ``.pt2`` archive for NHWC ``images``, loaded with ``torch.export.load``."""
        from .program import predict_program

        return predict_program(path, images, arch)

    def predict(self, model: Any, images: np.ndarray, arch: Architecture) -> dict[str, np.ndarray]:
        """One eval-mode forward of a float32 CPU model on NHWC ``images``: output name -> array
        (``output``, or a backbone's feature names), as the ONNX file names them."""
        from .onnx_export import predict

        return predict(model, images, arch)
