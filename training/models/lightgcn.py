"""LightGCN (He et al., SIGIR 2020) trained with Lightning on the BPR loss.

Embeddings E^0 of users and items are propagated K times over the symmetrically normalised
bipartite graph, E^{k+1} = D^{-1/2} A D^{-1/2} E^k, and averaged: E = mean_k E^k. Scores are dot
products of the final user and item embeddings. Seen items are masked by the caller (torch_geometric's
``LightGCN.recommend`` cannot exclude them, so this module does not use it).

``init="svd"`` starts E^0 from the top singular vectors of the normalised user-item matrix (the
low-rank view LightGCN converges towards, cf. SVD-GCN, Peng et al., CIKM 2022), which shortens CPU
training a lot; ``init="normal"`` is the paper's N(0, 0.1) start.
"""
from __future__ import annotations

import json
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from training.data import InteractionData, item_pair_counts
from training.metrics import evaluate_scores
from training.models.base import Recommender, require_training_data
from training.models.lightning_utils import (FactorScoring, RankShards, best_epoch_callbacks, distributed_rank,
                                             quiet_fit, restore_best, trainer_parallelism)
from training.models.graph_filter import normalised_matrix, top_singular
from training.models.mf import TripletBatches, TripletDataset, _one_batch_loader


def normalised_adjacency(x: sp.csr_matrix) -> torch.Tensor:
    """(n_users + n_items)^2 sparse COO tensor of D^{-1/2} [[0, X], [X^T, 0]] D^{-1/2}."""
    n_u, n_i = x.shape
    a = sp.bmat([[None, x], [x.T, None]], format="csr").astype(np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    with np.errstate(divide="ignore"):
        f = np.where(deg > 0, deg ** -0.5, 0.0).astype(np.float32)
    a = (sp.diags(f) @ a @ sp.diags(f)).tocoo()
    idx = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    return torch.sparse_coo_tensor(idx, torch.from_numpy(a.data), (n_u + n_i, n_u + n_i),
                                   check_invariants=False).coalesce()  # from scipy's COO: in bounds as built


def propagated(base: torch.Tensor, adj: torch.Tensor, n_layers: int) -> torch.Tensor:
    """(n_users + n_items, dim) LightGCN output: the mean of A^k E for k = 0..n_layers, with ``base`` E the
    (n_users + n_items, dim) layer-0 embeddings and ``adj`` A from :func:`normalised_adjacency`."""
    e, out = base, base
    for _ in range(n_layers):
        e = torch.sparse.mm(adj, e)
        out = out + e
    return out / (n_layers + 1)


def split_embeddings(final: np.ndarray, n_users: int, loss: str) -> tuple[np.ndarray, np.ndarray]:
    """(n_users, dim), (n_items, dim) from the propagated embeddings ``final`` (n_users + n_items, dim), users
    first; unit rows under the ``ssm`` loss, which scores cosines."""
    if loss == "ssm":
        final = final / np.maximum(np.linalg.norm(final, axis=1, keepdims=True), 1e-12)
    return final[:n_users], final[n_users:]


def serving_factors(final: np.ndarray, n_users: int, loss: str, pop_weight: float,
                    log_pop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """User and item factors whose dot product is the served score, from the propagated embeddings ``final``
    (n_users + n_items, dim): :func:`split_embeddings`, and under ``ssm`` one more column, 1 for users and
    pop_weight * log(1 + popularity) for items, so (n_users, dim + 1), (n_items, dim + 1)."""
    users, items = split_embeddings(final, n_users, loss)
    if loss != "ssm":
        return users, items
    bias = pop_weight * (log_pop if log_pop is not None else np.zeros(len(items)))
    return (np.hstack([users, np.ones((len(users), 1), users.dtype)]),
            np.hstack([items, bias[:, None].astype(items.dtype)]))


def triplet_batches(user_items: sp.csr_matrix, batch_size: int, seed: int) -> TripletBatches:
    """BPR triplet batches over a private copy of ``user_items`` (for :class:`RankShards`)."""
    return TripletBatches(TripletDataset(user_items.copy(), seed), batch_size, seed)


LOSSES = ("bpr", "ssm")
LR_SCHEDULES = ("constant", "budget_linear")
# Weights of log(1 + item popularity) added to the ssm model's cosine scores, tried on the validation users at
# every validation epoch (see LightGCNModule.on_validation_epoch_end)
POP_WEIGHT_GRID = (0.0, 0.025, 0.05, 0.075, 0.1, 0.15)


def candidate_log_q(pair_counts: np.ndarray) -> torch.Tensor:
    """(n_items,) log probability that one candidate column of the ``ssm`` loss holds each item, from the
    training pairs per item ``pair_counts`` (n_items,) (:func:`training.data.item_pair_counts`).

    Half the columns are the batch's positives, drawn in proportion to item popularity (every training pair
    once per epoch); half are negatives drawn uniformly. Subtracting this from the logits is the logQ
    correction of Yi et al. (RecSys 2019): without it in-batch softmax learns log p(i|u) - log q(i), which
    strips popularity out of the scores."""
    q = 0.5 * pair_counts / max(pair_counts.sum(), 1.0) + 0.5 / len(pair_counts)
    return torch.from_numpy(np.log(q).astype(np.float32))


class LightGCNModule(L.LightningModule):
    def __init__(self, n_users: int, n_items: int, dim: int = 64, n_layers: int = 3, lr: float = 1e-3,
                 l2: float = 1e-4, eval_k: int = 20, init_weights: np.ndarray | None = None, loss: str = "bpr",
                 temperature: float = 0.1, logq_correction: bool = True, lr_budget_seconds: float | None = None
                 ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["init_weights"])
        self.embedding = torch.nn.Embedding(n_users + n_items, dim)
        if init_weights is not None:
            self.embedding.weight.data.copy_(torch.from_numpy(init_weights))
        else:
            torch.nn.init.normal_(self.embedding.weight, std=0.1)
        self.adj: torch.Tensor | None = None
        self.log_q: torch.Tensor | None = None  # (n_items,), set with the graph when the ssm loss is corrected
        # ssm scores are cos(u, i) + pop_weight * log(1 + popularity of i); a buffer, so the best checkpoint
        # restores the weight chosen with it
        self.register_buffer("pop_weight", torch.zeros(()))
        self.log_pop: np.ndarray | None = None  # (n_items,) log(1 + training users per item)
        self.pop_grid: tuple[float, ...] = (0.0,)
        self.train_matrix: sp.csr_matrix | None = None
        self.val_matrix: sp.csr_matrix | None = None
        self.curve: list[dict] = []
        self.curve_file: str | None = None  # rank 0 mirrors the curve here (spawned DDP ranks' state is not returned)
        self._t0 = time.perf_counter()

    def propagate(self) -> torch.Tensor:
        return propagated(self.embedding.weight, self.adj, self.hparams.n_layers)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        u, i, j = batch
        n_u = self.hparams.n_users
        final = self.propagate()
        eu, ei, ej = final[u], final[n_u + i], final[n_u + j]
        e0 = self.embedding.weight
        reg = (e0[u].pow(2).sum() + e0[n_u + i].pow(2).sum() + e0[n_u + j].pow(2).sum()) / (2 * len(u))
        sizes = self._shard_sizes(len(u))
        if self.hparams.loss == "ssm":
            # sampled softmax (Wu et al., TOIS 2023): each user's positive against every other positive in the
            # batch and every sampled negative, on cosine similarity / temperature
            zu = torch.nn.functional.normalize(eu, dim=-1)
            candidates, cand_items, offset = self._global_candidates(
                torch.nn.functional.normalize(torch.cat([ei, ej]), dim=-1), torch.cat([i, j]), 2 * int(sizes.max()))
            logits = zu @ candidates.T / self.hparams.temperature  # (B, C); column offset + b is user b's positive
            if self.hparams.logq_correction and self.log_q is not None:
                logits = logits - self.log_q.to(logits.device)[cand_items.clamp(min=0)][None, :]
            # accidental hits: another column holding user b's own positive item is not a negative; nor is padding
            rows = torch.arange(len(u), device=logits.device)
            hits = (cand_items[None, :] == i[:, None]) | (cand_items < 0)[None, :]
            hits[rows, offset + rows] = False
            logits = logits.masked_fill(hits, float("-inf"))
            fit = torch.nn.functional.cross_entropy(logits, offset + rows)
        else:
            fit = -torch.nn.functional.logsigmoid((eu * ei).sum(-1) - (eu * ej).sum(-1)).mean()
        loss = fit + self.hparams.l2 * reg
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=len(u))
        # DDP averages the ranks' gradients: weighting each rank's mean by its share of the batch makes that average
        # the gradient of the mean over the whole batch, as in one process (shards differ by up to one row)
        return loss * (len(sizes) * len(u) / float(sizes.sum()))

    def _shard_sizes(self, n: int) -> torch.Tensor:
        """(W,) rows of the current batch on each of the W ranks; (1,) holding ``n`` in one process."""
        if distributed_rank()[1] == 1:
            return torch.tensor([n])
        return self.all_gather(torch.tensor(n, device=self.device)).reshape(-1).cpu()

    def _global_candidates(self, candidates: torch.Tensor, items: torch.Tensor, size: int
                           ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The ssm softmax's candidates: this rank's (c, dim) rows and (c,) items in one process; under DDP every
        rank's, gathered with gradients that flow back to the rank that owns them, so each rank's users see the
        whole global batch as negatives and DDP's average gradient is the one-process gradient. Shards differ by
        at most one row: each block is padded to ``size`` rows (the largest rank's), padding marked by item -1.
        Returns the candidates (C, dim), their items (C,) and the column of this rank's first candidate."""
        if distributed_rank()[1] == 1:
            return candidates, items, 0
        pad = size - len(items)
        candidates = torch.nn.functional.pad(candidates, (0, 0, 0, pad))
        items = torch.nn.functional.pad(items, (0, pad), value=-1)
        gathered = self.all_gather(candidates, sync_grads=True).flatten(0, 1)
        return gathered, self.all_gather(items).flatten(0, 1), self.global_rank * size

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        return None

    @torch.no_grad()
    def embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The final embeddings (see :func:`split_embeddings`)."""
        return split_embeddings(self.propagate().cpu().numpy(), self.hparams.n_users, self.hparams.loss)

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """The served factors (see :func:`serving_factors`)."""
        with torch.no_grad():
            final = self.propagate().cpu().numpy()
        return serving_factors(final, self.hparams.n_users, self.hparams.loss, float(self.pop_weight), self.log_pop)

    def on_validation_epoch_end(self) -> None:
        if self.val_matrix is None:
            return
        users, items = self.embeddings()
        k = self.hparams.eval_k
        best, best_w = None, 0.0
        for w in self.pop_grid:  # the popularity weight is chosen on the same validation users as the epoch
            bias = (w * self.log_pop).astype(np.float32) if w else 0.0
            res = evaluate_scores(lambda u: users[u] @ items.T + bias, self.train_matrix, self.val_matrix, ks=(k,))
            if best is None or res[f"ndcg@{k}"] > best[f"ndcg@{k}"]:
                best, best_w = res, w
        self.pop_weight.fill_(best_w)
        self.log(f"val_ndcg@{k}", best[f"ndcg@{k}"], prog_bar=True)
        self.log(f"val_recall@{k}", best[f"recall@{k}"], prog_bar=True)
        self.curve.append({"epoch": int(self.current_epoch), "seconds": time.perf_counter() - self._t0,
                           f"recall@{k}": best[f"recall@{k}"], f"ndcg@{k}": best[f"ndcg@{k}"],
                           **({"pop_weight": best_w} if self.hparams.loss == "ssm" else {})})
        if self.curve_file and self.global_rank == 0:
            Path(self.curve_file).write_text(json.dumps(self.curve))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """With ``lr_budget_seconds``, the learning rate falls linearly from ``lr`` to 0 over that much wall time
        from the start of training (the budget-aware linear schedule of Li et al., ICLR 2020: under a fixed time
        budget, decaying to zero at the budget beats a constant rate)."""
        budget = self.hparams.lr_budget_seconds
        if not budget:
            return
        lr = self.hparams.lr * max(0.0, 1.0 - (time.perf_counter() - self._t0) / budget)
        for group in self.trainer.optimizers[0].param_groups:
            group["lr"] = lr


class LightGCN(FactorScoring, Recommender):
    name = "lightgcn"

    def __init__(self, dim: int = 64, n_layers: int = 3, lr: float = 5e-3, l2: float = 1e-4,
                 batch_size: int = 16384, max_epochs: int = 200, patience: int = 10, max_minutes: float | None = 60.0,
                 init: str = "svd", eval_k: int = 20, seed: int = 0, accelerator: str = "auto",
                 progress: bool = False, fast_dev_run: bool = False, check_val_every_n_epoch: int = 1,
                 checkpoint_dir: str | None = None, early_stopping_data: sp.csr_matrix | None = None,
                 curve_path: str | None = None, devices: int = 1, strategy: str = "auto", loss: str = "bpr",
                 temperature: float = 0.1, logq_correction: bool = True, pop_weight: float | None = None,
                 lr_schedule: str = "constant") -> None:
        """``devices`` > 1 trains data-parallel (DDP; gloo on CPU) with ``batch_size`` as the global batch:
        the same result as one process within floating-point noise (see ``RankShards``; under ``ssm`` every
        rank's softmax sees the whole global batch, see ``LightGCNModule._global_candidates``).
        ``loss``: ``bpr`` (the paper's) or ``ssm``, sampled softmax over the batch's positives and negatives at
        ``temperature``, with the logQ popularity correction unless ``logq_correction`` is off (see
        :func:`candidate_log_q`). An ``ssm`` model scores cos(u, i) + pop_weight * log(1 + popularity of i):
        ``pop_weight`` None chooses it from ``POP_WEIGHT_GRID`` on the validation users at every validation epoch
        (0 without validation data).
        ``lr_schedule``: ``constant``, or ``budget_linear``, which decays the learning rate linearly to 0 at
        ``max_minutes`` of training (required then).
        Defaults: the settings of the Gowalla runs (docs/benchmarks.md): lr 5e-3 on 16,384-pair batches from the
        SVD initialisation, early stopping after 10 validations without gain, at most 200 epochs or 60 minutes."""
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {lr_schedule!r}")
        if lr_schedule == "budget_linear" and not max_minutes:
            raise ValueError("lr_schedule='budget_linear' decays over max_minutes: set max_minutes")
        self.lr_schedule = lr_schedule
        self.loss, self.temperature, self.logq_correction = loss, temperature, logq_correction
        self.pop_weight = pop_weight
        self.devices, self.strategy = devices, strategy
        self.dim, self.n_layers, self.lr, self.l2, self.batch_size = dim, n_layers, lr, l2, batch_size
        self.max_epochs, self.patience, self.max_minutes, self.init = max_epochs, patience, max_minutes, init
        self.eval_k, self.seed, self.accelerator, self.progress = eval_k, seed, accelerator, progress
        self.fast_dev_run, self.check_val_every_n_epoch = fast_dev_run, check_val_every_n_epoch
        self.checkpoint_dir, self.early_stopping_data, self.curve_path = checkpoint_dir, early_stopping_data, curve_path
        self.curve: list[dict] = []

    def _svd_init(self, data: InteractionData) -> np.ndarray:
        norm, _ = normalised_matrix(data.user_items, 0.5, 0.5)
        # left singular vectors from the right ones: U = R~ V / s
        s, vt = top_singular(norm, self.dim, self.seed)
        u = np.asarray(norm @ vt.T) / np.maximum(s, 1e-9)[None, :]
        scale = np.sqrt(s)[None, :]
        return np.vstack([u * scale, vt.T * scale]).astype(np.float32)

    def fit(self, data: InteractionData, validation: sp.csr_matrix | None = None) -> "LightGCN":
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        validation = validation if validation is not None else self.early_stopping_data
        self.early_stopping_data = None
        L.seed_everything(self.seed, workers=True, verbose=False)
        self.n_items = data.n_items
        self.user_items = data.user_items
        init = self._svd_init(data) if self.init == "svd" else None
        module = LightGCNModule(data.n_users, data.n_items, self.dim, self.n_layers, self.lr, self.l2, self.eval_k,
                                init, self.loss, self.temperature, self.logq_correction,
                                60.0 * self.max_minutes if self.lr_schedule == "budget_linear" else None)
        module.adj = normalised_adjacency(data.user_items)
        if self.loss == "ssm":
            counts = item_pair_counts(data.user_items)  # positives are drawn once per training pair
            module.log_pop = np.log1p(counts)
            if self.logq_correction:
                module.log_q = candidate_log_q(counts)
            if self.pop_weight is None:
                module.pop_grid = POP_WEIGHT_GRID
            else:
                module.pop_grid = (float(self.pop_weight),)
                module.pop_weight.fill_(float(self.pop_weight))
        module.train_matrix, module.val_matrix = data.user_items, validation
        batches = RankShards(partial(triplet_batches, data.user_items, self.batch_size, self.seed))
        monitor = f"val_ndcg@{self.eval_k}"
        callbacks, ckpt = [], None
        if validation is not None and not self.fast_dev_run:
            callbacks, ckpt = best_epoch_callbacks(monitor, self.patience, self.checkpoint_dir)
        max_time = {"minutes": self.max_minutes} if self.max_minutes else None
        curve_dir = tempfile.TemporaryDirectory(prefix="lightgcn-curve-")
        module.curve_file = str(Path(curve_dir.name) / "curve.json")
        with quiet_fit():
            trainer = L.Trainer(max_epochs=self.max_epochs, max_time=max_time,
                                **trainer_parallelism(self.accelerator, self.devices, self.strategy),
                                logger=False, enable_progress_bar=self.progress, enable_model_summary=False,
                                enable_checkpointing=ckpt is not None, callbacks=callbacks,
                                fast_dev_run=self.fast_dev_run, num_sanity_val_steps=0,
                                limit_val_batches=1 if validation is not None else 0,
                                check_val_every_n_epoch=self.check_val_every_n_epoch)
            module._t0 = time.perf_counter()
            trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None),
                        val_dataloaders=_one_batch_loader() if validation is not None else None)
        if not module.curve and Path(module.curve_file).exists():  # ran in spawned processes
            module.curve = json.loads(Path(module.curve_file).read_text())
        curve_dir.cleanup()
        self.curve = module.curve
        self.best_score = restore_best(module, ckpt)
        if self.best_score is None and ckpt is not None and self.curve:
            self.best_score = max(c[monitor.removeprefix("val_")] for c in self.curve)
        self.epochs_trained = trainer.current_epoch or (self.curve[-1]["epoch"] + 1 if self.curve else 0)
        self.chosen_pop_weight = round(float(module.pop_weight), 6) if self.loss == "ssm" else None
        # what propagation needs to serve another graph over the same embeddings (refresh, fold-in)
        self.base_embeddings = module.embedding.weight.detach().cpu().numpy().astype(np.float32)
        self.n_users = data.n_users
        users, items = module.factors()
        self.user_factors, self.item_factors = users.astype(np.float32), items.astype(np.float32)
        self.fit_seconds = time.perf_counter() - t0
        if self.curve_path:
            Path(self.curve_path).write_text(json.dumps(self.curve, indent=1))
        return self

    def _factors_over(self, user_items: sp.csr_matrix, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Served factors from layer-0 embeddings ``base`` ((n_users + n_items, dim), users first) propagated
        over the graph of ``user_items`` (n_users, n_items)."""
        with torch.no_grad():
            final = propagated(torch.from_numpy(base), normalised_adjacency(user_items), self.n_layers).numpy()
        log_pop = np.log1p(item_pair_counts(user_items)) if self.loss == "ssm" else None
        users, items = serving_factors(final, user_items.shape[0], self.loss, self.chosen_pop_weight or 0.0, log_pop)
        return users.astype(np.float32), items.astype(np.float32)

    def _layer0(self) -> np.ndarray:
        """The learned layer-0 embeddings, (n_users + n_items, dim); a model pickled before they were kept cannot
        be served over another graph."""
        base = getattr(self, "base_embeddings", None)
        if base is None:
            raise RuntimeError("this LightGCN was fitted by a version that did not keep its layer-0 embeddings, so it "
                               "cannot be refreshed or fold users in; its scores and ONNX export still work; refit "
                               "it to get both")
        return base

    def refresh(self, data: InteractionData) -> "LightGCN":
        """Serve the learned layer-0 embeddings propagated over ``data``'s graph: the same users and items as the
        fit, more interactions (the full train after early stopping on train minus validation). No gradient step:
        each user's new pairs reach their vector through propagation, the popularity column is recounted, and
        the popularity weight stays as chosen on validation. Returns ``self``."""
        if data.user_items.shape != self.user_items.shape:
            raise ValueError(f"refresh needs the fitted users and items {self.user_items.shape}, "
                             f"got {data.user_items.shape}")
        self.user_factors, self.item_factors = self._factors_over(data.user_items, self._layer0())
        self.user_items = data.user_items
        return self

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """Fold-in (approximate): (n, n_items) scores for histories ``rows`` (n, n_items) CSR. The new users join
        the training graph with zero layer-0 embeddings, so their vectors are what propagation brings from their
        items (layers 1..K; a trained user also has its own layer 0); the items' vectors shift by the new edges
        as they would in the graph. One propagation over the whole graph per call."""
        n_new, layer0 = rows.shape[0], self._layer0()
        base = np.vstack([layer0[:self.n_users], np.zeros((n_new, layer0.shape[1]), np.float32),
                          layer0[self.n_users:]])
        graph = sp.vstack([self.user_items, sp.csr_matrix(rows, dtype=np.float32)]).tocsr()
        users, items = self._factors_over(graph, base)
        return users[self.n_users:] @ items.T
