"""The example specs: every one validates, and each reproduces its published or framework count.

References (see examples/README.md):

* papers, compared at the precision they publish (0.27M, 1.7M...);
* torchvision and keras.applications, compared exactly (Keras counts trainable + batch-norm
  moving statistics, PyTorch only trainable parameters);
* the seed systems of /work/shared/seed-systems.md, compared exactly with the counts Keras
  reports for a model rebuilt layer by layer from the seed description (Keras 3.15.1).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import resnet_spec
from resnet_spec.pipeline import Architecture

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
MODELINE = "# yaml-language-server: $schema=../spec/resnet-spec.schema.json"

_CACHE: dict[str, Architecture] = {}


def arch(name: str) -> Architecture:
    if name not in _CACHE:
        result = resnet_spec.validate(EXAMPLES_DIR / f"{name}.yaml")
        assert result.ok, [str(d) for d in result.diagnostics]
        assert result.architecture is not None
        _CACHE[name] = result.architecture
    return _CACHE[name]


def mapping(name: str) -> dict[str, Any]:
    doc = resnet_spec.load(EXAMPLES_DIR / f"{name}.yaml")
    assert doc.ok, doc.diagnostics
    return copy.deepcopy(doc.data)


def test_there_are_examples() -> None:
    names = {p.stem for p in EXAMPLES}
    seeds = {"resnet34_cifar10", "resnet_v2_56_cifar10", "resnet50_signs", "resnet20_cifar10", "resnet18_xray"}
    assert seeds <= names
    assert len(EXAMPLES) >= 24


# --------------------------------------------------------------------------- every example


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_cleanly(path: Path) -> None:
    result = resnet_spec.validate(path)
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.diagnostics == []  # not even a warning
    _CACHE.setdefault(path.stem, result.architecture)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_layout(path: Path) -> None:
    """Modeline first, then comments (source and choices), then version, name, description."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == MODELINE
    body = 1
    while body < len(lines) and lines[body].startswith("#"):
        body += 1
    comments = [line for line in lines[1:body] if line.strip("# ")]
    assert len(comments) >= 3, "state the source and the choices in comments"
    assert lines[body] == "version: 1"
    assert lines[body + 1] == f"name: {path.stem}"
    assert lines[body + 2].startswith("description:")


# --------------------------------------------------------------------------- published counts

# Papers: (example, published millions, decimals as published).
PAPER_COUNTS = [
    ("resnet20_cifar10", 0.27, 2),  # He et al. 2015, sec. 4.2 (option A)
    ("resnet32_cifar10", 0.46, 2),
    ("resnet44_cifar10", 0.66, 2),
    ("resnet56_cifar10", 0.85, 2),
    ("resnet110_cifar10", 1.7, 1),
    ("resnet1202_cifar10", 19.4, 1),
    ("resnet_v2_164_cifar10", 1.7, 1),  # He et al. 2016, "Identity Mappings"
    ("wide_resnet28_10_cifar10", 36.5, 1),  # Zagoruyko & Komodakis 2016
]


@pytest.mark.parametrize(("name", "millions", "decimals"), PAPER_COUNTS, ids=[c[0] for c in PAPER_COUNTS])
def test_paper_parameter_counts(name: str, millions: float, decimals: int) -> None:
    assert round(arch(name).params_trainable / 1e6, decimals) == millions


# torchvision: trainable parameters, exact (model.parameters()).
TORCHVISION_COUNTS = [
    ("resnet18", 11_689_512),
    ("resnet34", 21_797_672),
    ("resnet50", 25_557_032),
    ("resnet101", 44_549_160),
    ("resnet152", 60_192_808),
    ("resnext50_32x4d", 25_028_904),
    ("wide_resnet50_2", 68_883_240),
    # resnet50 up to layer4 (create_feature_extractor(resnet50(), {"layer4": ...}) keeps no fc).
    ("resnet50_backbone", 23_508_032),
]


@pytest.mark.parametrize(("name", "trainable"), TORCHVISION_COUNTS, ids=[c[0] for c in TORCHVISION_COUNTS])
def test_torchvision_parameter_counts(name: str, trainable: int) -> None:
    assert arch(name).params_trainable == trainable


# Keras: (trainable, total = trainable + batch-norm moving statistics), exact (count_params()).
KERAS_COUNTS = [
    # keras.applications.ResNet50 (weights=None), with its top.
    ("keras_resnet50_imagenet", 25_583_592, 25_636_712),
    # keras.applications.ResNet50V2 / ResNet101V2 (weights=None), with their top.
    ("keras_resnet50v2_imagenet", 25_568_360, 25_613_800),
    ("keras_resnet101v2_imagenet", 44_577_896, 44_675_560),
    # keras.applications.ResNet50(include_top=False, 64x64x3) + GAP + dropout + dense 6.
    ("keras_applications_resnet50", 23_546_886, 23_600_006),
    # Seeds, rebuilt in Keras from /work/shared/seed-systems.md (the signs notebook reports the same
    # 23,600,006 total for its hand-built ResNet-50).
    ("resnet50_signs", 23_546_886, 23_600_006),
    ("resnet34_cifar10", 21_559_178, 21_574_410),
    ("resnet_v2_11_cifar10", 1_441_162, 1_445_706),
    ("resnet_v2_56_cifar10", 6_878_922, 6_900_746),
    ("resnet_v2_110_cifar10", 13_404_234, 13_446_794),
    # Seed 4 keeps Keras' conv biases (the paper-reproducing deeper members drop them); option A
    # has no weights, so the total is the trainable count + 2 x 688 batch-norm statistics.
    ("resnet20_cifar10", 270_410, 271_786),
]


@pytest.mark.parametrize(("name", "trainable", "total"), KERAS_COUNTS, ids=[c[0] for c in KERAS_COUNTS])
def test_keras_parameter_counts(name: str, trainable: int, total: int) -> None:
    a = arch(name)
    assert a.params_trainable == trainable
    assert a.params_trainable + a.params_non_trainable == total


def test_resnet18_xray_count() -> None:
    """Seed 5 derived from torchvision's ResNet-18: backbone (11,689,512 - 513,000 fc) + 4,800 conv
    biases (nn.Conv2d's default) + dense 512 -> 256 + classifier 256 -> 2."""
    expected = (11_689_512 - 513_000) + 4_800 + (512 * 256 + 256) + (256 * 2 + 2)
    assert arch("resnet18_xray").params_trainable == expected == 11_313_154


def test_pre_activation_and_wide_counts_match_their_reference_implementations() -> None:
    # The authors' layouts as PyTorch counts them (bias-free convs).
    assert arch("resnet_v2_164_cifar10").params_trainable == 1_703_258
    assert arch("wide_resnet28_10_cifar10").params_trainable == 36_479_194


@pytest.mark.parametrize(("name", "macs"), [("resnet18", 1.814e9), ("resnet50", 4.089e9)])
def test_torchvision_macs(name: str, macs: float) -> None:
    assert arch(name).macs == pytest.approx(macs, rel=0.01)


def test_resnet20_option_a_count() -> None:
    a = arch("resnet20_cifar10")
    assert round(a.params_trainable / 1e6, 2) == 0.27
    pads = [n for n in a.graph if n.op == "channel_pad_shortcut"]
    assert [(n.stride, n.pad_before, n.pad_after) for n in pads] == [(2, 8, 8), (2, 16, 16)]  # type: ignore[attr-defined]
    assert not any(n.name.endswith("shortcut.conv") for n in a.graph)


# --------------------------------------------------------------------------- seed quirks


@pytest.mark.parametrize(
    ("name", "node", "shape"),
    [
        ("resnet34_cifar10", "stem.pad1", (38, 38, 3)),
        ("resnet34_cifar10", "stem.conv1", (19, 19, 64)),
        ("resnet34_cifar10", "stem.maxpool1", (10, 10, 64)),
        ("resnet34_cifar10", "head.avgpool1", (1, 1, 512)),
        ("resnet_v2_56_cifar10", "head.avgpool1", (1, 1, 512)),
        ("resnet50_signs", "stem.pad1", (70, 70, 3)),
        ("resnet50_signs", "stem.conv1", (32, 32, 64)),
        ("resnet50_signs", "stem.maxpool1", (15, 15, 64)),
        ("resnet50_signs", "stage4.block2.add", (2, 2, 2048)),
        ("keras_applications_resnet50", "stem.pad2", (34, 34, 64)),
        ("keras_applications_resnet50", "stem.maxpool1", (16, 16, 64)),
        ("resnet18_xray", "stem.maxpool1", (56, 56, 64)),
        ("resnet18_xray", "head.avgpool1", (1, 1, 512)),
        ("resnet50", "stage4.block2.add", (7, 7, 2048)),
    ],
)
def test_seed_shapes(name: str, node: str, shape: tuple[int, ...]) -> None:
    assert arch(name).shape_of(node) == shape


def test_resnet34_cifar10_quirks() -> None:
    a = arch("resnet34_cifar10")
    assert a.graph["stem.conv1"].padding == (2, 3, 2, 3)  # type: ignore[attr-defined]  # "same" after explicit pad 3
    shortcuts = [n.name for n in a.graph if ".shortcut." in n.name]
    assert shortcuts == [f"stage{s}.block0.shortcut.conv" for s in (2, 3, 4)]  # biased 1x1, no norm
    assert all(a.graph[s].use_bias for s in shortcuts)  # type: ignore[attr-defined]


def test_resnet_v2_first_unit_and_shortcut_source() -> None:
    a = arch("resnet_v2_56_cifar10")
    g = a.graph
    # Stage 1's first unit: its first conv reads the stem directly (no BN, no ReLU before it).
    assert g["stage1.block0.conv1"].inputs == ("stem.dropout1",)
    assert g["stage1.block0.conv1"].filters == 32  # type: ignore[attr-defined]
    # Projections read the raw block input, not the pre-activated one.
    assert g["stage2.block0.shortcut.conv"].inputs == ("stage1.block5.add",)
    assert g["stage2.block0.conv1"].strides == (2, 2)  # type: ignore[attr-defined]  # stride in the first 1x1
    assert [g[f"stage{s}.block1.conv2"].filters for s in (1, 2, 3)] == [32, 128, 256]  # type: ignore[attr-defined]
    assert all(n.kernel_l2 == 1e-4 for n in g if n.op == "conv")  # type: ignore[attr-defined]
    assert all(n.kernel_l2 == 0.0 for n in g if n.op == "dense")  # type: ignore[attr-defined]


def test_resnet18_xray_stem_has_no_relu() -> None:
    g = arch("resnet18_xray").graph
    assert g["stem.maxpool1"].inputs == ("stem.norm1",)
    assert g["stem.maxpool1"].padding == (1, 1, 1, 1)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- depth shorthand


@pytest.mark.parametrize(
    ("name", "n"),
    [("resnet56_cifar10", 9), ("resnet_v2_56_cifar10", 6), ("resnet_v2_164_cifar10", 18)],
)
def test_depth_shorthand_equals_explicit_blocks(name: str, n: int) -> None:
    data = mapping(name)
    assert all("blocks" not in stage for stage in data["stages"])
    explicit = copy.deepcopy(data)
    del explicit["depth"]
    for stage in explicit["stages"]:
        stage["blocks"] = n
    result = resnet_spec.validate(explicit)
    assert result.ok, [str(d) for d in result.diagnostics]
    assert result.architecture is not None
    assert result.architecture.hash == arch(name).hash

    # Keeping `depth` next to the explicit counts is checked, not ignored.
    explicit["depth"] = data["depth"]
    assert resnet_spec.validate(explicit).ok
    explicit["stages"][0]["blocks"] = n - 1
    wrong = resnet_spec.validate(explicit)
    assert not wrong.ok and [d.code for d in wrong.diagnostics] == ["RS205"]

    # One block fewer is another architecture.
    del explicit["depth"]
    other = resnet_spec.validate(explicit)
    assert other.ok and other.architecture is not None
    assert other.architecture.hash != arch(name).hash


def test_resnet20_explicit_blocks_equal_depth_shorthand() -> None:
    data = mapping("resnet20_cifar10")
    for stage in data["stages"]:
        del stage["blocks"]
    result = resnet_spec.validate(data)
    assert result.ok and result.architecture is not None
    assert result.architecture.hash == arch("resnet20_cifar10").hash


def test_wide_resnet_depth_convention() -> None:
    """WRN calls it 28 (6n + 4); the spec's depth rule counts main-path convs + classifier: 26."""
    data = mapping("wide_resnet28_10_cifar10")
    data["depth"] = 28
    refused = resnet_spec.validate(data)
    assert [d.code for d in refused.diagnostics] == ["RS205"]
    data["depth"] = 26
    assert resnet_spec.validate(data).ok


def test_cifar_family_differs_only_in_depth() -> None:
    def without_identity(name: str) -> dict[str, Any]:
        data = mapping(name)
        for key in ("name", "description", "depth"):
            del data[key]
        return data

    base = without_identity("resnet56_cifar10")
    for name in ("resnet32_cifar10", "resnet44_cifar10", "resnet110_cifar10", "resnet1202_cifar10"):
        assert without_identity(name) == base, name
