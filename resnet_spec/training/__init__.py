"""Framework-neutral half of training, and the one training loop.

* :mod:`.loop`: the loop (steps, epochs, validation, checkpoints, metrics, events, resume,
  Ctrl-C), driving a backend's :class:`~.job.TrainingSession`;
* :mod:`.job`: the job, the :class:`~.job.Trainer` protocol backends implement, scoring;
* :mod:`.plan`, :mod:`.batches`, :mod:`.augment`, :mod:`.geometry`, :mod:`.schedule`,
  :mod:`.preprocess`: what every step trains on, with which numbers, how examples are brought to
  the input and normalized (one definition for every backend);
* :mod:`.data`, :mod:`.formats`, :mod:`.sources`: data sets read lazily from local paths;
* :mod:`.run_dir`, :mod:`.checkpoint`, :mod:`.events`: the run directory;
* :mod:`.commands`, :mod:`.launch`: ``resnet-spec train`` / ``evaluate`` and local multi-process
  launches; :mod:`.errors`: the errors of all of these.

Nothing here imports a framework."""
