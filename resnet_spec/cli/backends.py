"""``resnet-spec backends``: the installed backends and whether each can be used."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, add_format, print_json

NAME = "backends"
HELP = "list installed backends (built-in and third-party) and whether their framework is present"
EPILOG = """\
examples:
  resnet-spec backends
  resnet-spec backends --format json
"""


def configure(parser: argparse.ArgumentParser) -> None:
    add_format(parser, "a list of {name, entry_point, distribution, ready, problem, engine}")


def run(args: argparse.Namespace) -> int:
    from ..backends import available, get_backend

    rows = []
    for name, info in sorted(available().items()):
        problem, engine = None, None
        try:
            backend = get_backend(name)  # checks that the framework is importable, without importing it
            engine = getattr(backend, "engine", None)  # Keras: the engine KERAS_BACKEND picks (tensorflow, jax)
        except Exception as exc:  # noqa: BLE001 -- a broken third-party plugin must not break the listing
            problem = str(exc)
        rows.append({"name": name, "entry_point": info.value, "distribution": info.distribution,
                     "ready": problem is None, "problem": problem, "engine": engine})  # fmt: skip
    if args.format == "json":
        print_json(rows)
    else:
        for row in rows:
            status = "ready" if row["ready"] else f"unavailable: {row['problem']}"
            status += f" (engine: {row['engine']})" if row["engine"] else ""
            print(f"{row['name']:10s} {row['entry_point']:40s} {status}")
    return EXIT_OK
