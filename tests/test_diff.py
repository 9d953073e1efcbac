"""``resnet-spec diff``: ResNet-20 against ResNet-56, and option A (zero_pad) against option B
(projection) shortcuts. Expected numbers come from the ResNet paper's CIFAR-10 family written out
by hand (3x3 convolutions, batch norm, 6n + 2 layers), not from the code under test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resnet_spec import validate
from resnet_spec.cli import main
from resnet_spec.diff import compare, render_text
from resnet_spec.outline import load_outline

REPO = Path(__file__).resolve().parent.parent
RESNET20 = REPO / "examples" / "resnet20_cifar10.yaml"
RESNET56 = REPO / "examples" / "resnet56_cifar10.yaml"
WIDTHS = (16, 32, 64)
PROJECTION = ["--set-b", "stages.1.shortcut=projection", "--set-b", "stages.2.shortcut=projection"]


def basic_block(c_in: int, c: int, bias: bool) -> int:
    """Trainable parameters of a basic block: two 3x3 convolutions and two batch norms (gamma, beta)."""
    return 9 * c_in * c + 9 * c * c + (2 * c if bias else 0) + 4 * c


def cifar_stage_params(n: int, stage: int, bias: bool) -> int:
    c = WIDTHS[stage]
    c_in = WIDTHS[stage - 1] if stage else c
    return basic_block(c_in, c, bias) + (n - 1) * basic_block(c, c, bias)


def cifar_params(n: int, bias: bool) -> int:
    """6n + 2 net: 3x3 stem conv to 16 + batch norm, three stages, dense 64 -> 10 (option A: free shortcuts)."""
    stem = 27 * 16 + (16 if bias else 0) + 32
    return stem + sum(cifar_stage_params(n, s, bias) for s in range(3)) + 64 * 10 + 10


def diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["diff", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_resnet20_against_resnet56(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diff(capsys, str(RESNET20), str(RESNET56), "--format", "json")
    assert code == 0
    report = json.loads(out)
    totals = report["totals"]
    # ResNet-20 keeps the article's conv biases; ResNet-56 follows the paper (no bias): 0.27M and 0.85M.
    assert totals["params_trainable"] == {"a": cifar_params(3, True), "b": cifar_params(9, False),
                                          "delta": cifar_params(9, False) - cifar_params(3, True)}  # fmt: skip
    assert (cifar_params(3, True), cifar_params(9, False)) == (270_410, 853_018)
    assert totals["depth"] == {"a": 20, "b": 56, "delta": 36}
    assert totals["blocks"] == {"a": 9, "b": 27, "delta": 18}
    assert report["same_network"] is False and report["head"]["status"] == "same"
    assert report["stem"]["changes"] == {"params_trainable": {"a": 480, "b": 464, "delta": -16}}  # the stem's bias
    for index, stage in enumerate(report["stages"]):
        c = WIDTHS[index]
        assert stage["name"] == f"stage{index + 1}" and stage["blocks"] == {"a": 3, "b": 9, "delta": 6}
        assert stage["filters"]["delta"] == 0 and stage["stride"]["delta"] == 0
        assert stage["params_trainable"]["b"] == cifar_stage_params(9, index, False)
        assert [(g["first"], g["last"], g["count"]) for g in stage["added"]] == [
            (f"stage{index + 1}.block3", f"stage{index + 1}.block8", 6)
        ]
        assert stage["added"][0]["block"]["params_trainable"] == basic_block(c, c, False)
        assert stage["added"][0]["block"]["shortcut"] == "identity"
        assert stage["removed"] == []
        # The three blocks both nets have differ only by the two conv biases (2c parameters each).
        changed = {g["first"]: g for g in stage["changed"]}
        assert sum(g["count"] for g in changed.values()) == 3
        for group in changed.values():
            assert group["changes"]["params_trainable"]["delta"] == -2 * c
            assert set(group["changes"]) == {"params_trainable"}


def test_resnet20_against_resnet56_text(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diff(capsys, str(RESNET20), str(RESNET56))
    assert code == 0
    assert re.search(r"^depth\s+20\s+56\s+\+36 \(\+180\.0%\)$", out, re.MULTILINE)
    assert re.search(r"^trainable parameters\s+270,410\s+853,018\s+\+582,608 \(\+215\.5%\)$", out, re.MULTILINE)
    assert "stage1: changed, blocks 3 -> 9 (+6)" in out
    assert ("  + stage2.block3..block8 (6 blocks): [3x3, 32 -> 3x3, 32], identity shortcut, 16x16x32, "
            f"{basic_block(32, 32, False):,} trainable parameters each") in out  # fmt: skip
    assert "head: same" in out


def test_zero_pad_against_projection(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = diff(capsys, str(RESNET20), *PROJECTION, "--format", "json")
    assert code == 0
    report = json.loads(out)
    # Option B adds a 1x1/2 convolution (with bias: the spec's conv_bias) and a batch norm where the width doubles.
    projection = {1: 16 * 32 + 32 + 2 * 32, 2: 32 * 64 + 64 + 2 * 64}
    macs = {1: 16 * 16 * 16 * 32, 2: 8 * 8 * 32 * 64}
    assert report["totals"]["params_trainable"]["delta"] == sum(projection.values()) == 2_848
    assert report["totals"]["params_non_trainable"]["delta"] == 2 * 32 + 2 * 64
    assert report["totals"]["macs"]["delta"] == sum(macs.values())
    assert report["totals"]["blocks"]["delta"] == 0 and report["stem"]["status"] == "same"
    stages = report["stages"]
    assert stages[0]["status"] == "same" and report["head"]["status"] == "same"
    for index in (1, 2):
        (group,) = stages[index]["changed"]
        c = WIDTHS[index]
        assert (group["first"], group["count"]) == (f"stage{index + 1}.block0", 1)
        assert group["changes"]["shortcut"] == {
            "a": f"zero_pad (x[::2, ::2], channels +{c // 4} +{c // 4})",
            "b": f"projection (1x1/2 conv {c} + norm)",
        }
        assert group["changes"]["params_trainable"]["delta"] == projection[index]
        assert group["changes"]["macs"]["delta"] == macs[index]
        assert stages[index]["added"] == stages[index]["removed"] == []
    # The same comparison against an edited copy of the file gives the same report.
    copy = tmp_path / "resnet20_projection.yaml"
    copy.write_text(RESNET20.read_text().replace("shortcut: zero_pad}", "shortcut: projection}"))
    _, out_copy, _ = diff(capsys, str(RESNET20), str(copy), "--format", "json")
    from_copy = json.loads(out_copy)
    # The copy also changes stage 1's shortcut, which builds nothing there (no block changes shape):
    # as networks the two comparisons are the same.
    assert from_copy["stages"] == stages and from_copy["totals"] == report["totals"]


def test_zero_pad_against_projection_text(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = diff(capsys, str(RESNET20), *PROJECTION)
    assert f"B  {RESNET20} --set-b stages.1.shortcut=projection --set-b stages.2.shortcut=projection" in out
    assert ("  ~ stage2.block0: shortcut zero_pad (x[::2, ::2], channels +8 +8) -> projection (1x1/2 conv 32 + norm); "
            "trainable parameters 14,016 -> 14,624 (+608)") in out  # fmt: skip
    assert "stage1: same (3 blocks)" in out


def test_same_network(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diff(capsys, str(RESNET56), str(REPO / "examples" / "resnet56_cifar10.yaml"), "--set-a", "depth=56")
    assert code == 0 and "same network" in out


def test_problems(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert diff(capsys, str(RESNET20))[0] == 2  # one spec and nothing to change
    code, _, err = diff(capsys, str(RESNET20), str(tmp_path / "missing.yaml"))
    assert code == 1 and "RS001" in err and "missing.yaml" in err
    code, out, err = diff(capsys, str(RESNET20), "--set-b", "stages.1.shortcut=identity")
    assert code == 1 and out == "" and "RS201" in err and "[at stages.1.shortcut]" in err


def test_no_framework_or_matplotlib_is_imported() -> None:
    """diff is a validation-path command: neither a deep-learning framework nor matplotlib loads."""
    probe = (
        "import sys, io, contextlib\n"
        "from resnet_spec.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main(['diff', {str(RESNET20)!r}, {str(RESNET56)!r}])\n"
        "print(code, sorted(m for m in ('tensorflow', 'torch', 'keras', 'jax', 'matplotlib') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0 []"


def test_layer_settings_explain_the_parameter_change(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = diff(capsys, str(RESNET20), str(RESNET56), "--format", "json")
    arch = validate(RESNET20).architecture
    assert arch is not None
    convs = [n.name for n in arch.graph if n.op == "conv"]
    assert len(convs) == 19  # 6n + 1 convolutions: the stem's and two per block
    # ResNet-56 keeps no conv bias (the paper); ResNet-20 keeps Keras' (the article): the 2c per block above.
    assert json.loads(out)["settings"] == [
        {"op": "conv", "setting": "use_bias", "a": True, "b": False, "layers": convs}
    ]


def test_settings_that_change_no_count(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = diff(capsys, str(RESNET20), "--set-b", "defaults.norm.epsilon=1e-5", "--format", "json")
    report = json.loads(out)
    assert code == 0 and not report["same_network"] and not report["unexplained"]
    assert all(p["delta"] == 0 for p in report["totals"].values() if "delta" in p)
    (change,) = report["settings"]
    assert (change["op"], change["setting"], change["a"], change["b"], len(change["layers"])) == (
        "batch_norm", "epsilon", 0.001, 1e-5, 19,
    )  # fmt: skip
    _, text, _ = diff(capsys, str(RESNET20), "--set-b", "defaults.norm.epsilon=1e-5")
    assert "  batch_norm epsilon: 0.001 -> 1e-05 in 19 layers (stem.norm1, stage1.block0.norm1, " in text


def test_where_the_shortcut_reads_from(capsys: pytest.CaptureFixture[str]) -> None:
    """Wide ResNet's projections read the pre-activated input; from the raw block input they
    count the same, so only the shortcut line can tell the two apart."""
    spec = REPO / "examples" / "wide_resnet28_10_cifar10.yaml"
    _, out, _ = diff(capsys, str(spec), "--set-b", "stages.0.shortcut.source=block_input", "--format", "json")
    report = json.loads(out)
    assert report["totals"]["params_trainable"]["delta"] == 0
    (group,) = report["stages"][0]["changed"]
    assert group["first"] == "stage1.block0"
    assert group["changes"] == {
        "shortcut": {"a": "projection (1x1 conv 160, from act1)", "b": "projection (1x1 conv 160)"}
    }


def test_a_difference_the_report_cannot_show_is_said(capsys: pytest.CaptureFixture[str]) -> None:
    a = load_outline(str(RESNET20))
    b = load_outline(str(RESNET20))
    assert a is not None and b is not None
    assert compare(a, b)["unexplained"] is False
    b.hash = "sha256:" + "0" * 64  # the graphs differ somewhere no section looks
    report = compare(a, b)
    report["a"]["file"] = report["b"]["file"] = "x"
    assert report["unexplained"] is True and "which this report does not show" in render_text(report)
