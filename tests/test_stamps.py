"""The one duration grammar (initial_lookback, sync --since, status --warn-age) and the
stamps built from the clock, table by table. Stamp parsing itself is in test_cli_status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metarr_sync import stamps
from metarr_sync.config import SyncConfig

NOW = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1w", 604800),
    ("24h", 86400), ("0s", 0),
    ("1.5h", 5400), ("0.5m", 30),  # decimals (--warn-age took them already)
    ("36 h", 129600), (" 7d ", 604800), ("2\th", 7200),  # spaces around and between
    ("24H", 86400), ("7D", 604800),  # either case (initial_lookback took both already)
])
def test_a_duration_is_a_number_and_a_unit(text, seconds):
    assert stamps.parse_duration(text) == seconds
    assert stamps.parse_duration(text, bare_unit="s") == seconds


@pytest.mark.parametrize("text", [
    "", "h", "soon", "3 days", "1hour", "1h30m", "-1h", "1,5h", "1.h", ".5h", "1e3s",
    "all", "none", "2026-11-01", "90",
])
def test_anything_else_is_not_a_duration(text):
    assert stamps.parse_duration(text) is None


def test_only_warn_age_reads_a_bare_number_as_seconds():
    assert stamps.parse_duration("90", bare_unit="s") == 90
    assert stamps.parse_duration(" 2.5 ", bare_unit="s") == 2.5
    assert stamps.parse_duration("90") is None
    assert stamps.parse_duration("soon", bare_unit="s") is None


@pytest.mark.parametrize(("text", "seconds"), [
    ("24h", 86400), ("7d", 604800), ("30m", 1800), ("90s", 90), ("2w", 1209600),
    ("24H", 86400), (" 7d ", 604800), ("1.5h", 5400),
    ("all", None), ("ALL", None), (" none ", 0), ("0h", 0),
])
def test_initial_lookback_is_a_duration_or_all_or_none(text, seconds):
    assert stamps.lookback_seconds(text) == seconds
    assert SyncConfig(initial_lookback=text).lookback_seconds() == seconds


@pytest.mark.parametrize("text", ["3 days", "forever", "", "90", "-1d"])
def test_a_bad_initial_lookback_is_refused(text):
    with pytest.raises(ValueError):
        stamps.lookback_seconds(text)


@pytest.mark.parametrize(("text", "stamp"), [
    ("36h", "2026-11-24T00:00:00.000Z"),
    ("7d", "2026-11-18T12:00:00.000Z"),
    ("2w", "2026-11-11T12:00:00.000Z"),
    ("30m", "2026-11-25T11:30:00.000Z"),
    ("90s", "2026-11-25T11:58:30.000Z"),  # the same grammar as everywhere: seconds too
    ("1.5h", "2026-11-25T10:30:00.000Z"),
    ("2026-11-01", "2026-11-01T00:00:00.000Z"),  # a date is midnight UTC
    ("2026-11-01T10:00Z", "2026-11-01T10:00:00.000Z"),
    ("2026-11-01T10:00+02:00", "2026-11-01T08:00:00.000Z"),
    ("20261101", "2026-11-01T00:00:00.000Z"),  # ISO's basic form stays a date
])
def test_since_is_a_date_a_time_or_an_age(text, stamp):
    assert stamps.parse_since(text, NOW) == stamp


@pytest.mark.parametrize("text", ["last tuesday", "2026", "90", "soon"])
def test_a_bad_since_says_what_it_takes(text):
    with pytest.raises(ValueError) as info:
        stamps.parse_since(text, NOW)
    assert str(info.value) == ("--since takes a date (2026-11-01), a time "
                               f"(2026-11-01T10:00Z) or an age (36h, 7d), not {text!r}")


def test_stamps_from_the_clock():
    assert stamps.now_stamp(NOW) == "2026-11-25T12:00:00.000Z"
    assert stamps.stamp_ago(3600, NOW) == "2026-11-25T11:00:00.000Z"
    assert stamps.stamp_ago(0.5, NOW) == "2026-11-25T11:59:59.500Z"
    assert stamps.today(NOW) == "2026-11-25"
    before = stamps.now_stamp()
    assert stamps.parse_stamp(before) <= datetime.now(UTC)
    assert stamps.stamp_ago(60) < stamps.now_stamp()


def test_a_servers_clock_is_read_from_its_http_date_header():
    from datetime import UTC, datetime

    from metarr_sync.stamps import seconds_ahead

    now = datetime(2026, 12, 4, 12, 0, 0, tzinfo=UTC)
    assert seconds_ahead("Fri, 04 Dec 2026 12:00:42 GMT", now) == 42.0
    assert seconds_ahead("Fri, 04 Dec 2026 11:58:00 GMT", now) == -120.0
    # None sent, unreadable, or without a zone: taken as this host's clock.
    for date in (None, "", "yesterday", "Fri, 04 Dec 2026 12:00:42"):
        assert seconds_ahead(date, now) == 0.0
