"""``resnet-spec load``: read a saved model back, refusing one whose spec hash or digests do not match."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    EXIT_INVALID,
    EXIT_OK,
    add_format,
    check_input,
    fail,
    print_json,
    print_warning,
    printable,
    refuse_training_paths,
)

if TYPE_CHECKING:
    from ..backends import Backend

NAME = "load"
HELP = "load a saved model, check its spec hash, digests and weights, print its summary"
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
    add_format(parser, "{file, backend, name, hash, verified, digests, params_trainable, params_non_trainable}")


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError

    check_input(args.model)
    refuse_training_paths(args.model)
    name, backend = backend_of(args.model, args.backend)
    try:
        model, meta = backend.load(args.model)
    except BackendError as exc:
        fail(str(exc), EXIT_INVALID)
    status = meta.get("integrity") or {}
    if status.get("status") != "verified":
        print_warning(status.get("message") or f"{args.model}: no integrity digests")
    if args.format == "json":
        trainable, non_trainable = backend.count_params(model)
        spec = meta.get("spec")
        name_of_spec = spec.get("name") if isinstance(spec, dict) else None
        print_json({"file": str(args.model), "backend": name, "name": name_of_spec, "hash": meta["hash"],
                    "verified": True, "digests": status.get("status", "absent"),
                    "params_trainable": trainable, "params_non_trainable": non_trainable})  # fmt: skip
        return EXIT_OK
    print(backend.framework_summary(model))
    digests = f"; {status['parts']} parts and {status['tensors']} tensors match their digests" if status.get("status") == "verified" else ""
    print(printable(f"spec hash {meta['hash']} verified{digests}"))
    return EXIT_OK


def backend_of(path: Path, name: str | None) -> tuple[str, Backend]:
    """The backend named, or the one whose suffix the file has; an unknown or uninstalled one is
    a usage error (exit status 2), as in every command."""
    from ..backends import BackendError, backend_for_file, get_backend

    try:
        chosen = name or backend_for_file(path)
        return chosen, get_backend(chosen)
    except BackendError as exc:
        fail(str(exc))
