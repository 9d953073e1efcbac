"""Matplotlib for the picture commands (``diagram``, ``compare``).

Figures are made with :class:`matplotlib.figure.Figure` directly, never through pyplot, so no
global backend or GUI state is touched. Matplotlib is imported only when a picture is drawn
(it is the ``plot`` extra); without it the commands say how to install it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .atomic import atomic_path, unwritable

FORMATS = {".svg": "svg", ".png": "png"}


MAX_PIXELS = 1 << 15  # per side of a PNG; Agg refuses 2**16, and a larger picture is unreadable anyway


class PlotUnavailable(RuntimeError):
    """Matplotlib is not installed, or the picture cannot be drawn as asked (too large a PNG)."""


def new_figure(width: float, height: float) -> Any:
    """A matplotlib Figure of ``width`` x ``height`` inches."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:  # the plot extra is not installed
        raise PlotUnavailable("drawing needs matplotlib: pip install 'resnet-spec[plot]'") from exc
    return Figure(figsize=(width, height))


def save(figure: Any, target: Path, dpi: int = 100) -> None:
    """Write ``figure`` atomically in the format the suffix names. Output is reproducible: no
    creation date, fixed SVG ids, text kept as text in SVG (searchable, selectable)."""
    import matplotlib

    kind = FORMATS[target.suffix.lower()]
    width, height = figure.get_size_inches()
    if kind == "png" and max(width, height) * dpi > MAX_PIXELS:
        raise PlotUnavailable(
            f"{target}: a {width * dpi:.0f} x {height * dpi:.0f} pixel PNG is over the {MAX_PIXELS:,}-pixel limit; "
            f"write an SVG, lower --dpi, or collapse runs of blocks"
        )
    metadata = {"Date": None} if kind == "svg" else {"Software": None}
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "resnet-spec"}), atomic_path(target) as tmp:
        figure.savefig(tmp, format=kind, dpi=dpi, metadata=metadata)


def output_problem(target: Path, inputs: Iterable[Path | str], formats: Iterable[str] = FORMATS) -> str | None:
    """Why ``target`` may not be written, or None: a suffix that is not a picture format (a typo
    such as ``-o spec.yaml`` must not overwrite the spec), one of the files being read, or a
    folder."""
    allowed = tuple(formats)
    if target.suffix.lower() not in allowed:
        return f"{target}: the output must end in {' or '.join(allowed)} (the format follows the suffix)"
    if target.is_dir():
        return f"{target}: is a folder; give a file name, e.g. {target / ('net' + allowed[0])}"
    problem = unwritable(target)  # a missing or read-only folder, /proc, a device
    if problem:
        return problem
    for source in inputs:
        if str(source) != "-" and target.exists() and Path(source).exists() and os.path.samefile(target, source):
            return f"{target}: is one of the inputs; choose another output name"
    return None
