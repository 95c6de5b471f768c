"""What the Lightning-trained recommenders share: early stopping with a best-epoch checkpoint, restoring
that checkpoint, and scoring from user and item factors."""
from __future__ import annotations

import tempfile

import lightning as L
import numpy as np
import torch

from training.models.base import FactorForm
from training.ranking import top_k


def best_epoch_callbacks(monitor: str, patience: int, checkpoint_dir: str | None
                         ) -> tuple[list, L.pytorch.callbacks.ModelCheckpoint]:
    """Early stopping on ``monitor`` (higher is better) and a checkpoint of the best epoch."""
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoint_dir or tempfile.mkdtemp(prefix="ckpt-"),
                                                monitor=monitor, mode="max", save_top_k=1, save_weights_only=True)
    return [L.pytorch.callbacks.EarlyStopping(monitor=monitor, mode="max", patience=patience), ckpt], ckpt


def restore_best(module: L.LightningModule, ckpt: L.pytorch.callbacks.ModelCheckpoint | None) -> float | None:
    """Load the best checkpoint's weights into ``module``; returns its monitored score."""
    if ckpt is None or not ckpt.best_model_path:
        return None
    state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=False)["state_dict"]
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
