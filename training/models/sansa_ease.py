"""EASE at any catalogue size through SANSA (Spišák, Bartyzal, Hoskovec, Peška & Tůma, "Scalable Approximate
NonSymmetric Autoencoder for Collaborative Filtering", RecSys 2023; the ``sansa`` package).

Exact EASE (``training.models.ease``) inverts the dense (n_items, n_items) Gram matrix: 6.7 GB a copy at Gowalla's
40,981 items, two copies or more at the peak, so it does not fit 50k items on a 24 GB machine. SANSA never forms a
dense n x n matrix: an incomplete (ICF) or sparsified (CHOLMOD) Cholesky factor L D L^T of the permuted
X^T X + l2 I, a sparse approximate inverse of the unit lower triangle L (residual minimisation), and EASE's
zero-diagonal scaling applied to the product; the model is two sparse factors A (n, n) and B (n, n) with about
``density`` * n^2 entries each, and scores are ``(history @ A) @ B``. Memory is proportional to the non-zeros of
X^T X and of the factors, not to n^2.

The scores are linear in the history, so the family has the same sparse top-N serving form as every item-item
family (``training.models.sparse``), and it serves and evaluates as ``ease``.

``sansa`` needs scikit-sparse, which builds against SuiteSparse (Debian: ``apt-get install libsuitesparse-dev``);
it is the ``scale`` extra (``pip install 'cobuy[scale]'``).
"""
from __future__ import annotations

import time
from typing import Literal

import numpy as np
import scipy.sparse as sp

from training.data import InteractionData
from training.models.base import LinearHistoryModel, require_training_data

INSTALL_HINT = ("SANSA needs the 'sansa' package (pip install 'cobuy[scale]'), which builds scikit-sparse against "
                "SuiteSparse: install libsuitesparse-dev (Debian/Ubuntu) or suite-sparse (Homebrew) first")


def sansa_available() -> bool:
    try:
        import sansa  # noqa: F401
    except Exception:  # ImportError, or scikit-sparse's shared library missing
        return False
    return True


def expand(w: sp.spmatrix, positions: np.ndarray, n: int) -> sp.csr_matrix:
    """(n, n) float32 CSR holding ``w`` ((m, m)) at rows and columns ``positions`` (m,)."""
    coo = w.tocoo()
    return sp.csr_matrix((coo.data.astype(np.float32), (positions[coo.row], positions[coo.col])), shape=(n, n))


class SansaEASE(LinearHistoryModel):
    name = "ease"

    def __init__(self, l2: float = 20.0, density: float = 5e-3, factorizer: Literal["icf", "cholmod"] = "icf",
                 scans: int = 1, finetune_steps: int = 5) -> None:
        """``l2``: SANSA's regularisation (on its scaled Gram matrix when ``factorizer="icf"``, so not the same
        numbers as exact EASE's); ``density``: non-zeros of each weight factor as a fraction of n_items^2;
        ``factorizer``: ``icf`` (incomplete Cholesky, memory-light) or ``cholmod`` (exact Cholesky, then cut);
        ``scans`` / ``finetune_steps``: the approximate inverse's refinement."""
        super().__init__()
        self.l2, self.density, self.factorizer = l2, density, factorizer
        self.scans, self.finetune_steps = scans, finetune_steps

    def fit(self, data: InteractionData) -> "SansaEASE":
        try:
            from sansa import (SANSA, CHOLMODGramianFactorizerConfig, ICFGramianFactorizerConfig, SANSAConfig,
                               UMRUnitLowerTriangleInverterConfig)
        except Exception as exc:
            raise RuntimeError(f"{INSTALL_HINT} ({type(exc).__name__}: {exc})") from exc
        import logging

        logging.getLogger("sansa").setLevel(logging.WARNING)
        t0 = time.perf_counter()
        require_training_data(self.name, data)
        self.n_items = data.n_items
        self.user_items = data.user_items.tocsr()
        factorizer = ICFGramianFactorizerConfig() if self.factorizer == "icf" else CHOLMODGramianFactorizerConfig()
        config = SANSAConfig(l2=self.l2, weight_matrix_density=self.density, gramian_factorizer_config=factorizer,
                             lower_triangle_inverter_config=UMRUnitLowerTriangleInverterConfig(
                                 scans=self.scans, finetune_steps=self.finetune_steps))
        # SANSA needs every item in some history (an empty column breaks its norms): fit on the items with one,
        # then place the factors back at the catalogue's positions (the others keep no weight)
        active = np.flatnonzero(np.diff(self.user_items.tocsc().indptr) > 0)
        model = SANSA(config).fit(self.user_items[:, active].astype(np.float32).tocsr())
        self.left, self.right = (expand(w, active, self.n_items) for w in model.weights)  # (n, n) each
        self.fit_seconds = time.perf_counter() - t0
        return self

    @property
    def weight_nnz(self) -> int:
        return int(self.left.nnz + self.right.nnz)

    def score_history(self, rows: sp.csr_matrix) -> np.ndarray:
        """(n, n_items) float32 scores ``(rows @ A) @ B`` of histories ``rows`` (n, n_items)."""
        return np.asarray(((rows.astype(np.float32) @ self.left) @ self.right).toarray(), dtype=np.float32)
