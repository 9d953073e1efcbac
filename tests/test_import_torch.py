"""Importing PyTorch weights: torchvision and timm reference models built with random weights
(batch-norm statistics randomized too), saved as .pth and .safetensors and imported by the
structure of their names, and imported from the module itself by its traced dataflow; the seed
systems written by hand in PyTorch (tests/import_seeds_torch.py). Every import is checked by
the network's output against the reference's, within 1e-5 relative. ImageNet networks run at
64x64 through overrides."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
import torch
from import_helpers import assert_same_weights, tiny
from import_seeds_torch import SEEDS
from safetensors.torch import save_file

from resnet_spec import build_architecture
from resnet_spec.backends import get_backend
from resnet_spec.importing import WeightsImportError, import_weights

pytestmark = pytest.mark.torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SMALL = ["input.height=64", "input.width=64"]
BACKEND: Any = get_backend("torch")

REFERENCES = {  # (library, constructor, spec)
    "torchvision-resnet18": ("torchvision", "resnet18", "resnet18"),
    "torchvision-resnet50": ("torchvision", "resnet50", "resnet50"),
    "timm-resnet50d": ("timm", "resnet50d", "timm_resnet50d"),
    "timm-seresnet50": ("timm", "seresnet50", "timm_seresnet50"),
    "timm-resnetv2_50": ("timm", "resnetv2_50", "timm_resnetv2_50"),
}


def reference_model(library: str, name: str) -> Any:
    """A torchvision / timm model with random weights (the test-references extra; skipped without it)."""
    sys.modules.setdefault("torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations"))
    if library == "torchvision":
        return getattr(pytest.importorskip("torchvision").models, name)(weights=None)
    return pytest.importorskip("timm").create_model(name, pretrained=False)


def randomized(model: Any, seed: int = 1) -> Any:
    """Random batch-norm statistics and affine parameters: imported statistics must matter."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.get_buffer("running_mean").uniform_(-0.2, 0.2, generator=generator)
                module.get_buffer("running_var").uniform_(0.5, 1.5, generator=generator)
                if module.affine:
                    module.weight.uniform_(0.5, 1.5, generator=generator)
                    module.bias.uniform_(-0.2, 0.2, generator=generator)
            elif isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)) and module.bias is not None:
                module.bias.uniform_(-0.1, 0.1, generator=generator)
    return model.eval()


def imported_model(arch: Any, source: Any, **options: Any) -> tuple[Any, Any]:
    result = import_weights(arch, source, **options)
    model = BACKEND.build(arch).eval()
    BACKEND.set_weights(model, arch, result.complete(BACKEND.get_weights(model, arch)))
    return model, result


def assert_same_outputs(model: Any, reference: Any, arch: Any) -> None:
    h, w, c = arch.graph.input.shape
    images = torch.randn(2, c, h, w, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours, theirs = model(images).numpy(), reference(images).numpy()
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() <= 1e-5 * np.abs(theirs).max()


@pytest.mark.parametrize("name", REFERENCES)
def test_reference_weights_import_from_files_and_from_the_module(name: str, tmp_path: Path) -> None:
    library, constructor, spec = REFERENCES[name]
    torch.manual_seed(0)
    reference = randomized(reference_model(library, constructor))
    arch = build_architecture(EXAMPLES / f"{spec}.yaml", overrides=SMALL)
    assert arch.params_trainable == sum(p.numel() for p in reference.parameters())  # the published count
    torch.save(reference.state_dict(), tmp_path / "weights.pth")
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    results = {}
    for source in (tmp_path / "weights.pth", tmp_path / "weights.safetensors", reference):
        model, result = imported_model(arch, source)
        assert_same_outputs(model, reference, arch)
        results[result.method if not isinstance(source, Path) else source.suffix] = result
    # Names and traced dataflow are independent routes to the same assignment.
    assert results[".pth"].matched == results[".safetensors"].matched == results["graph"].matched
    assert not results["graph"].unused


def test_torchvision_and_timm_resnetv2_find_the_same_shortcut(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tv = import_weights(
        build_architecture(EXAMPLES / "resnet50.yaml", overrides=SMALL),
        reference_model("torchvision", "resnet50").state_dict(),
    )
    v2 = import_weights(
        build_architecture(EXAMPLES / "timm_resnetv2_50.yaml", overrides=SMALL),
        reference_model("timm", "resnetv2_50").state_dict(),
    )
    assert tv.matched["stage2.block0.shortcut.conv"] == {"kernel": "layer2.0.downsample.0.weight"}
    assert v2.matched["stage2.block0.shortcut.conv"] == {"kernel": "stages.1.blocks.0.downsample.conv.weight"}
    assert v2.matched["head.classifier"] == {"kernel": "head.fc.weight", "bias": "head.fc.bias"}  # a 1x1 conv


@pytest.mark.parametrize("name", SEEDS)
def test_hand_written_seed_modules_import(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = randomized(SEEDS[name]())
    arch = build_architecture(EXAMPLES / f"{name}.yaml")
    model, traced = imported_model(arch, reference)
    assert_same_outputs(model, reference, arch)
    assert traced.method == "graph" and not traced.notes
    torch.save(reference.state_dict(), tmp_path / "seed.pth")  # the article's own names, by structure
    model, named = imported_model(arch, tmp_path / "seed.pth")
    assert_same_outputs(model, reference, arch)
    assert named.matched == traced.matched


def test_a_flatten_head_and_a_resnet_spec_module_and_file(tmp_path: Path) -> None:
    """A spec-built module flattens a 2x2 map in NCHW order; both routes reorder the dense rows."""
    arch = tiny("head.layers=[{type: avg_pool, pool_size: 4}, {type: flatten}]")
    reference = randomized(BACKEND.build(arch, seed=3))
    for source in (reference, reference.state_dict()):
        model, _ = imported_model(arch, source)
        assert_same_outputs(model, reference, arch)
    BACKEND.save(reference, arch, arch.spec.model_dump(mode="json", exclude_none=True), tmp_path / "tiny.pt")
    result = import_weights(arch, tmp_path / "tiny.pt")
    assert result.method == "graph" and "resnet-spec PyTorch model tiny" in result.source
    assert_same_weights(result.weights, BACKEND.get_weights(reference, arch))
    other = tiny("head.layers=[{type: avg_pool, pool_size: 4}, {type: flatten}]", "classes=9")
    assert import_weights(other, tmp_path / "tiny.pt", classifier="auto").new == ["head.classifier"]


def test_a_stride_in_the_wrong_place_is_found_in_a_module() -> None:
    """Shapes cannot see stride placement (v1 vs v1.5); a traced module's convolutions can."""
    arch = build_architecture(EXAMPLES / "resnet50.yaml", overrides=[*SMALL, "stages.1.stride_placement=first_1x1"])
    with pytest.raises(WeightsImportError) as info:
        import_weights(arch, reference_model("torchvision", "resnet50"))
    assert str(info.value) == (
        "the ResNet module: stage2.block0.conv1: the spec's convolution has strides (2, 2), the source's "
        "layer2.0.conv1 (1, 1) (the same weights, but the stride sits elsewhere in the source's block)"
    )


class _Standardized(torch.nn.Conv2d):
    def forward(self, x: Any) -> Any:  # weight standardization: the weight passes through other ops
        w = self.weight
        return torch.nn.functional.conv2d(x, (w - w.mean()) / w.std(), None, self.stride, self.padding)


class _Shared(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: Any) -> Any:
        return self.conv(self.conv(x))


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (_Standardized(3, 8, 3), r"weight is used by (sub|mean|std|__sub__), which a spec has no layer for"),
        (_Shared(), r"conv\.weight is used twice \(shared weights\)"),
        (torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, dilation=2)), r"a dilated convolution \(dilation \(2, 2\)\)"),
        (
            torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5), torch.nn.Flatten(), torch.nn.Linear(10, 3)),
            r"running the source model on a \(1, 3, 16, 16\) input failed",
        ),
    ],
    ids=["standardized", "shared", "dilated", "fails"],
)
def test_modules_a_spec_cannot_hold_are_refused_by_name(module: Any, message: str) -> None:
    with pytest.raises(WeightsImportError, match=message):
        import_weights(tiny(), module)
