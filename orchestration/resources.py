"""External systems behind Dagster resources: file storage for asset outputs, artifacts and studies."""

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Union
from urllib.parse import urlsplit

import dagster as dg
import pandas as pd
from upath import UPath

from data_checks.privacy import key_from_secret, load_or_create_key
from serving import registry
from training.families import PLANNED as PLAN_FAMILIES
from serving.onnx_scoring import OnnxRecommender
from cobuy_files.storage import publish_copy, read_pickle, sweep_stale_temps, write_parquet, write_pickle
from training.models.footprint import MemoryBudget, item_item_form
from training.models.sparse import DEFAULT_TOP_N, SPARSE_CAPABLE
from training.tracking import LoggedRun, TrainingRun, log_training_run


def default_data_dir() -> str:
    return os.environ.get("COBUY_DATA_DIR", "data")


# A local file (``pathlib.Path``) or an object in an object store (``upath.UPath`` over fsspec, e.g. s3fs).
StoragePath = Union[Path, UPath]


def is_object_store(location: str) -> bool:
    """Whether ``location`` is an object-store URL (``s3://bucket/prefix``, any fsspec protocol) rather than a
    local folder (a plain path or ``file://``; one-letter schemes are Windows drives)."""
    scheme = urlsplit(location).scheme
    return len(scheme) > 1 and scheme != "file"


def storage_path(location: str, s3_endpoint_url: Optional[str] = None) -> StoragePath:
    """``location`` as a ``Path`` (local) or a ``UPath`` (object store). ``s3_endpoint_url`` names an
    S3-compatible server (MinIO); without it s3fs/botocore take ``AWS_ENDPOINT_URL`` or AWS itself. s3fs's
    listings cache is off: other processes write objects this one must see at once."""
    if not is_object_store(location):
        return Path(location)
    if urlsplit(location).scheme not in ("s3", "s3a"):
        return UPath(location)
    options = {"endpoint_url": s3_endpoint_url} if s3_endpoint_url else {}
    return UPath(location, use_listings_cache=False, **options)


def read_output(path: StoragePath) -> Any:
    """An asset output file written by ``TableIOManager``: a DataFrame from ``.parquet``, else unpickled."""
    if isinstance(path, UPath):
        with path.open("rb") as fh:
            return pd.read_parquet(fh) if path.suffix == ".parquet" else pickle.load(fh)
    return pd.read_parquet(path) if path.suffix == ".parquet" else read_pickle(path)


def latest_materialized_path(instance: dg.DagsterInstance, key: dg.AssetKey,
                             s3_endpoint_url: Optional[str] = None) -> Optional[StoragePath]:
    """The file the latest materialization of ``key`` recorded in ``instance``'s event log (its ``path``
    metadata: a local path or an ``s3://`` URL), or None when the asset was never materialized there or
    recorded no path."""
    event = instance.get_latest_materialization_event(key)
    recorded = event.asset_materialization.metadata.get("path") if event and event.asset_materialization else None
    return storage_path(str(recorded.value), s3_endpoint_url) if recorded is not None else None


class TableIOManager(dg.ConfigurableIOManager):
    """Asset outputs under ``base_dir``, one file per run: ``assets/<key>/<run id>.parquet`` for DataFrames,
    ``.pkl`` (pickled) for everything else. Two runs of the same asset never write the same file.

    ``base_dir`` is a local folder or an object-store URL (``s3://bucket/prefix``, through fsspec/s3fs;
    ``s3_endpoint_url`` names an S3-compatible server such as MinIO) with the same layout and resolution.
    Locally a file is written atomically (temporary file, then rename); on S3 an object is uploaded in one
    PUT (or one multipart upload), which S3 makes visible only once complete: also all or nothing.

    Inputs resolve to the file of the materialization the upstream produced: in the same run (or, for a
    re-execution, the parent run that produced it, as Dagster's execution plan says) that run's file;
    an upstream not executed in this run lineage is the latest materialization recorded in the Dagster
    instance's event log (its ``path`` metadata). ``assets/<key>.parquet|pkl`` is a copy of the latest
    output for people and scripts (locally a hard link, replaced atomically; on S3 a server-side object
    copy); downstream assets never read it."""

    base_dir: str
    s3_endpoint_url: Optional[str] = None

    def _folder(self, key: dg.AssetKey) -> StoragePath:
        return storage_path(self.base_dir, self.s3_endpoint_url).joinpath("assets", *key.path)

    def run_file(self, key: dg.AssetKey, run_id: str) -> Optional[StoragePath]:
        """The output file ``run_id`` wrote for ``key``, or None."""
        folder = self._folder(key)
        return next((p for p in (folder / f"{run_id}.parquet", folder / f"{run_id}.pkl") if p.exists()), None)

    def latest_copy(self, key: dg.AssetKey, suffix: str) -> StoragePath:
        """Where the copy of the latest output lives (``assets/<key>.parquet`` or ``.pkl``)."""
        folder = self._folder(key)
        return folder.with_name(folder.name + suffix)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        key = context.asset_key
        is_table = isinstance(obj, pd.DataFrame)
        suffix, other = (".parquet", ".pkl") if is_table else (".pkl", ".parquet")
        write = write_parquet if is_table else write_pickle
        path, latest = self._folder(key) / f"{context.run_id}{suffix}", self.latest_copy(key, suffix)
        if isinstance(path, UPath):
            # No temporary name and rename on S3: an object is either the old or the new one, and an upload
            # (a PUT, or s3fs's multipart upload for large files) becomes visible only when it completes; a
            # writer killed mid-upload leaves at most an invisible incomplete multipart upload (a bucket
            # lifecycle rule, AbortIncompleteMultipartUpload, reclaims its parts). The object is serialised to
            # a local temporary file first, so an error while serialising uploads nothing.
            with tempfile.TemporaryDirectory(prefix="cobuy-upload-") as tmp:
                local = write(obj, Path(tmp, path.name))
                path.fs.put_file(str(local), path.path)
            path.fs.copy(path.path, latest.path)  # server-side copy; readers see the old or the new object
            recorded = str(path)
        else:
            write(obj, path)
            publish_copy(path, latest)
            recorded = str(path.resolve())
        self.latest_copy(key, other).unlink(missing_ok=True)
        context.add_output_metadata({"path": dg.MetadataValue.path(recorded)})

    @staticmethod
    def _lineage(context: dg.InputContext) -> set[str]:
        """This run and the runs it re-executes (parent, grandparent, ...)."""
        run = context.step_context.dagster_run
        ids, parent = {run.run_id}, run.parent_run_id
        while parent is not None and parent not in ids:
            ids.add(parent)
            record = context.instance.get_run_by_id(parent)
            parent = record.parent_run_id if record is not None else None
        return ids

    def _source_run_id(self, context: dg.InputContext) -> Optional[str]:
        """The run that produced the upstream output in this run's plan (this run, or the parent run of a
        re-execution); None for an asset loaded from outside the plan (Dagster then gives no run id or a
        placeholder, which is in no run's lineage)."""
        upstream = context.upstream_output
        if upstream is None:
            return None
        try:
            run_id = upstream.run_id
        except dg.DagsterInvariantViolationError:
            return None
        return run_id if run_id in self._lineage(context) else None

    def resolve_input_path(self, context: dg.InputContext) -> StoragePath:
        """The file of the upstream materialization this input reads (see the class docstring)."""
        key, run_id = context.asset_key, self._source_run_id(context)
        if run_id is not None:
            path = self.run_file(key, run_id)
            if path is None:
                raise FileNotFoundError(f"asset {key.to_user_string()}: run {run_id} produced it, but its file "
                                        f"{self._folder(key)}/{run_id}.parquet|.pkl does not exist (data folder "
                                        f"{self.base_dir} moved or cleaned?)")
            return path
        path = latest_materialized_path(context.instance, key, self.s3_endpoint_url)
        if path is None:
            raise FileNotFoundError(f"asset {key.to_user_string()} has no materialization with a recorded path in "
                                    "this Dagster instance: materialize it first")
        if not path.exists():
            raise FileNotFoundError(f"asset {key.to_user_string()}: the latest materialization recorded {path}, "
                                    "which no longer exists")
        return path

    def load_input(self, context: dg.InputContext) -> Any:
        return read_output(self.resolve_input_path(context))


class ArtifactStore(dg.ConfigurableResource):
    """Run artifacts (Great Expectations Data Docs, plots, Optuna files, fine-tuned encoders), one
    folder per run so concurrent runs never overwrite each other's files. When a run creates its folder,
    temporary files left by killed writers in the folders of the run it re-executes (its parent and root
    run) are swept (``sweep_stale_temps``: only those whose writer is gone), e.g. a SIGKILLed run's
    half-written scoring table once its re-execution starts. The sweep reads those few folders only, so its
    cost does not grow with the run history."""

    base_dir: str

    def run_dir(self, run: "dg.DagsterRun | str", *parts: str) -> Path:
        """``runs/<run id>/<parts...>``, created; ``run``: the Dagster run (``context.run``) or its id."""
        run_id = run if isinstance(run, str) else run.run_id
        root = Path(self.base_dir, "runs").resolve()
        if not (root / run_id).exists():
            related = [] if isinstance(run, str) else [run.parent_run_id, run.root_run_id]
            for other in dict.fromkeys(r for r in related if r):
                sweep_stale_temps(root / other, recursive=True)
        path = Path(root, run_id, *parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class TrainingPlan(dg.ConfigurableResource):
    """Which model families a run trains, and the memory one family may take.

    ``families``: names from ``training.families.PLANNED`` (the served families plus ``blend`` and
    ``hybrid``; default all). A family left out is not fitted: its asset returns a ``SkippedFamily`` saying so,
    and evaluation, exports and the registry leave it out. Set it in run config, e.g.
    ``resources: {training_plan: {config: {families: [association_rules, itemknn]}}}``.
    ``memory_budget_gb``: the memory families may count on (None: what the machine, or its cgroup, has
    available when the family starts); a family or export whose estimate (``training.models.footprint``) is
    above ``memory_fraction`` of it is refused up front, with the estimate, instead of being killed.
    ``item_item_form``: how item-item families (EASE, GF-CF, ChebyCF, the blend; item-kNN's and the rules' exports)
    are served: ``auto`` keeps the exact dense (n, n) matrix while its export fits the budget and otherwise cuts
    each item to its ``item_item_top_n`` strongest neighbours (``training.models.sparse``); ``dense`` / ``sparse``
    force one. Where exact EASE does not fit, ``ease_model`` fits SANSA instead (``training.models.sansa_ease``)."""

    families: list[str] = list(PLAN_FAMILIES)
    memory_budget_gb: Optional[float] = None
    memory_fraction: float = 0.75
    item_item_form: str = "auto"
    item_item_top_n: int = DEFAULT_TOP_N

    def unknown(self) -> list[str]:
        return sorted(set(self.families) - set(PLAN_FAMILIES))

    def not_planned(self, family: str) -> Optional[str]:
        """Why ``family`` is not trained by this plan (None: it is). Names outside the vocabulary stop the run."""
        if self.unknown():
            raise ValueError(f"training_plan families {self.families}: {self.unknown()} unknown; choose from "
                             f"{list(PLAN_FAMILIES)}")
        if family in self.families:
            return None
        return (f"not in training_plan.families {self.families} (add {family!r} there, under resources: "
                "training_plan: config: families, to train it)")

    def budget(self) -> MemoryBudget:
        if self.memory_budget_gb is not None:
            return MemoryBudget.given(self.memory_budget_gb, self.memory_fraction)
        return MemoryBudget.measure(self.memory_fraction)

    def serving_form(self, family: str, n_items: int) -> str:
        """``sparse`` when ``family`` is an item-item family to serve as top-N neighbours at ``n_items``, else
        ``dense`` (factor families always)."""
        if family not in SPARSE_CAPABLE:
            return "dense"
        return item_item_form(n_items, self.budget(), self.item_item_form)


class ValidationPolicy(dg.ConfigurableResource):
    """Thresholds the blocking data checks enforce."""

    max_quarantine_rate: float = 0.10


class Pseudonymizer(dg.ConfigurableResource):
    """The key that pseudonymises customer ids at ingestion (HMAC-SHA256, ``data_checks.privacy``).

    ``secret``: the key itself, from the environment (``dg.EnvVar("COBUY_PSEUDONYM_KEY")``; production).
    ``key_file``: else a per-install random key kept in this file (mode 0600), created on first use
    (the embedded local default). Same key, same pseudonyms in every run."""

    secret: Optional[str] = None
    key_file: Optional[str] = None

    def key(self) -> bytes:
        if self.secret is not None or not self.key_file:
            return key_from_secret(self.secret)
        return load_or_create_key(self.key_file)


class OptunaStorage(dg.ConfigurableResource):
    """Where Optuna studies live: SQLite under the data folder by default; a Postgres URL shares
    studies between parallel workers unchanged."""

    url: str


class MLflowRegistry(dg.ConfigurableResource):
    """MLflow tracking and model registry. Embedded default: SQLite under the data folder with a local
    artifact folder; a server (Postgres backend, S3 artifacts) is just another ``tracking_uri``.

    One registered model per served family, named ``<model_prefix><family>``; new versions get the
    alias ``challenger``, the promotion gate moves ``champion``.

    Every call first checks that a server URI (``http(s)://``, ``postgresql://``, ...) accepts connections
    within ``probe_timeout_s`` and otherwise fails at once with ``RegistryUnavailableError`` naming the URI,
    instead of MLflow's minutes of retries. Registration is all or nothing (``serving.registry``)."""

    tracking_uri: str
    artifact_location: Optional[str] = None
    experiment: str = "cobuy"
    model_prefix: str = "cobuy-"
    ui_url: str = "http://127.0.0.1:5000"  # where ``mlflow ui`` (or the server) shows this tracking URI
    probe_timeout_s: float = 3.0

    def check_reachable(self) -> None:
        """Raise ``RegistryUnavailableError`` (naming the URI) when the tracking server is unreachable."""
        registry.probe_tracking_uri(self.tracking_uri, self.probe_timeout_s)

    def _uri(self) -> str:
        """The tracking URI, once the server answered: every MLflow call below takes its URI from here."""
        self.check_reachable()
        return self.tracking_uri

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """The run's page in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"

    def version_url(self, family: str, version: str) -> str:
        """The registered version's page in the MLflow UI."""
        return f"{self.ui_url.rstrip('/')}/#/models/{self.model_name(family)}/versions/{version}"

    def log_folder(self, folder: str | Path, artifact_path: str, run_name: str,
                   tags: Optional[dict[str, str]] = None) -> tuple[str, str]:
        """Log every file under ``folder`` as artifacts (under ``artifact_path``) of a new run in the experiment,
        e.g. Great Expectations Data Docs, which the MLflow UI renders as HTML. Returns the run's id and the http
        URL prefix of its artifacts in the UI: append a file's path inside ``folder`` (``.../index.html``)."""
        from mlflow import MlflowClient

        from training.tracking import ensure_experiment

        uri = self._uri()
        exp_id = ensure_experiment(uri, self.experiment, self.artifact_location)
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)  # no fluent (process-wide) MLflow state touched
        run_id = client.create_run(exp_id, run_name=run_name, tags=tags or {}).info.run_id
        try:
            client.log_artifacts(run_id, str(folder), artifact_path=artifact_path)
        except Exception:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id)
        return run_id, f"{self.run_url(exp_id, run_id)}/artifactPath/{artifact_path.strip('/')}"

    def model_name(self, family: str) -> str:
        return f"{self.model_prefix}{family}"

    def log_run(self, run: TrainingRun) -> LoggedRun:
        """Log one training run (params, metrics, artifacts, Optuna trials, ONNX model)."""
        return log_training_run(self._uri(), self.experiment, run, self.artifact_location)

    def register_challenger(self, family: str, logged: LoggedRun, tags: Optional[dict[str, str]] = None) -> str:
        """Register the run's ONNX model as a new version with alias ``challenger``; returns the version."""
        if logged.model_uri is None:
            raise ValueError(f"run {logged.run_id} logged no ONNX model; nothing to register for {family}")
        return registry.register_challenger(self._uri(), self.model_name(family), logged.model_uri,
                                            logged.run_id, tags)

    def version_for(self, family: str, alias: str) -> Optional[str]:
        """The version ``alias`` (``champion``/``challenger``) names, or None."""
        return registry.alias_version(self._uri(), self.model_name(family), alias)

    def download(self, family: str, version: str, dst: str | Path) -> Path:
        """A registered version's ``model.onnx`` downloaded into ``dst``."""
        return registry.download_version(self._uri(), self.model_name(family), version, dst)

    def download_run_artifact(self, family: str, alias: str, artifact_path: str, dst: str | Path
                              ) -> Optional[Path]:
        """An artifact (e.g. ``reference_profile.json``) of the run behind ``@alias`` downloaded into ``dst``;
        None when the alias or the artifact does not exist."""
        return registry.download_run_artifact(self._uri(), self.model_name(family), alias, artifact_path, dst)

    def run_gate(self, family: str, evaluate: Callable[[dict[str, Path]], dict[str, dict]], metric: str,
                 margin: float, decided_by: str, workdir: str | Path) -> registry.GateDecision:
        """Challenger vs champion on the same held-out data; moves ``champion`` only when better by ``margin``."""
        return registry.run_gate(self._uri(), self.model_name(family), evaluate, metric, margin, decided_by,
                                 workdir)


    def serving_name(self) -> str:
        """The one registered model the live service answers from (``<prefix>serving``)."""
        return f"{self.model_prefix}serving"

    def register_serving(self, bundle_dir: str | Path, run_name: str, tags: dict[str, str]) -> tuple[str, str]:
        """Log a serving bundle as a run's artifacts and register it as a new ``challenger`` of the serving
        model; returns (version, run id)."""
        return registry.register_serving_version(self._uri(), self.serving_name(), self.experiment, bundle_dir,
                                                 run_name, tags, self.artifact_location)

    def run_serving_gate(self, evaluate: Callable[[dict[str, Path]], dict[str, dict]], metric: str, margin: float,
                         decided_by: str, workdir: str | Path) -> registry.GateDecision:
        """The serving model's challenger vs champion bundles on the same held-out data, whatever their families."""
        return registry.run_gate(self._uri(), self.serving_name(), evaluate, metric, margin, decided_by, workdir,
                                 fetch=registry.download_serving_version)

    def serving_version_url(self, version: str) -> str:
        return f"{self.ui_url.rstrip('/')}/#/models/{self.serving_name()}/versions/{version}"


class OnnxRuntimeResource(dg.ConfigurableResource):
    """ONNX Runtime sessions for batch scoring: ``provider`` ``auto`` takes CUDA where available, else CPU."""

    provider: str = "auto"
    threads: Optional[int] = None

    def recommender(self, path: str | Path) -> OnnxRecommender:
        """An exported recommender opened with the configured provider (``.active_provider`` says which ran)."""
        return OnnxRecommender(Path(path), provider=self.provider, threads=self.threads)


class CountingEngine(dg.ConfigurableResource):
    """Where the counting stages of association rules (item and itemset counts) and item-kNN (co-occurrence counts)
    run (``training.counting``): ``local``, in the step's own process, or ``spark``, on Apache Spark at ``master``
    (``local[2]`` on this machine, ``spark://host:7077`` for a standalone cluster, ``k8s://https://host:443`` for
    Kubernetes; infra/spark/) with ``spark_conf`` settings. Either way the rules and neighbours are the same, bit for
    bit; Spark only moves the counting off this process (docs/spark.md says when that pays).
    ``itemsets``: how Spark mines itemsets: ``auto`` (MLlib FPGrowth without ``max_len``, Spark SQL prefix joins
    with one), ``fpgrowth`` or ``sql``. pyspark is imported only when a spark engine counts."""

    engine: str = "local"
    master: str = "local[2]"
    spark_conf: dict[str, str] = {}
    itemsets: str = "auto"

    def counting(self) -> Any:
        """The engine to count on (``training.counting.Counting``), or None for the step's own process."""
        if self.engine == "local":
            return None
        if self.engine == "spark":
            from training.spark_counting import SparkCounting

            return SparkCounting(master=self.master, conf=dict(self.spark_conf), itemsets=self.itemsets)
        raise ValueError(f"counting.engine = {self.engine!r}: choose 'local' or 'spark'")

    def describe(self) -> str:
        """One line for the asset's metadata."""
        return "local (in the step's process)" if self.engine == "local" else f"{self.engine} at {self.master}"

    def block_rows(self, in_process: int = 1024) -> int:
        """Rows of dense co-occurrence (item-kNN's blocks) the step's own process holds at once, for the up-front
        memory estimate: ``in_process`` when counting here, none on Spark (its executors hold them, 64 MB each)."""
        return in_process if self.engine == "local" else 0
