"""The Keras trainer's checkpoint files. Writing them atomically, replacing and recovering the
folder are the backends' shared :mod:`resnet_spec.training.checkpoint`.

Layout of ``RUN_DIR/checkpoint/``::

    model.weights.h5   every model weight (Keras ``save_weights``; float32 even in mixed precision)
    optimizer.npz      the optimizer's variables (iterations, learning rate, momentum / Adam
                       slots, loss scale), keyed by position, with their paths to check on load
    random.npz         the dropout / drop-path seed-generator states
    state.json         written by the core's loop, last (its presence marks a complete
                       checkpoint): step, completed epochs, the running epoch's metric sums, the
                       preprocessor, the architecture hash, the mixed precision, the world size
"""

WEIGHTS = "model.weights.h5"
OPTIMIZER = "optimizer.npz"
RANDOM = "random.npz"
