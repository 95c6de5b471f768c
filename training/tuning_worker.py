"""One more Optuna worker for a study that others are already running (or that a crash interrupted).

Start it on any machine that reaches the study's storage; every worker given the same ``--storage`` and
``--study`` shares one budget of ``--trials`` (see ``training/tuning.py``):

    python -m training.tuning_worker --family itemknn --storage "$OPTUNA_STORAGE_URL" \\
        --study itemknn-1a2b3c4d --trials 40 --matrices data/assets/interaction_matrices.pkl

``--matrices`` is the ``interaction_matrices`` asset's output (the Dagster asset's metadata names the
study); ``--synthetic-users N`` tunes on the built-in synthetic shop instead (demos and tests).
Prints the study's summary as JSON when the study is complete.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Any

from training.tuning import TuningConfig, tune


def synthetic_matrices(n_users: int, seed: int = 0) -> tuple[Any, Any]:
    """(fit InteractionData, validation CSR) of the synthetic shop's temporal split."""
    from data_checks.cleaning import clean
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
    from training.data import build_interaction_data
    from training.splits import SplitConfig, make_split

    tables = clean(generate_shop(SyntheticShopConfig(n_users=n_users, seed=seed)).tables)
    split = make_split(tables.interactions, SplitConfig(strategy="temporal"))
    fit = build_interaction_data(split.fit, tables.items["item_id"])
    return fit, fit.matrix_for(split.validation)


def main(argv: list[str] | None = None) -> dict:
    from cobuy_files.storage import read_pickle
    from training.families import FAMILIES
    from training.models import MODELS

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--family", required=True, choices=sorted(n for n, s in FAMILIES.items() if s.tuner == "optuna"))
    ap.add_argument("--storage", default=os.environ.get("OPTUNA_STORAGE_URL"),
                    help="study storage URL (default: $OPTUNA_STORAGE_URL)")
    ap.add_argument("--study", required=True)
    ap.add_argument("--trials", type=int, required=True, help="the study's total, shared by all workers")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--matrices", help="pickled interaction_matrices asset output")
    src.add_argument("--synthetic-users", type=int)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--metric", default="ndcg@20")
    ap.add_argument("--max-eval-users", type=int, default=10_000)
    ap.add_argument("--output-dir", default="data/tuning")
    ap.add_argument("--heartbeat-seconds", type=int, default=10)
    ap.add_argument("--grace-seconds", type=int, default=30)
    args = ap.parse_args(argv)
    if not args.storage:
        ap.error("--storage or OPTUNA_STORAGE_URL is required")
    if args.matrices:
        m = read_pickle(args.matrices)
        fit, validation = m.fit, m.validation
    else:
        fit, validation = synthetic_matrices(args.synthetic_users)
    cfg = TuningConfig(n_trials=args.trials, storage=args.storage, study_name=args.study, seed=args.seed,
                       metric=args.metric, max_eval_users=args.max_eval_users, output_dir=args.output_dir,
                       heartbeat_seconds=args.heartbeat_seconds, grace_seconds=args.grace_seconds)
    result = tune(lambda p: MODELS[args.family](**p), dict(FAMILIES[args.family].search_space), fit, validation, cfg)
    summary = {"study": result.study_name, "trials": result.n_trials, "best_value": result.best_value,
               "best_params": result.best_params, "seconds": round(result.seconds, 2), "pid": os.getpid()}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
