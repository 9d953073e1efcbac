"""Specs and jobs shared by the data-parallel tests (tests/test_ddp.py, tests/test_train_keras_multiworker.py):
tiny digits networks whose global batch splits unevenly over two processes."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import resnet_spec
from resnet_spec.training import data
from resnet_spec.training.job import TrainingJob
from resnet_spec.training.run_dir import RunDir

TRAINING: dict[str, Any] = {
    "batch_size": 45, "iterations": 5,  # 45 = 23 + 22 examples per rank: uneven halves
    "optimizer": {"kind": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-3},
    "loss": {"label_smoothing": 0.1}, "augmentation": {"random_crop_padding": 1, "horizontal_flip": True},
    "preprocessing": {"mode": "scale", "scale": 0.0625}, "seed": 1, "tensorboard": False,
}  # fmt: skip
# No norms, no dropout: a function of the whole batch that splits exactly over ranks.
PLAIN: dict[str, Any] = {
    "version": 1, "input": {"height": 8, "width": 8, "channels": 1}, "classes": 10,
    "defaults": {"conv_bias": True, "kernel_l2": 1e-4},
    "blocks": {"plain": {"layers": [{"type": "conv"}, {"type": "activation"}, {"type": "conv"}], "shortcut": "identity"}},
    "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "activation"}],
    "stages": [{"block": "plain", "blocks": 1, "filters": 8}],
    "training": TRAINING,
}  # fmt: skip
NORMS: dict[str, Any] = {
    "version": 1, "input": {"height": 8, "width": 8, "channels": 1}, "classes": 10,
    "stem": [{"type": "conv", "filters": 8, "kernel_size": 3}, {"type": "norm"}, {"type": "activation"}],
    "stages": [{"block": "basic", "blocks": 1, "filters": 8}],
    "head": {"layers": [{"type": "global_avg_pool"}, {"type": "dropout", "rate": 0.2}]},
    "training": {**TRAINING, "iterations": 3},
}  # fmt: skip
# PLAIN for the digits written as PNG files (values x 15: tests/image_folders.digits_folder), with
# random-resized crops as well: each rank decodes only its shard of every global batch.
FOLDER: dict[str, Any] = copy.deepcopy(PLAIN)
FOLDER["training"].update(preprocessing={"mode": "scale", "scale": 1 / 240}, execution={"workers": 1},
                          augmentation={**TRAINING["augmentation"], "random_resized_crop": {"scale": [0.5, 1.0]}})  # fmt: skip


def make_job(out: Path, spec: dict[str, Any], source: str = "digits", **kwargs: Any) -> TrainingJob:
    arch = resnet_spec.build_architecture(spec)
    return TrainingJob.prepare(arch, data.load(source, arch.spec), RunDir(out, tensorboard=False), spec_data=spec,
                               progress=False, **kwargs)  # fmt: skip
