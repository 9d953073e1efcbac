"""Parity as an assertion, for your own test suite.

>>> from resnet_spec.testing import assert_parity
>>> assert_parity("specs/my_resnet.yaml")                      # doctest: +SKIP
>>> assert_parity(["models/net.keras", "models/net.pt"])       # doctest: +SKIP

:func:`assert_parity` runs :func:`resnet_spec.parity.run` and raises ``AssertionError`` whose
message is the report (every check's worst node and tensor, the differences and the limits,
the first diverging layer) when the two backends do not compute the same function, or when a
check compared nothing and vacuous checks are not allowed. The pytest plugin
(:mod:`resnet_spec.pytest_plugin`) builds on it. Importing this module imports no framework.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .backends import BackendError, backend_for_file, get_backend
from .parity import ParityReport, Tolerances, render_text, run
from .pipeline import Architecture, build_architecture

__all__ = ["assert_parity"]

Subject = str | os.PathLike[str] | Mapping[str, Any] | Architecture | Sequence[str | os.PathLike[str]]


def assert_parity(
    subject: Subject,
    *,
    backends: tuple[str, str] | None = None,
    models: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    seed: int = 0,
    steps: int = 2,
    batch_size: int = 2,
    precision: str = "float64",
    tolerances: Tolerances | None = None,
    allow_vacuous: bool = False,
    label: str | None = None,
    **options: Any,
) -> ParityReport:
    """Assert that two backends compute the same function; return the report when they do.

    ``subject`` is a spec (a file path, YAML / JSON text, a mapping or an
    :class:`~resnet_spec.Architecture`), or two saved model files (``["net.keras", "net.pt"]``:
    each backend from its file's suffix; both must embed the same spec). With a spec, both
    backends start from the same seeded weights. With ``models`` (``{"keras": model, "torch":
    model}``, models compiled from ``subject``) or saved files, each backend starts from its own
    model's weights, so a weight conversion is checked too; the models themselves are not
    changed (each side runs on a fresh build given a copy of its model's weights).
    ``overrides`` are ``--set`` style ``key=value`` strings for a spec; ``label`` names the
    subject in the message (default: its path or name). The other keywords are
    :func:`resnet_spec.parity.run`'s (``isolate``, ``low_memory`` among ``options``).

    Raises ``AssertionError`` (message: the report) when the models differ or a check is
    vacuous and not allowed, :class:`~resnet_spec.SpecError` when the spec does not validate,
    :class:`~resnet_spec.backends.BackendError` when a backend cannot be used."""
    arch, start, names = _subject(subject, models, overrides)
    names = tuple(backends) if backends is not None else names or ("keras", "torch")
    report = run(arch, backends=names, seed=seed, steps=steps, batch_size=batch_size,  # type: ignore[arg-type]
                 precision=precision, tolerances=tolerances or Tolerances(), allow_vacuous=allow_vacuous,
                 start=start, **options)  # fmt: skip
    report.spec = label or _label(subject)
    if not report.ok:
        raise AssertionError(f"{report.spec}: the backends do not compute the same function\n{render_text(report)}")
    return report


def _subject(subject: Subject, models: Mapping[str, Any] | None, overrides: Sequence[str]
             ) -> tuple[Architecture, dict[str, Any] | None, tuple[str, ...]]:  # fmt: skip
    if _is_model_files(subject):
        return _saved_models([Path(p) for p in subject])  # type: ignore[union-attr]
    arch = subject if isinstance(subject, Architecture) else build_architecture(subject, overrides=overrides)  # type: ignore[arg-type]
    if models is None:
        return arch, None, ()
    if len(models) != 2:
        raise ValueError(f"models: give two models, one per backend (got {len(models)})")
    start = {name: _backend(name).get_weights(model, arch) for name, model in models.items()}
    return arch, start, tuple(models)


def _is_model_files(subject: Subject) -> bool:
    return isinstance(subject, (list, tuple)) and all(isinstance(p, (str, os.PathLike)) for p in subject)


def _saved_models(paths: list[Path]) -> tuple[Architecture, dict[str, Any], tuple[str, ...]]:
    if len(paths) != 2:
        raise ValueError(f"give two saved models, one per backend (got {len(paths)})")
    loaded = []
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        name = backend_for_file(path)
        model, meta = _backend(name).load(path)
        loaded.append((name, model, meta))
    (first, _, meta_a), (second, _, meta_b) = loaded
    if first == second:
        raise ValueError(f"both files are {first} models; give one model per backend")
    if meta_a["hash"] != meta_b["hash"]:
        raise AssertionError(f"{paths[0]} and {paths[1]} embed different specs (hash {meta_a['hash'][:19]} "
                             f"vs {meta_b['hash'][:19]}): they cannot compute the same function")  # fmt: skip
    arch = build_architecture(meta_a["spec"])
    start = {name: _backend(name).get_weights(model, arch) for name, model, _ in loaded}
    return arch, start, (first, second)


def _backend(name: str) -> Any:
    backend = get_backend(name)
    if not hasattr(backend, "get_weights"):
        raise BackendError(f"backend '{name}' cannot hand out its weights")
    return backend


def _label(subject: Subject) -> str:
    if isinstance(subject, Architecture):
        return subject.name
    if isinstance(subject, Mapping):
        return str(subject.get("name") or "<spec>")
    if _is_model_files(subject):
        return " vs ".join(str(p) for p in subject)  # type: ignore[union-attr]
    text = str(subject)
    return text if "\n" not in text else "<spec text>"
