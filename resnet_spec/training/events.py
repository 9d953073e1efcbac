"""TensorBoard scalar event files, written by tensorboardX (a well-kept writer that needs neither
TensorFlow nor tensorboard: tensorboard's own ``EventFileWriter`` and ``torch.utils.tensorboard``
import TensorFlow, seconds and hundreds of MB in a PyTorch run).

tensorboardX's writer module imports torch only to accept torch tensors (this module passes
floats); a Keras run that has not loaded torch imports tensorboardX with torch blocked, so it
stays out of that process too."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, cast


def summary_writer(folder: Path, purge_step: int | None = None) -> Any:
    """A ``tensorboardX.SummaryWriter`` appending to a new event file in ``folder``; with
    ``purge_step``, TensorBoard discards what earlier files logged at that step and after (a
    resumed run replaces them)."""
    if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
        cast(Any, sys.modules)["torch"] = None  # makes `import torch` raise ImportError
        try:
            import tensorboardX
        finally:
            del sys.modules["torch"]
    import tensorboardX

    return tensorboardX.SummaryWriter(str(folder), purge_step=purge_step, flush_secs=10)


class EventWriter:
    """Scalars by step; flushed after every write, so TensorBoard sees each epoch as it ends and a
    killed run loses nothing that was logged."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        self._writer = summary_writer(folder, purge_step)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()
