"""Matrix factorisation trained with Lightning on the BPR loss (Rendle et al., UAI 2009).

Each epoch draws one uniformly random negative per observed (user, item) pair, resampling negatives
the user has seen; validation computes full-ranking NDCG@K on a validation split carved from train,
which drives early stopping, checkpointing of the best epoch and, under Optuna, pruning.
"""
from __future__ import annotations

import time
from typing import Any

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, Dataset

from training.data import InteractionData
from training.metrics import evaluate_scores
from training.models.base import Recommender
from training.models.lightning_utils import FactorScoring, best_epoch_callbacks, restore_best


class TripletDataset(Dataset):
    """(user, positive item, negative item) triplets; negatives are redrawn at every epoch."""

    def __init__(self, user_items: sp.csr_matrix, seed: int) -> None:
        self.x = user_items.tocsr()
        coo = self.x.tocoo()
        self.users = coo.row.astype(np.int64)
        self.items = coo.col.astype(np.int64)
        self.rng = np.random.default_rng(seed)
        self.resample()

    def resample(self) -> None:
        n_items = self.x.shape[1]
        neg = self.rng.integers(0, n_items, len(self.users))
        for _ in range(3):  # redraw negatives that the user has seen
            seen = np.asarray(self.x[self.users, neg]).ravel() > 0
            if not seen.any():
                break
            neg[seen] = self.rng.integers(0, n_items, int(seen.sum()))
        self.neg = neg

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i: int) -> tuple[int, int, int]:
        return self.users[i], self.items[i], self.neg[i]


class TripletBatches(torch.utils.data.IterableDataset):
    """Whole shuffled batches at once (far faster than per-item collation)."""

    def __init__(self, triplets: TripletDataset, batch_size: int, seed: int) -> None:
        self.t, self.batch_size, self.seed, self.epoch = triplets, batch_size, seed, 0

    def __len__(self) -> int:
        return (len(self.t) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        self.t.resample()
        order = np.random.default_rng(self.seed + self.epoch).permutation(len(self.t))
        self.epoch += 1
        for start in range(0, len(order), self.batch_size):
            b = order[start:start + self.batch_size]
            yield (torch.from_numpy(self.t.users[b]), torch.from_numpy(self.t.items[b]),
                   torch.from_numpy(self.t.neg[b]))


class BPRModule(L.LightningModule):
    """User and item embeddings; score = dot product; loss = -log sigmoid(s_pos - s_neg) + L2."""

    def __init__(self, n_users: int, n_items: int, dim: int = 64, lr: float = 1e-3, l2: float = 1e-4,
                 eval_k: int = 20) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.user = torch.nn.Embedding(n_users, dim)
        self.item = torch.nn.Embedding(n_items, dim)
        torch.nn.init.normal_(self.user.weight, std=0.1)
        torch.nn.init.normal_(self.item.weight, std=0.1)
        self.train_matrix: sp.csr_matrix | None = None
        self.val_matrix: sp.csr_matrix | None = None

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        u, i, j = batch
        eu, ei, ej = self.user(u), self.item(i), self.item(j)
        diff = (eu * ei).sum(-1) - (eu * ej).sum(-1)
        reg = (eu.pow(2).sum() + ei.pow(2).sum() + ej.pow(2).sum()) / len(u)
        loss = -torch.nn.functional.logsigmoid(diff).mean() + self.hparams.l2 * reg
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(u))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:  # metrics computed at epoch end
        return None

    def on_validation_epoch_end(self) -> None:
        if self.val_matrix is None:
            return
        users_w = self.user.weight.detach().cpu().numpy()
        items_w = self.item.weight.detach().cpu().numpy()
        k = self.hparams.eval_k
        res = evaluate_scores(lambda u: users_w[u] @ items_w.T, self.train_matrix, self.val_matrix, ks=(k,))
        self.log(f"val_ndcg@{k}", res[f"ndcg@{k}"], prog_bar=True)
        self.log(f"val_recall@{k}", res[f"recall@{k}"], prog_bar=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def _one_batch_loader() -> DataLoader:
    """Validation runs its metric at epoch end; Lightning still wants a loader to trigger it."""
    return DataLoader([0], batch_size=1)


class MatrixFactorization(FactorScoring, Recommender):
    name = "mf_bpr"

    def __init__(self, dim: int = 64, lr: float = 2e-3, l2: float = 1e-4, batch_size: int = 4096,
                 max_epochs: int = 50, patience: int = 5, eval_k: int = 20, seed: int = 0,
                 accelerator: str = "auto", progress: bool = False, fast_dev_run: bool = False,
                 callbacks: list | None = None, checkpoint_dir: str | None = None,
                 early_stopping_data: sp.csr_matrix | None = None) -> None:
        super().__init__()
        self.dim, self.lr, self.l2, self.batch_size = dim, lr, l2, batch_size
        self.max_epochs, self.patience, self.eval_k, self.seed = max_epochs, patience, eval_k, seed
        self.accelerator, self.progress, self.fast_dev_run = accelerator, progress, fast_dev_run
        self.callbacks, self.checkpoint_dir = callbacks or [], checkpoint_dir
        # validation matrix used when fit() is given none (lets a tuner build self-validating models)
        self.early_stopping_data = early_stopping_data

    def fit(self, data: InteractionData, validation: sp.csr_matrix | None = None) -> "MatrixFactorization":
        t0 = time.perf_counter()
        validation = validation if validation is not None else self.early_stopping_data
        self.early_stopping_data = None  # not kept with the fitted model
        L.seed_everything(self.seed, workers=True, verbose=False)
        self.n_items = data.n_items
        self.user_items = data.user_items
        module = BPRModule(data.n_users, data.n_items, self.dim, self.lr, self.l2, self.eval_k)
        module.train_matrix, module.val_matrix = data.user_items, validation
        batches = TripletBatches(TripletDataset(data.user_items, self.seed), self.batch_size, self.seed)
        callbacks = list(self.callbacks)
        monitor = f"val_ndcg@{self.eval_k}"
        ckpt = None
        if validation is not None and not self.fast_dev_run:
            extra, ckpt = best_epoch_callbacks(monitor, self.patience, self.checkpoint_dir)
            callbacks += extra
        trainer = L.Trainer(max_epochs=self.max_epochs, accelerator=self.accelerator, devices=1, logger=False,
                            enable_progress_bar=self.progress, enable_model_summary=False,
                            enable_checkpointing=ckpt is not None, callbacks=callbacks,
                            fast_dev_run=self.fast_dev_run, num_sanity_val_steps=0,
                            limit_val_batches=1 if validation is not None else 0, deterministic=True)
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None),
                    val_dataloaders=_one_batch_loader() if validation is not None else None)
        self.best_score = restore_best(module, ckpt)
        self.epochs_trained = trainer.current_epoch
        self.user_factors = module.user.weight.detach().cpu().numpy().astype(np.float32)
        self.item_factors = module.item.weight.detach().cpu().numpy().astype(np.float32)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def score_history(self, rows: sp.csr_matrix, l2: float = 1.0) -> np.ndarray:
        """Fold-in without retraining: the ridge-regression user vector that best reproduces the
        history from the item factors, then its scores. rows: (n, n_items) -> (n, n_items)."""
        v = self.item_factors
        gram = v.T @ v + l2 * np.eye(v.shape[1], dtype=np.float32)
        u = np.linalg.solve(gram, (rows.astype(np.float32) @ v).T).T
        return u @ v.T

