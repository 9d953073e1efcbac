"""Cross-framework parity: build one spec in two backends, give both the same weights, feed the
same batches, and compare layer by layer.

Five checks, each per graph node and in graph order, so the first diverging layer is named:

* ``eval``: eval-mode output of every node;
* ``train_forward``: one train-mode forward (norms on batch statistics) and the norm statistics
  it leaves behind (``norm_stats``);
* ``gradients``: d loss / d weight at the shared starting weights;
* ``weights_after``: weights after K steps of SGD with momentum and weight decay.

The probe's exact meaning is in :class:`resnet_spec.backends.WeightAccess`. Frameworks are
reached only through the backend registry; nothing here imports one. The package:
:mod:`.engine` (the run and its precision decisions), :mod:`.sides` (one backend's tasks,
recorded or compared node by node), :mod:`.rows` (one node's rows, kink flips, hazards),
:mod:`.spill` (results waiting for the other side), :mod:`.stream` (what a streaming backend
probe hands out), :mod:`.report` (the report, its text and JSON), :mod:`.junit` (JUnit XML).
"""

from .engine import CALIBRATED, SettingsError, run, transfer
from .junit import junit_xml, write_junit
from .report import CHECKS, PROBE_CHECKS, Difference, Hazard, ParityReport, Tolerances, render_text
from .rows import LOGITS, SMALL_NORM_GROUP, compare, float32_hazards, hazards, kink_flips, norm_group

__all__ = [
    "CALIBRATED",
    "CHECKS",
    "LOGITS",
    "PROBE_CHECKS",
    "SMALL_NORM_GROUP",
    "Difference",
    "Hazard",
    "ParityReport",
    "SettingsError",
    "Tolerances",
    "compare",
    "float32_hazards",
    "hazards",
    "junit_xml",
    "kink_flips",
    "norm_group",
    "render_text",
    "run",
    "transfer",
    "write_junit",
]
