"""Reading Metarr's SQLite database: stamps from both timestamp formats, soft deletes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from support.metarr_factory import iso_ts, sqlite_ts

from metarr_sync.metarr import MetarrError, open_sqlite


def items(db):
    source = open_sqlite(db.path)
    try:
        return {i.key: i for i in source.items()}
    finally:
        source.close()


def test_movie_stamp_is_the_newest_of_its_timestamps_in_either_format(metarr):
    base = datetime(2026, 11, 25, 16, 20, 35, tzinfo=UTC)
    movie = metarr.add_movie("The Matrix", 1999, when=base)
    # An asset published later, stored as an ISO string: must win although
    # '2026-11-25T...' vs '2026-11-25 ...' would compare the other way as raw text.
    metarr.add_asset("image", "movie", movie, "fanart.jpg", base + timedelta(seconds=1),
                     iso=True)
    got = items(metarr)[f"movie:{movie}"]
    assert got.stamp == "2026-11-25T16:20:36.000Z"
    assert got.path == "/data/media/movies/The Matrix (1999)/The Matrix (1999).mkv"
    assert not got.removed


def test_sqlite_text_newer_than_iso_wins_too(metarr):
    base = datetime(2026, 11, 25, 16, 20, 35, 900000, tzinfo=UTC)
    movie = metarr.add_movie("Heat", 1995, when=base - timedelta(days=1))
    metarr.conn.execute("UPDATE movies SET updated_at = ?, published_at = ? WHERE id = ?",
                        (iso_ts(base), sqlite_ts(base + timedelta(seconds=5)), movie))
    assert items(metarr)[f"movie:{movie}"].stamp == "2026-11-25T16:20:40.000Z"


def test_episode_and_series_changes_come_from_updated_at_and_assets(metarr):
    when = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)
    show = metarr.add_series("Severance", when=when)
    season = metarr.add_season(show, 1, when=when)
    ep = metarr.add_episode(show, season, 1, 1, when=when)
    later = when + timedelta(hours=2)
    metarr.add_asset("image", "season", season, "season01-poster.jpg", later)
    metarr.add_asset("text", "episode", ep, "S01E01.nfo", later + timedelta(minutes=1),
                     iso=True)
    got = items(metarr)
    assert got[f"series:{show}"].stamp == "2026-11-20T12:00:00.000Z"
    assert got[f"episode:{ep}"].stamp == "2026-11-20T12:01:00.000Z"
    assert got[f"episode:{ep}"].series_path == "/data/media/tv/Severance"
    assert (got[f"episode:{ep}"].season, got[f"episode:{ep}"].episode) == (1, 1)


def test_future_deleted_at_means_removed_and_a_deleted_series_removes_its_episodes(metarr):
    movie = metarr.add_movie("Heat", 1995)
    show = metarr.add_series("Show")
    season = metarr.add_season(show, 1)
    ep = metarr.add_episode(show, season, 1, 1)
    metarr.soft_delete("movies", movie)
    metarr.soft_delete("series", show)
    got = items(metarr)
    assert got[f"movie:{movie}"].removed
    assert got[f"series:{show}"].removed and got[f"episode:{ep}"].removed


def test_lookup_by_id_and_by_path_matches_whole_components(metarr):
    a = metarr.add_movie("Alien", 1979)
    metarr.add_movie("Alien", 1979, folder="/data/media/movies/Alien (1979) Director's Cut")
    source = open_sqlite(metarr.path)
    try:
        assert [i.id for i in source.items_by_id("movie", [a])] == [a]
        under = source.items_under("/data/media/movies/Alien (1979)")
        assert [i.id for i in under] == [a]
        assert source.items_under("/data/media/movies/Alien (1979)_") == []
    finally:
        source.close()


def test_present_items_of_a_library_or_by_file_name_leave_out_removed_ones(metarr):
    heat = metarr.add_movie("Heat", 1995)
    gone = metarr.add_movie("Alien", 1979)
    metarr.soft_delete("movies", gone)
    # `_` in a LIKE pattern matches any character: the file name must match as written.
    metarr.add_movie("Heat", 1995, folder="/data/media/movies/Heat_2")
    show = metarr.add_series("Show")
    season = metarr.add_season(show, 1)
    ep = metarr.add_episode(show, season, 1, 1)
    old = metarr.add_series("Old")
    metarr.add_episode(old, metarr.add_season(old, 1), 1, 1)
    metarr.soft_delete("series", old)  # its episode is removed with it
    source = open_sqlite(metarr.path)
    try:
        movies = list(source.present_items("movie", library_id=metarr.movie_lib))
        assert gone not in [i.id for i in movies] and heat in [i.id for i in movies]
        episodes = list(source.present_items("episode", library_id=metarr.tv_lib))
        assert [i.id for i in episodes] == [ep]
        assert list(source.present_items("movie", library_id=metarr.tv_lib)) == []
        named = source.present_items("movie", path_ending="/Heat (1995).mkv")
        assert [i.path for i in named] == [
            "/data/media/movies/Heat (1995)/Heat (1995).mkv",
            "/data/media/movies/Heat_2/Heat (1995).mkv"]
        assert list(source.present_items("movie", path_ending="/Heat _1995).mkv")) == []
        assert list(source.present_items("movie", path_ending="\\Heat (1995).mkv")) == []
        assert list(source.present_items("movie", path_ending="/Alien (1979).mkv")) == []
    finally:
        source.close()


def test_reading_never_writes_the_database(metarr):
    metarr.add_movie("Heat", 1995)
    metarr.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [metarr.path, metarr.path.with_name(metarr.path.name + "-wal")]
    before = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.exists()]
    items(metarr)
    after = [hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.exists()]
    assert before == after


def test_missing_column_is_named(metarr):
    metarr.conn.execute("ALTER TABLE movies DROP COLUMN published_at")
    with pytest.raises(MetarrError, match="table movies lacks column.s. published_at"):
        open_sqlite(metarr.path)


def test_not_a_database(tmp_path):
    path = tmp_path / "metarr.sqlite"
    path.write_text("hello, I am not SQLite")
    with pytest.raises(MetarrError, match="is not an SQLite database"):
        open_sqlite(path)
