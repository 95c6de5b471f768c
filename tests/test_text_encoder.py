"""The text encoder: a fast_dev_run, pair mining, and the cold-start known answer on the synthetic shop."""
import numpy as np
import pandas as pd
import pytest

from data_checks.cleaning import clean
from training.cold_start import build_task, evaluate_cold
from training.data import build_interaction_data
from training.splits import SplitConfig, make_split
from training.text_encoder import TextEncoder, TextEncoderConfig, item_texts, mine_pairs, sample_pairs

pytestmark = pytest.mark.heavy(170)  # seconds on 2 quiet cores: make test starts the heaviest files first


def test_fast_dev_run(shop_data, shop_clean):
    texts = item_texts(shop_clean.items)
    pairs, counts = mine_pairs(shop_data.baskets, shop_data.user_items, 2)
    enc = TextEncoder(TextEncoderConfig(fast_dev_run=True, batch_size=8, steps=2))
    enc.fit(texts, pairs, counts)
    z, b = enc.encode(texts[:5])
    assert z.shape == (5, 384) and b.shape == (5,)
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, rtol=1e-5)


def test_short_fine_tuning_is_validated_once(shop_data, shop_clean, monkeypatch, tmp_path):
    """A 3-step fine-tuning checks its held-out pairs once (not four times: that would be most of its work); the
    best checkpoint is still kept, and its temporary folder (90 MB of weights) is removed once read back."""
    import tempfile

    from training.text_encoder import ContrastiveTextModule

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))

    texts = item_texts(shop_clean.items)
    pairs, counts = mine_pairs(shop_data.baskets, shop_data.user_items, 2)
    calls = []
    original = ContrastiveTextModule.validation_step
    monkeypatch.setattr(ContrastiveTextModule, "validation_step",
                        lambda self, batch, idx: calls.append(idx) or original(self, batch, idx))
    enc = TextEncoder(TextEncoderConfig(batch_size=8, steps=3))
    enc.fit(texts, pairs, counts)
    val_batches = max(3 * 8 // 10, 8 * 4) // 8  # the held-out pairs, in batches
    assert len(calls) == val_batches and enc.history["steps"] == 3
    assert np.isfinite(enc.history["best_val_loss"])
    assert not list(tmp_path.glob("ckpt-*")), "the temporary checkpoint folder is left behind"


def test_pair_sampling_follows_counts():
    pairs = np.array([[0, 1], [1, 2], [2, 3]])
    counts = np.array([1.0, 1.0, 8.0])
    drawn, log_q = sample_pairs(pairs, counts, 20_000, 5, seed=0)
    frac = np.mean((np.sort(drawn, axis=1) == [2, 3]).all(axis=1))
    assert abs(frac - 0.8) < 0.02
    assert log_q[3] > log_q[0] and np.isfinite(log_q).all()


@pytest.fixture(scope="module")
def twin_setup():
    from data_checks.synthetic_shop import SyntheticShopConfig, generate_shop

    shop = generate_shop(SyntheticShopConfig(n_users=600))
    c = clean(shop.tables)
    split = make_split(c.interactions, SplitConfig(strategy="temporal", cutoff="2024-06-01"))
    data = build_interaction_data(split.train, c.items["item_id"])
    return shop, c, split, data


def test_cold_twin_finds_its_twins_partner(twin_setup):
    """Known answer: a new "Deluxe" twin (never sold before the cut) reaches its anchor's partner by
    text alone once the encoder has learned what is bought together."""
    shop, c, split, data = twin_setup
    texts = item_texts(c.items)
    index = {i: n for n, i in enumerate(data.item_ids)}
    pairs, counts = mine_pairs(data.baskets, data.user_items, 2, user_weight=0.0)
    enc = TextEncoder(TextEncoderConfig(steps=45, batch_size=32, lr=3e-4, seed=0))  # twins max rank 2 (60: 4)
    base_z = enc.embed(texts)
    enc.fit(texts, pairs, counts)
    z = enc.embed(texts)
    ranks, base_ranks = [], []
    for twin, _, partner in shop.twins:
        t, p = index[twin], index[partner]
        for emb, out in ((z, ranks), (base_z, base_ranks)):
            s = emb[t] @ emb.T
            s[t] = -np.inf
            out.append(int((s > s[p]).sum()))
    assert max(ranks) < 6, ranks
    assert np.mean(ranks) < np.mean(base_ranks), (ranks, base_ranks)
    # and the twins are cold in this split: never sold before the cut
    task = build_task(pd.concat([split.train, split.after_cutoff]), data.item_ids, split.cutoff)
    assert {index[t] for t, _, _ in shop.twins} <= set(task.cold.tolist())
