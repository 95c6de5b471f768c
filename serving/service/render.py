"""The answers' JSON, made once where it can be: per served version, each item's record (id, title, category,
price, stock) is serialised the first time it is shown and kept; a recommended row is that record spliced with
its score, evidence and reason; the envelope (which model answered, what orders the list) is assembled from
bytes. Starlette's ``JSONResponse`` would re-encode the whole answer, dicts and all, on every request.

Formatting is ``json.dumps`` with Starlette's settings (UTF-8, no spaces)."""
from __future__ import annotations

import json
import threading
from json.encoder import encode_basestring

import numpy as np

from serving.service.evidence import PairEvidence, reason

_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
TAILS_KEPT = 200_000  # pairs whose evidence JSON is kept per version (about 60 MB at most); then started afresh
_string = encode_basestring  # a str as a JSON string (quotes and escapes; UTF-8 kept, as ensure_ascii=False)


def _number(x: float) -> str:
    """A float as JSON writes it (``repr``); a non-finite one is refused, as ``allow_nan=False`` does."""
    if x != x or x in (float("inf"), float("-inf")):
        raise ValueError(f"{x!r} is not a JSON number")
    return repr(float(x))


def dumps(value) -> bytes:
    return _encode(value).encode()


class Raw(bytes):
    """Bytes that are already JSON: :func:`envelope` inserts them as they are."""


class Renderer:
    """JSON pieces of one served version (``served``: ``serving.service.champion.Served``); thread-safe (a
    record made twice by two requests is the same bytes)."""

    def __init__(self, served) -> None:
        self.s = served
        self._records: list[dict | None] = [None] * len(served.item_ids)
        self._json: list[bytes | None] = [None] * len(served.item_ids)
        self._strings: list[tuple[str, str] | None] = [None] * len(served.item_ids)
        self._lock = threading.Lock()
        self._tails: dict[tuple[int, int, int], bytes] = {}  # (anchor, item, co-purchases) -> end of the row
        info = served.info
        self.model = dumps({"name": served.name, "version": served.version, "family": info.family,
                            "format": info.format})
        self.headers = {"X-Model-Version": f"{served.name}/{served.version}"}

    def record(self, pos: int) -> dict:
        """The item's record (a dict shared between requests: copy before changing it)."""
        rec = self._records[pos]
        if rec is None:
            s = self.s
            rec = {"item_id": str(s.item_ids[pos]), "title": str(s.titles[pos])}
            if s.categories is not None:
                rec["category"] = s.categories[pos] or None
            if s.prices is not None:
                rec["price"] = None if not np.isfinite(s.prices[pos]) else round(float(s.prices[pos]), 2)
            if s.in_stock is not None:
                rec["in_stock"] = bool(s.in_stock[pos])
            self._records[pos] = rec
        return rec

    def item(self, pos: int) -> bytes:
        """The record's JSON object, ``{...}``."""
        out = self._json[pos]
        if out is None:
            out = self._json[pos] = dumps(self.record(pos))
        return out

    def evidence(self, ev: PairEvidence) -> dict:
        if ev.with_item < 0:
            return {"with_item_id": None, "co_purchases": 0, "confidence": 0.0, "lift": 0.0}
        s = self.s
        return {"with_item_id": str(s.item_ids[ev.with_item]), "with_title": str(s.titles[ev.with_item]),
                "co_purchases": ev.co_purchases, "confidence": round(ev.confidence, 4), "lift": round(ev.lift, 3)}

    def _names(self, pos: int) -> tuple[str, str]:
        """The item's id and title as JSON strings."""
        names = self._strings[pos]
        if names is None:
            names = self._strings[pos] = (_string(str(self.s.item_ids[pos])), _string(str(self.s.titles[pos])))
        return names

    def row(self, pos: int, score: float, ev: PairEvidence) -> bytes:
        """One recommended item: its record, ``score``, the ``evidence`` of the pair (:meth:`evidence`) and the
        reason in words; formatted here rather than by ``json.dumps`` of a dict (a third of the cost). The evidence
        and reason of a pair are the same in every answer of this version: kept, up to ``TAILS_KEPT`` pairs."""
        key = (ev.with_item, pos, ev.co_purchases)
        tail = self._tails.get(key)
        if tail is None:
            tail = self._tail(ev)
            if len(self._tails) >= TAILS_KEPT:
                self._tails.clear()
            self._tails[key] = tail
        return b"".join((self.item(pos)[:-1], b',"score":', _number(round(float(score), 6)).encode(), tail))

    def _tail(self, ev: PairEvidence) -> bytes:
        """``,"evidence":{...},"reason":"..."}``: the end of a row."""
        if ev.with_item < 0:
            evidence, anchor = '{"with_item_id":null,"co_purchases":0,"confidence":0.0,"lift":0.0}', ""
        else:
            item_id, title = self._names(ev.with_item)
            evidence = (f'{{"with_item_id":{item_id},"with_title":{title},"co_purchases":{int(ev.co_purchases)},'
                        f'"confidence":{_number(round(ev.confidence, 4))},"lift":{_number(round(ev.lift, 3))}}}')
            anchor = str(self.s.titles[ev.with_item])
        return (f',"evidence":{evidence},"reason":{_string(reason(ev, anchor, self.s.info.score_meaning))}}}'
                .encode())

    def rows(self, positions: np.ndarray, scores: np.ndarray, evidence: list[PairEvidence]) -> Raw:
        """A JSON list of :meth:`row` for ``positions`` ((n,) item positions), ``scores`` (indexed by position)."""
        return Raw(b"[" + b",".join(self.row(int(p), scores[p], ev) for p, ev in zip(positions, evidence)) + b"]")


def envelope(r: Renderer, ranked_by: str, order: str, ignored: list[str], body: dict) -> bytes:
    """The answer: ``{"model": ..., "ranked_by": ..., "order": ..., <body>, "filters_ignored": [...]}``;
    ``body`` values that are :class:`Raw` go in as they are, the others through ``json.dumps``."""
    parts = [b'{"model":', r.model, b',"ranked_by":', dumps(ranked_by), b',"order":', dumps(order)]
    for key, value in body.items():
        parts += [b',"', key.encode(), b'":', value if isinstance(value, Raw) else dumps(value)]
    if ignored:
        parts += [b',"filters_ignored":', dumps(ignored)]
    parts.append(b"}")
    return b"".join(parts)
