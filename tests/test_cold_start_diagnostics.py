"""Known answers for the cold-start diagnostics: new items that read alike share right answers."""
import numpy as np
import scipy.sparse as sp

from training.cold_start import ColdStartTask
from benchmarks.cold_start_diagnostics import truth_overlap, unsold_hit_rates


def _pairs_task() -> tuple[ColdStartTask, np.ndarray, np.ndarray]:
    """Eight new items (0-7) in four pairs that read alike (2p, 2p+1); each is bought with its pair mate and with
    old item 8 + p. Old items 8-11 sold 5, 4, 3, 2 baskets before the cut; the new ones none."""
    n = 12
    rows, cols = [], []
    for c in range(8):
        p, mate = c // 2, c ^ 1
        rows += [c, c]
        cols += [mate, 8 + p]
    truth = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(8, n))
    cold = np.arange(8)
    task = ColdStartTask(cold, truth, sp.csr_matrix((np.ones(8, np.float32), (cold, cold)), shape=(8, n)),
                         np.array([f"i{k}" for k in range(n)], dtype=object))
    emb = np.zeros((n, 6), np.float32)
    for c in range(8):
        emb[c, c // 2] = 1.0
    emb[8:, 4] = 1.0
    counts = np.array([0] * 8 + [5, 4, 3, 2])
    return task, emb, counts


def test_text_twins_share_right_answers_and_random_items_do_not():
    task, emb, _ = _pairs_task()
    o = truth_overlap(task, emb, n_near=1, seed=0)
    assert len(o["near"]) == 8
    # {mate, 8+p} against the mate's {me, 8+p}: one shared of three
    np.testing.assert_allclose(o["near"], 1 / 3)
    np.testing.assert_allclose(o["far"], 0.0)  # another pair: nothing shared
    assert o["random"].mean() < o["near"].mean()
    # too few new items to compare 3 near against 3 random and 3 far
    assert all(len(v) == 0 for v in truth_overlap(task, emb, n_near=3).values())


def test_unsold_look_alikes_against_best_sellers():
    task, emb, counts = _pairs_task()
    near, popular, n = unsold_hit_rates(task, emb, counts, depth=2, popular=2)
    assert n == 8
    assert near[0] == 1.0  # the nearest never-sold item is the pair mate, always bought with it
    assert near[1] == 0.0  # the next is from another pair
    np.testing.assert_allclose(popular, [2 / 8, 2 / 8])  # the best-seller belongs to pair 0 only, the next to pair 1
