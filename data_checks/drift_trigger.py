"""When to retrain: the landing folder watched against the champion's reference profile.

Plain logic behind the drift sensor (``orchestration/sensors.py``), so it is tested without Dagster:

* :class:`WatchState` is what the sensor's cursor holds: every landed file already considered (name, size,
  mtime, sha256), the *pending* files (landed, judged neither "no drift" nor used by a retraining run yet),
  unreadable files, and when a retraining run was last requested.
* :func:`evaluate_landing` takes the state and the current listing and decides:
  the *window* is the pending files plus the new ones, read and validated together
  (:func:`data_checks.landing.clean_landed`), compared with the reference profile
  (:func:`data_checks.drift.drift_report`) and judged (:func:`data_checks.drift.decide`).

  ============================  =================================================================
  outcome                       what happens to the window
  ============================  =================================================================
  ``no_new_data``               nothing landed since the last evaluation
  ``insufficient_data``         fewer than ``min_rows`` valid rows: kept pending, joined by the next files
  ``below_thresholds``          no metric passed its threshold: considered, not pending any more
  ``cooldown``                  drift, but a run was requested less than ``cooldown_s`` ago: kept pending
                                and judged again once the cooldown is over, new files or not
  ``fire``                      drift: a run is requested with ``run_key`` = the window's content
                                fingerprint (the same data can never request two runs), window consumed
  ``unreadable``                a new file cannot be read: recorded (not retried until it changes)
  ============================  =================================================================
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Optional

from data_checks.drift import DriftDecision, DriftThresholds, decide, drift_report
from data_checks.errors import InputFileError
from data_checks.landing import LandedFile, LandedLayout, clean_landed, landed_fingerprint
from data_checks.readers import RawTables

STATE_VERSION = 1


@dataclass
class WatchState:
    """The sensor cursor. ``files``: every considered file by name -> [size, mtime_ns, sha256];
    ``pending``: names waiting to be judged again; ``failed``: unreadable name -> sha256."""

    files: dict[str, list] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    last_fired_at: Optional[float] = None
    last_run_key: Optional[str] = None
    pending_reason: Optional[str] = None  # "insufficient_data" or "cooldown"
    evaluations: int = 0

    def to_json(self) -> str:
        return json.dumps({"version": STATE_VERSION, **asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: Optional[str]) -> "WatchState":
        """The state a cursor holds (a missing or empty cursor is the initial state)."""
        if not text:
            return cls()
        data = json.loads(text)
        if data.pop("version", None) != STATE_VERSION:
            raise ValueError(f"drift sensor cursor has an unknown layout: {text[:200]}")
        return cls(**data)

    def known(self, root: str = "") -> dict[str, LandedFile]:
        """Considered files as :class:`LandedFile` (for :func:`data_checks.landing.list_landed`'s cache)."""
        return {n: LandedFile(f"{root}/{n}", n, int(v[0]), int(v[1]), str(v[2])) for n, v in self.files.items()}


@dataclass
class Evaluation:
    """One evaluation of the landing folder; ``state`` is the cursor to store."""

    status: str
    reason: str
    state: WatchState
    window: list[LandedFile] = field(default_factory=list)
    run_key: Optional[str] = None
    landed_files: list[str] = field(default_factory=list)  # every readable landed file (what retraining reads)
    report: Optional[dict[str, Any]] = None
    decision: Optional[DriftDecision] = None
    reference: str = ""
    quarantined_rows: int = 0

    @property
    def fire(self) -> bool:
        return self.status == "fire"

    def record(self, now: float) -> dict[str, Any]:
        """A JSON-serialisable record of this decision (one line of the decisions log)."""
        return {"evaluated_at": now, "status": self.status, "fire": self.fire, "reason": self.reason,
                "run_key": self.run_key, "reference": self.reference,
                "window": [f.name for f in self.window], "quarantined_rows": self.quarantined_rows,
                "metrics": (self.report or {}).get("metrics"),
                "current": (self.report or {}).get("current"),
                "exceeded": self.decision.exceeded if self.decision else [],
                "checks": self.decision.to_dict()["checks"] if self.decision else []}


def _is_new(f: LandedFile, state: WatchState) -> bool:
    seen = state.files.get(f.name)
    return seen is None or str(seen[2]) != f.sha256


def evaluate_landing(state: WatchState, files: list[LandedFile],
                     reference: Callable[[], tuple[dict[str, Any], str]], thresholds: DriftThresholds,
                     cooldown_s: float, now: float, layout: LandedLayout = "canonical",
                     source: Optional[str] = None, columns: Optional[dict[str, str]] = None,
                     prepare: Optional[Callable[[RawTables], RawTables]] = None) -> Evaluation:
    """Judge the landed files not judged yet (see the module docstring for the outcomes).

    ``files``: the landing folder's current listing; ``reference``: returns the reference profile and a
    description of where it came from (called only when there is something to judge); ``now``: epoch
    seconds (for the cooldown); ``layout``/``source``/``columns``/``prepare``: how to read and clean landed
    files (see :func:`data_checks.landing.clean_landed`)."""
    by_name = {f.name: f for f in files}
    new = [f for f in files if _is_new(f, state) and state.failed.get(f.name) != f.sha256]
    window = [by_name[n] for n in state.pending if n in by_name and n not in {f.name for f in new}] + new
    readable = [f.path for f in files if f.name not in state.failed or state.failed[f.name] != f.sha256]
    seen = {**state.files, **{f.name: [f.size, f.mtime_ns, f.sha256] for f in new}}
    state = replace(state, evaluations=state.evaluations + 1)
    cooled = (state.pending_reason == "cooldown" and state.last_fired_at is not None
              and now - state.last_fired_at >= cooldown_s)
    if not new and not (cooled and window):
        waiting = f", {len(window)} pending ({state.pending_reason})" if window else ""
        return Evaluation("no_new_data", f"no new landed files ({len(files)} already considered{waiting})", state,
                          window, landed_files=readable)
    try:
        cleaned = clean_landed([f.path for f in window], layout, source=source, columns=columns, prepare=prepare)
    except InputFileError as exc:
        bad = next((f for f in window if f.path == exc.path), None)
        failed = dict(state.failed)
        if bad is not None:
            failed[bad.name] = bad.sha256
        pending = [f.name for f in window if bad is None or f.name != bad.name]
        st = replace(state, files=seen, pending=pending, failed=failed)
        return Evaluation("unreadable", f"landed file unreadable, skipped until it changes: {exc}", st, window,
                          landed_files=[p for p in readable if bad is None or p != bad.path])
    profile, described = reference()
    report = drift_report(profile, cleaned.interactions)
    decision = decide(report, thresholds)
    n_q = len(cleaned.quarantine)
    common = dict(window=window, report=report, decision=decision, reference=described, quarantined_rows=n_q,
                  landed_files=readable)
    names = [f.name for f in window]
    if decision.status == "insufficient_data":
        return Evaluation("insufficient_data", decision.reason,
                          replace(state, files=seen, pending=names, pending_reason="insufficient_data"), **common)
    if decision.status == "below_thresholds":
        return Evaluation("below_thresholds", decision.reason,
                          replace(state, files=seen, pending=[], pending_reason=None), **common)
    if state.last_fired_at is not None and now - state.last_fired_at < cooldown_s:
        left = cooldown_s - (now - state.last_fired_at)
        return Evaluation("cooldown", f"{decision.reason}; but a retraining run was requested "
                          f"{now - state.last_fired_at:.0f} s ago (cooldown {cooldown_s:.0f} s, {left:.0f} s left): "
                          "the window stays pending",
                          replace(state, files=seen, pending=names, pending_reason="cooldown"), **common)
    key = f"drift-{landed_fingerprint(window)}"
    return Evaluation("fire", decision.reason, replace(state, files=seen, pending=[], pending_reason=None,
                                                       last_fired_at=now, last_run_key=key), run_key=key, **common)
