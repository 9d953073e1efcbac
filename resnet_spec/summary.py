"""Summaries of an :class:`~resnet_spec.pipeline.Architecture`: per block (text) and per node (JSON)."""

from __future__ import annotations

from typing import Any

from .pipeline import Architecture
from .shapes import fmt


def group_of(name: str) -> str:
    """``stage2.block0.conv1`` -> ``stage2.block0``; ``stem.conv1`` -> ``stem``."""
    parts = name.split(".")
    return ".".join(parts[:2]) if parts[0].startswith("stage") else parts[0]


def node_rows(arch: Architecture) -> list[dict[str, Any]]:
    rows = []
    for node in arch.graph:
        info = arch.analysis.info[node.name]
        rows.append({
            "name": node.name, "op": node.op, "inputs": list(node.inputs), "output_shape": list(info.output_shape),
            "params_trainable": info.params_trainable, "params_non_trainable": info.params_non_trainable,
            "macs": info.macs,
        })  # fmt: skip
    return rows


def block_rows(arch: Architecture) -> list[dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for row in node_rows(arch):
        group = groups.setdefault(
            group_of(row["name"]),
            {"name": group_of(row["name"]), "layers": 0, "params_trainable": 0, "params_non_trainable": 0, "macs": 0},
        )
        group["layers"] += 1
        group["output_shape"] = row["output_shape"]  # the group's last node in topological order
        for key in ("params_trainable", "params_non_trainable", "macs"):
            group[key] += row[key]
    return list(groups.values())


def output_rows(arch: Architecture) -> list[dict[str, Any]]:
    """Each output of the model (a backbone's features, in the spec's order; else the one
    output) with its node, shape, channels and stride, as timm's ``feature_info`` lists them
    (``num_chs``, ``reduction``, ``module``). Stride: input height / output height, None for a
    vector."""
    height = arch.graph.input.shape[0]
    rows = []
    for name, node in arch.graph.named_outputs().items():
        shape = arch.shape_of(node)
        stride = height // shape[0] if len(shape) == 3 else None
        rows.append({"name": name, "node": node, "shape": list(shape), "channels": shape[-1], "stride": stride})
    return rows


def to_json(arch: Architecture) -> dict[str, Any]:
    return {
        "name": arch.name,
        "hash": arch.hash,
        "input_shape": list(arch.shape_of(arch.graph.input.name)),
        "output_shape": list(arch.output_shape),
        "params_trainable": arch.params_trainable,
        "params_non_trainable": arch.params_non_trainable,
        "params_total": arch.params_trainable + arch.params_non_trainable,
        "macs": arch.macs,
        "outputs": output_rows(arch),
        "blocks": block_rows(arch),
        "nodes": node_rows(arch),
    }


def to_text(arch: Architecture, *, per_node: bool = False) -> str:
    rows = node_rows(arch) if per_node else block_rows(arch)
    header = ("node" if per_node else "block", "output", "trainable", "non-trainable", "MACs")
    table = [header] + [
        (r["name"], fmt(tuple(r["output_shape"])), f"{r['params_trainable']:,}", f"{r['params_non_trainable']:,}",
         f"{r['macs']:,}")
        for r in rows
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = [f"{arch.name}  ({arch.hash[:19]})"]
    for i, row in enumerate(table):
        lines.append("  ".join(cell.ljust(w) if j == 0 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"parameters: {arch.params_trainable:,} trainable, {arch.params_non_trainable:,} non-trainable, "
                 f"{arch.params_trainable + arch.params_non_trainable:,} total")  # fmt: skip
    if not arch.graph.outputs:
        lines.append(f"MACs: {arch.macs:,} ({arch.macs / 1e9:.3f} G) per image; output {fmt(arch.output_shape)}")
        return "\n".join(lines)
    lines.append(f"MACs: {arch.macs:,} ({arch.macs / 1e9:.3f} G) per image; {len(arch.graph.outputs)} outputs (a backbone):")
    outputs = output_rows(arch)
    width = max(len(r["name"]) for r in outputs)
    for r in outputs:
        lines.append(f"  {r['name'].ljust(width)}  {fmt(tuple(r['shape']))}  {r['channels']} channels, "
                     f"stride {r['stride']}  ({r['node']})")  # fmt: skip
    return "\n".join(lines)
