"""A million-item shop on one box: the synthetic shop at any size through every stage of the pipeline, each stage
measured (wall, CPU, peak RSS of the process tree) and refused up front when its memory estimate does not fit.

    python -m benchmarks.synthetic_scale --items 1000000 --customers 5000000 \\
        --interactions 50000000 --out benchmarks/results/synthetic-1m-pipeline.json

Stages, as plain library calls in one process (the Dagster job would pickle each 5 * 10^7-row asset between
steps, doubling the memory held; these are the functions its assets call, or their chunked forms):

generate (``data_checks.synthetic_scale``) -> ingest (``data_checks.chunked.ingest_parts``: the project's reader
on each Parquet part) -> validate (``data_checks.chunked.validate_parts``: the Great Expectations row rules,
quarantine counts) -> matrices (``training.part_matrices``) -> rules (pair rules, ``AssociationRules(max_len=2)``)
-> item-kNN (``training.models.sparse_blocks.BlockItemKNN``: sparse blocks bounded by pair work) -> iALS
(``IALSMatrixFactorization``) -> ONNX export of iALS and its parity -> ONNX Runtime scoring of a sample of users ->
the planted pairs and baskets found (the share whose partner is in the item's top 10 related items).

Before a stage runs, its estimate (``training.models.footprint``) is set against the memory it may use: the
smaller of what the machine has available now and ``--memory-limit-gb`` less what this process already holds,
times ``--memory-fraction``. A stage that does not fit is recorded as refused, with both numbers, and the stages
that need it are skipped; nothing is left to the out-of-memory killer.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

from benchmarks.pipeline import tree_memory

from data_checks.chunked import ingest_parts, validate_parts
from data_checks.readers import CatalogFile
from data_checks.synthetic_scale import CATALOG_COLUMNS, EXPORT_COLUMNS, ScaledShopConfig, generate_scaled_shop
from training.models import footprint
from training.models.footprint import GIB, DataSize, MemoryBudget, available_bytes, human_bytes

ROOT = Path(__file__).resolve().parent.parent


def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants (``benchmarks.pipeline.tree_memory``)."""
    return tree_memory(pid)[0]


class PeakSampler(threading.Thread):
    """Samples :func:`tree_rss` of this process every ``interval`` seconds until stopped; keeps the peak and the
    highest 1-minute load average seen."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.pid = interval, os.getpid()
        self.peak = tree_rss(self.pid)
        self.load_max = os.getloadavg()[0]
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self.load_max = max(self.load_max, os.getloadavg()[0])
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, tree_rss(self.pid))


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass
class StageRunner:
    """Runs stages in order, measuring each; refuses a stage whose estimate does not fit its budget.

    ``limit_bytes``: the most the process tree may hold (the benchmark's target); ``stage_limits``: for named
    stages, the most that stage may add (GiB), e.g. to see a refusal at a small size."""

    limit_bytes: int
    fraction: float = 0.75
    stage_limits: dict[str, float] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)
    peak_rss: int = 0
    progress: Path | None = None  # where the stages so far are written after each one (a partial run's record)

    def budget(self, name: str) -> tuple[MemoryBudget, dict]:
        """What stage ``name`` may use now: the machine's available memory, or the limit less what this process
        holds, whichever is smaller (``fraction`` of it, as for the model families)."""
        held = tree_rss(os.getpid())
        # a stage limit is what that stage may add; the overall limit covers what the process holds already
        own = name in self.stage_limits
        limit = int(self.stage_limits[name] * GIB) if own else self.limit_bytes
        room = limit if own else limit - held
        available = available_bytes()
        total = room if available is None else min(available, room)
        facts = {"held_before_gb": round(held / GIB, 3), "available_gb": None if available is None else
                 round(available / GIB, 3), "limit_gb": round(limit / GIB, 3)}
        return MemoryBudget(max(total, 0), self.fraction), facts

    def run(self, name: str, estimate: Callable[[], int], work: Callable[[], Any], needs: tuple[str, ...] = ()
            ) -> Any:
        """Run ``work`` as stage ``name`` unless a stage it ``needs`` did not finish or ``estimate()`` bytes do not
        fit; the record (status, estimate, wall_s, cpu_s, peak RSS, load) goes to ``stages``. Returns ``work``'s
        value, or None when the stage did not run."""
        missing = [n for n in needs if self.stages.get(n, {}).get("status") != "ok"]
        if missing:
            self.stages[name] = {"status": "skipped", "reason": f"needs {', '.join(missing)}, which did not run"}
            return None
        need = int(estimate())
        budget, facts = self.budget(name)
        record: dict[str, Any] = {"estimate_bytes": need, "estimate": human_bytes(need),
                                  "usable_bytes": budget.usable_bytes, **facts}
        refusal = None
        if budget.usable_bytes is not None and need > budget.usable_bytes:
            source = (f"the stage's own limit of {human_bytes(self.stage_limits[name] * GIB)}"
                      if name in self.stage_limits else
                      f"what is available now, within the {human_bytes(self.limit_bytes)} limit less the "
                      f"{human_bytes(facts['held_before_gb'] * GIB)} this process holds")
            refusal = (f"stage {name} needs about {human_bytes(need)}, more than the {human_bytes(budget.usable_bytes)} "
                       f"allowed ({budget.fraction:.0%} of {human_bytes(budget.total_bytes)}: {source}); run a "
                       "smaller size or where more memory is free")
        if refusal is not None:
            self.stages[name] = {"status": "refused", "reason": refusal, **record}
            print(f"[{name}] refused: {refusal}", flush=True)
            return None
        print(f"[{name}] start (estimate {human_bytes(need)}, usable {human_bytes(budget.usable_bytes or 0)})",
              flush=True)
        sampler = PeakSampler()
        sampler.start()
        t0, c0, load0 = time.perf_counter(), _cpu_seconds(), os.getloadavg()
        try:
            value = work()
            record["status"] = "ok"
        except MemoryError as exc:  # an estimate that was too low: said so, not a crash of the whole run
            value = None
            record.update(status="failed", reason=f"MemoryError: {exc}")
        finally:
            sampler.stop()
        release_freed_memory()
        record["held_after_gb"] = round(tree_rss(os.getpid()) / GIB, 3)
        record.update(wall_s=round(time.perf_counter() - t0, 2), cpu_s=round(_cpu_seconds() - c0, 2),
                      peak_rss_gb=round(sampler.peak / GIB, 3),
                      peak_added_gb=round(sampler.peak / GIB - facts["held_before_gb"], 3),
                      load_before=[round(x, 2) for x in load0],
                      load_max=round(sampler.load_max, 2))
        self.peak_rss = max(self.peak_rss, sampler.peak)
        self.stages[name] = record
        if self.progress is not None:
            self.progress.write_text(json.dumps({"status": "running", "stages": self.stages}, indent=2,
                                                default=str) + "\n")
        print(f"[{name}] {record['status']} in {record['wall_s']} s, peak RSS {record['peak_rss_gb']} GiB", flush=True)
        return value


def release_freed_memory() -> None:
    """Collect the stage's garbage and hand the heap's free pages back to the system (glibc ``malloc_trim``, Arrow's pool):
    without it the freed frames of validation and the released models stay in this process's RSS, which is what
    the next stage's budget is measured against (at 10^6 items iALS was refused with 6.2 GiB held, most of it
    free heap). A no-op where the C library has no ``malloc_trim``."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    if "pyarrow" in sys.modules:  # Arrow's own allocator (jemalloc / mimalloc) keeps freed pages too
        sys.modules["pyarrow"].default_memory_pool().release_unused()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def related_recall(related: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], item_index: dict,
                   pairs: list[tuple[str, str]], bundles: list[list[str]], k: int = 10) -> dict:
    """The share of planted pairs whose partner is among the anchor's ``k`` related items, and of ordered pairs of
    items of a planted basket (a, b) whose b is among a's ``k`` related items. ``related``: a model's
    ``related_items`` (item positions, k) -> ((n, k) positions, scores)."""
    anchors = np.array([item_index[a] for a, _ in pairs], np.int64)
    partners = np.array([item_index[b] for _, b in pairs], np.int64)
    top, _ = related(anchors, k)
    found_pairs = float(np.mean([p in row for p, row in zip(partners, top)])) if len(pairs) else float("nan")
    members = [[item_index[i] for i in b] for b in bundles]
    flat = np.array(sorted({m for b in members for m in b}), np.int64)
    top_b, _ = related(flat, k) if len(flat) else (np.zeros((0, k), np.int64), None)
    lists = {int(m): set(row.tolist()) for m, row in zip(flat, top_b)}
    hits = [o in lists[a] for b in members for a in b for o in b if o != a]
    return {"k": k, "pairs": len(pairs), "pairs_found": found_pairs,
            "basket_pairs": len(hits), "basket_pairs_found": float(np.mean(hits)) if hits else float("nan")}


def factor_related(item_factors: np.ndarray, chunk: int = 128) -> Callable[[np.ndarray, int], tuple]:
    """``related_items`` of a factor model: the items of highest cosine between item factors, in chunks of
    ``chunk`` items ((chunk, n_items) scores at a time)."""
    from training.ranking import top_k

    norms = np.linalg.norm(item_factors, axis=1)
    unit = item_factors / np.maximum(norms, 1e-12)[:, None]

    def related(items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        out_i, out_s = [], []
        for start in range(0, len(items), chunk):
            block = items[start:start + chunk]
            scores = unit[block] @ unit.T
            scores[np.arange(len(block)), block] = -np.inf
            i, s = top_k(scores, k)
            out_i.append(i)
            out_s.append(s)
        return (np.concatenate(out_i) if out_i else np.zeros((0, k), np.int64),
                np.concatenate(out_s) if out_s else np.zeros((0, k), np.float32))
    return related


def export_stages(runner: StageRunner, out: dict, family: str, holder: dict, data, work_dir: Path,
                  s: "PipelineSettings", export_bytes: Callable[[], int], score_bytes: Callable[[], int]) -> None:
    """Two stages for the fitted model ``holder[family]``: ``<family>_export`` (ONNX export, top 10, and its parity
    with the native model on ``s.parity_users`` users) and ``<family>_score`` (ONNX Runtime's top 10 for
    ``s.score_users`` users drawn at random, ``s.score_batch`` at a time). The model is released after export."""
    path = work_dir / "pipeline" / "onnx" / family / f"{family}.onnx"

    def export() -> dict:
        from serving.onnx_export import export_recommender
        from serving.onnx_scoring import OnnxRecommender, check_parity
        from training.models.sparse import SparseItemItem

        model = holder[family]
        if family == "itemknn":  # served as its top-k neighbours (what it holds already)
            model = SparseItemItem.from_model(model, s.knn_k)
        export_recommender(model, path, k=10)
        session = OnnxRecommender(path, provider="cpu", threads=s.threads)
        parity = check_parity(model, session, data.user_items, n_users=s.parity_users, seed=s.seed)
        return {"kind": session.info.kind, "path": str(path.relative_to(work_dir)),
                "bytes": sum(f.stat().st_size for f in path.parent.iterdir()), "parity": parity.as_dict()}

    def score() -> dict:
        from serving.onnx_scoring import OnnxRecommender, iter_top_k

        session = OnnxRecommender(path, provider="cpu", threads=s.threads)
        users = np.sort(np.random.default_rng(s.seed).choice(data.n_users, min(s.score_users, data.n_users),
                                                             replace=False))
        t0, n = time.perf_counter(), 0
        for _, items, _ in iter_top_k(session, data.user_items, users, chunk_size=s.score_batch, progress=False):
            n += len(items)
        wall = time.perf_counter() - t0
        return {"users": n, "k": session.info.k, "scoring_s": round(wall, 2),
                "users_per_s": round(n / max(wall, 1e-9), 1)}

    out[f"{family}_export"] = runner.run(f"{family}_export", export_bytes, export, needs=(family,))
    holder.pop(family, None)
    out[f"{family}_score"] = runner.run(f"{family}_score", score_bytes, score, needs=(f"{family}_export",))


@dataclass
class PipelineSettings:
    """The models' settings at every size (see the module docstring)."""

    min_pair_baskets: int = 20  # rules: min_support = this many baskets
    min_confidence: float = 0.01
    knn_k: int = 50
    knn_shrink: float = 10.0
    max_block_pairs: int = 20_000_000
    max_items_per_user: int = 500
    ials_dim: int = 32
    ials_epochs: int = 4
    ials_cg_steps: int = 3
    score_users: int = 10_000
    score_batch: int = 256
    parity_users: int = 200
    threads: int = 2
    seed: int = 0


def run_pipeline(shop_cfg: ScaledShopConfig, work_dir: Path, settings: PipelineSettings, limit_gb: float = 16.0,
                 fraction: float = 0.75, stage_limits: dict[str, float] | None = None,
                 progress: Path | None = None) -> dict:
    """Every stage on a shop generated under ``work_dir``; returns the result record (``stages``, overall peak,
    planted pairs found). ``progress``: a file rewritten after each stage with the stages so far."""
    runner = StageRunner(int(limit_gb * GIB), fraction, dict(stage_limits or {}), progress=progress)
    s, cfg = settings, shop_cfg
    load_start, t_start = os.getloadavg(), time.perf_counter()
    mem_start = psutil.virtual_memory()
    shop_dir, data_dir = work_dir / "shop", work_dir / "pipeline"
    shutil.rmtree(data_dir, ignore_errors=True)
    out: dict[str, Any] = {}

    shop = runner.run("generate", lambda: footprint.generation_bytes(cfg.rows_per_part, cfg.n_items),
                      lambda: generate_scaled_shop(cfg, shop_dir))
    if shop is not None:
        out["shop"] = {"rows": shop.rows, "orders": shop.orders, "parts": len(shop.parts), "dirt": shop.dirt,
                       "planted_pairs": len(shop.planted_pairs), "bundles": len(shop.bundles)}
    ingested = runner.run("ingest", lambda: footprint.ingestion_bytes(cfg.rows_per_part, cfg.n_items),
                          lambda: ingest_parts(shop.parts, EXPORT_COLUMNS, CatalogFile(str(shop.catalog),
                                                                                       dict(CATALOG_COLUMNS)),
                                               data_dir), needs=("generate",))
    validated = runner.run("validate", lambda: footprint.validation_bytes(cfg.rows_per_part, cfg.n_items),
                           lambda: validate_parts(ingested, data_dir), needs=("ingest",))
    if validated is not None:
        out["validation"] = validated.summary
        # the quarantine is exactly the planted dirt, reason by reason (and nothing else)
        out["validation"]["planted_dirt_quarantined"] = validated.summary["reasons"] == {
            f"interactions:{reason}": n for reason, n in sorted(shop.dirt.items()) if n}

    def matrices():
        import pandas as pd

        from training.part_matrices import interaction_data_from_parts

        item_ids = pd.read_parquet(validated.catalog, columns=["item_id"])["item_id"].to_numpy(dtype=object)
        return interaction_data_from_parts(validated.clean_parts, item_ids)

    rows = validated.summary["interactions_clean"] if validated is not None else 0
    data = runner.run("matrices", lambda: footprint.part_matrix_bytes(rows, cfg.n_customers), matrices,
                      needs=("validate",))
    if data is not None:
        out["matrices"] = {"users": data.n_users, "items": data.n_items, "user_item_pairs": int(data.user_items.nnz),
                           "baskets": int(data.baskets.shape[0]), "basket_items": int(data.baskets.nnz)}
        item_index = {str(i): p for p, i in enumerate(data.item_ids)}
    planted: dict[str, dict] = {}

    def rules_estimate() -> int:
        b = data.baskets
        counts = np.bincount(b.indices, minlength=b.shape[1])
        frequent = counts >= s.min_pair_baskets
        held = np.concatenate([[0], np.cumsum(frequent[b.indices], dtype=np.int64)])
        per_basket = held[b.indptr[1:]] - held[b.indptr[:-1]]  # frequent items in each basket
        return footprint.pair_rules_bytes(int((per_basket ** 2).sum()), int(b.nnz))

    def rules():
        from training.models.association import AssociationRules

        model = AssociationRules(min_support=s.min_pair_baskets / data.baskets.shape[0],
                                 min_confidence=s.min_confidence, rank_by="lift", max_len=2).fit(data)
        planted["association_rules"] = related_recall(model.related_items, item_index, shop.planted_pairs,
                                                      shop.bundles)
        return {"rules": int(len(model.rules)), "min_support": model.min_support}

    out["rules"] = runner.run("rules", rules_estimate, rules, needs=("matrices",))

    holder: dict[str, Any] = {}

    def knn():
        from training.models.sparse_blocks import BlockItemKNN, total_pair_work

        model = BlockItemKNN(k=s.knn_k, shrink=s.knn_shrink, max_block_pairs=s.max_block_pairs,
                             max_items_per_user=s.max_items_per_user, seed=s.seed).fit(data)
        holder["itemknn"] = model
        planted["itemknn"] = related_recall(model.related_items, item_index, shop.planted_pairs, shop.bundles)
        return {"neighbours": int(model.similarity.nnz), "k": s.knn_k,
                "pair_products": total_pair_work(data.user_items, s.max_items_per_user)}

    def knn_estimate() -> int:
        from training.models.sparse_blocks import total_pair_work

        block = min(s.max_block_pairs, total_pair_work(data.user_items, s.max_items_per_user))
        return footprint.block_knn_bytes(nnz, data.n_items, s.knn_k, block)

    nnz = int(data.user_items.nnz) if data is not None else 0
    out["itemknn"] = runner.run("itemknn", knn_estimate, knn, needs=("matrices",))
    # item-kNN's export: its top-k neighbours as the sparse item-item graph (gathered neighbours, never n x n)
    sparse_bytes = lambda: footprint.sparse_item_item_bytes(data.n_items, s.knn_k)  # noqa: E731
    scoring_bytes = lambda: footprint.factor_scoring_bytes(data.n_items, s.score_batch)  # noqa: E731
    export_stages(runner, out, "itemknn", holder, data, work_dir, s,
                  lambda: sparse_bytes() + footprint.factor_scoring_bytes(data.n_items, s.parity_users),
                  lambda: sparse_bytes() // 4 + scoring_bytes())
    size = DataSize(data.n_users, data.n_items, nnz) if data is not None else None

    def ials():
        import torch

        from training.models.mf import IALSMatrixFactorization

        torch.set_num_threads(s.threads)
        model = IALSMatrixFactorization(dim=s.ials_dim, max_epochs=s.ials_epochs, cg_steps=s.ials_cg_steps,
                                        seed=s.seed, accelerator="cpu").fit(data)
        holder["ials"] = model
        planted["mf_ials"] = related_recall(factor_related(model.item_factors), item_index, shop.planted_pairs,
                                            shop.bundles)
        return {"dim": s.ials_dim, "epochs": int(model.epochs_trained), "fit_seconds": round(model.fit_seconds, 1)}

    out["ials"] = runner.run("ials", lambda: footprint.ials_fit_bytes(size, s.ials_dim), ials, needs=("matrices",))
    factor_bytes = lambda: footprint.factor_export_bytes(data.n_users, data.n_items, s.ials_dim)  # noqa: E731
    # the session holds one copy of the factors, and one batch's scores
    export_stages(runner, out, "ials", holder, data, work_dir, s,
                  lambda: factor_bytes() + footprint.factor_scoring_bytes(data.n_items, s.parity_users),
                  lambda: factor_bytes() // 3 + scoring_bytes())
    return {
        "sizes": {"items": cfg.n_items, "customers": cfg.n_customers, "interactions": cfg.n_interactions},
        "status": "ok" if all(r.get("status") == "ok" for r in runner.stages.values()) else "incomplete",
        "wall_s": round(time.perf_counter() - t_start, 1),
        "peak_rss_gb": round(runner.peak_rss / GIB, 3),
        "memory_limit_gb": limit_gb,
        "memory_fraction": fraction,
        "stages": runner.stages,
        "planted_found": planted,
        **out,
        "settings": asdict(s),
        "shop_config": asdict(cfg),
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in os.getloadavg()],
        "machine": {"cpus": os.cpu_count(), "memory_total_gb": round(mem_start.total / GIB, 1),
                    "memory_available_at_start_gb": round(mem_start.available / GIB, 1)},
        "run_as": "plain library calls in one process (not the Dagster job)",
    }


def _stage_limit(text: str) -> tuple[str, float]:
    name, _, gb = text.partition("=")
    return name, float(gb)


def stage_table(result: dict) -> str:
    """The docs' table of a result file's stages (``python -m benchmarks.synthetic_scale --table FILE``)."""
    lines = ["| stage | status | wall s | CPU s | peak RSS of the tree (GiB) | added (GiB) | held after (GiB) | estimate "
             "| load (1-min, max) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["stages"].items():
        if r.get("status") in ("refused", "skipped"):
            lines.append(f"| {name} | {r['status']}: {r.get('reason', '')} | | | | | | {r.get('estimate', '')} | |")
            continue
        lines.append(f"| {name} | {r['status']} | {r['wall_s']} | {r['cpu_s']} | {r['peak_rss_gb']} "
                     f"| {r['peak_added_gb']} | {r.get('held_after_gb', '')} | {r['estimate']} | {r['load_max']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    if argv and argv[0] == "--table":
        print(stage_table(json.loads(Path(argv[1]).read_text())))
        return {}
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="--table FILE (alone): print a result file's stages as the docs' table")
    p.add_argument("--items", type=int, default=1_000_000)
    p.add_argument("--customers", type=int, default=5_000_000)
    p.add_argument("--interactions", type=int, default=50_000_000)
    p.add_argument("--planted-pairs", type=int, default=1000)
    p.add_argument("--bundles", type=int, default=200)
    p.add_argument("--rows-per-part", type=int, default=2_000_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--work", type=Path, default=ROOT / "data" / "synthetic_scale",
                   help="folder for the generated shop and the pipeline's files (removed with --clean)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "synthetic-1m-pipeline.json")
    p.add_argument("--memory-limit-gb", type=float, default=16.0, help="the most the process tree may hold")
    p.add_argument("--memory-fraction", type=float, default=0.75)
    p.add_argument("--stage-limit", type=_stage_limit, action="append", default=[], metavar="STAGE=GB",
                   help="the most one stage may add (to see a refusal), e.g. itemknn=0.5")
    p.add_argument("--ials-epochs", type=int, default=PipelineSettings.ials_epochs)
    p.add_argument("--ials-dim", type=int, default=PipelineSettings.ials_dim)
    p.add_argument("--score-users", type=int, default=PipelineSettings.score_users)
    p.add_argument("--clean", action="store_true", help="remove the work folder afterwards")
    p.add_argument("--note", default="", help="a line kept in the result (machine state, who else was running)")
    args = p.parse_args(argv)
    cfg = ScaledShopConfig(n_items=args.items, n_customers=args.customers, n_interactions=args.interactions,
                           n_planted_pairs=args.planted_pairs, n_bundles=args.bundles,
                           rows_per_part=args.rows_per_part, seed=args.seed)
    settings = PipelineSettings(ials_epochs=args.ials_epochs, ials_dim=args.ials_dim, score_users=args.score_users)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result = run_pipeline(cfg, args.work, settings, args.memory_limit_gb, args.memory_fraction,
                          dict(args.stage_limit), progress=args.out)
    result["command"] = "python -m benchmarks.synthetic_scale " + " ".join(argv or [])
    result["note"] = args.note
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    if args.clean:
        shutil.rmtree(args.work, ignore_errors=True)
    print(json.dumps({k: result[k] for k in ("status", "wall_s", "peak_rss_gb", "planted_found")}, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
