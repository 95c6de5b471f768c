"""Matrix factorisation trained with Lightning: the BPR loss (Rendle et al., UAI 2009), family ``mf``,
and implicit alternating least squares (iALS), family ``ials``.

BPR: each epoch draws one uniformly random negative per observed (user, item) pair, resampling negatives
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
from training.models.base import Recommender, require_training_data
from training.models.lightning_utils import FactorScoring, best_epoch_callbacks, quiet_fit, restore_best


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
        for _ in range(3 if len(neg) else 0):  # redraw negatives that the user has seen
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
    name = "mf"

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
        require_training_data(self.name, data)
        validation = validation if validation is not None else self.early_stopping_data
        self.early_stopping_data = None  # not kept with the fitted model
        L.seed_everything(self.seed, workers=True, verbose=False)
        self.n_items = data.n_items
        self.user_items = data.user_items
        module = self._module(data)
        module.train_matrix, module.val_matrix = data.user_items, validation
        callbacks = list(self.callbacks)
        monitor = f"val_ndcg@{self.eval_k}"
        ckpt = None
        if validation is not None and not self.fast_dev_run:
            extra, ckpt = best_epoch_callbacks(monitor, self.patience, self.checkpoint_dir)
            callbacks += extra
        with quiet_fit():
            trainer = L.Trainer(max_epochs=self.max_epochs, accelerator=self.accelerator, devices=1, logger=False,
                                enable_progress_bar=self.progress, enable_model_summary=False,
                                enable_checkpointing=ckpt is not None, callbacks=callbacks,
                                fast_dev_run=self.fast_dev_run, num_sanity_val_steps=0,
                                limit_val_batches=1 if validation is not None else 0, deterministic=True)
            trainer.fit(module, train_dataloaders=self._train_loader(data),
                        val_dataloaders=_one_batch_loader() if validation is not None else None)
        self.best_score = restore_best(module, ckpt)
        self.epochs_trained = trainer.current_epoch
        self.user_factors = module.user.weight.detach().cpu().numpy().astype(np.float32)
        self.item_factors = module.item.weight.detach().cpu().numpy().astype(np.float32)
        self.fit_seconds = time.perf_counter() - t0
        return self

    def _module(self, data: InteractionData) -> L.LightningModule:
        return BPRModule(data.n_users, data.n_items, self.dim, self.lr, self.l2, self.eval_k)

    def _train_loader(self, data: InteractionData) -> DataLoader:
        batches = TripletBatches(TripletDataset(data.user_items, self.seed), self.batch_size, self.seed)
        return DataLoader(batches, batch_size=None)

    def score_history(self, rows: sp.csr_matrix, l2: float = 1.0) -> np.ndarray:
        """Fold-in without retraining: the ridge-regression user vector that best reproduces the
        history from the item factors, then its scores. rows: (n, n_items) -> (n, n_items)."""
        v = self.item_factors
        gram = v.T @ v + l2 * np.eye(v.shape[1], dtype=np.float32)
        u = np.linalg.solve(gram, (rows.astype(np.float32) @ v).T).T
        return u @ v.T



def torch_csr(x: sp.csr_matrix) -> torch.Tensor:
    """A scipy CSR matrix as a torch sparse CSR float32 tensor (same shape)."""
    x = x.tocsr().astype(np.float32)
    return torch.sparse_csr_tensor(torch.from_numpy(x.indptr.astype(np.int64)),
                                   torch.from_numpy(x.indices.astype(np.int64)), torch.from_numpy(x.data),
                                   size=x.shape, check_invariants=False)  # a canonical scipy CSR: valid as built


class IALSModule(BPRModule):
    """iALS in the formulation of Rendle, Krichene, Zhang & Koren, "Revisiting the Performance of iALS on
    Item Recommendation Benchmarks" (RecSys 2022):

        L(W, H) = sum_{(u,i) observed} (<w_u, h_i> - 1)^2 + alpha0 * sum_{u, i} <w_u, h_i>^2
                  + l2 * (sum_u (|I_u| + alpha0 |I|)^nu ||w_u||^2 + sum_i (|U_i| + alpha0 |U|)^nu ||h_i||^2)

    Each epoch (one training step, manual optimisation) solves the user side with the items fixed, then
    the item side, each by ``cg_steps`` conjugate-gradient iterations warm-started from the current
    factors (Takacs, Pilaszy & Tikk, RecSys 2011), batched over all rows at once:
    (alpha0 H^T H + H_u^T H_u + lambda_u I) w_u = H_u^T 1. Validation and early stopping as for BPR."""

    def __init__(self, n_users: int, n_items: int, dim: int = 128, alpha0: float = 0.05, l2: float = 1e-2,
                 nu: float = 1.0, cg_steps: int = 3, init_std: float = 0.1, eval_k: int = 20) -> None:
        super().__init__(n_users, n_items, dim, 0.0, l2, eval_k)
        self.automatic_optimization = False
        self.alpha0, self.reg, self.nu, self.cg_steps = alpha0, l2, nu, cg_steps
        for emb in (self.user, self.item):
            torch.nn.init.normal_(emb.weight, std=init_std / np.sqrt(dim))
            emb.weight.requires_grad_(False)

    def on_fit_start(self) -> None:
        x = self.train_matrix.tocsr()
        self.x_users, self.x_items = torch_csr(x), torch_csr(x.T.tocsr())
        n_users, n_items = x.shape
        du = torch.from_numpy(np.diff(x.indptr).astype(np.float32))
        di = torch.from_numpy(np.bincount(x.indices, minlength=n_items).astype(np.float32))
        self.reg_users = (self.reg * (du + self.alpha0 * n_items) ** self.nu)[:, None]
        self.reg_items = (self.reg * (di + self.alpha0 * n_users) ** self.nu)[:, None]

    @staticmethod
    def _observed_matvec(x: torch.Tensor, w: torch.Tensor, h: torch.Tensor, chunk: int = 262_144) -> torch.Tensor:
        """Rows r of the result: sum_{i in x_r} h_i <h_i, w_r>; x (n, m) CSR 0/1, w (n, d), h (m, d)."""
        rows = torch.repeat_interleave(torch.arange(x.shape[0]), x.crow_indices().diff())
        cols = x.col_indices()
        dots = torch.empty(len(cols))
        for s in range(0, len(cols), chunk):
            dots[s:s + chunk] = (w[rows[s:s + chunk]] * h[cols[s:s + chunk]]).sum(1)
        weighted = torch.sparse_csr_tensor(x.crow_indices(), cols, dots, size=x.shape, check_invariants=False)
        return weighted @ h

    def solve_side(self, x: torch.Tensor, w: torch.Tensor, h: torch.Tensor, reg: torch.Tensor) -> None:
        """Conjugate-gradient steps on every row of ``w`` (n, d), in place; ``h`` (m, d) fixed."""
        gram = self.alpha0 * (h.T @ h)

        def matvec(v: torch.Tensor) -> torch.Tensor:
            return v @ gram + self._observed_matvec(x, v, h) + reg * v

        r = x @ h - matvec(w)
        p = r.clone()
        rs = (r * r).sum(1, keepdim=True)
        for _ in range(self.cg_steps):
            ap = matvec(p)
            step = rs / (p * ap).sum(1, keepdim=True).clamp_min(1e-20)
            w += step * p
            r -= step * ap
            rs_new = (r * r).sum(1, keepdim=True)
            p = r + (rs_new / rs.clamp_min(1e-20)) * p
            rs = rs_new

    def training_step(self, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            self.solve_side(self.x_users, self.user.weight.data, self.item.weight.data, self.reg_users)
            self.solve_side(self.x_items, self.item.weight.data, self.user.weight.data, self.reg_items)
        if self._trainer is not None:
            # a no-op step (no gradients): it advances Lightning's global step, which checkpointing keys on
            self.optimizers().step()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """The updates are closed-form; a zero-rate optimiser only keeps Lightning's step count."""
        return torch.optim.SGD(self.parameters(), lr=0.0)


class IALSMatrixFactorization(MatrixFactorization):
    """Matrix factorisation by iALS (:class:`IALSModule`), trained with the same Lightning loop as BPR:
    validation NDCG drives early stopping and the best-epoch checkpoint."""

    name = "ials"

    def __init__(self, dim: int = 128, alpha0: float = 0.02, l2: float = 1e-3, nu: float = 1.0, cg_steps: int = 3,
                 max_epochs: int = 30, patience: int = 3, eval_k: int = 20, seed: int = 0, accelerator: str = "auto",
                 progress: bool = False, fast_dev_run: bool = False, callbacks: list | None = None,
                 checkpoint_dir: str | None = None, early_stopping_data: sp.csr_matrix | None = None) -> None:
        super().__init__(dim=dim, l2=l2, max_epochs=max_epochs, patience=patience, eval_k=eval_k, seed=seed,
                         accelerator=accelerator, progress=progress, fast_dev_run=fast_dev_run, callbacks=callbacks,
                         checkpoint_dir=checkpoint_dir, early_stopping_data=early_stopping_data)
        self.alpha0, self.nu, self.cg_steps = alpha0, nu, cg_steps

    def _module(self, data: InteractionData) -> L.LightningModule:
        return IALSModule(data.n_users, data.n_items, self.dim, self.alpha0, self.l2, self.nu, self.cg_steps,
                          eval_k=self.eval_k)

    def _train_loader(self, data: InteractionData) -> DataLoader:
        return _one_batch_loader()  # one training step = one full alternating sweep

    def score_history(self, rows: sp.csr_matrix, l2: float | None = None) -> np.ndarray:
        """Fold-in: the exact iALS user solve against the fixed item factors (what training does for a
        known user, solved exactly instead of by a few CG steps). rows: (n, n_items) -> (n, n_items)."""
        h = self.item_factors.astype(np.float64)
        gram = self.alpha0 * (h.T @ h)
        rows = rows.tocsr()
        out = np.empty((rows.shape[0], h.shape[1]), np.float64)
        for r in range(rows.shape[0]):
            hu = h[rows.indices[rows.indptr[r]:rows.indptr[r + 1]]]
            reg = self.l2 * (len(hu) + self.alpha0 * len(h)) ** self.nu
            out[r] = np.linalg.solve(gram + hu.T @ hu + reg * np.eye(h.shape[1]), hu.sum(0))
        return (out @ h.T).astype(np.float32)
