"""The published pre-commit hook, run by pre-commit itself on a scratch git repository.

pre-commit checks the manifest with its own schema. The hook then runs through a real commit:
``pre-commit install``, ``git commit`` refused for a broken spec, accepted once it is fixed, and
files outside the hook's ``files`` pattern never reach the validator. The scratch repository uses
the manifest's hook as a ``repo: local`` hook with the language the installed ``resnet-spec``
needs (``system``): with ``language: python`` pre-commit would pip-install this package into an
environment of its own, which needs a package index (no network in tests) and minutes. Every
other field (entry, types, files) is taken from the manifest unchanged, so what is tested is what
users get.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / ".pre-commit-hooks.yaml"
SPEC = (REPO / "examples" / "resnet20_cifar10.yaml").read_text()
BROKEN = SPEC.replace("{block: basic, blocks: 3, filters: 32, stride: 2, shortcut: zero_pad}",
                      "{block: basic, blocks: 3, filters: 32, stride: 2, shortcut: identity}")  # fmt: skip

pytest.importorskip("pre_commit")


def hook() -> dict[str, object]:
    (entry,) = yaml.safe_load(MANIFEST.read_text())
    return entry


def test_manifest_passes_pre_commits_schema() -> None:
    done = subprocess.run([sys.executable, "-m", "pre_commit", "validate-manifest", str(MANIFEST)],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert hook()["id"] == "resnet-spec-validate" and hook()["language"] == "python"


@pytest.fixture
def scratch(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    script = Path(sys.executable).parent / "resnet-spec"
    if not script.exists() and shutil.which("resnet-spec") is None:
        pytest.skip("the resnet-spec command is not installed (pip install -e .)")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "backends"), os.environ.get("PYTHONPATH", "")]),
        "PRE_COMMIT_HOME": str(tmp_path / "cache"),
        "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }  # fmt: skip
    repo = tmp_path / "project"
    repo.mkdir()
    local = {**hook(), "language": "system"}
    config = {"repos": [{"repo": "local", "hooks": [local]}]}
    (repo / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config))
    (repo / "models" / "specs").mkdir(parents=True)
    (repo / "models" / "specs" / "resnet20.yaml").write_text(SPEC)
    (repo / "ci.yaml").write_text("on: push\njobs: {test: {runs-on: ubuntu-latest}}\n")  # YAML, but not a spec
    (repo / "net.resnet.json").write_text('{"version": 1}')  # named as a spec: checked (and incomplete)
    git(repo, env, "init", "-q")
    run(repo, env, "install")
    return repo, env


def git(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=120, check=False)


def run(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "pre_commit", *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done


def test_commit_is_refused_for_a_broken_spec(scratch: tuple[Path, dict[str, str]]) -> None:
    repo, env = scratch
    git(repo, env, "add", ".pre-commit-config.yaml", "models", "ci.yaml")
    first = git(repo, env, "commit", "-qm", "a valid spec and a workflow")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "resnet-spec validate" in first.stdout + first.stderr and "Passed" in first.stdout + first.stderr

    (repo / "models" / "specs" / "resnet20.yaml").write_text(BROKEN)
    git(repo, env, "add", "models")
    refused = git(repo, env, "commit", "-qm", "break it")
    output = refused.stdout + refused.stderr
    assert refused.returncode != 0, output
    assert "Failed" in output and "RS201" in output
    line = next(i for i, text in enumerate(BROKEN.splitlines(), 1) if "shortcut: identity" in text)
    assert f"models/specs/resnet20.yaml:{line}:" in output  # located in the file
    assert "ci.yaml" not in output  # outside the hook's files: never validated
    assert git(repo, env, "log", "--format=%s").stdout.split("\n")[0] == "a valid spec and a workflow"

    (repo / "models" / "specs" / "resnet20.yaml").write_text(SPEC)
    git(repo, env, "add", "models")
    fixed = git(repo, env, "commit", "-qm", "fix it", "--allow-empty")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr


def test_files_pattern(scratch: tuple[Path, dict[str, str]]) -> None:
    repo, env = scratch
    git(repo, env, "add", ".")
    done = run(repo, env, "run", "--all-files", "--verbose")
    output = done.stdout + done.stderr
    # net.resnet.json matches the pattern and is not a complete spec: it fails; the workflow is never read.
    assert done.returncode == 1 and "net.resnet.json" in output and "ci.yaml" not in output
    assert "models/specs/resnet20.yaml" not in output  # valid, and --quiet prints nothing for it
    # The workflow would fail if it were passed (YAML 1.1 reads `on` as true): the pattern is what keeps it out.
    direct = subprocess.run(["resnet-spec", "validate", "ci.yaml"], cwd=repo, env=env, capture_output=True, text=True,
                            timeout=120, check=False)  # fmt: skip
    assert direct.returncode == 1 and "RS103" in direct.stdout
