"""The child process of tests/test_keras_jax.py, run with ``KERAS_BACKEND=jax``: Keras picks its
engine once, when first imported, so the JAX engine needs a process of its own; one process
runs every check, because JAX compiles each kernel shape the first time it meets it (seconds
each on a CPU) and the examples share most of their shapes.

``python tests/keras_jax_child.py OUT.json SCRATCH [--examples NAME ...] [--float32 NAME ...] [--reduced NAME ...] [--round-trip]``
writes one JSON document to OUT.json: each example's float64 (and float32) parity against the torch backend,
the compile -> save -> load round trip and the refusals of ``train`` and ``evaluate`` (with
``--round-trip``), the engine, and the heavy modules this process imported.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DIGITS = REPO / "examples" / "resnet_digits.yaml"


def at_64(path: Path) -> list[str]:
    """The exhaustive sweep's reduction (tests/test_parity.py): 64x64 where the head pools globally."""
    import resnet_spec

    arch = resnet_spec.build_architecture(path)
    head = arch.spec.head.layers
    if arch.spec.input.height >= 64 and (arch.graph.outputs or (head and head[0].type == "global_avg_pool")):
        return ["input.height=64", "input.width=64"]
    return []


def parity_row(name: str, precision: str = "float64", *, reduce: bool = False) -> dict[str, Any]:
    import resnet_spec
    from resnet_spec import parity

    started = time.perf_counter()
    path = REPO / "examples" / f"{name}.yaml"
    arch = resnet_spec.build_architecture(path, overrides=at_64(path) if reduce else ())
    report = parity.run(arch, seed=0, steps=2, batch_size=2, precision=precision)
    worst = {check: report.worst(check).max_rel for check in report.checks() if report.worst(check) is not None}  # type: ignore[union-attr]
    print(f"{name} ({precision}): ok {report.ok}, {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    logits = next((d.max_abs for d in report.differences if d.check == "eval" and d.node == parity.LOGITS), None)
    return {"ok": report.ok, "checks": report.checks(), "worst_rel": worst, "notes": report.notes,
            "decided_in": report.decided_in, "eval_logits_abs": logits,
            "float32_worst_rel": {check: w.max_rel for check, w in report.float32_worst.items()},
            "text": "" if report.ok else parity.render_text(report), "wall_s": round(time.perf_counter() - started, 1),
            "input": [arch.spec.input.height, arch.spec.input.width]}  # fmt: skip


def round_trip(scratch: Path) -> dict[str, Any]:
    """A model built and saved on JAX loads with the same weights and computes the same logits."""
    import numpy as np

    import resnet_spec
    from resnet_spec.backends import get_backend

    backend: Any = get_backend("keras")  # the WeightAccess methods too
    arch = resnet_spec.build_architecture(DIGITS)
    model = backend.build(arch)
    path = scratch / "digits.keras"
    backend.save(model, arch, resnet_spec.load(DIGITS).data, path)
    loaded, meta = backend.load(path)
    before, after = backend.get_weights(model, arch), backend.get_weights(loaded, arch)
    same_weights = before.keys() == after.keys() and all(
        np.array_equal(before[node][key], after[node][key]) for node in before for key in before[node]
    )
    images = np.random.default_rng(0).standard_normal((2, *arch.graph.input.shape)).astype(np.float32)
    first, again = (backend.node_outputs(m, arch, images)["head.classifier"] for m in (model, loaded))
    return {"same_weights": same_weights, "same_logits": bool(np.array_equal(first, again)),
            "hash_matches": meta.get("hash") == arch.hash, "tensors": sum(len(v) for v in before.values())}  # fmt: skip


def command(argv: list[str]) -> dict[str, Any]:
    """``resnet-spec ARGV`` in this process: its exit status and what it printed."""
    from resnet_spec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return {"status": status, "stdout": out.getvalue(), "stderr": err.getvalue()}


def commands(scratch: Path) -> dict[str, Any]:
    model = scratch / "cli.keras"
    run = scratch / "run"
    found: dict[str, Any] = {
        "compile": command(["compile", str(DIGITS), "--backend", "keras", "-o", str(model)]),
        "load": command(["load", str(model)]),
        "train": command(["train", str(DIGITS), "--backend", "keras", "--data", "digits", "--out", str(run)]),
        "evaluate": command(["evaluate", str(model), "--data", "digits", "--backend", "keras"]),
    }
    found["load"]["stdout"] = found["load"]["stdout"][-300:]  # the summary table; its end names the hash check
    found["run_json_written"] = (run / "run.json").exists()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("scratch", type=Path)
    parser.add_argument("--examples", nargs="*", default=[])
    parser.add_argument("--float32", nargs="*", default=[], metavar="NAME", help="float32 parity of these too")
    parser.add_argument("--reduced", nargs="*", default=[], metavar="NAME",
                        help="float64 parity of these at the exhaustive sweep's 64x64 (ImageNet-size examples)")
    parser.add_argument("--round-trip", action="store_true")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    result: dict[str, Any] = {"parity": {name: parity_row(name) for name in args.examples}}
    result["parity_float32"] = {name: parity_row(name, "float32") for name in args.float32}
    result["parity_reduced"] = {name: parity_row(name, reduce=True) for name in args.reduced}
    if args.round_trip:
        result["round_trip"] = round_trip(args.scratch)
        result["commands"] = commands(args.scratch)
    import keras

    from resnet_spec.backends import get_backend

    result["engine"] = [keras.backend.backend(), get_backend("keras").engine]  # type: ignore[attr-defined]
    result["imported"] = sorted(m for m in ("tensorflow", "jax", "torch") if m in sys.modules)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
