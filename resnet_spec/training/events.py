"""TensorBoard scalar event files, written with tensorboardX's event writer (a well-kept library
that needs neither TensorFlow nor tensorboard: tensorboard's own ``EventFileWriter`` and
``torch.utils.tensorboard`` import TensorFlow, seconds and hundreds of MB in a PyTorch run).

tensorboardX's synchronous ``EventsWriter`` is used rather than its ``SummaryWriter``, whose
background thread may still hold events when ``flush`` returns: here every epoch's scalars are
in the file when the epoch is logged, so a killed run loses nothing it logged. On resume the
earlier event files are cut back as ``metrics.csv`` is (:func:`truncate`: the records of steps
after the checkpoint are removed, the file rewritten atomically), and the resumed run's own file
starts with TensorBoard's purge marker (a ``SessionLog.START`` at the resumed step: tensorboardX's
``purge_step``), so that a reader that kept an old copy hides them as well.

tensorboardX's package imports torch only to accept torch tensors (this module passes floats); a
Keras run that has not loaded torch imports it with torch blocked, keeping torch out of it."""

from __future__ import annotations

import itertools
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any, cast

from ..atomic import atomic_path

_COUNTER = itertools.count()


def _tensorboardx() -> Any:
    if "tensorboardX" not in sys.modules and "torch" not in sys.modules:
        cast(Any, sys.modules)["torch"] = None  # makes `import torch` raise ImportError
        try:
            import tensorboardX
        finally:
            del sys.modules["torch"]
    import tensorboardX.event_file_writer
    import tensorboardX.proto.event_pb2
    import tensorboardX.summary

    return tensorboardX


class EventWriter:
    """Appends scalars to a new ``FOLDER/events.out.tfevents.*`` file (its name unique to this
    process and writer: tensorboardX truncates a file of the same name)."""

    def __init__(self, folder: Path, purge_step: int | None = None) -> None:
        tbx = _tensorboardx()
        self._proto = tbx.proto.event_pb2
        self._summary = tbx.summary
        suffix = f".{os.getpid()}.{next(_COUNTER)}"
        self._writer = tbx.event_file_writer.EventsWriter(str(Path(folder) / "events"), filename_suffix=suffix)
        if purge_step is not None:
            start = self._proto.SessionLog(status=self._proto.SessionLog.START)
            self._writer.write_event(self._proto.Event(wall_time=time.time(), step=purge_step, session_log=start))
        self._writer.flush()

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for tag, value in values.items():
            event = self._proto.Event(wall_time=time.time(), step=step, summary=self._summary.scalar(tag, value))
            self._writer.write_event(event)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def truncate(folder: Path, step: int) -> int:
    """Remove from every event file in ``folder`` the events of steps after ``step`` (and a
    record cut short by a kill); the number of events removed. Records are copied byte for byte
    (their CRCs stay valid); a file is rewritten only when something goes."""
    proto = _tensorboardx().proto.event_pb2
    removed = 0
    for file in sorted(Path(folder).glob("events.out.tfevents.*")):
        data = file.read_bytes()
        kept, dropped = [], 0
        for record, payload in _records(data):
            event = proto.Event.FromString(payload)
            if event.step > step and not event.HasField("file_version"):
                dropped += 1
            else:
                kept.append(record)
        if dropped or sum(map(len, kept)) != len(data):
            with atomic_path(file) as tmp:
                tmp.write_bytes(b"".join(kept))
            removed += dropped
    return removed


def _records(data: bytes) -> list[tuple[bytes, bytes]]:
    """(record, payload) of every whole TFRecord in ``data``: length (8 bytes), its CRC (4), the
    payload, its CRC (4). A truncated tail is left out."""
    out, at = [], 0
    while at + 12 <= len(data):
        (length,) = struct.unpack("<Q", data[at:at + 8])
        end = at + 12 + length + 4
        if end > len(data):
            break
        out.append((data[at:end], data[at + 12:at + 12 + length]))
        at = end
    return out
