"""How much of Metarr a run reads: only what changed since the last collection.

Reading every Metarr item and comparing it with the last collection (state.collect) is
what catches every change, but it costs seconds at 250,000 items — on every run, even
one that finds a single republished poster. So each kind (movie, series, episode) keeps
a *mark* (state table `collect_marks`): when the last collection began by the Metarr
database's clock, and Metarr's per-bucket checks it was read with
(MetarrSource.checks). A run then reads:

- the items whose stamp may be at or after that time less MARGIN: a row committed after
  the last collection was stamped at most a transaction's length before it committed
  (and Metarr's application clock, which writes its ISO stamps, may differ a little
  from its database's);
- every item of a bucket of ids whose checks differ: rows added or vanished (a deleted
  library, Metarr's garbage collector), soft deletes and restores, and paths rewritten in
  place by an upgrade or rename — Metarr moves no timestamp for those; and, for
  episodes, every episode of a series bucket that differs (a deleted show removes them);
- everything, when there is no mark yet, a player is new (its baseline needs all
  items), the mark was made more than WHOLE_EVERY ago (what no check sees, such as an
  asset file row deleted without a new publish, is caught then), or `whole` is asked.

Pure: plans and marks over plain data; metarr.py reads, state.py stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from metarr_sync.stamps import now_stamp, parse_stamp

KINDS = ("movie", "series", "episode")
#: Ids per bucket of Metarr's checks (MetarrSource.checks): bucket b holds ids
#: b*BUCKET .. (b+1)*BUCKET-1. 4,096: 50 buckets for 200,000 episodes, and a changed
#: bucket costs a read of a few thousand items.
BUCKET = 4096
#: How far before the last collection a run looks again (late commits, clock jitter).
MARGIN = timedelta(hours=1)
#: How often each kind is read whole anyway.
WHOLE_EVERY = timedelta(hours=24)

Checks = dict[int, list[Any]]  # bucket -> [rows, sum of ids, sum of deleted ids, paths]


@dataclass(frozen=True)
class Mark:
    """Where the last collection of one kind left off."""

    read_at: str  # when the last collection began, by Metarr's database clock (canonical)
    checks: Checks
    whole_at: str  # when the kind was last read whole


@dataclass(frozen=True)
class Reading:
    """What a run reads of one kind."""

    kind: str
    whole: bool
    why: str = ""  # why whole, in words for the log
    since: str | None = None  # items whose stamp may be at or after this
    buckets: tuple[int, ...] = ()  # id buckets read whole (their checks differ)
    series_buckets: tuple[int, ...] = ()  # episodes: series buckets that differ

    def describe(self) -> str:
        if self.whole:
            return f"{self.kind}: whole ({self.why})"
        extra = f", {len(self.buckets)} changed bucket(s)" if self.buckets else ""
        if self.series_buckets:
            extra += f", episodes of {len(self.series_buckets)} changed series bucket(s)"
        return f"{self.kind}: since {self.since}{extra}"


@dataclass
class Plan:
    readings: dict[str, Reading] = field(default_factory=dict)

    def scope(self) -> dict[str, list[tuple[str, int]] | None]:
        """Per kind, where the items read are all there is (for noticing vanished rows):
        None = the whole kind, else buckets of a column: ("item_id", b) or, for the
        episodes of a changed series bucket, ("series_id", b)."""
        return {kind: None if r.whole else [("item_id", b) for b in r.buckets]
                + [("series_id", b) for b in r.series_buckets]
                for kind, r in self.readings.items()}


def differing(old: Checks, new: Checks) -> tuple[int, ...]:
    """Buckets whose checks are not the same (present on one side only included)."""
    return tuple(sorted(b for b in set(old) | set(new) if old.get(b) != new.get(b)))


def since(marks: Mapping[str, Mark]) -> str | None:
    """From when on stamps are read again: the earliest collection begun less MARGIN
    (None: no mark to start from)."""
    try:
        began = min(parse_stamp(m.read_at) for m in marks.values())
    except ValueError:  # no marks, or one unreadable: those kinds are read whole
        return None
    return now_stamp(began - MARGIN)


def plan(marks: Mapping[str, Mark], checks: Mapping[str, Checks], now: datetime, *,
         whole: str = "") -> Plan:
    """What to read of each kind. `whole`: a reason to read everything ('' = none)."""
    result = Plan()
    start = since(marks)
    series_changed: tuple[int, ...] = ()
    for kind in KINDS:
        mark = marks.get(kind)
        why = whole or _why_whole(mark, now)
        if why or mark is None or start is None:
            result.readings[kind] = Reading(kind, True, why or "no mark")
            continue
        buckets = differing(mark.checks, checks.get(kind, {}))
        if kind == "series":
            series_changed = buckets
        result.readings[kind] = Reading(
            kind, False, since=start, buckets=buckets,
            series_buckets=series_changed if kind == "episode" else ())
    return result


def _why_whole(mark: Mark | None, now: datetime) -> str:
    if mark is None:
        return "first collection"
    try:
        if now - parse_stamp(mark.whole_at) >= WHOLE_EVERY:
            return f"last read whole more than {WHOLE_EVERY.total_seconds() / 3600:g} h ago"
        parse_stamp(mark.read_at)
    except ValueError:
        return "its mark is unreadable"
    return ""


def next_marks(marks: Mapping[str, Mark], checks: Mapping[str, Checks], done: Plan,
               began: str, now: datetime) -> dict[str, Mark]:
    """The marks after a collection that read `done`, begun at `began` by Metarr's
    database clock (taken before its checks), at `now` by this machine's."""
    clock = now_stamp(now)
    return {kind: Mark(began, checks.get(kind, {}),
                       clock if reading.whole or kind not in marks else marks[kind].whole_at)
            for kind, reading in done.readings.items()}
