"""`metarr-sync status` through the installed command: the verdict line, the monitoring
exit codes, the design's SyncMetrics in --json, and that it stays away from the network.

Its plain forms (`metarr-sync [-c FILE] [--state-dir DIR] status [--json] [--warn-age AGE]`)
run without Typer (cli/__init__.py); every other command line goes through Typer. Every
check below runs both ways (`status ...` and `-v status ...`) and requires the same output
and exit code from each."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from support.configs import config_with, env_secret, kodi, recorder
from support.snapshots import snapshot

METRICS = ("total_syncs", "successful_syncs", "failed_syncs", "average_sync_time",
           "last_sync_timestamp", "items_per_second", "by_player")
EXTRAS = ("health", "players", "queue", "runs", "watcher")


@pytest.fixture
def setup(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, players=[
        recorder("lounge", username="kodi", password=env_secret("NEVER_SET_LOUNGE_PASSWORD")),
        recorder("bedroom", url="http://127.0.0.1:10")]))
    # `run` needs the password; status must not (it never resolves secrets).
    cli.env["NEVER_SET_LOUNGE_PASSWORD"] = "pw-for-runs"
    return cli, metarr


def status(cli, *args: str, env: dict | None = None):
    """`metarr-sync status ARGS` in its plain form and through Typer (`-v` is never a plain
    form): the same stdout, stderr and exit code from both; the plain form's result."""
    plain = cli("status", *args, env=env)
    typer = cli("-v", "status", *args, env=env)
    assert "Traceback" not in plain.stderr + typer.stderr
    assert (plain.returncode, same(plain.stdout), same(plain.stderr)) == (
        typer.returncode, same(typer.stdout), same(typer.stderr))
    return plain


def same(text: str) -> str:
    """`text` without what may change between two runs a moment apart: how long ago
    something happened ("4 s ago" may be "5 s ago" next time) and so the tables' widths."""
    text = re.sub(r"\d+ (s|min|h|d) ago", "ago", text)
    return re.sub(r"[ \u2500-\u257f]+", " ", text)


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


def test_captured_verdict_is_one_line_however_long(setup, tmp_path):
    # A monitoring system reads the first line: a long UNKNOWN reason is never wrapped.
    cli, _ = setup
    deep = tmp_path.joinpath(*(["a-rather-long-folder-name"] * 8), "state")
    plain = status(cli, env={**cli.env, "METARR_SYNC_STATE_DIR": str(deep), "COLUMNS": "80"})
    assert plain.returncode == 3
    assert plain.stdout == (f"UNKNOWN: no sync has run yet (no state in {deep}): run "
                            "`metarr-sync run`\n")
    assert len(plain.stdout) > 200


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
    cli.write_config(config_with(players=[kodi("x")]))  # no url
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
    """Through Typer (the app called in-process): no HTTP stack, no player adapter, and
    none of the pydantic machinery Typer 0.29 brought (pyproject.toml pins below it)."""
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    probe = (
        "import json, sys\n"
        "from metarr_sync.cli import app\n"
        "code = app(['status', '--json'], standalone_mode=False)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('requests', 'urllib3', 'http', 'support', 'pydantic', 'asyncio') or m in "
        "('typer._adapters', 'typer._coercion') or m.startswith('metarr_sync.players.')"
        " and m != 'metarr_sync.players.base')\n"
        "sys.stderr.write(json.dumps({'code': code, 'loaded': loaded}))\n"
    )
    env = {k: v for k, v in cli.env.items() if k != "NEVER_SET_LOUNGE_PASSWORD"}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=60)
    report = json.loads(done.stderr.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}
    assert json.loads(done.stdout)["health"]["status"] == "OK"


# The console entry point in a fresh interpreter: its exit code and every module it loaded.
ENTRY = (
    "import json, sys\n"
    "report, sys.argv = sys.argv[1], ['metarr-sync', *sys.argv[2:]]\n"
    "from metarr_sync import main\n"
    "code = 0\n"
    "try:\n"
    "    main()\n"
    "except SystemExit as exc:\n"
    "    code = exc.code\n"
    "with open(report, 'w') as out:\n"
    "    json.dump({'code': code, 'modules': sorted(sys.modules)}, out)\n"
)
NEVER_FOR_STATUS = ("requests", "urllib3", "http", "pydantic", "asyncio", "typer._adapters",
                    "typer._coercion", "metarr_sync.players.kodi", "metarr_sync.players.jellyfin",
                    "metarr_sync.players.plex", "metarr_sync.players.http")


def entry(cli, report, *args: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", ENTRY, str(report), *args],
                          capture_output=True, text=True, env=cli.env, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    found = json.loads(report.read_text())
    return found["code"], set(found["modules"])


def test_plain_forms_run_without_typer_and_every_other_form_through_it(setup, tmp_path):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    config, state, log = str(cli.config), str(cli.state_dir), str(tmp_path / "status.log")
    plain_forms = [
        ["status"],
        ["status", "--json"],
        ["-c", config, "status", "--warn-age", "2h"],
        [f"--config={config}", f"--state-dir={state}", "status", "--json", "--warn-age=30m"],
        ["--state-dir", state, "--config", config, "status", "--warn-age", "90s", "--json"],
    ]
    typer_forms = [
        ["-v", "status"],
        ["--log-file", log, "status", "--json"],
        ["status", "--json", "--json"],
        ["-c", config, "-c", config, "status"],
        [f"-c{config}", "status"],
        ["status", "--warn-age", "1h", "--warn-age", "2h"],
        ["--", "status"],
    ]
    for form in plain_forms + typer_forms:
        code, modules = entry(cli, tmp_path / "entry.json", *form)
        assert code == 0, form
        assert ("typer" in modules) == (form in typer_forms), form
        loaded = sorted(m for m in modules
                        if m in NEVER_FOR_STATUS or m.split(".")[0] in NEVER_FOR_STATUS)
        assert loaded == [], (form, loaded)
        if form in plain_forms and "--json" in form:
            assert "rich" not in modules, form  # nothing to draw: JSON only
        # The installed command: the same output with -v, i.e. through Typer.
        result, through_typer = cli(*form), cli("-v", *form)
        assert result.returncode == through_typer.returncode == 0, form
        assert same(result.stdout) == same(through_typer.stdout), form
        assert result.stderr == through_typer.stderr == "", form
        if "--json" in form:
            assert json.loads(result.stdout)["health"]["status"] == "OK", form
        else:
            assert result.stdout.startswith("OK: 2 player(s) in sync; last run #1 "), form


def test_options_win_over_the_environment_and_empty_variables_are_unset(setup, tmp_path):
    cli, db = setup
    db.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    elsewhere = {"METARR_SYNC_CONFIG": str(tmp_path / "nowhere.toml"),
                 "METARR_SYNC_STATE_DIR": str(tmp_path / "nowhere")}
    lost = status(cli, env=elsewhere)
    assert lost.returncode == 3
    assert lost.stdout.startswith(f"UNKNOWN: configuration error: {tmp_path / 'nowhere.toml'}:")
    for options in (["-c", str(cli.config), "--state-dir", str(cli.state_dir)],
                    [f"--config={cli.config}", f"--state-dir={cli.state_dir}"]):
        found, through_typer = (cli(*options, "status", env=elsewhere),
                                cli("-v", *options, "status", env=elsewhere))
        assert found.returncode == through_typer.returncode == 0
        assert found.stdout.startswith("OK: 2 player(s) in sync")
        assert same(found.stdout) == same(through_typer.stdout)
    # Set but empty: unset, as Click reads envvar= (the default location under HOME).
    default = status(cli, env={"METARR_SYNC_CONFIG": "", "METARR_SYNC_STATE_DIR": ""})
    assert default.returncode == 3
    assert re.match(r"UNKNOWN: configuration error: /\S+/metarr-sync/config\.toml: ",
                    default.stdout)
    # Used as given, as Typer's Path does: no ~ expansion.
    tilde = status(cli, env={"METARR_SYNC_CONFIG": "~/metarr.toml"})
    assert tilde.stdout.startswith("UNKNOWN: configuration error: ~/metarr.toml: ")


def test_bad_options_exit_3_with_typers_own_message(setup):
    cli, _ = setup
    for args, message in ((["--no-such-option"], "Error: No such option: --no-such-option"),
                          (["--warn-age"], "Error: Option '--warn-age' requires an argument."),
                          (["--json=yes"], "Error: Option '--json' does not take a value."),
                          (["extra"], "Error: Got unexpected extra argument(s) (extra)")):
        result = status(cli, *args)
        assert result.returncode == 3, args
        assert result.stdout == ""
        assert result.stderr.strip().splitlines()[-1] == message
    assert "Usage: metarr-sync status [OPTIONS]" in status(cli, "--no-such-option").stderr
    assert cli("-c").returncode == 2  # a bad global option: Typer's usage error, as before


def test_paths_are_printed_as_they_are(setup, tmp_path):
    """Neither the verdict line nor the message on stderr turns `:fire:` into an emoji."""
    cli, _ = setup
    odd = tmp_path / "a:fire:b [x]" / "config.toml"
    result = status(cli, env={"METARR_SYNC_CONFIG": str(odd)})
    assert result.returncode == 3
    assert result.stdout.startswith(f"UNKNOWN: configuration error: {odd}: ")
    assert result.stderr.startswith(f"metarr-sync: {odd}: ")


def test_stamps_are_read_only_in_the_form_the_state_writes_them():
    """parse_stamp (status reads every `last sync` with it) takes what now_stamp writes,
    with 1 to 6 digits of fraction, and refuses anything else; ago() then shows it as is."""
    from datetime import UTC, datetime

    from metarr_sync.stamps import ago, now_stamp, parse_stamp

    moment = datetime(2024, 3, 9, 21, 5, 7, 123000, tzinfo=UTC)
    assert now_stamp(moment) == "2024-03-09T21:05:07.123Z"
    assert parse_stamp(now_stamp(moment)) == moment
    assert parse_stamp("2024-03-09T21:05:07.123456Z") == moment.replace(microsecond=123456)
    assert parse_stamp("2024-03-09T21:05:07.1Z").microsecond == 100000
    for other in ("2024-03-09", "2024-3-9T21:05:07.123Z", "2024-03-09T21:05:07Z",
                  "2024-03-09T21:05:07.123+01:00", "2024-13-09T21:05:07.123Z", "soon"):
        with pytest.raises(ValueError):
            parse_stamp(other)
        assert ago(other) == other
    assert ago("2024-03-09T21:02:00.000Z", now=moment) == "3 min ago"
    assert ago("2024-03-09T21:05:07.123Z", now=moment) == "0 s ago"
