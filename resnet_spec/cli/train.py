"""``resnet-spec train``: train a spec from its ``training`` recipe with one backend."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path

from .common import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    add_format,
    add_overrides,
    fail,
    print_json,
    print_problems,
    validated,
)

NAME = "train"
HELP = "train a spec with a backend from its `training` recipe (docs/training.md)"
EPILOG = """\
examples:
  resnet-spec train examples/resnet_digits.yaml --backend torch --data digits --out runs/digits
  resnet-spec train examples/resnet20_cifar10.yaml --backend keras --data cifar-10-batches-py --out runs/r20
  resnet-spec train spec.yaml --backend torch --data digits --out runs/quick --epochs 2 --lr 0.05
  resnet-spec train spec.yaml --backend torch --data digits --out runs/quick --resume
  resnet-spec train spec.yaml --backend torch --data digits --out runs/tuned --init-from runs/quick --set 'training.freeze=[stem]'
  torchrun --standalone --nproc_per_node=2 -m resnet_spec.cli train spec.yaml --backend torch --data digits --out runs/ddp

--epochs N, --batch-size N and --lr X are --set training.epochs=N (dropping `iterations`),
--set training.batch_size=N and --set training.optimizer.learning_rate=X.
"""

# shorthand option -> the overrides it stands for ({} is the value)
SHORTHANDS = {
    "epochs": ("training.epochs={}", "training.iterations=null"),
    "batch_size": ("training.batch_size={}",),
    "lr": ("training.optimizer.learning_rate={}",),
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="SPEC", help="YAML or JSON spec with a `training` section")
    parser.add_argument("--backend", required=True, help="keras, torch, or an installed backend that can train")
    parser.add_argument("--data", required=True,
                        help="digits (scikit-learn's bundled 8x8 digits), a CIFAR-10/100 python-version folder, "
                             "an image folder (one sub-folder per class), .npz or .h5 (local paths only)")  # fmt: skip
    parser.add_argument("--out", type=run_dir_path, required=True, metavar="RUN_DIR",
                        help="run directory to create, new or empty (metrics, curves, checkpoints, TensorBoard "
                             "events); an existing run is refused unless --resume; locked while training")  # fmt: skip
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last intact checkpoint")
    parser.add_argument("--allow-recipe-change", action="store_true",
                        help="with --resume: continue with this spec's recipe although it differs from the run's "
                             "(recorded in run.json); without it a changed recipe is refused")  # fmt: skip
    parser.add_argument("--init-from", type=Path, metavar="MODEL_OR_RUN",
                        help="start from these weights, matched by structure: a resnet-spec model file (.pt, .keras), "
                             "a run directory (its checkpoint), or torchvision / timm / Keras weights (.pth, "
                             ".safetensors, .h5); a classifier of other classes starts fresh (docs/importing.md)")  # fmt: skip
    parser.add_argument("--epochs", type=int, help="train this many epochs (instead of the recipe's epochs or iterations)")
    parser.add_argument("--batch-size", type=int, help="images per optimizer step (the recipe's training.batch_size)")
    parser.add_argument("--lr", type=float, metavar="RATE", help="base learning rate (the recipe's training.optimizer.learning_rate)")
    parser.add_argument("--device", choices=("auto", "cpu", "gpu"), help="where to train (default: the recipe's, else auto)")
    parser.add_argument("--mixed-precision", choices=("none", "float16", "bfloat16"),
                        help="compute in a 16-bit type with float32 weights (default: the recipe's, else none)")  # fmt: skip
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="NHWC memory format for torch (default: the recipe's)")  # fmt: skip
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile / XLA jit_compile (default: the recipe's)")  # fmt: skip
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps (smoke runs)")
    parser.add_argument("--checkpoint-every", type=int, metavar="N",
                        help="also checkpoint every N steps, mid-epoch too (the recipe's training.checkpoint_every)")  # fmt: skip
    parser.add_argument("--workers", type=int, metavar="N",
                        help="input-pipeline workers (DataLoader processes / tf.data threads; default: one per core, "
                             "at most 8; results do not depend on it)")  # fmt: skip
    parser.add_argument("--workers-local", type=int, metavar="N",
                        help="data-parallel over N local processes: torchrun for torch, tf.distribute multi-worker "
                             "for keras (TF_CONFIG written for you)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (epoch lines are still printed)")
    add_format(parser, "the run's result: test accuracy, loss, confusion matrix with class names, where its files are")
    add_overrides(parser)


def run_dir_path(text: str) -> Path:
    """--out's value: an empty one would train into the current directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty RUN_DIR; name the folder to create, e.g. --out runs/first")
    return Path(text)


def overrides_of(args: argparse.Namespace) -> list[str]:
    """--set values first, then the shorthands, so that a shorthand wins."""
    found = list(args.overrides)
    for option, templates in SHORTHANDS.items():
        value = getattr(args, option)
        if value is not None:
            found += [t.format(repr(value)) for t in templates]
    return found


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError
    from ..importing.safety import WeightsImportError
    from ..training.commands import (
        DataError,
        TrainingError,
        TrainingInterrupted,
        check_before_launch,
        is_leader,
        print_evaluation,
        train,
    )
    from ..training.launch import COMMAND_VARIABLE, local_workers, without_option

    result = validated(args.file, overrides_of(args))
    if result.architecture is None or result.document is None:
        print_problems(result)
        return EXIT_INVALID
    execution = {"device": args.device, "mixed_precision": args.mixed_precision, "channels_last": args.channels_last,
                 "compile": args.compile, "workers": args.workers}  # fmt: skip
    typed = json.loads(os.environ[COMMAND_VARIABLE]) if COMMAND_VARIABLE in os.environ else sys.argv[1:]
    hint = shlex.join(["resnet-spec", *typed, *([] if "--resume" in typed else ["--resume"])])
    # With --format json, standard output holds the JSON alone: epoch lines go to standard error.
    report = contextlib.redirect_stdout(sys.stderr) if args.format == "json" else contextlib.nullcontext()
    try:
        if args.workers_local:  # checked here once, then every worker starts the run
            check_before_launch(result.architecture, backend=args.backend, source=args.data, out=args.out,
                                resume=args.resume, allow_recipe_change=args.allow_recipe_change)  # fmt: skip
            return local_workers(args.workers_local, args.backend, without_option(sys.argv[1:], "--workers-local"),
                                 sys.argv[1:])  # fmt: skip
        with report:
            evaluation = train(
                result.architecture, result.document.data, backend=args.backend, source=args.data, out=args.out,
                resume=args.resume, execution=execution, max_steps=args.max_steps, progress=not args.no_progress,
                checkpoint_every=args.checkpoint_every, resume_hint=hint, init_from=args.init_from,
                allow_recipe_change=args.allow_recipe_change,
            )  # fmt: skip
    except WeightsImportError as exc:  # --init-from: the file is refused or does not fit the spec
        fail(str(exc), EXIT_INVALID)
    except BackendError as exc:
        fail(str(exc))
    except TrainingInterrupted as exc:  # a checkpoint was saved; the message says how to resume
        if is_leader():
            print(str(exc), file=sys.stderr)
        return EXIT_INTERRUPTED
    except (TrainingError, DataError) as exc:
        fail(str(exc), EXIT_INVALID)
    except OSError as exc:  # a full disk, a folder made read-only while training
        fail(f"{exc.filename or args.out}: {exc.strerror or exc} (training into {args.out}); its last checkpoint stays",
             EXIT_INVALID)  # fmt: skip
    if not is_leader():  # another torchrun rank: rank 0 reports
        return EXIT_OK
    outcome = json.loads((args.out / "result.json").read_text())
    if args.format == "json":
        print_json({"run_dir": str(args.out), **outcome})
        return EXIT_OK
    print_evaluation(evaluation, outcome.get("class_names") or [], sys.stdout)  # its default stream is bound at import
    print(f"run directory: {args.out} (curves.png, metrics.csv, checkpoint/, TensorBoard events)")
    return EXIT_OK
