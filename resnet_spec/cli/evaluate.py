"""``resnet-spec evaluate``: test accuracy and confusion matrix of a trained run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_INVALID, EXIT_OK, add_format, check_input, fail, print_json, refuse_training_paths

NAME = "evaluate"
HELP = "accuracy and confusion matrix of a trained run"
EPILOG = """\
examples:
  resnet-spec evaluate runs/digits --data digits
  resnet-spec evaluate runs/r20 --data cifar-10-batches-py --format json
  resnet-spec evaluate runs/digits-torch --data digits --backend torch
  resnet-spec evaluate digits.pt --data digits          a model file `export` wrote
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="the --out folder of `resnet-spec train`, or a model file (`export`, `compile`, `convert`); "
                             "for a file, a preprocessor that fits a mean is fitted on --data's training part, as train does")  # fmt: skip
    parser.add_argument("--data", required=True, help="the data set to test on (as for `train --data`); its test part is used")
    parser.add_argument("--backend", help="the backend that evaluates the checkpoint (default: the run's, or the file suffix's)")
    add_format(parser, "{run_dir, data, accuracy, loss, confusion_matrix, class_names}")


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError
    from ..training.commands import DataError, TrainingError, evaluate, print_evaluation
    from ..training.saved import evaluate_model_file

    check_input(args.run_dir, "run directory or model file")
    if args.run_dir.is_file() or (args.run_dir.is_dir() and not (args.run_dir / "run.json").is_file()):
        refuse_training_paths(args.run_dir)
    try:
        if args.run_dir.is_file():
            evaluation, names = evaluate_model_file(args.run_dir, args.data, args.backend)
        else:
            evaluation, names = evaluate(args.run_dir, args.data, args.backend)
    except BackendError as exc:
        fail(str(exc))
    except (TrainingError, DataError) as exc:
        fail(str(exc), EXIT_INVALID)
    if args.format == "json":
        print_json({"run_dir": str(args.run_dir), "data": args.data, **evaluation.to_dict(names)})
    else:
        print_evaluation(evaluation, names, sys.stdout)  # its default stream is bound at import
    return EXIT_OK
