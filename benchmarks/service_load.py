"""Load benchmark of the live service: locust on loopback against a dataset-sized champion.

``python -m benchmarks.service_load --dataset gowalla`` (or ``online_retail``) builds the champion bundle of the
dataset (Gowalla: a 64-d factor model of its 29,858 x 40,981 train split by truncated SVD, what the family's
ONNX export holds whatever trained it; Online Retail: item-kNN, an item-item ONNX export), registers it as
``cobuy-serving@champion`` in an MLflow under ``--work``, starts ``python -m serving.service`` on it, and runs
locust headless at a constant offered rate against ``/items/{id}/related`` (items drawn by popularity) and
``/baskets/complete`` (5-item carts from real baskets), ``--repeats`` runs of ``--seconds`` each per endpoint.
Writes ``benchmarks/results/service-load-<dataset>.json``: per endpoint the medians over runs of ``rps``,
``p50_ms``, ``p95_ms``, ``p99_ms`` (locust, client side), ``errors`` (all runs), ``cpu_percent`` (the server
process), and where the time goes (the server's own mean latency and its scoring and evidence stages, from
``/metrics``), with the load average before and after.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGET = {"rps": 500, "p99_ms": 20.0}
ENDPOINTS = {"related": "/items/{item_id}/related", "baskets": "/baskets/complete"}


def online_retail_hybrid(p) -> object:
    """Online Retail's hybrid as benchmarked (benchmarks/results/online_retail-hybrid.json: EASE, broad association
    rules, the packaged text encoder's embeddings, recency and trend; its tuned weights), fitted on train."""
    from benchmarks.common import default_params
    from training.hybrid_tuning import fit_hybrid
    from training.models import MODELS, AssociationRules
    from training.text_encoder import TextEncoder, TextEncoderConfig, item_texts

    tuned = json.loads((RESULTS / "online_retail-hybrid.json").read_text())
    texts = item_texts(p.cleaned.items.set_index("item_id").loc[p.train.item_ids].reset_index())
    emb = TextEncoder(TextEncoderConfig(model_name="")).embed(texts)
    collaborative = MODELS["ease"](**default_params("online_retail", "ease")).fit(p.train)
    rules = AssociationRules(min_support=0.002, min_confidence=0.0).fit(p.train)
    model = fit_hybrid(collaborative, rules, emb, p.train, p.split.train)
    model.weights, model.related_weights = tuned["weights_user_recommendations"], tuned["weights_related_items"]
    return model


def build_champion(dataset: str, work: Path, dim: int, seed: int, family: str | None = None) -> dict:
    """Fit the dataset's champion, bundle it and register it as cobuy-serving@champion under ``work``."""
    from serving.registry import register_serving_version
    from serving.serving_gate import bundle_model
    from benchmarks.data import prepare

    p = prepare(dataset)
    data, catalog = p.train, p.cleaned.items
    if dataset == "gowalla":
        from benchmarks.common import FormModel
        from sklearn.utils.extmath import randomized_svd

        from training.models.base import FactorForm

        u, s, vt = randomized_svd(data.user_items.astype(np.float32), n_components=dim, random_state=seed)
        model, family = FormModel(FactorForm((u * s).astype(np.float32), vt.T.astype(np.float32).copy())), "mf"
    elif family == "hybrid":
        model = online_retail_hybrid(p)
    else:
        from benchmarks.common import default_params
        from training.models import ItemKNN

        model, family = ItemKNN(**default_params(dataset, "itemknn")).fit(data), "itemknn"
    bundle = work / "bundle"
    shutil.rmtree(bundle, ignore_errors=True)
    info = bundle_model(model, family, data, catalog, bundle, source={"benchmark": "benchmarks.service_load"})
    uri = f"sqlite:///{work / 'mlflow.db'}"
    version, _ = register_serving_version(uri, "cobuy-serving", "load-benchmark", bundle, f"load-{dataset}",
                                          {"family": family}, (work / "mlartifacts").as_uri())
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("cobuy-serving", "champion", version)
    rng = np.random.default_rng(seed)
    counts = np.asarray(data.baskets.sum(axis=0)).ravel()
    sold = np.flatnonzero(counts > 0)
    items = rng.choice(sold, size=min(5000, len(sold)), p=counts[sold] / counts[sold].sum())
    b = data.baskets.tocsr() if dataset != "gowalla" else data.user_items.tocsr()
    big = np.flatnonzero(np.diff(b.indptr) >= 5)
    carts = [rng.choice(b[r].indices, 5, replace=False) for r in rng.choice(big, min(5000, len(big)), replace=False)]
    ids = data.item_ids.astype(str)
    payloads = work / "payloads.json"
    payloads.write_text(json.dumps({"items": ids[items].tolist(), "carts": [ids[c].tolist() for c in carts]}))
    return {"uri": uri, "version": version, "payloads": payloads,
            "model": {"family": family, "format": info.format, "n_items": data.n_items, "n_users": data.n_users,
                      "dim": dim if dataset == "gowalla" else None, "n_baskets": int(data.baskets.shape[0])}}


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def server_metrics(url: str) -> dict[str, float]:
    """Sums and counts of the server's request latency by endpoint and of its stages, from /metrics."""
    out = {}
    for line in _get(f"{url}/metrics").splitlines():
        m = re.match(r'^cobuy_(request|stage)_seconds_(sum|count)\{(endpoint|stage)="([^"]+)"\} (\S+)$', line)
        if m:
            out[f"{m[1]}:{m[4]}:{m[2]}"] = float(m[5])
    return out


def _delta(after: dict, before: dict, key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def settled(url: str, timeout: float = 180) -> dict:
    """/model once the related lists the service makes in the background after a load stop growing (its count
    unchanged for 2 s): the figures are then of the steady state, not of the warm-up's CPU."""
    import httpx

    deadline, last, since = time.monotonic() + timeout, -1, time.monotonic()
    while True:
        model = httpx.get(f"{url}/model", timeout=5).json()
        kept = model.get("related_lists_kept", 0)
        if kept != last:
            last, since = kept, time.monotonic()
        if time.monotonic() - since >= 2 or time.monotonic() > deadline:
            return model
        time.sleep(0.5)


def process_tree_cpu(pid: int) -> Callable[[], float]:
    """A clock of the CPU seconds (user + system) used by process ``pid`` and its children (uvicorn's workers)."""
    import psutil

    tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    return lambda: sum(t.user + t.system for t in (p.cpu_times() for p in tree))


def run_locust(url: str, endpoint: str, payloads: Path, users: int, rate: float, seconds: int, work: Path,
               server_pid: int, processes: int = 1) -> dict:
    """One locust run; client-side figures from its stats CSV, the server's CPU share and stage times."""
    prefix = work / f"locust-{endpoint}"
    env = {**os.environ, "COBUY_LOAD_PAYLOADS": str(payloads), "COBUY_LOAD_ENDPOINT": endpoint,
           "COBUY_LOAD_RATE": str(rate)}
    cmd = [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
           "--host", url, "-u", str(users), "-r", str(users), "--run-time", f"{seconds}s", "--csv", str(prefix),
           "--only-summary", "--exit-code-on-error", "0", "--loglevel", "WARNING", "--stop-timeout", "5"]
    if processes > 1:  # locust's latency grows with the users one process simulates (see --processes)
        cmd += ["--processes", str(processes)]
    cpu_seconds = process_tree_cpu(server_pid)
    before, cpu0, t0 = server_metrics(url), cpu_seconds(), time.monotonic()
    gen0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # locust's CPU: the children waited for since
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=seconds + 120)
    wall = time.monotonic() - t0
    gen1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1, after = cpu_seconds(), server_metrics(url)
    generator_s = (gen1.ru_utime - gen0.ru_utime) + (gen1.ru_stime - gen0.ru_stime)
    with open(f"{prefix}_stats.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == "Aggregated")
    count = _delta(after, before, f"request:{ENDPOINTS[endpoint]}:count")
    stages = {s: 1000 * _delta(after, before, f"stage:{s}:sum") / max(count, 1) for s in ("score", "evidence")}
    cpu_s, requests = cpu1 - cpu0, int(row["Request Count"])  # every worker's CPU, every request locust sent
    return {"rps": float(row["Requests/s"]), "p50_ms": float(row["50%"]), "p95_ms": float(row["95%"]),
            "p99_ms": float(row["99%"]), "requests": requests, "errors": int(row["Failure Count"]),
            "cpu_percent": 100.0 * cpu_s / wall, "server_cpu_ms_per_request": 1000 * cpu_s / max(requests, 1),
            "generator_cpu_percent": 100.0 * generator_s / wall,  # locust itself (start-up included), same box
            "generator_cpu_ms_per_request": 1000 * generator_s / max(requests, 1),
            "load_average_1min": round(os.getloadavg()[0], 2),
            "server_mean_ms": 1000 * _delta(after, before, f"request:{ENDPOINTS[endpoint]}:sum") / max(count, 1),
            "server_stage_mean_ms": stages}


def where_time_goes(e: dict) -> str:
    """The client's median against the server's own time, its stages and its CPU per request."""
    stages = e["server_stage_mean_ms"]
    return (f"client p50 {e['p50_ms']:.1f} ms; inside the server {e['server_mean_ms']:.2f} ms on average, of which "
            f"scoring {stages['score']:.2f} ms and evidence {stages['evidence']:.2f} ms (the rest: parsing, filters, "
            f"JSON, logging, waiting for the event loop); the server used {e['server_cpu_ms_per_request']:.2f} ms of "
            f"CPU per request, so one free core would carry about {1000 / max(e['server_cpu_ms_per_request'], 1e-6):.0f}"
            f" requests/s; locust used {e.get('generator_cpu_ms_per_request', float('nan')):.2f} ms of CPU per "
            f"request ({e.get('generator_cpu_percent', float('nan')):.0f}% of a core); the gap between the in-server "
            "time and the client's is time spent waiting for a core (the run queue) and in the client")


def benchmark(args: argparse.Namespace) -> dict:
    from benchmarks.common import machine

    suffix = f"-{args.family}" if args.family == "hybrid" else ""
    work = Path(args.work or f"/tmp/cobuy-load-{args.dataset}{suffix}")
    work.mkdir(parents=True, exist_ok=True)
    load_before = [round(x, 2) for x in os.getloadavg()]
    t0 = time.monotonic()
    champion = build_champion(args.dataset, work, args.dim, args.seed, args.family)
    build_seconds = time.monotonic() - t0
    port = args.port
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # as `make serve` runs it
    log = open(work / "server.log", "wb")  # the request log stays on, as in production
    server = subprocess.Popen([sys.executable, "-m", "serving.service", "--tracking-uri", champion["uri"],
                               "--port", str(port), "--cache-dir", str(work / "cache"), "--poll-seconds", "30",
                               "--workers", str(args.workers)],
                              env=env, cwd=ROOT, start_new_session=True, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if json.loads(_get(f"{url}/readyz"))["status"] == "ready":
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the service did not become ready (exit {server.returncode})")
            time.sleep(0.5)
        model = settled(url)  # the related lists made in the background after the load: done
        result = {"benchmark": "service_load", "dataset": args.dataset, "model": {**champion["model"],
                  "load_seconds": model["load_seconds"], "related_lists_kept": model.get("related_lists_kept")},
                  "target": TARGET, "endpoints": {},
                  "locust": {"users": args.users, "rate_per_user": args.rate, "offered_rps": args.users * args.rate,
                             "seconds": args.seconds, "repeats": args.repeats, "k": 10, "cart_items": 5,
                             "processes": args.processes},
                  "build_seconds": round(build_seconds, 1), "server_workers": args.workers}
        for endpoint in ("related", "baskets"):
            run_locust(url, endpoint, champion["payloads"], args.users, args.rate, 5, work, server.pid,
                       args.processes)  # warm-up
            runs = [run_locust(url, endpoint, champion["payloads"], args.users, args.rate, args.seconds, work,
                               server.pid, args.processes) for _ in range(args.repeats)]
            med = {k: float(np.median([r[k] for r in runs])) for k in (
                "rps", "p50_ms", "p95_ms", "p99_ms", "cpu_percent", "server_mean_ms", "server_cpu_ms_per_request",
                "generator_cpu_percent", "generator_cpu_ms_per_request")}
            med["server_stage_mean_ms"] = {s: float(np.median([r["server_stage_mean_ms"][s] for r in runs]))
                                           for s in ("score", "evidence")}
            result["endpoints"][ENDPOINTS[endpoint]] = {**med, "errors": int(sum(r["errors"] for r in runs)),
                                                        "requests": int(sum(r["requests"] for r in runs)),
                                                        "runs": runs}
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    eps = result["endpoints"].values()
    result["met_target"] = all(e["rps"] >= TARGET["rps"] and e["p99_ms"] <= TARGET["p99_ms"] and e["errors"] == 0
                               for e in eps)
    result["load_average_1_5_15min"] = {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]}
    result["where_the_time_goes"] = {name: where_time_goes(e) for name, e in result["endpoints"].items()}
    result["machine"] = {**machine(), "niceness": os.nice(0)}  # the server and locust ran at this niceness
    return result


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.service_load", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["gowalla", "online_retail"], required=True)
    p.add_argument("--users", type=int, default=10,
                   help="simulated clients, each a keep-alive connection (the shop's front-end servers calling the "
                        "service through a connection pool; 10 x 50 requests/s = 500 offered)")
    p.add_argument("--rate", type=float, default=52.0,
                   help="requests per second per client (offered: users x rate = 520, so that the measured rate, a "
                        "little under the offered one, clears the 500 target)")
    p.add_argument("--processes", type=int, default=1,
                   help="locust processes sharing the users: on loopback locust's own latency grows with the users "
                        "one process simulates (50 users at 100 requests/s: p50 17-19 ms, where a plain asyncio client "
                        "with 50 connections sees 1.1 ms; 2 processes halve it), not with the rate")
    p.add_argument("--seconds", type=int, default=20, help="length of one measured run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dim", type=int, default=64, help="factor dimension of the Gowalla champion")
    p.add_argument("--family", choices=["itemknn", "hybrid"], default=None,
                   help="Online Retail's champion: item-kNN (ONNX, default) or the hybrid (served natively)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes of the server (each its own "
                   "model copy and /metrics: the in-server figures are then one worker's)")
    p.add_argument("--port", type=int, default=8765)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="scratch folder (default /tmp/cobuy-load-<dataset>)")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/service-load-<dataset>.json)")
    args = p.parse_args(argv)
    from cobuy_files.storage import write_result_json

    result = benchmark(args)
    suffix = f"-{args.family}" if args.family == "hybrid" else ""
    out = Path(args.out or RESULTS / f"service-load-{args.dataset}{suffix}.json")
    write_result_json(result, out)
    for name, e in result["endpoints"].items():
        print(f"{name}: {e['rps']:.0f} rps, p50 {e['p50_ms']:.1f} ms, p99 {e['p99_ms']:.1f} ms, {e['errors']} errors, "
              f"server CPU {e['cpu_percent']:.0f}%, in-server mean {e['server_mean_ms']:.2f} ms")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
