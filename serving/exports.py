"""Export every served model family (``training.families.SERVED``: as factors, or in an item-item form) to ONNX
and verify each file against its native model.

The check reads the written file back (as batch scoring will), so a file that is corrupt, truncated or
holds different weights is refused here, before anything registers or scores with it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import scipy.sparse as sp

from serving.onnx_scoring import OnnxRecommender, check_parity
from training.data import InteractionData
from training.families import ITEM_ITEM
from training.models.base import Recommender
from training.models.footprint import FLOAT32, MemoryBudget, item_item_export_bytes, sparse_item_item_bytes
from training.models.sparse import DEFAULT_TOP_N, SparseItemItem

if TYPE_CHECKING:  # the onnx package takes a second or more to import: loaded when a family is exported
    from serving.onnx_export import ExportInfo

MAX_ABS_TOLERANCE = 1e-4  # the lifecycle issue's parity bounds
MIN_IDENTICAL_FRACTION = 0.999


def export_bytes(family: str, n_users: int, n_items: int, dim: int = 128, form: str = "dense",
                 top_n: int = DEFAULT_TOP_N) -> int:
    """Memory an export of ``family`` needs while it is written: an item-item family's dense matrix twice
    (``item_item_export_bytes``) or, ``form="sparse"``, its top-``top_n`` neighbours (``sparse_item_item_bytes``);
    a factor family's (n_users + n_items, ``dim``) factors twice."""
    if family in ITEM_ITEM:
        return sparse_item_item_bytes(n_items, top_n) if form == "sparse" else item_item_export_bytes(n_items)
    return 2 * (n_users + n_items) * dim * FLOAT32


def export_refusal(family: str, n_users: int, n_items: int, budget: MemoryBudget, dim: int = 128,
                   form: str = "dense", top_n: int = DEFAULT_TOP_N) -> str | None:
    """Why ``family`` is not exported at this size (its estimate against ``budget``), or None when it fits."""
    if family not in ITEM_ITEM:
        what = f"{n_users + n_items:,} factor rows"
    elif form == "sparse":
        what = f"{n_items:,} items x their top {top_n} neighbours"
    else:
        what = f"a dense {n_items:,} x {n_items:,} float32 matrix"
    return budget.refusal(f"the ONNX export of {family} ({what})",
                          export_bytes(family, n_users, n_items, dim, form, top_n),
                          f"leave {family!r} out of model_exports.families (the family is still evaluated), or "
                          "export it where more memory is free")


def export_family(model: Recommender, data: InteractionData, path: str | Path, k: int = 20) -> ExportInfo:
    """Write ``model`` (fitted on ``data``) to ``path`` with its canonical user and item ids inside."""
    from serving.onnx_export import export_recommender

    return export_recommender(model, path, k=k, user_ids=data.user_ids, item_ids=data.item_ids)


def serving_model(model: Recommender, form: str, top_n: int = DEFAULT_TOP_N) -> Recommender:
    """The model as it is served: ``model`` itself (``form="dense"``, or already cut), else its top-``top_n``
    neighbour form (``training.models.sparse.SparseItemItem``), which the export is then checked against."""
    if form != "sparse" or isinstance(model, SparseItemItem) or not getattr(model, "is_linear", True):
        return model  # rules with multi-item antecedents are compact as they are (RuleForm), and not linear
    return SparseItemItem.from_model(model, top_n)


@dataclass
class ExportCheck:
    """One export and its parity against the native model (``error``: why the file could not be run)."""

    family: str
    model_name: str
    path: str
    kind: str
    n_items: int
    k: int
    passed: bool
    max_abs_diff: float
    top_k_identical_fraction: float
    n_users: int
    max_abs_tolerance: float
    min_identical_fraction: float
    top_k_equivalent_fraction: float = 0.0
    error: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def verify_export(family: str, native: Recommender, path: str | Path, user_items: sp.csr_matrix,
                  open_model: Callable[[Path], OnnxRecommender], n_users: int = 1000, seed: int = 0
                  ) -> ExportCheck:
    """Parity of the ONNX file at ``path`` with ``native`` on a fixed seeded sample of ``n_users`` users
    (``user_items``: (n_users, n_items) training CSR of the model). A file that cannot be loaded or run,
    or that disagrees in shape, fails with the reason in ``error`` instead of raising."""
    path = Path(path)
    failed = dict(family=family, model_name=native.name, path=str(path), kind="", n_items=0, k=0, passed=False,
                  max_abs_diff=float("inf"), top_k_identical_fraction=0.0, n_users=0,
                  max_abs_tolerance=MAX_ABS_TOLERANCE, min_identical_fraction=MIN_IDENTICAL_FRACTION)
    try:
        exported = open_model(path)
        report = check_parity(native, exported, user_items, n_users=n_users, seed=seed,
                              max_abs_tolerance=MAX_ABS_TOLERANCE, min_identical_fraction=MIN_IDENTICAL_FRACTION)
    except Exception as exc:  # onnxruntime and protobuf raise many types; the check reports, never crashes
        return ExportCheck(**failed, error=f"{type(exc).__name__}: {exc}"[:2000])
    info = exported.info
    return ExportCheck(family, native.name, str(path), info.kind, info.n_items, info.k, report.passed,
                       report.max_abs_diff, report.top_k_identical_fraction, report.n_users,
                       report.max_abs_tolerance, report.min_identical_fraction, report.top_k_equivalent_fraction)
