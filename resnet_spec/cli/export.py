"""``resnet-spec export``: a trained run (or a saved model) -> a model file that leaves the tool:
the self-describing ``.pt`` / ``.keras`` that ``compile`` writes, or ONNX checked with onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, add_force, check_output, fail

NAME = "export"
HELP = "write a trained run's weights as a .pt / .keras model file, a torch.export .pt2, or ONNX (checked with onnxruntime)"
EPILOG = """\
examples:
  resnet-spec export runs/digits-torch -o digits.pt
  resnet-spec export runs/digits-keras -o digits.keras
  resnet-spec export runs/digits-keras -o digits.pt             weights moved to PyTorch, as `convert` does
  resnet-spec export runs/digits-torch -o digits.onnx           dynamic batch, checked with onnxruntime
  resnet-spec export runs/digits-torch -o digits.pt2            torch.export: plain torch.export.load reads it
  resnet-spec export resnet18.pt -o resnet18.onnx               a model file instead of a run
the written file is what `load`, `convert`, `evaluate` and `parity` read; plain PyTorch / Keras
loading: docs/export.md.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="RUN",
                        help="the --out folder of `resnet-spec train`, or a model file written by `compile`, `convert` or `export`")  # fmt: skip
    parser.add_argument("--checkpoint", choices=("last", "best"), default="last",
                        help="which checkpoint of the run: last (default, RUN/checkpoint) or best (RUN/checkpoint-best)")  # fmt: skip
    parser.add_argument("-o", "--output", type=Path, required=True,
                        help="file to write; its suffix picks the format: .pt (torch), .keras (keras), .onnx (ONNX through torch), "
                             ".pt2 (a torch.export program)")  # fmt: skip
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX opset for .onnx (default 21, the newest every onnxruntime >= 1.18 runs)")  # fmt: skip
    add_force(parser)


def run(args: argparse.Namespace) -> int:
    from .. import exporting
    from ..backends import BackendError
    from ..onnx_files import OnnxFileError

    known = exporting.suffixes()
    writer = known.get(args.output.suffix)
    if writer is None:
        fail(f"{args.output}: unknown model suffix '{args.output.suffix}'; export writes "
             f"{', '.join(sorted(known))} files")  # fmt: skip
    if args.opset is not None and writer != "onnx":
        fail("--opset applies to .onnx outputs only")
    check_output(args.output, suffix=args.output.suffix, force=args.force)
    if writer == "onnx":
        _require_onnx()
    found: dict[str, tuple[float, float]] = {}  # output name -> (max abs, max rel) of the check
    try:
        source = exporting.open_source(args.source, args.checkpoint)
        if writer == "onnx":
            found = exporting.write_onnx(source, args.output, args.opset)
        elif writer == "pt2":
            found = exporting.write_program(source, args.output)
        else:
            exporting.write_model(source, writer, args.output)
    except (exporting.ExportError, OnnxFileError) as exc:
        fail(str(exc), EXIT_INVALID)
    except BackendError as exc:  # what is left: a backend that is unknown or lacks its framework
        fail(str(exc), EXIT_USAGE)
    done = f"from {source.origin}; {source.arch.hash[:19]}"
    outputs = f", {len(found)} outputs: {', '.join(found)}" if writer in ("onnx", "pt2") and len(found) > 1 else ""
    if writer == "onnx":
        print(f"wrote {args.output} (ONNX through torch, dynamic batch{outputs}, {done})")
        _differences("onnxruntime vs torch", found, f" (limit {exporting.ONNX_RELATIVE_LIMIT:g} rel)")
    elif writer == "pt2":
        print(f"wrote {args.output} (torch.export program, dynamic batch{outputs}, {done})")
        _differences("torch.export.load vs the network", found, "")
    else:
        print(f"wrote {args.output} ({writer}, {done})")
    return EXIT_OK


def _differences(what: str, found: dict[str, tuple[float, float]], limit: str) -> None:
    """One line for one output; a backbone's: one line per output (feature name)."""
    from ..exporting import CHECK_BATCH

    for name, (abs_diff, rel_diff) in found.items():
        which = f", output {name}" if len(found) > 1 else ""
        print(f"{what} on a batch of {CHECK_BATCH}{which}: max abs {abs_diff:.3g}, max rel {rel_diff:.3g}{limit}")


def _require_onnx() -> None:
    """Before any work: the exporter needs onnx and onnxscript, the check onnxruntime (a missing
    one becomes the one-line `pip install 'resnet-spec[onnx]'` hint)."""
    import onnx  # noqa: F401
    import onnxruntime  # noqa: F401
    import onnxscript  # noqa: F401
