"""``python -m resnet_spec.parity.worker JOB RESULT``: run one parity side (:mod:`.sides`) in
this process and pickle its result (or the error that stopped it) to RESULT.

The parent wrote JOB into its own private spill folder; nothing else is read."""

from __future__ import annotations

import pickle
import sys
import traceback
from pathlib import Path


def main(argv: list[str]) -> int:
    job_file, result_file = Path(argv[0]), Path(argv[1])
    from .sides import run_side

    job = pickle.loads(job_file.read_bytes())
    try:
        outcome: tuple[str, object] = ("ok", run_side(job))
    except Exception as exc:  # noqa: BLE001 -- every failure goes back to the parent, which reports it
        from ..backends import BackendError

        detail = str(exc) if isinstance(exc, BackendError) else "".join(traceback.format_exception(exc))
        outcome = ("error", (type(exc).__name__, detail))
    result_file.write_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
