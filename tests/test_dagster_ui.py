"""The Dagster UI as an operator sees it: ``dg dev`` on a free port, checked through its GraphQL API and in a
headless browser.

One ``dg dev -m orchestration.definitions`` (temporary DAGSTER_HOME and COBUY_DATA_DIR, the project's
``infra/local/dagster.yaml``) serves every test of this module. It is started in its own session, hence its own
process group, and stopped by signalling that group: SIGTERM first (``dg dev`` runs ``dagster dev``'s code, which maps SIGTERM to its SIGINT
handler, so SIGINT is reset to the default in the child, in case pytest itself runs where SIGINT is ignored, e.g.
a background job without job control), then SIGKILL after a grace period. The last test asserts that nothing of the
group is left. Every failure message carries the tail of the server log.

The screenshot test drives Debian's ``chromium`` headless over the DevTools protocol (installed by
``tests/setup_chromium.sh``, which ``make test`` runs); it skips with the reason when no browser is found or it
cannot start. Set ``COBUY_UI_SCREENSHOT=path.png`` to keep a copy of the screenshot (e.g.
``benchmarks/results/ui-asset-graph.png``); otherwise it stays in pytest's temporary folder.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_assets import SMALL

pytestmark = [pytest.mark.integration, pytest.mark.heavy(54)]

ROOT = Path(__file__).resolve().parent.parent
DG = Path(sys.executable).parent / "dg"  # dagster-dg-cli: `dg dev`, the command Dagster 1.13 recommends
START_TIMEOUT_S = float(os.environ.get("COBUY_UI_START_TIMEOUT", 300))
RUN_TIMEOUT_S = float(os.environ.get("COBUY_UI_RUN_TIMEOUT", 420))
STOP_GRACE_S = 20.0


@dataclass
class DagsterDev:
    """A ``dagster dev`` process group and how to reach it."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    data_dir: Path

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the child leads its own session and process group

    def log_tail(self, chars: int = 6000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else "(no log)"
        return f"\n--- dagster dev log ({self.log_path}), last {chars} chars ---\n{text[-chars:]}"

    def graphql(self, query: str, variables: dict | None = None, timeout: float = 60) -> dict:
        """POST ``query`` to ``/graphql``; returns ``data``, failing with the errors and the server log."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            pytest.fail(f"GraphQL HTTP {err.code}: {err.read()[:2000]!r}{self.log_tail()}")
        if payload.get("errors"):
            pytest.fail(f"GraphQL errors: {json.dumps(payload['errors'], indent=1)[:4000]}{self.log_tail()}")
        return payload["data"]

    def stop(self) -> str:
        """SIGTERM to the whole group, SIGKILL after ``STOP_GRACE_S``; returns which signal ended it."""
        how = "already stopped"
        for sig, grace in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
            if not group_members(self.pgid) and self.proc.poll() is not None:
                break
            try:
                os.killpg(self.pgid, sig)
            except ProcessLookupError:
                break
            how = sig.name
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if self.proc.poll() is not None and not group_members(self.pgid):
                    return how
                time.sleep(0.2)
        self.proc.poll()
        return how


def group_members(pgid: int) -> list[str]:
    """Live (non-zombie) processes of process group ``pgid``, as ``"pid cmdline"`` strings (Linux /proc)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmd = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(f"{stat.parent.name} {cmd[:160]}")
    return members


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status == 200
    except (OSError, urllib.error.URLError):
        return False


WORKSPACE = """{ workspaceOrError { __typename ... on Workspace { locationEntries { name loadStatus
  locationOrLoadError { __typename ... on PythonError { message stack } } } } ... on PythonError { message } } }"""


def _wait_until_loaded(server: DagsterDev, deadline: float) -> None:
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"dagster dev exited with code {server.proc.returncode} while starting{server.log_tail()}")
        if _http_ok(f"{server.url}/server_info"):
            ws = server.graphql(WORKSPACE)["workspaceOrError"]
            entries = ws.get("locationEntries") or []
            for entry in entries:
                err = entry.get("locationOrLoadError") or {}
                if err.get("__typename") == "PythonError":
                    pytest.fail(f"code location {entry['name']} failed to load: {err['message']}\n"
                                f"{''.join(err.get('stack') or [])}{server.log_tail()}")
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                return
        time.sleep(1)
    pytest.fail(f"dagster dev did not serve a loaded code location within {START_TIMEOUT_S:.0f} s{server.log_tail()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not DG.exists():
        pytest.fail(f"{DG} not found: run `make install` (dagster-dg-cli)")
    base = tmp_path_factory.mktemp("dagster_ui")
    home, data = base / "dagster_home", base / "data"
    home.mkdir()
    shutil.copy(ROOT / "infra" / "local" / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home), "COBUY_DATA_DIR": str(data), "COBUY_ENV": "local",
           "GX_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1", "MLFLOW_ENABLE_TELEMETRY": "false",
           "DO_NOT_TRACK": "1", "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    port = free_port()
    log_path = base / "dagster_dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(DG), "dev", "-m", "orchestration.definitions", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # own session and process group: stopped as a group below
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    dev = DagsterDev(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path, data_dir=data)
    try:
        t0 = time.monotonic()
        _wait_until_loaded(dev, t0 + START_TIMEOUT_S)
        print(f"dagster dev ready on port {port} in {time.monotonic() - t0:.1f} s "
              f"(load {os.getloadavg()[0]:.1f})")
        yield dev
    finally:
        dev.stop()


def _expected() -> dict[str, set]:
    """What the loaded ``Definitions`` declare: computed, so the test keeps up as assets/jobs/sensors are added."""
    from orchestration.definitions import defs

    repo = defs.get_repository_def()
    graph = defs.resolve_asset_graph()
    return {
        "assets": {k.to_user_string() for k in graph.get_all_asset_keys()},
        "checks": {f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys},
        "jobs": {j.name for j in repo.get_all_jobs()},
        "sensors": {s.name for s in repo.sensor_defs},
        "schedules": {s.name for s in repo.schedule_defs},
    }


REPOSITORIES = """{ repositoriesOrError { __typename
  ... on RepositoryConnection { nodes { name location { name } jobs { name } sensors { name } schedules { name }
      assetNodes { assetKey { path } assetChecksOrError { __typename ... on AssetChecks { checks { name } } } } } }
  ... on PythonError { message } } }"""


def _served(server: DagsterDev) -> tuple[dict, dict[str, set]]:
    repos = server.graphql(REPOSITORIES)["repositoriesOrError"]
    assert repos["__typename"] == "RepositoryConnection", f"{repos}{server.log_tail()}"
    assert len(repos["nodes"]) == 1, f"expected one repository, got {[n['name'] for n in repos['nodes']]}"
    node = repos["nodes"][0]
    assets = {"/".join(a["assetKey"]["path"]): a for a in node["assetNodes"]}
    return node, {
        "assets": set(assets),
        "checks": {f"{key}:{c['name']}" for key, a in assets.items()
                   for c in (a["assetChecksOrError"].get("checks") or [])},
        "jobs": {j["name"] for j in node["jobs"]},
        "sensors": {s["name"] for s in node["sensors"]},
        "schedules": {s["name"] for s in node["schedules"]},
    }


def test_ui_serves_every_asset_job_check_and_sensor(server):
    expected = _expected()
    _, served = _served(server)
    missing = {kind: sorted(expected[kind] - served[kind]) for kind in expected if expected[kind] - served[kind]}
    assert not missing, f"declared in orchestration.definitions but not served by the UI: {missing}"
    assert {"full_pipeline"} <= served["jobs"]
    assert expected["assets"] and expected["checks"], "the code location declares no assets or checks"


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
  ... on LaunchRunSuccess { run { runId } }
  ... on RunConfigValidationInvalid { errors { message path reason } }
  ... on PythonError { message stack }
  ... on Error { message } } }"""
RUN_STATUS = """query($runId: ID!) { runOrError(runId: $runId) { __typename ... on Run { status } } }"""
RUN_LOGS = """query($runId: ID!) { logsForRun(runId: $runId, limit: 5000) { __typename
  ... on EventConnection { events { __typename
      ... on MessageEvent { message stepKey level eventType }
      ... on ErrorEvent { error { message stack } } } }
  ... on PythonError { message } } }"""
DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def _run_report(server: DagsterDev, run_id: str) -> str:
    logs = server.graphql(RUN_LOGS, {"runId": run_id})["logsForRun"]
    lines = []
    for event in logs.get("events", []):
        if event.get("level") in ("ERROR", "CRITICAL") or event.get("error") or "FAILURE" in event["__typename"]:
            lines.append(f"[{event.get('stepKey')}] {event['__typename']}: {event.get('message')}")
            if event.get("error"):
                lines.append(event["error"]["message"] + "".join(event["error"].get("stack") or [])[-3000:])
    return "\n".join(lines[-40:]) or "(no error events)"


def test_full_pipeline_runs_from_the_api(server):
    node, _ = _served(server)
    # The small synthetic-shop config of tests/test_assets.py (which checks what the assets compute), run
    # in-process so that the run does not pay one interpreter start-up (torch, mlflow, ...) per step, and with the
    # text encoder used as packaged (steps 0) since fine-tuning it is most of the run's time on a loaded machine;
    # test_privacy's smaller shop and fewer trials/epochs (the whole graph succeeds on them there): this test checks
    # that a run launched through the API succeeds, not what the assets compute.
    from tests.test_privacy import _fast

    ops = {**_fast(SMALL)["ops"]}
    ops["text_encoder"] = {"config": {**ops.get("text_encoder", {}).get("config", {}), "steps": 0}}
    run_config = {**SMALL, "ops": ops, "execution": {"config": {"in_process": {}}}}
    params = {"selector": {"repositoryLocationName": node["location"]["name"], "repositoryName": node["name"],
                           "jobName": "full_pipeline"}, "runConfigData": run_config}
    launched = server.graphql(LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", f"launchRun: {json.dumps(launched, indent=1)[:4000]}"
    run_id = launched["run"]["runId"]
    t0, status = time.monotonic(), None
    while time.monotonic() - t0 < RUN_TIMEOUT_S:
        status = server.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get("status")
        if status in DONE:
            break
        time.sleep(2)
    print(f"full_pipeline run {run_id}: {status} after {time.monotonic() - t0:.1f} s (load {os.getloadavg()[0]:.1f})")
    assert status == "SUCCESS", (f"run {run_id} ended {status} (timeout {RUN_TIMEOUT_S:.0f} s); errors:\n"
                                 f"{_run_report(server, run_id)}{server.log_tail()}")
    assert (server.data_dir / "assets" / "related_items.parquet").exists(), \
        f"related_items not written under COBUY_DATA_DIR={server.data_dir}"
    assert (server.data_dir / "answers" / "latest" / "report.html").exists(), "the answers report was not written"
    _check_metadata_shown(server)


ASSET_METADATA = """query($key: AssetKeyInput!) { assetOrError(assetKey: $key) { __typename
  ... on Asset { assetMaterializations(limit: 1) { metadataEntries { __typename label
      ... on TableMetadataEntry { table { records schema { columns { name type } } } }
      ... on UrlMetadataEntry { url }
      ... on PathMetadataEntry { path }
      ... on MarkdownMetadataEntry { mdStr } } } } } }"""


def _metadata(server: DagsterDev, asset: str) -> dict[str, dict]:
    found = server.graphql(ASSET_METADATA, {"key": {"path": [asset]}})["assetOrError"]
    materializations = found.get("assetMaterializations") or []
    assert materializations, f"{asset}: no materialization served{server.log_tail(2000)}"
    return {e["label"]: e for e in materializations[0]["metadataEntries"]}


def _png_width(md: str) -> int:
    """The width of the PNG inlined in a markdown entry (``![..](data:image/png;base64,...)``), from its header."""
    data = base64.b64decode(re.search(r"base64,([A-Za-z0-9+/=]+)", md).group(1))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big")


def _check_metadata_shown(server: DagsterDev) -> None:
    """What the UI shows after the run: key tables as table metadata with a schema (not markdown behind a link),
    a metrics plot that fits the dialog, and links a browser opens (http, never file://)."""
    tables = {"model_metrics": ("at_k20", {"model", "recall", "ndcg"}),
              "related_items": ("most_co_purchased_pairs", {"item_title", "related_title", "lift"}),
              "association_rules": ("top_pairs_by_lift", set()),
              "validated_interactions": ("quarantine_by_reason", {"reason", "rows"}),
              "answers": ("bought_together", {"item_title", "partner_title", "baskets_together", "lift"})}
    for asset, (label, columns) in tables.items():
        entries = _metadata(server, asset)
        entry = entries.get(label)
        assert entry and entry["__typename"] == "TableMetadataEntry", f"{asset}.{label}: {entry}"
        names = {c["name"] for c in entry["table"]["schema"]["columns"]}
        assert columns <= names, f"{asset}.{label} columns {names}"
        for e in entries.values():
            if e["__typename"] == "UrlMetadataEntry":
                assert e["url"].startswith("http"), f"{asset}.{e['label']}: {e['url']} does not open from a browser"
    metrics = _metadata(server, "model_metrics")
    at20 = metrics["at_k20"]["table"]
    assert len(at20["records"]) == len({json.loads(r)["model"] for r in at20["records"]}) >= 2
    assert _png_width(metrics["metrics_vs_k"]["mdStr"]) <= 800  # fits the metadata dialog
    assert _metadata(server, "answers")["report"]["url"].startswith("http")


# ----------------------------------------------------------------------------------------------- browser
def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


class HeadlessChromium:
    """Headless Chromium driven over the DevTools protocol (a websocket; no browser-automation package needed).

    The command-line ``--screenshot``/``--dump-dom`` modes cannot wait for a condition (virtual time does not cover
    the graph layout, which runs in a web worker) nor set the graph's orientation, which the UI keeps in
    localStorage; the protocol can."""

    def __init__(self, binary: str, profile: Path, width: int = 1600, height: int = 1000):
        profile.mkdir(parents=True, exist_ok=True)
        self.stderr_path = profile.parent / f"{profile.name}-stderr.log"
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--hide-scrollbars", "--remote-debugging-port=0", f"--user-data-dir={profile}",
                 f"--window-size={width},{height}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        self._ids = iter(range(1, 1 << 30))
        self.ws = None
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not port_file.exists() or not port_file.read_text().strip():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{binary} did not start (exit {self.proc.returncode}): "
                                   f"{self.stderr_path.read_text(errors='replace')[-1500:]}")
            time.sleep(0.1)
        port = port_file.read_text().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as resp:
            page = next(t for t in json.loads(resp.read()) if t["type"] == "page")
        from websockets.sync.client import connect

        self.ws = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30)
        self.call("Page.enable")

    def call(self, method: str, **params) -> dict:
        msg_id = next(self._ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:  # events arrive in between; keep the reply to this call
            msg = json.loads(self.ws.recv(timeout=120))
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 60
        while self.js("document.readyState") != "complete" and time.monotonic() < deadline:
            time.sleep(0.2)

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        for sig in (signal.SIGTERM, signal.SIGKILL):  # the browser and its helpers: one process group
            if self.proc.poll() is not None and not group_members(self.proc.pid):
                return
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(10)
            except ProcessLookupError:
                return
            except subprocess.TimeoutExpired:
                continue


def shown(name: str, text: str) -> bool:
    """``name`` appears in the page text, whole or as the UI draws it on a zoomed-out graph: middle-truncated to 18
    characters, ``head…tail`` (``withMiddleTruncation`` in Dagster's ``AssetNode.tsx``)."""
    if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
        return True
    return any(name.startswith(head) and name.endswith(tail) and len(head) + len(tail) < len(name)
               for head, tail in re.findall(r"(\w+)…(\w+)", text))


SET_NUX_SEEN = "mutation { setNuxSeen }"  # the one-time "join the community" dialog, as if the operator skipped it


def test_asset_graph_page_in_headless_chromium(server, tmp_path):
    pytest.importorskip("websockets.sync.client", reason="the websockets package (a dagster-webserver dependency)")
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no chromium binary on PATH (tests/setup_chromium.sh installs Debian's `chromium` as root "
                    "with apt-get; install it by hand otherwise)")
    try:
        # a large window: zoomed to fit, the graph of ten groups keeps its node labels drawn (at 1600 x 1000 the UI
        # drew the groups as outlines without names once the answers group was added)
        browser = HeadlessChromium(binary, tmp_path / "profile", width=2560, height=1600)
    except Exception as err:  # noqa: BLE001 - any failure to start the browser is a reason to skip, said as such
        pytest.skip(f"{binary} cannot run headless here: {err}")
    from orchestration.definitions import defs

    names = sorted(_expected()["assets"])
    groups = sorted({node.group_name for node in defs.resolve_asset_graph().asset_nodes})
    # Lineage page with every group expanded (group ids as the UI builds them: ``global@global:<group>``), laid
    # out top-down so that the whole graph fits the window's width.
    url = f"{server.url}/asset-groups?expanded=" + ",".join(
        urllib.parse.quote(f"global@global:{g}", safe="") for g in groups)
    server.graphql(SET_NUX_SEEN)
    text, t0 = "", time.monotonic()
    try:
        browser.open(f"{server.url}/asset-groups")
        browser.js("localStorage.setItem('asset-graph-direction', JSON.stringify('vertical'))")
        browser.open(url)
        while time.monotonic() - t0 < 90:
            text = browser.js("document.body ? document.body.innerText : ''") or ""
            if all(shown(n, text) for n in names):
                time.sleep(1.0)  # let the last edges and the zoom settle before the picture
                break
            time.sleep(0.5)
        png = tmp_path / "asset-graph.png"
        browser.screenshot(png)
        (tmp_path / "asset-graph.html").write_text(browser.js("document.documentElement.outerHTML") or "")
    finally:
        browser.close()
    print(f"asset graph page rendered in {time.monotonic() - t0:.1f} s; screenshot {png}")
    missing = [n for n in names if not shown(n, text)]
    assert not missing, (f"{url} does not show {missing} within 90 s; page text: {text[:1500]!r}; "
                         f"DOM kept at {tmp_path / 'asset-graph.html'}{server.log_tail(2000)}")
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"{png}: not a rendered page ({len(data)} bytes)"
    if keep := os.environ.get("COBUY_UI_SCREENSHOT"):
        Path(keep).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(png, keep)


# ------------------------------------------------------------------------------------------------ stop
def test_server_stops_by_its_process_group(server):
    assert group_members(server.pgid), "dagster dev's process group is already empty before stopping it"
    how = server.stop()
    left = group_members(server.pgid)
    assert not left, f"still running after {how} to process group {server.pgid}: {left}{server.log_tail(2000)}"
    assert server.proc.returncode is not None
    assert not _http_ok(f"{server.url}/server_info"), f"{server.url} still answers after the group was stopped"
    print(f"dagster dev stopped by {how}")
