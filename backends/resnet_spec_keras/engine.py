"""Which Keras 3 engine (``KERAS_BACKEND``) this process runs on, found without importing Keras.

Keras picks its engine once, when it is first imported: the ``KERAS_BACKEND`` environment
variable, else the ``backend`` of ``$KERAS_HOME/keras.json`` (``~/.keras/keras.json``), else
TensorFlow. resnet-spec's Keras backend runs on two of Keras' engines:

* ``tensorflow``: everything (compile, load, convert, parity, train, evaluate, import-weights);
* ``jax``: compile, load, convert, summary, import-weights and parity; not ``train`` or
  ``evaluate`` (the training session and the predictor are written for TensorFlow:
  ``tf.function``, ``tf.distribute``, ``tf.data``), which say so in one line before a run starts.
  Parity's float64 needs JAX's 64-bit mode, which :func:`enable_float64` turns on.

Any other engine (``torch``, ``numpy``, ``openvino``) is refused with one line naming these.
On JAX nothing resnet-spec runs imports TensorFlow, even where it is installed
(:func:`without_tensorflow_probe`; tests/test_keras_jax.py checks it).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from resnet_spec.backends import BackendError

ENGINES = ("tensorflow", "jax")
TRAINS_ON = ("tensorflow",)


def current() -> str:
    """The engine Keras uses (or will use once imported) in this process."""
    keras = sys.modules.get("keras")
    if keras is not None and hasattr(keras, "backend") and hasattr(keras.backend, "backend"):
        return str(keras.backend.backend())
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    try:
        config = json.loads((home / "keras.json").read_text())
    except (OSError, ValueError):
        return "tensorflow"
    found = config.get("backend") if isinstance(config, dict) else None
    return found if isinstance(found, str) and found else "tensorflow"


def framework_module() -> str:
    """The module the engine needs installed (what ``resnet-spec backends`` checks)."""
    name = current()
    return name if name in ENGINES else "tensorflow"


def require() -> str:
    """The engine, or a one-line error when resnet-spec cannot run on it."""
    name = current()
    if name not in ENGINES:
        raise BackendError(
            f"KERAS_BACKEND is {name!r}; resnet-spec's keras backend runs on {' or '.join(ENGINES)}: "
            f"set KERAS_BACKEND=tensorflow or KERAS_BACKEND=jax"
        )
    return name


def require_training() -> None:
    name = require()
    if name not in TRAINS_ON:
        raise BackendError(
            f"the keras backend trains and evaluates on the {' or '.join(TRAINS_ON)} engine only, and KERAS_BACKEND "
            f"is {name!r}: run this with KERAS_BACKEND=tensorflow (compile, load, convert and parity run on {name})"
        )


def enable_float64() -> None:
    """Make float64 mean float64 on JAX, before a float64 model is built.

    Two things stand in the way. JAX computes in float32 unless its 64-bit mode is on (and
    Keras then makes float64 variables float32 without a word). And Keras' type promotion
    (``keras.backend.result_type``) maps every float64 result to float32 on engines other than
    TensorFlow, "aligned with JAX's default", i.e. with the 64-bit mode off: so
    ``BatchNormalization`` (which computes in ``result_type(inputs, "float32")``) would
    normalize a float64 model's tensors in float32. With the mode on, JAX promotes float64 to
    float64, and Keras' table entry is set to agree. Float32 models are unaffected: Keras
    names every dtype it makes, Python scalars stay weak (floatx), and float32 promotes to
    float32 either way. Nothing happens on TensorFlow."""
    if current() != "jax":
        return
    import jax
    from keras.src.backend.common import dtypes

    jax.config.update("jax_enable_x64", True)
    dtypes.BIT64_TO_BIT32_DTYPE["float64"] = "float64"


@contextlib.contextmanager
def without_tensorflow_probe() -> Iterator[None]:
    """On JAX, keep Keras from importing TensorFlow for nothing while it serializes a model.

    Keras' serializer asks ``tf.available`` of every value it meets (``model.save`` writing
    ``config.json``), and that lazy module imports TensorFlow where it is installed (seconds, and
    GBs of address space) only to test ``isinstance(value, tf.TensorShape)`` and the like. In a
    process that has not imported TensorFlow no value can be an instance of its classes, so the
    answer "not available" changes nothing; it holds only for the duration and only while
    TensorFlow is unimported. On TensorFlow (imported with Keras) nothing happens."""
    lazy = _keras_tensorflow_module()
    if current() != "jax" or "tensorflow" in sys.modules or lazy is None or lazy._available is not None:
        yield
        return
    lazy._available = False
    try:
        yield
    finally:
        if lazy._available is False:
            lazy._available = None


def _keras_tensorflow_module() -> Any:
    """Keras' shared lazy ``tensorflow`` module (``keras.src.utils.module_utils``), if this Keras has one."""
    try:
        from keras.src.utils import module_utils
    except ImportError:
        return None
    lazy = getattr(module_utils, "tensorflow", None)
    return lazy if hasattr(lazy, "_available") else None
