"""The keras.applications examples against keras.applications itself (weights=None): the compiled
model takes the reference's weights by position (`model.set_weights(ref.get_weights())`, the way
Keras users move weights), and then computes the same thing.

ResNet50V2 and ResNet101V2 need what pre-activation ResNets written in Keras do: per-conv bias
inside a block (`layer_bias`), the stride on the last block of a stack (`stride_block: last`) with
a subsampling shortcut there (`same_channels: subsample`), and the shortcut written before the
branch (`order: shortcut_first`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import resnet_spec
from resnet_spec.backends import get_backend

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
BACKEND = get_backend("keras")

CASES = [  # (example, keras.applications model, Keras' total parameter count)
    ("keras_resnet50v2_imagenet", "ResNet50V2", 25_613_800),
    ("keras_resnet101v2_imagenet", "ResNet101V2", 44_675_560),
    ("keras_resnet50_imagenet", "ResNet50", 25_636_712),
]


@pytest.mark.parametrize(("example", "reference", "total"), CASES, ids=[c[0] for c in CASES])
def test_example_takes_the_reference_weights_and_matches_it(example: str, reference: str, total: int) -> None:
    arch = resnet_spec.build_architecture(EXAMPLES / f"{example}.yaml")
    ours = BACKEND.build(arch)
    ref = getattr(keras.applications, reference)(weights=None)
    assert ours.count_params() == ref.count_params() == total
    assert arch.params_trainable + arch.params_non_trainable == total
    weights = ref.get_weights()
    # Random batch-norm statistics and gammas, so that every norm does something.
    rng = np.random.default_rng(0)
    weights = [w + rng.uniform(0.0, 0.2, w.shape).astype(w.dtype) if w.ndim == 1 else w for w in weights]
    ref.set_weights(weights)
    ours.set_weights(weights)  # by position: every weight in keras.applications' order
    x = rng.normal(size=(2, 224, 224, 3)).astype(np.float32)
    outputs = BACKEND.node_outputs(ours, arch, x)
    features = keras.Model(ref.input, ref.get_layer("avg_pool").output)(x, training=False).numpy()
    np.testing.assert_allclose(outputs["head.pool1"], features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(outputs["head.softmax"], ref(x, training=False).numpy(), rtol=0, atol=1e-5)


def test_v2_block_structure() -> None:
    """Where the stride, the biases and the shortcuts sit in ResNet50V2 (stack conv3 = stage2)."""
    graph = resnet_spec.build_architecture(EXAMPLES / "keras_resnet50v2_imagenet.yaml").graph
    assert [graph[f"stage2.block{b}.conv2"].strides for b in range(4)] == [(1, 1)] * 3 + [(2, 2)]  # type: ignore[attr-defined]
    assert graph["stage2.block3.conv2"].padding == (1, 1, 1, 1)  # type: ignore[attr-defined]  # ZeroPadding2D(1) + valid
    assert [graph[f"stage2.block0.conv{i}"].use_bias for i in (1, 2, 3)] == [False, False, True]  # type: ignore[attr-defined]
    assert graph["stage2.block0.shortcut.conv"].inputs == ("stage2.block0.act1",)  # the pre-activated input
    assert graph["stage2.block3.shortcut.subsample"].inputs == ("stage2.block2.add",)  # the raw block input
    names = [node.name for node in graph if node.name.startswith("stage2.block0.")]
    assert names.index("stage2.block0.shortcut.conv") < names.index("stage2.block0.conv1")  # shortcut first
    assert "stage4.block2.shortcut.subsample" not in names and graph["stage4.block2.add"].inputs[1] == "stage4.block1.add"
