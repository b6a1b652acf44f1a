"""What the run page keeps per run between requests: the run's evidence record (its stored summary) and a
compact in-memory index of its attempts (attempt id, family, category, kind, errored; attempt-id order)
for filtered pages and counts.

Why: attempt_results rows are fat (every message, the answer, every verdict as JSON) and only
(run_id, attempt_id) is indexed, so a filtered page or count in SQL reads every row of the run: about a
second per query at 100,000 attempts. Unfiltered pages need no index (SQL walks the (run_id, attempt_id)
index and reads only the page's rows), so the index is built in the background when a run is first
opened, and a filtered request waits for it only if it comes first. Everything is rebuilt when the run's
rows change: the key is the row count and the highest row id, which a new result, a resumed run and a
retried error (a replaced row gets a new id) all move.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import func, select

from tunesafe.engine import results as run_store
from tunesafe.evidence.schema import AttemptResultRow
from tunesafe.evidence.store import Store
from tunesafe.types import EvidenceRecord

FILTERS = ("family", "category", "kind")
_T = AttemptResultRow


@dataclass(frozen=True)
class RunIndex:
    ids: tuple[str, ...]
    positions: dict[str, dict[str, tuple[int, ...]]]  # column -> value -> positions, ascending
    errored: tuple[int, ...]  # positions of errored attempts, ascending

    def select(self, filters: dict[str, str], errors_only: bool = False) -> list[int]:
        """Positions (in attempt-id order) of the attempts matching every filter."""
        groups = [self.positions[k].get(v, ()) for k, v in filters.items()]
        if errors_only:
            groups.append(self.errored)
        if not groups:
            return list(range(len(self.ids)))
        smallest, *others = sorted(groups, key=len)
        if not others:
            return list(smallest)
        keep = set.intersection(*(set(g) for g in others))
        return [i for i in smallest if i in keep]

    def choices(self, column: str) -> list[str]:
        return sorted(self.positions[column])


@dataclass(frozen=True)
class RunState:
    rows: tuple[int, int | None]  # (rows stored, highest row id): what the index was built from
    record: EvidenceRecord | None  # the newest RUN record (None until the run completes)
    pending: Future[RunIndex]

    @property
    def n_rows(self) -> int:
        return self.rows[0]

    def index(self) -> RunIndex:
        return self.pending.result()


class RunStates:
    """The states of the most recently viewed runs (LRU), shared between request threads."""

    def __init__(self, max_runs: int = 8) -> None:
        self.max_runs = max_runs
        self._cache: OrderedDict[str, RunState] = OrderedDict()
        self._lock = threading.Lock()
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-index")

    def get(self, store: Store, run_id: str) -> RunState:
        with self._lock:
            found = self._cache.get(run_id)
        rows = _rows_key(store, run_id)
        record_id = run_store.newest_run_record_id(store, run_id,
                                                   confirmed=_id(found.record) if found else None)
        if found is not None and found.rows == rows and _id(found.record) == record_id:
            state = found
        else:
            # a run that completed (or was retried) since has a new record; its rows may be unchanged
            pending = found.pending if found is not None and found.rows == rows else None
            state = RunState(
                rows,
                None if record_id is None else store.get(record_id),
                pending or self._builder.submit(_build, store, run_id),
            )
        with self._lock:
            self._cache[run_id] = state
            self._cache.move_to_end(run_id)
            while len(self._cache) > self.max_runs:
                self._cache.popitem(last=False)
        return state

    def close(self) -> None:
        self._builder.shutdown(wait=False, cancel_futures=True)


def _id(record: EvidenceRecord | None) -> int | None:
    return None if record is None else record.id


def _rows_key(store: Store, run_id: str) -> tuple[int, int | None]:
    # both answered from the (run_id) index alone, without reading the rows
    count, top = run_store.read(store, select(func.count(), func.max(_T.pk)).where(_T.run_id == run_id))[0]
    return int(count), top


def _build(store: Store, run_id: str) -> RunIndex:
    query = (
        select(_T.attempt_id, _T.family, _T.category, _T.kind, _T.error.is_not(None))
        .where(_T.run_id == run_id)
        .order_by(_T.attempt_id)
    )
    rows = run_store.read(store, query)
    positions: dict[str, dict[str, list[int]]] = {name: {} for name in FILTERS}
    for i, row in enumerate(rows):
        for name, value in zip(FILTERS, row[1:4], strict=True):
            positions[name].setdefault(value, []).append(i)
    return RunIndex(
        ids=tuple(r[0] for r in rows),
        positions={name: {v: tuple(p) for v, p in by.items()} for name, by in positions.items()},
        errored=tuple(i for i, r in enumerate(rows) if r[4]),
    )
