"""Scoring every user with a sparse top-N item-item export through ONNX Runtime: time, memory and accuracy.

    python -m benchmarks.serving scoring --dataset gowalla --family chebycf --threads 2   # -> serving-scoring-gowalla-chebycf.json

The family's top-N matrix comes from ``benchmarks.sparse_top_n`` (kept under ``data/sparse``), or is built here
(fit, then W's rows in blocks) when absent. It is exported as an ``item_item_sparse`` ONNX graph (neighbour ids
and weights gathered per history item, ScatterElements-add into the batch's scores, TopK), checked for parity
against the native sparse model, then every user's top-k is computed ``--repeats`` times; the median wall time,
the peak resident memory and Recall / NDCG @k of ONNX Runtime's own top-k lists are recorded next to the dense
model's figures (``benchmarks/results/<dataset>-<family>.json`` and the dense column of
``<dataset>-sparse-top-n.json``).

``sparse_initializer_probe`` measures the alternative form, W as an ONNX sparse initializer multiplied by the
dense history: ONNX Runtime turns a sparse initializer into a dense tensor when the session loads, so the
session holds n_items^2 floats (measured on a slice of the catalogue; docs/scaling.md).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import scipy.sparse as sp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "data" / "sparse"


def ranked_metrics(top_items: np.ndarray, users: np.ndarray, test: sp.csr_matrix, k: int) -> dict[str, float]:
    """Recall@k and NDCG@k (as ``training.metrics.evaluate_scores``) of ranked lists ``top_items`` (n, >= k)
    for user positions ``users`` (n,), averaged over the users with test items."""
    test = test.tocsr()
    n_test = np.diff(test.indptr)[users]
    has = n_test > 0
    rows = test[users].tocoo()
    n_items = np.int64(test.shape[1])
    truth = np.sort(rows.row.astype(np.int64) * n_items + rows.col)  # (row, item) pairs as one key
    listed = np.arange(len(users), dtype=np.int64)[:, None] * n_items + top_items[:, :k]
    hits = np.isin(listed, truth) & (top_items[:, :k] >= 0)
    disc = 1.0 / np.log2(np.arange(2, k + 2))
    ideal = np.concatenate([[0.0], np.cumsum(disc)])
    recall = hits.sum(axis=1)[has] / n_test[has]
    ndcg = (hits * disc).sum(axis=1)[has] / ideal[np.minimum(n_test[has], k)]
    return {f"recall@{k}": float(recall.mean()), f"ndcg@{k}": float(ndcg.mean()), "n_test_users": int(has.sum())}


def load_top_n(dataset: str, family: str, n: int, train, work: Path) -> tuple[sp.csr_matrix, str]:
    """The family's top-``n`` matrix: cut from a kept top-N (N >= n) file under ``work``, else built now."""
    from benchmarks.sparse_top_n import truncate_rows

    kept = sorted(((int(p.stem.rsplit("top", 1)[1]), p) for p in work.glob(f"{dataset}-{family}-top*.npz")
                   if p.stem.rsplit("top", 1)[1].isdigit()), key=lambda t: t[0])
    for size, path in kept:
        if size >= n:
            return truncate_rows(sp.load_npz(path), n), str(path.relative_to(ROOT) if path.is_relative_to(ROOT)
                                                           else path)
    from benchmarks.common import default_params
    from training.models import MODELS
    from training.models.sparse import family_top_n

    model = MODELS[family](**default_params(dataset, family)).fit(train)
    return family_top_n(model, n), "built in this run"


def score_all(onnx_model, x: sp.csr_matrix, chunk_size: int, workers: int) -> np.ndarray:
    """(n_users, k) top items of every user, batches of ``chunk_size`` run on ``workers`` threads (each session
    call releases the GIL)."""
    starts = list(range(0, x.shape[0], chunk_size))

    def one(start: int) -> np.ndarray:
        users = np.arange(start, min(start + chunk_size, x.shape[0]))
        return onnx_model.top_k(users, x[users])[0]

    if workers <= 1:
        return np.concatenate([one(s) for s in starts])
    with ThreadPoolExecutor(workers) as pool:
        return np.concatenate(list(pool.map(one, starts)))


def dense_figures(dataset: str, family: str) -> dict:
    """The dense model's measured figures: the benchmark JSON (scoring through the native model) and the dense
    column of the top-N sweep, where present."""
    out: dict = {}
    path = RESULTS / f"{dataset}-{family}.json"
    if path.exists():
        r = json.loads(path.read_text())
        out.update({"recall@20": r["metrics"]["recall@20"], "ndcg@20": r["metrics"]["ndcg@20"],
                    "scoring_seconds_native": r.get("scoring_seconds_median"), "source": str(path.relative_to(ROOT))})
    sweep = RESULTS / f"{dataset}-sparse-top-n.json"
    if sweep.exists():
        fam = json.loads(sweep.read_text())["families"].get(family, {})
        if "dense" in fam:
            out["sweep_dense"] = {k: fam["dense"][k] for k in ("recall@20", "ndcg@20")}
            out["matrix_gb"] = fam["dense_matrix_gb"]
    return out


def default_top_n(dataset: str) -> int:
    from training.models.sparse import DEFAULT_TOP_N

    sweep = RESULTS / f"{dataset}-sparse-top-n.json"
    if sweep.exists():
        chosen = json.loads(sweep.read_text()).get("choice", {}).get("default_top_n")
        if chosen:
            return int(chosen)
    return DEFAULT_TOP_N


def bench_sparse_scoring(args: argparse.Namespace) -> dict:
    from benchmarks.common import PeakMemory, rss_bytes
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity
    from benchmarks.common import machine
    from benchmarks.data import load_dataset
    from training.models.sparse import SparseItemItem

    _, _, train, test = load_dataset(args.dataset)
    x = train.user_items.tocsr()
    n = args.top_n or default_top_n(args.dataset)
    matrix, source = load_top_n(args.dataset, args.family, n, train, Path(args.work))
    native = SparseItemItem(matrix, x, args.family, n)
    runs, peaks = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = export_recommender(native, Path(tmp) / "m.onnx", k=args.k)
        export_s = time.perf_counter() - t0
        file_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20
        threads = args.threads or 2
        configs = [(c, w) for c in args.chunk_sizes for w in args.workers]
        for chunk, workers in configs:
            onnx_model = OnnxRecommender(Path(tmp) / "m.onnx", provider=args.provider,
                                         threads=max(1, threads // workers))
            times, peak, top = [], 0, None
            for _ in range(args.repeats):
                with PeakMemory() as mem:
                    t0 = time.perf_counter()
                    top = score_all(onnx_model, x, chunk, workers)
                    times.append(time.perf_counter() - t0)
                peak = max(peak, mem.base + mem.peak)
            runs[(chunk, workers)], peaks[(chunk, workers)] = times, peak
            print(chunk, workers, [round(t, 2) for t in times], flush=True)
        best = min(runs, key=lambda c: np.median(runs[c]))
        onnx_model = OnnxRecommender(Path(tmp) / "m.onnx", provider=args.provider, threads=threads // best[1])
        top = score_all(onnx_model, x, best[0], best[1])
        parity = check_parity(native, onnx_model, x, n_users=2000)
    accuracy = ranked_metrics(top, np.arange(x.shape[0]), test, args.k)
    dense = dense_figures(args.dataset, args.family)
    wall = float(np.median(runs[best]))
    return {
        "benchmark": "sparse_item_item_scoring", "dataset": args.dataset, "family": args.family,
        "n_users": int(x.shape[0]), "n_items": int(x.shape[1]), "k": args.k, "n_neighbours": int(n),
        "wall_s": wall, "wall_s_runs": runs[best], "recall@20": accuracy.get("recall@20"),
        "ndcg@20": accuracy.get("ndcg@20"), "n_test_users": accuracy["n_test_users"],
        "peak_rss_gb": peaks[best] / 2**30, "rss_gb_before_scoring": rss_bytes() / 2**30,
        "threads": threads, "chunk_size": best[0], "session_workers": best[1],
        "wall_s_by_chunk_and_workers": {f"{c}x{w}": float(np.median(t)) for (c, w), t in runs.items()},
        "target_wall_s": 15.0,
        "relative_to_dense": ({m: accuracy[m] / dense[m] for m in ("recall@20", "ndcg@20")}
                              if "recall@20" in dense else None),
        "dense": dense, "model_mb": matrix.nnz * 12 / 2**20, "onnx_file_mb": file_mb, "export_seconds": export_s,
        "top_n_source": source, "provider": onnx_model.active_provider, "parity": parity.as_dict(),
        "export": info.__dict__, "onnx_form_probe": probe_forms(), "machine": machine(),
    }


def probe_forms(n_items: int = 8000, n: int = 200) -> list[dict]:
    """:func:`sparse_initializer_probe` for both forms, each in a fresh Python process."""
    import subprocess
    import sys

    out = []
    for form in ("sparse_initializer", "gathered_neighbours"):
        code = (f"import json; from benchmarks.sparse_scoring import sparse_initializer_probe; "
                f"print(json.dumps(sparse_initializer_probe({form!r}, {n_items}, {n})))")
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
        out.append(json.loads(run.stdout.strip().splitlines()[-1]) if run.returncode == 0 else
                   {"form": form, "error": run.stderr[-500:]})
    return out


def sparse_initializer_probe(form: str, n_items: int = 8000, n: int = 200, seed: int = 0) -> dict:
    """Session memory of one ONNX form of a random top-``n`` (n_items, n_items) matrix: ``sparse_initializer`` (an
    ONNX sparse initializer, MatMul with the dense history) or ``gathered_neighbours`` (the (n_items, n) neighbour
    form). Run each form in a fresh process: memory freed by one session is reused by the next."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from benchmarks.common import rss_bytes
    from serving.onnx_export import _model, sparse_item_item_graph
    from serving.onnx_scoring import open_session
    from training.models.sparse import sparse_form

    rng = np.random.default_rng(seed)
    cols = rng.integers(0, n_items, (n_items, n))
    m = sp.csr_matrix((rng.random(n_items * n).astype(np.float32), (np.repeat(np.arange(n_items), n), cols.ravel())),
                      shape=(n_items, n_items))
    m.sum_duplicates()
    coo = m.tocoo()
    values = numpy_helper.from_array(coo.data.astype(np.float32), "weights")
    index = numpy_helper.from_array(np.stack([coo.row, coo.col], 1).astype(np.int64), "weights_index")
    sparse_init = helper.make_sparse_tensor(values, index, [n_items, n_items])
    graph = helper.make_graph([helper.make_node("MatMul", ["history", "weights"], ["scores"])], "probe",
                              [helper.make_tensor_value_info("history", TensorProto.FLOAT, ["batch", n_items])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", n_items])],
                              sparse_initializer=[sparse_init])
    out = {"form": form, "n_items": n_items, "top_n": n, "nnz": int(m.nnz),
           "dense_matrix_mb": n_items * n_items * 4 / 2**20}
    proto = _model(graph) if form == "sparse_initializer" else sparse_item_item_graph(sparse_form(m, n), 20, "probe")
    del m, coo, graph
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{form}.onnx"
        onnx.save_model(proto, str(path))
        del proto
        before = rss_bytes()
        session = open_session(path, "cpu", 1)
        out["session_mb"] = (rss_bytes() - before) / 2**20
        out["file_mb"] = path.stat().st_size / 2**20
        del session
    return out
