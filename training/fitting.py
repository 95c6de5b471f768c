"""Final fits: the one place that knows how each family is fitted once its parameters are chosen."""
from __future__ import annotations

from typing import Any

import scipy.sparse as sp

from training.data import InteractionData
from training.families import spec
from training.models import MODELS
from training.models.base import Recommender


def fit_final(family: str, params: dict[str, Any], train: InteractionData, fit: InteractionData | None = None,
              validation: sp.csr_matrix | None = None) -> tuple[Recommender, dict[str, Any]]:
    """Fit ``family`` on ``train`` as its ``FamilySpec.final_fit`` says. Trained families first pick their epoch
    count by early stopping on ``validation`` (fitted on ``fit``, both carved from train), then refit on train for
    that many epochs (``probe_epochs``), or keep the early-stopped model (``early_stopped``). Returns the model
    and facts worth recording (epochs, validation score)."""
    facts: dict[str, Any] = {}
    how = spec(family).final_fit
    if how == "early_stopped" and fit is not None and validation is not None:
        # graph training is the expensive part: the model early-stopped on validation is the final one
        from training.tuning import sample_users

        model = MODELS[family](**params).fit(fit, sample_users(validation, 10_000, 0))
        facts = {"epochs": model.epochs_trained, "validation_best_ndcg@20": getattr(model, "best_score", None),
                 "trained_on": "fit (train minus validation)", "curve": model.curve}
        # the validation pairs reach the users' vectors through propagation, with no retraining
        model.refresh(train)
        facts["served_graph"] = "train (the fit's embeddings propagated over every training pair)"
        if getattr(model, "chosen_pop_weight", None) is not None:
            facts["pop_weight"] = model.chosen_pop_weight
        return model, facts
    if how == "probe_epochs" and fit is not None and validation is not None:
        from training.tuning import sample_users

        # the epoch count is picked on (a sample of) the validation users, scored after every epoch
        probe = MODELS[family](**params).fit(fit, sample_users(validation, 10_000, 0))
        epochs = max(probe.epochs_trained, 1)
        facts = {"epochs": epochs, "validation_best_ndcg@20": probe.best_score, "probe_seconds": probe.fit_seconds}
        params = {**params, "max_epochs": epochs, "patience": 0}
    model = MODELS[family](**params).fit(train)
    return model, facts
