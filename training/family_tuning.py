"""Tune any family with the tuner its :class:`~training.families.FamilySpec` names: the one place that chooses it,
for the Dagster model assets and the benchmark command alike.

Every study sees only the ``fit`` matrices and the ``validation`` split carved from train (``training.tuning``).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import scipy.sparse as sp

from training.data import InteractionData
from training.families import FAMILIES, FamilySpec, spec
from training.tuning import Param, TuningConfig, TuningResult, sample_users, tune

# the singular vectors a spectral family may keep: at most a quarter of the catalogue (small shops), at most 768
MAX_FACTORS = 768


def factor_cap(n_items: int) -> int:
    """The most singular vectors a graph filter keeps for a catalogue of ``n_items``."""
    return max(n_items // 4, 2)


def capped_space(space: dict[str, Param], n_items: int) -> dict[str, Param]:
    """``space`` with a categorical ``n_factors`` choice capped at :func:`factor_cap` (small shops)."""
    out = dict(space)
    if "n_factors" in out and out["n_factors"].kind == "categorical":
        cap = factor_cap(n_items)
        out["n_factors"] = Param("categorical", choices=sorted({min(c, cap) for c in out["n_factors"].choices}))
    return out


def builder(family: FamilySpec, params: dict[str, Any], validation: sp.csr_matrix
            ) -> Callable[[dict[str, Any]], Any]:
    """``build(trial_params)`` for an Optuna study: the family's class with ``params`` overridden by the trial's; a
    family that picks its epochs on validation early-stops on (a seeded sample of 10,000 of) its users."""
    cls = family.load()
    extra = {"early_stopping_data": sample_users(validation, 10_000, 0)} if family.final_fit == "probe_epochs" else {}
    return lambda p: cls(**{**params, **p, **extra})


def tune_family(family: str, params: dict[str, Any], fit: InteractionData, validation: sp.csr_matrix,
                cfg: TuningConfig, components: Sequence[tuple[str, dict[str, Any]]] | None = None,
                build: Callable[[dict[str, Any]], Any] | None = None, progress: bool = False
                ) -> tuple[dict[str, Any], TuningResult]:
    """Search ``family``'s space with its tuner, starting from ``params`` (the configured values: fixed ones such
    as ChebyCF's ``beta`` stay, and they are trial 0 of a generic study when they set every searched parameter).
    ``components``: the blend's parts (default: its ``params["components"]``); ``build``: the Optuna tuner's model
    factory (default: :func:`builder`). Returns the parameters to fit with (``params`` overridden by the best
    trial's) and the study's result."""
    s = spec(family)
    space = dict(s.search_space)
    if s.tuner == "graph_filter":  # recombines cached terms instead of refitting per trial; n_factors is capped there
        from training.graph_filter_tuning import tune_graph_filter

        result = tune_graph_filter(fit, validation, cfg, max_factors=min(MAX_FACTORS, factor_cap(fit.n_items)))
    elif s.tuner == "chebycf":  # recombines cached Chebyshev bases; beta and the coefficient rule stay as configured
        from training.chebycf_tuning import tune_chebycf

        result = tune_chebycf(fit, validation, cfg, beta=params.get("beta", s.default("beta")),
                              space=capped_space(space, fit.n_items),
                              targets=params.get("targets", s.default("targets")), progress=progress)
    elif s.tuner == "blend":  # the parts' parameters fixed, their weights searched
        from training.blend_tuning import tune_blend

        parts = components if components is not None else params.get("components", s.default("components"))
        result = tune_blend(fit, validation, cfg, parts)
    elif s.tuner == "optuna":
        configured = {k: v for k, v in params.items() if k in space}
        result = tune(build or builder(s, params, validation), space, fit, validation, cfg,
                      first_params=configured if len(configured) == len(space) else None)
    else:
        raise ValueError(f"{family} has no search here (tuner {s.tuner!r}); the tunable families are "
                         f"{', '.join(tunable())}")
    return {**params, **result.best_params}, result


def tunable() -> list[str]:
    """The families :func:`tune_family` can search."""
    return [n for n, s in FAMILIES.items() if s.tuner in ("optuna", "graph_filter", "chebycf", "blend")]
