"""``resnet-spec evaluate``: test accuracy and confusion matrix of a trained run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import EXIT_INVALID, EXIT_OK, add_format, fail, print_json

NAME = "evaluate"
HELP = "accuracy and confusion matrix of a trained run"
EPILOG = """\
examples:
  resnet-spec evaluate runs/digits --data digits
  resnet-spec evaluate runs/r20 --data cifar-10-batches-py --format json
  resnet-spec evaluate runs/digits-torch --data digits --backend torch
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of `resnet-spec train`")
    parser.add_argument("--data", required=True, help="the data set to test on (as for `train --data`); its test part is used")
    parser.add_argument("--backend", help="the backend that evaluates the checkpoint (default: the run's)")
    add_format(parser, "{run_dir, data, accuracy, loss, confusion_matrix, class_names}")


def run(args: argparse.Namespace) -> int:
    from ..backends import BackendError
    from ..training.commands import DataError, TrainingError, evaluate, print_evaluation

    try:
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
