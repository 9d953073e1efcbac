"""Eval-mode prediction for the Keras trainer and evaluator: the model up to its logits, and its
logits over a split (arrays in memory sliced directly, anything else through :mod:`.pipeline`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from resnet_spec.spec import Execution
from resnet_spec.training.geometry import Geometry
from resnet_spec.training.job import Predictions
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.sources import Split

from . import pipeline
from .checkpoint import WEIGHTS
from .model import build_model, deep_recursion
from .walk import LOGITS

EVAL_BATCH = 256


def logits_model(model: keras.Model) -> keras.Model:
    """The model up to ``head.classifier`` (sharing its layers): the output of the training
    loss, also when the spec ends in a softmax."""
    classifier = model.get_layer(LOGITS)
    if model.outputs[0] is classifier.output:
        return model
    with deep_recursion(len(model.layers)):
        return keras.Model(model.inputs, classifier.output, name=f"{model.name}_logits")


class Inference:
    def __init__(self, model: keras.Model, preprocessor: Preprocessor, *, batch: int, workers: int | None) -> None:
        infer = logits_model(model)
        self._predict = tf.function(lambda x: tf.cast(infer(x, training=False), tf.float32), reduce_retracing=True)
        self.preprocessor, self.batch, self.workers = preprocessor, max(batch, EVAL_BATCH), workers
        self._datasets: dict[int, tuple[Split, Any, Any]] = {}  # per split: traced once, iterated every epoch

    def predict(self, split: Split, geometry: Geometry) -> Predictions:
        if split.in_memory and geometry.mode == "none":
            for start in range(0, len(split), self.batch):
                indices = np.arange(start, min(start + self.batch, len(split)))
                images = self.preprocessor(split.read(indices))
                yield self._predict(tf.constant(images)).numpy(), split.labels[indices]
            return
        if id(split) not in self._datasets:
            workers = self.workers if self.workers is not None else pipeline.default_workers(split, geometry)
            reader = pipeline.Reader(split, geometry, self.preprocessor, workers)
            self._datasets[id(split)] = (split, reader, reader.evaluation(self.batch))
        _, reader, dataset = self._datasets[id(split)]
        stream = iter(dataset)
        first = 0
        while True:
            try:
                images, labels, _ = next(stream)
            except StopIteration:
                return
            except tf.errors.OpError as exc:
                raise reader.explain(np.arange(first, min(first + self.batch, len(split))), exc) from None
            first += len(labels)
            yield self._predict(images).numpy(), labels.numpy()


def predictor(arch: Any, weights: Path, preprocessor: Preprocessor, execution: Execution | None = None) -> Inference:
    """The model of a checkpoint folder or of a ``.keras`` file this backend saved, ready to predict."""
    path = Path(weights)
    if path.is_file():
        from .io import load

        model, _ = load(path)
    else:
        model = build_model(arch)
        with deep_recursion(len(model.layers)):
            model.load_weights(path / WEIGHTS)
    batch = arch.spec.training.batch_size if arch.spec.training is not None else EVAL_BATCH
    return Inference(model, preprocessor, batch=batch, workers=execution.workers if execution else None)
