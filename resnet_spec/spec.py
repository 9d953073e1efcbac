"""The spec language as pydantic v2 models: the typed spec, and the source of ``spec/*.schema.json``.

Every model forbids unknown keys and range-checks every number, so the generated JSON Schema
is as strict as the validator. Settings cascade: ``defaults`` at the top, ``defaults`` on a stage
or a custom block, then the fields of a single layer; ``None`` always means "inherit".

The architecture part (everything but ``name``, ``description`` and ``training``) is what the
graph and the architecture hash are built from; ``training`` is validated here and used by the
training harness.
"""

from __future__ import annotations

import ast
import inspect
import sys
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .graph import InitializerName

SPEC_VERSION = 1
BUILTIN_BLOCKS = ("basic", "bottleneck", "preact_basic", "preact_bottleneck")

PositiveInt = Annotated[int, Field(ge=1)]
# No fixed upper bound: the size budget (RS207) refuses absurd widths and depths with an
# estimate of the parameters and memory they would need, which says more than "out of range".
Channels = Annotated[int, Field(ge=1)]
KernelSize = Annotated[int, Field(ge=1, le=64)]
StrideValue = Annotated[int, Field(ge=1, le=16)]
PadValue = Annotated[int, Field(ge=0, le=1024)]
Rate = Annotated[float, Field(ge=0.0, lt=1.0)]

ActivationName = Literal["relu", "relu6", "silu", "gelu", "sigmoid", "tanh"]

PaddingMode = Literal["same", "valid", "symmetric"]
Padding = PaddingMode | PadValue | Annotated[list[PadValue], Field(min_length=4, max_length=4)]
PADDING_DOC = (
    "'same': TensorFlow's rule (output = ceil(input / stride), the odd extra row/column at the "
    "bottom/right); 'valid': no padding; 'symmetric': k // 2 on every side (PyTorch style); an "
    "integer: that many on every side; [top, bottom, left, right]: explicit."
)


def _describe_fields(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    """Give each property of ``cls``'s JSON Schema its attribute docstring (the string literal
    under the field), unless the field has an explicit ``description``.

    pydantic's ``use_attribute_docstrings`` does the same at import, re-reading and re-parsing
    this file once per class: about a third of the CLI's start-up, for text that only the JSON
    Schema shows. Here the file is parsed once, and only when a schema is generated."""
    for name, prop in schema.get("properties", {}).items():
        doc = _field_docstring(cls, name)
        if doc is not None and cls.model_fields[name].description is None:
            prop["description"] = doc


def _field_docstring(cls: type, field: str) -> str | None:
    # The class that declares the field owns its docstring (as pydantic's inherited FieldInfo).
    owner = next(c for c in cls.__mro__ if field in inspect.get_annotations(c))
    return _attribute_docstrings(owner.__module__).get(owner.__qualname__, {}).get(field)


@cache
def _attribute_docstrings(module: str) -> dict[str, dict[str, str]]:
    """{class name: {field: docstring}} for the top-level classes of ``module``."""
    try:
        tree = ast.parse(inspect.getsource(sys.modules[module]))
    except (OSError, TypeError):  # no source (a zipped or compiled-only install): no docstrings
        return {}
    found: dict[str, dict[str, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            found[node.name] = {
                stmt.target.id: inspect.cleandoc(after.value.value)
                for stmt, after in zip(node.body, node.body[1:])
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)
            }  # fmt: skip
    return found


class SpecModel(BaseModel):
    # Field docs come from the attribute docstrings, added when a schema is generated (see
    # _describe_fields) rather than by use_attribute_docstrings at import.
    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_describe_fields)


# --------------------------------------------------------------------------- settings cascade


class NormSettings(SpecModel):
    """Batch normalization. Every field is optional here; unset fields inherit."""

    running_stats_decay: Annotated[float, Field(ge=0.0, lt=1.0)] | None = None
    """Weight of the old running statistic: running = decay * running + (1 - decay) * batch.
    Keras calls this `momentum` (default 0.99); PyTorch's `momentum` is 1 - decay (0.1 -> 0.9)."""
    epsilon: Annotated[float, Field(gt=0.0, le=1.0)] | None = None
    """Added to the variance before the square root (Keras 1e-3, PyTorch 1e-5, keras.applications 1.001e-5)."""
    running_variance: Literal["biased", "unbiased"] | None = None
    """Which batch variance the running variance accumulates: 'biased' (divide by n, as Keras)
    or 'unbiased' (divide by n - 1, as PyTorch). Normalization itself always uses the biased one."""
    center: bool | None = None
    """Learn a shift (beta)."""
    scale: bool | None = None
    """Learn a scale (gamma)."""


class LayerSettings(SpecModel):
    """Settings that cascade from `defaults` to stages, custom blocks and single layers."""

    norm: NormSettings | None = None
    activation: ActivationName | None = None
    initializer: InitializerName | None = None
    """Kernel initializer of convolutions. See docs/spec-language.md for the exact meaning of each name."""
    conv_bias: bool | None = None
    """Whether convolutions have a bias (Keras' default is true, torchvision uses false)."""
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    """L2 penalty added to the loss: kernel_l2 * sum(w ** 2) over conv and dense kernels (Keras' L2)."""
    padding: Padding | None = Field(default=None, description=PADDING_DOC)


class Defaults(LayerSettings):
    """Top-level defaults; what is not given here takes the built-in value shown in the docs."""


# --------------------------------------------------------------------------- layers


class ConvLayer(SpecModel):
    type: Literal["conv"]
    filters: Channels | None = None
    """Output channels. Inside a custom block it may be omitted (the stage's `filters`) or given as `filters_ratio`."""
    filters_ratio: Annotated[float, Field(gt=0.0, le=64.0)] | None = None
    """Custom blocks only: output channels as a fraction of the stage's `filters` (0.25 for a bottleneck's inner width)."""
    kernel_size: KernelSize | Annotated[list[KernelSize], Field(min_length=2, max_length=2)] = 3
    stride: StrideValue | Literal["block"] | Annotated[list[StrideValue], Field(min_length=2, max_length=2)] = 1
    """An integer, [height, width], or 'block' (custom blocks only: the stage's stride in the first block, 1 in the others)."""
    padding: Padding | None = Field(default=None, description=PADDING_DOC)
    groups: Annotated[int, Field(ge=1, le=65536)] = 1
    bias: bool | None = None
    initializer: InitializerName | None = None
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class NormLayer(NormSettings):
    type: Literal["norm"]
    zero_init: bool = False
    """Start gamma at zero (the block then starts as an identity)."""


class ActivationLayer(SpecModel):
    type: Literal["activation"]
    function: ActivationName | None = None
    """Defaults to the cascaded `activation`."""


class ZeroPadLayer(SpecModel):
    type: Literal["zero_pad"]
    padding: PadValue | Annotated[list[PadValue], Field(min_length=4, max_length=4)]
    """An integer for every side, or [top, bottom, left, right]."""


class PoolLayer(SpecModel):
    pool_size: KernelSize | Annotated[list[KernelSize], Field(min_length=2, max_length=2)] = 2
    stride: StrideValue | Annotated[list[StrideValue], Field(min_length=2, max_length=2)] | None = None
    """Defaults to the pool size."""
    padding: Padding = Field(default="valid", description=PADDING_DOC)


class MaxPoolLayer(PoolLayer):
    type: Literal["max_pool"]


class AvgPoolLayer(PoolLayer):
    type: Literal["avg_pool"]
    count_padding: bool = False
    """Divide by the whole window including padded cells (PyTorch's count_include_pad) instead of
    by the real cells only (TensorFlow)."""


class DropoutLayer(SpecModel):
    type: Literal["dropout"]
    rate: Rate


class GlobalAvgPoolLayer(SpecModel):
    type: Literal["global_avg_pool"]


class FlattenLayer(SpecModel):
    type: Literal["flatten"]


class DenseLayer(SpecModel):
    type: Literal["dense"]
    units: Channels
    activation: ActivationName | Literal["linear"] = "linear"
    bias: bool = True
    initializer: InitializerName | None = None
    """Defaults to the classifier's initializer."""
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


SpatialLayer = ConvLayer | NormLayer | ActivationLayer | ZeroPadLayer | MaxPoolLayer | AvgPoolLayer | DropoutLayer
StemLayer = Annotated[SpatialLayer, Field(discriminator="type")]
BlockLayer = Annotated[SpatialLayer, Field(discriminator="type")]
HeadLayer = Annotated[
    GlobalAvgPoolLayer | AvgPoolLayer | MaxPoolLayer | FlattenLayer | DenseLayer | NormLayer | ActivationLayer | DropoutLayer,
    Field(discriminator="type"),
]


# --------------------------------------------------------------------------- blocks and stages


ShortcutKind = Literal["identity", "zero_pad", "projection", "avg_pool_projection"]


def _shortcut_schema_accepts_name(schema: dict[str, Any], cls: type[BaseModel]) -> None:
    # The validator accepts a bare kind name as shorthand; say so in the schema for editors.
    _describe_fields(schema, cls)
    as_object = dict(schema)
    schema.clear()
    schema.update(
        title=as_object.pop("title", "Shortcut"),
        description=as_object.pop("description", ""),
        anyOf=[{"enum": list(get_args(ShortcutKind))}, as_object],
    )


class Shortcut(SpecModel):
    """How the input reaches the residual add when the block changes the shape."""

    model_config = ConfigDict(json_schema_extra=_shortcut_schema_accepts_name)

    kind: ShortcutKind = "projection"
    """identity: the input itself (the shapes must already match); zero_pad: the paper's option A
    (take every stride-th row and column, pad channels with zeros, half before, half after);
    projection: a 1x1 convolution with the block's stride (option B; option C with every_block);
    avg_pool_projection: 2x2 average pooling with the stride, then a 1x1 convolution (ResNet-D)."""
    norm: bool = True
    """Batch norm after the projection convolution."""
    bias: bool | None = None
    """Bias on the projection convolution; defaults to the cascaded `conv_bias`."""
    every_block: bool = False
    """Project in every block, not only where the shape changes (the paper's option C)."""
    source: Literal["preactivated", "block_input"] = "preactivated"
    """Pre-activation blocks only: the projection reads the normalized and activated input (the
    ResNet v2 paper) or the raw block input (the Keras CIFAR-10 ResNet v2 example)."""

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


ShortcutField = Shortcut


class SqueezeExcite(SpecModel):
    reduction: Annotated[int, Field(ge=1, le=1024)] = 16
    """Squeeze width = block output channels / reduction."""


class CustomBlock(SpecModel):
    """A block declared as an explicit list of layers (the residual branch), for what the
    built-in kinds do not cover."""

    layers: Annotated[list[BlockLayer], Field(min_length=1, max_length=256)]
    shortcut: ShortcutField | None = None
    """Defaults to the stage's shortcut."""
    activation_after_add: bool = True
    """False for pre-activation designs (nothing after the add)."""
    defaults: LayerSettings | None = None


class Stage(SpecModel):
    block: str = "basic"
    """A built-in kind (basic, bottleneck, preact_basic, preact_bottleneck) or the name of a block under `blocks`."""
    first_block: str | None = None
    """Kind of the stage's first block when it differs from the others."""
    blocks: Annotated[int, Field(ge=1)] | None = None
    """Number of blocks; may be left out when the top-level `depth` determines it."""
    filters: Channels
    """Output channels of every block in the stage."""
    stride: StrideValue = 1
    """Stride of the first block."""
    stride_placement: Literal["first_1x1", "3x3"] = "3x3"
    """Bottleneck blocks: stride in the first 1x1 conv (original ResNet, Keras) or in the 3x3 conv
    (torchvision's "v1.5"). Basic blocks always stride in their first conv."""
    bottleneck_ratio: Annotated[float, Field(gt=0.0, le=64.0)] = 4.0
    """Bottleneck blocks: output channels / inner channels."""
    groups: Annotated[int, Field(ge=1, le=65536)] = 1
    """Groups of the 3x3 convolution (ResNeXt cardinality)."""
    width_per_group: Annotated[int, Field(ge=1, le=65536)] | None = None
    """ResNeXt: inner width = groups * width_per_group (overrides bottleneck_ratio)."""
    width_multiplier: Annotated[float, Field(gt=0.0, le=64.0)] = 1.0
    """Wide ResNet: multiplies the inner width of bottleneck blocks and every width of basic blocks."""
    shortcut: ShortcutField = Shortcut()
    squeeze_excite: SqueezeExcite | None = None
    stochastic_depth_rate: Rate = 0.0
    """Probability of dropping each block's residual branch during training."""
    dropout_between_convs: Rate = 0.0
    """Basic blocks: dropout between the two convolutions (Wide ResNet)."""
    zero_init_last_norm: bool = False
    """Start the last batch norm of each block at gamma = 0."""
    defaults: LayerSettings | None = None


class Classifier(SpecModel):
    """The final dense layer; its size is the number of classes."""

    bias: bool = True
    initializer: InitializerName = "glorot_uniform"
    kernel_l2: Annotated[float, Field(ge=0.0, le=1.0)] | None = None


class Head(SpecModel):
    layers: Annotated[list[HeadLayer], Field(max_length=256)] = [GlobalAvgPoolLayer(type="global_avg_pool")]
    classifier: Classifier = Classifier()
    output: Literal["logits", "softmax"] = "logits"
    """logits: the model returns raw scores and the loss applies the softmax (recommended);
    softmax: the model ends with a softmax."""


class InputShape(SpecModel):
    height: Annotated[int, Field(ge=1, le=16384)]
    width: Annotated[int, Field(ge=1, le=16384)]
    channels: Annotated[int, Field(ge=1, le=4096)]


# --------------------------------------------------------------------------- training


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


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
AspectRatio = Annotated[float, Field(gt=0.0, le=100.0)]


class RandomResizedCrop(SpecModel):
    """Inception-style crop (torchvision's RandomResizedCrop): a random box covering `scale` of the
    image's area with a width / height ratio drawn log-uniformly from `ratio`, resized to the input;
    ten tries, then the centered largest box within `ratio`. Evaluation uses `preprocessing.resize`."""

    scale: Annotated[list[Fraction], Field(min_length=2, max_length=2)] = [0.08, 1.0]
    """[smallest, largest] fraction of the image's area the box covers."""
    ratio: Annotated[list[AspectRatio], Field(min_length=2, max_length=2)] = [0.75, 4.0 / 3.0]
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
    resize: Resize | None = None
    """How images of another size than the input are brought to it (image folders; also arrays with
    `random_resized_crop`). Unset: scaled straight to the input's height and width."""
    antialias: bool = True
    """Bilinear resizing widens its filter when it shrinks an image (as Pillow and
    torchvision do); false: plain bilinear interpolation (TensorFlow's default)."""


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

    @model_validator(mode="after")
    def _one_duration(self) -> Training:
        if (self.epochs is None) == (self.iterations is None):
            raise ValueError("give exactly one of `epochs` and `iterations`")
        return self


# --------------------------------------------------------------------------- the spec


class ResNetSpec(SpecModel):
    """A residual network: input, stem, stages, head, and optionally how to train it."""

    version: Literal[1]
    """Version of the spec language; this release reads version 1."""
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=10_000)] | None = None
    input: InputShape
    classes: Annotated[int, Field(ge=1, le=1_000_000)]
    depth: Annotated[int, Field(ge=1)] | None = None
    """Declared depth: convolutions on the main path (stem and blocks, not shortcuts) plus the
    classifier. Checked against the structure; stages without `blocks` get their count from it."""
    defaults: Defaults = Defaults()
    blocks: dict[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)], CustomBlock] = {}
    """Custom block kinds, referenced by name from stages."""
    stem: Annotated[list[StemLayer], Field(max_length=256)] = []
    stages: Annotated[list[Stage], Field(min_length=1, max_length=64)]
    head: Head = Head()
    training: Training | None = None
