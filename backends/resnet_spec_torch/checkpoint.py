"""The PyTorch trainer's checkpoint directory; writing, atomic replacement and recovery after a
crash are the backends' shared :mod:`resnet_spec.training.checkpoint`.

Layout of ``RUN_DIR/checkpoint/``::

    training.pt   one dict that ``torch.load(..., weights_only=True)`` reads (tensors and plain
                  Python values only, nothing pickled that could run code): the model's state
                  dict (CPU, contiguous: independent of device and memory format), the
                  optimizer's state dict, the loss scaler's, the step, the epoch, the running
                  epoch's metric sums and every rank's torch random states
    state.json    step, completed epochs, steps per epoch, the preprocessor, the architecture
                  hash; written last, so its presence marks a complete checkpoint
"""

from __future__ import annotations

from resnet_spec.training.checkpoint import (
    STATE,
    check_resumable,
    for_evaluation,
    locate,
    read_state,
    recover,
    resume,
    save,
)

TRAINING = "training.pt"

__all__ = ["STATE", "TRAINING", "check_resumable", "for_evaluation", "locate", "read_state", "recover", "resume", "save"]
