"""The ``resnet-spec`` command line.

Exit codes: 0 success (every spec valid), 1 a spec or model has problems, 2 usage errors.
``validate``, ``summary``, ``schema``, ``codes`` and ``backends`` never import a deep-learning
framework; ``compile`` and ``load`` import only the backend they use.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .diagnostics import CODES, render_json, render_text
from .pipeline import Result, validate

EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="resnet-spec", description="Declarative ResNet specs: validate, summarize, compile.")
    parser.add_argument("--version", action="version", version=f"resnet-spec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("validate", help="check spec files; exit 1 if any has errors")
    p.add_argument("files", nargs="+", metavar="FILE", help="YAML or JSON spec ('-' for standard input)")
    _add_overrides(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing for valid files")
    p.set_defaults(run=cmd_validate)

    p = sub.add_parser("summary", help="per-block table of shapes, parameters and MACs")
    p.add_argument("file", metavar="FILE")
    _add_overrides(p)
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--nodes", action="store_true", help="one row per graph node instead of per block")
    p.set_defaults(run=cmd_summary)

    p = sub.add_parser("schema", help="print the JSON Schema of the spec language")
    p.add_argument("--write", metavar="REPO", type=Path, help="regenerate the committed schema files under REPO")
    p.set_defaults(run=cmd_schema)

    p = sub.add_parser("codes", help="list the diagnostic codes")
    p.add_argument("--markdown", action="store_true", help="the catalogue as a Markdown table (docs/diagnostics.md)")
    p.set_defaults(run=cmd_codes)

    p = sub.add_parser("backends", help="list installed backends")
    p.set_defaults(run=cmd_backends)

    p = sub.add_parser("compile", help="compile a spec into a saved native model")
    p.add_argument("file", metavar="SPEC")
    p.add_argument("--backend", required=True, help="keras, torch, or an installed third-party backend")
    p.add_argument("-o", "--output", type=Path, help="model file to write (default: SPEC name + backend suffix)")
    p.add_argument("--print", dest="print_summary", action="store_true", help="print the framework's own summary")
    _add_overrides(p)
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("load", help="load a saved model, check its spec hash, print its summary")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--backend", help="default: from the file suffix")
    p.set_defaults(run=cmd_load)

    from .parity.command import add_arguments as add_parity_arguments  # framework-free

    p = sub.add_parser("parity", help="build the spec in two backends, share weights, compare layer by layer")
    add_parity_arguments(p)
    _add_overrides(p)
    p.set_defaults(run=cmd_parity)

    p = sub.add_parser("train", help="train a spec with a backend from its `training` recipe")
    p.add_argument("file", metavar="SPEC")
    p.add_argument("--backend", required=True)
    p.add_argument("--data", required=True, help="digits, a CIFAR directory, an image folder, .npz or .h5 (local paths only)")
    p.add_argument("--out", type=Path, required=True, metavar="RUN_DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--device", choices=("auto", "cpu", "gpu"))
    p.add_argument("--mixed-precision", choices=("none", "float16", "bfloat16"))
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile / XLA jit_compile")
    p.add_argument("--max-steps", type=int, help="stop after this many steps (smoke runs)")
    p.add_argument("--no-progress", action="store_true")
    _add_overrides(p)
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("demo", help="the quick-start job: train examples/resnet_digits.yaml on the bundled digits in both backends")
    p.add_argument("--out", type=Path, default=Path("runs"), help="parent folder of the run directories (default runs/)")
    p.add_argument("--backends", default="keras,torch")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a trained run")
    p.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    p.add_argument("--data", required=True)
    p.add_argument("--backend", help="default: the run's backend")
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("convert", help="convert a saved model to another backend, weights and norm statistics included")
    p.add_argument("model", type=Path, metavar="MODEL")
    p.add_argument("--to", required=True, dest="target", help="target backend")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.set_defaults(run=cmd_convert)
    return parser


def _add_overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a value before validation, e.g. --set stages.1.shortcut=projection --set depth=56",
    )  # fmt: skip


def _validated(path: str, overrides: Sequence[str]) -> Result:
    return validate(Path(path) if path != "-" else "-", overrides=overrides)  # type: ignore[arg-type]


def _print_problems(result: Result, stream: Any = sys.stderr) -> None:
    source = result.document.source.text if result.document else None
    for block in render_text(result.report.sorted(), source):
        print(block, file=stream)


def cmd_validate(args: argparse.Namespace) -> int:
    results = {name: _validated(name, args.overrides) for name in args.files}
    if args.format == "json":
        out = [
            {"file": name, "valid": r.ok, "hash": r.architecture.hash if r.architecture else None,
             "diagnostics": json.loads(render_json(r.report.sorted()))}
            for name, r in results.items()
        ]  # fmt: skip
        print(json.dumps(out, indent=2))
    else:
        for name, result in results.items():
            if result.ok:
                if not args.quiet:
                    arch = result.architecture
                    assert arch is not None
                    print(f"{name}: ok ({arch.params_trainable:,} trainable parameters, {arch.macs / 1e9:.3f} GMACs)")
            else:
                _print_problems(result, sys.stdout)
                count = len(result.report.errors)
                print(f"{name}: {count} error{'s' if count != 1 else ''}")
    return EXIT_OK if all(r.ok for r in results.values()) else EXIT_INVALID


def cmd_summary(args: argparse.Namespace) -> int:
    from .summary import to_json, to_text

    result = _validated(args.file, args.overrides)
    if not result.ok or result.architecture is None:
        _print_problems(result)
        return EXIT_INVALID
    if args.format == "json":
        print(json.dumps(to_json(result.architecture), indent=2))
    else:
        print(to_text(result.architecture, per_node=args.nodes))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from . import schema

    if args.write:
        for path in schema.write(args.write):
            print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK
    sys.stdout.write(schema.packaged_text())
    return EXIT_OK


def cmd_codes(args: argparse.Namespace) -> int:
    if args.markdown:
        from .diagnostics import catalogue_markdown

        sys.stdout.write(catalogue_markdown())
        return EXIT_OK
    for code, info in CODES.items():
        print(f"{code}  {info.title}: {info.explanation}")
    return EXIT_OK


def cmd_backends(args: argparse.Namespace) -> int:
    from .backends import available, get_backend

    for name, info in sorted(available().items()):
        try:
            get_backend(name)
            status = "ready"
        except Exception as exc:  # noqa: BLE001 -- a broken third-party plugin must not break the listing
            status = f"unavailable: {exc}"
        print(f"{name:10s} {info.value:40s} {status}")
    return EXIT_OK


def cmd_compile(args: argparse.Namespace) -> int:
    from .backends import BackendError, get_backend

    result = _validated(args.file, args.overrides)
    if result.architecture is None or result.document is None:
        _print_problems(result)
        return EXIT_INVALID
    try:
        backend = get_backend(args.backend)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    arch = result.architecture
    output = args.output or Path(Path(args.file).stem + backend.suffix)
    model = backend.build(arch)
    backend.save(model, arch, result.document.data, output)
    if args.print_summary:
        print(backend.framework_summary(model))
    trainable, non_trainable = backend.count_params(model)
    print(f"wrote {output} ({args.backend}: {trainable:,} trainable, {non_trainable:,} non-trainable parameters; {arch.hash[:19]})")
    return EXIT_OK


def cmd_load(args: argparse.Namespace) -> int:
    from .backends import BackendError, backend_for_file, get_backend

    if not args.model.exists():
        print(f"error: {args.model}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        backend = get_backend(args.backend or backend_for_file(args.model))
        model, meta = backend.load(args.model)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(backend.framework_summary(model))
    print(f"spec hash {meta['hash']} verified")
    return EXIT_OK


def cmd_parity(args: argparse.Namespace) -> int:
    """Exit status: 0 same function, 1 different (or the spec does not validate), 2 usage
    (resnet_spec.parity.command)."""
    from .parity.command import run_command

    return run_command(args, _validated(args.file, args.overrides), _print_problems)


def cmd_train(args: argparse.Namespace) -> int:
    from .backends import BackendError
    from .training.commands import TrainingError, is_leader, print_evaluation, train
    from .training.data import DataError

    result = _validated(args.file, args.overrides)
    if result.architecture is None or result.document is None:
        _print_problems(result)
        return EXIT_INVALID
    execution = {"device": args.device, "mixed_precision": args.mixed_precision, "channels_last": args.channels_last,
                 "compile": args.compile}  # fmt: skip
    try:
        evaluation = train(
            result.architecture, result.document.data, backend=args.backend, source=args.data, out=args.out,
            resume=args.resume, execution=execution, max_steps=args.max_steps, progress=not args.no_progress,
        )  # fmt: skip
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (TrainingError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not is_leader():  # another torchrun rank: rank 0 reports
        return EXIT_OK
    print_evaluation(evaluation, [])
    print(f"run directory: {args.out} (curves.png, metrics.csv, checkpoint/, TensorBoard events)")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Validate every example, then train the small digits ResNet with each backend."""
    import shutil
    import time

    from .training.commands import train

    spec_path = Path(__file__).resolve().parent.parent / "examples" / "resnet_digits.yaml"
    if not spec_path.exists():
        print("error: examples/resnet_digits.yaml not found (run the demo from a clone of the repository)", file=sys.stderr)
        return EXIT_USAGE
    examples = sorted(spec_path.parent.glob("*.yaml"))
    valid = sum(validate(p).ok for p in examples)
    print(f"validated {valid}/{len(examples)} example specs")
    result = validate(spec_path)
    assert result.architecture is not None and result.document is not None
    failed = valid != len(examples)
    for backend in args.backends.split(","):
        out = args.out / f"digits-{backend}"
        if out.exists():
            shutil.rmtree(out)  # the demo always starts fresh
        start = time.perf_counter()
        evaluation = train(result.architecture, result.document.data, backend=backend, source="digits", out=out)
        seconds = time.perf_counter() - start
        print(f"{backend}: test accuracy {evaluation.accuracy:.2%} in {seconds:.0f} s; "
              f"curves {out / 'curves.png'}, checkpoint {out / 'checkpoint'}, metrics {out / 'metrics.csv'}")  # fmt: skip
        failed |= evaluation.accuracy < 0.97
    return EXIT_INVALID if failed else EXIT_OK


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .backends import BackendError
    from .training.commands import TrainingError, evaluate, print_evaluation
    from .training.data import DataError

    try:
        evaluation, names = evaluate(args.run_dir, args.data, args.backend)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (TrainingError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print_evaluation(evaluation, names)
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from . import parity
    from .backends import BackendError, backend_for_file, get_backend
    from .pipeline import build_architecture

    if not args.model.exists():
        print(f"error: {args.model}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        source_name = backend_for_file(args.model)
        model, meta = get_backend(source_name).load(args.model)
        arch = build_architecture(meta["spec"])
        target = get_backend(args.target)
        converted = target.build(arch)
        parity.transfer(model, source_name, converted, args.target, arch)
        target.save(converted, arch, meta["spec"], args.output)
    except BackendError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(f"wrote {args.output} ({source_name} -> {args.target}, {arch.hash[:19]})")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
