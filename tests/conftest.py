from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"


@pytest.fixture
def repo_root(monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from the repository root so paths in messages are stable (tests/malformed/x.yaml)."""
    monkeypatch.chdir(REPO)
    return REPO


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per usable core, at most 4. Each worker
    imports TensorFlow, PyTorch and JAX (2-3 GB each), and beyond 4 the suite's longest files,
    which a worker runs whole (``--dist loadfile``), set the wall time anyway."""
    return max(1, min(4, len(os.sched_getaffinity(0))))
