"""``resnet-spec diagram``: every example renders; the SVG, read back with an XML parser, has one
box per block (block counts from the graph's node names and the published architectures, not
from the diagram code); PNGs decode with Pillow; long nets collapse into a readable page."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from resnet_spec import summary, validate
from resnet_spec.cli import main

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((REPO / "examples").glob("*.yaml"))
BOX_ID = re.compile(r"^block-(stage\d+)\.block(\d+)-x(\d+)$")
SVG = "{http://www.w3.org/2000/svg}"
PUBLISHED_BLOCKS = {  # (He et al. 2015, tables 1 and 6; He et al. 2016 for v2-164)
    "resnet18": 8, "resnet34": 16, "resnet50": 16, "resnet101": 33, "resnet152": 50,
    "resnet20_cifar10": 9, "resnet56_cifar10": 27, "resnet110_cifar10": 54, "resnet1202_cifar10": 600,
    "resnet_v2_164_cifar10": 54,
}  # fmt: skip

pytest.importorskip("matplotlib")


def graph_blocks(spec: Path) -> list[str]:
    """The residual blocks as the graph names them (``stage2.block0``), in order."""
    arch = validate(spec).architecture
    assert arch is not None
    names = [re.match(r"^(stage\d+\.block\d+)\.", n.name) for n in arch.graph]
    return list(dict.fromkeys(m.group(1) for m in names if m))


def boxes(svg: Path) -> list[tuple[str, int, int]]:
    """(stage, first block, count) of every block box, in drawing order."""
    root = ET.parse(svg).getroot()
    assert root.tag == f"{SVG}svg"
    found = [BOX_ID.match(g.get("id", "")) for g in root.iter(f"{SVG}g")]
    return [(m.group(1), int(m.group(2)), int(m.group(3))) for m in found if m]


def texts(svg: Path) -> list[str]:
    return [t.text or "" for t in ET.parse(svg).getroot().iter(f"{SVG}text")]


def draw(spec: Path, out: Path, *options: str) -> None:
    assert main(["diagram", str(spec), "-o", str(out), *options]) == 0


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_has_one_box_per_block(spec: Path, tmp_path: Path) -> None:
    expected = graph_blocks(spec)
    assert len(expected) == PUBLISHED_BLOCKS.get(spec.stem, len(expected))
    draw(spec, tmp_path / "every.svg", "--collapse", "never")
    drawn = boxes(tmp_path / "every.svg")
    assert [f"{stage}.block{first}" for stage, first, _ in drawn] == expected
    assert all(count == 1 for _, _, count in drawn)
    # The default (auto) may collapse runs: the counts still add up, block by block.
    draw(spec, tmp_path / "auto.svg")
    covered = [
        f"{stage}.block{first + i}" for stage, first, count in boxes(tmp_path / "auto.svg") for i in range(count)
    ]
    assert covered == expected


def test_boxes_show_shapes_parameters_and_shortcuts(tmp_path: Path) -> None:
    spec = REPO / "examples" / "resnet20_cifar10.yaml"
    draw(spec, tmp_path / "net.svg")
    words = texts(tmp_path / "net.svg")
    arch = validate(spec).architecture
    assert arch is not None
    for row in summary.block_rows(arch)[1:]:  # the input has no box
        assert f"{row['params_trainable']:,} params" in words, row
        assert "x".join(map(str, row["output_shape"])) in words, row
    # The paper's option A on the two downsampling blocks (16 -> 32 and 32 -> 64 channels), identity elsewhere.
    assert words.count("zero_pad (x[::2, ::2], channels +8 +8)") == 1
    assert words.count("zero_pad (x[::2, ::2], channels +16 +16)") == 1
    assert words.count("identity") == 7
    assert "3x3/2, 32 \u2192 3x3, 32" in words


def test_projection_shortcuts_are_labelled(tmp_path: Path) -> None:
    draw(REPO / "examples" / "resnet50.yaml", tmp_path / "net.svg")
    words = texts(tmp_path / "net.svg")
    assert "projection (1x1 conv 256 + norm)" in words  # stage 1 widens 64 -> 256 without striding
    assert [w for w in words if w.startswith("projection (1x1/2")] == [
        "projection (1x1/2 conv 512 + norm)", "projection (1x1/2 conv 1024 + norm)", "projection (1x1/2 conv 2048 + norm)",
    ]  # fmt: skip
    assert "1x1, 128 \u2192 3x3/2, 128 \u2192 1x1, 512" in words  # torchvision's v1.5: stride in the 3x3


def test_resnet1202_collapses_to_a_page(tmp_path: Path) -> None:
    draw(REPO / "examples" / "resnet1202_cifar10.yaml", tmp_path / "net.svg")
    assert boxes(tmp_path / "net.svg") == [("stage1", 0, 200), ("stage2", 0, 1), ("stage2", 1, 199), ("stage3", 0, 1),
                                           ("stage3", 1, 199)]  # fmt: skip
    words = texts(tmp_path / "net.svg")
    assert "block1..block199  \u00d7199" in words and "block0..block199  \u00d7200" in words
    assert any("--collapse never draws each of the 600 blocks" in w for w in words)  # it says so
    height = float(ET.parse(tmp_path / "net.svg").getroot().get("height", "0").removesuffix("pt"))
    assert 200 < height < 800  # points: one page, not 600 rows


def test_png_decodes(tmp_path: Path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    for name in ("resnet20_cifar10", "resnet1202_cifar10"):
        out = tmp_path / f"{name}.png"
        draw(REPO / "examples" / f"{name}.yaml", out, "--dpi", "100")
        with image_module.open(out) as image:
            image.load()
            assert image.format == "PNG"
            width, height = image.size
            assert 600 < width < 2000 and 400 < height < 1500, image.size
            pixels = image.convert("RGB")
            colours = pixels.getcolors(maxcolors=1 << 20) or []
        assert len(colours) > 50  # text and boxes, not a blank canvas
        orange = [
            count for count, (r, g, b) in colours if abs(r - 0xD9) < 12 and abs(g - 0x82) < 12 and abs(b - 0x2B) < 12
        ]
        assert sum(orange) > 100  # the zero_pad blocks' edges are drawn in their colour


def test_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "net.yaml"
    spec.write_text((REPO / "examples" / "resnet20_cifar10.yaml").read_text())
    before = spec.read_bytes()
    assert main(["diagram", str(spec), "-o", str(spec)]) == 2  # would overwrite the spec
    assert "must end in .svg or .png" in capsys.readouterr().err
    assert spec.read_bytes() == before
    assert main(["diagram", str(spec), "-o", str(tmp_path)]) == 2
    assert main(["diagram", str(spec), "-o", str(tmp_path / "x.png"), "--dpi", "0"]) == 2
    assert main(["diagram", str(spec), "-o", str(tmp_path / "x.svg"), "--set", "stages.1.shortcut=identity"]) == 1
    err = capsys.readouterr().err
    assert "RS201" in err and "[at stages.1.shortcut]" in err  # located, with its code
    assert not (tmp_path / "x.svg").exists() and not (tmp_path / "x.png").exists()


def test_a_png_too_large_to_draw_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "all.png"
    spec = REPO / "examples" / "resnet1202_cifar10.yaml"
    assert main(["diagram", str(spec), "-o", str(out), "--collapse", "never", "--dpi", "200"]) == 2
    assert "over the 32,768-pixel limit; write an SVG" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary file left
