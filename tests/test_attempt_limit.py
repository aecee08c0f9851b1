"""[sync] max_attempts: an item that failed that many runs in a row is `failed`, with its
cause, for a person — for every player type — instead of staying pending for ever; `queue
retry` brings it back. The installed command against players that refuse the connection,
then against fakes listening on the same port."""

from __future__ import annotations

import json
import socket

import pytest
from support.configs import config_with
from support.fake_players import FakeJellyfin, FakeKodi, FakePlex

SYNC = {"timeout": 1, "retry_attempts": 0, "max_attempts": 2, "initial_lookback": "all"}
FAKES = {"kodi": lambda port: FakeKodi(port=port, sources={"/mnt/movies/": "movies"}),
         "jellyfin": lambda port: FakeJellyfin(port=port),
         "plex": lambda port: FakePlex(port=port)}
ROOTS = {"kodi": "/mnt", "jellyfin": "/media", "plex": "/media"}


def free_port() -> int:
    with socket.socket() as sock:  # nobody listens here until the fake starts
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("kind", FAKES)
def test_an_item_is_given_up_after_max_attempts_failed_runs_and_queue_retry_brings_it_back(
        cli, metarr, kind):
    port = free_port()
    fake = FAKES[kind](port)
    root = ROOTS[kind]
    fake.add_file(f"{root}/movies/Heat (1995)/Heat (1995).mkv")
    metarr.add_movie("Heat", 1995)
    cli.write_config(config_with(metarr=metarr.path, sync=SYNC, players=[
        fake.player("box", [("/data/media", root)])]))

    def run() -> tuple[int, dict]:
        result = cli("run", "--json")
        assert "Traceback" not in result.stderr, result.stderr
        return result.returncode, json.loads(result.stdout)

    def queue() -> list[dict]:
        result = cli("queue", "list", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)["entries"]

    refused = f"{fake.url} refused the connection (player offline?)"
    code, report = run()
    assert code == 1 and report["players"][0]["error"] == refused
    assert [(e["status"], e["attempts"], e["last_error"]) for e in queue()] == [
        ("pending", 1, refused)]

    # The second failed run in a row (max_attempts = 2): given up, with its cause.
    code, report = run()
    assert code == 1
    (entry,) = queue()
    assert (entry["status"], entry["attempts"]) == ("failed", 2)
    assert entry["last_error"] == (f"{refused} (failed 2 runs in a row: given up until a "
                                   "person runs `metarr-sync queue retry`)")
    table = cli("queue", "list", "--status", "failed")
    assert "failed 2 runs in a row" in table.stdout and "Heat" in table.stdout
    status = cli("status")  # CRITICAL for the failed runs, and a person is needed
    assert status.returncode == 2, status.stdout
    assert "1 item(s) failed on box and need a person" in status.stdout

    # Not tried again by later runs: nothing to do, the player is not even contacted.
    code, report = run()
    assert code == 0 and report["items"] == 0 and report["players"][0]["requests"] == 0
    assert queue()[0]["status"] == "failed"

    # The player is back and a person retries: delivered.
    with fake:
        result = cli("queue", "retry")
        assert result.returncode == 0, result.stderr
        assert [(e["status"], e["attempts"]) for e in queue()] == [("pending", 0)]
        code, report = run()
        assert code == 0, report
        assert report["players"][0]["synced"] == 1
        # Kodi is verified in the same run; Jellyfin and Plex scan in the background, so
        # their delivery is verified by the next run.
        assert [e["status"] for e in queue()] == ([] if kind == "kodi" else ["sent"])
        assert f"{root}/movies/Heat (1995)/Heat (1995).mkv" in fake.library_files()
