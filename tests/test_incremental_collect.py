"""A run reads only what changed in Metarr since the last collection (metarr_sync/
collect.py), and is never wrong for it: every change that moves no timestamp (a path
rewritten in place, a soft delete, a restore, a purged row, a deleted show) is still
noticed, and each kind is read whole again after a day.

The planning is tested as plain data; the rest through the installed command against
both Metarr backends, reading what it logged (`-v`: how much it read) and what it stored.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta

import pytest
from support.configs import config_with, recorder
from support.metarr_factory import ago

from metarr_sync import collect
from metarr_sync.collect import BUCKET, MARGIN, Mark

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
CHECKS = {"movie": {0: [3, 6, 0, 11]}, "series": {0: [1, 1, 0, 5], 1: [1, 4097, 0, 6]},
          "episode": {0: [2, 3, 0, 7]}}


def mark(read_at: str = "2026-12-04T11:00:00.000Z", checks: dict | None = None,
         whole_at: str = "2026-12-04T06:00:00.000Z") -> Mark:
    return Mark(read_at, checks if checks is not None else {}, whole_at)


# -- planning (pure) ------------------------------------------------------------------------

def test_without_marks_or_with_a_new_player_every_kind_is_read_whole():
    first = collect.plan({}, CHECKS, NOW)
    assert {k: (r.whole, r.why) for k, r in first.readings.items()} == {
        k: (True, "first collection") for k in collect.KINDS}
    assert first.scope() == {k: None for k in collect.KINDS}
    marks = {k: mark(checks=CHECKS[k]) for k in collect.KINDS}
    new_player = collect.plan(marks, CHECKS, NOW, whole="first run of den")
    assert all(r.whole and r.why == "first run of den" for r in new_player.readings.values())


def test_a_kind_last_read_whole_a_day_ago_is_read_whole_again():
    marks = {k: mark(checks=CHECKS[k]) for k in collect.KINDS}
    marks["episode"] = mark(checks=CHECKS["episode"], whole_at="2026-12-03T11:59:00.000Z")
    readings = collect.plan(marks, CHECKS, NOW).readings
    assert readings["episode"].whole and "24 h" in readings["episode"].why
    assert not readings["movie"].whole and not readings["series"].whole


def test_unchanged_checks_read_from_the_last_collection_less_the_margin():
    marks = {k: mark(checks=CHECKS[k]) for k in collect.KINDS}
    readings = collect.plan(marks, CHECKS, NOW).readings
    assert timedelta(hours=1) == MARGIN
    for reading in readings.values():
        assert (reading.whole, reading.since, reading.buckets) == (
            False, "2026-12-04T10:00:00.000Z", ())


def test_changed_buckets_are_read_whole_and_a_changed_series_bucket_brings_its_episodes():
    marks = {k: mark(checks=CHECKS[k]) for k in collect.KINDS}
    now_checks = {"movie": {0: [3, 6, 0, 12]},  # a path rewritten
                  "series": {0: [1, 1, 0, 5]},  # bucket 1 vanished (its show was purged)
                  "episode": {0: [2, 3, 0, 7], 2: [1, 8200, 0, 1]}}  # a new bucket
    plan = collect.plan(marks, now_checks, NOW)
    assert plan.readings["movie"].buckets == (0,)
    assert plan.readings["series"].buckets == (1,)
    assert plan.readings["episode"].buckets == (2,)
    assert plan.readings["episode"].series_buckets == (1,)
    assert plan.scope() == {"movie": [("item_id", 0)], "series": [("item_id", 1)],
                            "episode": [("item_id", 2), ("series_id", 1)]}


def test_marks_hold_when_the_collection_began_and_when_each_kind_was_read_whole():
    marks = {k: mark(checks=CHECKS[k]) for k in collect.KINDS}
    marks["movie"] = mark(checks={}, whole_at="2026-12-03T11:00:00.000Z")  # a day ago
    plan = collect.plan(marks, CHECKS, NOW)
    found = collect.next_marks(marks, CHECKS, plan, "2026-12-04T11:59:58.500Z", NOW)
    assert {m.read_at for m in found.values()} == {"2026-12-04T11:59:58.500Z"}
    assert found["movie"].whole_at == "2026-12-04T12:00:00.000Z"  # read whole now
    assert found["series"].whole_at == found["episode"].whole_at == "2026-12-04T06:00:00.000Z"
    assert found["series"].checks == CHECKS["series"]
    whole = collect.next_marks({}, CHECKS, collect.plan({}, CHECKS, NOW),
                               "2026-12-04T11:59:59.000Z", NOW)
    assert {m.whole_at for m in whole.values()} == {"2026-12-04T12:00:00.000Z"}


def test_buckets_are_ranges_of_ids():
    assert collect.differing({0: [1]}, {0: [1], 3: [2]}) == (3,)
    assert BUCKET == 4096


# -- through the installed command, on both backends ---------------------------------------

@pytest.fixture
def library(cli, metarr_db):
    """30 movies and a show with 4 episodes, published days ago, one player."""
    cli.write_config(config_with(metarr=metarr_db.config_table,
                                 sync={"initial_lookback": "all", "timeout": 10},
                                 players=[recorder("lounge",
                                                   mappings=[("/data/media", "/mnt")])]))
    movies = [metarr_db.add_movie(f"Movie {n:02d}", 2000 + n, when=ago(days=10 + n))
              for n in range(30)]
    show = metarr_db.add_series("Severance", when=ago(days=9))
    season = metarr_db.add_season(show, 1, when=ago(days=9))
    episodes = [metarr_db.add_episode(show, season, 1, n, when=ago(days=9))
                for n in range(1, 5)]
    first = run(cli)
    assert first["read"] == {"movie": 30, "series": 1, "episode": 4}, first
    assert "whole (first run of lounge)" in first["reading"]
    cli.reset_log("lounge")
    return cli, metarr_db, movies, show, episodes


def run(cli, *args: str, held: bool = False) -> dict:
    """One run; `held`: it may exit 1 because the removal guard holds a removal (the
    media is not on this machine's disk here), which is not what these tests look at."""
    result = cli("-v", "run", *args)
    assert result.returncode in ((0, 1) if held else (0,)), result.stderr
    reading = re.search(r"reading Metarr: (.*)", result.stderr)
    read = re.search(r"collected: read (\d+) movie, (\d+) series, (\d+) episode; (\d+) "
                     r"changed, (\d+) vanished", result.stderr)
    assert reading and read, result.stderr
    counts = [int(n) for n in read.groups()]
    return {"reading": reading.group(1), "read": dict(zip(collect.KINDS, counts[:3], strict=True)),
            "changed": counts[3], "vanished": counts[4]}


def items(cli) -> dict[str, tuple[str, int]]:
    with cli.state() as state:
        return {r["item_key"]: (r["path"], r["removed"])
                for r in state.execute("SELECT item_key, path, removed FROM items")}


def sent(cli) -> list[tuple[str, bool]]:
    return sorted((t["key"], bool(t["removed"])) for t in cli.sent("lounge"))


def test_a_run_reads_only_what_changed_since_the_last(library):
    cli, db, movies, show, episodes = library
    quiet = run(cli)
    # Only rows stamped within the margin before the last collection began: none.
    assert quiet["read"] == {"movie": 0, "series": 0, "episode": 0}
    assert quiet["changed"] == 0 and sent(cli) == []
    assert "whole" not in quiet["reading"]

    db.republish_movie(movies[17])
    one = run(cli)
    assert one["read"] == {"movie": 1, "series": 0, "episode": 0} and one["changed"] == 1
    assert sent(cli) == [(f"movie:{movies[17]}", False)]


def test_changes_that_move_no_timestamp_are_all_noticed(library):
    cli, db, movies, show, episodes = library
    # An upgrade: Metarr rewrites the file path in place, same row, no time touched.
    old = db.file_of("movies", movies[3])
    db.replace_file("movies", movies[3], old.replace(".mkv", " 2160p.mkv"))
    found = run(cli)
    # Its bucket of ids (all 30 movies here) is read whole.
    assert found["changed"] == 1 and found["read"]["movie"] == 30
    assert items(cli)[f"movie:{movies[3]}"] == (old.replace(".mkv", " 2160p.mkv"), 0)
    assert sent(cli) == [(f"movie:{movies[3]}", False)]

    cli.reset_log("lounge")
    db.soft_delete("movies", movies[4])  # into Metarr's recycle bin: deleted_at only
    assert run(cli, held=True)["changed"] == 1
    assert items(cli)[f"movie:{movies[4]}"][1] == 1
    db.restore("movies", movies[4])
    assert run(cli, held=True)["changed"] == 1
    assert items(cli)[f"movie:{movies[4]}"][1] == 0

    db.purge("movies", movies[5])  # the row is gone
    assert run(cli, held=True)["vanished"] == 1
    assert f"movie:{movies[5]}" not in items(cli)

    # A show soft-deleted: its episodes count as removed too.
    db.soft_delete("series", show)
    found = run(cli, held=True)
    assert found["changed"] == 1 + len(episodes)
    assert {items(cli)[f"episode:{e}"][1] for e in episodes} == {1}


def test_a_late_commit_within_the_margin_is_read_and_a_day_later_everything_is(library):
    cli, db, movies, show, episodes = library
    run(cli)
    # A transaction that stamped its row before that run began and committed after it.
    db.touch("movies", movies[1], when=datetime.now(UTC) - MARGIN / 2)
    cli.reset_log("lounge")
    late = run(cli)
    assert late["changed"] == 1 and sent(cli) == [(f"movie:{movies[1]}", False)]
    # A row put back to a time older than the margin, nothing else changed: no check
    # sees it, so it waits for the daily whole read (say, a restored Metarr backup).
    db.touch("movies", movies[2], when=datetime.now(UTC) - 3 * MARGIN)
    assert run(cli)["changed"] == 0
    with cli.state() as state:
        state.execute("UPDATE collect_marks SET full_at = ? WHERE kind = 'movie'",
                      ((datetime.now(UTC) - timedelta(hours=25)).strftime(
                          "%Y-%m-%dT%H:%M:%S.000Z"),))
    daily = run(cli)
    assert "movie: whole (last read whole more than 24 h ago)" in daily["reading"]
    assert daily["read"]["movie"] == 30 and daily["changed"] == 1


def test_a_dry_run_leaves_the_marks_alone(library):
    cli, db, movies, show, episodes = library
    with cli.state() as state:
        before = state.execute("SELECT * FROM collect_marks ORDER BY kind").fetchall()
    db.republish_movie(movies[9])
    result = cli("-v", "run", "--dry-run")
    assert result.returncode == 0, result.stderr
    with cli.state() as state:
        assert state.execute("SELECT * FROM collect_marks ORDER BY kind").fetchall() == before
    assert run(cli)["changed"] == 1


def test_marks_are_stored_per_kind(library):
    cli, *_ = library
    conn = sqlite3.connect(cli.state_dir / "state.sqlite")
    rows = conn.execute("SELECT kind, read_at, full_at FROM collect_marks").fetchall()
    conn.close()
    assert sorted(r[0] for r in rows) == sorted(collect.KINDS)
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", r[1]) for r in rows)
