"""A built-in, deterministic synthetic shop: the embedded default dataset and the tests' fixture.

It has what real shop data has, with right answers known by construction:

* a catalog with readable titles, categories and brands;
* users with tastes (a Dirichlet mix over categories) and popularity skew inside categories;
* planted complementary pairs: whenever the anchor is in a basket, the partner joins it with
  probability ``pair_strength`` (so the pair has high lift and confidence);
* several months of timestamps with a seasonal shift: from ``shift_month`` on, the seasonal category
  is several times more popular and new seasonal items (unsold before) enter the range;
* cold items with twin titles: in the last month a "Deluxe" twin of some anchors appears (never sold
  before) and is bought with the anchor's partner, so text alone should lead from the twin to it;
* a small share of dirty rows of the kinds real data has (duplicates, returns, zero prices, missing
  item codes), so quarantine has work to do;
* ``baskets_only``: the same baskets with no customer and no time (the arules "Groceries" form).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data_checks.readers import RawTables
from data_checks.schema import INTERACTION_COLUMNS, ITEM_COLUMNS, OPTIONAL_INTERACTION_COLUMNS, conform

CATEGORIES: dict[str, list[str]] = {
    "Kitchen": ["Mug", "Plate", "Bowl", "Tea Towel", "Cutting Board", "Whisk", "Cookie Jar", "Lunch Box"],
    "Garden": ["Plant Pot", "Watering Can", "Seed Tray", "Bird Feeder", "Trowel", "Planter", "Garden Kneeler"],
    "Stationery": ["Notebook", "Pen Set", "Pencil Case", "Washi Tape", "Sticky Notes", "Journal", "Bookmark"],
    "Toys": ["Jigsaw Puzzle", "Teddy Bear", "Building Blocks", "Kite", "Skipping Rope", "Marbles", "Spinning Top"],
    "Home Decor": ["Candle", "Photo Frame", "Cushion Cover", "Vase", "Wall Clock", "Doormat", "Mirror"],
    "Seasonal": ["Christmas Bauble", "Advent Calendar", "Paper Chain", "Gift Wrap", "Star Topper", "Wreath",
                 "Stocking", "Snow Globe"],
}
BRANDS: dict[str, list[str]] = {
    "Kitchen": ["Hearthware", "Copper Lane"], "Garden": ["Greenfold", "Bloomfield"],
    "Stationery": ["Inkwell & Co", "Papermint"], "Toys": ["Tumbletown", "Kitebird"],
    "Home Decor": ["Nook", "Lumen House"], "Seasonal": ["Yuletide", "Frostberry"],
}
ADJECTIVES = ["Vintage", "Retro", "Floral", "Classic", "Rustic", "Spotty", "Striped", "Enamel", "Ceramic", "Wooden"]
COLOURS = ["Red", "Blue", "Green", "Pink", "Ivory", "Black", "Mint", "Mustard"]
# (category, anchor noun, partner noun): complementary products bought together.
PLANTED_PAIRS: list[tuple[str, str, str]] = [
    ("Kitchen", "Espresso Machine", "Descaling Tablets"),
    ("Kitchen", "Tea Pot", "Tea Strainer"),
    ("Home Decor", "Fairy Lights", "AA Batteries"),
    ("Stationery", "Watercolour Set", "Paint Brushes"),
    ("Garden", "Garden Hose", "Hose Nozzle"),
    ("Kitchen", "Cake Tin", "Baking Paper"),
    ("Toys", "Train Set", "Train Tracks"),
    ("Seasonal", "Christmas Tree Stand", "Tree Skirt"),
]


@dataclass
class SyntheticShopConfig:
    seed: int = 7
    n_users: int = 600
    items_per_category: int = 30
    n_months: int = 6
    start: str = "2024-01-01"
    baskets_per_user_month: float = 1.6
    mean_basket_size: float = 4.0
    pair_strength: float = 0.85
    shift_month: int = 4  # 0-based month from which the seasonal shift applies
    seasonal_boost: float = 6.0
    new_seasonal_items: int = 12  # enter the range at shift_month
    n_twins: int = 4  # "Deluxe" twins of the first anchors, sold only in the last month
    dirty_fraction: float = 0.01
    # the Groceries form: baskets only, no customer ids and no timestamps (tastes and planted pairs unchanged)
    baskets_only: bool = False


@dataclass
class SyntheticShop:
    tables: RawTables
    planted_pairs: list[tuple[str, str]] = field(default_factory=list)  # (anchor item_id, partner item_id)
    new_items: list[str] = field(default_factory=list)  # first sold at shift_month
    twins: list[tuple[str, str, str]] = field(default_factory=list)  # (twin, its anchor, the anchor's partner)


def generate_shop(cfg: SyntheticShopConfig | None = None) -> SyntheticShop:
    cfg = cfg or SyntheticShopConfig()
    rng = np.random.default_rng(cfg.seed)
    cats = list(CATEGORIES)
    rows = []  # catalog rows
    for c in cats:
        for j in range(cfg.items_per_category):
            noun = CATEGORIES[c][j % len(CATEGORIES[c])]
            title = f"{ADJECTIVES[(j * 7 + len(c)) % len(ADJECTIVES)]} {COLOURS[(j * 3 + len(noun)) % len(COLOURS)]} {noun}"
            rows.append((c, title, BRANDS[c][j % 2], False))
    pair_rows = []
    for c, a, b in PLANTED_PAIRS:
        for noun in (a, b):
            pair_rows.append(len(rows))
            rows.append((c, f"{BRANDS[c][0]} {noun}", BRANDS[c][0], False))
    new_rows = []
    for j in range(cfg.new_seasonal_items):
        new_rows.append(len(rows))
        noun = CATEGORIES["Seasonal"][j % len(CATEGORIES["Seasonal"])]
        rows.append(("Seasonal", f"New Season {COLOURS[j % len(COLOURS)]} {noun}", BRANDS["Seasonal"][j % 2], True))
    twin_rows = []
    for c, a, _ in PLANTED_PAIRS[:cfg.n_twins]:
        twin_rows.append(len(rows))
        rows.append((c, f"{BRANDS[c][0]} Deluxe {a}", BRANDS[c][0], False))
    n_items = len(rows)
    item_ids = np.array([f"SKU{i + 1:05d}" for i in range(n_items)], dtype=object)
    item_cat = np.array([cats.index(r[0]) for r in rows])
    is_new = np.array([r[3] for r in rows])
    prices = np.round(rng.lognormal(1.3, 0.6, n_items), 2) + 0.5
    items = pd.DataFrame({"item_id": item_ids, "title": [r[1] for r in rows], "category": [r[0] for r in rows],
                          "brand": [r[2] for r in rows], "price": prices})
    anchors = np.array(pair_rows[0::2])
    partners = np.array(pair_rows[1::2])
    is_partner = np.zeros(n_items, bool)
    is_partner[partners] = True

    # popularity inside each category: Zipf-like weights (partners are only bought with their anchor)
    pop = 1.0 / (1.0 + rng.permutation(n_items) % cfg.items_per_category) ** 0.8
    pop[anchors] = np.median(pop)
    pop[is_partner] = 0.0
    pop[twin_rows] = 0.0  # twins are only bought in place of their anchor
    twin_of = {int(anchors[k]): t for k, t in enumerate(twin_rows)}
    tastes = rng.dirichlet(np.full(len(cats), 0.4), size=cfg.n_users)
    seasonal = cats.index("Seasonal")
    start = pd.Timestamp(cfg.start)

    recs = []
    basket_no = 0
    for m in range(cfg.n_months):
        month_start = start + pd.DateOffset(months=m)
        days = ((month_start + pd.DateOffset(months=1)) - month_start).days
        month_np = np.datetime64(month_start, "m")
        boost = np.ones(len(cats))
        if m >= cfg.shift_month:
            boost[seasonal] = cfg.seasonal_boost
        available = ~is_new if m < cfg.shift_month else np.ones(n_items, bool)
        for u in range(cfg.n_users):
            cat_w = tastes[u] * boost
            cat_w /= cat_w.sum()
            item_w = cat_w[item_cat] * pop * available
            item_w /= item_w.sum()
            user = f"U{u + 1:05d}"
            for _ in range(rng.poisson(cfg.baskets_per_user_month)):
                size = max(1, rng.poisson(cfg.mean_basket_size - 1) + 1)
                chosen = set(rng.choice(n_items, size=min(size, int((item_w > 0).sum())), replace=False, p=item_w))
                if m == cfg.n_months - 1:  # the twins' month: half the anchors bought are the new twin
                    for a, t in twin_of.items():
                        if a in chosen and rng.random() < 0.5:
                            chosen.discard(a)
                            chosen.add(t)
                for a, b in zip(anchors, partners):
                    t = twin_of.get(int(a), -1)
                    if (a in chosen or t in chosen) and rng.random() < cfg.pair_strength:
                        chosen.add(b)
                basket_no += 1
                ts = month_np + np.timedelta64(int(rng.integers(days)) * 1440 + int(rng.integers(8 * 60, 21 * 60)), "m")
                for i in sorted(chosen):
                    recs.append((user, item_ids[i], ts, f"B{basket_no:06d}", float(rng.integers(1, 4)), prices[i]))
    inter = pd.DataFrame(recs, columns=["user_id", "item_id", "timestamp", "basket_id", "quantity", "price"])
    inter = _add_dirt(inter, cfg.dirty_fraction, rng)
    if cfg.baskets_only:
        inter["user_id"], inter["timestamp"] = None, pd.NaT
    inter["source_row"] = np.arange(len(inter), dtype=np.int64) + 1
    inter["source_file"] = "synthetic_shop"
    tables = RawTables(conform(inter, INTERACTION_COLUMNS, OPTIONAL_INTERACTION_COLUMNS),
                       conform(items, ITEM_COLUMNS, {}), "synthetic")
    twins = [(str(item_ids[t]), str(item_ids[anchors[k]]), str(item_ids[partners[k]])) for k, t in enumerate(twin_rows)]
    return SyntheticShop(tables, [(str(a), str(b)) for a, b in zip(item_ids[anchors], item_ids[partners])],
                         [str(i) for i in item_ids[is_new]], twins)


def _add_dirt(inter: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Append a few rows of each real-world fault: exact duplicates, returns (negative quantity),
    zero prices and missing item codes."""
    n = int(len(inter) * fraction)
    if n == 0:
        return inter
    picks = [inter.iloc[rng.choice(len(inter), n, replace=False)].copy() for _ in range(4)]
    picks[1]["quantity"] = -picks[1]["quantity"]
    picks[2]["price"] = 0.0
    picks[3]["item_id"] = None
    out = pd.concat([inter, *picks], ignore_index=True)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)
