"""The pytest plugin in a scratch project (pytester): ``--resnet-spec-parity`` collects the spec
files of a folder as parity tests and runs them, a deliberately broken backend fails with the
report as its message, and the fixture, the marker and the options work. The plugin is loaded
with ``-p`` (the ``pytest11`` entry point registers the same module, under the same name, once
the distribution is installed). Each scratch session is a pytest process of its own, as a
user's would be (in-process pytester runs drop the modules a run imported, and neither torch's
operator registry nor PyYAML's C parser survives a second import)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytestmark = [pytest.mark.keras, pytest.mark.torch]
pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
PLUGIN = ("-p", "resnet_spec.pytest_plugin")
TINY = REPO / "tests" / "parity_specs" / "tiny.yaml"

# A mapping mistake: the torch side builds every batch norm with Keras' default epsilon.
BROKEN_CONFTEST = """
import dataclasses
from resnet_spec import graph as g
from resnet_spec.parity import sides


class DefaultEpsilon:
    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def build(self, arch, **options):
        nodes = [dataclasses.replace(n, epsilon=1e-3) if isinstance(n, g.BatchNorm) else n for n in arch.graph]
        return self.inner.build(dataclasses.replace(arch, graph=g.Graph(nodes, arch.graph.output)), **options)


REAL = sides.get_backend


def pytest_configure(config):  # collected spec items take no fixtures: patch for the session
    sides.get_backend = lambda name: DefaultEpsilon(REAL(name)) if name == "torch" else REAL(name)


def pytest_unconfigure(config):
    sides.get_backend = REAL
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """specs/: two examples and a tiny spec; plus YAML that is not a spec (never collected)."""
    specs = pytester.mkdir("specs")
    for path in (REPO / "examples" / "resnet_digits.yaml", TINY):
        shutil.copy(path, specs / path.name)
    (specs / "notes.yaml").write_text("owner: someone\nreviewers: [a, b]\n")
    pytester.makefile(".yml", **{".pre-commit-config": "repos: []\n"})
    return pytester


def test_collects_every_spec_of_a_folder_and_runs_it(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(*PLUGIN, "--resnet-spec-parity", "specs", "-v", "-m", "resnet_spec_parity")
    result.assert_outcomes(passed=2)
    assert sorted(line.split()[0] for line in result.outlines if "::parity" in line and "PASSED" in line) == [
        "specs/resnet_digits.yaml::parity",
        "specs/tiny.yaml::parity",
    ]  # notes.yaml and the .yml are not specs


def test_without_the_option_nothing_is_collected(project: pytest.Pytester) -> None:
    result = project.runpytest_subprocess(*PLUGIN, "specs")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_a_broken_backend_fails_with_a_readable_report(project: pytest.Pytester) -> None:
    project.makeconftest(BROKEN_CONFTEST)
    result = project.runpytest_subprocess(*PLUGIN, "--resnet-spec-parity", "specs/tiny.yaml")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    # The report, not a traceback: the checks, the first diverging layer with its numbers and limit.
    result.stdout.fnmatch_lines([
        "specs/tiny.yaml: the backends do not compute the same function",
        "parity keras vs torch (float64, seed 0, 2 SGD steps)",
        "eval * FAIL (abs)",
        "first diverging layer: stem.norm1 (eval, output: max abs *, max rel *, limit 0.0001)",
    ])  # fmt: skip
    assert "Traceback" not in text and "sides.py" not in text


def test_the_fixture_takes_specs_and_models(pytester: pytest.Pytester) -> None:
    shutil.copy(TINY, pytester.path / "tiny.yaml")
    pytester.makepyfile(test_mine="""
        import resnet_spec
        from resnet_spec.backends import get_backend

        def test_spec(resnet_spec_parity):
            report = resnet_spec_parity("tiny.yaml", steps=1)
            assert report.ok and report.precision == "float32"  # from the command line

        def test_models_with_their_own_weights(resnet_spec_parity):
            arch = resnet_spec.build_architecture("tiny.yaml")
            keras_model = get_backend("keras").build(arch)
            torch_model = get_backend("torch").build(arch)  # drawn by torch: other weights
            try:
                resnet_spec_parity(arch, models={"keras": keras_model, "torch": torch_model}, steps=1)
            except AssertionError as exc:
                assert "first diverging layer: stem.conv1" in str(exc)
            else:
                raise AssertionError("different weights passed")
    """)  # fmt: skip
    result = pytester.runpytest_subprocess(*PLUGIN, "--resnet-spec-parity-precision", "float32")
    result.assert_outcomes(passed=2)


def test_vacuous_checks_fail_unless_allowed_and_invalid_specs_show_their_diagnostics(pytester: pytest.Pytester) -> None:
    shutil.copy(REPO / "tests" / "parity_specs" / "one_class.yaml", pytester.path / "one_class.yaml")
    pytester.makefile(".yaml", bad="version: 1\ninput: {height: 8, width: 8, channels: 3}\nclasses: 5\nstages: []\n")
    failed = pytester.runpytest_subprocess(*PLUGIN, "--resnet-spec-parity", ".")
    failed.assert_outcomes(failed=2)
    failed.stdout.fnmatch_lines(["bad.yaml: the spec does not validate", "*RS*"], consecutive=False)
    failed.stdout.fnmatch_lines(["gradients * FAIL (vacuous)", "vacuous: gradients compared nothing*"])
    pytester.makeini("[pytest]\nresnet_spec_parity_allow_vacuous = true\n")
    allowed = pytester.runpytest_subprocess(*PLUGIN, "--resnet-spec-parity", ".")
    allowed.assert_outcomes(passed=1, failed=1)
