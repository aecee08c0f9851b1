"""`metarr-sync status` through the installed command: the verdict line, the monitoring
exit codes, the design's SyncMetrics in --json, and that it stays away from the network."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from support.snapshots import snapshot

CONFIG = """
[metarr]
database = "{db}"

[players.lounge]
type = "recorder"
url = "http://127.0.0.1:9"
password = {{ env = "NEVER_SET_LOUNGE_PASSWORD" }}
username = "kodi"

[players.bedroom]
type = "recorder"
url = "http://127.0.0.1:10"
"""

METRICS = ("total_syncs", "successful_syncs", "failed_syncs", "average_sync_time",
           "last_sync_timestamp", "items_per_second", "by_player")
EXTRAS = ("health", "players", "queue", "runs")


@pytest.fixture
def setup(cli, metarr):
    cli.write_config(CONFIG.format(db=metarr.path))
    # `run` needs the password; status must not (it never resolves secrets).
    cli.env["NEVER_SET_LOUNGE_PASSWORD"] = "pw-for-runs"
    return cli, metarr


def status(cli, *args: str, env: dict | None = None):
    result = cli("status", *args, env=env)
    assert "Traceback" not in result.stderr
    return result


def test_no_state_yet_is_unknown(setup):
    cli, _ = setup
    plain = status(cli)
    assert plain.returncode == 3
    assert plain.stdout.splitlines()[0] == (f"UNKNOWN: no sync has run yet (no state in "
                                            f"{cli.state_dir}): run `metarr-sync run`")
    doc = json.loads(status(cli, "--json").stdout)
    assert tuple(doc) == METRICS + EXTRAS
    assert doc["total_syncs"] == 0 and doc["by_player"] == {}
    assert doc["health"]["status"] == "UNKNOWN" and doc["health"]["exit_code"] == 3
    assert not cli.state_dir.exists()  # status created nothing


def test_healthy_after_a_good_run(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    db.add_movie("Heat", 1995)
    assert cli("run").returncode == 0
    plain = status(cli)
    assert plain.returncode == 0, plain.stdout
    first = plain.stdout.splitlines()[0]
    assert first.startswith("OK: 2 player(s) in sync; last run #1 synced ")
    assert first.endswith(" ago")
    assert "\x1b[" not in plain.stdout
    doc = json.loads(status(cli, "--json", env={"NEVER_SET_LOUNGE_PASSWORD": ""}).stdout)
    assert tuple(doc) == METRICS + EXTRAS
    assert (doc["total_syncs"], doc["successful_syncs"], doc["failed_syncs"]) == (1, 1, 0)
    assert doc["average_sync_time"] >= 0 and doc["items_per_second"] > 0
    assert doc["last_sync_timestamp"].endswith("Z")
    assert set(doc["by_player"]) == {"lounge", "bedroom"}
    for metrics in doc["by_player"].values():
        assert tuple(metrics) == ("success_rate", "average_response_time", "last_error")
        assert metrics["success_rate"] == 1.0 and metrics["last_error"] is None
        assert metrics["average_response_time"] >= 0
    assert doc["health"]["summary"].startswith("OK: 2 player(s) in sync; last run #1 synced ")
    assert {k: doc["health"][k] for k in ("status", "exit_code", "reasons")} == {
        "status": "OK", "exit_code": 0, "reasons": []}
    lounge = doc["players"][0]
    assert lounge["name"] == "lounge" and lounge["enabled"] is True
    assert lounge["last_result"] == "synced" and lounge["queue"] == {}
    assert doc["runs"]["recent"][0]["status"] == "synced"
    assert doc["runs"]["recent"][0]["synced"] == 4


def test_metrics_over_several_runs(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    db.add_movie("Heat", 1995)
    cli.behave("lounge", "fail", "offline")
    assert cli("run").returncode == 1
    result = status(cli, "--json")
    assert result.returncode == 1  # the last run partly failed
    doc = json.loads(result.stdout)
    assert (doc["total_syncs"], doc["successful_syncs"], doc["failed_syncs"]) == (2, 1, 1)
    assert doc["by_player"]["lounge"]["success_rate"] == 0.5
    assert doc["by_player"]["lounge"]["last_error"] == "recorder told to fail: offline"
    assert doc["by_player"]["bedroom"]["success_rate"] == 1.0
    assert doc["queue"] == {"pending": 1}
    assert doc["players"][0]["queue"] == {"pending": 1}
    assert doc["health"]["summary"] == "WARNING: the last run (#2) failed for some players"
    assert [r["id"] for r in doc["runs"]["recent"]] == [2, 1]


def test_warning_for_work_waiting_longer_than_warn_age(setup):
    cli, db = setup
    matrix = db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    assert cli("queue", "add", "--movie", str(matrix), "--player", "bedroom").returncode == 0
    assert status(cli).returncode == 0  # queued just now: fine with the default 1h
    late = status(cli, "--warn-age", "0s")
    assert late.returncode == 1
    assert late.stdout.splitlines()[0] == ("WARNING: 1 item(s) for bedroom waiting longer "
                                           "than 0s")


def test_warning_when_deferred_or_failed(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    cli.behave("bedroom", "playing")
    assert cli("run").returncode == 0
    deferred = status(cli)
    assert deferred.returncode == 1
    assert deferred.stdout.splitlines()[0] == ("WARNING: 1 item(s) deferred on bedroom: "
                                               "someone was watching")
    cli.heal("bedroom", "playing")
    db.add_movie("Heat", 1995)
    cli.behave("bedroom", "reject", "Heat")
    assert cli("run").returncode == 1
    cli.heal("bedroom", "reject")
    assert cli("run").returncode == 0  # the last run is fine, but Heat needs a person
    failed = status(cli)
    assert failed.returncode == 1
    assert failed.stdout.splitlines()[0] == (
        "WARNING: 1 item(s) failed on bedroom and need a person (`metarr-sync queue list "
        "--status failed`)")


def test_critical_when_a_player_is_disabled_by_an_auth_failure(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    cli.behave("lounge", "fail", "auth_failed")
    assert cli("run").returncode == 1
    result = status(cli)
    assert result.returncode == 2
    assert result.stdout.splitlines()[0] == (
        "CRITICAL: lounge is disabled after an authentication failure: fix its credentials, "
        "then run `metarr-sync players test lounge` (and 1 more problem)")
    assert "disabled: auth failed" in result.stdout
    # Disabled in the config as well: nobody expects it to sync, so no longer critical.
    assert cli("players", "disable", "lounge").returncode == 0
    assert status(cli).returncode == 1  # still the partial last run


def test_critical_when_the_last_run_failed_for_everyone(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    cli.behave("lounge", "fail", "timeout")
    cli.behave("bedroom", "fail", "offline")
    assert cli("run").returncode == 1
    result = status(cli, "--json")
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["health"]["summary"] == "CRITICAL: the last run (#1) failed for every player"
    assert doc["failed_syncs"] == 1 and doc["successful_syncs"] == 0
    assert doc["by_player"]["bedroom"]["last_error"] == "recorder told to fail: offline"
    assert doc["by_player"]["bedroom"]["success_rate"] == 0.0


def test_unknown_on_bad_input_and_unreadable_state(setup):
    cli, db = setup
    bad_option = status(cli, "--no-such-option")
    assert bad_option.returncode == 3
    bad_age = status(cli, "--warn-age", "soon")
    assert bad_age.returncode == 3
    assert bad_age.stdout.strip() == ("UNKNOWN: --warn-age 'soon' is not a duration like "
                                      "90s, 30m, 1h or 2d")
    cli.state_dir.mkdir()
    (cli.state_dir / "state.sqlite").write_bytes(b"this is not a database" * 100)
    unreadable = status(cli, "--json")
    assert unreadable.returncode == 3
    doc = json.loads(unreadable.stdout)
    assert doc["health"]["status"] == "UNKNOWN"
    assert "state database" in doc["health"]["summary"]
    cli.write_config("[players.x]\ntype = 'kodi'\n")
    broken = status(cli)
    assert broken.returncode == 3
    assert broken.stdout.splitlines()[0] == (
        f"UNKNOWN: configuration error: {cli.config}: players.x.url: missing")


def test_status_changes_nothing(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    cli.behave("lounge", "fail", "auth_failed")
    assert cli("run").returncode == 1
    before = snapshot(cli.config, cli.state_dir)
    cli.reset_log("lounge")
    cli.reset_log("bedroom")
    assert status(cli).returncode == 2
    assert status(cli, "--json").returncode == 2
    assert snapshot(cli.config, cli.state_dir) == before
    assert cli.calls("lounge") == [] and cli.calls("bedroom") == []


def test_status_loads_no_http_stack_no_adapter_and_no_secret(setup):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    probe = (
        "import json, sys\n"
        "from metarr_sync.cli import app\n"
        "code = app(['status', '--json'], standalone_mode=False)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('requests', 'urllib3', 'http', 'support') or m.startswith('metarr_sync.players.')"
        " and m != 'metarr_sync.players.base')\n"
        "sys.stderr.write(json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in cli.env.items() if k != "NEVER_SET_LOUNGE_PASSWORD"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=60)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}
    assert json.loads(done.stdout)["health"]["status"] == "OK"
