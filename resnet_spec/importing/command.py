"""``resnet-spec import-weights SPEC FILE -o OUT``: compile SPEC with weights imported from FILE.

Exit codes: 0 written; 1 the spec has errors, or FILE is refused or does not fit (one line on
standard error, no traceback); 2 usage (no backend for OUT, OUT exists without ``--force``).
Importing this module imports no framework: the backend that builds OUT and the reader FILE
needs are imported when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2

NAME = "import-weights"
HELP = "compile a spec with weights imported from a torchvision / timm / Keras / resnet-spec file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="SPEC", help="YAML or JSON spec of the network to build")
    parser.add_argument("weights", type=Path, metavar="FILE",
                        help="PyTorch .pth / .pt / .bin, .safetensors, Keras .h5 / .weights.h5 / .keras, or a resnet-spec model")  # fmt: skip
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="model file to write (.pt, .keras)"
    )
    parser.add_argument("--backend", help="backend that builds OUT (default: from OUT's suffix)")
    parser.add_argument("--classifier", choices=("import", "new", "auto"), default="import",
                        help="import the source's classifier (default), leave it new, or import it only where it fits")  # fmt: skip
    parser.add_argument("--exclude", action="append", default=[], metavar="HEAD_LAYER",
                        help="a head layer to leave new (repeatable; 'head' for all of them)")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--list", action="store_true", help="print where every layer's weights came from")
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default) or json: the written file and where every layer's weights came from")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec value before validation, e.g. --set classes=6")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from ..atomic import unwritable
    from ..backends import BackendError, WeightAccess, backend_for_file, get_backend
    from ..diagnostics import printable, render_text
    from ..pipeline import validate
    from . import import_weights

    checked = validate(Path(args.file), overrides=args.overrides)
    if checked.architecture is None or checked.document is None:
        source = checked.document.source.text if checked.document else None
        for block in render_text(checked.report.sorted(), source):
            print(block, file=sys.stderr)
        return EXIT_INVALID
    arch, output = checked.architecture, Path(args.output)
    problem = unwritable(output)  # a folder, a missing or read-only parent, /proc, a device
    if problem:
        print(f"error: {printable(problem)}", file=sys.stderr)
        return EXIT_USAGE
    if output.exists() and not args.force:
        print(f"error: {printable(output)} exists; choose another -o or pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    try:
        backend = get_backend(args.backend or backend_for_file(output))
    except BackendError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    if not isinstance(backend, WeightAccess):
        print(f"error: backend '{backend.name}' cannot set weights (no get_weights / set_weights)", file=sys.stderr)
        return EXIT_USAGE
    try:
        result = import_weights(arch, args.weights, classifier=args.classifier, exclude=args.exclude)
        model = backend.build(arch)
        backend.set_weights(model, arch, result.complete(backend.get_weights(model, arch)))
        backend.save(model, arch, checked.document.data, output)
    except BackendError as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_INVALID
    if args.format == "json":
        print(json.dumps({**result.to_json(), "output": str(output), "hash": arch.hash}, indent=2))
        return EXIT_OK
    if args.list:
        print(result.table())
    print(result.summary())
    print(printable(f"wrote {output} ({backend.name}, {arch.name}, {arch.hash[:19]})"))
    return EXIT_OK
