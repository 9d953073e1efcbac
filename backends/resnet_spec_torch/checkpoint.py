"""The PyTorch trainer's checkpoint files. Writing them atomically, replacing and recovering the
folder are the backends' shared :mod:`resnet_spec.training.checkpoint`.

Layout of ``RUN_DIR/checkpoint/``::

    training.pt   one dict that ``torch.load(..., weights_only=True)`` reads (tensors and plain
                  Python values only, nothing pickled that could run code): the model's state
                  dict (CPU, contiguous: independent of device and memory format), the
                  optimizer's state dict, the loss scaler's and every rank's torch random states
    state.json    written by the core's loop, last (its presence marks a complete checkpoint):
                  step, completed epochs, steps per epoch, the running epoch's metric sums, the
                  preprocessor, the architecture hash, the world size
"""

TRAINING = "training.pt"
