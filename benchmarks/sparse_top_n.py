"""What the sparse top-N form costs in accuracy, per family and N, against the dense item-item matrix.

    python -m benchmarks.sparse_top_n --dataset gowalla --families chebycf gf_cf --top-n 50 100 200 500 1000
    python -m benchmarks.sparse_top_n --dataset gowalla --families ease        # one dense family at a time
    python -m benchmarks.sparse_top_n --plot-only                              # redraw the PNG from the JSON
    # ChebyCF: W's rows in two worker processes, then merged; dense figures from gowalla-chebycf.json
    python -m benchmarks.sparse_top_n --families chebycf --top-n 1000 --rows 0:20490 &
    python -m benchmarks.sparse_top_n --families chebycf --top-n 1000 --rows 20490:40981; wait
    python -m benchmarks.sparse_top_n --families chebycf --merge --dense json

Each family is fitted with its benchmark defaults (``benchmarks.run.MODEL_PARAMS``), then W's rows are built
in blocks (``training.models.sparse.top_n_matrix``): each block's top max(N) entries are kept, and with
``--dense matrix`` (default) the block is also copied into one dense (n_items, n_items) float32 W, the reference
(6.7 GB on Gowalla: run one family per process where memory is short). Dense and every N are evaluated on the same
test users (Recall / NDCG @20, seen items excluded). Results merge into ``<dataset>-sparse-top-n.json`` (one entry
per family; ``choice``: the smallest N within 1% relative of dense on both metrics for every family measured) and
the curve into ``<dataset>-sparse-top-n.png``. The top-max(N) matrix is kept under ``--work`` (``data/sparse``)
for the serving benchmark (``benchmarks.sparse_scoring``).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from cobuy_files.storage import write_result_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "data" / "sparse"
TOLERANCE = 0.01  # within 1% relative of dense on Recall@20 and NDCG@20
METRICS = ("recall@20", "ndcg@20")


def peak_rss_gb() -> float:
    """This process's peak resident memory so far (ru_maxrss, KiB on Linux) in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def truncate_rows(matrix: sp.csr_matrix, n: int) -> sp.csr_matrix:
    """Each row's ``n`` largest entries of a CSR matrix whose rows are already top-N (N >= n) cuts (ties towards
    the lower column, as when the rows were cut), columns sorted. (n_items, n_items) -> (n_items, n_items)."""
    m = matrix.tocsr()
    m.sort_indices()
    counts = np.diff(m.indptr)
    rows = np.repeat(np.arange(m.shape[0]), counts)
    # order within each row: value descending, then column ascending (stable on sorted columns)
    order = np.lexsort((m.indices, -m.data, rows))
    rank = np.arange(m.nnz) - np.repeat(m.indptr[:-1], counts)
    keep = order[rank < n]
    out = sp.csr_matrix((m.data[keep], (rows[keep], m.indices[keep])), shape=m.shape)
    out.sort_indices()
    return out


def evaluate(score_fn, train: sp.csr_matrix, test: sp.csr_matrix) -> dict:
    from training.metrics import evaluate_scores

    res = evaluate_scores(score_fn, train, test, ks=(20,), chunk_size=2048)
    return {k: float(res[k]) for k in (*METRICS, "scoring_seconds")}


def build_part(dataset: str, family: str, n_max: int, chunk_size: int, work: Path, rows: tuple[int, int]) -> None:
    """Fit the family and build only W's rows ``rows`` (start, stop) into ``work`` (a worker of ``--rows``)."""
    from benchmarks.common import default_params
    from benchmarks.data import load_dataset
    from training.models import MODELS
    from training.models.sparse import top_n_matrix

    _, _, train, _ = load_dataset(dataset)
    t0 = time.perf_counter()
    model = MODELS[family](**default_params(dataset, family)).fit(train)
    fit_s, t0 = time.perf_counter() - t0, time.perf_counter()
    top = top_n_matrix(model.score_history, model.n_items, n_max, chunk_size, rows=rows)
    work.mkdir(parents=True, exist_ok=True)
    sp.save_npz(work / f"{dataset}-{family}-top{n_max}-rows{rows[0]}-{rows[1]}.npz", top)
    (work / f"{dataset}-{family}-top{n_max}-rows{rows[0]}-{rows[1]}.json").write_text(json.dumps(
        {"fit_seconds": fit_s, "build_seconds": time.perf_counter() - t0, "peak_rss_gb": peak_rss_gb(),
         "rows": list(rows)}))


def merged_parts(dataset: str, family: str, n_max: int, work: Path, n_items: int) -> tuple[sp.csr_matrix, dict]:
    """The top-N matrix summed from the ``--rows`` workers' files (their rows are disjoint) and their timings."""
    parts = sorted(work.glob(f"{dataset}-{family}-top{n_max}-rows*.npz"))
    facts = [json.loads(p.with_suffix(".json").read_text()) for p in parts]
    covered = sorted(tuple(f["rows"]) for f in facts)
    if not parts or covered[0][0] != 0 or covered[-1][1] != n_items or any(
            a[1] != b[0] for a, b in zip(covered, covered[1:])):
        raise SystemExit(f"--merge: the row ranges {covered} do not cover 0..{n_items}; run the missing --rows")
    total = sp.load_npz(parts[0]).tocsr()
    for p in parts[1:]:
        total = total + sp.load_npz(p).tocsr()
    total.sort_indices()
    return total, {"fit_seconds": max(f["fit_seconds"] for f in facts),
                   "build_seconds_per_worker": [f["build_seconds"] for f in facts],
                   "peak_rss_gb_per_worker": [f["peak_rss_gb"] for f in facts], "workers": len(parts)}


def dense_from_json(dataset: str, family: str) -> dict:
    """The dense model's Recall/NDCG@20 as measured by ``benchmarks.run`` (its ``<dataset>-<family>.json``)."""
    r = json.loads((RESULTS / f"{dataset}-{family}.json").read_text())
    return {"recall@20": r["metrics"]["recall@20"], "ndcg@20": r["metrics"]["ndcg@20"],
            "scoring_seconds": r.get("scoring_seconds_median"), "source": f"benchmarks/results/{dataset}-{family}.json"}


def run_family(dataset: str, family: str, top_ns: list[int], dense: str, chunk_size: int, work: Path,
               merge: bool = False) -> dict:
    from benchmarks.common import default_params
    from benchmarks.data import load_dataset
    from training.models import MODELS
    from training.models.sparse import SparseItemItem, top_n_matrix

    _, _, train, test = load_dataset(dataset)
    x = train.user_items.tocsr()
    params = default_params(dataset, family)
    n = x.shape[1]
    w = np.empty((n, n), np.float32) if dense == "matrix" else None
    extra: dict = {}
    if merge:
        top, extra = merged_parts(dataset, family, max(top_ns), work, n)
        fit_s, build_s = extra["fit_seconds"], max(extra["build_seconds_per_worker"])
    else:
        t0 = time.perf_counter()
        model = MODELS[family](**params).fit(train)
        fit_s = time.perf_counter() - t0

        def keep_block(start: int, block: np.ndarray) -> None:
            w[start:start + block.shape[0]] = block

        score_rows = (lambda eye: eye @ model.weights) if family == "ease" else model.score_history
        t0 = time.perf_counter()
        top = top_n_matrix(score_rows, n, max(top_ns), chunk_size, on_block=keep_block if w is not None else None)
        build_s = time.perf_counter() - t0
        del model
    work.mkdir(parents=True, exist_ok=True)
    sp.save_npz(work / f"{dataset}-{family}-top{max(top_ns)}.npz", top)
    result = {"family": family, "params": params, "n_items": n, "fit_seconds": fit_s,
              "top_n_build_seconds": build_s, "chunk_size": chunk_size, **extra,
              "dense_matrix_gb": n * n * 4 / 2**30, "sparse": {}}
    if w is not None:
        result["dense"] = evaluate(lambda users: np.asarray(x[users] @ w, np.float32), x, test)
        del w
    elif dense == "json":
        result["dense"] = dense_from_json(dataset, family)
    for k in sorted(top_ns):
        cut = SparseItemItem(truncate_rows(top, k), x, family, k)
        row = evaluate(lambda users: cut.score_history(x[users]), x, test)
        row.update(nnz=int(cut.matrix.nnz), model_mb=(cut.matrix.nnz * 12) / 2**20)
        if "dense" in result:
            for m in METRICS:
                row[f"{m}_relative_to_dense"] = row[m] / result["dense"][m]
        result["sparse"][str(k)] = row
        print(family, k, {m: round(row[m], 5) for m in METRICS}, flush=True)
    result["peak_rss_gb"] = peak_rss_gb()
    return result


def choose(families: dict) -> dict:
    """The smallest N at which every family's Recall@20 and NDCG@20 are within ``TOLERANCE`` of dense."""
    per_family = {}
    for fam, r in families.items():
        if "dense" not in r:
            continue
        ok = [int(k) for k, row in r["sparse"].items()
              if all(row[f"{m}_relative_to_dense"] >= 1 - TOLERANCE for m in METRICS)]
        per_family[fam] = min(ok) if ok else None
    found = [v for v in per_family.values() if v is not None]
    overall = max(found) if found and len(found) == len(per_family) else None
    return {"rule": f"smallest N with Recall@20 and NDCG@20 >= {1 - TOLERANCE:.0%} of dense", "per_family": per_family,
            "default_top_n": overall}


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, METRICS):
        for fam, r in sorted(result["families"].items()):
            ks = sorted(int(k) for k in r["sparse"])
            line, = ax.plot(ks, [r["sparse"][str(k)][metric] for k in ks], marker="o", label=f"{fam} top-N")
            if "dense" in r:
                ax.axhline(r["dense"][metric], color=line.get_color(), ls="--", lw=1, label=f"{fam} dense")
                ax.axhline(r["dense"][metric] * (1 - TOLERANCE), color=line.get_color(), ls=":", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("neighbours kept per item (N)")
        ax.set_ylabel(metric)
        ax.set_title(f"{result['dataset']}: {metric}, top-N vs dense (dotted: -1%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    from benchmarks.common import machine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--families", nargs="+", default=["chebycf", "gf_cf", "ease"])
    ap.add_argument("--top-n", type=int, nargs="+", default=[50, 100, 200, 500, 1000])
    ap.add_argument("--dense", choices=["matrix", "json", "none"], default="matrix",
                    help="the reference: W held densely and evaluated, or the family's benchmark JSON, or none")
    ap.add_argument("--rows", default=None, help="START:STOP: a worker building only those rows of W (no evaluation)")
    ap.add_argument("--merge", action="store_true", help="sum the --rows workers' files, then evaluate every N")
    ap.add_argument("--chunk-size", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, default=WORK)
    ap.add_argument("--plot-only", action="store_true")
    args = ap.parse_args(argv)
    path = args.out / f"{args.dataset}-sparse-top-n.json"
    result = json.loads(path.read_text()) if path.exists() else {"dataset": args.dataset, "families": {}}
    if args.rows:
        start, stop = (int(v) for v in args.rows.split(":"))
        for family in args.families:
            build_part(args.dataset, family, max(args.top_n), args.chunk_size, args.work, (start, stop))
        return
    if not args.plot_only:
        for family in args.families:
            load = os.getloadavg()
            r = run_family(args.dataset, family, args.top_n, args.dense, args.chunk_size, args.work, args.merge)
            r.update(load_average_1_5_15_min={"before": list(load), "after": list(os.getloadavg())},
                     machine=machine())
            result["families"][family] = r
            result["choice"] = choose(result["families"])
            write_result_json(result, path)
    plot(result, args.out / f"{args.dataset}-sparse-top-n.png")
    print(json.dumps(result.get("choice"), indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
