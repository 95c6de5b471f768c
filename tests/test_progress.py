"""Long work reports its progress in the run log."""
from __future__ import annotations

from types import SimpleNamespace

import dagster as dg
import numpy as np
import scipy.sparse as sp

from orchestration.progress import progress_log
from training.models.sparse import top_n_matrix


def test_top_n_rows_report_progress_to_the_run_log():
    context = dg.build_asset_context()
    seen: list[tuple[int, int]] = []
    log = progress_log(context, "chebycf top-N rows", every=0.25)
    w = np.random.default_rng(0).random((10, 10)).astype(np.float32)

    def report(done: int, total: int) -> None:
        seen.append((done, total))
        log(done, total)

    top_n_matrix(lambda eye: np.asarray(eye @ w), 10, 3, chunk_size=3, progress=report)
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]


def test_progress_log_lines_at_each_step_with_time_left():
    lines: list[str] = []
    context = SimpleNamespace(log=SimpleNamespace(info=lines.append))  # what the callback uses of a context
    log = progress_log(context, "rows", every=0.5)
    for done in (1, 2, 5, 6, 9, 10):
        log(done, 10)
    assert len(lines) == 1 and lines[0].startswith("rows: 5 of 10 (50%)") and "s left" in lines[0]
