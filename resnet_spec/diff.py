"""``resnet-spec diff A B``: how two specs differ as networks.

Both specs are validated and reduced to their outlines (:mod:`resnet_spec.outline`); stages are
matched by name and blocks by position, so the report reads the way people compare ResNet-20,
-56 and -110 (blocks added per stage) or option A and option B shortcuts (the downsampling
blocks' shortcut and parameters). One JSON-ready report, rendered as text or printed as JSON.
``B`` may be left out to compare ``A`` with itself under ``--set-b`` overrides.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .outline import Block, Outline, Stage, load_outline, shape_text

NAME, HELP = "diff", "what differs between two specs as networks: blocks, shortcuts, widths, parameters, MACs"
EXIT_OK, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
TOTALS = ("depth", "blocks", "params_trainable", "params_non_trainable", "macs")
BLOCK_FIELDS = ("layers", "shortcut", "input_shape", "output_shape", "params_trainable", "params_non_trainable", "macs")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="the first spec (YAML or JSON)")
    parser.add_argument("b", metavar="B", nargs="?", help="the second spec (default: A again, with --set-b overrides)")
    for side in ("a", "b"):
        parser.add_argument(f"--set-{side}", dest=f"overrides_{side}", action="append", default=[], metavar="KEY=VALUE",
                            help=f"override a value of {side.upper()} before validation, e.g. stages.1.shortcut=projection")  # fmt: skip
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a value of both specs")  # fmt: skip
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="text (default) or json: totals, stages, blocks and layer settings with both values")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    if args.b is None and not (args.overrides_a or args.overrides_b):
        print("error: give two specs, or one spec with --set-a / --set-b overrides to compare it with", file=sys.stderr)
        return EXIT_USAGE
    b_file = args.b if args.b is not None else args.a
    a = load_outline(args.a, [*args.overrides, *args.overrides_a])
    b = load_outline(b_file, [*args.overrides, *args.overrides_b])
    if a is None or b is None:
        return EXIT_INVALID
    report = compare(a, b)
    report["a"]["file"] = _label(
        args.a, [("--set", o) for o in args.overrides] + [("--set-a", o) for o in args.overrides_a]
    )
    report["b"]["file"] = _label(
        b_file, [("--set", o) for o in args.overrides] + [("--set-b", o) for o in args.overrides_b]
    )
    print(json.dumps(report, indent=2) if args.format == "json" else render_text(report))
    return EXIT_OK


def compare(a: Outline, b: Outline) -> dict[str, Any]:
    """Everything that differs, as plain data (the JSON output)."""
    totals = {key: _pair(_total(a, key), _total(b, key)) for key in TOTALS}
    for key in ("input_shape", "output_shape"):
        totals[key] = _pair(list(getattr(a, key)), list(getattr(b, key)))
    names = list(dict.fromkeys([s.name for s in a.stages] + [s.name for s in b.stages]))
    stages_a, stages_b = {s.name: s for s in a.stages}, {s.name: s for s in b.stages}
    extra_a, extra_b = {x.name: x for x in a.extra}, {x.name: x for x in b.extra}
    stages = [_stage(n, stages_a.get(n), stages_b.get(n)) for n in names]
    other_parts = [{"name": n, **_part(extra_a.get(n), extra_b.get(n))} for n in dict.fromkeys([*extra_a, *extra_b])]
    report: dict[str, Any] = {
        "a": {"name": a.name, "hash": a.hash},
        "b": {"name": b.name, "hash": b.hash},
        "same_network": a.hash == b.hash,
        "totals": totals,
        "stem": _part(a.stem, b.stem),
        "stages": stages,
        "head": _part(a.head, b.head),
        "other_parts": other_parts,
        "settings": _settings(a, b),
    }
    parts = [report["stem"], report["head"], *stages, *other_parts]
    # The hash covers the whole graph; if none of the above shows why it differs, say so.
    report["unexplained"] = (
        not report["same_network"] and not report["settings"] and all(p["status"] == "same" for p in parts)
    )
    return report


def _settings(a: Outline, b: Outline) -> list[dict[str, Any]]:
    """Settings of the layers both nets have (same name, same op) that differ: batch-norm epsilon,
    initializers, biases, activation functions... One entry per change, with the layers it is in."""
    groups: dict[str, dict[str, Any]] = {}
    for name, (op, settings_a) in a.settings.items():
        op_b, settings_b = b.settings.get(name, ("", {}))
        if op_b != op:
            continue
        for key, value in settings_a.items():
            other = settings_b.get(key)
            if other != value:
                change = {"op": op, "setting": key, "a": _plain(value), "b": _plain(other)}
                groups.setdefault(json.dumps(change), {**change, "layers": []})["layers"].append(name)
    return list(groups.values())


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _total(item: Outline, key: str) -> int:
    return len(item.blocks) if key == "blocks" else int(getattr(item, key))


def _pair(a: Any, b: Any) -> dict[str, Any]:
    pair = {"a": a, "b": b}
    if isinstance(a, int) and isinstance(b, int) and not isinstance(a, bool) and not isinstance(b, bool):
        pair["delta"] = b - a
    return pair


def _fields(block: Block) -> dict[str, Any]:
    return {
        "layers": block.layers,
        "shortcut": block.shortcut.describe() if block.shortcut else None,
        "input_shape": list(block.input_shape),
        "output_shape": list(block.output_shape),
        "params_trainable": block.params_trainable,
        "params_non_trainable": block.params_non_trainable,
        "macs": block.macs,
    }


def _changes(a: Block, b: Block) -> dict[str, Any]:
    fa, fb = _fields(a), _fields(b)
    return {key: _pair(fa[key], fb[key]) for key in BLOCK_FIELDS if fa[key] != fb[key]}


def _part(a: Block | None, b: Block | None) -> dict[str, Any]:
    if a is None or b is None:
        return {"status": "same" if a is b else "added" if a is None else "removed"}
    changes = _changes(a, b)
    return {"status": "changed" if changes else "same", "changes": changes}


def _stage(name: str, a: Stage | None, b: Stage | None) -> dict[str, Any]:
    blocks_a, blocks_b = (a.blocks if a else []), (b.blocks if b else [])
    common = min(len(blocks_a), len(blocks_b))
    changed: list[dict[str, Any]] = []
    for x, y in zip(blocks_a, blocks_b):
        changes = _changes(x, y)
        if not changes:
            continue
        if changed and changed[-1]["changes"] == changes and changed[-1]["last_index"] == x.index - 1:
            changed[-1].update(last=x.name, last_index=x.index, count=changed[-1]["count"] + 1)
        else:
            changed.append({"first": x.name, "last": x.name, "last_index": x.index, "count": 1, "changes": changes})
    for group in changed:
        del group["last_index"]
    status = "added" if a is None else "removed" if b is None else "same"
    summary = {key: _pair(_stage_value(a, key), _stage_value(b, key)) for key in ("blocks", "filters", "stride", "kind",
                                                                                  "params_trainable", "macs")}  # fmt: skip
    if status == "same" and (
        changed or len(blocks_a) != len(blocks_b) or any(p["a"] != p["b"] for p in summary.values())
    ):
        status = "changed"
    return {"name": name, "status": status, **summary, "changed": changed, "added": _groups(blocks_b[common:]),
            "removed": _groups(blocks_a[common:])}  # fmt: skip


def _stage_value(stage: Stage | None, key: str) -> Any:
    if stage is None:
        return None
    if key == "blocks":
        return len(stage.blocks)
    if key == "params_trainable":
        return sum(b.params_trainable for b in stage.blocks)
    return getattr(stage, key)


def _groups(blocks: list[Block]) -> list[dict[str, Any]]:
    """Blocks only one side has, as runs of identical neighbours."""
    runs: list[list[Block]] = []
    for block in blocks:
        if runs and runs[-1][-1].same_as(block):
            runs[-1].append(block)
        else:
            runs.append([block])
    return [{"first": r[0].name, "last": r[-1].name, "count": len(r), "block": _fields(r[0])} for r in runs]


def _label(file: str, overrides: list[tuple[str, str]]) -> str:
    """The file as the command line gave it, with the overrides applied to it."""
    return " ".join([file, *(f"{flag} {value}" for flag, value in overrides)])


# ----------------------------------------------------------------------------- text


def render_text(report: dict[str, Any]) -> str:
    a, b, totals = report["a"], report["b"], report["totals"]
    lines = [f"A  {a['file']}  ({a['name']}, {a['hash'][:19]})", f"B  {b['file']}  ({b['name']}, {b['hash'][:19]})", ""]
    if report["same_network"]:
        lines.append("same network: A and B build the same graph (equal architecture hashes)")
        return "\n".join(lines)
    titles = {"depth": "depth", "blocks": "blocks", "params_trainable": "trainable parameters",
              "params_non_trainable": "non-trainable parameters", "macs": "MACs per image", "input_shape": "input",
              "output_shape": "output"}  # fmt: skip
    table = [("", "A", "B", "change")] + [
        (titles[key], _value(p["a"]), _value(p["b"]), _delta(p)) for key, p in totals.items()
    ]  # fmt: skip
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    lines += [
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))) for row in table
    ]
    lines.append("")
    lines += _part_lines("stem", report["stem"])
    for stage in report["stages"]:
        lines += _stage_lines(stage)
    lines += _part_lines("head", report["head"])
    lines += [line for part in report["other_parts"] for line in _part_lines(part["name"], part)]
    if report["settings"]:
        lines += ["", "layer settings that differ:"]
        for change in report["settings"]:
            layers = change["layers"]
            shown = ", ".join(layers[:3]) + (", ..." if len(layers) > 3 else "")
            lines.append(f"  {change['op']} {change['setting']}: {_value(change['a'])} -> {_value(change['b'])} "
                         f"in {len(layers)} layer{'s' if len(layers) != 1 else ''} ({shown})")  # fmt: skip
    if report["unexplained"]:
        lines.append("\nthe graphs differ (the architecture hashes do) in their wiring, which this report does not "
                     "show; compare `resnet-spec summary --nodes --format json` of both")  # fmt: skip
    return "\n".join(lines)


def _part_lines(name: str, part: dict[str, Any]) -> list[str]:
    if part["status"] != "changed":
        return [f"{name}: {part['status']}"]
    return [f"{name}: {_describe_changes(part['changes'])}"]


def _stage_lines(stage: dict[str, Any]) -> list[str]:
    name, status = stage["name"], stage["status"]
    if status == "same":
        return [f"{name}: same ({stage['blocks']['a']} blocks)"]
    head = [f"{name}: {'only in B' if status == 'added' else 'only in A' if status == 'removed' else 'changed'}"]
    for key, title in (("blocks", "blocks"), ("kind", "block kind"), ("filters", "channels"), ("stride", "stride"),
                       ("params_trainable", "trainable parameters"), ("macs", "MACs")):  # fmt: skip
        pair = stage[key]
        if pair["a"] != pair["b"]:
            delta = f" ({_delta(pair, percent=False)})" if "delta" in pair else ""
            head.append(f"{title} {_value(pair['a'])} -> {_value(pair['b'])}{delta}")
    lines = [", ".join(head)]
    for group in stage["changed"]:
        lines.append(f"  ~ {_span(group)}: {_describe_changes(group['changes'], each=group['count'] > 1)}")
    for sign, key in (("+", "added"), ("-", "removed")):
        for group in stage[key]:
            block, each = group["block"], " each" if group["count"] > 1 else ""
            shortcut = f", {block['shortcut']} shortcut" if block["shortcut"] else ""
            lines.append(f"  {sign} {_span(group)}: [{block['layers']}]{shortcut}, {shape_text(block['output_shape'])}, "
                         f"{block['params_trainable']:,} trainable parameters{each}")  # fmt: skip
    return lines


def _describe_changes(changes: dict[str, Any], each: bool = False) -> str:
    titles = {"layers": "layers", "shortcut": "shortcut", "input_shape": "input", "output_shape": "output",
              "params_trainable": "trainable parameters", "params_non_trainable": "non-trainable parameters",
              "macs": "MACs"}  # fmt: skip
    parts = []
    for key, pair in changes.items():
        a, b = (f"[{pair['a']}]", f"[{pair['b']}]") if key == "layers" else (_value(pair["a"]), _value(pair["b"]))
        text = f"{titles[key]} {a} -> {b}"
        parts.append(text + (f" ({_delta(pair, percent=False)}{' each' if each else ''})" if "delta" in pair else ""))
    return "; ".join(parts)


def _span(group: dict[str, Any]) -> str:
    last = group["last"].rsplit(".", 1)[-1]
    return group["first"] if group["count"] == 1 else f"{group['first']}..{last} ({group['count']} blocks)"


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return shape_text(value)
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _delta(pair: dict[str, Any], percent: bool = True) -> str:
    if "delta" not in pair:
        return "=" if pair["a"] == pair["b"] else "differs"
    delta, base = pair["delta"], pair["a"]
    if not delta:
        return "="
    ratio = f" ({delta / base:+.1%})" if base and percent else ""
    return f"{delta:+,}{ratio}"
