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


# ---------------------------------------------------------------- metrics with obvious answers
from data_checks.drift import (  # noqa: E402
    DriftThresholds,
    basket_size_shift,
    decide,
    drift_report,
    item_popularity_js,
    item_popularity_psi,
    js_divergence,
    new_item_rate,
    new_user_rate,
    psi,
    volume_change,
)


def test_js_divergence_known_answers():
    assert js_divergence(np.array([3, 1, 0]), np.array([6, 2, 0])) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)
    assert js_divergence(np.array([1, 0]), np.array([0, 1]), base=np.e) == pytest.approx(np.log(2))
    # P = (1, 0), Q = (1/2, 1/2): M = (3/4, 1/4); JS = (ln(4/3) + (ln(2/3) + ln 2) / 2) / 2 nats
    expected = (np.log(4 / 3) + 0.5 * np.log(2 / 3) + 0.5 * np.log(2)) / 2 / np.log(2)
    assert js_divergence(np.array([2, 0]), np.array([1, 1])) == pytest.approx(expected)
    assert js_divergence(np.array([2, 0]), np.array([1, 1])) == pytest.approx(js_divergence(np.array([1, 1]),
                                                                                            np.array([2, 0])))
    with pytest.raises(ValueError):
        js_divergence(np.array([0, 0]), np.array([1, 1]))


def test_psi_known_answers():
    assert psi(np.array([5, 5]), np.array([50, 50])) == pytest.approx(0.0)
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5)
    assert psi(np.array([1, 1]), np.array([1, 3])) == pytest.approx(0.25 * np.log(2) + 0.25 * np.log(1.5))
    assert np.isfinite(psi(np.array([1, 0]), np.array([0, 1])))  # empty bins floored, not infinite


def test_item_popularity_metrics_identical_and_disjoint():
    ref = {"a": 5, "b": 3, "c": 2}
    assert item_popularity_js(ref, {"a": 10, "b": 6, "c": 4}) == pytest.approx(0.0, abs=1e-12)
    assert item_popularity_psi(ref, {"a": 10, "b": 6, "c": 4}) == pytest.approx(0.0, abs=1e-12)
    assert item_popularity_js(ref, {"x": 1, "y": 9}) == pytest.approx(1.0)
    assert new_item_rate(ref, {"x": 1, "y": 9}) == 1.0
    assert new_item_rate(ref, {"a": 3, "x": 1}) == 0.25
    # PSI ignores rows on new items and lumps the tail past top_k into one bin
    assert item_popularity_psi(ref, {"a": 5, "b": 3, "c": 2, "new": 100}) == pytest.approx(0.0, abs=1e-12)
    assert item_popularity_psi(ref, {"a": 5, "b": 2, "c": 3}, top_k=1) == pytest.approx(0.0, abs=1e-12)
    assert item_popularity_psi(ref, {"a": 5, "b": 2, "c": 3}, top_k=3) > 0.0


def test_new_user_rate_counts_rows_of_unseen_users():
    ref = hash_ids(["u1", "u2"])
    users = pd.Series(["u1", "u1", "u3", None, "u4"], dtype="string")
    assert new_user_rate(ref, users) == pytest.approx(2 / 4)  # anonymous row left out
    assert new_user_rate(ref, pd.Series(["u2"], dtype="string")) == 0.0


def test_basket_size_shift_is_growth_over_mean():
    ref = np.array([0, 4, 4])  # sizes 2 and 3, mean 2.5
    assert basket_size_shift(ref, ref * 3) == pytest.approx(0.0)
    assert basket_size_shift(ref, np.array([0, 0, 0, 4, 4])) == pytest.approx(2 / 2.5)  # every basket +2


def test_volume_change():
    assert volume_change(100.0, 150.0) == pytest.approx(0.5)
    assert volume_change(100.0, 50.0) == pytest.approx(-0.5)
    assert volume_change(None, 50.0) is None


def test_report_of_identical_window_is_zero_and_decision_skips():
    df = frame([(f"u{i % 7}", f"i{i % 11}", f"2024-01-{1 + i % 28:02d}", f"b{i // 3}") for i in range(300)])
    report = drift_report(interaction_profile(df), df)
    m = report["metrics"]
    for key in ("item_js", "item_psi", "new_item_rate", "new_user_rate", "basket_size_shift", "volume_change"):
        assert m[key] == pytest.approx(0.0, abs=1e-12), key
    json.dumps(report)
    d = decide(report, DriftThresholds())
    assert d.status == "below_thresholds" and not d.fire and d.exceeded == []
    assert "item_js 0 <= 0.15" in d.reason and "new_user_rate" not in d.reason  # no threshold: not judged


def test_decision_names_the_metric_that_passed_its_threshold():
    ref = frame([("u1", "a", "2024-01-01", "b1"), ("u2", "b", "2024-01-02", "b2")] * 60)
    cur = frame([("u1", "a", "2024-02-01", "b1"), ("u2", "z", "2024-02-02", "b2")] * 60)
    report = drift_report(interaction_profile(ref), cur)
    assert report["metrics"]["new_item_rate"] == pytest.approx(0.5)
    assert report["n_new_items"] == 1 and report["new_items_top"] == ["z"]
    d = decide(report, DriftThresholds(item_js=None, item_psi=None))
    assert d.fire and d.exceeded == ["new_item_rate"] and "new_item_rate 0.5 > 0.05" in d.reason
    assert decide(report, DriftThresholds(min_rows=10_000)).status == "insufficient_data"
    assert not decide(report, DriftThresholds(item_js=None, item_psi=None, new_item_rate=0.6)).fire


def test_volume_threshold_is_two_sided():
    ref = frame([("u1", "a", f"2024-01-{d:02d}", f"b{d}") for d in range(1, 31)] * 10)  # 10 rows a day
    same_rate = frame([("u1", "a", f"2024-02-{d:02d}", f"b{d}") for d in range(1, 11)] * 10)  # 10 a day, 10 days
    assert drift_report(interaction_profile(ref), same_rate)["metrics"]["volume_change"] == pytest.approx(0.0)
    fewer = frame([("u1", "a", f"2024-02-{d:02d}", f"b{d}") for d in range(1, 11)] * 4)  # 4 a day
    report = drift_report(interaction_profile(ref), fewer)
    assert report["metrics"]["volume_change"] == pytest.approx(-0.6)
    assert decide(report, DriftThresholds(min_rows=1)).exceeded == ["volume_change"]


def test_synthetic_shop_seasonal_month_drifts_stable_months_do_not():
    from data_checks.cleaning import clean
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

    cfg = SyntheticShopConfig()
    shop = generate_shop(cfg)
    rows = clean(shop.tables).interactions
    month = rows["timestamp"].dt.to_period("M")
    months = sorted(month.unique())
    ref = interaction_profile(rows[month.isin(months[:2])])
    thresholds = DriftThresholds()
    for i in range(2, cfg.n_months):
        report = drift_report(ref, rows[month == months[i]])
        decision = decide(report, thresholds)
        assert decision.fire == (i >= cfg.shift_month), (months[i], decision.reason)
        if i >= cfg.shift_month:
            assert {"item_psi", "new_item_rate"} <= set(decision.exceeded)
            assert set(report["new_items_top"]) <= set(shop.new_items) | {t for t, _, _ in shop.twins}


# ---------------------------------------------------------------- replay
def test_replay_on_the_synthetic_shop_fires_at_the_shift(tmp_path):
    from benchmarks.drift_replay import main

    out = main(["--dataset", "synthetic", "--out", str(tmp_path)])
    by_month = {r["month"]: r for r in out["rows"]}
    assert [by_month[m]["status"] for m in ("2024-03", "2024-04")] == ["below_thresholds"] * 2
    assert by_month["2024-05"]["fire"] and by_month["2024-05"]["reference"] == "2024-01..2024-02"
    assert by_month["2024-06"]["reference"] == "2024-01..2024-05"  # retraining moved the reference
    saved = json.loads((tmp_path / "synthetic-drift-replay.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(out["rows"]))
    table = (tmp_path / "synthetic-drift-replay.md").read_text().splitlines()
    assert len(table) == 2 + 4 and "**fire**" in table[4] and "new_item_rate" in table[0]


@pytest.mark.benchmark
def test_replay_on_online_retail(tmp_path):
    from benchmarks.drift_replay import main
    from tests.conftest import ONLINE_RETAIL, need

    out = main(["--dataset", "online_retail", "--path", str(need(ONLINE_RETAIL)), "--out", str(tmp_path)])
    assert out["n_months"] == 10 and [r["month"] for r in out["rows"]][0] == "2011-03"
    assert all(r["status"] in ("fire", "below_thresholds") for r in out["rows"])
