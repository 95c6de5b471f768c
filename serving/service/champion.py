"""The served version: loading a bundle, and swapping it for a new one while requests run.

``ChampionHolder`` polls MLflow's alias (``cobuy-serving@champion`` by default) every ``poll_seconds``; when it
names another version, the version is downloaded into its own folder and loaded in a background thread, then
put in place by one reference assignment. A request reads the reference once and answers from that version to
the end, so nothing fails during a swap, and the old version is freed when its last request is done."""
from __future__ import annotations

import gc
import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from serving.service.bundle import BundleInfo, read_info
from serving.service.evidence import Evidence
from serving.service.related_lists import RelatedLists
from serving.service.render import Renderer
from serving.service.scorers import open_scorer

log = logging.getLogger("cobuy.serving")


@dataclass
class TextIndex:
    """The bundled text encoder (ONNX Runtime) and the catalog's (n_items, d) unit embeddings."""

    encoder: object
    embeddings: np.ndarray
    n_twins: int = 20  # new items' partners (training.cold_start.PartnerPolicy; these defaults when none is bundled)
    temperature: float = 0.1
    prior_weight: float = 0.0
    prior: np.ndarray | None = None

    def embed(self, text: str) -> np.ndarray:
        return self.encoder.embed([text])[0]


@dataclass
class Served:
    """One loaded version: the scorer, the catalog in the model's item order, histories and evidence."""

    name: str
    version: str
    info: BundleInfo
    folder: Path
    item_ids: np.ndarray  # (n_items,) str
    item_index: dict
    catalog: pd.DataFrame  # items.parquet: item_id + the catalog fields present
    user_index: dict
    user_items: sp.csr_matrix
    scorer: object
    evidence: Evidence
    text: TextIndex | None
    loaded_at: float = field(default_factory=time.time)
    load_seconds: float = 0.0
    download_dir: Path | None = None  # removed once another version replaces this one
    related: RelatedLists | None = None  # each item's related list, made once (None: scored on every request)

    def __post_init__(self) -> None:
        c = self.catalog
        self.titles = c["title"].fillna("").astype(str).to_numpy() if "title" in c else self.item_ids
        self.categories = c["category"].astype("string").fillna("").to_numpy(dtype=object) if "category" in c else None
        self.prices = c["price"].to_numpy(np.float64) if "price" in c else None
        self.in_stock = c["in_stock"].fillna(False).to_numpy(bool) if "in_stock" in c else None
        self.category_names = sorted({x for x in self.categories if x}) if self.categories is not None else []
        self._category_masks: dict[str, np.ndarray] = {}
        self.render = Renderer(self)  # the answers' JSON pieces of this version

    def category_mask(self, category: str) -> np.ndarray:
        mask = self._category_masks.get(category)
        if mask is None:
            mask = self.categories == category
            self._category_masks[category] = mask
        return mask

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "family": self.info.family, "format": self.info.format,
                "ranked_by": self.info.score_meaning, "source": self.info.source, "n_items": len(self.item_ids),
                "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
                "load_seconds": round(self.load_seconds, 3), "text_encoder": bool(self.text),
                "related_lists_kept": len(self.related) if self.related is not None else 0}


def load_served(folder: str | Path, name: str, version: str, threads: int = 1, on_cache=None,
                with_text: bool = True, related_cache_bytes: int = 0, related_warm_seconds: float = 0.0,
                on_related_cache=None) -> Served:
    """Open the bundle in ``folder`` (see ``serving.service.bundle``); errors name the folder and the file.
    ``with_text=False`` leaves the text encoder unloaded (the gate scores customers only).
    ``related_cache_bytes`` > 0 keeps items' related lists (``serving.service.related_lists``), the most bought
    made here for up to ``related_warm_seconds``."""
    t0 = time.perf_counter()
    folder = Path(folder)
    info = read_info(folder)
    catalog = pd.read_parquet(folder / "items.parquet")
    item_ids = catalog["item_id"].astype(str).to_numpy(dtype=object)
    user_ids = np.asarray(json.loads((folder / "user_ids.json").read_text()), dtype=object)
    user_items = sp.load_npz(folder / "user_items.npz").tocsr()
    baskets = sp.load_npz(folder / "baskets.npz").tocsr()
    for what, m, rows in (("user_items.npz", user_items, len(user_ids)), ("baskets.npz", baskets, None)):
        if m.shape[1] != len(item_ids) or (rows is not None and m.shape[0] != rows):
            raise ValueError(f"{folder / what}: shape {m.shape} does not match {len(item_ids)} items"
                             + (f" and {rows} users" if rows is not None else ""))
    scorer = open_scorer(folder, info.format, info.model_file, None, item_ids, user_ids, user_items, threads)
    text = None
    if info.text and with_text:
        from serving.text_onnx import OnnxTextEncoder

        encoder = OnnxTextEncoder(folder / "text" / info.text["model"], folder / "text", provider="cpu",
                                  max_length=int(info.text.get("max_length", 64)), threads=threads)
        policy = info.text.get("partner_policy") or {}
        prior = folder / "text" / "partner_prior.npy"
        text = TextIndex(encoder, np.load(folder / "text" / "embeddings.npy").astype(np.float32),
                         int(policy.get("n_twins", 20)), float(policy.get("temperature", 0.1)),
                         float(policy.get("prior_weight", 0.0)), np.load(prior) if prior.exists() else None)
    served = Served(name, str(version), info, folder, item_ids, {str(i): n for n, i in enumerate(item_ids)}, catalog,
                    {str(u): n for n, u in enumerate(user_ids)}, user_items, scorer, Evidence(baskets, on_cache),
                    text)
    if related_cache_bytes > 0:
        served.related = RelatedLists(scorer, served.evidence, served.render.row, capacity_bytes=related_cache_bytes,
                                      on_cache=on_related_cache)
        if related_warm_seconds > 0:
            served.related.warm(np.argsort(-served.evidence.counts, kind="stable"), related_warm_seconds)
    served.load_seconds = time.perf_counter() - t0
    return served


GC_SETTLE_SECONDS = 5.0  # after a swap: the old version's requests are done, its objects garbage


def settle_gc() -> None:
    """Collect the garbage (a replaced version: its catalog and renderer refer to each other, so only the cyclic
    collector frees it), then freeze what is left, the loaded version with its libraries, out of the collector's
    sight (``gc.freeze``): a full collection walked all of it, 60 ms with every request waiting (Online Retail's
    baskets p99 170 ms at 500 requests/s); it now walks what requests and caches made since. Unfrozen first, so a
    version frozen at the previous swap is collected at this one."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ChampionHolder:
    """The version being served, kept current with the alias (see the module docstring).

    ``resolve()`` -> the version the alias names now (None: none); ``fetch(version, dst)`` -> the bundle folder
    of that version downloaded under ``dst``. Both default to MLflow (``serving.registry``); tests may pass
    their own."""

    def __init__(self, tracking_uri: str, model_name: str, alias: str, cache_dir: str | Path, threads: int = 1,
                 metrics=None, resolve=None, fetch=None, related_cache_mb: float = 64.0,
                 related_warm_seconds: float = 2.0, related_warm_background: bool = True) -> None:
        from serving import registry

        self.tracking_uri, self.model_name, self.alias = tracking_uri, model_name, alias
        self.cache_dir, self.threads, self.metrics = Path(cache_dir), threads, metrics
        self.related_cache_bytes, self.related_warm_seconds = int(related_cache_mb * 2**20), related_warm_seconds
        self.related_warm_background = related_warm_background  # after the load, fill the related lists' cache
        self.resolve = resolve or (lambda: registry.alias_version(tracking_uri, model_name, alias))
        self.fetch = fetch or (lambda version, dst: registry.download_serving_version(
            tracking_uri, model_name, version, dst))
        self.current: Served | None = None
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._refresh_lock = threading.Lock()

    def sweep(self) -> None:
        """Remove version folders left by services that are gone (``v<version>.<pid>.<token>`` of a dead pid)."""
        for folder in (self.cache_dir / self.model_name).glob("v*.*.*"):
            try:
                os.kill(int(folder.name.split(".")[1]), 0)
            except ProcessLookupError:
                shutil.rmtree(folder, ignore_errors=True)
            except (ValueError, PermissionError):
                continue

    def refresh(self) -> bool:
        """Load the version the alias names now if it is not the one served; True when it swapped."""
        with self._refresh_lock:
            try:
                version = self.resolve()
            except Exception as exc:  # registry down: keep serving what is loaded
                self._failed(f"cannot read {self.model_name}@{self.alias} at the tracking URI: "
                             f"{type(exc).__name__}: {exc}")
                return False
            if version is None:
                self.last_error = (f"{self.model_name} has no '{self.alias}' version yet: run `make demo` (or the "
                                   "retrain job) so the gate promotes one, or set the alias in the MLflow UI")
                return False
            if self.current is not None and self.current.version == str(version):
                return False
            # a folder of this process's own: replicas or a second `make serve` sharing the cache never touch it
            dst = self.cache_dir / self.model_name / f"v{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            try:
                folder = self.fetch(str(version), dst)
                on_cache = self.metrics.cache_hook("co_purchases") if self.metrics else None
                on_related = self.metrics.cache_hook("related_lists") if self.metrics else None
                served = load_served(folder, self.model_name, str(version), self.threads, on_cache,
                                     related_cache_bytes=self.related_cache_bytes,
                                     related_warm_seconds=self.related_warm_seconds, on_related_cache=on_related)
            except Exception as exc:
                shutil.rmtree(dst, ignore_errors=True)
                self._failed(f"loading {self.model_name} v{version} failed: {type(exc).__name__}: {exc}")
                return False
            old, self.current, self.last_error = self.current, served, None
            if old is not None and getattr(old, "download_dir", None):
                shutil.rmtree(old.download_dir, ignore_errors=True)  # loaded into memory; requests hold the object
            served.download_dir = dst if dst.exists() else None
            if self.metrics:
                self.metrics.model_loaded(served, old)
            if served.related is not None and self.related_warm_background:
                self._warm_rest(served)
            log.info(json.dumps({"event": "model_loaded", "model": served.name, "version": served.version,
                                 "family": served.info.family, "format": served.info.format,
                                 "previous_version": old.version if old else None,
                                 "load_seconds": round(served.load_seconds, 3)}))
            return True

    def _warm_rest(self, served: Served) -> None:
        """Go on making the most-bought items' related lists in a daemon thread while the version serves, until the
        cache is full (on Gowalla's 40,981 items about 12,000 lists of 64 MB, 6 s of CPU once per version), the
        version is replaced or the holder stops: a list made here is a request that does not score the item."""
        order = np.argsort(-served.evidence.counts, kind="stable")
        keep_going = lambda: self.current is served and not self._stop.is_set()  # noqa: E731
        threading.Thread(target=served.related.warm, args=(order, float("inf"), keep_going, 0.0005),
                         name="related-warm", daemon=True).start()

    def _failed(self, message: str) -> None:
        self.last_error = message
        if self.metrics:
            self.metrics.reload_failed()
        log.warning(json.dumps({"event": "model_load_failed", "error": message[:500]}))

    def start(self, poll_seconds: float) -> None:
        """Poll the alias every ``poll_seconds`` in a daemon thread (the first load runs at once)."""
        def loop() -> None:
            self.sweep()
            while not self._stop.is_set():
                if self.refresh() and not self._stop.wait(min(poll_seconds, GC_SETTLE_SECONDS)):
                    settle_gc()
                self._stop.wait(poll_seconds)

        self._thread = threading.Thread(target=loop, name="champion-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
