"""What the scorers share: a scored chunk, the record's ``row`` and identifying columns, per-alert
columns spread over every row, and the threshold a scorer uses."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import polars as pl

from nadkit.alerts.records import ID_COLUMNS
from nadkit.errors import ConfigError
from nadkit.features.incremental import SEQ
from nadkit.sources import ROW
from nadkit.training.bundle import ModelBundle


@dataclass(frozen=True)
class ScoredChunk:
    """Scores of some flows: the identifying columns, ``score``, ``alert``, ``class`` and, for
    alerts, ``top_features``; ``row`` is the flow's 1-based row in the input. A scorer that keeps
    the alerts only leaves the other flows out of ``frame`` and counts them in ``scored``."""

    frame: pl.DataFrame
    #: flows held back after this chunk (features that need later flows)
    held_rows: int = 0
    #: flows scored in this chunk, where the frame holds fewer (the alerted ones); None: every row
    scored: int | None = None

    @property
    def alerts(self) -> int:
        return int(self.frame["alert"].sum()) if self.frame.height else 0

    @property
    def flows(self) -> int:
        """Flows scored in this chunk (the frame's rows, or more where it keeps the alerts only)."""
        return self.frame.height if self.scored is None else self.scored


def identity(flows: pl.DataFrame) -> pl.DataFrame:
    """The 1-based input ``row`` of each flow (from the reader's row number, else the incremental
    features' sequence number, else the position) and the identifying columns present."""
    if ROW in flows.columns:
        row = pl.col(ROW) + 1
    elif SEQ in flows.columns:
        row = pl.col(SEQ) + 1
    else:
        row = pl.int_range(1, pl.len() + 1)
    return flows.select(row.alias("row"), *[c for c in ID_COLUMNS if c in flows.columns])


def over_alerts(per_alert: pl.Series, alerts: np.ndarray) -> pl.Series:
    """``per_alert`` (one value per alert, in row order) as a ``top_features`` column of every row,
    null where there is no alert."""
    if len(per_alert) == len(alerts):
        return per_alert.alias("top_features")
    if len(per_alert) == 0:  # no alert: nulls of the same type, without a gather
        return pl.repeat(None, len(alerts), dtype=per_alert.dtype, eager=True).alias("top_features")
    position = np.full(len(alerts), -1, dtype=np.int64)
    position[np.flatnonzero(alerts)] = np.arange(len(per_alert))
    index = pl.Series("i", position).replace(-1, None)
    return per_alert.gather(index).alias("top_features")


def bundle_threshold(bundle: ModelBundle, threshold: float | None) -> float:
    """``threshold``, or the bundle's own when None (ConfigError when it has none)."""
    if threshold is None:
        if bundle.threshold is None:
            raise ConfigError("the bundle has no threshold; give one with --threshold")
        return bundle.threshold.value
    return float(threshold)


T = TypeVar("T")
_DONE = object()


def prefetched(items: Iterable[T], depth: int = 1) -> Iterator[T]:
    """``items`` read ahead by up to ``depth`` items on a background thread, so that reading the next
    chunk (parsing, validation: work that releases the GIL) overlaps with scoring this one. Items and
    errors arrive in order; leaving the loop early stops the reader at its next item."""
    slots: queue.Queue[object] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not offer(item):
                    return
        except BaseException as error:  # handed to the consumer, raised there
            offer(_Failure(error))
            return
        finally:
            # a generator left early (the consumer stopped) closes here, on its own thread, so
            # that a stage it reads from stops too
            close = getattr(items, "close", None)
            if close is not None:
                close()
        offer(_DONE)

    reader = threading.Thread(target=read, name="nadkit-read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        reader.join(timeout=5)


@dataclass(frozen=True)
class _Failure:
    error: BaseException


class Background:
    """Calls of ``work`` on a thread of their own (named ``name``), one at a time and in order, while
    the caller goes on: a call first waits for the one before it (so at most one is ahead of the
    caller, and a failure is raised at the next call or at :meth:`finish`). A context manager; leaving
    it waits for the last call without raising (call :meth:`finish` for its error)."""

    def __init__(self, work: Callable[..., Any], name: str) -> None:
        self._work = work
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: Future[Any] | None = None

    def __call__(self, *args: Any) -> None:
        self.finish()
        self._pending = self._pool.submit(self._work, *args)

    def finish(self) -> None:
        """Wait for the last call; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def settle(self) -> None:
        """Wait for the last call, raising nothing (after a failure elsewhere)."""
        if self._pending is not None:
            wait([self._pending])

    def __enter__(self) -> Background:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.settle()
        self._pool.shutdown(wait=True)


__all__ = ["Background", "ScoredChunk", "bundle_threshold", "identity", "over_alerts", "prefetched"]
