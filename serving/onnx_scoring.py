"""Batch scoring with ONNX Runtime: provider choice, chunked top-K, parity against the native model, and
the ``user_recommendations`` table streamed to Parquet."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from tqdm.auto import tqdm

from cobuy_files.storage import atomic_path
from training.models.base import Recommender
from training.ranking import mask_seen, top_k

if TYPE_CHECKING:  # the onnx package (a second or more to import) loads when a model is opened
    from serving.onnx_export import ExportInfo

PROVIDER_CHOICES = ("auto", "cuda", "cpu")


def choose_providers(preference: str = "auto") -> list[str]:
    """ONNX Runtime providers for ``preference``: ``auto`` takes CUDA where this onnxruntime build has it
    and falls back to CPU; ``cuda`` insists (ValueError if unavailable); ``cpu`` is CPU only."""
    import onnxruntime as ort

    if preference not in PROVIDER_CHOICES:
        raise ValueError(f"provider must be one of {PROVIDER_CHOICES}, not {preference!r}")
    available = ort.get_available_providers()
    if preference == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if preference == "cuda":
        raise ValueError(f"CUDAExecutionProvider requested but this onnxruntime offers only {available}")
    return ["CPUExecutionProvider"]


def open_session(path: str | Path, provider: str = "auto", threads: int | None = None):
    """An ``InferenceSession`` for ``path``; unreadable or invalid files raise ValueError naming the file."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=choose_providers(provider))
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: cannot load ONNX model: {exc}") from exc


def sparse_history_feeds(history: sp.csr_matrix) -> dict[str, np.ndarray]:
    """A sparse item-item export's inputs for (B, n_items) CSR histories: the (row, item) pairs of the items
    held (``history_rows``, ``history_items``, int64 (M,) each) and ``batch_size`` [B]."""
    h = sp.csr_matrix(history > 0)  # a new matrix: the caller's is left as it is
    rows = np.repeat(np.arange(h.shape[0], dtype=np.int64), np.diff(h.indptr))
    return {"history_items": h.indices.astype(np.int64), "history_rows": rows,
            "batch_size": np.array([h.shape[0]], np.int64)}


@dataclass
class OnnxRecommender:
    """An exported recommender run by ONNX Runtime.

    ``top_k(users, history)``: users are positions in the model's training data, ``history`` their
    (len(users), n_items) CSR rows (items to exclude; for item-item models also the model input)."""

    path: Path
    provider: str = "auto"
    threads: int | None = None
    info: ExportInfo = field(init=False)

    def __post_init__(self) -> None:
        from serving.onnx_export import read_info

        self.path = Path(self.path)
        try:
            self.info = read_info(self.path)
        except Exception as exc:  # protobuf decode errors, missing metadata
            raise ValueError(f"{self.path}: not a readable cobuy ONNX export ({exc})") from exc
        self.session = open_session(self.path, self.provider, self.threads)
        self.active_provider = self.session.get_providers()[0]

    def _feeds(self, users: np.ndarray, history: sp.csr_matrix) -> dict[str, np.ndarray]:
        if self.info.kind == "factor":
            coo = history.tocoo()
            seen = np.stack([coo.row, coo.col], axis=1).astype(np.int64) if coo.nnz else np.zeros((0, 2), np.int64)
            return {"user_index": np.asarray(users, np.int64), "seen_index": seen}
        if self.info.kind == "item_item_sparse":
            return sparse_history_feeds(history)
        return {"history": (history > 0).astype(np.float32).toarray()}

    def top_k(self, users: np.ndarray, history: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """(len(users), k) item positions and float32 scores, best first, seen items excluded."""
        items, scores = self.session.run(["top_items", "top_scores"], self._feeds(users, history))
        return items, scores

    def scores(self, users: np.ndarray, history: sp.csr_matrix) -> np.ndarray:
        """(len(users), n_items) raw scores (no masking)."""
        return self.session.run(["scores"], self._feeds(users, history))[0]


@dataclass
class ParityReport:
    n_users: int
    max_abs_diff: float
    top_k_identical_fraction: float
    k: int
    passed: bool
    max_abs_tolerance: float
    min_identical_fraction: float
    top_k_equivalent_fraction: float = 1.0  # identical up to swaps of tied items (see check_parity)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def check_parity(native: Recommender, exported: OnnxRecommender, user_items: sp.csr_matrix, n_users: int = 1000,
                 seed: int = 0, max_abs_tolerance: float = 1e-4, min_identical_fraction: float = 0.999,
                 tie_tolerance: float = 1e-6) -> ParityReport:
    """Compare ONNX Runtime with the native model on a fixed sample of users: the largest absolute score
    difference, and the share of users whose top-k ids are identical. ``user_items``: (n_users, n_items)
    training CSR of the model.

    Two items whose native scores are equal to float32 precision can trade places through rounding alone
    (summation order differs between BLAS and ONNX Runtime's MatMul; differences of ~3e-7 were seen on
    GF-CF), so a user also counts as *equivalent* when, rank by rank, the native scores of the two lists'
    items differ by at most ``tie_tolerance * max(1, |score|)``: the lists are identical up to tied items.
    ``passed`` requires the score bound and ``min_identical_fraction`` of users equivalent;
    ``top_k_identical_fraction`` stays the strict figure."""
    rng = np.random.default_rng(seed)
    users = np.sort(rng.choice(user_items.shape[0], min(n_users, user_items.shape[0]), replace=False))
    k = exported.info.k
    max_diff, same, equivalent = 0.0, 0, 0
    for chunk in np.array_split(users, max(len(users) // 512, 1)):
        history = user_items[chunk]
        native_scores = np.asarray(native.score_users(chunk), np.float32)
        onnx_scores = exported.scores(chunk, history)
        diff = float(np.max(np.abs(native_scores - onnx_scores))) if len(chunk) else 0.0
        diff = diff if np.isfinite(diff) else float("inf")  # NaN or inf scores never pass
        max_diff = max(max_diff, diff)
        native_top, _ = top_k(mask_seen(native_scores, history), k)
        onnx_top, _ = exported.top_k(chunk, history)
        identical = np.all(native_top == onnx_top, axis=1)
        rows = np.arange(len(chunk))[:, None]
        a, b = native_scores[rows, native_top], native_scores[rows, onnx_top]
        with np.errstate(invalid="ignore"):
            gap = np.where(np.isneginf(a) & np.isneginf(b), 0.0, np.abs(a - b))  # both past the last unseen item
            tied = gap <= tie_tolerance * np.maximum(1.0, np.abs(a))
        same += int(identical.sum())
        equivalent += int((identical | np.all(tied, axis=1)).sum())
    frac, equiv = same / max(len(users), 1), equivalent / max(len(users), 1)
    return ParityReport(len(users), max_diff, frac, k, bool(max_diff <= max_abs_tolerance and
                                                             equiv >= min_identical_fraction),
                        max_abs_tolerance, min_identical_fraction, equiv)


def iter_top_k(model: OnnxRecommender, user_items: sp.csr_matrix, users: np.ndarray | None = None,
               chunk_size: int = 2048, progress: bool = True
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yield (user positions (b,), items (b, k), scores (b, k)) chunk by chunk: memory stays at one
    chunk's (b, n_items) score block whatever the number of users."""
    users = np.arange(user_items.shape[0]) if users is None else np.asarray(users)
    starts = range(0, len(users), chunk_size)
    for start in tqdm(starts, desc=f"scoring {model.info.family}", unit="chunk", disable=not progress):
        chunk = users[start:start + chunk_size]
        items, scores = model.top_k(chunk, user_items[chunk])
        yield chunk, items, scores


RECOMMENDATION_SCHEMA = pa.schema([("user_id", pa.string()), ("rank", pa.int32()), ("item_id", pa.string()),
                                   ("score", pa.float32())])


def write_user_recommendations(model: OnnxRecommender, user_items: sp.csr_matrix, user_ids: Sequence,
                               item_ids: Sequence, path: str | Path, chunk_size: int = 2048,
                               progress: bool = True) -> dict:
    """Stream every user's top-k to a Parquet file ``path`` (user_id, rank, item_id, score), written
    atomically. Items that are -inf (nothing left to recommend) are dropped. Returns summary facts."""
    user_ids, item_ids = np.asarray(user_ids).astype(str), np.asarray(item_ids).astype(str)
    rows, t0 = 0, time.perf_counter()
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, RECOMMENDATION_SCHEMA) as writer:
            for users, items, scores in iter_top_k(model, user_items, chunk_size=chunk_size, progress=progress):
                k = items.shape[1]
                keep = np.isfinite(scores).ravel()
                table = pa.table({
                    "user_id": np.repeat(user_ids[users], k)[keep],
                    "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(users))[keep],
                    "item_id": item_ids[items.ravel()[keep]],
                    "score": scores.ravel()[keep].astype(np.float32)}, schema=RECOMMENDATION_SCHEMA)
                writer.write_table(table)
                rows += table.num_rows
    return {"rows": rows, "users": int(user_items.shape[0]), "seconds": time.perf_counter() - t0,
            "provider": model.active_provider, "path": str(Path(path).resolve())}
