"""``resnet-spec demo``: the quick-start job (validate every example, train the digits ResNet)."""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from ..pipeline import validate
from .common import EXIT_INVALID, EXIT_OK, fail

NAME = "demo"
HELP = "the quick-start job: train examples/resnet_digits.yaml on the bundled digits in both backends"
EPILOG = """\
examples:
  resnet-spec demo
  resnet-spec demo --backends torch --out /tmp/runs
exit status 1 when an example does not validate or a backend's test accuracy is below 97%.
"""
EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs"),
                        help="parent folder of the run directories digits-BACKEND (default runs/); a previous demo's "
                             "run there is replaced, anything else is refused")  # fmt: skip
    parser.add_argument("--backends", default="keras,torch", help="backends to train with, comma-separated (default keras,torch)")


def run(args: argparse.Namespace) -> int:
    from ..training.commands import train

    spec_path = EXAMPLES / "resnet_digits.yaml"
    if not spec_path.exists():
        fail("examples/resnet_digits.yaml not found (run the demo from a clone of the repository)")
    examples = sorted(spec_path.parent.glob("*.yaml"))
    valid = sum(validate(p).ok for p in examples)
    print(f"validated {valid}/{len(examples)} example specs")
    result = validate(spec_path)
    assert result.architecture is not None and result.document is not None
    failed = valid != len(examples)
    backends = args.backends.split(",")
    for backend in backends:
        _clear_previous_demo(args.out / f"digits-{backend}")
    for backend in backends:
        out = args.out / f"digits-{backend}"
        start = time.perf_counter()
        evaluation = train(result.architecture, result.document.data, backend=backend, source="digits", out=out)
        seconds = time.perf_counter() - start
        print(f"{backend}: test accuracy {evaluation.accuracy:.2%} in {seconds:.0f} s; "
              f"curves {out / 'curves.png'}, checkpoint {out / 'checkpoint'}, metrics {out / 'metrics.csv'}")  # fmt: skip
        failed |= evaluation.accuracy < 0.97
    return EXIT_INVALID if failed else EXIT_OK


def _clear_previous_demo(out: Path) -> None:
    """The demo starts fresh, but removes only a run directory it made: one trained on digits."""
    if not out.exists():
        return
    try:
        made_by_demo = json.loads((out / "run.json").read_text()).get("data") == "digits"
    except (OSError, ValueError, AttributeError):
        made_by_demo = False
    if not made_by_demo:
        fail(f"{out} exists and is not a previous demo run; remove it or pass another --out")
    shutil.rmtree(out)
