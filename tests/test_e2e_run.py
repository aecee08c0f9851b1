"""`metarr-sync run` and `sync` end to end: the installed command against a Metarr
fixture database and the recording adapter (tests/support/recorder_player.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from support.configs import config_with, recorder
from support.metarr_factory import ago


def two_players(metarr: object, *, batch: int = 100, media: str = "/data/media",
                **sync: object) -> str:
    """Two recording players: lounge maps movies and shows to SMB shares, bedroom the
    whole library to a local folder."""
    return config_with(metarr=metarr, sync={"batch_size": batch, **sync}, players=[
        recorder("lounge", mappings=[(f"{media}/movies", "smb://nas/movies"),
                                     (f"{media}/tv", "smb://nas/tv")]),
        recorder("bedroom", mappings=[(media, "/mnt/media")])])


@pytest.fixture
def setup(cli, metarr):
    cli.write_config(two_players(metarr.path))
    return cli, metarr


@pytest.fixture
def on_disk(cli, metarr, tmp_path):
    """`setup` with Metarr's library in real folders: a removal needs its media gone."""
    media = tmp_path / "media"
    metarr.use_disk(media)
    cli.write_config(two_players(metarr.path, media=str(media)))
    return cli, metarr


@pytest.fixture
def each_db(cli, metarr_db):
    """`setup` on each Metarr backend (SQLite, PostgreSQL): the scenarios below them
    must behave the same on both."""
    cli.write_config(two_players(metarr_db.config_table, timeout=10))
    return cli, metarr_db


@pytest.fixture
def each_db_on_disk(cli, metarr_db, tmp_path):
    """`each_db` with Metarr's library in real folders. Every removal of these small
    libraries is a big share of them: only max_removals guards."""
    media = tmp_path / "media"
    metarr_db.use_disk(media)
    cli.write_config(two_players(metarr_db.config_table, media=str(media), timeout=10,
                                 max_removal_percent=100))
    return cli, metarr_db


def keys(sent):
    return sorted(t["key"] for t in sent)


def test_first_run_sends_recent_changes_only_and_second_run_nothing(each_db):
    cli, db = each_db
    old = db.add_movie("Heat", 1995, when=ago(days=40))
    recent = db.add_movie("The Matrix", 1999, when=ago(hours=2))
    show = db.add_series("Severance", when=ago(hours=3))
    season = db.add_season(show, 1, when=ago(hours=3))
    episode = db.add_episode(show, season, 1, 1, when=ago(hours=3))

    first = cli("run", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["status"] == "synced" and report["dry_run"] is False
    expected = sorted([f"movie:{recent}", f"series:{show}", f"episode:{episode}"])
    for player in ("lounge", "bedroom"):
        assert keys(cli.sent(player)) == expected, player
        row = next(p for p in report["players"] if p["name"] == player)
        assert row["status"] == "synced" and row["synced"] == 3 and row["failed"] == 0
    assert f"movie:{old}" not in keys(cli.sent("lounge"))
    assert [t["path"] for t in cli.sent("lounge") if t["key"] == f"movie:{recent}"] == [
        "smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv"]

    with cli.state() as state:
        queued = state.execute("SELECT count(*) FROM sync_queue").fetchone()[0]
        delivered = state.execute(
            "SELECT player, item_key FROM player_sync_status ORDER BY 1, 2").fetchall()
        stamps = dict(state.execute("SELECT item_key, stamp FROM items").fetchall())
    assert queued == 0
    assert len(delivered) == 6
    # The state holds canonical UTC stamps, whatever column types Metarr's database has
    # (PostgreSQL: timestamptz, timestamp and text in both of Metarr's formats).
    assert stamps and all(len(s) == 24 and s.endswith("Z") and s[10] == "T"
                          for s in stamps.values()), stamps

    for player in ("lounge", "bedroom"):
        cli.reset_log(player)
    second = cli("run", "--json")
    assert second.returncode == 0, second.stderr
    assert cli.sent("lounge") == [] and cli.sent("bedroom") == []
    # Nothing to do means no request at all, not even a probe.
    assert cli.calls("lounge") == [] and cli.calls("bedroom") == []
    assert json.loads(second.stdout)["items"] == 0


def test_players_with_different_mappings_get_their_own_paths(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    assert [t["path"] for t in cli.sent("lounge")] == [
        "smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv"]
    assert [t["folder"] for t in cli.sent("bedroom")] == ["/mnt/media/movies/The Matrix (1999)"]


def test_republished_item_is_sent_again_and_deleted_item_as_removed(each_db_on_disk):
    cli, db = each_db_on_disk
    matrix = db.add_movie("The Matrix", 1999)
    heat = db.add_movie("Heat", 1995)
    assert cli("run").returncode == 0
    cli.reset_log("lounge")

    db.republish_movie(matrix)  # touches published_at and assets only, not updated_at
    heat_file = db.delete_media("movies", heat)  # Radarr deleted the file ...
    db.soft_delete("movies", heat)  # ... and Metarr's row: deleted_at 30 days ahead
    assert cli("run").returncode == 0
    sent = {t["key"]: t for t in cli.sent("lounge")}
    assert set(sent) == {f"movie:{matrix}", f"movie:{heat}"}
    assert sent[f"movie:{matrix}"]["removed"] is False
    assert sent[f"movie:{heat}"]["removed"] is True

    cli.reset_log("lounge")
    Path(heat_file).write_bytes(b"")  # the file is back ...
    db.restore("movies", heat)  # ... and so is the row: it must be added again
    assert cli("run").returncode == 0
    assert [(t["key"], t["removed"]) for t in cli.sent("lounge")] == [(f"movie:{heat}", False)]

    cli.reset_log("lounge")
    db.delete_media("movies", heat)
    db.soft_delete("movies", heat)
    assert cli("run").returncode == 0
    cli.reset_log("lounge")
    db.purge("movies", heat)  # garbage collected after 30 days: already sent as removed
    assert cli("run").returncode == 0
    assert cli.sent("lounge") == []


def test_vanished_rows_count_as_removed(each_db_on_disk):
    cli, db = each_db_on_disk
    heat = db.add_movie("Heat", 1995)
    show = db.add_series("Severance")
    episode = db.add_episode(show, db.add_season(show, 1), 1, 1)
    # The libraries keep something: an empty library folder looks like an unmounted share.
    db.add_movie("Alien", 1979)
    db.add_series("Dark")
    assert cli("run").returncode == 0
    cli.reset_log("bedroom")
    db.delete_media("movies", heat)
    db.delete_media("series", show)
    db.purge("movies", heat)
    db.purge("series", show)  # takes its seasons and episodes with it
    assert cli("run").returncode == 0
    assert sorted((t["key"], t["removed"]) for t in cli.sent("bedroom")) == sorted([
        (f"movie:{heat}", True), (f"series:{show}", True), (f"episode:{episode}", True)])


def test_changed_episode_and_series_are_found_through_their_own_columns(each_db):
    cli, db = each_db
    show = db.add_series("Severance", when=ago(hours=3))
    season = db.add_season(show, 1, when=ago(hours=3))
    episode = db.add_episode(show, season, 1, 1, when=ago(hours=3))
    other = db.add_episode(show, season, 1, 2, when=ago(hours=3))
    assert cli("run").returncode == 0
    cli.reset_log("lounge")
    db.add_asset("image", "episode", episode, "S01E01-thumb.jpg", ago(minutes=1))
    db.touch("seasons", season)  # the season changed: the show is re-read
    assert cli("run").returncode == 0
    assert keys(cli.sent("lounge")) == sorted([f"series:{show}", f"episode:{episode}"])
    assert f"episode:{other}" not in keys(cli.sent("lounge"))


def test_equal_second_changes_are_not_missed(setup):
    cli, db = setup
    first = db.add_movie("Alien", 1979)
    assert cli("run").returncode == 0
    # A second movie published in the very same second as the first, after the run.
    second = db.add_movie("Aliens", 1986)
    stamp = db.conn.execute("SELECT published_at FROM movies WHERE id = ?", (first,)).fetchone()
    db.conn.execute("UPDATE movies SET published_at = ? WHERE id = ?", (stamp[0], second))
    cli.reset_log("lounge")
    assert cli("run").returncode == 0
    assert keys(cli.sent("lounge")) == [f"movie:{second}"]


def test_one_failing_player_leaves_the_others_synced_and_keeps_its_work(setup):
    cli, db = setup
    movie = db.add_movie("The Matrix", 1999)
    cli.behave("lounge", "fail", "offline")
    result = cli("run", "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    rows = {p["name"]: p for p in report["players"]}
    assert rows["bedroom"]["status"] == "synced" and rows["bedroom"]["synced"] == 1
    assert rows["lounge"]["status"] == "failed"
    assert rows["lounge"]["error_kind"] == "offline"
    assert "offline" in rows["lounge"]["error"]
    with cli.state() as state:
        row = state.execute("SELECT status, attempts, last_error FROM sync_queue "
                            "WHERE player = 'lounge'").fetchone()
    assert row["status"] == "pending" and row["attempts"] == 1
    assert "offline" in row["last_error"]

    cli.heal("lounge", "fail")
    cli.reset_log("bedroom")
    again = cli("run", "--json")
    assert again.returncode == 0
    assert keys(cli.sent("lounge")) == [f"movie:{movie}"]
    assert cli.sent("bedroom") == []  # bedroom already had it


def test_rejected_item_is_partial_and_kept_as_failed(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    bad = db.add_movie("Heat", 1995)
    cli.behave("bedroom", "reject", "Heat")
    result = cli("run", "--json")
    assert result.returncode == 1
    rows = {p["name"]: p for p in json.loads(result.stdout)["players"]}
    assert rows["bedroom"]["status"] == "partial"
    assert (rows["bedroom"]["synced"], rows["bedroom"]["failed"]) == (1, 1)
    with cli.state() as state:
        failed = state.execute("SELECT item_key, status FROM sync_queue").fetchall()
    assert [tuple(r) for r in failed] == [(f"movie:{bad}", "failed")]


def test_unmappable_path_is_an_error_for_that_item_never_a_library_scan(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, players=[
        recorder("lounge", mappings=[("/data/media/tv", "smb://nas/tv")])]))
    metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--json")
    assert result.returncode == 1
    row = json.loads(result.stdout)["players"][0]
    assert row["status"] == "partial" and row["failed"] == 1
    assert cli.sent("lounge") == []
    with cli.state() as state:
        error = state.execute("SELECT last_error FROM sync_queue").fetchone()[0]
    assert "no path mapping covers /data/media/movies/The Matrix (1999)" in error


def test_dry_run_prints_commands_and_changes_no_state(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    result = cli("run", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "update smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv" in result.stdout
    assert "update /mnt/media/movies/The Matrix (1999)/The Matrix (1999).mkv" in result.stdout
    assert cli.sent("lounge") == []
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
        assert state.execute("SELECT count(*) FROM items").fetchone()[0] == 0
        assert state.execute("SELECT count(*) FROM runs").fetchone()[0] == 0
    real = cli("run", "--json")
    assert json.loads(real.stdout)["players"][0]["synced"] == 1


def test_sync_sends_named_items_by_id_and_path_regardless_of_history(each_db):
    cli, db = each_db
    matrix = db.add_movie("The Matrix", 1999)
    db.add_movie("Heat", 1995)
    show = db.add_series("Severance")
    episode = db.add_episode(show, db.add_season(show, 1), 1, 1)
    assert cli("run").returncode == 0
    cli.reset_log("lounge")
    result = cli("sync", "--movie", str(matrix), "--player", "lounge", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["trigger"] == "post-publish" and report["command"] == "sync"
    assert keys(cli.sent("lounge")) == [f"movie:{matrix}"]

    cli.reset_log("lounge")
    by_series = cli("sync", "--series", str(show), "--player", "lounge")
    assert by_series.returncode == 0, by_series.stderr
    assert keys(cli.sent("lounge")) == sorted([f"series:{show}", f"episode:{episode}"])

    cli.reset_log("lounge")
    by_path = cli("sync", "/data/media/movies/The Matrix (1999)", "--player", "lounge")
    assert by_path.returncode == 0, by_path.stderr
    assert keys(cli.sent("lounge")) == [f"movie:{matrix}"]


def test_sync_unknown_id_is_a_usage_error(setup):
    cli, db = setup
    result = cli("sync", "--movie", "999")
    assert result.returncode == 2
    assert "no movie with id 999" in result.stderr
    assert "Traceback" not in result.stderr


def test_skip_active_defers_updates_but_removals_proceed(on_disk):
    cli, db = on_disk
    keep = db.add_movie("The Matrix", 1999)
    gone = db.add_movie("Heat", 1995)
    assert cli("run").returncode == 0
    db.republish_movie(keep)
    db.delete_media("movies", gone)
    db.soft_delete("movies", gone)
    cli.reset_log("lounge")
    cli.behave("lounge", "playing")
    result = cli("run", "--json", "--player", "lounge")
    assert result.returncode == 0
    row = json.loads(result.stdout)["players"][0]
    assert row["status"] == "deferred" and row["deferred"] == 1 and row["synced"] == 1
    assert [(t["key"], t["removed"]) for t in cli.sent("lounge")] == [(f"movie:{gone}", True)]
    cli.heal("lounge", "playing")
    cli.reset_log("lounge")
    assert cli("run", "--player", "lounge").returncode == 0
    assert keys(cli.sent("lounge")) == [f"movie:{keep}"]


def test_batches_follow_batch_size(cli, metarr):
    cli.write_config(two_players(metarr.path, batch=2))
    for n in range(5):
        metarr.add_movie(f"Movie {n}", 2000 + n)
    assert cli("run").returncode == 0
    batches = [c for c in cli.calls("lounge") if c["op"] == "apply"]
    assert [len(b["targets"]) for b in batches] == [2, 2, 1]


def test_sigkill_mid_run_then_rerun_delivers_everything(setup):
    cli, db = setup
    movies = [db.add_movie(f"Movie {n}", 2000 + n) for n in range(6)]
    cli.write_config(two_players(db.path, batch=2))
    cli.behave("lounge", "slow", "1")
    proc = cli.popen("run")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(cli.sent("lounge")) < 2:
        time.sleep(0.05)
    assert len(cli.sent("lounge")) >= 2, "the run never got going"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    cli.heal("lounge", "slow")
    rerun = cli("run")
    assert rerun.returncode == 0, rerun.stderr
    for player in ("lounge", "bedroom"):
        assert {t["key"] for t in cli.sent(player)} == {f"movie:{m}" for m in movies}
    with cli.state() as state:
        assert state.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0


def test_second_concurrent_run_exits_5(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    cli.behave("lounge", "slow", "8")
    first = cli.popen("run")
    deadline = time.monotonic() + 30
    # The probe is logged once the first run holds the lock and works on the players.
    while time.monotonic() < deadline and not cli.calls("lounge"):
        time.sleep(0.05)
    assert cli.calls("lounge"), "the first run never reached the players"
    second = cli("run")
    assert second.returncode == 5
    assert "another metarr-sync run holds" in second.stderr
    assert first.wait(timeout=60) == 0
    # The second run sent nothing: each player got the movie exactly once.
    assert len(cli.sent("lounge")) == 1 and len(cli.sent("bedroom")) == 1


def test_exit_3_on_configuration_errors(cli, metarr):
    cli.write_config("[sync]\nbatch_size = 0\n[players.x]\ntype = 'kodi'\nurl = 'ftp://x'\n")
    result = cli("run")
    assert result.returncode == 3
    assert f"{cli.config}: sync.batch_size: must be at least 1, not 0" in result.stderr
    assert "players.x.url: 'ftp://x' must start with http:// or https://" in result.stderr
    cli.write_config("[sync\nbatch_size = 1\n")
    result = cli("run")
    assert result.returncode == 3
    assert "line 1" in result.stderr and "TOML syntax error" in result.stderr
    assert "Traceback" not in result.stderr


def test_exit_4_when_metarr_database_is_unreadable(cli, tmp_path):
    cli.write_config(config_with(metarr=tmp_path / "nope.sqlite", players=[recorder("x")]))
    result = cli("run")
    assert result.returncode == 4
    assert "does not exist" in result.stderr
    (tmp_path / "other.sqlite").write_bytes(b"")
    import sqlite3

    sqlite3.connect(tmp_path / "other.sqlite").execute("CREATE TABLE t (x)").connection.close()
    cli.write_config(config_with(metarr=tmp_path / "other.sqlite", players=[recorder("x")]))
    result = cli("run")
    assert result.returncode == 4
    assert "table movies is missing" in result.stderr


def test_exit_2_on_usage_errors(setup):
    cli, _ = setup
    assert cli("run", "--no-such-flag").returncode == 2
    result = cli("run", "--player", "nobody")
    assert result.returncode == 2 and "unknown player 'nobody'" in result.stderr
    assert cli("sync").returncode == 2


def test_quiet_prints_nothing_on_success_and_the_table_on_failure(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    ok = cli("run", "--quiet")
    assert ok.returncode == 0 and ok.stdout == "" and ok.stderr == ""
    db.add_movie("Heat", 1995)
    cli.behave("lounge", "fail", "timeout")
    bad = cli("run", "--quiet")
    assert bad.returncode == 1
    assert "lounge" in bad.stdout and "failed" in bad.stdout
    assert "\x1b[" not in bad.stdout  # no colour codes through a pipe


def test_auth_failure_disables_the_player_until_fixed(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    cli.behave("lounge", "fail", "auth_failed")
    first = json.loads(cli("run", "--json").stdout)
    assert {p["name"]: p["error_kind"] for p in first["players"]}["lounge"] == "auth_failed"
    cli.heal("lounge", "fail")
    cli.reset_log("lounge")
    second = cli("run", "--json")
    assert second.returncode == 1
    row = {p["name"]: p for p in json.loads(second.stdout)["players"]}["lounge"]
    assert row["status"] == "disabled" and "players test lounge" in row["error"]
    assert cli.calls("lounge") == []  # not contacted while disabled


def test_disabled_sync_exits_0_with_one_line(setup):
    cli, db = setup
    cli.write_config(two_players(db.path, enabled=False))
    db.add_movie("The Matrix", 1999)
    result = cli("run")
    assert result.returncode == 0
    assert result.stdout.strip() == "sync is disabled ([sync] enabled = false): nothing was sent"
    assert cli.sent("lounge") == []
