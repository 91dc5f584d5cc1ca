"""The collector's state: :class:`FlowDecoder` with its export sessions (templates, sequence
numbers, the exporter's system init time), the data held for templates not seen yet, the records
buffered for decoding, the counts of :class:`DecoderStats`, and the rejections counted by exporter and
reason and logged at a bounded rate."""

from __future__ import annotations

import logging
import struct
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import polars as pl

from nadkit.stream.netflow.decode import (
    _Context,
    _decode_group,
    _exporter_name,
    _Group,
    _unsigned,
    empty_table,
)
from nadkit.stream.netflow.fields import (
    _MOD32,
    _V5_FIELDS,
    IPFIX_HEADER,
    SYSTEM_INIT_MS,
    V5_HEADER,
    V5_MAX_RECORDS,
    V5_RECORD_BYTES,
    V9_HEADER,
    Rejected,
)
from nadkit.stream.netflow.templates import (
    Template,
    _count_records,
    _ipfix_templates,
    _repack,
    _sets,
    _v9_options_templates,
    _v9_templates,
    check_template,
)

log = logging.getLogger(__name__)


class _Throttle:
    """At most one log line per key and ``interval_s``, with the count of those held back."""

    def __init__(self, interval_s: float = 60.0, max_keys: int = 4096) -> None:
        self.interval_s = interval_s
        self.max_keys = max_keys
        self._last: dict[Any, float] = {}
        self._held: Counter[Any] = Counter()

    def warn(self, key: Any, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._held[key] += 1
            log.debug(message, *args)
            return
        if last is None and len(self._last) >= self.max_keys:
            self._last.clear()
        self._last[key] = now
        held = self._held.pop(key, 0)
        if held:
            log.warning(message + " (and %d more like it not logged)", *args, held)
        else:
            log.warning(message, *args)


@dataclass
class DecoderStats:
    """Counts since the decoder started (``pending_sets`` is the number held now)."""

    packets: int = 0
    bytes: int = 0
    flows: int = 0
    malformed_packets: int = 0
    unknown_version: int = 0
    templates: int = 0
    template_refreshes: int = 0
    template_changes: int = 0
    templates_withdrawn: int = 0
    options_records: int = 0
    pending_sets: int = 0
    pending_decoded_sets: int = 0
    pending_dropped_sets: int = 0
    sequence_gaps: int = 0
    sequence_lost: int = 0
    sequence_reordered: int = 0
    sequence_restarts: int = 0
    records_rejected: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, int]:
        """Flat counts; ``rejected_<reason>`` for each reason seen."""
        out = {k: v for k, v in asdict(self).items() if k != "rejected"}
        out.update({f"rejected_{reason}": count for reason, count in sorted(self.rejected.items())})
        return out


@dataclass
class _Session:
    version: int
    templates: dict[int, Template] = field(default_factory=dict)
    init_ms: int = -1
    expected: int | None = None
    candidate: int | None = None  # the sequence number of a packet dropped for its jump
    refused: set[int] = field(default_factory=set)  # template ids whose only template was rejected


class _Held(NamedTuple):
    """A data set whose template has not arrived yet."""

    session: tuple[Any, ...]
    template_id: int
    body: bytes
    context: _Context


class FlowDecoder:
    """Decodes NetFlow v5/v9 and IPFIX packets from any number of exporters (see
    :mod:`nadkit.stream.netflow`).

    ``max_pending_sets`` / ``max_pending_bytes`` bound the data held for templates not seen yet; the
    other bounds are the plausibility checks of :mod:`nadkit.stream.netflow`.
    """

    def __init__(
        self,
        *,
        max_pending_sets: int = 512,
        max_pending_bytes: int = 4 << 20,
        max_sessions: int = 4096,
        max_sequence_jump: int = 1 << 24,
        max_flow_age_s: float = 8 * 86_400.0,
        max_clock_skew_s: float = 300.0,
        log_interval_s: float = 60.0,
    ) -> None:
        self.stats = DecoderStats()
        self.max_pending_sets = max_pending_sets
        self.max_pending_bytes = max_pending_bytes
        self.max_sessions = max_sessions
        self.max_sequence_jump = max_sequence_jump
        self.max_flow_age_us = int(max_flow_age_s * 1e6)
        self.max_clock_skew_us = int(max_clock_skew_s * 1e6)
        self._throttle = _Throttle(log_interval_s)
        self._by_exporter: dict[str, Counter[str]] = {}
        self._sessions: dict[tuple[Any, ...], _Session] = {}
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._held: deque[_Held] = deque()
        self._held_bytes = 0
        self._rows = 0
        self._finished: list[pl.DataFrame] = []

    # -- the interface ------------------------------------------------------------------------------

    @property
    def rows(self) -> int:
        """Flows decoded (or buffered for decoding) and not taken yet."""
        return self._rows

    def feed(self, data: bytes, exporter: tuple[Any, ...] = ("", 0), received_s: float = 0.0) -> int:
        """Take one export packet from ``exporter`` (address, port); returns the flows it added.
        A malformed packet is counted and skipped (what it held before the damage is kept)."""
        self.stats.packets += 1
        self.stats.bytes += len(data)
        before = self._rows
        try:
            if len(data) < 4:
                raise Rejected("malformed", "packet shorter than a header")
            version = (data[0] << 8) | data[1]
            if version == 5:
                self._v5(data, exporter, received_s)
            elif version == 9:
                self._v9(data, exporter, received_s)
            elif version == 10:
                self._ipfix(data, exporter, received_s)
            else:
                self.stats.unknown_version += 1
                raise Rejected("unknown_version", f"unknown version {version}")
        except Rejected as error:
            if error.reason == "malformed":
                self.stats.malformed_packets += 1
            self._reject(exporter, error.reason, str(error))
        except (ValueError, struct.error, IndexError, OverflowError) as error:
            self.stats.malformed_packets += 1
            self._reject(exporter, "malformed", str(error))
        except Exception as error:  # a packet must never stop the collector
            self.stats.malformed_packets += 1
            log.debug("export packet from %s raised", exporter, exc_info=True)
            self._reject(exporter, "decode_error", f"{type(error).__name__}: {error}")
        added = self._rows - before
        self.stats.flows += added
        return added

    def rejections(self) -> dict[str, dict[str, int]]:
        """Datagrams, templates and records rejected so far, by exporter (``address:port``) and reason."""
        return {exporter: dict(counts) for exporter, counts in self._by_exporter.items()}

    def _reject(self, exporter: tuple[Any, ...] | str, reason: str, detail: str, count: int = 1) -> None:
        name = exporter if isinstance(exporter, str) else _exporter_name(exporter)
        self.stats.rejected[reason] += count
        counts = self._by_exporter.get(name)
        if counts is None:
            if len(self._by_exporter) >= self.max_sessions:
                name = "(other exporters)"
            counts = self._by_exporter.setdefault(name, Counter())
        counts[reason] += count
        self._throttle.warn((name, reason), "export data from %s rejected (%s): %s", name, reason, detail)

    def take(self) -> pl.DataFrame:
        """Every flow decoded since the last call, as a canonical table (arrival order per template)."""
        frames = self._finished
        self._finished = []
        for group in self._groups.values():
            if group.rows:
                frames.append(self._decode(group))
        self._groups.clear()
        self._rows = 0
        frames = [f for f in frames if f.height]
        if not frames:
            return empty_table()
        return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical")

    def templates(self) -> dict[tuple[Any, ...], dict[int, Template]]:
        """The templates known now, by session (exporter address, port, version, domain)."""
        return {key: dict(session.templates) for key, session in self._sessions.items()}

    # -- NetFlow v5 ---------------------------------------------------------------------------------

    def _v5(self, data: bytes, exporter: tuple[Any, ...], received_s: float) -> None:
        (_, count, uptime, secs, nsecs, sequence, engine_type, engine_id, _) = V5_HEADER.unpack_from(data)
        if count > V5_MAX_RECORDS or len(data) < V5_HEADER.size + count * V5_RECORD_BYTES:
            raise ValueError(f"v5 packet of {len(data)} bytes cannot hold {count} records")
        key = (*exporter[:2], 5, (engine_type << 8) | engine_id)
        session = self._session(key, 5)
        self._check_sequence(session, sequence)
        self._sequence(session, sequence, count)
        context = _Context(secs * 1_000_000 + nsecs // 1000, uptime, -1, received_s)
        template = session.templates.get(0)
        if template is None:
            template = session.templates[0] = Template(0, ((e, n, 0) for e, n in _V5_FIELDS))
        body = data[V5_HEADER.size : V5_HEADER.size + count * V5_RECORD_BYTES]
        self._buffer(key, template, 5, body, count, context)

    # -- NetFlow v9 ---------------------------------------------------------------------------------

    def _v9(self, data: bytes, exporter: tuple[Any, ...], received_s: float) -> None:
        (_, _, uptime, secs, sequence, source_id) = V9_HEADER.unpack_from(data)
        key = (*exporter[:2], 9, source_id)
        session = self._session(key, 9)
        self._check_sequence(session, sequence)
        self._sequence(session, sequence, 1)
        context = _Context(secs * 1_000_000, uptime, -1, received_s)
        for set_id, body in _sets(data, V9_HEADER.size, len(data)):
            if set_id == 0:
                self._templates(key, session, _v9_templates(body))
            elif set_id == 1:
                self._templates(key, session, _v9_options_templates(body))
            elif set_id >= 256:
                self._data(key, session, set_id, body, context)

    # -- IPFIX --------------------------------------------------------------------------------------

    def _ipfix(self, data: bytes, exporter: tuple[Any, ...], received_s: float) -> None:
        (_, length, export_time, sequence, domain) = IPFIX_HEADER.unpack_from(data)
        if length > len(data) or length < IPFIX_HEADER.size:
            raise ValueError(f"IPFIX message length {length} does not match the {len(data)} bytes received")
        key = (*exporter[:2], 10, domain)
        session = self._session(key, 10)
        self._check_sequence(session, sequence)
        records = 0
        known = True
        for set_id, body in _sets(data, IPFIX_HEADER.size, length):
            if set_id == 2:
                self._templates(key, session, _ipfix_templates(body, options=False))
            elif set_id == 3:
                self._templates(key, session, _ipfix_templates(body, options=True))
            elif set_id >= 256:
                context = _Context(export_time * 1_000_000, -1, session.init_ms, received_s)
                count = self._data(key, session, set_id, body, context)
                if count is None:
                    known = False
                else:
                    records += count
        # the sequence number counts data records: the next one is only known when every set was read
        self._sequence(session, sequence, records if known else None)

    # -- shared steps -------------------------------------------------------------------------------

    def _session(self, key: tuple[Any, ...], version: int) -> _Session:
        session = self._sessions.get(key)
        if session is None:
            if len(self._sessions) >= self.max_sessions:
                raise Rejected("too_many_sessions", f"already {len(self._sessions)} export sessions")
            session = self._sessions[key] = _Session(version)
            log.info("new export session %s (NetFlow/IPFIX version %d)", key, version)
        return session

    def _check_sequence(self, session: _Session, sequence: int) -> None:
        """Refuse a packet whose sequence number jumps implausibly (see :mod:`nadkit.stream.netflow`)."""
        expected = session.expected
        if expected is None or sequence == expected:
            return
        ahead = (sequence - expected) % _MOD32
        if ahead < (1 << 31) and ahead <= self.max_sequence_jump:
            return  # a gap: packets were lost
        if ahead >= (1 << 31) and (
            _MOD32 - ahead <= self.max_sequence_jump or sequence <= self.max_sequence_jump
        ):
            return  # reordered, or the exporter restarted from 0
        candidate = session.candidate
        if candidate is not None and 0 < (sequence - candidate) % _MOD32 <= self.max_sequence_jump:
            session.candidate = None
            session.expected = None  # a second packet goes on from the first: the exporter restarted
            self.stats.sequence_restarts += 1
            return
        session.candidate = sequence
        raise Rejected("sequence_jump", f"sequence number {sequence} where {expected} was expected")

    def _sequence(self, session: _Session, sequence: int, advance: int | None) -> None:
        expected = session.expected
        if expected is not None and sequence != expected:
            ahead = (sequence - expected) % _MOD32
            if ahead < (1 << 31):
                self.stats.sequence_gaps += 1
                self.stats.sequence_lost += ahead
            else:
                self.stats.sequence_reordered += 1
        session.expected = None if advance is None else (sequence + advance) % _MOD32

    def _templates(
        self, key: tuple[Any, ...], session: _Session, found: list[tuple[int, Template | None]]
    ) -> None:
        for template_id, template in found:
            if template is None:  # IPFIX withdrawal
                self._withdraw(session, template_id)
                continue
            try:
                check_template(template)
            except Rejected as error:
                self._reject(key, error.reason, str(error))
                self._drop_held(key, template_id)  # data held for it was written with that layout
                if template_id not in session.templates and len(session.refused) < 65_536:
                    session.refused.add(template_id)
                continue
            session.refused.discard(template_id)
            old = session.templates.get(template_id)
            if old is not None and old.same_as(template):
                self.stats.template_refreshes += 1
                continue
            if old is not None:
                self.stats.template_changes += 1
                self._retire(key, template_id)
                log.info("template %d of %s changed layout", template_id, key)
            else:
                self.stats.templates += 1
            session.templates[template_id] = template
            self._release_held(key, session, template_id)

    def _withdraw(self, session: _Session, template_id: int) -> None:
        if template_id in (2, 3):  # every template / every options template
            doomed = [t for t, tpl in session.templates.items() if tpl.options == (template_id == 3)]
        else:
            doomed = [template_id] if template_id in session.templates else []
        for tid in doomed:
            del session.templates[tid]
            self.stats.templates_withdrawn += 1

    def _retire(self, key: tuple[Any, ...], template_id: int) -> None:
        """Decode what was buffered with a template's old layout before the new one is used."""
        group = self._groups.pop((key, template_id), None)
        if group is not None and group.rows:
            self._finished.append(self._decode(group))

    def _data(
        self, key: tuple[Any, ...], session: _Session, template_id: int, body: bytes, context: _Context
    ) -> int | None:
        """Buffer a data set; returns its record count, or None when its template is unknown."""
        template = session.templates.get(template_id)
        if template is None:
            if template_id in session.refused:
                self._reject(key, "bad_template", f"data set of rejected template {template_id}")
                return 0
            self._hold(_Held(key, template_id, body, context))
            return None
        if template.options:
            return self._options(session, template, body)
        if template.dtype is None:
            body, count, template = _repack(template, body)
            return self._buffer(key, template, session.version, body, count, context, variable=True)
        if template.record_length == 0:
            return 0
        count = len(body) // template.record_length
        self._buffer(key, template, session.version, body[: count * template.record_length], count, context)
        return count

    def _buffer(
        self,
        key: tuple[Any, ...],
        template: Template,
        version: int,
        body: bytes,
        count: int,
        context: _Context,
        *,
        variable: bool = False,
    ) -> int:
        if count == 0:
            return 0
        group_key = (key, template.template_id, "repacked") if variable else (key, template.template_id)
        group = self._groups.get(group_key)
        if group is None or (group.template is not template and not group.template.same_as(template)):
            if group is not None and group.rows:
                self._finished.append(self._decode(group))
            group = self._groups[group_key] = _Group(template, version, _exporter_name(key))
        group.chunks.append(body)
        group.contexts.append((count, context))
        group.rows += count
        self._rows += count
        return count

    def _decode(self, group: _Group) -> pl.DataFrame:
        """A group's records as a table, implausible records dropped and counted; never raises."""
        try:
            frame, dropped = _decode_group(group, self.max_flow_age_us, self.max_clock_skew_us)
        except Exception as error:  # a template that passed the checks and still cannot be decoded
            log.debug("records of %s could not be decoded", group.exporter, exc_info=True)
            self.stats.records_rejected += group.rows
            self._reject(group.exporter, "decode_error", f"{type(error).__name__}: {error}", group.rows)
            return empty_table()
        for reason, count in dropped.items():
            if count:
                self.stats.records_rejected += count
                self._reject(group.exporter, reason, f"{count} records", count)
        return frame

    def _options(self, session: _Session, template: Template, body: bytes) -> int:
        count = _count_records(template, body)
        self.stats.options_records += count
        name = template.index.get((SYSTEM_INIT_MS, 0))
        if name is not None and template.dtype is not None and count:
            records = np.frombuffer(body, dtype=template.dtype, count=count)
            values = _unsigned(records[name])
            session.init_ms = int(values[-1])
        return count

    def _hold(self, held: _Held) -> None:
        self._held.append(held)
        self._held_bytes += len(held.body)
        while len(self._held) > self.max_pending_sets or self._held_bytes > self.max_pending_bytes:
            dropped = self._held.popleft()
            self._held_bytes -= len(dropped.body)
            self.stats.pending_dropped_sets += 1
            self._throttle.warn(
                "pending", "data sets without a template are being dropped (the exporter sent no template)"
            )
        self.stats.pending_sets = len(self._held)

    def _drop_held(self, key: tuple[Any, ...], template_id: int) -> None:
        kept = deque(h for h in self._held if h.session != key or h.template_id != template_id)
        dropped = len(self._held) - len(kept)
        if dropped:
            self._held_bytes = sum(len(h.body) for h in kept)
            self._held = kept
            self.stats.pending_dropped_sets += dropped
            self.stats.pending_sets = len(kept)

    def _release_held(self, key: tuple[Any, ...], session: _Session, template_id: int) -> None:
        if not self._held:
            return
        keep: deque[_Held] = deque()
        for held in self._held:
            if held.session == key and held.template_id == template_id:
                self._held_bytes -= len(held.body)
                self.stats.pending_decoded_sets += 1
                context = held.context
                if session.version == 10 and context.init_ms < 0:
                    context = context._replace(init_ms=session.init_ms)
                self._data(key, session, template_id, held.body, context)
            else:
                keep.append(held)
        self._held = keep
        self.stats.pending_sets = len(self._held)
