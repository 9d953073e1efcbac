"""TensorBoard scalar event files, written without TensorFlow or tensorboard.

tensorboard's own ``EventFileWriter`` imports TensorFlow when it writes (through
``tensorboard.compat.tf``: seconds of start-up and hundreds of MB in a PyTorch run), and
``torch.utils.tensorboard`` does too. Scalars need little: an event file is a TFRecord file
(per record: little-endian uint64 length, masked CRC-32C of those 8 bytes, the bytes, their
masked CRC-32C) of ``tensorflow.Event`` protocol buffers, encoded here by hand:

    Event   {double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5}
    Summary {repeated Value value = 1}
    Value   {string tag = 1; float simple_value = 2}
"""

from __future__ import annotations

import socket
import struct
import time
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)  # Castagnoli polynomial, reflected
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _varint(value: int) -> bytes:
    value &= 0xFFFFFFFFFFFFFFFF  # int64 fields: negatives are ten-byte two's complement
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): strings and embedded messages."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int, *, file_version: str | None = None,
                 scalars: dict[str, float] | None = None) -> bytes:  # fmt: skip
    out = _varint(1 << 3 | 1) + struct.pack("<d", wall_time) + _varint(2 << 3 | 0) + _varint(step)
    if file_version is not None:
        out += _field(3, file_version.encode())
    if scalars:
        values = b"".join(
            _field(1, _field(1, tag.encode()) + _varint(2 << 3 | 5) + struct.pack("<f", value))
            for tag, value in scalars.items()
        )
        out += _field(5, values)
    return out


class EventWriter:
    """Appends scalar summaries to ``FOLDER/events.out.tfevents.<time>.<host>``. The file is
    opened for each (per-epoch) write, so TensorBoard sees every epoch as it ends and a killed
    run leaves no unflushed buffer behind."""

    def __init__(self, folder: Path) -> None:
        now = time.time()
        self.path = Path(folder) / f"events.out.tfevents.{int(now)}.{socket.gethostname()}"
        self._append(encode_event(now, 0, file_version="brain.Event:2"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._append(encode_event(time.time(), step, scalars=values))

    def _append(self, event: bytes) -> None:
        with open(self.path, "ab") as handle:
            handle.write(record(event))
