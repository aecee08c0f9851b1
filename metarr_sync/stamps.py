"""Time in one place: the tool's timestamps ("stamps") and its one duration grammar.

Stamps: every moment metarr-sync stores or compares is UTC text in one canonical form,
`YYYY-MM-DDTHH:MM:SS.mmmZ` (the form Metarr's stamps are normalised to when read, see
metarr.py), so that stamps sort chronologically as text. `now_stamp` writes it,
`parse_stamp` reads it back, `ago` says how long ago one was.

Durations (`initial_lookback`, `max_defer`, `sync --since`, `status --warn-age`): a number,
decimals allowed, and a unit: `s` seconds, `m` minutes, `h` hours, `d` days, `w` weeks, in
either case, with spaces allowed around and between (`90s`, `15m`, `2h`, `7d`, `1w`,
`1.5h`, `36 H`). `--warn-age` also takes a bare number as seconds (`90`), as it always has; the
others do not (`--since 2026` is no year). What each option accepts besides a duration
stays its own: `"all"` / `"none"` for `initial_lookback`, `"never"` for `max_defer`, a
date or time for `--since`. `spoken` writes a duration back the short way (`6h 2m`).
Pure, but for reading the clock when no `now` is given.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

#: Seconds per unit of a duration.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdwSMHDW]?)\s*")
#: What now_stamp() writes (fromisoformat alone would also take other ISO 8601 forms).
_STAMP_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,6}Z")


# --- stamps ------------------------------------------------------------------------------

def now_stamp(moment: datetime | None = None) -> str:
    """UTC time in the canonical text form used for every stamp (sorts chronologically)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def stamp_ago(seconds: float, now: datetime | None = None) -> str:
    """The stamp of the moment `seconds` before `now` (a cut-off for "older than")."""
    return now_stamp((now or datetime.now(UTC)) - timedelta(seconds=seconds))


def parse_stamp(text: str) -> datetime:
    """A stamp as an aware UTC datetime; ValueError for anything now_stamp() does not write.
    fromisoformat, not strptime: strptime's first call costs `status` 2-3 ms."""
    if not _STAMP_RE.fullmatch(text):
        raise ValueError(f"not a state stamp: {text!r}")
    return datetime.fromisoformat(text)


def ago(stamp: str | None, now: datetime | None = None) -> str:
    """'3 min ago' for a state stamp; '' when there is none."""
    if not stamp:
        return ""
    try:
        seconds = ((now or datetime.now(UTC)) - parse_stamp(stamp)).total_seconds()
    except ValueError:
        return stamp
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit} ago"
    return f"{int(seconds)} s ago"


def today(now: datetime | None = None) -> str:
    """The UTC date, `YYYY-MM-DD`."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")


# --- durations -----------------------------------------------------------------------------

def parse_duration(text: str, bare_unit: str | None = None) -> float | None:
    """Seconds in a duration (see the module docstring), or None when `text` is not one.

    bare_unit: the unit of a number written without one (`--warn-age`: "s"); None: a
    unit is required.
    """
    match = _DURATION_RE.fullmatch(text)
    if not match:
        return None
    unit = match.group(2).lower() or bare_unit
    if unit is None:
        return None
    return float(match.group(1)) * UNITS[unit]


def lookback_seconds(text: str) -> int | None:
    """`initial_lookback` in seconds: a duration, "all" (None: all of it) or "none" (0).
    ValueError for anything else."""
    word = text.strip().lower()
    if word == "all":
        return None
    if word == "none":
        return 0
    seconds = parse_duration(text)
    if seconds is None:
        raise ValueError(f"not a lookback: {text!r}")
    return int(seconds)


def max_defer_seconds(text: str) -> float | None:
    """`max_defer` in seconds: a duration longer than 0, or "never" (None: an update waits
    for as long as someone watches). ValueError saying why for anything else; zero too,
    which reads as "never wait" as well as "never force" (`skip_active = false` says the
    one, "never" the other)."""
    if text.strip().lower() == "never":
        return None
    seconds = parse_duration(text, bare_unit="s")
    if seconds is None:
        raise ValueError(f"{text!r} is not a duration like \"6h\", \"30m\" or \"2d\", "
                         "nor \"never\"")
    if seconds <= 0:
        raise ValueError(f"{text!r} is no wait at all: to send updates at once while someone "
                         "watches, set skip_active = false; to wait for as long as someone "
                         "watches, write \"never\"")
    if parse_duration(text) is None:
        number = text.strip()
        raise ValueError(f"{text!r} needs a unit: \"{number}h\", \"{number}m\" or "
                         f"\"{number}s\"")
    return seconds


def spoken(seconds: float) -> str:
    """A duration the short way, in its two largest units, rounded down: `6h 2m`, `45s`,
    `2d 3h`; a zero second unit is left out (`6h`, not `6h 0m`)."""
    left, counts = int(seconds), []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, left = divmod(left, size)
        counts.append((count, unit))
    first = next((n for n, (count, _) in enumerate(counts) if count), len(counts) - 1)
    return " ".join(f"{count}{unit}" for count, unit in counts[first:first + 2]
                    if count) or "0s"


def parse_since(text: str, now: datetime | None = None) -> str:
    """A --since value (2026-11-01, 2026-11-01T10:00[Z], or an age: 36h, 7d) as a stamp."""
    seconds = parse_duration(text)
    if seconds is not None:
        return stamp_ago(seconds, now)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since takes a date (2026-11-01), a time (2026-11-01T10:00Z) "
                         f"or an age (36h, 7d), not {text!r}") from None
    return now_stamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def seconds_ahead(http_date: str | None, now: datetime | None = None) -> float:
    """Seconds a server whose HTTP `Date` header says `http_date` is ahead of this host's
    clock (0 when it sent none, or one that cannot be read): Jellyfin's and Plex's
    "changed since" look-ups are asked in the server's time."""
    from email.utils import parsedate_to_datetime

    if not http_date:
        return 0.0
    try:
        moment = parsedate_to_datetime(http_date)
    except (TypeError, ValueError):
        return 0.0
    if moment.tzinfo is None:
        return 0.0
    return (moment - (now or datetime.now(UTC))).total_seconds()
