"""Fine-tuning: the weights a run starts from (``train --init-from``), the parts it freezes
(``training.freeze``) and the head its own learning rate applies to
(``training.optimizer.head_lr_multiplier``). Framework-free: the backends ask the job.

* **Start**: the source (a resnet-spec model file, a run directory, a torchvision / timm /
  Keras weights file) is imported by structure (:func:`resnet_spec.importing.import_weights`,
  ``classifier="auto"``): every layer must fit, except the classifier, which is left new when
  the spec's ``classes`` differ from the source's. The new classifier (and only it) keeps the
  run's seeded initialization, so both backends start from the same network.
* **Frozen**: every weight node under a frozen part (``stem``, ``stage2``; ``backbone`` is the
  stem and every stage) neither takes optimizer updates nor updates its batch-norm statistics;
  its batch norms normalize with their running statistics while training (PyTorch: eval mode;
  Keras: ``trainable = False``, which Keras 3 gives that meaning).
* **Head**: the layers under ``head.`` learn at ``head_lr_multiplier`` times the scheduled rate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .. import graph as g
from ..spec import Training

if TYPE_CHECKING:
    from ..importing.result import ImportResult
    from ..pipeline import Architecture

CLASSIFIER = "head.classifier"
HEAD = "head"
_WEIGHTED = (g.Conv2D, g.BatchNorm, g.Dense)


def import_start(arch: Architecture, source: Path) -> ImportResult:
    """The weights ``source`` holds for ``arch``; raises ``WeightsImportError`` (one line, the
    first layer that does not fit) when they do not fit."""
    from ..importing.api import import_weights

    return import_weights(arch, source, classifier="auto")


def start_report(arch: Architecture, result: ImportResult, training: Training) -> list[str]:
    """What the run prints about its start: what was imported, the classifier, what is frozen."""
    lines = [result.summary().splitlines()[0]]
    if result.unused:
        shown = ", ".join(result.unused[:6]) + (f" and {len(result.unused) - 6} more" if len(result.unused) > 6 else "")
        lines.append(f"not used from the source: {shown}")
    lines += [f"note: {note}" for note in result.notes if not note.startswith(f"{CLASSIFIER} is new")]
    if CLASSIFIER in result.new:
        lines.append(classifier_line(arch, result))
    frozen = frozen_nodes(arch, training)
    if frozen:
        lines.append(frozen_line(arch, training, frozen))
    return lines


def classifier_line(arch: Architecture, result: ImportResult) -> str:
    old = result.replaced.get(CLASSIFIER, {}).get("kernel")
    if old is None:
        return f"{CLASSIFIER}: the source has no classifier; {arch.spec.classes} classes, initialized fresh"
    return f"{CLASSIFIER}: {old[-1]} -> {arch.spec.classes} classes, initialized fresh"


def frozen_line(arch: Architecture, training: Training, frozen: list[str] | None = None) -> str:
    frozen = frozen_nodes(arch, training) if frozen is None else frozen
    norms = sum(isinstance(arch.graph[name], g.BatchNorm) for name in frozen)
    return (f"frozen: {', '.join(training.freeze)} ({len(frozen)} layers; their weights and the running statistics "
            f"of their {norms} batch norms stay as they start)")  # fmt: skip


def frozen_parts(arch: Architecture, training: Training) -> list[str]:
    """Node-name prefixes of the frozen parts (``backbone`` expanded), in network order."""
    stages = [f"stage{i}" for i in range(1, len(arch.spec.stages) + 1)]
    chosen = set(training.freeze)
    return [part for part in ("stem", *stages) if part in chosen or "backbone" in chosen]


def is_under(name: str, parts: list[str]) -> bool:
    return any(name == part or name.startswith(part + ".") for part in parts)


def frozen_nodes(arch: Architecture, training: Training) -> list[str]:
    """The weight nodes (convolutions, batch norms, dense layers) that do not train."""
    parts = frozen_parts(arch, training)
    return [node.name for node in arch.graph if isinstance(node, _WEIGHTED) and is_under(node.name, parts)]


def head_nodes(arch: Architecture) -> list[str]:
    """The weight nodes the head learning rate applies to."""
    return [node.name for node in arch.graph if isinstance(node, _WEIGHTED) and is_under(node.name, [HEAD])]
