"""The user-item and basket matrices of a large clean table held as Parquet parts, built column by column.

:func:`training.data.build_interaction_data` indexes ids through pandas object arrays, about 60 bytes a value:
9 GB for three id columns of 5 * 10^7 rows. Here each id column is read on its own with pyarrow (about 12 bytes a
value), turned into integer positions by Arrow's hash kernels, and dropped before the next: the peak is one
string column plus the int32 positions of all three. The result is the same :class:`InteractionData` (users
sorted by id, items in catalog order, baskets in order of first appearance, as ``build_interaction_data``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from training.data import InteractionData, binary_matrix


def _column(parts: list[Path], name: str) -> pa.Array:
    """One column of every part, as one contiguous Arrow array."""
    return pa.concat_arrays([pq.read_table(p, columns=[name]).column(name).combine_chunks() for p in parts])


def _codes(values: pa.Array, sort: bool) -> tuple[np.ndarray, pa.Array]:
    """(len(values),) int64 positions of each value among its distinct values (-1 where missing) and those
    distinct values (sorted when ``sort``, else in order of first appearance)."""
    uniques = pc.unique(values).drop_null()
    if sort:
        uniques = pc.take(uniques, pc.array_sort_indices(uniques))
    codes = pc.index_in(values, value_set=uniques).fill_null(-1)
    return codes.to_numpy().astype(np.int64), uniques


def interaction_data_from_parts(parts: list[Path], item_ids: np.ndarray) -> InteractionData:
    """``InteractionData`` of clean canonical parts (``user_id``, ``item_id``, ``basket_id``) over the catalog
    ``item_ids`` ((n_items,) str, its order kept). Rows without a user count in baskets only; a row without a
    basket id is its user's basket (the parts written by ``data_checks.chunked`` from a shop export always have
    one)."""
    catalog = pa.array(np.asarray(item_ids, dtype=object), pa.string())
    items = pc.index_in(_column(parts, "item_id"), value_set=catalog).fill_null(-1).to_numpy().astype(np.int64)
    users, user_ids = _codes(_column(parts, "user_id"), sort=True)
    baskets_raw = _column(parts, "basket_id")
    if baskets_raw.null_count:  # fall back to the user's id, marked apart from real basket ids
        baskets_raw = pc.coalesce(baskets_raw, pc.binary_join_element_wise(
            "\x00user|", _column(parts, "user_id").cast(pa.string()), ""))
    baskets, _ = _codes(baskets_raw, sort=False)
    del baskets_raw
    n_items = len(catalog)
    ui = binary_matrix(users, items, len(user_ids), n_items)
    bi = binary_matrix(baskets, items, int(baskets.max()) + 1 if len(baskets) else 0, n_items)
    return InteractionData(user_ids.to_numpy(zero_copy_only=False).astype(object),
                           np.asarray(item_ids, dtype=object), ui.astype(np.float32), bi.astype(np.float32))
