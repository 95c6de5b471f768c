"""CPU time per request of the live service, per endpoint: the figure that a shared machine does not blur.

``python -m benchmarks.service_cpu --dataset online_retail --label after`` builds (or reuses, under
``--work``) the champion bundle ``benchmarks.service_load`` builds for the dataset (``synthetic``: item-kNN on the
built-in shop), starts ``python -m serving.service`` on it as ``make serve`` does (one worker, the request log on),
then sends ``--requests`` requests one after another on one keep-alive connection (httpx) to each endpoint
(``GET /items/{id}/related?k=10``, items drawn by popularity; ``POST /baskets/complete?k=10``, 5-item carts from
real baskets) and reads the server process's CPU time (user + system, psutil) before and after: CPU ms per
request, the median of ``--repeats`` runs. The client waits for each answer, so the server is idle between
requests and its CPU time is its own work however busy the machine is (wall time is not: it is reported, not
judged). ``--source DIR`` runs the server from another checkout of the code (e.g. ``git archive`` of an older
commit) against the same bundle, for a before/after pair. Results are merged into
``benchmarks/results/service-cpu-per-request.json`` under ``<dataset>`` / ``<label>``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "benchmarks" / "results" / "service-cpu-per-request.json"
ENDPOINTS = {"related": "/items/{item_id}/related", "baskets": "/baskets/complete"}


def synthetic_champion(work: Path, seed: int) -> dict:
    """Item-kNN on the built-in synthetic shop, bundled and registered as cobuy-serving@champion under ``work``."""
    from mlflow import MlflowClient

    from data_checks.cleaning import clean
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop
    from serving.registry import register_serving_version
    from serving.serving_gate import bundle_model
    from training.data import build_interaction_data
    from training.models import ItemKNN
    from training.splits import SplitConfig, make_split

    cleaned = clean(generate_shop(SyntheticShopConfig()).tables)
    split = make_split(cleaned.interactions, SplitConfig(strategy="temporal"))
    data = build_interaction_data(split.train, cleaned.items["item_id"])
    bundle_model(ItemKNN().fit(data), "itemknn", data, cleaned.items, work / "bundle")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    version, _ = register_serving_version(uri, "cobuy-serving", "cpu-benchmark", work / "bundle", "cpu-synthetic",
                                          {"family": "itemknn"}, (work / "mlartifacts").as_uri())
    MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("cobuy-serving", "champion", version)
    rng = np.random.default_rng(seed)
    counts = np.asarray(data.baskets.sum(axis=0)).ravel()
    sold = np.flatnonzero(counts > 0)
    items = rng.choice(sold, size=5000, p=counts[sold] / counts[sold].sum())
    b = data.baskets.tocsr()
    big = np.flatnonzero(np.diff(b.indptr) >= 5)
    carts = [rng.choice(b[r].indices, 5, replace=False) for r in rng.choice(big, 5000)]
    ids = data.item_ids.astype(str)
    payloads = work / "payloads.json"
    payloads.write_text(json.dumps({"items": ids[items].tolist(), "carts": [ids[c].tolist() for c in carts]}))
    return {"uri": uri, "payloads": str(payloads), "model": {"family": "itemknn", "n_items": data.n_items}}


def champion(dataset: str, work: Path, seed: int) -> dict:
    """The bundle of ``dataset`` under ``work``, built once and reused (``champion.json`` says what it is)."""
    marker = work / "champion.json"
    if marker.exists():
        return json.loads(marker.read_text())
    work.mkdir(parents=True, exist_ok=True)
    if dataset == "synthetic":
        built = synthetic_champion(work, seed)
    else:
        from benchmarks.service_load import build_champion

        got = build_champion(dataset, work, 64, seed)
        built = {"uri": got["uri"], "payloads": str(got["payloads"]), "model": got["model"]}
    marker.write_text(json.dumps(built))
    return built


def _ready(url: str, server: subprocess.Popen, timeout: float = 300) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(f"{url}/readyz", timeout=2)
            if r.status_code == 200:
                return httpx.get(f"{url}/model", timeout=5).json()
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            break
        time.sleep(0.3)
    raise RuntimeError(f"the service did not become ready (exit {server.poll()})")


def requests_for(endpoint: str, payloads: dict, n: int, offset: int = 0) -> list[tuple[str, str, dict | None]]:
    """(method, path, json body) of ``n`` requests, cycling through the payloads from ``offset``."""
    out = []
    for i in range(offset, offset + n):
        if endpoint == "related":
            out.append(("GET", f"/items/{payloads['items'][i % len(payloads['items'])]}/related?k=10", None))
        else:
            out.append(("POST", "/baskets/complete?k=10", {"items": payloads["carts"][i % len(payloads["carts"])]}))
    return out


def measure(pid: int, todo: list, client) -> dict:
    """Send ``todo`` one after another; the server's CPU seconds (user + system) and the wall time they took."""
    from benchmarks.service_load import process_tree_cpu

    cpu_seconds = process_tree_cpu(pid)  # with --workers, every worker
    c0, t0 = cpu_seconds(), time.perf_counter()
    errors = 0
    for method, path, body in todo:
        r = client.request(method, path, json=body)
        errors += r.status_code != 200
    wall = time.perf_counter() - t0
    cpu = cpu_seconds() - c0
    return {"cpu_ms_per_request": 1000 * cpu / len(todo), "wall_ms_per_request": 1000 * wall / len(todo),
            "errors": errors, "requests": len(todo), "load_average_1min": round(os.getloadavg()[0], 2)}


def run(args: argparse.Namespace) -> dict:
    import httpx

    from benchmarks.common import machine
    from benchmarks.service_load import settled

    work = Path(args.work or f"/tmp/cobuy-cpu-{args.dataset}")
    built = champion(args.dataset, work, args.seed)
    payloads = json.loads(Path(built["payloads"]).read_text())
    source = Path(args.source or ROOT).resolve()
    url = f"http://127.0.0.1:{args.port}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = str(source)
    env.update(dict(kv.split("=", 1) for kv in args.env))
    log = open(work / f"server-{args.label}.log", "wb")  # the request log stays on, as in production
    cache = work / f"cache-{args.label}"
    server = subprocess.Popen([sys.executable, "-m", "serving.service", "--tracking-uri", built["uri"], "--port",
                               str(args.port), "--cache-dir", str(cache), "--poll-seconds", "600"],
                              env=env, cwd=source, start_new_session=True, stdout=log, stderr=log)
    load_before = [round(x, 2) for x in os.getloadavg()]
    try:
        model = _ready(url, server)
        model = settled(url)
        out = {"model": {**built["model"], "version": model.get("version"), "format": model.get("format"),
                         "load_seconds": model.get("load_seconds"),
                         "related_lists_kept": model.get("related_lists_kept")}, "endpoints": {}}
        with httpx.Client(base_url=url, timeout=30) as client:
            for endpoint in ENDPOINTS:
                measure(server.pid, requests_for(endpoint, payloads, args.warmup), client)  # warm-up
                runs = [measure(server.pid, requests_for(endpoint, payloads, args.requests,
                                                              args.warmup + r * args.requests), client)
                        for r in range(args.repeats)]
                out["endpoints"][ENDPOINTS[endpoint]] = {
                    "cpu_ms_per_request": float(np.median([r["cpu_ms_per_request"] for r in runs])),
                    "wall_ms_per_request": float(np.median([r["wall_ms_per_request"] for r in runs])),
                    "errors": int(sum(r["errors"] for r in runs)), "runs": runs}
            metrics = client.get("/metrics").text
        out["cache_lines"] = [line for line in metrics.splitlines() if line.startswith("cobuy_cache_requests_total")]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    out.update({"requests_per_run": args.requests, "repeats": args.repeats, "warmup": args.warmup,
                "source": "this checkout" if source == ROOT else f"another checkout ({args.source_note or 'given'})",
                "server_env": args.env, "load_average_1_5_15min": {"before": load_before,
                                                                   "after": [round(x, 2) for x in os.getloadavg()]},
                "machine": {**machine(), "niceness": os.nice(0)}, "note": args.note})
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.service_cpu", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=["synthetic", "online_retail", "gowalla"], required=True)
    p.add_argument("--label", required=True, help="where the figures go in the result file, e.g. before / after")
    p.add_argument("--requests", type=int, default=2000, help="requests per measured run")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--source", default=None, help="run the server from this checkout (default: this one)")
    p.add_argument("--source-note", default="", help="what --source is (e.g. the commit), kept in the result")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the server's environment")
    p.add_argument("--note", default="")
    p.add_argument("--port", type=int, default=8766)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default=None, help="scratch folder (default /tmp/cobuy-cpu-<dataset>)")
    p.add_argument("--out", default=str(RESULT))
    args = p.parse_args(argv)
    from cobuy_files.storage import write_result_json

    result = run(args)
    out = Path(args.out)
    whole = json.loads(out.read_text()) if out.exists() else {
        "benchmark": "service_cpu_per_request", "what": __doc__.split("\n\n")[0], "results": {}}
    whole["results"].setdefault(args.dataset, {})[args.label] = result
    write_result_json(whole, out)
    for name, e in result["endpoints"].items():
        print(f"{args.dataset} {args.label} {name}: {e['cpu_ms_per_request']:.3f} ms CPU / request "
              f"(wall {e['wall_ms_per_request']:.3f} ms), {e['errors']} errors")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
