"""How much memory a family needs at a data size, against what the machine has: refuse before fitting.

A family that cannot fit is refused up front with its estimate and what is available (``refusal``), never
by the kernel's out-of-memory killer half-way through. The estimates count the large arrays each family
holds at its peak (dense item-item matrices above all) and leave out Python's and the libraries' own
overhead, which is why only ``fraction`` of the available memory is offered (``MemoryBudget``).
Available memory is what ``/proc/meminfo`` calls ``MemAvailable``, or less when a cgroup (container)
limit leaves less (cgroup v2 ``memory.max`` - ``memory.current``, v1 ``limit_in_bytes`` - ``usage_in_bytes``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

GIB = 2 ** 30
FLOAT32 = 4


@dataclass(frozen=True)
class DataSize:
    """What the estimates depend on: users (a basket standing in for one where there are none), items in
    the catalogue, and stored (user, item) pairs of the user-item matrix."""

    n_users: int
    n_items: int
    nnz: int


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" for no limit


def meminfo_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """``MemAvailable`` in bytes, or None where the file is missing (not Linux)."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cgroup_available(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """Bytes the process's cgroup may still allocate (its limit minus its use), or None without a limit."""
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(root / limit_file), _read_int(root / usage_file)
        if limit is not None and usage is not None and limit < 2 ** 60:  # v1 writes ~2^63 for no limit
            return max(limit - usage, 0)
    return None


def available_bytes(meminfo: Path = Path("/proc/meminfo"), cgroup_root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The smaller of the machine's available memory and the cgroup's headroom; None when neither is known."""
    known = [b for b in (meminfo_available(meminfo), cgroup_available(cgroup_root)) if b is not None]
    return min(known) if known else None


@dataclass(frozen=True)
class MemoryBudget:
    """``total_bytes``: the budget itself (given, or measured now); a family may use ``fraction`` of it."""

    total_bytes: int | None
    fraction: float = 0.75
    measured: bool = True  # False: a budget set in config

    @classmethod
    def measure(cls, fraction: float = 0.75) -> "MemoryBudget":
        return cls(available_bytes(), fraction, True)

    @classmethod
    def given(cls, gib: float, fraction: float = 0.75) -> "MemoryBudget":
        return cls(int(gib * GIB), fraction, False)

    @property
    def usable_bytes(self) -> int | None:
        return None if self.total_bytes is None else int(self.total_bytes * self.fraction)

    def refusal(self, what: str, need_bytes: int, setting: str) -> str | None:
        """None when ``need_bytes`` fits; else one sentence naming ``what``, the estimate, what is available and
        ``setting`` (what to change)."""
        usable = self.usable_bytes
        if usable is None or need_bytes <= usable:
            return None
        source = "measured now" if self.measured else "memory_budget_gb in config"
        return (f"{what} needs about {human_bytes(need_bytes)}, more than the {human_bytes(usable)} allowed "
                f"({self.fraction:.0%} of {human_bytes(self.total_bytes)} available, {source}); {setting}")


def human_bytes(n: float) -> str:
    """``n`` bytes in GiB, MiB or KiB, whichever reads best (one decimal)."""
    for unit, size in (("GiB", GIB), ("MiB", 2 ** 20)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n / 1024:.1f} KiB"


def dense_square_bytes(n_items: int, itemsize: int = FLOAT32) -> int:
    """One dense (n_items, n_items) matrix."""
    return n_items * n_items * itemsize


def ease_fit_bytes(size: DataSize, float64_max_items: int = 20_000) -> int:
    """EASE's peak (training/models/ease.py): on the item side the Gram matrix and its Cholesky inverse, two
    (n, n) matrices; through the users (fewer users than items) the (U, U) Gram matrix, X^T K^-1 (n, U) and P
    (n, n). float64 up to ``float64_max_items`` items, float32 above."""
    n, u = size.n_items, size.n_users
    item = 8 if n <= float64_max_items else FLOAT32
    if u < n:
        return (u * u + n * u + n * n) * item
    return 2 * n * n * item


def spectral_fit_bytes(size: DataSize, n_factors: int, chunk_size: int = 2048, bases: int = 5) -> int:
    """GF-CF / ChebyCF (closed form, the item-item matrix never formed): the normalised matrix and its
    transpose (12 bytes a pair each, twice over for the float64 SVD copy), the singular vectors (k, n) and
    (n, k), and a scoring chunk's dense blocks (``bases`` (n, chunk) arrays plus one (U, chunk))."""
    n, u = size.n_items, size.n_users
    k = min(n_factors, max(min(n, u) - 1, 0))
    return 4 * 12 * size.nnz + 3 * k * (n + u) * 8 + (bases * n + u) * min(chunk_size, max(u, 1)) * FLOAT32


def itemknn_fit_bytes(size: DataSize, k: int, chunk_size: int = 1024) -> int:
    """Item-kNN: a chunk of dense similarity rows (co-counts, denominators, similarities: (chunk, n) each, in
    float64) and the kept neighbours (k per item, 12 bytes each, twice for the float64 scoring copy)."""
    n = size.n_items
    return 4 * min(chunk_size, n) * n * 8 + 2 * min(k, max(n - 1, 0)) * n * 12 + 3 * 12 * size.nnz


def factor_fit_bytes(size: DataSize, dim: int) -> int:
    """MF / iALS / LightGCN: user and item factors with optimiser state (x4) and the training pairs."""
    return 4 * (size.n_users + size.n_items) * dim * FLOAT32 + 4 * 12 * size.nnz


def item_item_export_bytes(n_items: int) -> int:
    """An item-item ONNX export: the dense (n, n) float32 matrix and its copy inside the ONNX protobuf
    while the file is written (49,688 items: 9.2 GiB each, 18.4 GiB together)."""
    return 2 * dense_square_bytes(n_items)


def sparse_item_item_bytes(n_items: int, top_n: int) -> int:
    """A top-N item-item model (``training.models.sparse``): n_items * N weights as CSR (12 bytes each), its
    float64 scoring copy (16 bytes each), and four copies of the padded (n_items, N) ids and weights of an export
    (12 bytes each): the arrays, the ONNX initializers, the serialised file and ONNX Runtime's session for the parity
    check (1M items x 50: 6.1 GiB added measured with a 200-user parity batch, 6.5 GiB estimated)."""
    cells = n_items * min(top_n, max(n_items - 1, 1))
    return cells * (12 + 16 + 4 * 12)


def sparse_build_bytes(n_items: int, top_n: int, chunk_size: int = 1024) -> int:
    """Building the top-N rows: one (chunk, n_items) float32 block of W, its copy and the top-k selection's
    intermediates (x4), plus what is kept."""
    return 4 * min(chunk_size, n_items) * n_items * FLOAT32 + sparse_item_item_bytes(n_items, top_n)


def sansa_fit_bytes(size: DataSize, density: float) -> int:
    """SANSA (``training.models.sansa_ease``): the sparse Gram matrix X^T X (at most min(n^2, sum over users of
    their items squared) entries, bounded here by 200 co-occurring items a pair's row on average), the Cholesky
    factor and the two weight factors at ``density`` * n^2 entries each, 12 bytes an entry, twice for copies."""
    n = size.n_items
    gram = min(n * n, max(size.nnz, 1) * 200)
    factors = 3 * int(density * n * n)
    return 2 * 12 * (gram + factors) + 3 * 12 * size.nnz


def item_item_form(n_items: int, budget: MemoryBudget, setting: str = "auto") -> str:
    """How item-item families are served at ``n_items``: ``dense`` (the exact (n, n) matrix) while its export fits
    ``budget``, else ``sparse`` (each item's top-N neighbours); ``setting`` ``dense`` or ``sparse`` forces it."""
    if setting in ("dense", "sparse"):
        return setting
    if setting != "auto":
        raise ValueError(f"item_item_form must be 'auto', 'dense' or 'sparse', not {setting!r}")
    usable = budget.usable_bytes
    return "dense" if usable is None or item_item_export_bytes(n_items) <= usable else "sparse"


# ---------------------------------------------------------------- a large shop's pipeline, stage by stage
# (benchmarks/synthetic_scale.py refuses a stage up front when its estimate does not fit)

def generation_bytes(rows_per_part: int, n_items: int) -> int:
    """``data_checks.synthetic_scale``: one part's arrays (about 200 bytes a line: draws, sorts, Arrow strings)
    and the catalog's (about 150 bytes an item)."""
    return 200 * rows_per_part + 150 * n_items


def ingestion_bytes(rows_per_part: int, n_items: int) -> int:
    """``data_checks.chunked.ingest_parts``: one part read and mapped to canonical columns (string ids as Python
    objects and their copies, about 1 kB a row) and the catalog with its category paths (about 500 bytes an item).
    Measured at 2M-row parts and 1M items: 2.17 GiB added (estimate 2.3 GiB)."""
    return 1000 * rows_per_part + 500 * n_items


def validation_bytes(rows_per_part: int, n_items: int) -> int:
    """``data_checks.chunked.validate_parts``: one part under Great Expectations' row rules (the frame, GX's
    copies and masks, the duplicate check's hashing: about 1.7 kB a row) and the accepted catalog with its ids
    as the in-set expectation's value set (about 700 bytes an item). Measured at 2M-row parts and 1M items:
    3.75 GiB added (estimate 3.8 GiB)."""
    return 1700 * rows_per_part + 700 * n_items


def part_matrix_bytes(rows: int, n_users: int) -> int:
    """``training.part_matrices``: one id column in Arrow (about 16 bytes a row), three int64 position arrays, the
    COO/CSR copies of two matrices (about 24 bytes a row each) and scipy's conversion temporaries (sort keys and
    permutation, about 40 bytes a row), the users' ids as Python strings (70 bytes). Measured at 50M rows and 5M
    users: 6.0 GiB added (estimate 6.3 GiB)."""
    return rows * (16 + 3 * 8 + 2 * 24 + 40) + n_users * 70


def pair_rules_bytes(pair_products: int, nnz: int) -> int:
    """``training.association.pair_rules``: the basket matrix's CSC/CSR copies (12 bytes an entry, three of them)
    and the pair counts ``B_f^T B_f`` with its upper triangle as COO (about 40 bytes for each of the
    ``pair_products``, sum over baskets of (frequent items in it)^2, the counts' worst case)."""
    return 36 * nnz + 40 * pair_products


def block_knn_bytes(nnz: int, n_items: int, k: int, max_block_pairs: int) -> int:
    """``training.models.sparse_blocks.cosine_top_k``: the user-item matrix and its transpose (12 bytes an entry,
    three copies with the weighted one), one block's product and its similarities, sort keys and selection
    (about 60 bytes for each of ``max_block_pairs``), and the kept neighbours (k per item, 12 bytes, twice)."""
    return 36 * nnz + 60 * max_block_pairs + 24 * n_items * min(k, max(n_items - 1, 0))


def ials_fit_bytes(size: DataSize, dim: int) -> int:
    """iALS (``training.models.mf.IALSModule``): user and item factors and the conjugate-gradient vectors
    (residual, direction, product, right-hand side and a temporary: seven (n, dim) float32 arrays a side), the
    observed pairs as two torch CSR copies with int64 indices and the per-pair rows and dots (about 64 bytes a
    pair)."""
    return 7 * (size.n_users + size.n_items) * dim * FLOAT32 + 64 * size.nnz


def factor_export_bytes(n_users: int, n_items: int, dim: int) -> int:
    """A factor model's ONNX export (``serving.onnx_export.factor_graph``): the factors, their contiguous copies
    and the protobuf's copy while the file is written (three float32 copies of (n_users + n_items, dim))."""
    return 3 * (n_users + n_items) * dim * FLOAT32


def factor_scoring_bytes(n_items: int, batch: int) -> int:
    """ONNX Runtime scoring a batch of users through a factor export: the (batch, n_items) scores, their masked
    copy and TopK's workspace (four float32 blocks)."""
    return 4 * batch * n_items * FLOAT32
