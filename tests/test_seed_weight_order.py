"""Weight order follows the way people write the network: every seed system, written by hand
from /work/shared/seed-systems.md (tests/seed_models.py), hands its weights to the compiled model
by position, as Keras users move weights (``compiled.set_weights(hand.get_weights())``) and as a
PyTorch state dict lines up (``parameters()`` and ``buffers()`` in order), and the two then
compute the same outputs. Within a block the branch comes first, then the shortcut, in both
backends' order."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import seed_models

import resnet_spec
from resnet_spec.backends import get_backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
RNG = np.random.default_rng(7)


def _arch(name: str, edit: Any = None) -> Any:
    data = copy.deepcopy(resnet_spec.load(EXAMPLES / f"{name}.yaml").data)
    if edit is not None:
        edit(data)
    return resnet_spec.build_architecture(data)


def _perturbed(weights: list[np.ndarray]) -> list[np.ndarray]:
    # Batch-norm vectors away from 0 and 1, so that a norm put in the wrong place shows.
    return [w + RNG.uniform(0.05, 0.3, w.shape).astype(w.dtype) if w.ndim == 1 else w for w in weights]


def _option_b(data: dict[str, Any]) -> None:
    for stage in data["stages"][1:]:
        stage["shortcut"] = {"kind": "projection", "norm": False, "bias": True}


KERAS_SEEDS = [
    ("resnet34_cifar10", seed_models.resnet34_cifar10, None),
    ("resnet_v2_11_cifar10", lambda: seed_models.resnet_v2_cifar10(11), None),
    ("resnet_v2_56_cifar10", lambda: seed_models.resnet_v2_cifar10(56), None),
    ("resnet50_signs", seed_models.resnet50_signs, None),
    ("resnet20_cifar10", lambda: seed_models.resnet20_cifar10("A"), None),
    ("resnet20_cifar10", lambda: seed_models.resnet20_cifar10("B"), _option_b),
]


@pytest.mark.keras
@pytest.mark.parametrize(("example", "hand_written", "edit"), KERAS_SEEDS,
                         ids=["resnet34_cifar10", "resnet_v2_11", "resnet_v2_56", "resnet50_signs", "resnet20_A", "resnet20_B"])  # fmt: skip
def test_keras_seed_takes_the_hand_written_weights(example: str, hand_written: Any, edit: Any) -> None:
    pytest.importorskip("tensorflow")
    arch = _arch(example, edit)
    compiled = get_backend("keras").build(arch)
    hand = hand_written()
    assert compiled.count_params() == hand.count_params()
    weights = _perturbed(hand.get_weights())
    hand.set_weights(weights)
    compiled.set_weights(weights)  # by position
    h, w, c = arch.graph.input.shape
    x = RNG.normal(size=(2, h, w, c)).astype(np.float32)
    expected = hand(x, training=False).numpy()
    np.testing.assert_allclose(compiled(x, training=False).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_torch_seed_takes_the_hand_written_state_by_position() -> None:
    torch = pytest.importorskip("torch")
    arch = _arch("resnet18_xray")
    compiled, hand = get_backend("torch").build(arch), seed_models.resnet18_xray()
    ours, theirs = list(compiled.parameters()), list(hand.parameters())
    assert [tuple(p.shape) for p in ours] == [tuple(p.shape) for p in theirs]
    mine = [b for b in compiled.buffers() if b.dtype.is_floating_point]
    others = [b for b in hand.buffers() if b.dtype.is_floating_point]
    assert [tuple(b.shape) for b in mine] == [tuple(b.shape) for b in others]
    with torch.no_grad():
        for target, source in zip(ours + mine, theirs + others):
            if source.dim() == 1:
                source.add_(torch.rand_like(source) * 0.3)
            target.copy_(source)
    compiled.eval()
    hand.eval()
    x = torch.from_numpy(RNG.normal(size=(2, 3, 224, 224)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), hand(x), rtol=1e-4, atol=1e-5)


SEEDS = ["resnet34_cifar10", "resnet_v2_11_cifar10", "resnet50_signs", "resnet20_cifar10", "resnet18_xray"]


@pytest.mark.parametrize("example", SEEDS)
def test_torch_parameters_list_each_branch_before_its_shortcut(example: str) -> None:
    pytest.importorskip("torch")
    arch = _arch(example, _option_b if example == "resnet20_cifar10" else None)
    names = [name for name, _ in get_backend("torch").build(arch).named_parameters()]
    blocks = {".".join(n.split(".")[:2]) for n in names if ".shortcut." in n}
    assert blocks, "every seed has projection shortcuts somewhere"
    for block in blocks:
        mine = [n for n in names if n.startswith(block + ".")]
        cut = next(i for i, n in enumerate(mine) if ".shortcut." in n)
        assert all(".shortcut." in n for n in mine[cut:]), mine


def test_shortcut_first_puts_the_shortcut_first_in_both_backends() -> None:
    """keras.applications' order, for contrast: the shortcut's weights lead the block."""
    pytest.importorskip("torch")
    arch = resnet_spec.build_architecture(EXAMPLES / "keras_applications_resnet50.yaml")
    names = [name for name, _ in get_backend("torch").build(arch).named_parameters() if name.startswith("stage2.block0.")]
    assert names[:4] == [f"stage2.block0.shortcut.{part}" for part in ("conv.weight", "conv.bias", "norm.weight", "norm.bias")]
