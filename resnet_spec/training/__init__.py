"""Framework-neutral half of training: the learning-rate schedule, data sets read from local
paths, preprocessing, the batch order, and the run directory. Backends' trainers
(``resnet_spec_torch.train``, ``resnet_spec_keras.train``) consume these, so that one recipe
means the same thing step for step in both frameworks. Nothing here imports a framework."""
