"""The pytest plugin (entry point group ``pytest11``, loaded automatically once resnet-spec is
installed; ``-p resnet_spec.pytest_plugin`` loads it explicitly).

* ``pytest --resnet-spec-parity specs/`` collects every spec file under the given paths
  (``*.yaml``, ``*.yml``, ``*.json`` with a top-level ``stages`` key) as one parity test each,
  ``specs/net.yaml::parity``, marked ``resnet_spec_parity``. A failure prints the report.
* The ``resnet_spec_parity`` fixture is :func:`resnet_spec.testing.assert_parity` with the
  session's options as defaults, for tests of your own.

Options (command line, or ``ini`` keys of the same name with ``_`` for ``-``, without the
leading dashes): ``--resnet-spec-parity-precision``, ``--resnet-spec-parity-backends``,
``--resnet-spec-parity-set KEY=VALUE`` (repeatable: ``input.height=64``) and
``--resnet-spec-parity-allow-vacuous``. Nothing here imports a framework until a test runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SUFFIXES = (".yaml", ".yml", ".json")
MARKER = "resnet_spec_parity"
_STAGES = re.compile(r'^(stages\s*:|\s*"stages"\s*:)', re.MULTILINE)
_MAX_SNIFF = 1 << 20  # bytes read to decide whether a file is a spec


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("resnet-spec", "resnet-spec parity")
    group.addoption(
        "--resnet-spec-parity",
        action="store_true",
        default=False,
        help="collect every spec file (*.yaml, *.yml, *.json with 'stages') under the paths as parity tests",
    )
    group.addoption(
        "--resnet-spec-parity-precision",
        choices=("float32", "float64"),
        default=None,
        help="parity precision (default float64)",
    )
    group.addoption(
        "--resnet-spec-parity-backends", default=None, metavar="A,B", help="the two backends (default keras,torch)"
    )
    group.addoption(
        "--resnet-spec-parity-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value for collected specs (repeatable), e.g. input.height=64",
    )
    group.addoption("--resnet-spec-parity-allow-vacuous", action="store_true", default=None,
                    help="checks that compare nothing do not fail")  # fmt: skip
    parser.addini("resnet_spec_parity_precision", "parity precision (float32 or float64)", default="float64")
    parser.addini("resnet_spec_parity_backends", "the two backends, comma-separated", default="keras,torch")
    parser.addini("resnet_spec_parity_set", "spec overrides KEY=VALUE for collected specs", type="linelist", default=[])
    parser.addini("resnet_spec_parity_allow_vacuous", "checks that compare nothing do not fail", type="bool",
                  default=False)  # fmt: skip


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a cross-framework parity test (resnet-spec)")


def settings(config: pytest.Config) -> dict[str, Any]:
    """assert_parity keywords from the command line, else the ini file."""

    def pick(option: str, ini: str) -> Any:
        value = config.getoption(option)
        return config.getini(ini) if value is None or value == [] else value

    backends = tuple(
        name.strip() for name in str(pick("resnet_spec_parity_backends", "resnet_spec_parity_backends")).split(",")
    )
    if len(backends) != 2 or not all(backends):
        raise pytest.UsageError(f"--resnet-spec-parity-backends takes two names, e.g. keras,torch; got {backends}")
    return {
        "precision": pick("resnet_spec_parity_precision", "resnet_spec_parity_precision"),
        "backends": backends,
        "overrides": list(pick("resnet_spec_parity_set", "resnet_spec_parity_set")),
        "allow_vacuous": bool(pick("resnet_spec_parity_allow_vacuous", "resnet_spec_parity_allow_vacuous")),
    }


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if not parent.config.getoption("resnet_spec_parity") or file_path.suffix not in SUFFIXES:
        return None
    if not is_spec(file_path):
        return None
    return SpecFile.from_parent(parent, path=file_path)


def is_spec(path: Path) -> bool:
    """A spec file has a top-level ``stages`` key (files that merely end in .yaml are not collected)."""
    try:
        with open(path, "rb") as handle:
            text = handle.read(_MAX_SNIFF).decode("utf-8", errors="replace")
    except OSError:
        return False
    return bool(_STAGES.search(text))


class SpecFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield ParityItem.from_parent(self, name="parity")


class ParityFailure(Exception):
    """What a collected parity test raises: its message is the report (or the spec's diagnostics)."""


class ParityItem(pytest.Item):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_marker(MARKER)

    def runtest(self) -> None:
        from .diagnostics import SpecError
        from .testing import assert_parity

        try:
            assert_parity(self.path, label=self.label, **settings(self.config))
        except AssertionError as exc:
            raise ParityFailure(str(exc)) from None
        except SpecError as exc:
            raise ParityFailure(f"{self.label}: the spec does not validate\n{exc}") from None

    @property
    def label(self) -> str:
        """The spec's path as pytest shows it (relative to the root directory)."""
        return self.nodeid.split("::")[0]

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ParityFailure):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"parity: {self.path.name}"


@pytest.fixture
def resnet_spec_parity(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``resnet_spec_parity(spec_or_models, **keywords)``: :func:`resnet_spec.testing.assert_parity`
    with the session's options (precision, backends, allow-vacuous) as defaults. ``--set``
    overrides apply to collected specs only, not here."""
    from .testing import assert_parity

    defaults = settings(request.config)
    defaults.pop("overrides")

    def check(subject: Any, **keywords: Any) -> Any:
        return assert_parity(subject, **(defaults | keywords))

    return check
