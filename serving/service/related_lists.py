"""Each item's related list, made once per served version: it depends on the model and the item only.

For an anchor item the entry holds the model's ``depth`` best related items (positions, best first, positive
scores only, the item itself left out: what ``GET /items/{id}/related`` ranks by), and the JSON rows of the first
``json_depth`` of them with their co-purchase evidence. A request's filters (category, price, stock, exclude) then
pick from the list: when at least ``k`` pass, or the list holds every positively scored item, that is exactly the
top ``k`` of the filtered catalog (any item off the list scores at most the list's last, and ties were settled by
position); otherwise the caller scores the item in full. Entries are kept LRU up to ``capacity_bytes``; the
most-bought items can be made at load (``warm``), so a new version answers its busiest items from the first
request, and the rest of the cache filled in the background after (``serving.service.champion``).
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from serving.service.ranking import top_positions


@dataclass
class RelatedEntry:
    positions: np.ndarray  # (r,) int64 item positions, best first
    scores: np.ndarray  # (r,) float32 their scores
    complete: bool  # True: every positively scored item is in ``positions``
    rows: list  # JSON bytes of the first rows (score, evidence, reason), in ``positions`` order
    nbytes: int


class RelatedLists:
    """``scorer``: the served scorer (``related_scores(item)`` -> (n_items,) scores); ``evidence``:
    ``serving.service.evidence.Evidence``; ``row(pos, score, ev) -> bytes``: the JSON of one row."""

    def __init__(self, scorer, evidence, row, depth: int = 100, json_depth: int = 10,
                 capacity_bytes: int = 64 * 2**20, on_cache=None) -> None:
        self.scorer, self.evidence, self.row = scorer, evidence, row
        self.depth, self.json_depth, self.capacity = depth, json_depth, capacity_bytes
        self._entries: OrderedDict[int, RelatedEntry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.on_cache = on_cache or (lambda hit: None)

    def make(self, item: int) -> RelatedEntry:
        """The entry of ``item``, computed (not kept)."""
        scores = self.scorer.related_scores(item)
        idx = top_positions(scores, None, self.depth, positive=True, never=np.array([item]))
        head = idx[:self.json_depth]
        rows = [self.row(int(p), scores[p], ev) for p, ev in zip(head, self.evidence.pair(item, head))]
        sc = np.asarray(scores, np.float32)[idx]
        return RelatedEntry(idx, sc, len(idx) < self.depth, rows,
                            idx.nbytes + sc.nbytes + sum(len(r) + 33 for r in rows) + 200)

    def get(self, item: int) -> RelatedEntry:
        """The entry of ``item``, from the cache or made and kept (``capacity_bytes`` 0: never kept)."""
        with self._lock:
            entry = self._entries.get(item)
            if entry is not None:
                self._entries.move_to_end(item)
        self.on_cache(entry is not None)
        if entry is None:
            entry = self.make(item)
            self._keep(item, entry)
        return entry

    def _keep(self, item: int, entry: RelatedEntry) -> None:
        if entry.nbytes > self.capacity:
            return
        with self._lock:
            if item in self._entries:
                return
            self._entries[item] = entry
            self._bytes += entry.nbytes
            while self._bytes > self.capacity:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.nbytes

    def warm(self, items: np.ndarray, seconds: float, keep_going=None, pause: float = 0.0) -> int:
        """Make the entries of ``items`` in order (e.g. the most bought first) for at most ``seconds``, until the
        cache is full or ``keep_going()`` is false, skipping those kept already and sleeping ``pause`` seconds
        after each (a background warm leaves the requests the interpreter); returns how many were made."""
        deadline, made = time.perf_counter() + seconds, 0
        for item in np.asarray(items, np.int64).tolist():
            if time.perf_counter() >= deadline or self._bytes >= self.capacity or \
                    (keep_going is not None and not keep_going()):
                break
            if item in self._entries:
                continue
            self._keep(item, self.make(item))
            made += 1
            if pause:
                time.sleep(pause)
        return made

    def __len__(self) -> int:
        return len(self._entries)
