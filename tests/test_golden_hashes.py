"""Every example keeps its architecture: the golden file holds, per example, the architecture
hash (the SHA-256 of the canonical form), the node count and a digest of every node's name and
spec origin (the key path its diagnostics point at), all taken from the code before block kinds
became registered objects (issue 14). A redesign of the expander must reproduce them exactly.

An intended change of a network (only the weight order of the two keras.applications ResNet50
examples so far) is listed under ``intended_changes`` with its reason. Regenerate only for such
a change, and say which in the commit:
``RESNET_SPEC_UPDATE_GOLDEN=1 pytest tests/test_golden_hashes.py``."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

import resnet_spec

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden" / "example_hashes.json"
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
UPDATE = os.environ.get("RESNET_SPEC_UPDATE_GOLDEN") == "1"


def fingerprint(path: Path) -> dict[str, Any]:
    arch = resnet_spec.build_architecture(path)
    origins = json.dumps([[node.name, list(node.origin)] for node in arch.graph], separators=(",", ":"))
    return {
        "hash": arch.hash,
        "nodes": len(arch.graph),
        "origins_sha256": hashlib.sha256(origins.encode()).hexdigest(),
    }


def _golden() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text(encoding="utf-8"))["examples"]


def test_golden_file_lists_every_example() -> None:
    if UPDATE:
        pytest.skip("regenerating")
    assert sorted(_golden()) == [p.stem for p in EXAMPLES]
    changes = json.loads(GOLDEN.read_text(encoding="utf-8")).get("intended_changes", {})
    assert set(changes) <= set(_golden()) and all(changes.values())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_keeps_its_architecture(path: Path) -> None:
    found = fingerprint(path)
    if UPDATE:
        data = json.loads(GOLDEN.read_text(encoding="utf-8")) if GOLDEN.exists() else {"examples": {}}
        data["examples"][path.stem] = found
        data["examples"] = dict(sorted(data["examples"].items()))
        GOLDEN.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return
    assert found == _golden()[path.stem]
