"""The ``training`` section of a spec: validated with the rest of the spec, used by the training
harness (it takes no part in the architecture or its hash)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from .spec_base import SpecModel


class Optimizer(SpecModel):
    kind: Literal["sgd", "adam", "adamw"] = "sgd"
    learning_rate: Annotated[float, Field(gt=0.0, le=100.0)] = 0.1
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    nesterov: bool = False
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    beta2: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.999
    epsilon: Annotated[float, Field(gt=0.0, le=1.0)] = 1e-8
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """sgd/adam: weight_decay * w is added to the gradient (PyTorch's meaning; equal to an L2 loss
    term of weight_decay / 2); adamw: decoupled decay. Applies to `weight_decay_applies_to`."""
    weight_decay_applies_to: Literal["kernels", "all"] = "kernels"
    """kernels: conv and dense kernels only (as Keras regularizers); all: every trainable parameter."""


class PiecewiseSchedule(SpecModel):
    kind: Literal["piecewise"]
    unit: Literal["iteration", "epoch"] = "iteration"
    boundaries: Annotated[list[Annotated[int, Field(ge=1)]], Field(min_length=1, max_length=64)]
    """Step (or epoch) numbers, counted from 0, at which the next multiplier takes effect: with
    boundaries [2], steps 0 and 1 use the first value and step 2 the second."""
    multipliers: Annotated[list[Annotated[float, Field(gt=0.0, le=1e4)]], Field(min_length=2, max_length=65)]
    """Factors of the base learning rate, one more than boundaries (e.g. [1, 0.1, 0.01])."""


class CosineSchedule(SpecModel):
    kind: Literal["cosine"]
    final_multiplier: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0


class ConstantSchedule(SpecModel):
    kind: Literal["constant"]


Schedule = Annotated[ConstantSchedule | PiecewiseSchedule | CosineSchedule, Field(discriminator="kind")]


class Warmup(SpecModel):
    iterations: Annotated[int, Field(ge=1, le=10_000_000)]
    start_multiplier: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """Linear warm-up from start_multiplier * learning_rate to the schedule's value."""


class Loss(SpecModel):
    kind: Literal["cross_entropy"] = "cross_entropy"
    label_smoothing: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0


class Augmentation(SpecModel):
    random_crop_padding: Annotated[int, Field(ge=0, le=256)] = 0
    """Pad this many pixels on each side (zeros), then crop back to the input size at random."""
    horizontal_flip: bool = False


class Preprocessing(SpecModel):
    mode: Literal["none", "scale", "per_pixel_mean", "per_channel_mean", "caffe", "torch"] = "scale"
    """scale: multiply by `scale`; per_pixel_mean / per_channel_mean: scale, then subtract the
    training set's mean image / channel means; caffe: RGB->BGR and subtract ImageNet means on
    0..255; torch: scale to 0..1 and normalize with ImageNet mean and std."""
    scale: Annotated[float, Field(gt=0.0, le=1e6)] = 1.0 / 255.0


class Execution(SpecModel):
    device: Literal["auto", "cpu", "gpu"] = "auto"
    mixed_precision: Literal["none", "float16", "bfloat16"] = "none"
    channels_last: bool = False
    compile: bool = False
    """torch.compile for PyTorch, XLA jit_compile for Keras."""


class Training(SpecModel):
    batch_size: Annotated[int, Field(ge=1, le=1_048_576)] = 128
    epochs: Annotated[int, Field(ge=1, le=1_000_000)] | None = None
    iterations: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    optimizer: Optimizer = Optimizer()
    schedule: Schedule = ConstantSchedule(kind="constant")
    warmup: Warmup | None = None
    loss: Loss = Loss()
    validation_split: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0
    augmentation: Augmentation = Augmentation()
    preprocessing: Preprocessing = Preprocessing()
    execution: Execution = Execution()
    seed: Annotated[int, Field(ge=0, le=2**32 - 1)] = 0
    checkpoint_every_epoch: bool = True
    tensorboard: bool = True

    @model_validator(mode="after")
    def _one_duration(self) -> Training:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("give exactly one of `epochs` and `iterations`")
        return self

