#!/usr/bin/env python
"""Coverage-guided fuzzing of the loader and the validator with atheris (libFuzzer for Python).

    pip install atheris                                     # not a dependency of resnet-spec
    python benchmarks/fuzz_atheris.py -runs=20000           # bounded run, seeds: examples + corpora
    python benchmarks/fuzz_atheris.py -max_total_time=600   # or a time budget (libFuzzer flags pass through)
    python benchmarks/fuzz_atheris.py --random 20000        # no atheris: same harness, random mutations

One input is one spec file's bytes. Input that starts with ``{`` or ``[`` is read as JSON
(``fuzz.json``), anything else as YAML; lines ``#set key.path=value`` become ``--set`` overrides,
so the override parser is fuzzed too. The property is the validator's contract: ``validate``
never raises, every diagnostic has a catalogued code, a message and (for a file) a line, and an
accepted spec has a finite, non-negative parameter count.

Exceptions that reproduce a bug already kept in ``tests/regressions/`` with an ``# open:`` line
are counted as "known" and the run goes on; anything else stops the run (libFuzzer writes the
input to ``runs/fuzz/crash-*``), to be minimized into a new regression spec. A summary is
written to ``runs/fuzz/summary.json`` (every 500 inputs: libFuzzer ends the process without
running Python's exit handlers, so the file may trail the last few hundred inputs). See docs/fuzzing.md.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS = ROOT / "tests" / "regressions"
OUT = ROOT / "runs" / "fuzz"
SEED_DIRS = [ROOT / "examples", ROOT / "tests" / "malformed", REGRESSIONS]
_SET = re.compile(rb"^#set (.*)$", re.MULTILINE)

try:
    import atheris
except ImportError:  # the fallback below needs nothing but the standard library
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["resnet_spec"]):
        import resnet_spec
        from resnet_spec.diagnostics import CODES
else:
    import resnet_spec
    from resnet_spec.diagnostics import CODES

# An exception whose innermost resnet_spec frame is in FILE and whose type is TYPE reproduces the
# open bug of REGRESSION (tests/regressions/REGRESSION.yaml), as long as that file says "# open:".
KNOWN = [
    ("ZeroDivisionError", "depth.py", "depth_from_convless_custom_block"),
    ("OverflowError", "depth.py", "huge_depth_overflow"),
    ("OverflowError", "budget.py", "huge_filters_overflow"),
    ("OverflowError", "expand.py", "huge_filters_overflow"),
    ("TypeError", "expand.py", "pool_padding_null"),
    ("ValueError", "budget.py", "huge_filters_str_digits"),
    ("ValueError", "depth.py", "huge_depth_str_digits"),
]

STATS: Counter[str] = Counter()
CODES_SEEN: Counter[str] = Counter()
KNOWN_HITS: Counter[str] = Counter()
STARTED = time.time()


def is_open(regression: str) -> bool:
    for path in (REGRESSIONS / f"{regression}.yaml", REGRESSIONS / f"{regression}.json.header"):
        if path.exists():
            return any(line.startswith("# open:") for line in path.read_text(encoding="utf-8").splitlines())
    return False


OPEN = {name for _, _, name in KNOWN if is_open(name)}


def _known(exc: BaseException) -> str | None:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "resnet_spec" in f.filename]
    if not frames:
        return None
    where = os.path.basename(frames[-1].filename)
    for type_name, file, regression in KNOWN:
        if type(exc).__name__ == type_name and where == file and regression in OPEN:
            return regression
    return None


def one_input(data: bytes) -> None:
    STATS["inputs"] += 1
    if STATS["inputs"] % 500 == 0:  # libFuzzer ends the process without Python's atexit handlers
        _write_summary()
    is_json = data.lstrip()[:1] in (b"{", b"[")
    name = "fuzz.json" if is_json else "fuzz.yaml"
    overrides = [m.decode("utf-8", "replace") for m in _SET.findall(data)][:4]
    try:
        result = resnet_spec.validate(data, filename=name, overrides=overrides)
    except Exception as exc:
        regression = _known(exc)
        if regression is None:
            _write_summary()
            raise
        KNOWN_HITS[regression] += 1
        return
    for d in result.diagnostics:
        CODES_SEEN[d.code] += 1
        if d.code not in CODES or not d.message:
            raise AssertionError(f"bad diagnostic {d}")
        from_file = d.file == name
        if from_file and d.line is None:
            raise AssertionError(f"diagnostic without a line: {d}")
    if result.ok:
        STATS["valid"] += 1
        arch = result.architecture
        if arch is None or arch.params_trainable < 0 or arch.params_non_trainable < 0:
            raise AssertionError("accepted spec without a sane architecture")
    else:
        STATS["refused"] += 1


def seeds() -> list[bytes]:
    found = []
    for directory in SEED_DIRS:
        for path in sorted(directory.glob("*")):
            if path.suffix in (".yaml", ".yml", ".json") and path.stat().st_size < 200_000:
                data = path.read_bytes()
                if b"\n# hostile:" not in data:  # the node bomb would stop the run at once (out of memory)
                    found.append(data)
    # One seed exercising overrides.
    found.append(
        (ROOT / "examples" / "resnet20_cifar10.yaml").read_bytes() + b"#set depth=56\n#set stages.1.shortcut=identity\n"
    )
    return found


TOKENS = [
    b"version: 1", b"stages:", b"blocks:", b"block: basic", b"block: bottleneck", b"preact_basic", b"preact_bottleneck",
    b"shortcut: identity", b"shortcut: zero_pad", b"shortcut: projection", b"avg_pool_projection", b"every_block: true",
    b"stride: 2", b"stride: block", b"stride_placement: first_1x1", b"filters: 16", b"filters_ratio: 0.25",
    b"groups: 32", b"width_per_group: 4", b"width_multiplier: 2", b"bottleneck_ratio: 4", b"depth: 20",
    b"padding: same", b"padding: valid", b"padding: symmetric", b"padding: [0, 1, 0, 1]", b"kernel_size: 3",
    b"type: conv", b"type: norm", b"type: activation", b"type: zero_pad", b"type: max_pool", b"type: avg_pool",
    b"type: dropout", b"type: global_avg_pool", b"type: flatten", b"type: dense", b"units: 10",
    b"squeeze_excite: {reduction: 16}", b"stochastic_depth_rate: 0.1", b"zero_init_last_norm: true",
    b"output: softmax", b"head:", b"layers:", b"defaults:", b"input: {height: 32, width: 32, channels: 3}",
    b"classes: 10", b"training:", b"epochs: 10", b"iterations: 100", b"&a", b"*a", b"<<:", b"!!python/object:",
    b"!!binary", b"!!set", b"---", b"...", b"? ", b"- ", b": ", b"{", b"}", b"[", b"]", b"null", b"~", b".nan",
    b".inf", b"1e999", b"99999999999999999999", b"-1", b"0", b"\t", b"\x00", b"\xff", b"#set ",
]  # fmt: skip


def write_dict(path: Path) -> None:
    path.write_text("".join('"' + "".join(f"\\x{b:02x}" for b in token) + '"\n' for token in TOKENS))


def summary() -> dict[str, object]:
    return {
        "engine": "atheris" if atheris is not None and "--random" not in sys.argv else "random",
        "argv": sys.argv[1:],
        "inputs": STATS["inputs"],
        "valid": STATS["valid"],
        "refused": STATS["refused"],
        "seconds": round(time.time() - STARTED, 1),
        "known_open_bugs_hit": dict(KNOWN_HITS),
        "codes_seen": dict(sorted(CODES_SEEN.items())),
    }


def _write_summary() -> dict[str, object]:
    OUT.mkdir(parents=True, exist_ok=True)
    data = summary()
    (OUT / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


def _report() -> None:
    print("\nfuzz summary:", json.dumps(_write_summary()), file=sys.stderr)


# --------------------------------------------------------------------------- fallback: random mutations


def mutate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(7)
        if not buf:
            buf = bytearray(rng.choice(corpus))
        i = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            j = min(i, len(buf) - 1)
            buf[j] ^= 1 << rng.randrange(8)
        elif op == 1:  # insert a token
            buf[i:i] = rng.choice(TOKENS)
        elif op == 2:  # delete a run
            del buf[i : i + rng.randint(1, 16)]
        elif op == 3:  # truncate
            del buf[i:]
        elif op == 4:  # splice from another seed
            other = rng.choice(corpus)
            a = rng.randrange(len(other) + 1)
            buf[i:i] = other[a : a + rng.randint(1, 64)]
        elif op == 5:  # duplicate a line
            lines = bytes(buf).split(b"\n")
            k = rng.randrange(len(lines))
            lines.insert(k, lines[k])
            buf = bytearray(b"\n".join(lines))
        else:  # change indentation
            lines = bytes(buf).split(b"\n")
            k = rng.randrange(len(lines))
            lines[k] = (b" " * rng.randint(0, 4)) + lines[k].lstrip(b" ")
            buf = bytearray(b"\n".join(lines))
    return bytes(buf)


def random_run(runs: int, seed: int) -> int:
    rng = random.Random(seed)
    corpus = seeds()
    for n in range(runs):
        data = mutate(rng, rng.choice(corpus), corpus)
        try:
            one_input(data)
        except Exception:  # noqa: BLE001 - any exception is a finding: keep the input
            OUT.mkdir(parents=True, exist_ok=True)
            crash = OUT / f"crash-random-{seed}-{n}"
            crash.write_bytes(data)
            traceback.print_exc()
            print(f"crash input written to {crash}", file=sys.stderr)
            return 1
    return 0


def main() -> int:
    atexit.register(_report)
    if "--random" in sys.argv or atheris is None:
        args = sys.argv[1:]
        runs = 20000
        if "--random" in args:
            i = args.index("--random")
            if i + 1 < len(args) and args[i + 1].isdigit():
                runs = int(args[i + 1])
        runs = next((int(a.split("=", 1)[1]) for a in args if a.startswith("-runs=")), runs)
        if atheris is None:
            print(
                "atheris is not installed (pip install atheris): random mutations of the seed corpus instead",
                file=sys.stderr,
            )
        seed = int(os.environ.get("FUZZ_SEED", "0"))
        return random_run(runs, seed)
    OUT.mkdir(parents=True, exist_ok=True)
    argv = list(sys.argv)
    workdir = Path(tempfile.mkdtemp(prefix="resnet-spec-fuzz-"))
    if not any(a.startswith("-dict=") for a in argv):
        write_dict(workdir / "spec.dict")
        argv.append(f"-dict={workdir / 'spec.dict'}")
    if not any(a.startswith("-artifact_prefix=") for a in argv):
        argv.append(f"-artifact_prefix={OUT}/")
    if not any(a.startswith("-max_len=") for a in argv):
        argv.append("-max_len=65536")
    if not any(not a.startswith("-") for a in argv[1:]):  # no corpus directory given: seeds in a temp dir
        corpus = workdir / "corpus"
        corpus.mkdir()
        for i, data in enumerate(seeds()):
            (corpus / f"seed{i:03d}").write_bytes(data)
        argv.append(str(corpus))
    atexit.register(shutil.rmtree, workdir, True)
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main())
