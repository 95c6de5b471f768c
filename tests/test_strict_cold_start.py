"""Strict cold start (``training.strict_cold_start``): held-out items leave training entirely and are ranked by text;
the ``cold_start_metrics`` asset runs it on splits without a temporal cut."""
import numpy as np
import pandas as pd
import pytest

from training import strict_cold_start as scs
from training.strict_cold_start import (POLICY, StrictColdStartConfig, category_popularity_scorer, co_purchase_task,
                                        draw_items, run_strict_cold_start, without_items)


@pytest.fixture(scope="module")
def baskets_shop():
    """The synthetic shop's baskets with no customer and no time, cleaned: (shop, interactions, catalog)."""
    from data_checks.cleaning import clean
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

    shop = generate_shop(SyntheticShopConfig(n_users=150, baskets_only=True))
    cleaned = clean(shop.tables)
    return shop, cleaned.interactions, cleaned.items


def _spy_embeddings(monkeypatch, seen: dict):
    """Replace the encoders by seeded random unit embeddings, keeping what fine-tuning would have been given."""
    def fake(texts, fit_baskets, counts, encoder_cfg, max_head_items, seed, log=print, untuned_from=None):
        seen["fit_baskets"], seen["counts"] = fit_baskets, counts
        z = np.random.default_rng(0).normal(size=(len(texts), 8)).astype(np.float32)
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        return z, np.zeros(len(texts), np.float32), z[:, ::-1].copy(), {"fine_tuned": False}

    monkeypatch.setattr(scs, "encoder_embeddings", fake)


def test_draw_is_seeded_a_tenth_and_never_all():
    items = np.array([f"i{k}" for k in range(50)], dtype=object)
    a, b = draw_items(items, 0.1, seed=3), draw_items(items, 0.1, seed=3)
    assert len(a) == 5 and list(a) == list(b) and list(a) != list(draw_items(items, 0.1, seed=4))
    assert len(draw_items(items[:2], 0.9, seed=0)) == 1  # never every item
    assert len(draw_items(items, 0.5, seed=0, cap=7)) == 7
    with pytest.raises(ValueError, match="between 0 and 1"):
        draw_items(items, 1.0, seed=0)


def test_truth_is_the_items_sharing_a_basket_and_the_rows_of_held_out_items_leave():
    rows = pd.DataFrame({"user_id": pd.NA, "timestamp": pd.NaT, "item_id": ["a", "b", "a", "c", "d", "b"],
                         "basket_id": ["1", "1", "2", "2", "3", "3"]})
    catalog = np.array(["a", "b", "c", "d", "e"], dtype=object)
    task = co_purchase_task(rows, catalog, np.array(["a", "d"], dtype=object))
    assert task.cold.tolist() == [0, 3]
    assert task.truth[0].indices.tolist() == [1, 2] and task.truth[1].indices.tolist() == [1]
    kept = without_items(rows, np.array(["a"], dtype=object))
    assert "a" not in set(kept["item_id"]) and len(kept) == 4  # only a's rows leave; its baskets' other items stay


def test_category_popularity_puts_the_query_category_first():
    cats = np.array(["x", "y", "x", None, "y"], dtype=object)
    counts = np.array([1.0, 50.0, 3.0, 99.0, 0.0])
    s = category_popularity_scorer(cats, counts)(np.array([0, 3]))
    assert np.argsort(-s[0])[:2].tolist() == [2, 0]  # category x by popularity, ahead of the best-seller of y
    assert np.argmax(s[1]) == 3 and np.argsort(-s[1])[1] == 1  # no category: plain popularity


def test_held_out_items_never_reach_training_and_every_method_ranks(baskets_shop, monkeypatch):
    _, rows, catalog = baskets_shop
    seen: dict = {}
    _spy_embeddings(monkeypatch, seen)
    result = run_strict_cold_start(rows, catalog, StrictColdStartConfig(n_boot=200), log=lambda m: None)
    ids = pd.Index(catalog["item_id"].astype(str))
    held = ids.get_indexer(result["held_out_item_ids"])
    c = result["counts"]
    assert c["held_out_items"] == len(held) == round(0.1 * c["sold_items"]) and (held >= 0).all()
    # the encoder's fine-tuning baskets hold no held-out (nor validation) item; the policy's prior gives them no sales
    assert seen["fit_baskets"][:, held].nnz == 0 and (seen["counts"][held] == 0).all()
    assert c["training_rows"] == c["rows"] - int(rows["item_id"].astype(str).isin(result["held_out_item_ids"]).sum())
    assert c["fine_tuning_rows"] < c["training_rows"] and c["validation_items"] > 0
    assert set(result["methods"]) == set(scs.METHODS)
    for name, r in result["methods"].items():
        assert r["n_users"] == c["scored_held_out_items"] > 0
        assert 0 <= r["recall@20"] <= 1 and 0 <= r["ndcg@20"] <= 1
    pairs = result["differences"]
    assert len(pairs) == 15 and all(d["recall@20"]["ci_low"] <= d["recall@20"]["mean_difference"]
                                    <= d["recall@20"]["ci_high"] for d in pairs.values())
    # each method's own ranking: they do not all return the same list
    tops = {tuple(ex["top5"][m]) for ex in result["examples"][:1] for m in scs.METHODS}
    assert len(tops) >= 4
    assert result["partner_policy"]["chosen_from"].startswith("validation carve")


def test_known_answer_the_twins_partners_win_where_text_similarity_alone_finds_the_look_alike(baskets_shop):
    """The shop's "Deluxe" twins are bought in place of their anchor, with the anchor's partner. Held out, each
    reads most like its anchor (which is never in its baskets): text similarity alone ranks the anchor first; the
    served policy (the twins' partners) ranks the partner first; popularity never does."""
    from training.text_encoder import TextEncoderConfig

    shop, rows, catalog = baskets_shop
    twins = {t: (a, p) for t, a, p in shop.twins}
    result = run_strict_cold_start(rows, catalog, StrictColdStartConfig(n_boot=200), TextEncoderConfig(steps=0),
                                   log=lambda m: None, held_out=np.array(list(twins), dtype=object))
    assert result["encoder"]["fine_tuned"] is False and "steps=0" in result["encoder"]["not_fine_tuned_because"]
    examples = {ex["item_id"]: ex["top5"] for ex in result["examples"]}
    assert set(examples) <= set(twins) and len(examples) >= 3  # a twin never bought with another item is not scored
    for twin, top in examples.items():
        anchor, partner = twins[twin]
        assert top["tfidf_titles"][0] == anchor and top["untuned_encoder"][0] == anchor
        assert top[POLICY][0] == partner
        assert partner not in top["popularity"]
    m = result["methods"]
    assert m[POLICY]["ndcg@20"] > max(m["tfidf_titles"]["ndcg@20"], m["untuned_encoder"]["ndcg@20"])


def test_asset_runs_the_strict_form_on_a_split_without_a_cutoff(baskets_shop, tmp_path):
    import dagster as dg

    from orchestration.assets.splits import SplitMatrices
    from orchestration.assets.text import ColdStartConfig, TextEncoderArtifact, cold_start_metrics
    from training.cold_start import fit_partner_policy
    from training.data import build_interaction_data
    from training.splits import SplitConfig, make_split
    from training.text_encoder import default_model_path

    _, rows, catalog = baskets_shop
    split = make_split(rows, SplitConfig(strategy="basket_completion"))
    assert split.cutoff is None
    train = build_interaction_data(split.train, catalog["item_id"])
    fit = build_interaction_data(split.fit, catalog["item_id"], user_ids=train.user_ids)
    matrices = SplitMatrices(train, train.matrix_for(split.test), fit, fit.matrix_for(split.validation))
    unused = fit_partner_policy(split.train, None, fit.baskets, train.baskets, train.item_ids,
                                np.zeros((train.n_items, 2), np.float32))  # the temporal form's input
    # strict_steps None: as many steps as text_encoder ran, here none (fine-tuning itself: the test below)
    art = TextEncoderArtifact(default_model_path(), default_model_path(), 0.05, 32, {})
    out = cold_start_metrics(context=dg.build_asset_context(), config=ColdStartConfig(ks=[10, 20]),
                             training_split=split, validated_items=catalog, interaction_matrices=matrices,
                             text_encoder=art, item_text_embeddings=pd.DataFrame(), cold_partner_policy=unused)
    table = out.value
    meta = {k: getattr(v, "value", v) for k, v in out.metadata.items()}
    assert set(table["method"]) == set(scs.METHODS)
    assert set(table["k"]) == {10, 20} and (table["n_items"] > 0).all() and table["recall"].notna().all()
    assert "strict cold start" in meta["form"] and "basket_completion" in meta["form"]
    assert meta["fine_tuned"] is False and meta["fine_tuning_steps"] == 0
    assert meta["held_out_items"] > 0 and "differences_at_k20" in meta
    off = cold_start_metrics(context=dg.build_asset_context(), config=ColdStartConfig(strict=False),
                             training_split=split, validated_items=catalog, interaction_matrices=matrices,
                             text_encoder=art, item_text_embeddings=pd.DataFrame(), cold_partner_policy=unused)
    assert off.value.empty and "strict is false" in off.metadata["skipped_because"].value


def test_untuned_embeddings_made_elsewhere_are_used_only_when_they_match(tmp_path):
    import scipy.sparse as sp

    from training.strict_cold_start import encoder_embeddings
    from training.text_encoder import TextEncoder, TextEncoderConfig

    texts = ["red mug | category: kitchen", "tea pot", "garden hose", "hose nozzle", "blue mug"]
    cfg = TextEncoderConfig(steps=0)
    right = TextEncoder(cfg).embed(texts)
    baskets = sp.csr_matrix(np.ones((2, len(texts)), np.float32))
    for name, array, used in (("right.npy", right, True), ("wrong.npy", right[::-1], False),
                              ("short.npy", right[:2], False)):
        np.save(tmp_path / name, array)
        _, _, z, facts = encoder_embeddings(texts, baskets, np.ones(len(texts)), cfg, None, 0, lambda m: None,
                                            tmp_path / name)
        assert ("untuned_embeddings_read_from" in facts) is used
        np.testing.assert_allclose(z, right, atol=1e-4)  # a file that does not match is not used


def test_the_encoder_is_fine_tuned_on_the_baskets_it_is_given_only():
    """Fine-tuning sees the co-purchase pairs of ``fit_baskets`` (which hold no held-out item); its popularity head
    is fitted on at most ``max_head_items`` sold items; the untuned embeddings are the base encoder's."""
    import scipy.sparse as sp

    from training.strict_cold_start import encoder_embeddings
    from training.text_encoder import TextEncoder, TextEncoderConfig

    texts = ["red mug", "tea pot", "tea strainer", "garden hose", "hose nozzle", "blue mug", "deluxe tea pot"]
    rows = [[1, 2], [3, 4], [0, 5], [2, 4], [1, 3]] * 4  # item 6 (held out) is in no basket
    baskets = sp.csr_matrix((np.ones(2 * len(rows), np.float32), (np.repeat(np.arange(len(rows)), 2),
                                                                   np.ravel(rows))), shape=(len(rows), len(texts)))
    counts = np.asarray(baskets.sum(axis=0)).ravel()
    cfg = TextEncoderConfig(steps=1, batch_size=2, min_pair_count=2, fast_dev_run=True)  # no checkpoint to write
    z, head, untuned, facts = encoder_embeddings(texts, baskets, counts, cfg, 3, 0, lambda m: None)
    assert facts["fine_tuned"] and facts["co_purchase_pairs"] == 5 and facts["popularity_head_items"] == 3
    assert facts["history"]["steps"] == 1
    np.testing.assert_allclose(untuned, TextEncoder(cfg).embed(texts), atol=1e-4)
    assert z.shape == untuned.shape and head.shape == (len(texts),) and not np.allclose(z, untuned)


def test_category_sample_keeps_whole_categories_and_their_rows_only():
    from benchmarks.strict_cold_start import sample_categories

    catalog = pd.DataFrame({"item_id": [f"i{k}" for k in range(10)],
                            "category": ["a"] * 4 + ["b"] * 3 + ["c"] * 2 + [None]})
    rows = pd.DataFrame({"item_id": [f"i{k}" for k in range(10)] * 2, "basket_id": ["1"] * 10 + ["2"] * 10})
    for seed in range(5):
        kept_rows, small, taken = sample_categories(rows, catalog, 5, seed)
        assert 1 <= len(small) <= 5 and set(small["category"].fillna("")) == set(taken)
        full = catalog["category"].fillna("").isin(taken)
        assert len(small) == int(full.sum())  # every item of a category taken, none of the others
        assert set(kept_rows["item_id"]) == set(small["item_id"]) and len(kept_rows) == 2 * len(small)
    assert sample_categories(rows, catalog, 5, 1)[2] == sample_categories(rows, catalog, 5, 1)[2]  # seeded
    assert len(sample_categories(rows, catalog, 2, 0)[1]) <= 4  # one category at least, even when too large
