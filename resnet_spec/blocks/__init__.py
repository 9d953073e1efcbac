"""Block kinds as registered objects (one module per kind), and the code they share.

* :mod:`.registry`: the kinds, in one list, and the stage model they make together;
* :mod:`.kind`: the interface of a kind (:class:`~.kind.BlockKind`);
* :mod:`.builder`: what a kind builds with (:class:`~.builder.BlockBuilder`), over the
  expander's node sink (:class:`~.builder.NetworkBuilder`);
* :mod:`.residual`: shortcut, add, zero-init, squeeze-and-excitation and stochastic depth,
  written once for every kind;
* :mod:`.units`: the post- and pre-activation arrangements of the built-in kinds' convs;
* :mod:`.applicability`: options a stage's kinds would not build are refused (RS111);
* :mod:`.reference`: the language reference's section on block kinds, generated from the models.
"""
