"""What the Lightning-trained recommenders share: early stopping with a best-epoch checkpoint, restoring
that checkpoint, scoring from user and item factors, and data-parallel training (DDP) on several
processes or GPUs with the same result as one."""
from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import lightning as L
import numpy as np
import torch

from training.models.base import FactorForm
from training.ranking import top_k


def best_checkpoint(monitor: str, mode: str, checkpoint_dir: str | None) -> L.pytorch.callbacks.ModelCheckpoint:
    """A checkpoint of the best epoch (weights only) in ``checkpoint_dir``, or where it is None in a temporary
    folder that :func:`discard_temporary` removes once the weights are read back (a fine-tuned encoder's is 90 MB)."""
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoint_dir or tempfile.mkdtemp(prefix="ckpt-"),
                                                monitor=monitor, mode=mode, save_top_k=1, save_weights_only=True)
    ckpt.cobuy_temporary = checkpoint_dir is None
    return ckpt


def discard_temporary(ckpt: L.pytorch.callbacks.ModelCheckpoint | None) -> None:
    """Remove ``ckpt``'s folder when :func:`best_checkpoint` made it temporary; a given folder stays."""
    if ckpt is not None and getattr(ckpt, "cobuy_temporary", False) and ckpt.dirpath:
        shutil.rmtree(ckpt.dirpath, ignore_errors=True)


def best_epoch_callbacks(monitor: str, patience: int, checkpoint_dir: str | None
                         ) -> tuple[list, L.pytorch.callbacks.ModelCheckpoint]:
    """Early stopping on ``monitor`` (higher is better) and a checkpoint of the best epoch."""
    ckpt = best_checkpoint(monitor, "max", checkpoint_dir)
    return [L.pytorch.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience), ckpt], ckpt


def restore_best(module: L.LightningModule, ckpt: L.pytorch.callbacks.ModelCheckpoint | None) -> float | None:
    """Load the best checkpoint's weights into ``module`` and discard a temporary checkpoint folder; returns the
    monitored score."""
    if ckpt is None or not ckpt.best_model_path:
        discard_temporary(ckpt)
        return None
    try:
        state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
    finally:
        discard_temporary(ckpt)
    module.load_state_dict(state)
    return float(ckpt.best_model_score) if ckpt.best_model_score is not None else None


class FactorScoring:
    """score_users and related_items for models holding ``user_factors`` (n_users, d) and
    ``item_factors`` (n_items, d)."""

    user_factors: np.ndarray
    item_factors: np.ndarray

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def serving_form(self) -> FactorForm:
        return FactorForm(self.user_factors, self.item_factors)

    def related_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of item factors, best first, the item itself excluded."""
        v = self.item_factors / (np.linalg.norm(self.item_factors, axis=1, keepdims=True) + 1e-12)
        scores = v[items] @ v.T
        scores[np.arange(len(items)), items] = -np.inf
        idx, vals = top_k(scores, k)
        return idx, vals.astype(np.float32)


def distributed_rank() -> tuple[int, int]:
    """(rank, world size) of this process in an initialised torch.distributed group, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class RankShards(torch.utils.data.IterableDataset):
    """Each rank's share of every batch from an iterable of whole batches (tuples of tensors, first
    dimension = batch), built by ``make()`` in the process that iterates it.

    Every DDP rank builds the same batches (same seeds) and keeps the r-th of W near-equal slices (up to one
    row apart); with each rank's mean loss weighted by its share of the batch (as ``LightGCNModule`` does), the
    gradients DDP averages over ranks are those of the whole batch in one process: the batch size a model
    is configured with stays the global one, and W ranks give the single-process result within
    floating-point noise. One process: the batches unchanged. The source is rebuilt after pickling (a
    spawned rank gets fresh, writable arrays rather than read-only copies)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make, self._batches = make, None

    def _source(self) -> Any:
        if self._batches is None:
            self._batches = self.make()
        return self._batches

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_batches": None}

    def __len__(self) -> int:
        return len(self._source())

    def __iter__(self):
        rank, world = distributed_rank()
        for batch in self._source():
            yield batch if world == 1 else tuple(t.tensor_split(world)[rank] for t in batch)


def trainer_parallelism(accelerator: str, devices: int | str, strategy: str) -> dict:
    """Trainer arguments for ``devices`` processes/GPUs. Several CPU processes use DDP over gloo, started
    by spawning (``ddp_spawn``) unless a strategy is named: the fit runs inside a Dagster step or a test,
    where re-launching the script (Lightning's plain ``ddp``) is impossible; under torchrun or a cluster
    launcher, name ``strategy="ddp"``."""
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if strategy == "auto" and devices not in (1, "1") and on_cpu:
        strategy = "ddp_spawn"
    return {"accelerator": accelerator, "devices": devices, "strategy": strategy}


class LogProgress(L.Callback):
    """Reports training progress through ``log`` (e.g. a Dagster step's ``context.log.info``) about ``times``
    times over the run: steps done of the planned total, seconds so far and the last training loss, so a long
    fine-tuning shows it is moving without a progress bar's hundreds of lines."""

    def __init__(self, log: Callable[[str], None], label: str, times: int = 10) -> None:
        super().__init__()
        # not ``self.log``: Lightning points a callback's ``log`` at the module's metric logger during fit
        self.report, self.label, self.times = log, label, max(times, 1)
        self.t0 = 0.0
        self.next_mark = 0

    def _total(self, trainer: L.Trainer) -> int:
        per_epoch = trainer.num_training_batches if isinstance(trainer.num_training_batches, int) else 0
        by_epochs = per_epoch * max(trainer.max_epochs or 1, 1)
        return min(by_epochs, trainer.max_steps) if trainer.max_steps and trainer.max_steps > 0 else by_epochs

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        import time

        self.t0 = time.perf_counter()
        self.next_mark = max(self._total(trainer) // self.times, 1)
        self.report(f"{self.label}: {self._total(trainer)} steps planned")

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx: int
                           ) -> None:
        import time

        step, total = trainer.global_step, self._total(trainer)
        if step >= self.next_mark or step == total:
            loss = trainer.callback_metrics.get("train_loss")
            shown = f", train_loss {float(loss):.4f}" if loss is not None else ""
            self.report(f"{self.label}: step {step}/{total}, {time.perf_counter() - self.t0:.0f} s{shown}")
            self.next_mark = step + max(total // self.times, 1)


# Library notices that say nothing about this project's fits, each with why; filtered only while a fit runs.
LIBRARY_NOTICES = (
    (r"Your `IterableDataset` has `__len__` defined", "our batch datasets run in the training process "
                                                     "(num_workers=0), so their length is exact"),
    (r"You defined a `validation_step` but have no `val_dataloader`", "a fit without a validation split skips "
                                                                      "validation on purpose"),
    (r".*isinstance\(treespec, LeafSpec\)", "Lightning's own call of a torch API that torch deprecated"),
    (r"Sparse CSR tensor support is in beta state", "torch's once-per-process note on the CSR products iALS uses"),
)
_LIGHTNING_LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")


@contextmanager
def quiet_fit() -> Iterator[None]:
    """Around a Lightning ``Trainer``'s construction and ``fit``: Lightning's banners and tips ("GPU available",
    "TPU available", "Tip: ... litlogger", "`Trainer.fit` stopped", logged at INFO on its rank-zero loggers) are
    raised to WARNING, and the :data:`LIBRARY_NOTICES` are not shown; any other warning still is."""
    for name in _LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        for pattern, _why in LIBRARY_NOTICES:
            warnings.filterwarnings("ignore", message=pattern)
        yield
