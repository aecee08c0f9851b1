"""Verified delivery: an item counts as synced only once the player is seen to have it."""

from __future__ import annotations

import json

from support.configs import RECORDER_URL, config_with, player


def one_player(metarr, type: str = "recorder", **keys) -> str:
    return config_with(metarr=metarr.path, players=[player(
        type, "lounge", url=RECORDER_URL,
        mappings=[("/data/media/movies", "smb://nas/movies")], **keys)])


def report(result):
    assert result.stderr == "" or "warning" not in result.stderr, result.stderr
    return json.loads(result.stdout)["players"][0]


def queue_rows(cli):
    with cli.state() as state:
        return [dict(r) for r in state.execute(
            "SELECT item_key, status, attempts, last_error FROM sync_queue ORDER BY item_key")]


def test_immediate_verification_counts_verified_and_empties_the_queue(cli, metarr):
    cli.write_config(one_player(metarr))
    metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--json")
    assert result.returncode == 0, result.stderr
    row = report(result)
    assert (row["synced"], row["verified"], row["failed"]) == (1, 1, 0)
    assert [c["op"] for c in cli.calls("lounge")] == ["probe", "apply", "verify"]
    assert queue_rows(cli) == []
    with cli.state() as state:
        assert state.execute("SELECT verified_at IS NOT NULL FROM player_sync_status"
                             ).fetchone()[0] == 1


def test_item_not_seen_on_the_player_is_unverified_with_its_cause_and_retried_bounded(
        cli, metarr):
    cli.write_config(one_player(metarr))
    heat = metarr.add_movie("Heat", 1995)
    cli.behave("lounge", "unverified", "Heat")
    first = cli("run", "--json")
    assert first.returncode == 1
    row = report(first)
    assert row["status"] == "partial"
    assert (row["synced"], row["verified"], row["failed"]) == (0, 0, 1)
    assert queue_rows(cli) == [{
        "item_key": f"movie:{heat}", "status": "unverified", "attempts": 1,
        "last_error": "recorder has no item at smb://nas/movies/Heat (1995)/Heat (1995).mkv"}]
    # Resent on the next runs, but only up to three deliveries in all.
    for _ in range(4):
        cli("run")
    applies = [c for c in cli.calls("lounge") if c["op"] == "apply"]
    assert len(applies) == 3
    assert queue_rows(cli)[0]["attempts"] == 3
    # A person fixed it: `queue retry` would reset it; so does a changed item.
    cli.heal("lounge", "unverified")
    metarr.republish_movie(heat)
    assert cli("run").returncode == 0
    assert queue_rows(cli) == []


def test_background_scanners_are_verified_on_the_next_run(cli, metarr):
    cli.write_config(one_player(metarr))
    cli.behave("lounge", "async", "3600")
    movie = metarr.add_movie("The Matrix", 1999)
    first = report(cli("run", "--json"))
    assert (first["synced"], first["verified"]) == (1, 0)
    assert queue_rows(cli) == [{"item_key": f"movie:{movie}", "status": "sent",
                                "attempts": 1, "last_error": None}]
    # Too early: the player may still be scanning in the background.
    early = report(cli("run", "--json"))
    assert early["verified"] == 0 and queue_rows(cli)[0]["status"] == "sent"
    # An hour later (the delivery's time moved back instead of sleeping).
    with cli.state() as state:
        state.execute("UPDATE sync_queue SET updated_at = '2000-01-01T00:00:00.000Z'")
    later = report(cli("run", "--json"))
    assert (later["verified"], later["synced"]) == (1, 0)
    assert queue_rows(cli) == []
    assert [c["op"] for c in cli.calls("lounge")].count("apply") == 1


def test_an_item_taken_back_by_finish_stays_queued(cli, metarr):
    cli.write_config(one_player(metarr, "rejudging"))
    movie = metarr.add_movie("The Matrix", 1999)
    plugins = "rejudging=support.rejudging_player:RejudgingPlayer"
    result = cli("run", "--json", env={"METARR_SYNC_PLUGINS": plugins})
    assert result.returncode == 1
    row = report(result)
    assert (row["synced"], row["failed"], row["status"]) == (0, 1, "partial")
    assert queue_rows(cli) == [{"item_key": f"movie:{movie}", "status": "failed",
                                "attempts": 2, "last_error": "taken back by finish()"}]


def test_verify_command_checks_earlier_deliveries_at_once(cli, metarr):
    cli.write_config(one_player(metarr))
    cli.behave("lounge", "async", "3600")
    metarr.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    cli.behave("lounge", "unverified", "Matrix")
    result = cli("verify", "--json")
    assert result.returncode == 1
    doc = json.loads(result.stdout)
    assert doc["command"] == "verify"
    assert doc["players"][0]["failed"] == 1
    assert queue_rows(cli)[0]["status"] == "unverified"
    assert [c["op"] for c in cli.calls("lounge")].count("apply") == 1


def test_no_verify_flag_and_config_are_fire_and_forget(cli, metarr):
    cli.write_config(one_player(metarr, verify=False))
    cli.behave("lounge", "unverified", "Matrix")
    metarr.add_movie("The Matrix", 1999)
    row = report(cli("run", "--json"))
    assert (row["synced"], row["verified"], row["status"]) == (1, 0, "synced")
    assert "verify" not in [c["op"] for c in cli.calls("lounge")]
    assert queue_rows(cli) == []

    cli.write_config(one_player(metarr))
    metarr.add_movie("Heat", 1995)
    row = report(cli("run", "--json", "--no-verify"))
    assert (row["synced"], row["verified"]) == (1, 0)
    assert queue_rows(cli) == []


def test_unverified_items_make_status_warn(cli, metarr):
    cli.write_config(one_player(metarr))
    metarr.add_movie("Heat", 1995)
    cli.behave("lounge", "unverified", "Heat")
    assert cli("run").returncode == 1
    status = cli("status")
    assert status.returncode == 1
    assert status.stdout.splitlines()[0].startswith("WARNING: ")
    assert ("1 item(s) sent to lounge but not seen there yet; they are sent again on the "
            "next runs (`metarr-sync queue list --status unverified`)") in status.stdout
