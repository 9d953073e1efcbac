"""Canonical form of an expanded architecture and its hash.

The canonical form is the resolved graph as JSON: nodes in order with their op, inputs and
attributes, keys sorted, floats written by ``repr`` (shortest round-trip). Two specs that
describe the same network — depth shorthand or explicit block counts, settings written at the
top or repeated on every stage — have the same canonical form and the same hash; names,
descriptions, comments and the training section do not take part.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .graph import Graph

CANONICAL_VERSION = 1


def canonical_form(graph: Graph) -> dict[str, Any]:
    form: dict[str, Any] = {
        "canonical_version": CANONICAL_VERSION,
        "output": graph.output,
        "nodes": [
            {"name": n.name, "op": n.op, "inputs": list(n.inputs), **{k: _plain(v) for k, v in n.attributes().items()}}
            for n in graph
        ],
    }
    if graph.outputs:  # a backbone's named outputs; absent otherwise, so classifier hashes stay as they were
        form["outputs"] = [[name, node] for name, node in graph.outputs.items()]
    return form


def canonical_json(graph: Graph) -> str:
    return json.dumps(canonical_form(graph), sort_keys=True, separators=(",", ":"))


def architecture_hash(graph: Graph) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(graph).encode()).hexdigest()


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
