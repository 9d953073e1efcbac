"""The process around a command: the frameworks' start-up logging, and what to install when an
optional package is missing."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

# module -> (distribution, extra of resnet-spec that installs it). A test checks each against
# pyproject.toml, so a hint never names an extra that does not hold the package.
OPTIONAL_PACKAGES: dict[str, tuple[str, str]] = {
    "torch": ("torch", "torch"),
    "tensorflow": ("tensorflow", "keras"),
    "keras": ("keras", "keras"),
    "sklearn": ("scikit-learn", "train"),
    "h5py": ("h5py", "train"),
    "PIL": ("pillow", "train"),
    "matplotlib": ("matplotlib", "train"),
    "tensorboard": ("tensorboard", "train"),
    "tensorboardX": ("tensorboardX", "train"),
    "tqdm": ("tqdm", "train"),
    "torchvision": ("torchvision", "references"),
    "timm": ("timm", "references"),
    "safetensors": ("safetensors", "references"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnx"),
    "onnxscript": ("onnxscript", "onnx"),
    "jax": ("jax", "jax"),
    "jaxlib": ("jax", "jax"),
}


def missing_package_hint(exc: ModuleNotFoundError) -> str | None:
    """One line naming the extra that installs the missing module, or None for a module that no
    extra provides (then the error is a bug, and its traceback should be seen)."""
    root = (exc.name or "").split(".")[0]
    if root not in OPTIONAL_PACKAGES or (exc.name != root and _installed(root)):
        return None  # a module missing inside an installed package is a broken install, not a missing extra
    distribution, extra = OPTIONAL_PACKAGES[root]
    return f"this needs {distribution} (module {root}), which is not installed: pip install 'resnet-spec[{extra}]'"


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# -- framework start-up logging -------------------------------------------------------------------

# What TensorFlow's C++ side prints as it loads and finds its devices, through file descriptor 2
# and partly before its log level applies (so TF_CPP_MIN_LOG_LEVEL alone does not hide it, and
# under load not even the cuInit error): absl's pre-initialisation banner, I/W-prefixed info
# lines (oneDNN notice, CUDA stub, CPU features), the CPU-feature line's continuation, and the
# CUDA errors of a machine without a GPU.
_NOISE = re.compile(
    rb"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    rb"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] "
    rb"|E\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] .*(cuInit|cuda drivers|cuDNN|cuFFT|cuBLAS|CUDA)"
    rb"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)
_MAY_BE_NOISE = (b"I", b"W", b"E", b"T")  # first letters of noise lines: such a partial line waits for its end


@contextlib.contextmanager
def quiet_frameworks() -> Iterator[None]:
    """Hide the frameworks' start-up chatter while a command runs (``--verbose`` keeps it).

    Environment variables a user set win. From the moment TensorFlow is looked for (imported, or
    checked for by a backend), standard error passes through :class:`_LineFilter` until the
    command ends."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)  # absl's Python warnings (keras saving notes)
    filter_ = _LineFilter(_NOISE)
    hook = _OnFirstLookUp("tensorflow", filter_.start)
    if "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, hook)
    try:
        yield
    finally:
        if hook in sys.meta_path:
            sys.meta_path.remove(hook)
        filter_.stop()


class _OnFirstLookUp(importlib.abc.MetaPathFinder):
    """Calls ``action`` the first time ``name`` is looked for; finds nothing itself."""

    def __init__(self, name: str, action: Callable[[], None]):
        self.name, self.action, self.done = name, action, False

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> None:
        # Stays in sys.meta_path until the command ends: removing it here, while the import
        # system iterates over that list, would skip the finder after it.
        if fullname == self.name and not self.done:
            self.done = True
            self.action()


class _LineFilter:
    """Routes file descriptor 2 through a pipe; a thread passes on every line that is not noise.
    Descriptor level, because shared libraries and child processes write there directly.
    Partial lines that cannot be noise (a progress bar's ``\\r`` updates) pass at once."""

    def __init__(self, noise: re.Pattern[bytes]):
        self.noise = noise
        self.saved: int | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            sys.stderr.flush()
            self.saved = os.dup(2)
            read, write = os.pipe()
            os.dup2(write, 2)
            os.close(write)
        except OSError:  # no standard error to filter
            self.saved = None
            return
        self.thread = threading.Thread(target=self._pump, args=(read, self.saved), daemon=True, name="stderr-filter")
        self.thread.start()

    def stop(self) -> None:
        if self.saved is None:
            return
        sys.stderr.flush()
        os.dup2(self.saved, 2)  # the pipe's last write end closes (unless a child process still holds it)
        if self.thread is not None:
            self.thread.join(timeout=10)
        self.saved = None

    def _pump(self, read: int, out: int) -> None:
        pending = b""
        while chunk := os.read(read, 65536):
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            kept = [line + b"\n" for line in lines if not self.noise.search(line)]
            if pending and not pending.startswith(_MAY_BE_NOISE):
                kept.append(pending)
                pending = b""
            if kept:
                os.write(out, b"".join(kept))
        if pending and not self.noise.search(pending):
            os.write(out, pending)
        os.close(read)
        os.close(out)
