"""``resnet-spec diagram SPEC -o net.svg|net.png``: the network block by block.

One box per block (stem, every residual block, head) with its residual branch in the ResNet
paper's notation, its output shape, parameters and MACs; a bracket on the right says how the
shortcut reaches the add (identity, zero_pad, projection...), and the box is coloured by it.
Stages are framed and titled. Runs of identical consecutive blocks can be drawn as one stacked
box marked ``xN`` (``--collapse``), which keeps ResNet-1202's 600 blocks on one page.

Drawn with matplotlib (the ``plot`` extra): it installs from PyPI alone, writes real SVG (text
kept as text) and rasterizes PNG with Agg, and measures text with the font it draws with, so
the columns line up. Graphviz would need the ``dot`` program, which no package registry ships.
Each block box carries an SVG id, ``block-stage2.block1-x8`` (first block, count), so tools and
tests can read the structure back.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .diagnostics import printable
from .outline import Block, Outline, Run, Stage, load_outline, shape_text
from .plotting import PlotUnavailable, new_figure, output_problem, save

NAME, HELP = "diagram", "draw the network block by block (SVG or PNG): shapes, shortcuts, parameters"
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
AUTO_COLLAPSE_ABOVE = 24  # blocks; ResNet-44 (21) is drawn whole, ResNet-56 (27) collapsed

COLOURS = {  # shortcut kind -> (face, edge)
    "identity": ("#eef3fb", "#5b7db1"),
    "zero_pad": ("#fff1e0", "#d9822b"),
    "projection": ("#fde8ea", "#c23b4e"),
    "avg_pool_projection": ("#f1e8fb", "#7b4fb0"),
}
OTHER, ENDS, STAGE_FILL = ("#f0f0f0", "#777777"), ("#e9f5ec", "#3c8d5a"), "#f7f7f7"
FONT, SMALL = 7.5, 6.5  # points
ROW, BOX, HEADER = 0.34, 0.26, 0.30  # inches: a block row, its box, a stage title row
LEFT, GAP, BRACKET = 0.45, 0.14, 0.16


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="SPEC", help="YAML or JSON spec ('-' for standard input)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="picture to write: NAME.svg or NAME.png")
    parser.add_argument(
        "--collapse", choices=("auto", "always", "never"), default="auto",
        help=f"draw runs of identical blocks as one 'xN' box: always, never, or auto (above {AUTO_COLLAPSE_ABOVE} blocks)",
    )  # fmt: skip
    parser.add_argument("--dpi", type=int, default=150, help="PNG resolution (default 150)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value before validation, e.g. --set stages.1.shortcut=projection")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    problem = output_problem(args.output, [args.file])
    if problem or not 10 <= args.dpi <= 1200:
        print(f"error: {printable(problem or f'--dpi {args.dpi}: choose 10 to 1200')}", file=sys.stderr)
        return EXIT_USAGE
    item = load_outline(args.file, args.overrides)
    if item is None:
        return EXIT_INVALID
    collapse = args.collapse == "always" or (args.collapse == "auto" and len(item.blocks) > AUTO_COLLAPSE_ABOVE)
    try:
        boxes = draw(item, args.output, collapse=collapse, dpi=args.dpi)
    except PlotUnavailable as exc:
        print(f"error: {printable(exc)}", file=sys.stderr)
        return EXIT_USAGE
    note = f"{len(item.blocks)} blocks in {boxes} boxes, runs of identical blocks collapsed" if collapse else \
        f"{len(item.blocks)} blocks"  # fmt: skip
    print(printable(f"wrote {args.output} ({item.name}: {note})"))
    return EXIT_OK


@dataclass
class _Row:
    """One line of the picture: the input, a stage title, a box (stem, run of blocks, head), the output."""

    kind: str  # "end", "stage", "box"
    y: float  # centre, inches from the top
    cells: tuple[str, ...]  # name, layers, output shape, parameters, MACs (boxes); the text (others)
    colours: tuple[str, str] = OTHER
    count: int = 1
    gid: str = ""
    shortcut: str = ""


def draw(item: Outline, target: Path, *, collapse: bool, dpi: int = 150) -> int:
    """Write the diagram of ``item`` to ``target`` (.svg or .png); the number of block boxes drawn."""
    rows, stage_spans = _layout(item, collapse)
    figure = new_figure(1.0, 1.0)
    measure = _Measure()
    boxes = [r for r in rows if r.kind == "box"]
    widths = [max((measure(r.cells[i]) for r in boxes), default=0.0) for i in range(5)]
    box_width = sum(widths) + GAP * 6
    label_width = max((measure(r.shortcut) for r in boxes), default=0.0)
    width = max(LEFT + box_width + BRACKET + 0.16 + label_width + 0.3, measure(_subtitle(item)) + 0.6)
    height = rows[-1].y + ROW / 2 + 0.75
    figure.set_size_inches(width, height)
    axes = figure.add_axes((0.0, 0.0, 1.0, 1.0))
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.axis("off")
    axes.text(LEFT, 0.28, item.name, fontsize=11, fontweight="bold", va="center")
    axes.text(LEFT, 0.5, _subtitle(item), fontsize=FONT, va="center", color="#444444")
    right = LEFT + box_width
    for top, bottom in stage_spans:
        _rounded(axes, LEFT - 0.2, top, right + BRACKET + label_width + 0.25 - (LEFT - 0.2), bottom - top,
                 STAGE_FILL, "#dddddd", zorder=0)  # fmt: skip
    axes.plot([LEFT + 0.12] * 2, [rows[0].y, rows[-1].y], color="#999999", lw=0.8, zorder=1)  # the main path
    for row in rows:
        if row.kind == "box":
            _box(axes, row, widths, right)
        else:
            bold = "bold" if row.kind == "stage" else "normal"
            axes.text(LEFT + (0.25 if row.kind == "stage" else 0.0), row.y, row.cells[0], fontsize=FONT, va="center",
                      fontweight=bold, bbox={"boxstyle": "round,pad=0.25", "fc": "white", "ec": "#999999", "lw": 0.6}
                      if row.kind == "end" else None, zorder=3)  # fmt: skip
    _legend(axes, measure, rows, rows[-1].y + 0.45, collapse and any(r.count > 1 for r in rows), len(item.blocks))
    save(figure, target, dpi=dpi)
    return sum(1 for r in boxes if r.gid.startswith("block-"))


def _layout(item: Outline, collapse: bool) -> tuple[list[_Row], list[tuple[float, float]]]:
    rows: list[_Row] = []
    spans: list[tuple[float, float]] = []
    y = 0.7

    def add(row_height: float, row: _Row) -> None:
        nonlocal y
        row.y = y + row_height / 2
        rows.append(row)
        y += row_height

    add(ROW, _Row("end", 0.0, (f"input {shape_text(item.input_shape)}",)))
    for block in [item.stem, *item.extra] if item.stem else item.extra:
        add(ROW, _end_box(block))
    for stage in item.stages:
        top = y + 0.03
        add(HEADER, _Row("stage", 0.0, (_stage_title(stage),)))
        for run in stage.runs(collapse):
            add(ROW, _run_box(run))
        spans.append((top, y + 0.02))
        y += 0.08
    if item.head:
        add(ROW, _end_box(item.head))
    add(ROW, _Row("end", 0.0, (f"output {shape_text(item.output_shape)}",)))
    return rows, spans


def _run_box(run: Run) -> _Row:
    block = run.first
    kind = block.shortcut.kind if block.shortcut else ""
    name = f"{run.label}  \u00d7{run.count}" if run.count > 1 else run.label
    each = " each" if run.count > 1 else ""
    cells = (name, _arrows(block.layers), shape_text(block.output_shape), f"{block.params_trainable:,} params{each}",
             f"{_macs(block.macs)} MACs{each}")  # fmt: skip
    shortcut = block.shortcut.describe() if block.shortcut else ""
    return _Row("box", 0.0, cells, COLOURS.get(kind, OTHER), run.count, f"block-{block.name}-x{run.count}", shortcut)


def _end_box(block: Block) -> _Row:
    cells = (block.name, _arrows(block.layers), shape_text(block.output_shape), f"{block.params_trainable:,} params",
             f"{_macs(block.macs)} MACs")  # fmt: skip
    return _Row("box", 0.0, cells, ENDS, 1, block.name)


def _box(axes: Any, row: _Row, widths: list[float], right: float) -> None:
    face, edge = row.colours
    top, left = row.y - BOX / 2, LEFT
    for offset in (0.06, 0.04) if row.count > 2 else (0.03,) if row.count > 1 else ():  # a stack for xN
        _rounded(axes, left + offset, top + offset, right - left, BOX, face, edge, zorder=2 - offset)
    _rounded(axes, left, top, right - left, BOX, face, edge, zorder=2, gid=row.gid)
    x = left + GAP
    for index, (cell, width) in enumerate(zip(row.cells, widths)):
        end = index >= 2  # numbers are right-aligned
        axes.text(x + width if end else x, row.y, cell, fontsize=FONT, va="center", ha="right" if end else "left",
                  fontweight="bold" if index == 0 else "normal", zorder=3)  # fmt: skip
        x += width + GAP
    if row.shortcut:
        right += 0.06 if row.count > 2 else 0.03 if row.count > 1 else 0.0  # beside the stack
        a, b, x0 = top + 0.05, top + BOX - 0.05, right + BRACKET
        axes.plot([right, x0, x0], [a, a, b], color=edge, lw=1.0, zorder=3)
        axes.annotate("", xy=(right, b), xytext=(x0, b), arrowprops={"arrowstyle": "->", "color": edge, "lw": 1.0},
                      zorder=3)  # fmt: skip
        axes.text(x0 + 0.06, row.y, row.shortcut, fontsize=SMALL, va="center", color=edge, zorder=3)


def _legend(axes: Any, measure: _Measure, rows: list[_Row], y: float, collapsed: bool, blocks: int) -> None:
    kinds = [k for k, colours in COLOURS.items() if any(r.colours == colours for r in rows)]
    x = LEFT
    for kind in kinds:
        face, edge = COLOURS[kind]
        _rounded(axes, x, y - 0.07, 0.22, 0.14, face, edge, zorder=2)
        axes.text(x + 0.28, y, f"{kind} shortcut", fontsize=SMALL, va="center")
        x += 0.28 + measure(f"{kind} shortcut") + 0.3
    if collapsed:
        axes.text(LEFT, y + 0.22, f"\u00d7N: N identical consecutive blocks drawn as one box "
                  f"(--collapse never draws each of the {blocks} blocks)", fontsize=SMALL, va="center", color="#444444")  # fmt: skip


def _rounded(axes: Any, x: float, y: float, w: float, h: float, face: str, edge: str, zorder: float,
             gid: str | None = None) -> None:  # fmt: skip
    from matplotlib.patches import FancyBboxPatch

    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.04", fc=face, ec=edge, lw=0.8,
                           zorder=zorder)  # fmt: skip
    patch.set_gid(gid)
    axes.add_patch(patch)


class _Measure:
    """Text widths in inches, measured with the font the figure draws with."""

    def __init__(self) -> None:
        from matplotlib.font_manager import FontProperties
        from matplotlib.textpath import TextToPath

        self._path, self._bold = TextToPath(), FontProperties(size=FONT, weight="bold")

    def __call__(self, text: str) -> float:
        width, _, _ = self._path.get_text_width_height_descent(text, self._bold, ismath=False)
        return float(width) / 72.0  # points; bold is the widest, so every cell fits


def _stage_title(stage: Stage) -> str:
    n, noun, kind = len(stage.blocks), "block" if len(stage.blocks) == 1 else "blocks", stage.kind
    # "3 basic blocks"; "6 blocks (first_unit, then preact_bottleneck)"; "2 blocks" without a kind name
    count = f"{n} {noun} ({kind})" if "," in kind else f"{n} {kind} {noun}" if kind else f"{n} {noun}"
    return (f"{stage.name}: {count}, {stage.filters} channels, stride {stage.stride}, "
            f"{sum(b.params_trainable for b in stage.blocks):,} params, {_macs(stage.macs)} MACs")  # fmt: skip


def _subtitle(item: Outline) -> str:
    return (f"{item.params_trainable:,} trainable parameters (and {item.params_non_trainable:,} non-trainable), "
            f"{_macs(item.macs)} MACs per image, "
            f"depth {item.depth}, {len(item.blocks)} blocks, {item.hash[:19]}")  # fmt: skip


def _arrows(text: str) -> str:
    return text.replace(" -> ", " \u2192 ")


def _macs(value: int) -> str:
    return f"{value / 1e9:.2f} G" if value >= 1e9 else f"{value / 1e6:.1f} M" if value >= 1e5 else f"{value:,}"
