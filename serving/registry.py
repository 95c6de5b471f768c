"""The MLflow model registry: register challengers, the promotion gate, and resolving ``@champion``.

One registered model per served family (``<prefix><family>``). A new version gets the alias
``challenger``. The gate evaluates challenger and champion on the same held-out data and moves
``champion`` only when the challenger beats it by ``margin`` on ``metric``; every decision is recorded as
tags on the challenger version (``gate.*``) and in the registered model's ``gate.history`` tag.
A person can still move ``champion`` by hand in the MLflow UI: scoring resolves the alias when it runs.
"""
from __future__ import annotations

import json
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from training.tracking import redact_url

CHALLENGER, CHAMPION = "challenger", "champion"
# schemes whose server is probed before use, with their default ports
SERVER_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "postgres": 5432, "mysql": 3306, "mssql": 1433}


class RegistryUnavailableError(ConnectionError):
    """The MLflow tracking server (or its database) cannot be reached."""


class RegistrationError(RuntimeError):
    """Registering a model version failed; the version was rolled back (or the message says it was not)."""


def probe_tracking_uri(uri: str, timeout: float = 3.0) -> None:
    """Fail fast when the server behind ``uri`` does not accept connections: a TCP connect to its host and
    port within ``timeout`` seconds (MLflow's own HTTP client would retry with backoff for minutes:
    ``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, default 7, backoff factor 2). Local URIs (``sqlite:``, ``file:``,
    paths) and schemes without a server address (``databricks``) are not probed.

    Raises ``RegistryUnavailableError`` naming the URI (password redacted), host and port."""
    parts = urlsplit(uri)
    scheme = parts.scheme.split("+")[0].lower()  # postgresql+psycopg2 -> postgresql
    if scheme not in SERVER_PORTS or not parts.hostname:
        return
    port = parts.port or SERVER_PORTS[scheme]
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            pass
    except OSError as exc:
        raise RegistryUnavailableError(
            f"MLflow tracking server {redact_url(uri)} is unreachable: no connection to {parts.hostname}:{port} "
            f"within {timeout:g} s ({exc.__class__.__name__}: {exc}). Nothing was logged or registered. Start the "
            "server, or point MLFLOW_TRACKING_URI (COBUY_ENV=production) at one that is up.") from exc


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def register_challenger(uri: str, name: str, model_uri: str, run_id: str, tags: dict[str, str] | None = None) -> str:
    """Register ``model_uri`` as a new version of ``name`` and point ``challenger`` at it; returns the version.

    All or nothing: when anything fails after the version was created (it never became READY, the alias
    could not be set), the version is deleted again (best effort) and ``RegistrationError`` names the model,
    the tracking URI, the step that failed and whether the rollback worked. The previous ``challenger`` and
    ``champion`` are untouched then."""
    from mlflow.exceptions import MlflowException

    client = _client(uri)
    step = "creating the registered model"
    try:
        try:
            client.get_registered_model(name)
        except MlflowException:
            client.create_registered_model(name, description=f"cobuy served model family {name}")
        from training.tracking import tracking

        step = "creating the model version"
        with tracking(uri):  # MLflow resolves "models:/m-..." sources through the process-wide URI
            version = str(client.create_model_version(name, model_uri, run_id=run_id, tags=tags or {}).version)
    except Exception as exc:
        raise RegistrationError(f"registering {name} (run {run_id}) at {redact_url(uri)} failed while {step}: "
                                f"{exc.__class__.__name__}: {exc}; MLflow returned no version") from exc
    try:
        step = f"waiting for version {version} to be READY"
        _wait_ready(client, name, version)
        step = f"pointing '{CHALLENGER}' at version {version}"
        client.set_registered_model_alias(name, CHALLENGER, version)
    except BaseException as exc:
        rollback = _delete_version(client, name, version)
        if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: rolled back, then passed on
            raise
        raise RegistrationError(f"registering {name} (run {run_id}) at {redact_url(uri)} failed while {step}: "
                                f"{exc.__class__.__name__}: {exc}; {rollback}") from exc
    return version


def _delete_version(client, name: str, version: str) -> str:
    """Delete a half-registered version; says what happened, for the error message."""
    try:
        client.delete_model_version(name, version)
    except Exception as exc:  # the server may be gone by now
        return (f"version {version} could NOT be rolled back ({exc.__class__.__name__}: {exc}): delete it in the "
                f"MLflow UI (Models > {name} > Version {version})")
    return f"version {version} was deleted again (no half-registered version left)"


def _wait_ready(client, name: str, version: str, timeout: float = 300.0) -> None:
    t0 = time.monotonic()
    while (status := client.get_model_version(name, version).status) != "READY":
        if status == "FAILED_REGISTRATION":
            raise RuntimeError(f"model {name} version {version}: MLflow reports FAILED_REGISTRATION")
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"model {name} version {version} not READY after {timeout:.0f} s")
        time.sleep(0.2)


def alias_version(uri: str, name: str, alias: str) -> str | None:
    """The version ``alias`` points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _download(uri: str, name: str, version: str, dst: str | Path, wanted: str, what: str) -> Path:
    """Download ``models:/name/version`` into ``dst``; the first file named ``wanted`` in it (FileNotFoundError
    saying the version is not ``what`` when there is none)."""
    import mlflow

    from training.tracking import tracking

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    with tracking(uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst)))
    found = sorted(local.rglob(wanted))
    if not found:
        raise FileNotFoundError(f"models:/{name}/{version} holds no {wanted} (downloaded to {local}): not {what}")
    return found[0]


def download_version(uri: str, name: str, version: str, dst: str | Path) -> Path:
    """Download a version's ONNX model into ``dst``; returns the path of its ``model.onnx``."""
    return _download(uri, name, version, dst, "model.onnx", "an ONNX export")


def download_serving_version(uri: str, name: str, version: str, dst: str | Path) -> Path:
    """Download a serving version's bundle (``serving.service.bundle``) into ``dst``; returns the folder
    holding its ``bundle.json``."""
    return _download(uri, name, version, dst, "bundle.json", "a serving version").parent


def register_serving_version(uri: str, name: str, experiment: str, bundle_dir: str | Path, run_name: str,
                             tags: dict[str, str], artifact_location: str | None = None) -> tuple[str, str]:
    """Log ``bundle_dir`` (a serving bundle) as the artifacts of a new run in ``experiment`` and register it as
    a new version of ``name`` with alias ``challenger`` (all or nothing, see :func:`register_challenger`);
    ``tags`` go on the run and the version (family, format, source). Returns (version, run id)."""
    from training.tracking import ensure_experiment

    client = _client(uri)
    exp_id = ensure_experiment(uri, experiment, artifact_location)
    run_id = client.create_run(exp_id, run_name=run_name, tags=tags).info.run_id
    try:
        client.log_artifacts(run_id, str(bundle_dir), artifact_path="serving")
    except Exception:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)
    version = register_challenger(uri, name, f"runs:/{run_id}/serving", run_id, tags)
    client.update_registered_model(name, description=(
        "The one model cobuy serves (live service, `make serve`): whichever family won the serving gate. "
        "@champion is what answers; each version's tags say its family and format (onnx: run by ONNX Runtime; "
        "native: the model's own Python code, for models ONNX cannot express)."))
    return version, run_id


def version_run_id(uri: str, name: str, version: str) -> str | None:
    """The MLflow run a registered version was logged by (None for versions registered without one)."""
    return _client(uri).get_model_version(name, version).run_id or None


def download_run_artifact(uri: str, name: str, alias: str, artifact_path: str, dst: str | Path) -> Path | None:
    """Download ``artifact_path`` (e.g. ``reference_profile.json``) from the run that logged the version
    ``alias`` names; None when there is no such alias or the run has no such artifact."""
    import mlflow
    from mlflow.exceptions import MlflowException

    version = alias_version(uri, name, alias)
    run_id = version_run_id(uri, name, version) if version is not None else None
    if run_id is None:
        return None
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    try:
        return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact_path,
                                                        dst_path=str(dst), tracking_uri=uri))
    except (MlflowException, OSError):
        return None


@dataclass
class GateDecision:
    model: str
    metric: str
    margin: float
    challenger_version: str
    champion_version: str | None
    challenger_value: float
    champion_value: float | None
    promoted: bool
    reason: str
    decided_by: str
    decided_at: str


def decide(challenger: float, champion: float | None, margin: float) -> tuple[bool, str]:
    """Promote when there is no champion, or when ``challenger >= champion + margin`` and strictly better.
    A challenger that is worse, equal, or not a number is never promoted."""
    if challenger != challenger:  # NaN
        return False, "challenger metric is not a number"
    if champion is None:
        return True, "no champion yet"
    if challenger > champion and challenger - champion >= margin:
        return True, f"challenger better by {challenger - champion:.6f} (margin {margin})"
    return False, f"challenger {challenger:.6f} vs champion {champion:.6f}: not better by margin {margin}"


def run_gate(uri: str, name: str, evaluate: Callable[[dict[str, Path]], dict[str, dict]], metric: str,
             margin: float, decided_by: str, workdir: str | Path,
             fetch: Callable[[str, str, str, Path], Path] = download_version) -> GateDecision:
    """Evaluate ``challenger`` and ``champion`` of ``name`` with ``evaluate`` ({role: path} -> {role:
    metrics}, same held-out data for both), move ``champion`` when ``decide`` says so, record the decision.
    ``fetch(uri, name, version, dst)`` downloads a version (default: its ``model.onnx``; the serving model's
    bundle folder with :func:`download_serving_version`)."""
    client = _client(uri)
    challenger = alias_version(uri, name, CHALLENGER)
    if challenger is None:
        raise ValueError(f"registered model {name!r} has no '{CHALLENGER}' version to judge")
    champion = alias_version(uri, name, CHAMPION)
    paths = {"challenger": fetch(uri, name, challenger, Path(workdir) / f"v{challenger}")}
    if champion is not None and champion != challenger:
        paths["champion"] = fetch(uri, name, champion, Path(workdir) / f"v{champion}")
    metrics = evaluate(paths)
    ch_value = float(metrics["challenger"][metric])
    champ_value = float(metrics["champion"][metric]) if "champion" in metrics else None
    if champion == challenger:
        promoted, reason = False, "challenger is already champion"
        champ_value = ch_value
    else:
        promoted, reason = decide(ch_value, champ_value, margin)
    decision = GateDecision(name, metric, margin, challenger, champion, ch_value, champ_value, promoted, reason,
                            decided_by, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, challenger)
    for key, value in asdict(decision).items():
        client.set_model_version_tag(name, challenger, f"gate.{key}", "" if value is None else str(value))
    history = json.loads(client.get_registered_model(name).tags.get("gate.history", "[]"))
    history = (history + [asdict(decision)])[-20:]  # tag values are bounded: keep the last 20 decisions
    client.set_registered_model_tag(name, "gate.history", json.dumps(history))
    return decision
