"""`metarr-sync queue ...` through the installed command: what is queued in the state,
that queue add contacts no player and the next run delivers, and that refused commands
leave the state's rows as they were."""

from __future__ import annotations

import json
import shutil

import pytest
from support.configs import config_with, recorder
from support.snapshots import snapshot, state_rows


def two_recorders(database: object) -> str:
    """lounge maps the library to an SMB share; bedroom has no mappings."""
    return config_with(metarr=str(database), players=[
        recorder("lounge", mappings=[("/data/media", "smb://nas/media")]),
        recorder("bedroom", url="http://127.0.0.1:10")])


@pytest.fixture
def setup(cli, metarr):
    cli.write_config(two_recorders(metarr.path))
    return cli, metarr


def queue_rows(cli) -> list[tuple]:
    with cli.state() as state:
        return [tuple(r) for r in state.execute(
            "SELECT player, item_key, status, attempts, source FROM sync_queue "
            "ORDER BY player, item_key")]


def test_queue_add_queues_for_every_player_without_contacting_them(setup):
    cli, db = setup
    matrix = db.add_movie("The Matrix", 1999)
    show = db.add_series("Severance")
    season = db.add_season(show, 1)
    e1 = db.add_episode(show, season, 1, 1)
    e2 = db.add_episode(show, season, 1, 2)
    result = cli("queue", "add", "--movie", str(matrix), "--series", str(show), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["players"] == ["lounge", "bedroom"] and report["entries"] == 8
    assert sorted(i["item"] for i in report["items"]) == sorted(
        [f"movie:{matrix}", f"series:{show}", f"episode:{e1}", f"episode:{e2}"])
    assert cli.calls("lounge") == [] and cli.calls("bedroom") == []
    keys = sorted([f"episode:{e1}", f"episode:{e2}", f"movie:{matrix}", f"series:{show}"])
    assert queue_rows(cli) == [(p, k, "pending", 0, "queue") for p in ("bedroom", "lounge")
                               for k in keys]

    run = cli("run", "--json")
    assert run.returncode == 0, run.stderr
    assert sorted(t["key"] for t in cli.sent("lounge")) == keys
    assert queue_rows(cli) == []


def test_queue_add_by_path_and_for_one_player(setup):
    cli, db = setup
    matrix = db.add_movie("The Matrix", 1999)
    db.add_movie("Heat", 1995)
    result = cli("queue", "add", "/data/media/movies/The Matrix (1999)", "--player",
                 "bedroom")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("Queued 1 item(s) for bedroom: the next `metarr-sync "
                                     "run` delivers them.")
    assert queue_rows(cli) == [("bedroom", f"movie:{matrix}", "pending", 0, "queue")]


@pytest.mark.parametrize(("args", "message"), [
    (["queue", "add", "--movie", "999"], "no movie with id 999 in Metarr's database {db}"),
    (["queue", "add", "--episode", "5", "--movie", "1"],
     "no episode with id 5 in Metarr's database {db}"),
    (["queue", "add", "movies/The Matrix"],
     "'movies/The Matrix' is not an absolute Metarr-side path"),
    (["queue", "add", "/data/media/nothing-here"],
     "no Metarr item at or below /data/media/nothing-here"),
    (["queue", "add"], "name what to queue: --movie ID, --episode ID, --series ID or a path"),
    (["queue", "add", "--movie", "1", "--player", "nobody"],
     "unknown player 'nobody' (players: lounge, bedroom)"),
    (["queue", "list", "--status", "stuck"],
     "--status must be one of pending, deferred, failed, unverified, sent, held, not 'stuck'"),
    (["queue", "list", "--player", "nobody"],
     "unknown player 'nobody' (players: lounge, bedroom)"),
    (["queue", "retry", "42"],
     "'42' is not an item like movie:42, series:3 or episode:7 (see `metarr-sync queue "
     "list`)"),
    (["queue", "retry", "movie:1"],
     "movie:1 is not failed or unverified in the queue (see `metarr-sync queue list`)"),
    (["queue", "retry", "--player", "nobody"],
     "unknown player 'nobody' (players: lounge, bedroom)"),
    (["queue", "clear", "--player", "nobody", "--yes"],
     "unknown player 'nobody' (players: lounge, bedroom)"),
])
def test_refused_queue_commands_exit_2_and_change_nothing(setup, args, message):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    db.add_movie("Heat", 1995)
    cli.behave("lounge", "fail", "offline")
    assert cli("run").returncode == 1  # Heat pending for lounge: rows to compare
    before = snapshot(cli.config, cli.state_dir)
    assert before[1]["sync_queue"]
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert f"metarr-sync: {message.format(db=db.path)}" in result.stderr.splitlines()
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert snapshot(cli.config, cli.state_dir) == before


def test_queue_add_with_an_unknown_id_creates_no_state(setup):
    cli, _ = setup
    result = cli("queue", "add", "--movie", "7")
    assert result.returncode == 2
    assert state_rows(cli.state_dir) is None


def test_queue_add_with_an_unreadable_metarr_database(cli, tmp_path):
    cli.write_config(two_recorders(tmp_path / "gone.sqlite"))
    result = cli("queue", "add", "--movie", "1")
    assert result.returncode == 4
    assert "does not exist" in result.stderr
    assert state_rows(cli.state_dir) is None


def test_queue_list_shows_what_waits_and_why(setup):
    cli, db = setup
    matrix = db.add_movie("The Matrix", 1999)
    heat = db.add_movie("Heat", 1995)
    cli.behave("bedroom", "reject", "Heat")
    cli.behave("lounge", "fail", "timeout")
    assert cli("run").returncode == 1

    result = cli("queue", "list", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {"lounge": {"pending": 2}, "bedroom": {"failed": 1}}
    failed = [e for e in report["entries"] if e["status"] == "failed"]
    assert len(failed) == 1
    entry = failed[0]
    assert {k: entry[k] for k in ("player", "item", "kind", "id", "title", "status",
                                  "attempts", "last_error", "removed")} == {
        "player": "bedroom", "item": f"movie:{heat}", "kind": "movie", "id": heat,
        "title": "Heat", "status": "failed", "attempts": 1,
        "last_error": "rejected by recorder", "removed": False}
    assert entry["path"] == "/data/media/movies/Heat (1995)/Heat (1995).mkv"
    assert entry["enqueued_at"].endswith("Z") and entry["source"] == "baseline"
    pending = [e for e in report["entries"] if e["player"] == "lounge"]
    assert {e["item"] for e in pending} == {f"movie:{matrix}", f"movie:{heat}"}
    assert {e["last_error"] for e in pending} == {"recorder told to fail: timeout"}

    only = cli("queue", "list", "--status", "failed", "--player", "bedroom")
    assert only.returncode == 0
    assert "rejected by recorder" in only.stdout
    assert "sent again only after `metarr-sync queue retry`" in only.stdout
    assert "The Matrix" not in only.stdout
    table = cli("queue", "list")
    assert "recorder told to fail: timeout" in table.stdout and "pending" in table.stdout
    assert "\x1b[" not in table.stdout
    waiting = cli("queue", "list", "--status", "pending")
    assert "recorder told to fail: timeout" in waiting.stdout
    assert "queue retry" not in waiting.stdout  # nothing listed waits for a person
    none = cli("queue", "list", "--status", "deferred")
    assert none.stdout.strip() == "Nothing is queued with status deferred."


def test_queue_list_before_any_run(setup):
    cli, _ = setup
    result = cli("queue", "list", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {"entries": [], "counts": {"lounge": {},
                                                                   "bedroom": {}}}
    assert state_rows(cli.state_dir) is None  # listing created nothing


def test_queue_retry_sends_failed_items_again(setup):
    cli, db = setup
    heat = db.add_movie("Heat", 1995)
    alien = db.add_movie("Alien", 1979)
    cli.behave("bedroom", "reject", "/")
    assert cli("run").returncode == 1
    assert [r[2] for r in queue_rows(cli)] == ["failed", "failed"]
    cli.heal("bedroom", "reject")
    cli.reset_log("bedroom")
    assert cli("run").returncode == 0
    assert cli.sent("bedroom") == []  # failed items wait for a person

    one = cli("queue", "retry", f"movie:{heat}", "--player", "bedroom", "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == {"retried": 1}
    assert sorted(queue_rows(cli)) == sorted([
        ("bedroom", f"movie:{alien}", "failed", 1, "baseline"),
        ("bedroom", f"movie:{heat}", "pending", 0, "baseline")])
    rest = cli("queue", "retry")
    assert rest.stdout.strip() == "1 item(s) will be sent again at the next run."
    assert cli("run").returncode == 0
    assert sorted(t["key"] for t in cli.sent("bedroom")) == sorted(
        [f"movie:{heat}", f"movie:{alien}"])
    nothing = cli("queue", "retry")
    assert nothing.stdout.strip() == "Nothing to retry: no failed or unverified items."


def failing_setup(cli, db) -> None:
    db.add_movie("The Matrix", 1999)
    db.add_movie("Heat", 1995)
    cli.behave("bedroom", "reject", "Heat")
    cli.behave("lounge", "fail", "offline")
    assert cli("run").returncode == 1


def test_queue_clear_refuses_without_a_terminal_and_clears_with_yes(setup):
    cli, db = setup
    failing_setup(cli, db)
    before = snapshot(cli.config, cli.state_dir)
    refused = cli("queue", "clear")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("metarr-sync: queue clear would drop 3 queue entries of "
                                      "every player; there is no terminal to confirm on: add "
                                      "--yes")
    assert snapshot(cli.config, cli.state_dir) == before

    failed_only = cli("queue", "clear", "--failed", "--yes", "--json")
    assert failed_only.returncode == 0
    assert json.loads(failed_only.stdout) == {"cleared": 1}
    assert [r[:3] for r in queue_rows(cli)] == [("lounge", "movie:1", "pending"),
                                                ("lounge", "movie:2", "pending")]
    everything = cli("queue", "clear", "--player", "lounge", "--yes")
    assert everything.stdout.strip() == "Cleared 2 queued item(s)."
    assert queue_rows(cli) == []
    # Cleared means forgotten: the next run does not send them.
    cli.heal("lounge", "fail")
    assert cli("run").returncode == 0
    assert cli.sent("lounge") == []


@pytest.mark.skipif(shutil.which("metarr-sync") is None, reason="not installed")
def test_queue_clear_asks_on_a_terminal(setup):
    pexpect = pytest.importorskip("pexpect")
    cli, db = setup
    failing_setup(cli, db)
    before = snapshot(cli.config, cli.state_dir)
    child = pexpect.spawn(cli.exe, ["queue", "clear", "--player", "lounge"], env=cli.env,
                          encoding="utf-8", timeout=30)
    child.expect_exact("Drop 2 queue entries of lounge? [y/N]: ")
    child.sendline("n")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 1
    assert "nothing was cleared" in child.before
    assert snapshot(cli.config, cli.state_dir) == before

    child = pexpect.spawn(cli.exe, ["queue", "clear", "--player", "lounge"], env=cli.env,
                          encoding="utf-8", timeout=30)
    child.expect_exact("Drop 2 queue entries of lounge? [y/N]: ")
    child.sendline("y")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Cleared 2 queued item(s)." in child.before
    assert [r[0] for r in queue_rows(cli)] == ["bedroom"]
