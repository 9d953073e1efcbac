"""Semantic checks of the ``training`` section that a schema cannot express."""

from __future__ import annotations

import difflib

from .diagnostics import Diagnostic
from .spec import PiecewiseSchedule, ResNetSpec


def check(spec: ResNetSpec) -> list[Diagnostic]:
    training = spec.training
    if training is None:
        return []
    found: list[Diagnostic] = []
    schedule = training.schedule
    where = ("training", "schedule")
    if isinstance(schedule, PiecewiseSchedule):
        if len(schedule.multipliers) != len(schedule.boundaries) + 1:
            found.append(Diagnostic(
                "RS302", f"{len(schedule.boundaries)} boundaries need {len(schedule.boundaries) + 1} multipliers, "
                f"got {len(schedule.multipliers)}", hint="one multiplier before the first boundary and one after each",
                key_path=(*where, "multipliers"),
            ))  # fmt: skip
        if any(b >= a for b, a in zip(schedule.boundaries, schedule.boundaries[1:])) or any(
            b2 <= b1 for b1, b2 in zip(schedule.boundaries, schedule.boundaries[1:])
        ):
            found.append(Diagnostic("RS301", f"boundaries {schedule.boundaries} must strictly increase", key_path=(*where, "boundaries")))
        limit = training.iterations if schedule.unit == "iteration" else training.epochs
        if limit is not None and schedule.boundaries and schedule.boundaries[-1] >= limit:
            found.append(Diagnostic(
                "RS301", f"boundary {schedule.boundaries[-1]} is not inside the run of {limit} {schedule.unit}s",
                hint="boundaries must be smaller than the training length in the same unit", key_path=(*where, "boundaries"),
            ))  # fmt: skip
    if training.preprocessing.mode in {"caffe", "torch"} and spec.input.channels != 3:
        found.append(Diagnostic(
            "RS304", f"preprocessing '{training.preprocessing.mode}' uses ImageNet's RGB statistics and needs 3 "
            f"input channels, the spec has {spec.input.channels}", key_path=("training", "preprocessing", "mode"),
        ))  # fmt: skip
    crop = training.augmentation.random_crop_padding
    if crop > max(spec.input.height, spec.input.width):
        found.append(Diagnostic(
            "RS303", f"random_crop_padding {crop} is larger than the input ({spec.input.height}x{spec.input.width})",
            key_path=("training", "augmentation", "random_crop_padding"),
        ))  # fmt: skip
    found += _resized_crop(spec) + _normalization(spec) + _resize(spec) + _freeze(spec)
    return found


def frozen_parts(spec: ResNetSpec) -> list[str]:
    """The names ``training.freeze`` accepts, in network order."""
    return ["stem", *(f"stage{i}" for i in range(1, len(spec.stages) + 1)), "backbone"]


def _freeze(spec: ResNetSpec) -> list[Diagnostic]:
    assert spec.training is not None
    known = frozen_parts(spec)
    found = []
    for index, name in enumerate(spec.training.freeze):
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        found.append(Diagnostic(
            "RS305", f"freeze: '{name}' is not a part of this network (it has {', '.join(known)})",
            hint=f"{hint}the head always trains; stages count from 1", key_path=("training", "freeze", index),
        ))  # fmt: skip
    return found


def _resized_crop(spec: ResNetSpec) -> list[Diagnostic]:
    assert spec.training is not None
    settings = spec.training.augmentation.random_resized_crop
    if settings is None:
        return []
    where = ("training", "augmentation", "random_resized_crop")
    return [
        Diagnostic("RS303", f"{name} [{low:g}, {high:g}] runs backwards", hint=f"give [smallest, largest] {what}",
                   key_path=(*where, name))
        for name, (low, high), what in (("scale", settings.scale, "area fraction"), ("ratio", settings.ratio, "width / height"))
        if low > high
    ]  # fmt: skip


def _normalization(spec: ResNetSpec) -> list[Diagnostic]:
    assert spec.training is not None
    settings = spec.training.preprocessing
    where = ("training", "preprocessing")
    found = []
    for name in ("mean", "std"):
        values = getattr(settings, name)
        if settings.mode != "mean_std" and values is not None:
            found.append(Diagnostic(
                "RS304", f"`{name}` is used only by mode mean_std, not by mode {settings.mode}",
                hint="set mode: mean_std, or remove it", key_path=(*where, name),
            ))  # fmt: skip
        elif settings.mode == "mean_std" and (values is None or len(values) != spec.input.channels):
            got = "none" if values is None else f"{len(values)} values"
            found.append(Diagnostic(
                "RS304", f"mode mean_std needs `{name}` with one value per input channel ({spec.input.channels}), got {got}",
                key_path=(*where, name) if values is not None else (*where, "mode"),
            ))  # fmt: skip
    return found


def _resize(spec: ResNetSpec) -> list[Diagnostic]:
    assert spec.training is not None
    resize = spec.training.preprocessing.resizing
    if resize is None or resize.shorter_side is None or resize.shorter_side >= max(spec.input.height, spec.input.width):
        return []
    return [Diagnostic(
        "RS304", f"shorter_side {resize.shorter_side} is smaller than the input ({spec.input.height}x{spec.input.width}): "
        "the centered crop would not fit every image",
        hint=f"use at least {max(spec.input.height, spec.input.width)} (ImageNet: 256 for a 224x224 input)",
        key_path=("training", "preprocessing", "resize", "shorter_side"),
    )]  # fmt: skip
