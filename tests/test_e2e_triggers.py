"""The design's four triggers: post-publish, manual, scheduled and bulk."""

from __future__ import annotations

import json

from support.configs import config_with, recorder
from support.metarr_factory import ago, sqlite_ts


def configure(cli, metarr, auto=True):
    cli.write_config(config_with(
        metarr=metarr.path, sync={"auto_sync": auto, "initial_lookback": "none"},
        players=[recorder("lounge")]))


def triggers(cli):
    with cli.state() as state:
        return [r[0] for r in state.execute("SELECT trigger FROM runs ORDER BY id")]


def test_post_publish_hook_with_auto_sync_off_only_queues(cli, metarr):
    configure(cli, metarr, auto=False)
    movie = metarr.add_movie("The Matrix", 1999)
    result = cli("sync", "--movie", str(movie))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "auto_sync is off ([sync] auto_sync = false): queued 1 item(s) for the next "
        "`metarr-sync run`, no player contacted")
    assert cli.calls("lounge") == []
    with cli.state() as state:
        assert [tuple(r) for r in state.execute(
            "SELECT player, item_key, status, source FROM sync_queue")] == [
            ("lounge", f"movie:{movie}", "pending", "sync")]
    scheduled = cli("run", "--trigger", "scheduled", "--json")
    assert json.loads(scheduled.stdout)["trigger"] == "scheduled"
    assert [t["key"] for t in cli.sent("lounge")] == [f"movie:{movie}"]
    assert triggers(cli) == ["scheduled"]


def test_every_run_records_its_trigger(cli, metarr):
    configure(cli, metarr)
    movie = metarr.add_movie("The Matrix", 1999)
    cli("run")
    cli("run", "--trigger", "scheduled")
    cli("sync", "--movie", str(movie))
    cli("sync", "--all", "--yes")
    assert triggers(cli) == ["manual", "scheduled", "post-publish", "bulk"]
    bad = cli("run", "--trigger", "cron")
    assert bad.returncode == 2
    assert "--trigger must be one of manual, scheduled, post-publish, bulk" in bad.stderr


def test_bulk_by_library_and_since(cli, metarr):
    configure(cli, metarr)
    old = metarr.add_movie("Heat", 1995, when=ago(days=10))
    new = metarr.add_movie("The Matrix", 1999, when=ago(hours=1))
    show = metarr.add_series("Severance", when=ago(days=20))
    result = cli("sync", "--library", "Movies", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["trigger"] == "bulk"
    assert sorted(t["key"] for t in cli.sent("lounge")) == sorted(
        [f"movie:{old}", f"movie:{new}"])
    cli.reset_log("lounge")
    assert cli("sync", "--since", "2d").returncode == 0
    assert [t["key"] for t in cli.sent("lounge")] == [f"movie:{new}"]
    cli.reset_log("lounge")
    assert cli("sync", "--library", "TV Shows").returncode == 0
    assert [t["key"] for t in cli.sent("lounge")] == [f"series:{show}"]
    unknown = cli("sync", "--library", "Music")
    assert unknown.returncode == 2
    assert "no Metarr library named 'Music' (libraries: Movies, TV Shows)" in unknown.stderr
    bad = cli("sync", "--since", "last tuesday")
    assert bad.returncode == 2 and "--since takes a date" in bad.stderr


def test_bulk_over_a_thousand_items_asks_first(cli, metarr):
    configure(cli, metarr)
    when = sqlite_ts(ago(days=3))
    metarr.conn.executemany(
        "INSERT INTO movies (library_id, file_path, title, year, published_at, created_at, "
        "updated_at) VALUES (?, ?, ?, 2000, ?, ?, ?)",
        [(metarr.movie_lib, f"/data/media/movies/M{n}/M{n}.mkv", f"M{n}", when, when, when)
         for n in range(1001)])
    refused = cli("sync", "--all")
    assert refused.returncode == 2
    assert "this would sync 1001 items to every player; add --yes to confirm" in refused.stderr
    assert cli.calls("lounge") == []
    done = cli("sync", "--all", "--yes", "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout)["players"][0]["synced"] == 1001


def test_status_counts_runs_per_trigger(cli, metarr):
    configure(cli, metarr)
    movie = metarr.add_movie("The Matrix", 1999)
    cli("run")
    cli("run", "--trigger", "scheduled")
    cli("run", "--trigger", "scheduled")
    cli("sync", "--movie", str(movie))
    status = cli("status", "--json")
    assert json.loads(status.stdout)["runs"]["by_trigger"] == {
        "manual": 1, "post-publish": 1, "scheduled": 2}
    plain = cli("status")
    assert "runs by trigger: manual 1, post-publish 1, scheduled 2" in plain.stdout
