"""Drift profile and metrics: known answers on tiny frames and on the synthetic shop."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from data_checks.drift import decode_hashes, hash_ids, interaction_profile


def frame(rows: list[tuple]) -> pd.DataFrame:
    """Canonical interactions from ``(user, item, 'YYYY-MM-DD', basket)`` tuples."""
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "basket_id"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    df["quantity"] = 1.0
    df["price"] = 1.0
    return df.astype({"user_id": "string", "item_id": "string", "basket_id": "string"})


def test_profile_counts_and_window():
    df = frame([("u1", "a", "2024-01-01", "b1"), ("u1", "b", "2024-01-01", "b1"), ("u2", "a", "2024-01-10", "b2"),
                (None, "c", "2024-01-10", "b3")])
    p = json.loads(json.dumps(interaction_profile(df)))  # survives a JSON round trip
    assert p["item_counts"] == {"a": 2, "b": 1, "c": 1}
    assert list(p["item_counts"]) == ["a", "b", "c"]  # most popular first
    assert p["n_rows"] == 4 and p["n_users"] == 2 and p["n_anonymous_rows"] == 1 and p["n_baskets"] == 3
    assert p["window_start"] == "2024-01-01T00:00:00" and p["window_end"] == "2024-01-10T00:00:00"
    assert p["n_days"] == 10 and p["n_active_days"] == 2 and p["rows_per_day"] == pytest.approx(0.4)
    assert p["basket_sizes"] == {"sizes": [1, 2], "counts": [2, 1]}
    assert p["basket_size_mean"] == pytest.approx(4 / 3)
    assert np.array_equal(decode_hashes(p["user_hashes"]), hash_ids(["u2", "u1"]))
    assert "u1" not in json.dumps(p)  # user ids are pseudonymised


def test_profile_without_basket_ids_groups_user_days():
    df = frame([("u1", "a", "2024-01-01", None), ("u1", "b", "2024-01-01", None), ("u1", "a", "2024-01-02", None)])
    p = interaction_profile(df)
    assert p["basket_key"] == "user_day"
    assert p["basket_sizes"] == {"sizes": [1, 2], "counts": [1, 1]}


def test_profile_of_empty_window_is_valid_json():
    p = interaction_profile(frame([]))
    assert p["n_rows"] == 0 and p["rows_per_day"] is None and p["item_counts"] == {}
    json.dumps(p)
