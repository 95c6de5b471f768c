"""A synthetic shop at any size (up to 10^6 items, 10^7 customers, 10^8 order lines) in bounded memory.

Where :mod:`data_checks.synthetic_shop` builds a small shop row by row (the tests' fixture), this module writes a
large one as a shop would export it: Parquet parts of order lines (``order_id``, ``customer_id``, ``sku``,
``ordered_at``, ``quantity``, ``unit_price``), an item catalog (``sku``, ``title``, ``category``, ``brand``,
``price``) and a ground-truth file naming what was planted. Everything is vectorised numpy, one part (a block of
customers) at a time, each part from its own seeded generator, so memory is one part's arrays whatever the size.

What is in it, with the right answers known by construction:

* **power-law popularity**: item of popularity rank r is drawn with weight ``1 / (r + 1) ** zipf_exponent``
  (Zipf-like), over the whole catalog or, with probability ``home_share``, within the customer's home category;
* **customers of varied activity**: lines per customer ``1 + Poisson(lambda_c)``, lambda_c lognormal;
* **orders**: a customer's lines are split into orders of ``mean_order_size`` lines on average, each order at
  one time in ``days`` days from ``start``; an item appears at most once an order;
* **planted complementary pairs**: whenever an anchor is in an order, its partner (an item sold no other way)
  joins that order with probability ``pair_strength``;
* **planted baskets**: ``bundle_order_share`` of orders also hold a whole bundle of ``bundle_size`` items that
  are sold no other way;
* **dirt**: ``dirty_fraction`` of lines get a faulty copy in the same order (exact duplicate, return with a
  negative quantity, zero price, missing SKU, SKU not in the catalog), counted by the reason the cleaning rules
  give it (``data_checks.cleaning.REASONS``), so validation's quarantine counts can be checked exactly.

Each order lies in one part (parts are blocks of customers), so a per-part duplicate check finds every duplicate.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data_checks.synthetic_shop import ADJECTIVES, BRANDS, CATEGORIES, COLOURS

# the export's column names, mapped to the canonical ones (``data_checks.readers.EventsSource.columns``)
EXPORT_COLUMNS = {"basket_id": "order_id", "user_id": "customer_id", "item_id": "sku", "timestamp": "ordered_at",
                  "quantity": "quantity", "price": "unit_price"}
CATALOG_COLUMNS = {"item_id": "sku", "title": "title", "category": "category", "brand": "brand", "price": "price"}
# the kinds of dirt planted, by the quarantine reason the cleaning rules give them
DIRT_REASONS = ("duplicate_row", "non_positive_quantity", "non_positive_price", "missing_item_id",
                "item_not_in_catalog")
MAX_ORDERS_PER_CUSTOMER = 999  # order ids are customer number * 1000 + the order's number


@dataclass
class ScaledShopConfig:
    """Sizes and planted structure. ``n_interactions`` is the target number of clean order lines (the planted
    partners and bundles included; the actual count is within a fraction of a percent)."""

    n_items: int = 1_000_000
    n_customers: int = 5_000_000
    n_interactions: int = 50_000_000
    seed: int = 7
    zipf_exponent: float = 1.0
    home_share: float = 0.5  # share of a customer's lines drawn within their home category
    activity_sigma: float = 0.8  # lognormal spread of customers' activity
    mean_order_size: float = 2.5
    n_planted_pairs: int = 1000
    pair_strength: float = 0.8
    min_anchor_lines: float = 200.0  # anchors are drawn among items expected to sell 1x-10x this many lines
    n_bundles: int = 200
    bundle_size: int = 4
    bundle_order_share: float = 0.002
    dirty_fraction: float = 0.001
    rows_per_part: int = 2_000_000
    start: str = "2024-01-01"
    days: int = 365


@dataclass
class ScaledShop:
    """Where the generated shop lies and what was planted (item ids). ``rows``: order lines written (dirt
    included); ``dirt``: faulty lines by the reason cleaning gives them."""

    folder: Path
    parts: list[Path]
    catalog: Path
    ground_truth: Path
    planted_pairs: list[tuple[str, str]] = field(default_factory=list)
    bundles: list[list[str]] = field(default_factory=list)
    rows: int = 0
    orders: int = 0
    dirt: dict[str, int] = field(default_factory=dict)


def coded_strings(prefix: str, positions: np.ndarray, width: int) -> pa.Array:
    """``prefix`` + zero-padded 1-based number for each position (int array), as an Arrow string array:
    ``SKU0000042`` for item 41, ``C0000007`` for customer 6."""
    text = pc.utf8_lpad(pc.cast(pa.array(np.asarray(positions) + 1), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, text, "")


@dataclass
class _Plan:
    """The catalog-level draws shared by every part: popularity, categories, planted items."""

    category: np.ndarray  # (n_items,) category number
    price: np.ndarray  # (n_items,) float64
    cdf: np.ndarray  # (n_items,) cumulative weights over items sorted by category (then rank)
    by_category: np.ndarray  # (n_items,) item positions sorted by category
    cat_lo: np.ndarray  # (n_categories,) cdf value before each category's first item
    cat_hi: np.ndarray  # (n_categories,) cdf value at each category's last item
    cat_weight: np.ndarray  # (n_categories,) share of the catalog's weight (home categories drawn by it)
    partner_of: np.ndarray  # (n_items,) the planted partner of an anchor, else -1
    bundles: np.ndarray  # (n_bundles, bundle_size) item positions
    base_lines: float  # lines drawn by popularity (the rest are planted partners and bundles)
    share: np.ndarray  # (n_items,) probability of each item in a drawn line (0 for planted items)


def _leaf_categories() -> list[tuple[str, str]]:
    """(top category, noun) leaves: ``Kitchen > Mug`` and so on."""
    return [(top, noun) for top, nouns in CATEGORIES.items() for noun in nouns]


def _plan(cfg: ScaledShopConfig, rng: np.random.Generator) -> _Plan:
    n = cfg.n_items
    leaves = _leaf_categories()
    category = rng.integers(0, len(leaves), n)
    price = np.round(rng.lognormal(2.0, 0.8, n), 2) + 0.5
    rank = rng.permutation(n)  # item i has popularity rank rank[i]
    weight = 1.0 / (rank + 1.0) ** cfg.zipf_exponent
    expected = weight / weight.sum() * cfg.n_interactions
    # planted items: bundles and partners among the tail (sold only as planted), anchors in a popularity band
    tail = np.flatnonzero(rank >= n // 2)
    need = cfg.n_bundles * cfg.bundle_size + cfg.n_planted_pairs
    if need > len(tail):
        raise ValueError(f"{need:,} planted items (bundles and partners) do not fit in the catalog's tail "
                         f"({len(tail):,} items): raise n_items or plant fewer")
    planted = rng.choice(tail, need, replace=False)
    bundles = planted[:cfg.n_bundles * cfg.bundle_size].reshape(cfg.n_bundles, cfg.bundle_size)
    partners = planted[cfg.n_bundles * cfg.bundle_size:]
    band = np.flatnonzero((expected >= cfg.min_anchor_lines) & (expected <= 10 * cfg.min_anchor_lines))
    band = np.setdiff1d(band, planted)
    if len(band) < cfg.n_planted_pairs:  # too small a shop for the band: the items nearest to it from above
        order = np.argsort(np.abs(np.log(expected / cfg.min_anchor_lines)))
        band = np.setdiff1d(order[:cfg.n_planted_pairs + need], planted)[:cfg.n_planted_pairs * 2]
    anchors = rng.choice(band, cfg.n_planted_pairs, replace=False)
    partner_of = np.full(n, -1, np.int64)
    partner_of[anchors] = partners
    weight[planted] = 0.0
    share = weight / weight.sum()
    by_category = np.lexsort((rank, category))
    cdf = np.cumsum(share[by_category])
    cdf /= cdf[-1]
    counts = np.bincount(category, minlength=len(leaves))
    ends = np.cumsum(counts)
    cat_hi = cdf[np.maximum(ends - 1, 0)]
    cat_lo = np.concatenate([[0.0], cat_hi[:-1]])
    cat_weight = np.bincount(category, weights=share, minlength=len(leaves))
    out = _Plan(category, price, cdf, by_category, cat_lo, cat_hi, cat_weight / cat_weight.sum(), partner_of,
                bundles, 0.0, share)
    out.base_lines = cfg.n_interactions / (1.0 + _planted_share(cfg, out))
    return out


def _planted_share(cfg: ScaledShopConfig, plan: _Plan) -> float:
    """Planted lines (partners, bundles) per drawn line, expected."""
    anchors = plan.partner_of >= 0
    return (cfg.pair_strength * plan.share[anchors].sum()
            + cfg.bundle_order_share * cfg.bundle_size / cfg.mean_order_size)


def _draw_items(plan: _Plan, home: np.ndarray, in_home: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One item per line: by popularity over the catalog, or within ``home`` where ``in_home``."""
    u = rng.random(len(home))
    lo = np.where(in_home, plan.cat_lo[home], 0.0)
    hi = np.where(in_home, plan.cat_hi[home], 1.0)
    target = lo + u * (hi - lo)
    order = np.argsort(target)  # sorted queries walk the cdf in order (several times faster than random ones)
    at = np.empty(len(target), np.int64)
    at[order] = np.searchsorted(plan.cdf, target[order], side="right")
    return plan.by_category[np.minimum(at, len(plan.cdf) - 1)]


def _first_of_runs(sorted_values: np.ndarray) -> np.ndarray:
    """(n,) bool: True where a sorted array's value differs from the one before (the first of each run)."""
    first = np.ones(len(sorted_values), bool)
    first[1:] = sorted_values[1:] != sorted_values[:-1]
    return first


def _part_lines(cfg: ScaledShopConfig, plan: _Plan, first: int, last: int, rng: np.random.Generator
                ) -> dict[str, np.ndarray]:
    """The clean order lines of customers ``first .. last - 1``: customer, order, item, order time, as arrays
    sorted by order."""
    n_cust = last - first
    mean = plan.base_lines / cfg.n_customers
    activity = rng.lognormal(-cfg.activity_sigma ** 2 / 2, cfg.activity_sigma, n_cust)
    lines = 1 + rng.poisson(np.maximum(mean - 1.0, 0.0) * activity)
    n_orders = np.minimum(1 + rng.binomial(lines - 1, 1.0 / cfg.mean_order_size), MAX_ORDERS_PER_CUSTOMER)
    customer = np.repeat(np.arange(first, last), lines)
    home = np.repeat(rng.choice(len(plan.cat_weight), n_cust, p=plan.cat_weight), lines)
    order_no = (rng.random(len(customer)) * np.repeat(n_orders, lines)).astype(np.int64)
    items = _draw_items(plan, home, rng.random(len(customer)) < cfg.home_share, rng)
    order = customer * (MAX_ORDERS_PER_CUSTOMER + 1) + order_no
    # planted partners: join their anchor's order with probability pair_strength
    partner = plan.partner_of[items]
    joins = (partner >= 0) & (rng.random(len(items)) < cfg.pair_strength)
    # planted bundles: a share of the orders also hold a whole bundle
    orders = np.sort(order)
    orders = orders[_first_of_runs(orders)]
    with_bundle = orders[rng.random(len(orders)) < cfg.bundle_order_share]
    bundle = plan.bundles[rng.integers(0, len(plan.bundles), len(with_bundle))]
    order = np.concatenate([order, order[joins], np.repeat(with_bundle, bundle.shape[1])])
    items = np.concatenate([items, partner[joins], bundle.ravel()])
    # an item at most once an order (the first draw kept); lines sorted by order, then item
    key = order * len(plan.cdf) + items
    by_key = np.argsort(key, kind="stable")
    first_at = by_key[_first_of_runs(key[by_key])]
    order, items = order[first_at], items[first_at]
    new_order = _first_of_runs(order)
    which = np.cumsum(new_order) - 1  # each line's order, numbered 0 .. n_orders - 1
    seconds = rng.integers(0, cfg.days * 86_400, int(new_order.sum()))
    return {"order": order, "customer": order // (MAX_ORDERS_PER_CUSTOMER + 1), "item": items,
            "seconds": seconds[which]}


def _dirt(lines: dict[str, np.ndarray], fraction: float, rng: np.random.Generator
          ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Faulty copies of ``fraction`` of the lines, one kind each (``DIRT_REASONS``): the copies' arrays (item
    -1: missing SKU; item -2: a SKU not in the catalog), their kinds (index into ``DIRT_REASONS``) and the
    positions of the lines copied."""
    n = len(lines["item"])
    pick = np.flatnonzero(rng.random(n) < fraction)
    kind = rng.integers(0, len(DIRT_REASONS), len(pick))
    copies = {k: v[pick].copy() for k, v in lines.items()}
    copies["item"][kind == DIRT_REASONS.index("missing_item_id")] = -1
    copies["item"][kind == DIRT_REASONS.index("item_not_in_catalog")] = -2
    return copies, kind, pick


def _write_part(path: Path, lines: dict[str, np.ndarray], quantity: np.ndarray, price: np.ndarray,
                start: np.datetime64, widths: tuple[int, int]) -> None:
    items = lines["item"]
    sku = coded_strings("SKU", np.maximum(items, 0), widths[0])
    sku = pc.if_else(pa.array(items == -2), pc.binary_join_element_wise(sku, "X", ""), sku)
    sku = pc.if_else(pa.array(items == -1), pa.scalar(None, pa.string()), sku)
    table = pa.table({
        "order_id": pa.array(lines["order"]),
        "customer_id": coded_strings("C", lines["customer"], widths[1]),
        "sku": sku,
        "ordered_at": pa.array(start + lines["seconds"].astype("timedelta64[s]")),
        "quantity": pa.array(quantity),
        "unit_price": pa.array(price),
    })
    pq.write_table(table, path)


def _catalog_table(plan: _Plan, width: int, rng: np.random.Generator) -> pa.Table:
    """The catalog: SKU, a title (brand, adjective, colour, the leaf's noun), ``Top > Noun`` category, brand,
    list price."""
    leaves = _leaf_categories()
    tops = list(CATEGORIES)
    n = len(plan.category)
    top = np.array([tops.index(t) for t, _ in leaves])[plan.category]
    brand = pa.array([BRANDS[t][b] for t in tops for b in (0, 1)]).take(pa.array(top * 2 + rng.integers(0, 2, n)))
    noun = pa.array([w for _, w in leaves]).take(pa.array(plan.category))
    adjective = pa.array(ADJECTIVES).take(pa.array(rng.integers(0, len(ADJECTIVES), n)))
    colour = pa.array(COLOURS).take(pa.array(rng.integers(0, len(COLOURS), n)))
    title = pc.binary_join_element_wise(brand, adjective, colour, noun, " ")
    category = pc.binary_join_element_wise(pa.array(tops).take(pa.array(top)), noun, " > ")
    return pa.table({"sku": coded_strings("SKU", np.arange(n), width), "title": title, "category": category,
                     "brand": brand, "price": pa.array(plan.price)})


def generate_scaled_shop(cfg: ScaledShopConfig, folder: str | Path) -> ScaledShop:
    """Write the shop under ``folder``: ``orders/part-00000.parquet`` ..., ``catalog.parquet`` and
    ``ground_truth.json`` (the config, the planted pairs and bundles as SKUs, rows, orders, dirt by reason).
    Memory: one part's arrays (about 100 bytes a line) plus the catalog's (about 60 bytes an item)."""
    folder = Path(folder)
    (folder / "orders").mkdir(parents=True, exist_ok=True)
    for old in (folder / "orders").glob("part-*.parquet"):
        old.unlink()
    rng = np.random.default_rng([cfg.seed, 0])
    plan = _plan(cfg, rng)
    widths = (len(str(cfg.n_items)), len(str(cfg.n_customers)))
    pq.write_table(_catalog_table(plan, widths[0], rng), folder / "catalog.parquet")
    per_part = max(1, int(cfg.rows_per_part * cfg.n_customers / max(cfg.n_interactions, 1)))
    # an item drawn twice for one order is kept once: draw more lines by the share lost on a trial part
    trial_last = min(per_part, cfg.n_customers)
    wanted = plan.base_lines * trial_last / cfg.n_customers * (1.0 + _planted_share(cfg, plan))
    for _ in range(2):  # twice: drawing more loses a little more
        trial = _part_lines(cfg, plan, 0, trial_last, np.random.default_rng([cfg.seed, 0, 1]))
        plan.base_lines *= wanted / max(len(trial["item"]), 1)
    start = np.datetime64(cfg.start, "s")
    parts, rows, orders = [], 0, 0
    dirt = dict.fromkeys(DIRT_REASONS, 0)
    for p, first in enumerate(range(0, cfg.n_customers, per_part)):
        prng = np.random.default_rng([cfg.seed, p + 1])
        lines = _part_lines(cfg, plan, first, min(first + per_part, cfg.n_customers), prng)
        orders += int(_first_of_runs(lines["order"]).sum())  # lines come sorted by order
        quantity = prng.geometric(0.6, len(lines["item"])).astype(np.float64)
        price = plan.price[lines["item"]]
        copies, kind, pick = _dirt(lines, cfg.dirty_fraction, prng)
        # a copy keeps its line's quantity and price (an exact duplicate), but for a return or a zero price
        q_copy = np.where(kind == DIRT_REASONS.index("non_positive_quantity"), -1.0, 1.0) * quantity[pick]
        p_copy = np.where(kind == DIRT_REASONS.index("non_positive_price"), 0.0, price[pick])
        for r, c in zip(*np.unique(kind, return_counts=True)):
            dirt[DIRT_REASONS[r]] += int(c)
        merged = {k: np.concatenate([v, copies[k]]) for k, v in lines.items()}
        placed = np.argsort(merged["order"], kind="stable")  # each copy beside its order's lines
        path = folder / "orders" / f"part-{p:05d}.parquet"
        _write_part(path, {k: v[placed] for k, v in merged.items()}, np.concatenate([quantity, q_copy])[placed],
                    np.concatenate([price, p_copy])[placed], start, widths)
        parts.append(path)
        rows += len(placed)
    sku = _sku_text(widths[0])
    anchors = np.flatnonzero(plan.partner_of >= 0)
    shop = ScaledShop(folder, parts, folder / "catalog.parquet", folder / "ground_truth.json",
                      [(sku(a), sku(plan.partner_of[a])) for a in anchors],
                      [[sku(i) for i in b] for b in plan.bundles], rows, orders, dirt)
    shop.ground_truth.write_text(json.dumps({
        "config": asdict(cfg), "rows": rows, "orders": orders, "dirt": dirt, "parts": [p.name for p in parts],
        "planted_pairs": shop.planted_pairs, "bundles": shop.bundles,
        "export_columns": EXPORT_COLUMNS, "catalog_columns": CATALOG_COLUMNS}, indent=1) + "\n")
    return shop


def _sku_text(width: int):
    """One item position as its SKU text (as :func:`coded_strings` writes it)."""
    return lambda i: f"SKU{int(i) + 1:0{width}d}"


def read_ground_truth(folder: str | Path) -> dict:
    """The ground-truth file of a shop written by :func:`generate_scaled_shop`."""
    return json.loads((Path(folder) / "ground_truth.json").read_text())
