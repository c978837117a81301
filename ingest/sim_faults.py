"""Faults between a simulated counter and the broker, each configurable
(`simulator.faults` in the settings) and recorded as ground truth.

The visitor engine decides what truly happened (clean readings); this module decides what
the network carries: messages dropped, duplicated, delivered out of order, corrupted,
delayed while a counter is offline and sent in a burst when it comes back, stamped by a
skewed clock, or encoded as The Things Stack v3 uplinks. Counter resets change the device
itself (seq and totals back to 0), so they are applied to the counter and the readings that
follow are the truth.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

import numpy as np
import pandas as pd

from ingest.sim_ttn import encode_uplink
from visitorflow.contract import Reading, counts_topic, format_counts
from visitorflow.settings import SimulatorFaults

# What each fault does to the reading it hits, for whoever compares the store with the truth.
LOST = {"drop", "malformed", "buffer_overflow"}  # never stored by a collector
SHIFTED = {"skew"}  # stored, under a wrong timestamp
RECOVERABLE = {"duplicate", "reorder", "late", "reset"}  # stored exactly once, correctly


class GateCounterLike(Protocol):
    """What a reset touches on a counter (ingest.sim_counters.GateCounter)."""

    seq: int
    in_total: int
    out_total: int


@dataclass(frozen=True)
class FaultEvent:
    kind: str
    device_id: str
    seq: int
    ts_utc: datetime  # the true end of the reading's interval
    detail: str = ""


@dataclass(frozen=True)
class Action:
    """Something a counter client must do now: publish a counts message, or a status."""

    kind: str  # "counts" | "status"
    topic: str = ""
    payload: bytes = b""


@dataclass
class _GateState:
    offline_until: datetime | None = None
    buffer: deque = field(default_factory=deque)
    held: tuple[Reading, Action] | None = None
    skew_s: int = 0
    skew_until: datetime | None = None


class FaultInjector:
    """Turns each clean reading into the actions its counter takes, under the faults."""

    def __init__(self, faults: SimulatorFaults, seed: int, prefix: str, tz: tzinfo,
                 ttn_application_id: str = "langson-counters",
                 ttn_tenant_id: str = "ttn", dev_euis: dict[str, str] | None = None) -> None:
        self.f = faults
        # counter id -> DevEUI from the catalogue, for the TTN gates
        self.dev_euis = dev_euis or {}
        self.rng = np.random.default_rng([seed, 5150])
        self.prefix = prefix
        self.tz = tz
        self.ttn = (ttn_application_id, ttn_tenant_id)
        self.state: dict[str, _GateState] = {}
        self.events: list[FaultEvent] = []

    @property
    def active(self) -> bool:
        f = self.f
        return any((f.drop_rate, f.duplicate_rate, f.reorder_rate, f.malformed_rate,
                    f.offline_per_day, f.reset_per_day, f.skew_per_day, f.ttn_gates))

    def _per_interval(self, per_day: float, interval_s: int) -> float:
        return per_day * interval_s / 86400

    def _record(self, kind: str, reading: Reading, detail: str = "") -> None:
        self.events.append(FaultEvent(kind, reading.device_id, reading.seq, reading.ts_utc,
                                      detail))

    def _encode(self, reading: Reading) -> Action:
        if reading.device_id in self.f.ttn_gates:
            topic, payload = encode_uplink(reading, *self.ttn,
                                           self.dev_euis.get(reading.device_id))
            return Action("counts", topic, payload)
        local = reading.ts_utc.replace(tzinfo=UTC).astimezone(self.tz)
        return Action("counts", counts_topic(self.prefix, reading.site_id, reading.gate_id),
                      format_counts(reading, local))

    def _corrupt(self, action: Action) -> Action:
        """A payload that breaks the contract the way real ones do: cut short, or a count
        sent as a string."""
        if self.rng.random() < 0.5:
            return replace(action, payload=action.payload[: max(1, len(action.payload) // 2)])
        try:
            body = json.loads(action.payload)
            if "uplink_message" in body:  # TTN v3: the decoded count becomes a string
                decoded = body["uplink_message"]["decoded_payload"]
                decoded["line_1_period_in"] = str(decoded["line_1_period_in"])
            else:
                body["in"] = str(body.get("in"))
            return replace(action, payload=json.dumps(body).encode())
        except (ValueError, TypeError):
            return replace(action, payload=action.payload[:-1])

    def process(self, reading: Reading, counter: GateCounterLike | None = None) -> list[Action]:
        """The actions for one clean reading of one gate, in the order they happen."""
        st = self.state.setdefault(reading.device_id, _GateState())
        rng, f = self.rng, self.f
        now = reading.ts_utc
        actions: list[Action] = []
        # Coming back online: say so, then send everything kept meanwhile (the late burst).
        if st.offline_until is not None and now >= st.offline_until:
            st.offline_until = None
            actions.append(Action("status", payload=b"online"))
            actions.extend(a for _, a in st.buffer)
            st.buffer.clear()
        if st.offline_until is None and rng.random() < self._per_interval(
                f.offline_per_day, reading.interval_s):
            hours = float(rng.uniform(f.offline_hours_min, max(f.offline_hours_min,
                                                                f.offline_hours_max)))
            st.offline_until = now + timedelta(hours=hours)
            self._record("offline", reading, f"{hours:.2f} h")
            actions.append(Action("status", payload=b"offline"))
            if st.held is not None:  # a held-back message waits in the buffer too
                self._buffer(st, *st.held)
                st.held = None
        # Clock skew: the counter stamps its readings off by a constant for some hours.
        if st.skew_until is not None and now >= st.skew_until:
            st.skew_until, st.skew_s = None, 0
        if st.skew_until is None and rng.random() < self._per_interval(
                f.skew_per_day, reading.interval_s):
            st.skew_s = int(rng.choice([-1, 1]) * rng.integers(1, f.skew_s_max + 1))
            st.skew_until = now + timedelta(hours=f.skew_hours)
        sent = reading
        if st.skew_s:
            sent = replace(reading, ts_utc=reading.ts_utc + timedelta(seconds=st.skew_s))
            self._record("skew", reading, str(st.skew_s))
        action = self._encode(sent)
        # A reset happens in the device after this reading: the next one starts from 0.
        if counter is not None and rng.random() < self._per_interval(f.reset_per_day,
                                                                      reading.interval_s):
            counter.seq, counter.in_total, counter.out_total = 0, 0, 0
            self._record("reset", reading)
        if rng.random() < f.drop_rate:
            self._record("drop", reading)
            return actions
        if rng.random() < f.malformed_rate:
            self._record("malformed", reading)
            action = self._corrupt(action)
        copies = [action]
        if rng.random() < f.duplicate_rate:
            self._record("duplicate", reading)
            copies.append(action)
        if st.offline_until is not None:
            self._record("late", reading)
            for copy in copies:
                self._buffer(st, reading, copy)
            return actions
        if st.held is not None:
            actions.extend(copies)
            actions.append(st.held[1])
            st.held = None
            return actions
        if rng.random() < f.reorder_rate:
            self._record("reorder", reading)
            st.held = (reading, copies[0])
            actions.extend(copies[1:])
            return actions
        actions.extend(copies)
        return actions

    def _buffer(self, st: _GateState, reading: Reading, action: Action) -> None:
        """Keep a message while offline; a full buffer overwrites its oldest (lost)."""
        if not self.f.offline_buffer:
            self._record("buffer_overflow", reading, "no buffer")
            return
        if len(st.buffer) >= self.f.offline_buffer:
            old, _ = st.buffer.popleft()
            # A duplicate copy may still sit in the buffer; the reading is lost only if not.
            if not any(r is old for r, _ in st.buffer):
                self._record("buffer_overflow", old, "oldest reading overwritten")
        st.buffer.append((reading, action))

    def flush(self) -> dict[str, list[Action]]:
        """At the end of a run: counters still holding messages send them (a held-back one,
        or the buffer of one still offline, which comes back now)."""
        out: dict[str, list[Action]] = {}
        for device, st in self.state.items():
            actions: list[Action] = []
            if st.offline_until is not None:
                actions.append(Action("status", payload=b"online"))
                actions.extend(a for _, a in st.buffer)
                st.buffer.clear()
                st.offline_until = None
            if st.held is not None:
                actions.append(st.held[1])
                st.held = None
            if actions:
                out[device] = actions
        return out

    EVENT_COLUMNS = ("kind", "device_id", "seq", "ts_utc", "detail")

    @classmethod
    def empty_events(cls) -> pd.DataFrame:
        return pd.DataFrame({c: [] for c in cls.EVENT_COLUMNS}).astype(
            {"ts_utc": "datetime64[us]", "seq": "int64"})

    def events_frame(self) -> pd.DataFrame:
        """Every fault injected so far: kind, device_id, seq, ts_utc (true), detail."""
        if not self.events:
            return self.empty_events()
        return pd.DataFrame(
            [(e.kind, e.device_id, e.seq, e.ts_utc, e.detail) for e in self.events],
            columns=list(self.EVENT_COLUMNS),
        ).astype({"ts_utc": "datetime64[us]", "seq": "int64"})
