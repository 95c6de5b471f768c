"""Progress of long work in a step's log (the UI's run log), as a plain callback lower layers can call."""
from __future__ import annotations

import time

import dagster as dg


def progress_log(context: dg.AssetExecutionContext, what: str, every: float = 0.1):
    """A ``progress(done, total)`` callback that logs ``what``'s progress, elapsed time and an estimate of the time
    left at each ``every`` of the total (long closed-form work: ChebyCF's top-N rows take tens of minutes at 50k)."""
    t0, next_at = time.perf_counter(), [every]

    def report(done: int, total: int) -> None:
        if total and done / total >= next_at[0] and done < total:
            elapsed = time.perf_counter() - t0
            context.log.info(f"{what}: {done:,} of {total:,} ({done / total:.0%}) in {elapsed:.0f} s, about "
                             f"{elapsed * (total - done) / done:.0f} s left")
            next_at[0] = (int(done / total / every) + 1) * every
    return report
