"""Data-parallel training (Lightning DDP, gloo) with 2 CPU processes gives the one-process result.

Why the tolerance is tight for LightGCN: both ranks draw the same shuffled batches and negatives (same
seeds) and each keeps half of every batch (``RankShards``; an odd row goes to one rank, whose loss weighs by
its share), so DDP's average of the two half-batch gradients is the whole-batch gradient; only the order of
floating-point sums differs (factors agree to ~1e-7). Metrics may differ only where that noise flips a tie in
someone's top 20: 1e-3 in Recall/NDCG@20.

The text encoder gathers the global batch on every rank (all in-batch negatives kept), so its loss is
the one-process loss too, but dropout draws different masks per rank: its tolerance is wider, and at
one minute per fine-tuning on this CPU it is a benchmark-marked test."""
from __future__ import annotations

import numpy as np
import pytest

from training.metrics import evaluate_scores

pytestmark = [pytest.mark.integration, pytest.mark.heavy(34)]


@pytest.fixture(scope="module")
def fit_validation(shop_clean, shop_split):
    from training.data import build_interaction_data

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    return fit, fit.matrix_for(shop_split.validation)


@pytest.mark.parametrize("loss", ["bpr", "ssm"])
def test_lightgcn_on_two_cpu_processes_matches_one(fit_validation, tmp_path, loss):
    """Under ssm too: each rank's softmax sees the whole global batch (candidates gathered with gradients). Its
    odd batch size splits every batch into shards one row apart, so the padding of the smaller one is exercised."""
    from training.models import LightGCN

    fit, validation = fit_validation
    runs = {}
    for devices in (1, 2):
        model = LightGCN(dim=16, lr=0.01, batch_size=1343 if loss == "ssm" else 1024, max_epochs=4, patience=2,
                         accelerator="cpu", devices=devices, seed=0, loss=loss, pop_weight=0.05,
                         checkpoint_dir=str(tmp_path / f"ckpt{devices}")).fit(fit, validation)
        runs[devices] = (model, evaluate_scores(model.score_users, fit.user_items, validation, ks=(20,)))
    (one, m1), (two, m2) = runs[1], runs[2]
    assert two.strategy == "auto" and two.devices == 2
    for metric in ("recall@20", "ndcg@20"):
        assert abs(m1[metric] - m2[metric]) <= 1e-3, (metric, m1[metric], m2[metric])
    np.testing.assert_allclose(two.item_factors, one.item_factors, atol=1e-4)
    np.testing.assert_allclose(two.user_factors, one.user_factors, atol=1e-4)
    # what the spawned ranks learnt comes back: the validation curve and the best epoch's score
    assert [c["epoch"] for c in two.curve] == [c["epoch"] for c in one.curve]
    assert two.best_score == pytest.approx(one.best_score, abs=1e-3)
    assert two.epochs_trained == one.epochs_trained
    # and training did something: better than the untrained start
    untrained = LightGCN(dim=16, fast_dev_run=True, init="normal", accelerator="cpu", seed=0).fit(fit)
    assert m2["ndcg@20"] > evaluate_scores(untrained.score_users, fit.user_items, validation, ks=(20,))["ndcg@20"]


@pytest.mark.benchmark
def test_text_encoder_on_two_cpu_processes_matches_one(shop_data, shop_clean):
    from training.text_encoder import TextEncoder, TextEncoderConfig, item_texts, mine_pairs

    items = shop_clean.items.set_index("item_id").loc[shop_data.item_ids].reset_index()
    texts = item_texts(items)
    pairs, counts = mine_pairs(shop_data.baskets, shop_data.user_items)
    out = {}
    for devices in (1, 2):
        enc = TextEncoder(TextEncoderConfig(steps=8, batch_size=32, lr=3e-4, accelerator="cpu", devices=devices,
                                            seed=0))
        enc.fit(texts, pairs, counts)
        out[devices] = (enc.history, enc.embed(texts))
    (h1, z1), (h2, z2) = out[1], out[2]
    assert 0 < h2["steps"] <= 8 and h2["train_pairs"] == h1["train_pairs"]
    # dropout noise only (and early stopping on a noisy validation loss may stop a step apart): measured
    # 3.733 vs 3.771 validation loss (1%) and mean cosine 0.94 between the two runs' item embeddings
    assert h2["best_val_loss"] == pytest.approx(h1["best_val_loss"], rel=0.03)
    assert float((z1 * z2).sum(1).mean()) > 0.9
