"""The validator, schema, summary and CLI start-up never import a deep-learning framework."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import sys, io, contextlib
from resnet_spec.cli import main
sink = io.StringIO()
with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
    codes = [
        main(["validate", "examples/resnet20_cifar10.yaml", "tests/malformed/identity_shortcut_stride.yaml"]),
        main(["summary", "examples/resnet50.yaml", "--format", "json"]),
        main(["schema"]),
        main(["backends"]),
        main(["codes"]),
    ]
import resnet_spec, resnet_spec.summary, resnet_spec.backends
heavy = sorted(m for m in ("tensorflow", "torch", "keras", "jax") if m in sys.modules)
print(codes, heavy)
"""


def test_no_framework_is_imported() -> None:
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, check=False, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 0, 0, 0, 0] []"
