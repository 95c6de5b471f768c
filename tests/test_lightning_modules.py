"""fast_dev_run of every Lightning module, and a short real fit with validation and early stopping."""
import numpy as np
import pytest

from training.models import MatrixFactorization

pytestmark = pytest.mark.heavy(77)  # seconds on 2 quiet cores: make test starts the heaviest files first


def test_mf_fast_dev_run(shop_data):
    m = MatrixFactorization(dim=8, fast_dev_run=True).fit(shop_data)
    assert m.user_factors.shape == (shop_data.n_users, 8)
    assert m.item_factors.shape == (shop_data.n_items, 8)


def test_mf_learns_and_keeps_the_best_epoch(shop_clean, shop_split, tmp_path):
    from training.data import build_interaction_data

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    m = MatrixFactorization(dim=16, lr=0.01, batch_size=1024, max_epochs=25, patience=3,
                            checkpoint_dir=str(tmp_path)).fit(fit, val)
    untrained = MatrixFactorization(dim=16, fast_dev_run=True).fit(fit)
    check_learned_best_epoch_and_fold_in(m, untrained, fit, val, min_agree=8)
    assert list(tmp_path.glob("*.ckpt")), "a checkpoint folder that was given is kept"


def test_best_epoch_checkpoint_in_a_temporary_folder_is_removed(shop_clean, shop_split, tmp_path, monkeypatch):
    import tempfile

    from training.data import build_interaction_data

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    m = MatrixFactorization(dim=8, batch_size=1024, max_epochs=2).fit(fit, fit.matrix_for(shop_split.validation))
    assert m.best_score is not None and not list(tmp_path.iterdir())


def check_learned_best_epoch_and_fold_in(m, untrained, fit, val, min_agree):
    """The model ranks validation far better than an untrained one, keeps its best validation epoch, and
    its fold-in of a known user's history agrees with that user's ranking (top-20 overlap)."""
    from training.metrics import evaluate_scores

    ours = evaluate_scores(m.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    base = evaluate_scores(untrained.score_users, fit.user_items, val, ks=(20,))["ndcg@20"]
    assert ours > base * 1.5
    assert abs(ours - m.best_score) < 1e-6, "the weights kept are those of the best validation epoch"
    folded = m.score_history(fit.user_items[:50])
    agree = np.mean([len(set(np.argsort(-folded[i])[:20]) & set(np.argsort(-m.score_users(np.array([i]))[0])[:20]))
                     for i in range(50)])
    assert agree >= min_agree


def test_ials_fast_dev_run(shop_data):
    from training.models import IALSMatrixFactorization

    m = IALSMatrixFactorization(dim=8, fast_dev_run=True).fit(shop_data)
    assert m.user_factors.shape == (shop_data.n_users, 8)
    assert m.item_factors.shape == (shop_data.n_items, 8)


def test_ials_sweeps_lower_the_loss_and_learn(shop_clean, shop_split, tmp_path):
    """Each alternating sweep lowers the iALS objective; early stopping keeps the best validation epoch,
    which ranks far better than an untrained model; the exact fold-in agrees with the trained users."""
    import torch

    from training.data import build_interaction_data
    from training.models import IALSMatrixFactorization
    from training.models.mf import IALSModule

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    x = fit.user_items
    module = IALSModule(fit.n_users, fit.n_items, dim=16, alpha0=0.1, l2=1e-3, cg_steps=3)
    module.train_matrix = x
    module.on_fit_start()

    def loss() -> float:
        w, h = module.user.weight.numpy().astype(np.float64), module.item.weight.numpy().astype(np.float64)
        pred = w @ h.T
        dense = x.toarray()
        du, di = dense.sum(1), dense.sum(0)
        reg = (module.reg * ((du + 0.1 * fit.n_items) * (w ** 2).sum(1)).sum()
               + module.reg * ((di + 0.1 * fit.n_users) * (h ** 2).sum(1)).sum())
        return float((dense * (pred - 1) ** 2).sum() + 0.1 * (pred ** 2).sum() + reg)

    losses = [loss()]
    for _ in range(4):
        module.training_step(None, 0)
        losses.append(loss())
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert isinstance(module.user.weight, torch.nn.Parameter)

    m = IALSMatrixFactorization(dim=16, alpha0=0.1, l2=1e-3, max_epochs=15, patience=3,
                                checkpoint_dir=str(tmp_path)).fit(fit, val)
    untrained = IALSMatrixFactorization(dim=16, fast_dev_run=True).fit(fit)
    check_learned_best_epoch_and_fold_in(m, untrained, fit, val, min_agree=15)


def test_lightgcn_sampled_softmax_learns_the_planted_pairs(shop_data, shop, tmp_path):
    """The ``ssm`` loss (in-batch sampled softmax on cosines) finds every planted pair, scores unit embeddings
    plus the popularity term (in ONNX too), and trains a different model than BPR from the same start."""
    import pytest

    from training.models import LightGCN

    # 12 epochs: 8 already find every pair (30 took twice as long)
    params = {"dim": 32, "max_epochs": 12, "lr": 0.01, "batch_size": 1024, "init": "svd", "accelerator": "cpu"}
    ssm = LightGCN(loss="ssm", temperature=0.1, pop_weight=0.05, **params).fit(shop_data)
    # unit embeddings plus one popularity column: 1 for users, 0.05 * log(1 + popularity) for items
    np.testing.assert_allclose(np.linalg.norm(ssm.item_factors[:, :-1], axis=1), 1.0, rtol=1e-4)
    np.testing.assert_allclose(ssm.user_factors[:, -1], 1.0)
    pop = np.asarray((shop_data.user_items > 0).sum(axis=0)).ravel()
    np.testing.assert_allclose(ssm.item_factors[:, -1], 0.05 * np.log1p(pop), rtol=1e-5)
    index = {i: n for n, i in enumerate(shop_data.item_ids)}
    anchors = np.array([index[a] for a, _ in shop.planted_pairs])
    idx, _ = ssm.related_items(anchors, 1)
    assert [shop_data.item_ids[i] for i in idx[:, 0]] == [b for _, b in shop.planted_pairs]
    # the popularity column travels through ONNX: the exported model scores as the native one
    from serving.onnx_export import export_recommender
    from serving.onnx_scoring import OnnxRecommender, check_parity

    export_recommender(ssm, tmp_path / "ssm.onnx", k=20)
    report = check_parity(ssm, OnnxRecommender(tmp_path / "ssm.onnx", provider="cpu"), shop_data.user_items,
                          n_users=shop_data.n_users)
    assert report.passed and report.max_abs_diff <= 1e-4, report
    bpr = LightGCN(dim=32, max_epochs=1, lr=0.01, batch_size=1024, init="svd", accelerator="cpu").fit(shop_data)
    assert not np.allclose(np.linalg.norm(bpr.item_factors, axis=1), 1.0, atol=1e-3)
    with pytest.raises(ValueError, match="loss"):
        LightGCN(loss="hinge")


def test_lightgcn_sampled_softmax_logq_keeps_popularity(shop_data):
    """In-batch negatives are drawn in proportion to popularity, so without the logQ correction the softmax
    learns popularity out of the scores. Corrected, the model recommends more popular items than uncorrected
    from the same start; the candidate distribution it subtracts is a probability distribution."""
    from training.models import LightGCN
    from training.data import item_pair_counts
    from training.models.lightgcn import candidate_log_q

    q = np.exp(candidate_log_q(item_pair_counts(shop_data.user_items)).numpy().astype(np.float64))
    assert q.shape == (shop_data.n_items,) and q.sum() == pytest.approx(1.0, rel=1e-5)
    pop = np.asarray((shop_data.user_items > 0).sum(axis=0)).ravel()
    assert q[np.argmax(pop)] > q[np.argmin(pop)]

    params = {"dim": 32, "max_epochs": 10, "lr": 0.01, "batch_size": 1024, "init": "svd", "accelerator": "cpu",
              "loss": "ssm", "temperature": 0.1, "pop_weight": 0.0}
    users = np.arange(shop_data.n_users)
    mean_pop = {}
    for corrected in (True, False):
        m = LightGCN(logq_correction=corrected, **params).fit(shop_data)
        idx, _ = m.recommend(users, 10, exclude=shop_data.user_items)
        mean_pop[corrected] = pop[idx].mean()
    assert mean_pop[True] > 1.2 * mean_pop[False]


def test_lightgcn_sampled_softmax_chooses_the_popularity_weight_on_validation(shop_clean, shop_split, tmp_path):
    """With validation data and no fixed weight, every validation epoch tries each weight of the grid; the
    best checkpoint's weight is the one served, and it is the weight recorded with the best epoch."""
    from training.data import build_interaction_data
    from training.models import LightGCN
    from training.models.lightgcn import POP_WEIGHT_GRID

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    m = LightGCN(dim=16, lr=0.01, batch_size=1024, max_epochs=4, patience=4, init="svd", loss="ssm",
                 accelerator="cpu", checkpoint_dir=str(tmp_path)).fit(fit, val)
    assert len(m.curve) == 4 and all(c["pop_weight"] in POP_WEIGHT_GRID for c in m.curve)
    best = max(m.curve, key=lambda c: c["ndcg@20"])
    assert m.chosen_pop_weight == pytest.approx(best["pop_weight"])
    pop = np.asarray((fit.user_items > 0).sum(axis=0)).ravel()
    np.testing.assert_allclose(m.item_factors[:, -1], best["pop_weight"] * np.log1p(pop), rtol=1e-5, atol=1e-7)


def test_lightgcn_learns_folds_in_and_refreshes_over_a_larger_graph(shop_clean, shop_split, shop, tmp_path):
    """BPR LightGCN with early stopping: learns, keeps the best epoch, and its fold-in (new users join the graph
    with zero layer-0 vectors) agrees with the trained users' rankings. ``refresh`` over the same graph serves
    the same factors; over a graph with one more pair per user (a planted anchor), each such user's score for
    the anchor's partner rises, with no gradient step."""
    import dataclasses

    import scipy.sparse as sp

    from training.data import build_interaction_data
    from training.models import LightGCN

    fit = build_interaction_data(shop_split.fit, shop_clean.items["item_id"])
    val = fit.matrix_for(shop_split.validation)
    m = LightGCN(dim=16, lr=0.01, batch_size=1024, max_epochs=12, patience=3, init="svd", accelerator="cpu",
                 checkpoint_dir=str(tmp_path)).fit(fit, val)
    untrained = LightGCN(dim=16, fast_dev_run=True, init="normal", accelerator="cpu").fit(fit)  # random start
    check_learned_best_epoch_and_fold_in(m, untrained, fit, val, min_agree=10)

    before_u, before_i = m.user_factors.copy(), m.item_factors.copy()
    m.refresh(fit)
    np.testing.assert_allclose(m.user_factors, before_u, atol=1e-5)
    np.testing.assert_allclose(m.item_factors, before_i, atol=1e-5)

    index = {i: n for n, i in enumerate(fit.item_ids)}
    anchor, partner = (index[x] for x in shop.planted_pairs[0])
    x = fit.user_items.tolil()
    users = [u for u in range(fit.n_users) if x[u, anchor] == 0 and x[u, partner] == 0][:20]
    for u in users:
        x[u, anchor] = 1.0
    before = m.score_users(np.array(users))[:, partner] - m.score_users(np.array(users)).mean(axis=1)
    m.refresh(dataclasses.replace(fit, user_items=sp.csr_matrix(x, dtype=np.float32)))
    after = m.score_users(np.array(users))[:, partner] - m.score_users(np.array(users)).mean(axis=1)
    assert (after > before).all(), (before, after)
    with pytest.raises(ValueError, match="same|fitted"):
        m.refresh(build_interaction_data(shop_split.fit.iloc[:50], shop_clean.items["item_id"]))
    # a model pickled before the layer-0 embeddings were kept: scores still, refresh and fold-in say why not
    del m.base_embeddings
    assert m.score_users(np.array(users)).shape == (len(users), fit.n_items)
    for call in (lambda: m.refresh(fit), lambda: m.score_history(fit.user_items[:2])):
        with pytest.raises(RuntimeError, match="layer-0 embeddings.*refit"):
            call()


def test_lightgcn_budget_linear_learning_rate(shop_data):
    """``budget_linear`` sets the rate to lr * (1 - elapsed / budget) before each batch, 0 past the budget;
    ``constant`` leaves it; the schedule needs a time budget."""
    import time
    from types import SimpleNamespace

    import torch

    from training.models import LightGCN
    from training.models.lightgcn import LightGCNModule

    def lr_after(elapsed: float, budget: float | None) -> float:
        module = LightGCNModule(shop_data.n_users, shop_data.n_items, dim=4, lr=0.01, lr_budget_seconds=budget)
        opt = torch.optim.Adam(module.parameters(), lr=0.01)
        module._trainer = SimpleNamespace(optimizers=[opt])
        module._t0 = time.perf_counter() - elapsed
        module.on_train_batch_start(None, 0)
        return opt.param_groups[0]["lr"]

    assert lr_after(30.0, 60.0) == pytest.approx(0.005, rel=1e-3)
    assert lr_after(90.0, 60.0) == 0.0
    assert lr_after(30.0, None) == 0.01
    with pytest.raises(ValueError, match="max_minutes"):
        LightGCN(lr_schedule="budget_linear", max_minutes=None)
    with pytest.raises(ValueError, match="lr_schedule"):
        LightGCN(lr_schedule="cosine", max_minutes=1.0)
    m = LightGCN(dim=8, max_epochs=2, max_minutes=5.0, lr_schedule="budget_linear", batch_size=1024,
                 accelerator="cpu").fit(shop_data)
    assert np.isfinite(m.user_factors).all()
