"""Default Optuna search spaces per model family (typed; override any of them in config)."""
from __future__ import annotations

from training.tuning import Param

SEARCH_SPACES: dict[str, dict[str, Param]] = {
    "itemknn": {
        "k": Param("int", 20, 400, log=True),
        "alpha": Param("float", 0.3, 0.9),
        "shrink": Param("float", 0.0, 100.0),
        "weighting": Param("categorical", choices=["none", "tfidf"]),
    },
    # EASE's l2 on Gowalla, validation NDCG@20: 1402: 0.1032, 500: 0.1123, 150: 0.1204, 51: 0.1232, 25: 0.1221
    # (the optimum is near 50, inside the space; the range reaches below it for sparser shops)
    "ease": {"l2": Param("float", 5.0, 1000.0, log=True)},
    "gf_cf": {
        "alpha": Param("float", 0.0, 0.5),
        "sharpen": Param("float", 0.0, 2.0),
        "n_factors": Param("categorical", choices=[64, 128, 256, 512]),
    },
    # ChebyCF (Kim et al., SIGIR 2025): filter order and flatness, ideal-pass size and weight, and the
    # post-normalisation exponent (the pre-normalisation one is fixed per study: training/chebycf_tuning.py)
    "chebycf": {
        "order": Param("int", 3, 8),
        "flatness": Param("float", 0.5, 3.0),
        "alpha": Param("float", 0.0, 0.6),
        "n_factors": Param("categorical", choices=[256, 384, 512]),
        "post_beta": Param("float", 0.2, 0.7),
    },
    "mf_bpr": {
        "dim": Param("categorical", choices=[32, 64, 128]),
        "lr": Param("float", 1e-3, 3e-2, log=True),
        "l2": Param("float", 1e-6, 1e-2, log=True),
    },
    # iALS (Rendle et al., RecSys 2022): unobserved weight, regularisation (scaled by (count + alpha0 * n)^nu).
    # Ranges from Gowalla validation probes (dim 128; validation NDCG@20 on 10k users): alpha0 0.02 / l2 1e-3
    # gave 0.100, 0.005 / 3e-4 gave 0.094, 0.05 / 1e-2 only 0.055 (over-regularised, popularity-like).
    "mf_ials": {
        "dim": Param("categorical", choices=[128, 256]),
        "alpha0": Param("float", 5e-3, 0.1, log=True),
        "l2": Param("float", 2e-4, 5e-3, log=True),
    },
    "association_rules": {
        "min_support": Param("float", 0.001, 0.02, log=True),
        "min_confidence": Param("float", 0.0, 0.5),
    },
}
