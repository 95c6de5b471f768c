"""Rolling-origin cold-start evaluation: fold windows, disjoint cold items, pooling over folds."""
import json

import numpy as np
import pandas as pd
import pytest

from training.cold_start import build_task
from benchmarks.cold_start import fold_windows, pool_folds

T = pd.Timestamp


def test_each_fold_tests_on_the_window_before_the_next_ones_cut():
    w = fold_windows(T("2011-11-02"), T("2011-10-11"), T("2011-12-10"), folds=4)
    assert [f.fold for f in w] == [0, 1, 2, 3]
    assert (w[0].validation_start, w[0].cut, w[0].end) == (T("2011-10-11"), T("2011-11-02"), T("2011-12-10"))
    for prev, f in zip(w, w[1:]):
        # fold k's test window is fold k-1's validation window; its own validation window lies just before it
        assert (f.cut, f.end) == (prev.validation_start, prev.cut)
        assert f.cut - f.validation_start == T("2011-11-02") - T("2011-10-11")
    assert fold_windows(T("2011-11-02"), T("2011-10-11"), T("2011-12-10"), folds=1) == w[:1]
    with pytest.raises(ValueError, match="validation_start < cut < end"):
        fold_windows(T("2011-10-11"), T("2011-11-02"), T("2011-12-10"), folds=2)
    with pytest.raises(ValueError, match="folds"):
        fold_windows(T("2011-11-02"), T("2011-10-11"), T("2011-12-10"), folds=0)


def test_every_new_item_is_cold_in_exactly_one_folds_test_window():
    """Item i is first sold on day 3 i, bought in a basket with item 0 (sold every day); the folds' test windows,
    each built as ``run_fold`` builds it (rows before the window's end, cut at its start), must hold every item
    first sold inside them and no other."""
    start = T("2011-01-01")
    rows = []
    for i in range(1, 40):
        for d in (3 * i, 3 * i + 1):
            day = start + pd.Timedelta(days=d)
            rows += [(f"u{i}", str(i), day, f"b{i}-{d}"), (f"u{i}", "0", day, f"b{i}-{d}")]
    df = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "basket_id"])
    item_ids = np.array([str(i) for i in range(40)], dtype=object)
    end = df["timestamp"].max() + pd.Timedelta(seconds=1)
    windows = fold_windows(start + pd.Timedelta(days=90), start + pd.Timedelta(days=75), end, folds=4)
    seen = []
    for w in windows:
        task = build_task(df[df["timestamp"] < w.end], item_ids, w.cut)
        cold = {int(item_ids[c]) for c in task.cold}
        first_sold = {i for i in range(1, 40) if w.cut <= start + pd.Timedelta(days=3 * i) < w.end}
        assert cold == first_sold and cold
        seen += sorted(cold)
        # the right answers are the items bought with it inside the window: item 0
        assert set(task.truth.indices) == {0}
    assert len(seen) == len(set(seen))


def _fold(values: dict[str, tuple[list[float], list[float]]]) -> dict:
    n = len(next(iter(values.values()))[0])
    return {"cold_start": {"basket": {"scored_cold_items": n, "per_item": {
        name: {"recall@20": r, "ndcg@20": g} for name, (r, g) in values.items()}}}}


def test_pooling_weighs_every_cold_item_the_same_and_compares_on_all_of_them():
    rng = np.random.default_rng(0)
    big_r, big_n = rng.uniform(0.0, 0.2, 90), rng.uniform(0.3, 0.7, 90)
    folds = [_fold({"fine_tuned_encoder": ([1.0] * 10, [1.0] * 10), "popularity": ([0.0] * 10, [0.5] * 10)}),
             _fold({"fine_tuned_encoder": ((big_r + 0.05).tolist(), (big_n + 0.05).tolist()),
                    "popularity": (big_r.tolist(), big_n.tolist())})]
    pooled = pool_folds(folds)["basket"]
    assert pooled["cold_items"] == 100 and pooled["cold_items_per_fold"] == [10, 90]
    # the mean over the 100 items, not the mean of the two folds' means
    expected = (10 * 1.0 + (big_r + 0.05).sum()) / 100
    assert pooled["methods"]["fine_tuned_encoder"]["recall@20"] == pytest.approx(expected)
    assert pooled["methods"]["fine_tuned_encoder"]["recall@20"] != pytest.approx((1.0 + (big_r + 0.05).mean()) / 2)
    d = pooled["differences"]["fine_tuned_encoder - popularity"]["ndcg@20"]
    assert d["n"] == 100
    assert d["mean_difference"] == pytest.approx((10 * 0.5 + 90 * 0.05) / 100)
    assert d["ci_low"] > 0


def _full_fold(fold: int, n: int, lead: float, seed: int) -> dict:
    """A ``run_fold`` result with ``n`` cold items per basis on which the fine-tuned encoder's NDCG@20 leads
    popularity's by ``lead``."""
    rng = np.random.default_rng(seed)
    per_item = {}
    for name in ("fine_tuned_encoder", "fine_tuned_encoder+partners", "fine_tuned_encoder+partners+prior",
                 "untuned_encoder", "untuned_encoder+partners+prior", "tfidf_titles", "popularity"):
        base = rng.uniform(0.4, 0.6, n)
        per_item[name] = {"recall@20": (base / 20).tolist(), "ndcg@20": base.tolist()}
    per_item["fine_tuned_encoder"]["ndcg@20"] = (np.asarray(per_item["popularity"]["ndcg@20"]) + lead).tolist()
    table = {"cold_items": n, "validation_cold_items": n, "scored_cold_items": n, "median_right_answers": 100.0,
             "prior_weights": {}, "partner_settings": {}, "differences": {},
             "methods": {k: {m: float(np.mean(v)) for m, v in vals.items()} for k, vals in per_item.items()},
             "per_item": per_item}
    w = fold_windows(T("2011-11-02"), T("2011-10-11"), T("2011-12-10"), folds=fold + 1)[fold]
    return {"windows": w.as_dict(), "config": {"steps": 250}, "fit_seconds": 1.0, "history": {},
            "base_model": "m", "saved_to": None, "cold_start": {"basket_or_customer": table, "basket": table}}


def test_a_rolling_result_reaches_the_readme_and_its_forest_plot(tmp_path, monkeypatch):
    from benchmarks import run as benchmark
    from benchmarks.cold_start import summarise

    monkeypatch.setattr(benchmark, "RESULTS", tmp_path)
    assert benchmark.cold_differences_png() is None  # no cold-start result yet
    body = summarise([_full_fold(k, 30 + k, 0.05, k) for k in range(3)])
    assert "per_item" not in json.dumps(body)
    assert [f["windows"]["fold"] for f in body["rolling"]["folds"]] == [0, 1, 2]
    (tmp_path / "online_retail-text_encoder.json").write_text(json.dumps({"dataset": "online_retail", **body}))
    pooled = body["rolling"]["pooled"]["basket_or_customer"]
    assert pooled["cold_items"] == 30 + 31 + 32
    table = benchmark.readme_table()
    assert "rolling origin (3 folds" in table
    d = pooled["differences"]["fine_tuned_encoder - popularity"]["ndcg@20"]
    assert d["mean_difference"] == pytest.approx(0.05) and d["ci_low"] > 0
    assert f"| basket_or_customer | 93 | fine_tuned_encoder - popularity | " in table
    assert f"{d['mean_difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" in table
    assert "| 2 | 2011-09-19 to 2011-10-11 | 32 |" in table
    png = benchmark.cold_differences_png()
    assert png == tmp_path / benchmark.COLD_PLOT and png.read_bytes()[:4] == b"\x89PNG"
    # a single fold has nothing to pool
    assert "rolling" not in summarise([_full_fold(0, 30, 0.05, 0)])


def test_resume_reuses_only_the_folds_a_run_finished(tmp_path, monkeypatch):
    from benchmarks import cold_start as csb, data as benchmark

    calls, froms = [], []

    def fake_fold(windows, texts, item_ids, rows_all, steps, fit_rows=None, save_to=None, embeddings_to=None,
                  embeddings_from=None):
        calls.append(windows.fold)
        froms.append(embeddings_from)
        assert (fit_rows is not None) == (windows.fold == 0)  # fold 0 fine-tunes on the split's own fit rows
        r = _full_fold(0, 5, 0.01, windows.fold)
        return {**r, "windows": windows.as_dict(), "config": {"steps": steps}}

    monkeypatch.setattr(csb, "run_fold", fake_fold)
    loaded = benchmark.load_dataset("synthetic")
    monkeypatch.setattr(benchmark, "load_dataset", lambda name: loaded)  # read, cleaned and split once
    first = csb.run_cold_start("synthetic", 2, folds=2, checkpoints=tmp_path)
    assert calls == [0, 1] and sorted(p.name for p in tmp_path.iterdir()) == [
        "synthetic-steps2-fold0.json", "synthetic-steps2-fold1.json"]
    (tmp_path / "synthetic-steps2-fold1.json").unlink()  # as if killed during fold 1
    calls.clear()
    again = csb.run_cold_start("synthetic", 2, folds=2, checkpoints=tmp_path, resume=True)
    assert calls == [1] and again["reused_folds"] == [0] and first["reused_folds"] == []
    assert again["rolling"]["pooled"] == first["rolling"]["pooled"]
    calls.clear()
    csb.run_cold_start("synthetic", 3, folds=2, checkpoints=tmp_path, resume=True)  # other steps: nothing reused
    assert calls == [0, 1]
    calls.clear()
    csb.run_cold_start("synthetic", 2, folds=2, checkpoints=tmp_path)  # without resume: every fold runs
    assert calls == [0, 1]
    # reusing embeddings: a fold whose embeddings were kept is evaluated again from them, the others fine-tune
    (tmp_path / "synthetic-steps2-fold1.npz").write_bytes(b"kept")
    calls.clear(), froms.clear()
    out = csb.run_cold_start("synthetic", 2, folds=2, checkpoints=tmp_path, reuse_embeddings=True)
    assert calls == [0, 1] and froms == [None, tmp_path / "synthetic-steps2-fold1.npz"]
    assert out["folds_evaluated_from_kept_embeddings"] == [1] and out["reused_folds"] == []


def test_confirmation_folds_are_pooled_alone_and_reach_the_readme(tmp_path, monkeypatch):
    """Folds set apart by a plan (``confirm_from``) are pooled on their own: folds 0-1 show no lead, folds 2-3 a
    lead of 0.1, and the confirmation sees exactly the later folds' items and their lead."""
    from benchmarks import run as benchmark
    from benchmarks.cold_start import CONFIRMATION_PLAN, run_cold_start, summarise

    monkeypatch.setattr(benchmark, "RESULTS", tmp_path)
    folds = [_full_fold(k, 20 + k, 0.1 if k >= 2 else 0.0, k) for k in range(4)]
    body = summarise(folds, confirm_from=2)
    conf = body["rolling"]["confirmation"]
    assert conf["folds"] == [2, 3] and conf["plan"] == CONFIRMATION_PLAN
    t = conf["basket_or_customer"]
    assert t["cold_items"] == 22 + 23 and t["cold_items_per_fold"] == [22, 23]
    assert t["differences"]["fine_tuned_encoder - popularity"]["ndcg@20"]["mean_difference"] == pytest.approx(0.1)
    assert body["rolling"]["pooled"]["basket_or_customer"]["cold_items"] == 20 + 21 + 22 + 23
    assert "confirmation" not in summarise(folds)["rolling"]  # only when asked for
    (tmp_path / "online_retail-text_encoder.json").write_text(json.dumps({"dataset": "online_retail", **body}))
    table = benchmark.readme_table()
    assert "Confirmation on folds [2, 3]" in table and CONFIRMATION_PLAN in table
    d = t["differences"]["fine_tuned_encoder+partners+prior - popularity"]["recall@20"]
    assert f"| basket_or_customer | 45 | fine_tuned_encoder+partners+prior - popularity | " \
           f"{d['mean_difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]" in table
    with pytest.raises(ValueError, match="confirm_from"):
        run_cold_start("synthetic", 2, folds=3, confirm_from=3)
