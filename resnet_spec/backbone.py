"""Backbones: a head that returns feature maps (``head.features``) instead of class scores.

Two checks. :func:`check` runs on the typed spec, before expansion: a classifier head needs
``classes``; a backbone must not also ask for a classifier (``classes``, ``head.layers``,
``head.classifier``, ``head.output`` or a ``training`` section, which trains a classifier).
:func:`resolve` runs once the stages are built: each reference must name the stem, a stage
or a node of the graph, and no node may be listed twice.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

from .diagnostics import Diagnostic, KeyPath

if TYPE_CHECKING:
    from .graph import Graph
    from .spec import ResNetSpec

_HEAD_KEYS = ("layers", "classifier", "output")


def check(spec: ResNetSpec) -> list[Diagnostic]:
    head = spec.head
    if head.features is None:
        if spec.classes is None:
            return [Diagnostic("RS102", "missing required key `classes`", key_path=("classes",),
                               hint="add `classes: 10` (the number of output classes), or make the model a "
                               "backbone: `head: {features: [stage2, stage3]}`")]  # fmt: skip
        return []
    found = []
    hint = "a backbone returns feature maps and has no classifier: remove it, or remove `head.features`"
    if spec.classes is not None:
        found.append(Diagnostic("RS211", "`classes` is given but the head is a backbone's (`head.features`)",
                                hint=hint, key_path=("classes",)))  # fmt: skip
    for key in _HEAD_KEYS:
        if key in head.model_fields_set:
            found.append(Diagnostic("RS211", f"`head.{key}` is given together with `head.features`",
                                    hint=hint, key_path=("head", key)))  # fmt: skip
    if spec.training is not None:
        found.append(Diagnostic("RS211", "a backbone (`head.features`) has no classifier to train",
                                hint="train the classifier spec, then copy its weights into the backbone "
                                "(`resnet-spec import-weights`), or remove `training`",
                                key_path=("training",)))  # fmt: skip
    return found


def resolve(spec: ResNetSpec, graph: Graph, places: dict[str, str]) -> tuple[dict[str, str], list[Diagnostic]]:
    """Output name -> node for ``head.features``. ``places`` maps ``stem`` and ``stageN`` to the
    node that ends them."""
    features = spec.head.features
    keyed = isinstance(features, dict)
    outputs: dict[str, str] = {}
    seen: dict[str, str] = {}
    found = []
    for index, (name, ref) in enumerate(spec.head.named_features().items()):
        where: KeyPath = ("head", "features", name if keyed else index)
        node = places.get(ref)
        if node is None and ref in _node_names(graph):
            node = ref
        if node is None:
            found.append(_unknown(ref, places, graph, where))
        elif node in seen:
            found.append(Diagnostic("RS210", f"feature '{ref}' is the same node ({node}) as '{seen[node]}'",
                                    hint="list each feature map once", key_path=where))  # fmt: skip
        else:
            seen[node] = ref
            outputs[name] = node
    return outputs, found


def _node_names(graph: Graph) -> set[str]:
    return {node.name for node in graph if node.op != "input"}


def _unknown(ref: str, places: dict[str, str], graph: Graph, where: KeyPath) -> Diagnostic:
    known = list(places)
    match = difflib.get_close_matches(ref, known + sorted(_node_names(graph)), n=1)
    hint = (f"did you mean '{match[0]}'? " if match else "") + "a feature is " + ", ".join(known) + \
        " or a node name (`resnet-spec summary --nodes` lists them)"
    return Diagnostic("RS210", f"unknown feature '{ref}': no such stage or node", hint=hint, key_path=where)
