"""``python -m resnet_spec_torch.torchrun ARGS``: torchrun for ``resnet-spec train --workers-local N``.

It is ``torch.distributed.run`` itself (its rendezvous, its worker processes, its signal
forwarding), run in this process so that how it ends reads as the rest of resnet-spec does:

* Ctrl-C or SIGTERM: torchrun forwards the signal to the workers, which finish their step, save
  a checkpoint and say (rank 0) how to resume; this process then exits with 130 instead of
  printing the elastic agent's ``SignalException`` traceback;
* a worker that fails has already printed its one-line error; this process exits with that
  worker's status and one line naming it, instead of ``ChildFailedError``'s traceback and table.

The elastic agent's own log lines ("Sending process ... closing signal") are errors only, unless
``LOGLEVEL`` says otherwise."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 130  # resnet_spec.cli.common's status for Ctrl-C


def main(argv: Sequence[str]) -> int:
    if "LOGLEVEL" not in os.environ:  # the user's choice stands
        os.environ["LOGLEVEL"] = "CRITICAL"  # the level torch.distributed.elastic's get_logger gives its loggers
        logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # and its plain ones inherit
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    try:
        torchrun(list(argv))
    except SignalException:
        return EXIT_INTERRUPTED
    except ChildFailedError as failed:
        rank, failure = failed.get_first_failure()
        status = failure.exitcode
        if status < 0:  # killed by a signal
            print(f"error: worker {rank} stopped by {failure.signal_name()}", file=sys.stderr)
            return EXIT_INTERRUPTED if -status == 2 else 1
        print(f"error: worker {rank} exited with status {status} (its message is above)", file=sys.stderr)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
