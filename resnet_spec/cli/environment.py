"""The process around a command: the frameworks' start-up logging, and what to install when an
optional package is missing."""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
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
    if root not in OPTIONAL_PACKAGES:
        return None
    distribution, extra = OPTIONAL_PACKAGES[root]
    return f"this needs {distribution} (module {root}), which is not installed: pip install 'resnet-spec[{extra}]'"


# -- framework start-up logging -------------------------------------------------------------------

# What TensorFlow's C++ side prints while it loads, before its log level applies: absl's
# pre-initialisation banner, I/W-prefixed info lines (oneDNN notice, CUDA stub, CPU features)
# and the CPU-feature line's continuation.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] "
    r"|E\d{4} [\d:.]+ +\d+ [\w.\-]+:\d+\] .*(cuInit|cuda drivers|cuDNN|cuFFT|cuBLAS|CUDA)"
    r"|To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.)"
)


def quiet_frameworks() -> None:
    """Hide the frameworks' start-up chatter (``--verbose`` keeps it). Variables a user set win."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # cuInit errors and the like, after start-up
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    logging.getLogger("absl").setLevel(logging.ERROR)  # absl's Python warnings (keras saving notes)
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))


class _QuietImport(importlib.abc.MetaPathFinder):
    """Filters standard error while ``name`` is first imported (its shared libraries log as they
    load, through the file descriptor, so only a descriptor-level filter catches them)."""

    def __init__(self, name: str):
        self.name = name
        self._finding = False

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        # Also asked by importlib.util.find_spec (backends check that a framework is installed
        # without importing it), so it stays until the import itself; the real finders answer.
        if fullname != self.name or self._finding:
            return None
        self._finding = True
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            self._finding = False
        if spec is not None and spec.loader is not None:
            spec.loader = _FilteredLoader(spec.loader, self)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, finder: _QuietImport):
        self._loader, self._finder = loader, finder

    def __getattr__(self, name: str) -> Any:  # resource readers and the like: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)  # imported once: the hook's work is done
        with filtered_stderr(_NOISE):
            self._loader.exec_module(module)


@contextlib.contextmanager
def filtered_stderr(noise: re.Pattern[str]) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file, then pass on every line that is not noise."""
    try:
        saved = os.dup(2)
    except OSError:  # no standard error at all: nothing to filter
        yield
        return
    sys.stderr.flush()
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not noise.search(line)]  # fmt: skip
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
