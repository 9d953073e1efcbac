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
    head_lr_multiplier: Annotated[float, Field(gt=0.0, le=1e4)] = 1.0
    """The head's layers (the spec's `head`: its classifier and any dense or norm layers) learn at
    this multiple of the scheduled learning rate (fine-tuning: e.g. 10 for a new classifier on a
    pretrained network); every other layer at the rate itself."""


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


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
AspectRatio = Annotated[float, Field(gt=0.0, le=100.0)]


class RandomResizedCrop(SpecModel):
    """Inception-style crop (torchvision's RandomResizedCrop): a random box covering `scale` of the
    image's area with a width / height ratio drawn log-uniformly from `ratio`, resized to the input;
    ten tries, then the centered largest box within `ratio`. Evaluation uses `preprocessing.resize`."""

    scale: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = [0.08, 1.0]  # noqa: RUF012 -- pydantic copies defaults per instance
    """[smallest, largest] fraction of the image's area the box covers."""
    ratio: Annotated[list[AspectRatio], Field(min_length=2, max_length=2)] = [0.75, 4.0 / 3.0]  # noqa: RUF012
    """[smallest, largest] width / height of the box, drawn log-uniformly."""


class Augmentation(SpecModel):
    random_crop_padding: Annotated[int, Field(ge=0, le=256)] = 0
    """Pad this many pixels on each side (zeros), then crop back to the input size at random."""
    horizontal_flip: bool = False
    random_resized_crop: RandomResizedCrop | None = None
    """Training images are random boxes resized to the input (ImageNet recipes); before `preprocessing`."""


class Resize(SpecModel):
    shorter_side: Annotated[int, Field(ge=1, le=16384)] | None = None
    """Scale each image so that its shorter side has this many pixels (aspect ratio kept), then take
    the centered crop of the input's size: ImageNet evaluation (256, then 224). Unset: scale straight
    to the input's height and width."""


class Preprocessing(SpecModel):
    mode: Literal["none", "scale", "per_pixel_mean", "per_channel_mean", "mean_std", "caffe", "torch"] = "scale"
    """scale: multiply by `scale`; per_pixel_mean / per_channel_mean: scale, then subtract the
    training set's mean image / channel means; mean_std: scale, subtract `mean`, divide by `std`
    (per channel); caffe: RGB->BGR and subtract ImageNet means on 0..255; torch: scale to 0..1 and
    normalize with ImageNet mean and std."""
    scale: Annotated[float, Field(gt=0.0, le=1e6)] = 1.0 / 255.0
    mean: Annotated[list[Annotated[float, Field(ge=-1e6, le=1e6)]], Field(min_length=1, max_length=4096)] | None = None
    """mean_std: one value per input channel, on the scaled values (e.g. [0.485, 0.456, 0.406])."""
    std: Annotated[list[Annotated[float, Field(gt=0.0, le=1e6)]], Field(min_length=1, max_length=4096)] | None = None
    """mean_std: one value per input channel, on the scaled values (e.g. [0.229, 0.224, 0.225])."""
    resize: Resize | bool | None = None
    """Bring images of another size or channel count than the input to it: true (or {}): scale
    straight to the input's height and width; {shorter_side: N}: see there; channels are converted
    as Pillow does (RGB to L by ITU-R 601 luma, L copied to RGB, alpha dropped; image folders).
    Unset or false: every image must already have the input's size and channels (refused
    otherwise; training images may differ in size with `random_resized_crop`)."""
    antialias: bool = True
    """Bilinear resizing widens its filter when it shrinks an image (as Pillow and
    torchvision do); false: plain bilinear interpolation (TensorFlow's default)."""


    @property
    def resizing(self) -> Resize | None:
        """`resize` as settings: None when unset or false."""
        if isinstance(self.resize, Resize):
            return self.resize
        return Resize() if self.resize else None


class Execution(SpecModel):
    device: Literal["auto", "cpu", "gpu"] = "auto"
    mixed_precision: Literal["none", "float16", "bfloat16"] = "none"
    channels_last: bool = False
    compile: bool = False
    """torch.compile for PyTorch, XLA jit_compile for Keras."""
    workers: Annotated[int, Field(ge=0, le=256)] | None = None
    """Input-pipeline workers decoding and resizing examples beside training (PyTorch DataLoader
    processes, tf.data threads); 0: in the training process. Unset: one per CPU core, at most 8
    (none for data held in memory). Never changes the results."""


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
    checkpoint_every: Annotated[int, Field(ge=1, le=1_000_000_000)] | None = None
    """Also checkpoint every this many steps (mid-epoch too: a resumed run continues exactly)."""
    tensorboard: bool = True
    on_divergence: Literal["stop", "continue"] = "stop"
    """A non-finite loss stops the run (exit status 1, the last good checkpoint kept) unless `continue`."""
    freeze: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=64)] = []  # noqa: RUF012 -- pydantic copies defaults per instance
    """Parts of the network that do not train: `stem`, `stage1` .. `stageN`, or `backbone` (the
    stem and every stage). Their weights and their batch-norm statistics stay as they start
    (`train --init-from`); their batch norms normalize with those statistics."""

    @model_validator(mode="after")
    def _one_duration(self) -> Training:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("give exactly one of `epochs` and `iterations`")
        return self
