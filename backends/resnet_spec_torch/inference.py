"""Eval-mode prediction for the PyTorch trainer and evaluator: the network up to its logits, and
its logits over a split read by the input pipeline (:mod:`.pipeline`) in evaluation order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from resnet_spec.backends import BackendError
from resnet_spec.spec import Execution
from resnet_spec.training.geometry import Geometry
from resnet_spec.training.job import Predictions
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.sources import Split

from . import pipeline
from .checkpoint import TRAINING
from .model import ResNet, build_module
from .probe import LOGITS
from .weights import unwrap

EVAL_BATCH = 256


class LogitsNet(nn.Module):
    """The compiled network up to ``head.classifier`` (the training loss's input), sharing its
    modules, for specs that end in a softmax: :meth:`.model.ResNet.logits`, the model's own walk."""

    def __init__(self, net: ResNet, arch: Any) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.logits(x)


def logits_net(net: ResNet, arch: Any) -> nn.Module:
    return net if arch.graph.output == LOGITS else LogitsNet(net, arch)


class Inference:
    """Logits of splits, batch after batch: arrays held in memory are sliced directly; anything
    else goes through an evaluation DataLoader kept per split (its workers persist between epochs)."""

    def __init__(self, net: nn.Module, device: torch.device, preprocessor: Preprocessor, *, batch: int,
                 workers: int | None, channels_last: bool = False) -> None:  # fmt: skip
        self.net, self.device, self.preprocessor = net, device, preprocessor
        self.batch, self.workers, self.channels_last = max(batch, EVAL_BATCH), workers, channels_last
        self._loaders: dict[int, tuple[Split, Any]] = {}

    def predict(self, split: Split, geometry: Geometry) -> Predictions:
        modes = [(m, m.training) for m in self.net.modules()]
        self.net.eval()
        try:
            with torch.inference_mode():
                for images, labels in self._inputs(split, geometry):
                    yield self._logits(images), labels
        finally:
            for module, training in modes:
                module.training = training

    def _inputs(self, split: Split, geometry: Geometry) -> Any:
        if split.in_memory and geometry.mode == "none":
            for start in range(0, len(split), self.batch):
                indices = np.arange(start, min(start + self.batch, len(split)))
                yield torch.from_numpy(self.preprocessor(split.read(indices))), split.labels[indices]
            return
        key = id(split)
        if key not in self._loaders:
            workers = self.workers if self.workers is not None else pipeline.default_workers(split, geometry)
            reader = pipeline.ExampleReader(split, geometry, self.preprocessor)
            self._loaders[key] = (split, pipeline.loader(reader, pipeline.BlockSampler(len(split), self.batch), workers,
                                                         self.device, persistent=True))  # fmt: skip
        for item in self._loaders[key][1]:
            images, labels = pipeline.check(item)
            yield images, labels.numpy()

    def _logits(self, images: torch.Tensor) -> np.ndarray:
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
        x = x.contiguous(memory_format=torch.channels_last if self.channels_last else torch.contiguous_format)
        return self.net(x).float().cpu().numpy()

    def close(self) -> None:
        self._loaders.clear()  # their persistent workers stop with the loaders


def predictor(arch: Any, weights: Path, preprocessor: Preprocessor, execution: Execution | None = None) -> Inference:
    """The network of a checkpoint folder or of a ``.pt`` file this backend saved, ready to predict."""
    path = Path(weights)
    if path.is_file():
        from .io import load

        model, meta = load(path)
        if meta.get("hash") != arch.hash:
            raise BackendError(f"{path}: the model is of architecture {meta.get('hash')}, not {arch.hash}")
    else:
        model = build_module(arch)
        payload = torch.load(path / TRAINING, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
    device = torch.device("cuda" if torch.cuda.is_available() and (execution is None or execution.device != "cpu") else "cpu")
    net = logits_net(cast(ResNet, unwrap(model)).to(device), arch)
    batch = arch.spec.training.batch_size if arch.spec.training is not None else EVAL_BATCH
    return Inference(net, device, preprocessor, batch=batch, workers=execution.workers if execution else None)
