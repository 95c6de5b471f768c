"""The strict cold-start experiment on a whole dataset (``training.strict_cold_start`` says what it measures):
held-out items removed from training entirely, ranked against the catalog by text alone.

    python -m benchmarks.strict_cold_start --source instacart --out benchmarks/results [--steps N]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import machine
from training.strict_cold_start import StrictColdStartConfig, difference_table, run_strict_cold_start

DEFAULT_PATHS = {"instacart": "../shared/datasets/instacart", "online_retail":
                 "../shared/datasets/online_retail/online_retail.csv.gz", "synthetic": ""}


def load_source(kind: str, path: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(cleaned interactions, cleaned catalog) of a source read as ``data_checks.sources.read_source`` reads it."""
    from data_checks.cleaning import clean
    from data_checks.sources import SourceSpec, read_source

    if kind not in DEFAULT_PATHS and not path:
        raise ValueError(f"--source {kind!r}: give its --path (built-in defaults: {sorted(DEFAULT_PATHS)})")
    cleaned = clean(read_source(SourceSpec(kind, path or DEFAULT_PATHS[kind])))
    return cleaned.interactions, cleaned.items


def sample_categories(rows: pd.DataFrame, catalog: pd.DataFrame, max_items: int, seed: int
                      ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """A smaller shop cut from this one: whole categories taken in a seeded order while the catalog stays within
    ``max_items`` (at least one category), with their items' rows only (baskets keep their items of those
    categories). Returns (rows, catalog, the categories taken). Items without a category form one category."""
    cats = catalog["category"].astype("string").fillna("") if "category" in catalog else \
        pd.Series("", index=catalog.index, dtype="string")
    sizes = cats.value_counts()
    order = sizes.index.to_numpy()[np.random.default_rng(seed).permutation(len(sizes))]
    taken, total = [], 0
    for c in order:
        if taken and total + sizes[c] > max_items:
            continue
        taken.append(str(c))
        total += int(sizes[c])
    small = catalog[cats.isin(taken).to_numpy()].reset_index(drop=True)
    return rows[rows["item_id"].astype(str).isin(set(small["item_id"].astype(str)))], small, taken


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.strict_cold_start", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--source", default="instacart", help="source kind (data_checks.sources): instacart, "
                    "online_retail, synthetic, ...")
    ap.add_argument("--path", default=None, help="the source's file or folder (default: the shared dataset)")
    ap.add_argument("--out", required=True, help="folder for <source>-cold_start.json")
    ap.add_argument("--steps", type=int, default=250, help="fine-tuning steps (0: no fine-tuning)")
    ap.add_argument("--batch-size", type=int, default=64, help="fine-tuning batch (pairs per step)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--holdout-fraction", type=float, default=0.1)
    ap.add_argument("--max-validation-items", type=int, default=1000)
    ap.add_argument("--max-head-items", type=int, default=5000)
    ap.add_argument("--untuned-embeddings", default=None, help="an .npy of the untuned encoder's embeddings of the "
                    "catalog's texts made elsewhere (checked on a sample before use)")
    ap.add_argument("--max-catalog-items", type=int, default=None, help="evaluate on a smaller shop: whole "
                    "categories in a seeded order up to this many catalog items (sample_categories); default: all")
    ap.add_argument("--note", default="", help="free text kept in the JSON (e.g. why this fine-tuning budget)")
    args = ap.parse_args(argv)
    from cobuy_files.storage import write_result_json
    from training.text_encoder import TextEncoderConfig

    t0 = time.perf_counter()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    rows, catalog = load_source(args.source, args.path)
    print(f"{args.source}: {len(rows)} rows, {len(catalog)} catalog items ({time.perf_counter() - t0:.0f}s)")
    subsample = None
    if args.max_catalog_items is not None and args.max_catalog_items < len(catalog):
        full = {"rows": int(len(rows)), "catalog_items": int(len(catalog))}
        rows, catalog, taken = sample_categories(rows, catalog, args.max_catalog_items, args.seed)
        subsample = {"of": full, "categories_taken": taken, "max_catalog_items": args.max_catalog_items,
                     "seed": args.seed}
        print(f"kept {len(taken)} categories: {len(rows)} rows, {len(catalog)} catalog items")
    cfg = StrictColdStartConfig(holdout_fraction=args.holdout_fraction, max_validation_items=args.max_validation_items,
                                max_head_items=args.max_head_items, seed=args.seed)
    encoder_cfg = TextEncoderConfig(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
    result = run_strict_cold_start(rows, catalog, cfg, encoder_cfg,
                                   embeddings_file=Path(args.out) / f"{args.source}-cold_start-embeddings.npz",
                                   untuned_from=Path(args.untuned_embeddings) if args.untuned_embeddings else None)
    out = {"dataset": args.source, "path": args.path or DEFAULT_PATHS.get(args.source), "evaluation": "strict cold "
           "start: held-out items removed from training entirely, ranked against the catalog by text",
           "note": args.note, "category_subsample": subsample, **{k: v for k, v in result.items() if k != "held_out_item_ids"},
           "held_out_item_ids_first_20": result["held_out_item_ids"][:20],
           "wall_seconds": time.perf_counter() - t0, "load_average_at_start_1_5_15min": load_at_start,
           "machine": machine()}
    path = write_result_json(out, Path(args.out) / f"{args.source}-cold_start.json")
    print(difference_table(result).to_string(index=False))
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
