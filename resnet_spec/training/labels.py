"""Labels as class numbers: int64, one an example. Integers are taken as they are; floats only
when every one is a whole number (3.0, never 2.7, which ``astype`` would truncate to 2); text,
booleans, complex numbers and one-hot rows are refused with a message naming an offending index."""

from __future__ import annotations

import numpy as np

from .errors import DataError


def class_numbers(name: str, labels: object) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim > 1 and any(n != 1 for n in array.shape[1:]) and array.shape[0] != 1:
        raise DataError(f"{name}: labels of shape {array.shape} (one-hot rows?); give one class number per example")
    array = array.reshape(-1)
    kind = array.dtype.kind
    if kind in "iu":
        return array.astype(np.int64)
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
        if len(bad):
            raise DataError(f"{name}: label {bad[0]} is {array[bad[0]].item()!r}, not a whole number ({len(bad)} such labels); "
                            "labels are class numbers 0, 1, ...")  # fmt: skip
        if len(array) and np.abs(array).max() >= 2**53:
            raise DataError(f"{name}: labels up to {np.abs(array).max():g} are not class numbers")
        return array.astype(np.int64)
    what = {"U": "text", "S": "text", "O": "Python objects", "b": "booleans", "c": "complex numbers"}.get(kind, str(array.dtype))
    sample = f" ({array[0].item()!r} at index 0)" if len(array) else ""
    raise DataError(f"{name}: labels are {what}{sample}; labels are class numbers 0, 1, ... (map class names to "
                    "numbers, or use an image folder with one subfolder per class)")  # fmt: skip
