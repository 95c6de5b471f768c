"""Peak memory of streaming batch scoring (ONNX Runtime, users in chunks, top-k to Parquet).

    python -m benchmarks.serving_memory --case gowalla     # 29,858 users x 40,981 items, 64-d factors
    python -m benchmarks.serving_memory --case synthetic   # 1,000,000 users x 100,000 items, 64-d factors

The model is a 64-d factor model (for Gowalla the truncated SVD of its train split; for the synthetic
shop random factors and ~10 random seen items per user): memory depends on the shapes only. Resident
memory (RSS) is recorded after each stage, and ``PeakMemory`` (benchmarks/serving.py) samples the peak
*above* the level at which scoring starts, i.e. beyond the model (numpy factors, ONNX Runtime's copy of
them) and the users' histories, which are in memory before scoring begins. Each (users, chunk size)
configuration runs in a fresh forked process, so no run inherits another's arena. Streaming keeps that peak at
one chunk's (chunk_size, n_items) score block and its top-k, whatever the number of users: the synthetic
case scores ``--users`` users (a prefix; the full million takes ~13 TFLOP) at two counts to show that
the peak does not grow with them. JSON: ``benchmarks/results/serving-memory-<case>.json``.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from benchmarks.common import RESULTS, PeakMemory, rss_bytes
from cobuy_files.storage import write_result_json

MB = 2**20


def synthetic_factors(n_users: int, n_items: int, dim: int, seen_per_user: int, seed: int):
    """(FactorForm with (n_users, dim) and (n_items, dim) float32 factors, (n_users, n_items) CSR history
    with Poisson(``seen_per_user``) distinct-ish random items per user)."""
    from training.models.base import FactorForm

    rng = np.random.default_rng(seed)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    counts = rng.poisson(seen_per_user, n_users).astype(np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = rng.integers(0, n_items, int(indptr[-1]), dtype=np.int32)
    history = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(n_users, n_items))
    history.sum_duplicates()
    return FactorForm(users, items), history


class _Factors:
    """The model contract's export side for a bare FactorForm."""

    name = "factors"

    def __init__(self, form) -> None:
        self.form = form

    def serving_form(self):
        return self.form


def _score_run(path: Path, rows: sp.csr_matrix, user_ids: np.ndarray, item_ids: np.ndarray, chunk: int,
               threads: int | None, out_path: Path, queue) -> None:
    """In a child process: open the session, stream the users' top-k to Parquet, report the peaks."""
    from serving.onnx_scoring import OnnxRecommender, write_user_recommendations

    try:
        start = rss_bytes()
        with PeakMemory(interval=0.02) as load_mem:
            model = OnnxRecommender(path, provider="cpu", threads=threads)
        base = rss_bytes()
        t0 = time.perf_counter()
        with PeakMemory(interval=0.01) as mem:
            facts = write_user_recommendations(model, rows, user_ids, item_ids, out_path, chunk_size=chunk,
                                               progress=False)
        seconds = time.perf_counter() - t0
        queue.put({"users_scored": rows.shape[0], "chunk_size": chunk, "rows_written": facts["rows"],
                   "seconds": seconds, "users_per_second": rows.shape[0] / seconds,
                   "peak_mb_beyond_model": mem.peak / MB, "session_load_mb": load_mem.peak / MB,
                   "rss_at_process_start_mb": start / MB, "rss_at_scoring_start_mb": base / MB,
                   "process_max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "parquet_mb": out_path.stat().st_size / MB})
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises
        queue.put({"error": repr(exc)})


def measure(case: str, form, history: sp.csr_matrix, user_counts: list[int], chunk_sizes: list[int], k: int,
            threads: int | None) -> dict:
    from serving.onnx_export import export_recommender

    n_users, n_items = history.shape
    stages = {"data_and_factors_mb": rss_bytes() / MB}
    out: dict = {"runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "factors.onnx"
        user_ids = np.char.add("u", np.arange(n_users).astype(str))
        item_ids = np.char.add("i", np.arange(n_items).astype(str))
        t0 = time.perf_counter()
        with PeakMemory(interval=0.02) as export_mem:
            info = export_recommender(_Factors(form), path, k=k, user_ids=user_ids, item_ids=item_ids)
        out["export_seconds"] = time.perf_counter() - t0
        out["export_peak_mb_above_entry"] = export_mem.peak / MB
        stages["after_export_mb"] = rss_bytes() / MB
        ctx = multiprocessing.get_context("fork")
        for n in user_counts:
            for chunk in chunk_sizes:
                # a fresh process per configuration: ONNX Runtime's arena and the allocator keep what an
                # earlier run freed, which would hide (or inflate) the next run's peak
                queue = ctx.Queue()
                proc = ctx.Process(target=_score_run, args=(path, history[:n], user_ids[:n], item_ids, chunk,
                                                            threads, Path(tmp) / f"recs-{n}-{chunk}.parquet", queue))
                proc.start()
                run = queue.get(timeout=7200)
                proc.join()
                if proc.exitcode != 0 or "error" in run:
                    raise RuntimeError(f"scoring {n} users in chunks of {chunk} failed: {run.get('error')}")
                run["score_block_mb"] = chunk * n_items * 4 / MB
                out["runs"].append(run)
                print(json.dumps(run), flush=True)
    model_mb = (form.user_factors.nbytes + form.item_factors.nbytes) / MB
    worst = max(r["peak_mb_beyond_model"] for r in out["runs"])
    out.update({
        "benchmark": "batch_scoring_memory", "case": case, "n_users": n_users, "n_items": n_items,
        "dim": int(form.user_factors.shape[1]), "k": k, "history_nnz": int(history.nnz),
        "history_mb": (history.data.nbytes + history.indices.nbytes + history.indptr.nbytes) / MB,
        "model_factors_mb": model_mb, "export": info.__dict__, "rss_by_stage_mb": stages,
        "session_load_mb": max(r["session_load_mb"] for r in out["runs"]),
        "worst_peak_mb_beyond_model": worst, "limit_mb_beyond_model": 4096, "within_limit": worst < 4096,
    })
    return out


def main(argv: list[str] | None = None) -> dict:
    from benchmarks.common import machine

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=["gowalla", "synthetic"], required=True)
    ap.add_argument("--users", type=int, nargs="+", default=None,
                    help="users scored (synthetic: prefixes of the 1M; default 20000 60000; gowalla: all)")
    ap.add_argument("--chunk-sizes", type=int, nargs="+", default=[512, 2048])
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.case == "gowalla":
        from benchmarks.common import factor_model_for

        form, train = factor_model_for("gowalla", args.dim, args.seed)
        history = train.user_items.tocsr()
        users = args.users or [history.shape[0]]
    else:
        form, history = synthetic_factors(1_000_000, 100_000, args.dim, 10, args.seed)
        users = args.users or [20_000, 60_000]
    result = measure(args.case, form, history, users, args.chunk_sizes, args.k, args.threads)
    result["machine"] = machine()
    result["note"] = ("peak_mb_beyond_model: RSS sampled above the level at the start of scoring, when the "
                      "factors, ONNX Runtime's session and the histories are already resident")
    path = RESULTS / f"serving-memory-{args.case}.json"
    write_result_json(result, path, indent=1)
    print(f"{args.case}: worst peak beyond the model {result['worst_peak_mb_beyond_model']:.0f} MB "
          f"(limit 4096 MB); model factors {result['model_factors_mb']:.0f} MB; "
          f"ORT session +{result['session_load_mb']:.0f} MB; load {os.getloadavg()[0]:.1f} -> {path}")
    return result


if __name__ == "__main__":
    main()
