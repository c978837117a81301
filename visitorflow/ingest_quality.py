"""Gaps, counter resets and wraparounds in one device's stream of readings, and how the
stored gaps change when readings arrive.

Pure functions over readings already ordered by time; the store runs them inside the write
transaction (`Store.write_batch(..., heal=True)`) and keeps their results in `reading_gaps`
and `counter_events`, and applies `reconcile_gaps`'s corrections to `minute_counts`. Kept
free of SQL and I/O so every rule is unit-testable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from visitorflow.contract import MAX_COUNT_PER_INTERVAL

# VS350-type counters keep 2-byte totals: after 65,535 they start again at 0.
WRAP_16 = 65_536


@dataclass(frozen=True, slots=True)
class StoredReading:
    """The columns of a stored reading that gap and reset detection need."""

    device_id: str
    site_id: str
    gate_id: str
    seq: int
    ts_utc: datetime
    count_in: int
    count_out: int
    in_total: int | None
    out_total: int | None


GapKey = tuple[str, int, datetime, int, datetime]  # device, after seq/ts, before seq/ts


@dataclass(frozen=True, slots=True)
class Gap:
    device_id: str
    site_id: str
    gate_id: str
    after_seq: int
    after_ts_utc: datetime
    before_seq: int
    before_ts_utc: datetime
    missing_readings: int
    status: str  # recovered | open
    reason: str
    recovered_in: int
    recovered_out: int

    @property
    def key(self) -> GapKey:
        return (self.device_id, self.after_seq, self.after_ts_utc, self.before_seq,
                self.before_ts_utc)

    @property
    def minute_utc(self) -> datetime:
        """The minute its recovered people are counted in: when the first missing interval
        began, i.e. the minute of the reading before the gap."""
        return self.after_ts_utc.replace(second=0, microsecond=0)


@dataclass(frozen=True, slots=True)
class CounterEvent:
    device_id: str
    site_id: str
    gate_id: str
    seq: int
    ts_utc: datetime
    kind: str  # wrap | reset | seq_restart
    detail: str


def total_delta(before: int, after: int, budget: int) -> tuple[int | None, str]:
    """People counted between two cumulative totals, and what happened to the counter.

    `budget` is the most people the span can plausibly hold. A total that went down either
    wrapped at 16 bits (it was in the upper half of the 16-bit range and is now in the lower
    half: a reset from 5,000 to 12 is not a wrap) or was reset (then the people since the
    last report are unknown: None).
    """
    if after >= before:
        delta = after - before
        return (delta, "ok") if delta <= budget else (None, "implausible jump")
    half = WRAP_16 // 2
    if half <= before < WRAP_16 and after < half and after + WRAP_16 - before <= budget:
        return after + WRAP_16 - before, "wrap"
    return None, "reset"


def analyse(readings: Sequence[StoredReading]) -> tuple[list[Gap], list[CounterEvent]]:
    """Gaps and counter events between consecutive readings of one device (time order)."""
    return analyse_pairs(zip(readings, readings[1:], strict=False))


def analyse_pairs(
    pairs: Iterable[tuple[StoredReading, StoredReading]],
) -> tuple[list[Gap], list[CounterEvent]]:
    """Gaps and counter events of pairs of consecutive readings (a before b) of a device.
    Pairs with consecutive seqs and rising totals give nothing, so a caller may leave
    them out."""
    gaps: list[Gap] = []
    events: list[CounterEvent] = []
    for a, b in pairs:
        if b.seq <= a.seq:
            # The device restarted its sequence: how many reports were lost is unknowable.
            events.append(CounterEvent(b.device_id, b.site_id, b.gate_id, b.seq, b.ts_utc,
                                       "seq_restart", f"seq {a.seq} then {b.seq}"))
            continue
        missing = b.seq - a.seq - 1
        budget = (missing + 1) * MAX_COUNT_PER_INTERVAL
        outcomes = []
        for name, t_a, t_b, counted in (("in", a.in_total, b.in_total, b.count_in),
                                        ("out", a.out_total, b.out_total, b.count_out)):
            if t_a is None or t_b is None:
                outcomes.append((name, None, "no totals"))
                continue
            delta, what = total_delta(t_a, t_b, budget)
            if what in ("wrap", "reset"):
                events.append(CounterEvent(b.device_id, b.site_id, b.gate_id, b.seq, b.ts_utc,
                                           what, f"{name}_total {t_a} then {t_b}"))
            if delta is not None and delta < counted:
                # The totals say fewer people than the reading itself: they cannot be trusted.
                delta, what = None, f"{name}_total rose {delta}, less than the reading's {counted}"
            outcomes.append((name, None if delta is None else delta - counted, what))
        if missing == 0:
            continue
        recovered = [value for _, value, _ in outcomes]
        if all(value is not None for value in recovered):
            status, reason = "recovered", "from cumulative totals"
            rec_in, rec_out = recovered
        else:
            status = "open"
            reason = "; ".join(f"{name}: {what}" for name, value, what in outcomes
                               if value is None)
            rec_in = rec_out = 0
        gaps.append(Gap(b.device_id, b.site_id, b.gate_id, a.seq, a.ts_utc, b.seq, b.ts_utc,
                        missing, status, reason, int(rec_in), int(rec_out)))
    return gaps, events


@dataclass(frozen=True, slots=True)
class StoredGap:
    """A gap already in `reading_gaps` that is not `filled`."""

    key: GapKey
    site_id: str
    gate_id: str
    status: str  # recovered | open
    minute_utc: datetime
    recovered_in: int
    recovered_out: int


@dataclass(frozen=True, slots=True)
class MinuteCorrection:
    """People to add to (or, negative, take from) one gate's minute in `minute_counts`."""

    site_id: str
    gate_id: str
    minute_utc: datetime
    count_in: int
    count_out: int


@dataclass(frozen=True, slots=True)
class GapChanges:
    filled: list[GapKey]  # stored gaps the new readings closed
    new: list[Gap]  # gaps found that are not stored yet
    corrections: list[MinuteCorrection]


def reconcile_gaps(found: Iterable[Gap], stored: Iterable[StoredGap]) -> GapChanges:
    """What changes when the gaps found over a window replace the stored ones over it.

    A stored gap no longer found was filled by late readings: it is marked `filled`, and
    if its people had been recovered from the totals, that estimate is taken back (the
    readings now count them). A gap found and not stored is new: stored, and its recovered
    people (if any) added at its minute. Gaps both found and stored are left alone.
    """
    wanted = {gap.key: gap for gap in found}
    existing = {gap.key: gap for gap in stored}
    filled: list[GapKey] = []
    corrections: list[MinuteCorrection] = []
    for key, gap in existing.items():
        if key in wanted:
            continue
        filled.append(key)
        if gap.status == "recovered":
            corrections.append(MinuteCorrection(gap.site_id, gap.gate_id, gap.minute_utc,
                                                -gap.recovered_in, -gap.recovered_out))
    new = [gap for key, gap in wanted.items() if key not in existing]
    corrections += [
        MinuteCorrection(gap.site_id, gap.gate_id, gap.minute_utc, gap.recovered_in,
                         gap.recovered_out)
        for gap in new
        if gap.status == "recovered" and (gap.recovered_in or gap.recovered_out)
    ]
    return GapChanges(filled, new, corrections)
