"""fast_dev_run of every Lightning module, and a short real fit with validation and early stopping."""
import numpy as np

from training.models import MatrixFactorization


def test_mf_fast_dev_run(shop_data):
    m = MatrixFactorization(dim=8, fast_dev_run=True).fit(shop_data)
    assert m.user_factors.shape == (shop_data.n_users, 8)
    assert m.item_factors.shape == (shop_data.n_items, 8)


def test_mf_learns_and_keeps_the_best_epoch(shop_clean, shop_split, tmp_path):
    from training.data import build_interaction_data
    from training.metrics import evaluate_scores

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    m = MatrixFactorization(dim=16, lr=0.01, batch_size=1024, max_epochs=25, patience=3,
                            checkpoint_dir=str(tmp_path)).fit(fit, val)
    untrained = MatrixFactorization(dim=16, fast_dev_run=True).fit(fit)
    ours = evaluate_scores(m.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    base = evaluate_scores(untrained.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    assert ours > base * 1.5
    assert abs(ours - m.best_score) < 1e-6, "the weights kept are those of the best validation epoch"
    # fold-in: a user's own history reproduces their ranking reasonably
    hist = fit.user_items[:50]
    folded = m.score_history(hist)
    agree = np.mean([len(set(np.argsort(-folded[i])[:20]) & set(np.argsort(-m.score_users(np.array([i]))[0])[:20]))
                     for i in range(50)])
    assert agree >= 8
