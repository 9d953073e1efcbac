"""The PyTorch trainer: :class:`resnet_spec.training.job.Trainer` for models of this backend.

It follows the trainer contract of :mod:`resnet_spec.training.job` step for step, as the Keras
trainer does, so one recipe means one thing in both frameworks:

* start: the seeded neutral initial weights (:func:`resnet_spec.weights.initial_weights` with
  ``training.seed``); torch's generator (dropout / drop-path masks) seeded from the seed inside
  a forked RNG scope, so the caller's generator is left as it was;
* batch ``b`` of epoch ``e``: ``batch_indices(len(x_train), batch_size, seed, e)[b]`` of the
  preprocessed training images (``job.preprocessor``, applied once up front and kept as one NCHW
  tensor: on the device when it fits, else in pinned host memory with asynchronous copies; no
  DataLoader); augmentation numbers from ``np.random.default_rng([seed, e, b])``
  (:mod:`.augment`), pixels moved on the device;
* learning rate ``schedule.learning_rate(training, step, steps_per_epoch)`` set on the optimizer
  before each step;
* loss: cross-entropy with label smoothing (PyTorch's definition) on ``head.classifier``'s
  float32 logits (a softmax output layer is not run in training) + ``kernel_l2 * sum(w ** 2)``
  over the kernels; optimizers: :mod:`.optim`;
* after each epoch: validation loss / accuracy, ``run_dir.log_epoch``, an atomic checkpoint
  (:mod:`.checkpoint`). A run stopped by ``max_steps`` (an absolute step count: the run stops
  once it has taken that many steps in total) checkpoints mid-epoch with the epoch's partial
  metric sums, so ``resume`` continues at exactly the next step with the same weights, optimizer
  state, random state and metrics as an uninterrupted run.

Reported numbers (as the Keras trainer): the training ``loss`` is the mean label-smoothed
cross-entropy of the epoch's training batches in training mode (without the L2 term);
``val_loss`` and the test loss are plain cross-entropy in eval mode. ``job.on_step(step,
learning_rate, loss)`` gets the batch's objective (label-smoothed cross-entropy + L2: what the
gradients are taken of); reading it waits for the step, so it is only read when asked.

After training, ``job.extra["model"]`` holds the trained network (the ``ResNet`` module, on
its device). Execution switches and torchrun data parallelism: :mod:`.distributed`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from resnet_spec import graph as g
from resnet_spec.backends import BackendError
from resnet_spec.spec import Training
from resnet_spec.training import checkpoint
from resnet_spec.training.batches import batch_indices, steps_per_epoch
from resnet_spec.training.commands import TrainingError
from resnet_spec.training.job import Evaluation, TrainingJob, describe_epoch, epoch_row, score
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.schedule import learning_rate, total_steps
from resnet_spec.weights import initial_weights

from . import augment
from .checkpoint import TRAINING
from .distributed import Setup, all_reduce_sum, average_buffers, gather_objects, resolve
from .model import ResNet, build_module
from .optim import make_optimizer, set_learning_rate
from .probe import LOGITS
from .weights import kernel_parameters, set_weights, unwrap

EVAL_BATCH = 256
PROGRESS_SECONDS = 0.5
DEVICE_DATA_FRACTION = 0.3  # keep the training set on the GPU when it takes at most this much of free memory


# ---------------------------------------------------------------------------- the network to train


class LogitsNet(nn.Module):
    """The compiled network up to ``head.classifier`` (the training loss's input), sharing its
    modules, for specs that end in a softmax. It walks the graph's nodes by name, as
    ``ResNet.forward`` does, and drops each value after its last reader."""

    def __init__(self, net: ResNet, arch: Any) -> None:
        super().__init__()
        self.net = net
        nodes = []
        for node in arch.graph:
            if isinstance(node, g.Input):
                continue
            nodes.append(node)
            if node.name == LOGITS:
                break
        last: dict[str, str] = {}
        for node in nodes:
            for name in node.inputs:
                last[name] = node.name
        self.input_name = arch.graph.input.name
        self._plan = [
            (node.name, net.get_submodule(node.name), node.inputs,
             tuple(sorted({i for i in node.inputs if last.get(i) == node.name})))
            for node in nodes
        ]  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values = {self.input_name: x}
        for name, module, inputs, release in self._plan:
            values[name] = module(*[values[i] for i in inputs])
            for dead in release:
                del values[dead]
        return values[LOGITS]


def logits_net(net: ResNet, arch: Any) -> nn.Module:
    return net if arch.graph.output == LOGITS else LogitsNet(net, arch)


# ---------------------------------------------------------------------------- data


class Tensors:
    """A preprocessed image set as one NCHW float32 tensor (and labels), on the device when it
    fits, else in pinned host memory; :meth:`batch` gathers examples by index onto the device."""

    def __init__(self, x: np.ndarray, y: np.ndarray, device: torch.device, *, channels_last: bool = False) -> None:
        self.device = device
        images = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(0, 3, 1, 2)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.on_device = device.type == "cpu" or _fits(images.numel() * 4, device)
        if self.on_device:
            self.x = images.to(device).contiguous(memory_format=memory_format)
        else:
            self.x = images.contiguous(memory_format=memory_format).pin_memory()
        self.y = torch.as_tensor(np.asarray(y, np.int64)).to(device)
        self.count = len(y)
        self._staging: list[torch.Tensor | None] = [None, None]
        self._events: list[Any] = [None, None]
        self._turn = 0

    def batch(self, indices: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.from_numpy(np.ascontiguousarray(indices, dtype=np.int64))
        if self.on_device:
            # Advanced indexing, not index_select: on a CPU the network runs measurably slower
            # (about 10% per step for resnet_digits) on index_select's output.
            index = index.to(self.device, non_blocking=True)
            return self.x[index], self.y[index]
        # Pinned host staging, two buffers in turn: a buffer is refilled only after its last
        # asynchronous copy to the device has finished.
        turn, self._turn = self._turn, 1 - self._turn
        if self._events[turn] is not None:
            self._events[turn].synchronize()
        shape = (len(index), *self.x.shape[1:])
        buffer = self._staging[turn]
        if buffer is None or buffer.shape[0] < shape[0]:
            buffer = torch.empty((max(shape[0], 1), *self.x.shape[1:]), dtype=self.x.dtype).pin_memory()
            self._staging[turn] = buffer
        host = buffer[: shape[0]]
        torch.index_select(self.x, 0, index, out=host)
        images = host.to(self.device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._events[turn] = event
        return images, self.y.index_select(0, index.to(self.device, non_blocking=True))


def _fits(nbytes: int, device: torch.device) -> bool:
    try:
        free, _ = torch.cuda.mem_get_info(device)
    except Exception:  # noqa: BLE001  # pragma: no cover - not a CUDA device
        return True
    return nbytes <= DEVICE_DATA_FRACTION * free


# ---------------------------------------------------------------------------- one run


class _Run:
    """One training run: model, optimizer, data, position."""

    def __init__(self, job: TrainingJob, setup: Setup) -> None:
        self.job, self.setup = job, setup
        training = job.arch.spec.training
        if training is None:
            raise TrainingError("the spec has no `training` section")
        self.training: Training = training
        arch = job.arch
        self.model = build_module(arch)
        set_weights(self.model, arch, initial_weights(arch, training.seed))
        self.model.to(setup.device)
        if setup.channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.net = logits_net(self.model, arch)
        # Evaluation runs eagerly: compiling the eval-mode graph too would cost a second
        # compilation for a small part of the work.
        self.train_net: nn.Module = self.net
        if setup.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [setup.device.index] if setup.device.type == "cuda" else None
            self.train_net = DistributedDataParallel(self.net, device_ids=ids, broadcast_buffers=False)
        if setup.compile:
            self.train_net = cast(nn.Module, torch.compile(self.train_net))
        self.optimizer = make_optimizer(training.optimizer, self.model, arch)
        self.scaler = setup.scaler()
        self.data = Tensors(job.preprocessor(job.dataset.x_train), job.dataset.y_train, setup.device,
                            channels_last=setup.channels_last)  # fmt: skip
        self.x_val = job.preprocessor(job.x_val) if len(job.x_val) else None
        self.y_val = np.asarray(job.y_val, np.int64)
        self.count = self.data.count
        self.batch_size = training.batch_size
        self.steps_per_epoch = steps_per_epoch(self.count, self.batch_size)
        self.total = total_steps(training, self.steps_per_epoch)
        self.stop = self.total if job.max_steps is None else min(self.total, job.max_steps)
        self.step = 0
        self.sums = torch.zeros(2, dtype=torch.float64, device=setup.device)  # this rank's loss sum, correct
        self.seen = 0  # this rank's examples in the epoch so far
        self.l2 = [(node.kernel_l2, weight) for node, weight in kernel_parameters(self.model, arch) if node.kernel_l2]
        if setup.distributed:
            smallest = self.count % self.batch_size or self.batch_size
            if min(self.batch_size, smallest, self.count) < setup.world:
                raise TrainingError(
                    f"a batch of {min(smallest, self.batch_size, self.count)} examples cannot be split over "
                    f"{setup.world} ranks; use fewer processes or another batch size"
                )
        settings = training.augmentation
        self.padding, self.flip = settings.random_crop_padding, settings.horizontal_flip
        self.smoothing = float(training.loss.label_smoothing)

    # -------------------------------------------------------------- one step

    def run_step(self, epoch: int, batch: int, indices: np.ndarray) -> float:
        setup = self.setup
        rate = learning_rate(self.training, self.step, self.steps_per_epoch)
        set_learning_rate(self.optimizer, rate)
        count = len(indices)
        settings = self.training.augmentation
        if augment.enabled(settings):
            tops, lefts, flips = augment.draw(settings, count, augment.generator(self.training.seed, epoch, batch))
        if setup.distributed:
            part = np.array_split(np.arange(count), setup.world)[setup.rank]
            indices = indices[part]
            if augment.enabled(settings):
                tops, lefts, flips = tops[part], lefts[part], flips[part]
        images, labels = self.data.batch(indices)
        if augment.enabled(settings):
            images = augment.apply(images, torch.from_numpy(tops), torch.from_numpy(lefts), torch.from_numpy(flips),
                                   padding=self.padding, flip=self.flip)  # fmt: skip
        with setup.autocast():
            logits = self.train_net(images)
        per_example = F.cross_entropy(logits.float(), labels, label_smoothing=self.smoothing, reduction="none")
        data_loss = per_example.sum() / count
        loss = data_loss * setup.world if setup.distributed else data_loss  # DDP averages over ranks
        penalty = torch.stack([lam * w.float().square().sum() for lam, w in self.l2]).sum() if self.l2 else None
        if penalty is not None:
            loss = loss + penalty
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        with torch.no_grad():
            correct = (logits.argmax(1) == labels).sum()
            self.sums += torch.stack([per_example.sum().double(), correct.double()])
        self.seen += len(indices)
        self.step += 1
        if self.job.on_step is not None:
            objective = all_reduce_sum(data_loss.detach(), setup)
            if penalty is not None:
                objective = objective + penalty.detach()
            self.job.on_step(self.step - 1, rate, float(objective))
        return rate

    def local_sums(self) -> list[float]:
        """(loss sum, correct, examples) of this rank's part of the epoch so far."""
        return [*self.sums.tolist(), float(self.seen)]

    def reset_sums(self, values: list[float] | None = None) -> None:
        values = values or [0.0, 0.0, 0.0]
        self.sums.copy_(torch.tensor(values[:2], dtype=torch.float64))
        self.seen = int(values[2])

    def global_sums(self) -> np.ndarray:
        local = torch.tensor(self.local_sums(), dtype=torch.float64, device=self.setup.device)
        return all_reduce_sum(local, self.setup).cpu().numpy()

    def predict(self, images: np.ndarray) -> np.ndarray:
        return predict_logits(self.net, images, max(self.batch_size, EVAL_BATCH), self.setup.device,
                              self.setup.channels_last)  # fmt: skip

    # -------------------------------------------------------------- checkpoints

    def state(self, sums: np.ndarray) -> dict[str, Any]:
        return {
            "backend": "torch", "hash": self.job.arch.hash, "step": self.step,
            "epoch": self.step // self.steps_per_epoch, "steps_per_epoch": self.steps_per_epoch,
            "epoch_sums": [float(v) for v in sums], "preprocessor": self.job.preprocessor.to_dict(),
            "mixed_precision": self.job.execution.mixed_precision, "world_size": self.setup.world,
        }  # fmt: skip

    def save(self, target: Path) -> None:
        """Every rank takes part (statistics are averaged, random states gathered); rank 0 writes."""
        average_buffers(self.model, self.setup)
        sums = self.global_sums()
        states = gather_objects(_rng_state(self.setup.device), self.setup)
        if not self.setup.chief:
            return
        payload = {
            "model": {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()},
            "optimizer": _to_cpu(self.optimizer.state_dict()),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "step": self.step,
            "epoch": self.step // self.steps_per_epoch,
            "epoch_sums": torch.from_numpy(sums.copy()),
            "rng": states,
        }
        checkpoint.save(target, lambda folder: torch.save(payload, folder / TRAINING), self.state(sums))

    def restore(self, folder: Path) -> None:
        checkpoint.check_resumable(folder, self.job.arch.hash, self.steps_per_epoch)
        payload = torch.load(folder / TRAINING, map_location="cpu", weights_only=True)
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.scaler is not None and payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        if self.setup.chief:  # the saved sums are global: one rank carries them
            self.reset_sums(payload["epoch_sums"].tolist())
        states = payload.get("rng") or []
        if len(states) == self.setup.world:
            _set_rng_state(states[self.setup.rank], self.setup.device)
        else:
            print(f"note: the checkpoint holds random states of {len(states)} ranks, this run has "
                  f"{self.setup.world}; dropout masks are reseeded", file=sys.stderr)  # fmt: skip
            torch.manual_seed(_torch_seed(self.training.seed, self.setup.rank, self.step))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def _torch_seed(seed: int, rank: int, step: int = 0) -> int:
    return int(np.random.default_rng([seed, 104729, rank, step]).integers(0, 2**63 - 1))


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


# ---------------------------------------------------------------------------- scoring


def predict_logits(net: nn.Module, images: np.ndarray, batch: int, device: torch.device,
                   channels_last: bool = False) -> np.ndarray:  # fmt: skip
    """Eval-mode float32 logits of preprocessed NHWC ``images``, in batches."""
    modes = [(m, m.training) for m in net.modules()]
    net.eval()
    parts = []
    try:
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                x = torch.from_numpy(np.ascontiguousarray(images[i : i + batch], dtype=np.float32)).permute(0, 3, 1, 2)
                x = x.to(device, non_blocking=True)
                x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
                parts.append(net(x).float().cpu().numpy())
    finally:
        for module, training in modes:
            module.training = training
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


# ---------------------------------------------------------------------------- train


def train(job: TrainingJob) -> Evaluation:
    setup = resolve(job.execution)
    try:
        if setup.chief:
            for note in setup.notes:
                print(f"note: {note}", file=sys.stderr)
        devices = [setup.device] if setup.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            training = job.arch.spec.training
            if training is None:
                raise TrainingError("the spec has no `training` section")
            torch.manual_seed(_torch_seed(training.seed, setup.rank))
            run = _Run(job, setup)
            target = job.run_dir.checkpoint
            if job.resume:
                found = checkpoint.recover(target) if setup.chief else None
                if setup.distributed:
                    found = gather_objects(str(found) if found is not None else None, setup)[0]
                    found = Path(found) if found is not None else None
                checkpoint.resume(run, found, job.run_dir, setup.chief)
            _loop(run, job, setup, target)
            average_buffers(run.model, setup)
            logits = run.predict(job.preprocessor(job.dataset.x_test))
            job.extra["model"] = run.model  # the trained network (Python API users; identical on every rank)
        return score(logits, job.dataset.y_test, job.arch.spec.classes)
    finally:
        setup.close()


def _loop(run: _Run, job: TrainingJob, setup: Setup, target: Path) -> None:
    from tqdm import tqdm

    training, spe = run.training, run.steps_per_epoch
    epochs = -(-run.total // spe)
    rate = learning_rate(training, max(run.step - 1, 0), spe)
    bar = tqdm(total=run.stop, initial=run.step, unit="step", disable=not (job.progress and setup.chief),
               leave=False, dynamic_ncols=True, file=sys.stderr)  # fmt: skip
    try:
        while run.step < run.stop:
            epoch, first = divmod(run.step, spe)
            if first == 0:
                run.reset_sums()
            order = batch_indices(run.count, run.batch_size, training.seed, epoch)
            last = min(spe, run.stop - epoch * spe)  # batches of this epoch this invocation runs
            bar.set_description(f"epoch {epoch + 1}/{epochs}", refresh=False)
            started = shown = time.perf_counter()
            for batch in range(first, last):
                rate = run.run_step(epoch, batch, order[batch])
                bar.update(1)
                if not bar.disable and time.perf_counter() - shown > PROGRESS_SECONDS:
                    loss_sum, correct, seen = run.local_sums()
                    bar.set_postfix(loss=f"{loss_sum / max(seen, 1):.4f}", acc=f"{correct / max(seen, 1):.2%}",
                                    lr=f"{rate:.3g}", refresh=False)  # fmt: skip
                    shown = time.perf_counter()
            finished = run.step == (epoch + 1) * spe or run.step == run.total
            if finished:
                _end_epoch(run, job, setup, epoch, rate, time.perf_counter() - started, bar)
                if training.checkpoint_every_epoch or run.step >= run.stop:
                    run.save(target)
            else:  # max_steps stopped the run mid-epoch: checkpoint with the partial sums, log nothing
                run.save(target)
    finally:
        bar.close()


def _end_epoch(run: _Run, job: TrainingJob, setup: Setup, epoch: int, rate: float, seconds: float, bar: Any) -> None:
    average_buffers(run.model, setup)
    sums = run.global_sums()
    if not setup.chief:
        return
    row = epoch_row(epoch + 1, run.step, rate, sums, seconds)
    if run.x_val is not None:
        val = score(run.predict(run.x_val), run.y_val, job.arch.spec.classes)
        row["val_loss"], row["val_accuracy"] = val.loss, val.accuracy
    job.run_dir.log_epoch(row)
    bar.write(describe_epoch(row, -(-run.total // run.steps_per_epoch)), file=sys.stdout)


# ---------------------------------------------------------------------------- evaluate


def evaluate(target: Any, arch: Any, images: np.ndarray, labels: np.ndarray,
             preprocessor: Preprocessor | None) -> Evaluation:  # fmt: skip
    """Evaluate a run's checkpoint directory (or a ``.pt`` file saved by this backend) on raw
    ``images`` (``preprocessor`` is applied; None takes the one stored in the checkpoint)."""
    path = Path(target)
    if path.is_file():
        from .io import load

        model, meta = load(path)
        if meta.get("hash") != arch.hash:
            raise BackendError(f"{path}: the model is of architecture {meta.get('hash')}, not {arch.hash}")
        if preprocessor is None:
            raise BackendError(f"{path}: a saved model holds no preprocessor; pass one")
    else:
        folder, state = checkpoint.for_evaluation(path, arch.hash)
        model = build_module(arch)
        payload = torch.load(folder / TRAINING, map_location="cpu", weights_only=True)
        model.load_state_dict(payload["model"])
        if preprocessor is None:
            preprocessor = Preprocessor.from_dict(state["preprocessor"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = logits_net(unwrap(model).to(device), arch)  # type: ignore[arg-type]
    batch = arch.spec.training.batch_size if arch.spec.training is not None else EVAL_BATCH
    logits = predict_logits(net, preprocessor(images), max(batch, EVAL_BATCH), device)
    return score(logits, labels, arch.spec.classes)


__all__ = ["evaluate", "train"]
