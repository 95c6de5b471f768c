"""Serving benchmarks: ONNX Runtime batch scoring against the GEMM floor, and text-encoder throughput.

    python -m serving.benchmark scoring --dataset gowalla     # all users x all items, top-20, 64-d factors
    python -m serving.benchmark text --dataset online_retail  # titles/s: torch eager, ORT fp32, ORT int8
    python -m serving.benchmark scoring --dataset gowalla --family chebycf --threads 2  # sparse top-N item-item

Figures are medians of ``--repeats`` runs measured in one process; JSON goes to
``benchmarks/results/serving-*.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from cobuy_files.storage import write_result_json

RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakMemory:
    """Peak resident memory above the level at entry, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval, self.peak, self._stop = interval, 0, threading.Event()

    def __enter__(self) -> "PeakMemory":
        self.base = rss_bytes()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes() - self.base)
            time.sleep(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes() - self.base)


def factor_model_for(dataset: str, dim: int, seed: int):
    """A 64-d factor model of the dataset's train split (truncated SVD: user = U S, item = V), and the
    train data. The scoring cost depends only on the shapes, not on how the factors were learned."""
    from sklearn.utils.extmath import randomized_svd

    from training.benchmark import load_dataset
    from training.models.base import FactorForm

    _, _, train, _ = load_dataset(dataset)
    u, s, vt = randomized_svd(train.user_items.astype(np.float32), n_components=dim, random_state=seed)
    return FactorForm((u * s).astype(np.float32), vt.T.astype(np.float32).copy()), train


class _FormModel:
    """Just enough of the model contract to export and check parity for a bare ``FactorForm``."""

    name = "svd_factors"

    def __init__(self, form) -> None:
        self.form, self.n_items = form, form.item_factors.shape[0]

    def serving_form(self):
        return self.form

    def score_users(self, users: np.ndarray) -> np.ndarray:
        return self.form.user_factors[users] @ self.form.item_factors.T


def bench_scoring(args: argparse.Namespace) -> dict:
    from serving.batch_scoring import score_users_to_parquet
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity, iter_top_k
    from training.benchmark import machine
    from training.ranking import mask_seen, top_k

    form, train = factor_model_for(args.dataset, args.dim, args.seed)
    x = train.user_items
    n_users, n_items = x.shape
    model = _FormModel(form)
    with tempfile.TemporaryDirectory() as tmp:
        info = export_recommender(model, Path(tmp) / "factors.onnx", k=args.k, user_ids=train.user_ids,
                                  item_ids=train.item_ids)
        onnx_model = OnnxRecommender(Path(tmp) / "factors.onnx", provider=args.provider, threads=args.threads)
        parity = check_parity(model, onnx_model, x, n_users=2000)
        runs: dict[int, list[float]] = {}
        cpu: dict[int, list[float]] = {}
        peaks: dict[int, int] = {}
        for chunk in args.chunk_sizes:
            runs[chunk], cpu[chunk] = [], []
            for _ in range(args.repeats):
                with PeakMemory() as mem:
                    t0, c0 = time.perf_counter(), time.process_time()
                    rows = sum(len(u) for u, _, _ in iter_top_k(onnx_model, x, chunk_size=chunk, progress=False))
                    runs[chunk].append(time.perf_counter() - t0)
                    cpu[chunk].append(time.process_time() - c0)
                peaks[chunk] = max(peaks.get(chunk, 0), mem.peak)
                assert rows == n_users
        # the whole user_recommendations path: ids aligned, top-k streamed to Parquet
        best_chunk = min(runs, key=lambda c: np.median(runs[c]))
        to_parquet = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            facts, _ = score_users_to_parquet(onnx_model, train, Path(tmp) / "recs.parquet", chunk_size=best_chunk,
                                              progress=False)
            to_parquet.append(time.perf_counter() - t0)
        parquet_mb = (Path(tmp) / "recs.parquet").stat().st_size / 2**20
    # the floor: the GEMM alone in numpy, same shapes, chunked the same way
    gemm = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for start in range(0, n_users, best_chunk):
            form.user_factors[start:start + best_chunk] @ form.item_factors.T
        gemm.append(time.perf_counter() - t0)
    native = []
    for _ in range(args.native_repeats):  # numpy's full sort path is slow: kept short on a shared machine
        t0 = time.perf_counter()
        for start in range(0, n_users, best_chunk):
            users = np.arange(start, min(start + best_chunk, n_users))
            top_k(mask_seen(model.score_users(users), x[users]), args.k)
        native.append(time.perf_counter() - t0)
    flops = 2.0 * n_users * n_items * args.dim
    median = float(np.median(runs[best_chunk]))
    return {
        "benchmark": "batch_scoring", "dataset": args.dataset, "n_users": n_users, "n_items": n_items,
        "dim": args.dim, "k": args.k, "provider": onnx_model.active_provider, "threads": args.threads,
        "chunk_size": best_chunk, "seconds_median": median, "seconds_runs": runs[best_chunk],
        "seconds_by_chunk_size": {str(c): float(np.median(v)) for c, v in runs.items()},
        "cpu_seconds_median": float(np.median(cpu[best_chunk])),  # both cores busy: about 2x the wall time
        "cpu_seconds_by_chunk_size": {str(c): float(np.median(v)) for c, v in cpu.items()},
        "user_recommendations_to_parquet_seconds_median": float(np.median(to_parquet)),
        "user_recommendations_rows": facts["rows"], "user_recommendations_parquet_mb": parquet_mb,
        "peak_memory_mb_beyond_model": peaks[best_chunk] / 2**20,
        "peak_memory_mb_by_chunk_size": {str(c): p / 2**20 for c, p in peaks.items()},
        "model_mb": (form.user_factors.nbytes + form.item_factors.nbytes) / 2**20,
        "gemm_flop": flops, "gemm_floor_seconds_at_200_gflops": flops / 200e9,
        "numpy_gemm_seconds_median": float(np.median(gemm)),
        "ratio_to_200_gflops_floor": median / (flops / 200e9),
        "ratio_to_measured_numpy_gemm": median / float(np.median(gemm)),
        "numpy_score_mask_topk_seconds_median": float(np.median(native)), "numpy_score_mask_topk_runs": len(native),
        "parity": parity.as_dict(), "export": info.__dict__, "target_seconds": 3.0,
        "machine": machine(),
    }


def bench_text(args: argparse.Namespace) -> dict:
    from serving.text_onnx import text_benchmark

    return text_benchmark(args)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["scoring", "text"])
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--chunk-sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    ap.add_argument("--native-repeats", type=int, default=1)
    ap.add_argument("--provider", default="auto")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--encoder", default=None, help="fine-tuned encoder folder (text benchmark)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--tag", default="")
    ap.add_argument("--family", default=None, help="scoring: a sparse top-N item-item family (serving.sparse_scoring)")
    ap.add_argument("--top-n", type=int, default=None, help="--family: neighbours kept per item (default: chosen)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="--family: concurrent session calls")
    ap.add_argument("--work", default=str(RESULTS.parent.parent / "data" / "sparse"))
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    if args.what == "scoring" and args.family:
        from serving.sparse_scoring import bench_sparse_scoring

        args.tag = args.tag or args.family
        result = bench_sparse_scoring(args)
    else:
        result = bench_scoring(args) if args.what == "scoring" else bench_text(args)
    # other engineers share this machine's 2 cores: the load says how far to trust the timings
    result["load_average_1_5_15_min"] = {"before": list(load_before), "after": list(os.getloadavg())}
    name = f"serving-{args.what}-{args.dataset}{'-' + args.tag if args.tag else ''}.json"
    write_result_json(result, RESULTS / name)
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}, indent=2, default=float))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
