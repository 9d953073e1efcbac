"""``resnet-spec load``: read a saved model back, refusing one whose spec hash does not match."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import EXIT_INVALID, EXIT_OK, add_format, check_input, fail, print_json, refuse_training_paths

NAME = "load"
HELP = "load a saved model, check its spec hash, print its summary"
EPILOG = """\
examples:
  resnet-spec load resnet18.pt
  resnet-spec load resnet50.keras --format json
  resnet-spec load model.bin --backend torch          a file whose suffix names no backend
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="a model file written by `compile`, `convert`, `import-weights` or `export` "
                             "(a training run: `resnet-spec export RUN -o FILE` first)")  # fmt: skip
    parser.add_argument("--backend", help="the backend that reads it (default: found from the file suffix)")
    add_format(parser, "{file, backend, name, hash, verified, params_trainable, params_non_trainable}")


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError, backend_for_file, get_backend

    check_input(args.model)
    refuse_training_paths(args.model)
    try:
        name = args.backend or backend_for_file(args.model)
        backend = get_backend(name)
        model, meta = backend.load(args.model)
    except BackendError as exc:
        fail(str(exc), EXIT_INVALID)
    if args.format == "json":
        trainable, non_trainable = backend.count_params(model)
        spec = meta.get("spec")
        name_of_spec = spec.get("name") if isinstance(spec, dict) else None
        print_json({"file": str(args.model), "backend": name, "name": name_of_spec, "hash": meta["hash"],
                    "verified": True, "params_trainable": trainable, "params_non_trainable": non_trainable})  # fmt: skip
        return EXIT_OK
    print(backend.framework_summary(model))
    print(f"spec hash {meta['hash']} verified")
    return EXIT_OK
