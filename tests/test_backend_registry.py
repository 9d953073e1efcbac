"""Backends are plugins: a third party's is found through its entry point and used by the CLI;
a missing framework gives a one-line install hint; each backend works without the other framework."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SPEC = REPO / "examples" / "resnet20_cifar10.yaml"

THIRD_PARTY = '''
"""A backend outside resnet-spec: it "compiles" the graph into a JSON list of layers."""
import json
from pathlib import Path

class JsonListBackend:
    name = "jsonlist"
    framework_module = "json"
    install_hint = "pip install jsonlist-backend"
    suffix = ".layers.json"

    def build(self, arch, **options):
        return [{"name": n.name, "op": n.op, "shape": list(arch.shape_of(n.name))} for n in arch.graph]

    def save(self, model, arch, spec_data, path):
        Path(path).write_text(json.dumps({"hash": arch.hash, "layers": model}))

    def load(self, path):
        data = json.loads(Path(path).read_text())
        return data["layers"], {"hash": data["hash"], "spec": None}

    def framework_summary(self, model):
        return f"{len(model)} layers"

    def count_params(self, model):
        return (0, 0)

    def node_outputs(self, model, arch, images):
        raise NotImplementedError
'''


@pytest.fixture
def plugin_path(tmp_path: Path) -> Path:
    """Install a third-party backend the way pip would: a module plus a dist-info with an entry point."""
    (tmp_path / "jsonlist_backend.py").write_text(THIRD_PARTY)
    dist = tmp_path / "jsonlist_backend-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: jsonlist-backend\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[resnet_spec.backends]\njsonlist = jsonlist_backend:JsonListBackend\n")
    return tmp_path


def _blocking(*names: str) -> str:
    """Code that makes `names` uninstalled for the process: importing them fails as it would
    without the package (TensorFlow probes sys.modules for torch, so a None entry would lie)."""
    return textwrap.dedent(f"""
        import importlib.abc
        class _Absent(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {set(names)!r}:
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None
        sys.meta_path.insert(0, _Absent())
    """)


def _cli(*args: str, pythonpath: Path | None = None, prelude: str = "") -> subprocess.CompletedProcess[str]:
    code = f"import sys\n{prelude}\nfrom resnet_spec.cli import main\nsys.exit(main(sys.argv[1:]))"
    env_path = f"{pythonpath}" if pythonpath else ""
    import os

    env = {**os.environ, "PYTHONPATH": env_path + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False
    )


def test_third_party_backend_through_the_cli(plugin_path: Path, tmp_path: Path) -> None:
    listing = _cli("backends", pythonpath=plugin_path)
    assert listing.returncode == 0 and "jsonlist" in listing.stdout and "torch" in listing.stdout
    out = tmp_path / "r20.layers.json"
    proc = _cli("compile", str(SPEC), "--backend", "jsonlist", "-o", str(out), pythonpath=plugin_path)
    assert proc.returncode == 0, proc.stderr
    layers = json.loads(out.read_text())["layers"]
    assert layers[-1] == {"name": "head.classifier", "op": "dense", "shape": [10]}


def test_unknown_backend_is_a_usage_error() -> None:
    proc = _cli("compile", str(SPEC), "--backend", "mxnet")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown backend 'mxnet'; installed backends:")


@pytest.mark.parametrize(
    ("missing", "backend", "hint"),
    [(("torch",), "torch", "pip install 'resnet-spec[torch]'"), (("tensorflow", "keras"), "keras", "pip install 'resnet-spec[keras]'")],
)
def test_missing_framework_gives_one_line_with_the_install_command(missing: tuple[str, ...], backend: str, hint: str, tmp_path: Path) -> None:
    block = _blocking(*missing)
    proc = _cli("compile", str(SPEC), "--backend", backend, "-o", str(tmp_path / "m"), prelude=block)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and hint in lines[0] and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("missing", "backend"), [(("tensorflow", "keras"), "torch"), (("torch",), "keras")])
def test_one_backend_works_without_the_other_framework(missing: tuple[str, ...], backend: str, tmp_path: Path) -> None:
    pytest.importorskip("torch" if backend == "torch" else "tensorflow")
    block = _blocking(*missing)
    suffix = ".pt" if backend == "torch" else ".keras"
    out = tmp_path / f"r20{suffix}"
    proc = _cli("compile", str(SPEC), "--backend", backend, "-o", str(out), prelude=block)
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    assert _cli("validate", str(SPEC), prelude=block).returncode == 0
    loaded = _cli("load", str(out), prelude=block)
    assert loaded.returncode == 0 and "verified" in loaded.stdout, loaded.stderr


def test_compile_refuses_an_invalid_spec_without_a_traceback(tmp_path: Path) -> None:
    proc = _cli("compile", str(REPO / "tests/malformed/identity_shortcut_stride.yaml"), "--backend", "torch", "-o", str(tmp_path / "x.pt"))
    assert proc.returncode == 1
    assert "RS201" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "x.pt").exists()
