"""`metarr-sync players ...` through the installed command: what is written to the config,
what is shown (never a secret), what the state says, and that refused commands change
nothing (config bytes and state rows compared before and after)."""

from __future__ import annotations

import json
import sqlite3
import stat
import tomllib

import pytest
from support.configs import config_with, env_secret, recorder
from support.snapshots import snapshot, unwritable

SECRET = "hunter2-secret"
LOUNGE = recorder("lounge", username="kodi", password=SECRET,
                  mappings=[("/data/media/movies", "smb://nas/movies")])


def lounge_config(db: object) -> str:
    """One player, lounge, with an inline password and one mapping."""
    return config_with(metarr=str(db), players=[LOUNGE])


def lines(text: str) -> list[str]:
    return text.splitlines()


def doc(cli) -> dict:
    return tomllib.loads(cli.config.read_text())


@pytest.fixture
def base(cli, metarr):
    cli.write_config(lounge_config(metarr.path))
    return cli


def test_add_writes_a_valid_0600_config_and_list_masks_credentials(cli):
    assert not cli.config.exists()
    added = cli("players", "add", "recorder", "lounge", "--url", "http://127.0.0.1:9/",
                "--username", "kodi", "--password", SECRET,
                "--map", "/data/media/movies=smb://nas/movies",
                "--map", "/data/media/tv=smb://nas/tv", "--group", "living-room",
                "--priority", "5")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == (f"Added player lounge (recorder, http://127.0.0.1:9) to "
                                    f"{cli.config}, in new group living-room.")
    assert "Check it with: metarr-sync players test lounge" in added.stderr
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert doc(cli) == {
        "groups": {"living-room": {"sync_mode": "parallel", "continue_on_error": True,
                                   "shared_library": False}},
        "players": {"lounge": {
            "type": "recorder", "url": "http://127.0.0.1:9", "username": "kodi",
            "password": SECRET, "priority": 5, "group": "living-room",
            "mappings": [{"metarr": "/data/media/movies", "player": "smb://nas/movies"},
                         {"metarr": "/data/media/tv", "player": "smb://nas/tv"}]}},
    }
    jelly = cli("players", "add", "recorder", "jelly", "--url", "http://127.0.0.1:10",
                "--token-env", "JELLY_TOKEN", "--json")
    assert jelly.returncode == 0, jelly.stderr
    assert json.loads(jelly.stdout) == {
        "config": str(cli.config), "created_group": None,
        "added": {"name": "jelly", "type": "recorder", "url": "http://127.0.0.1:10",
                  "group": None, "priority": 100, "enabled": True, "mappings": [],
                  "credentials": {"username": None, "password": None,
                                  "token": "env:JELLY_TOKEN"}}}
    assert cli("players", "add", "recorder", "bed", "--url", "http://127.0.0.1:11",
               "--token-file", "/run/credentials/bed", "--disabled").returncode == 0
    assert doc(cli)["players"]["jelly"]["token"] == {"env": "JELLY_TOKEN"}
    assert doc(cli)["players"]["bed"] == {"type": "recorder", "url": "http://127.0.0.1:11",
                                          "token": {"file": "/run/credentials/bed"},
                                          "enabled": False}

    listed = cli("players", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    players = json.loads(listed.stdout)["players"]
    assert [p["name"] for p in players] == ["lounge", "jelly", "bed"]
    assert players[0] == {
        "name": "lounge", "type": "recorder", "url": "http://127.0.0.1:9",
        "group": "living-room", "priority": 5, "enabled": True, "mappings": 2,
        "credentials": {"username": "kodi", "password": "••••", "token": None},
        "disabled_reason": None, "disabled_at": None, "last_result": None}
    assert players[1]["credentials"]["token"] == "env:JELLY_TOKEN"
    assert players[2]["credentials"]["token"] == "file:/run/credentials/bed"
    assert players[2]["enabled"] is False
    table = cli("players", "list")
    assert table.returncode == 0
    for text in (listed.stdout, listed.stderr, table.stdout, table.stderr):
        assert SECRET not in text
    assert "user kodi, password ••••" in table.stdout
    assert "token env:JELLY_TOKEN" in table.stdout
    assert "never synced" in table.stdout
    assert "\x1b[" not in table.stdout


def test_list_shows_the_last_result_from_the_state(base, metarr):
    metarr.add_movie("The Matrix", 1999)
    base.behave("lounge", "fail", "offline")
    assert base("run").returncode == 1
    listed = json.loads(base("players", "list", "--json").stdout)["players"][0]
    assert listed["last_result"]["status"] == "failed"
    assert listed["last_result"]["error"] == "recorder told to fail: offline"
    assert listed["last_result"]["items"] == 1 and listed["last_result"]["failed"] == 1
    table = base("players", "list").stdout
    assert "failed" in table and "recorder told to fail: offline" in table


def test_password_from_stdin_stays_out_of_the_command_line(cli):
    result = cli("players", "add", "recorder", "lounge", "--url", "http://127.0.0.1:9",
                 "--username", "kodi", "--password", "-", input="s3cret-from-stdin\n")
    assert result.returncode == 0, result.stderr
    assert doc(cli)["players"]["lounge"]["password"] == "s3cret-from-stdin"
    assert "s3cret-from-stdin" not in result.stdout + result.stderr


REFUSED = [
    (["players", "add", "recorder", "lounge", "--url", "http://127.0.0.1:9"],
     "metarr-sync: a player named 'lounge' is configured already in {config}; remove it "
     "first or choose another name"),
    (["players", "add", "recorder", "x", "--url", "ftp://nas"],
     "metarr-sync: --url 'ftp://nas' must start with http:// or https://"),
    (["players", "add", "recorder", "x", "--url", "http://kodi:pw-in-url@nas:8080"],
     "metarr-sync: --url 'http://kodi:••••@nas:8080' must not contain credentials: use "
     "username/password/token keys"),
    (["players", "add", "recorder", "x", "--url", "http://nas:99999"],
     "metarr-sync: --url 'http://nas:99999' not a valid URL (Port out of range 0-65535)"),
    (["players", "add", "kodii", "x", "--url", "http://nas"],
     "metarr-sync: unknown player type 'kodii'; expected one of kodi, jellyfin, emby, plex, "
     "recorder"),
    (["players", "add", "recorder", "x", "--url", "http://nas", "--map", "/data/movies"],
     "metarr-sync: --map '/data/movies': expected METARR_PATH=PLAYER_PATH, e.g. --map "
     "/data/media/movies=smb://nas/movies"),
    (["players", "add", "recorder", "x", "--url", "http://nas", "--map", "data=smb://nas/m"],
     "metarr-sync: --map 'data=smb://nas/m': the Metarr side 'data' is not an absolute path "
     "(e.g. --map /data/media/movies=smb://nas/movies)"),
    (["players", "add", "recorder", "x", "--url", "http://nas", "--map", "/data=movies"],
     "metarr-sync: --map '/data=movies': the player side 'movies' is not an absolute path "
     "(/..., D:\\... or smb://...)"),
    (["players", "add", "recorder", "x", "--url", "http://nas", "--password", "a",
      "--password-env", "PW"],
     "metarr-sync: give only one of --password, --password-env"),
    (["players", "add", "recorder", "bad name", "--url", "http://nas"],
     "metarr-sync: players add bad name: players.bad name: player names use letters, "
     "digits, '-', '_' and '.' only"),
    (["players", "add", "jellyfin", "jf", "--url", "http://nas:8096"],
     "metarr-sync: players add jf: players.jf.token: missing (jellyfin needs an API token)"),
    (["players", "remove", "nobody"], "metarr-sync: unknown player 'nobody' (players: lounge)"),
    (["players", "enable", "nobody"], "metarr-sync: unknown player 'nobody' (players: lounge)"),
    (["players", "disable", "lounge", "nobody"],
     "metarr-sync: unknown player 'nobody' (players: lounge)"),
    (["players", "test", "nobody"], "metarr-sync: unknown player 'nobody' (players: lounge)"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED, ids=[" ".join(a[1:4]) for a, _ in
                                                             REFUSED])
def test_refused_commands_exit_2_with_a_clear_message_and_change_nothing(base, args,
                                                                         message):
    assert base("run").returncode == 0  # a state with rows to compare
    before = snapshot(base.config, base.state_dir)
    result = base(*args)
    assert result.returncode == 2, result.stderr
    assert message.format(config=base.config) in lines(result.stderr)
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert snapshot(base.config, base.state_dir) == before
    assert base.calls("lounge") == []  # no player contacted


def test_missing_url_is_a_usage_error(base):
    before = snapshot(base.config, base.state_dir)
    result = base("players", "add", "recorder", "x")
    assert result.returncode == 2
    assert "Missing option '--url'" in result.stderr
    assert snapshot(base.config, base.state_dir) == before


def test_config_not_writable_exits_3_and_leaves_the_file(cli, metarr, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text(lounge_config(metarr.path))
    config.chmod(0o600)
    env = {"METARR_SYNC_CONFIG": str(config)}
    before = config.read_bytes()
    with unwritable(etc):
        for args in (("players", "add", "recorder", "bed", "--url", "http://127.0.0.1:9"),
                     ("players", "disable", "lounge"), ("players", "remove", "lounge")):
            result = cli(*args, env=env)
            assert result.returncode == 3, (args, result.stderr)
            assert result.stderr.startswith(f"metarr-sync: {config}: cannot be written: ")
            assert result.stderr.rstrip().endswith("; nothing was changed")
            assert config.read_bytes() == before
    assert sorted(p.name for p in etc.iterdir()) == ["config.toml"]  # no temporary left


def test_broken_config_exits_3_and_is_not_rewritten(cli):
    cli.write_config("[players.x]\ntype = 'kodi'\nurl = 'ftp://x'\n")
    before = cli.config.read_bytes()
    result = cli("players", "add", "recorder", "y", "--url", "http://127.0.0.1:9")
    assert result.returncode == 3
    assert f"metarr-sync: {cli.config}: players.x.url: 'ftp://x' must start with http:// or " \
           "https://" in lines(result.stderr)
    assert cli.config.read_bytes() == before


def test_a_hand_written_file_keeps_its_comments_and_layout(cli, metarr):
    # Literal TOML: the layout a person wrote by hand is what this test is about.
    original = ("# my players, set up by hand\n"
                + f'\n[metarr]\ndatabase = "{metarr.path}"\n'
                + '\n[players.lounge]\ntype = "recorder"\nurl = "http://127.0.0.1:9"\n'
                + 'username = "kodi"\npassword = "hunter2-secret"\n'
                + 'mappings = [ { metarr = "/data/media/movies", player = "smb://nas/movies" } ]\n'
                + "\n[sync]\ntimeout = 30  # the default, written on purpose\n"
                + "\n# the den, added by hand\n[players.den]\ntype = \"recorder\"\n"
                + "url = \"http://127.0.0.1:11\"  # old box\n")
    cli.write_config(original)
    result = cli("players", "add", "recorder", "bed", "--url", "http://127.0.0.1:10")
    assert result.returncode == 0, result.stderr
    lines_now = cli.config.read_text().splitlines()
    # Every line that was there is there, unchanged and in its order ...
    remaining = iter(lines_now)
    assert all(line in remaining for line in original.splitlines())
    # ... and the new player sits with the other players, in a table of its own.
    bed = lines_now.index("[players.bed]")
    assert lines_now[bed + 1:bed + 4] == ['type = "recorder"', 'url = "http://127.0.0.1:10"',
                                          ""]
    assert lines_now.index("[players.lounge]") < bed < lines_now.index("[sync]")
    assert not cli.config.with_name("config.toml.bak").exists()
    assert set(doc(cli)["players"]) == {"lounge", "den", "bed"}

    # Removing a player takes its table and nothing else.
    result = cli("players", "remove", "den")
    assert result.returncode == 0, result.stderr
    text = cli.config.read_text()
    assert "[players.den]" not in text and "old box" not in text
    assert "# my players, set up by hand" in text
    assert "timeout = 30  # the default, written on purpose" in text


def test_remove_takes_an_emptied_group_with_it(cli, metarr):
    cli.write_config(config_with(
        metarr=metarr.path, groups={"upstairs": {"sync_mode": "sequential"}},
        players=[LOUNGE, recorder("bed", url="http://127.0.0.1:10", group="upstairs")]))
    result = cli("players", "remove", "bed", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"config": str(cli.config), "removed": "bed",
                                         "removed_group": "upstairs"}
    assert "groups" not in doc(cli) and list(doc(cli)["players"]) == ["lounge"]
    plain = cli("players", "remove", "lounge")
    assert plain.stdout.strip() == f"Removed player lounge from {cli.config}."
    assert "players" not in doc(cli)


def test_disable_and_enable(base, metarr):
    metarr.add_movie("The Matrix", 1999)
    disabled = base("players", "disable", "lounge")
    assert disabled.returncode == 0, disabled.stderr
    assert disabled.stdout.strip() == "lounge: disabled"
    assert doc(base)["players"]["lounge"]["enabled"] is False
    run = json.loads(base("run", "--json").stdout)
    assert run["players"][0]["status"] == "disabled"
    assert base.calls("lounge") == []

    before = base.config.read_bytes()
    again = base("players", "disable", "lounge")
    assert again.stdout.strip() == "lounge: already disabled"
    assert base.config.read_bytes() == before  # nothing to change: not rewritten

    enabled = base("players", "enable", "lounge", "--json")
    assert json.loads(enabled.stdout) == {"config": str(base.config), "players": [
        {"name": "lounge", "enabled": True, "changed": True, "auth_disable_cleared": False}]}
    assert "enabled" not in doc(base)["players"]["lounge"]  # the default is not written
    assert base("run").returncode == 0
    assert [t["path"] for t in base.sent("lounge")] == [
        "smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv"]


def test_enable_clears_a_disable_after_an_authentication_failure(base, metarr):
    metarr.add_movie("The Matrix", 1999)
    base.behave("lounge", "fail", "auth_failed")
    assert base("run").returncode == 1
    with base.state() as state:
        reason = state.execute("SELECT disabled_reason FROM players WHERE name = 'lounge'"
                               ).fetchone()[0]
    assert reason == "authentication failed: recorder told to fail: auth_failed"
    listed = json.loads(base("players", "list", "--json").stdout)["players"][0]
    assert listed["disabled_reason"] == reason

    base.heal("lounge", "fail")
    before = base.config.read_bytes()
    result = base("players", "enable", "lounge")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ("lounge: already enabled; the disable after an "
                                     "authentication failure is cleared")
    assert base.config.read_bytes() == before
    with base.state() as state:
        assert state.execute("SELECT disabled_reason FROM players WHERE name = 'lounge'"
                             ).fetchone()[0] is None
    assert base("run").returncode == 0
    assert len(base.sent("lounge")) == 1


# --- players test --------------------------------------------------------------------

def two(bedroom_token: object = "bedroom-token-value") -> str:
    """lounge with two mappings, bedroom with a token and none (no [metarr] table)."""
    return config_with(players=[
        recorder("lounge", mappings=[("/data/media/movies", "smb://nas/movies"),
                                     ("/data/media/tv", "smb://nas/tv")]),
        recorder("bedroom", url="http://127.0.0.1:10", token=bedroom_token)])


def test_players_test_shows_each_discovery_step_and_mapping(cli):
    cli.write_config(two())
    cli.behave("lounge", "roots", "smb://nas/movies/\nsmb://nas/share/other\n")
    cli.behave("lounge", "steps", json.dumps([["reachable", True, "Kodi 21.1"],
                                              ["credentials valid", True, "user kodi"]]))
    cli.behave("bedroom", "fail", "offline")
    result = cli("players", "test", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    lounge, bedroom = report["players"]
    # An adapter without settings checks adds no step, and no warnings.
    plain = {"warning": False, "fix": None}
    assert lounge["steps"] == [
        {"name": "reachable", "ok": True, "detail": "Kodi 21.1", **plain},
        {"name": "credentials valid", "ok": True, "detail": "user kodi", **plain},
        {"name": "mapping /data/media/movies", "ok": True,
         "detail": "→ smb://nas/movies: a library root on the player", **plain},
        {"name": "mapping /data/media/tv", "ok": False,
         "detail": "→ smb://nas/tv: not a library root on the player, nor inside one; its "
                   "roots: smb://nas/movies/, smb://nas/share/other", **plain},
    ]
    assert report["warnings"] == 0 and lounge["warnings"] == 0
    assert lounge["ok"] is False and lounge["version"] == "1.0"
    assert lounge["roots"] == ["smb://nas/movies/", "smb://nas/share/other"]
    assert bedroom == {"name": "bedroom", "type": "recorder", "ok": False, "version": "",
                       "api_version": "", "roots": [], "reenabled": False, "warnings": 0,
                       "error": "recorder told to fail: offline", "error_kind": "offline",
                       "steps": [{"name": "reachable", "ok": False,
                                  "detail": "recorder told to fail: offline", **plain}]}
    # A probe only: nothing was sent to either player.
    assert [c["op"] for c in cli.calls("lounge")] == ["probe"]
    assert "bedroom-token-value" not in result.stdout + result.stderr

    cli.behave("lounge", "roots", "smb://nas/movies\nsmb://nas\n")
    cli.heal("bedroom", "fail")
    table = cli("players", "test")
    assert table.returncode == 0, table.stdout
    assert "holds the player's library root(s)" not in table.stdout
    assert "→ smb://nas/tv: inside the player's library root smb://nas" in table.stdout
    assert table.stdout.rstrip().endswith("2 of 2 player(s) passed.")
    only = cli("players", "test", "bedroom", "--json")
    assert [p["name"] for p in json.loads(only.stdout)["players"]] == ["bedroom"]
    assert json.loads(only.stdout)["players"][0]["steps"] == [
        {"name": "reachable", "ok": True, "detail": "version 1.0", **plain},
        {"name": "path mappings", "ok": True,
         "detail": "none: the player is sent Metarr's own paths", **plain}]


@pytest.mark.parametrize(("kind", "step"), [("auth_failed", "credentials valid"),
                                            ("rejected", "rights sufficient"),
                                            ("timeout", "reachable"),
                                            ("protocol_error", "API answers")])
def test_players_test_names_the_step_a_probe_failed_at(cli, kind, step):
    cli.write_config(two())
    cli.behave("lounge", "fail", kind)
    result = cli("players", "test", "lounge", "--json")
    assert result.returncode == 1
    row = json.loads(result.stdout)["players"][0]
    assert row["steps"] == [{"name": step, "ok": False,
                             "detail": f"recorder told to fail: {kind}", "warning": False,
                             "fix": None}]
    assert row["error_kind"] == kind


def test_players_test_reports_a_missing_secret_and_tests_the_others(cli):
    cli.write_config(two(bedroom_token=env_secret("BEDROOM_TOKEN")))
    result = cli("players", "test", "--json")
    assert result.returncode == 1
    lounge, bedroom = json.loads(result.stdout)["players"]
    assert bedroom["steps"] == [{
        "name": "credentials available", "ok": False,
        "detail": "players.bedroom.token: environment variable BEDROOM_TOKEN is not set",
        "warning": False, "fix": None}]
    assert cli.calls("bedroom") == []  # never contacted without its token
    assert lounge["steps"][0]["ok"] is True
    ok = cli("players", "test", "bedroom", env={"BEDROOM_TOKEN": "from-env"})
    assert ok.returncode == 0, ok.stdout


def test_players_test_success_clears_an_authentication_disable(base, metarr):
    metarr.add_movie("The Matrix", 1999)
    base.behave("lounge", "fail", "auth_failed")
    assert base("run").returncode == 1
    still = base("players", "test", "lounge")
    assert still.returncode == 1
    with base.state() as state:
        assert state.execute("SELECT disabled_reason FROM players").fetchone()[0]
    base.heal("lounge", "fail")
    base.behave("lounge", "roots", "smb://nas/movies\n")
    fixed = base("players", "test", "lounge", "--json")
    assert fixed.returncode == 0, fixed.stdout
    assert json.loads(fixed.stdout)["players"][0]["reenabled"] is True
    assert ("metarr-sync: lounge: the credentials work: re-enabled after the earlier "
            "authentication failure") in lines(fixed.stderr)
    with base.state() as state:
        assert state.execute("SELECT disabled_reason FROM players").fetchone()[0] is None
    assert base("run").returncode == 0 and len(base.sent("lounge")) == 1


# --- players import -------------------------------------------------------------------

def metarr_players(metarr) -> None:
    c = metarr.conn
    # skip_active: Metarr's "don't update while playing", off for the Jellyfin group only.
    c.execute("INSERT INTO media_player_groups (id, name, type, enabled, skip_active) VALUES "
              "(1, 'Home Kodis', 'kodi', 1, 1), (2, 'Jellyfin', 'jellyfin', 1, 0), "
              "(3, 'Plex', 'plex', 0, 1)")
    c.execute("INSERT INTO media_players (group_id, name, type, host, http_port, username, "
              "password, api_key, enabled) VALUES "
              "(1, 'Living Room', 'kodi', '192.168.1.10', 8080, 'kodi', 'kodi-pass-1', NULL, 1),"
              "(1, 'Bedroom', 'kodi', '192.168.1.11', NULL, 'kodi', 'kodi-pass-2', NULL, 1),"
              "(2, 'Jellyfin', 'jellyfin', 'jelly.lan', 8096, NULL, NULL, 'jelly-api-key', 1),"
              "(3, 'Plex Server', 'plex', 'plex.lan', 32400, NULL, NULL, 'plex-token-1', 1),"
              "(NULL, 'Nokey', 'jellyfin', 'other.lan', 8096, NULL, NULL, NULL, 1)")
    c.execute("INSERT INTO media_player_group_path_mappings (group_id, metarr_path, "
              "player_path) VALUES (1, '/data/media/movies', 'smb://nas/movies'), "
              "(1, '/data/media/tv', 'smb://nas/tv'), (2, '/data/media', '/media')")


SECRETS = ("kodi-pass-1", "kodi-pass-2", "jelly-api-key", "plex-token-1")


def test_import_dry_run_prints_masked_toml_and_writes_nothing(cli, metarr):
    metarr_players(metarr)
    cli.write_config(config_with(metarr=metarr.path))
    before = cli.config.read_bytes()
    result = cli("players", "import", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert cli.config.read_bytes() == before
    assert result.stdout.startswith("# passwords and tokens are masked here; the file gets "
                                    "the real values\n")
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    shown = tomllib.loads(result.stdout)
    assert shown["players"]["living-room"] == {
        "type": "kodi", "url": "http://192.168.1.10:8080", "username": "kodi",
        "password": "••••", "priority": 10, "group": "home-kodis", "skip_active": True,
        "mappings": [{"metarr": "/data/media/movies", "player": "smb://nas/movies"},
                     {"metarr": "/data/media/tv", "player": "smb://nas/tv"}]}
    assert shown["players"]["bedroom"]["url"] == "http://192.168.1.11:8080"
    assert shown["players"]["plex-server"] == {"type": "plex", "url": "http://plex.lan:32400",
                                               "token": "••••", "enabled": False,
                                               "skip_active": True}
    assert shown["groups"] == {"home-kodis": {"sync_mode": "parallel",
                                              "continue_on_error": True,
                                              "shared_library": True}}
    assert ("metarr-sync: skipped 'Nokey': Metarr has no API key for it (jellyfin needs one)"
            in lines(result.stderr))


def test_import_writes_the_config_and_skips_names_configured_already(cli, metarr):
    metarr_players(metarr)
    result = cli("players", "import", "--database", str(metarr.path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dry_run"] is False and report["database"] == str(metarr.path)
    assert [p["name"] for p in report["imported"]] == ["living-room", "bedroom", "jellyfin",
                                                       "plex-server"]
    assert report["imported"][2]["credentials"] == {"username": None, "password": None,
                                                    "token": "••••"}
    assert report["groups"] == [{"name": "home-kodis", "shared_library": True}]
    assert report["skipped"] == [{"name": "Nokey", "reason": "Metarr has no API key for it "
                                  "(jellyfin needs one)"}]
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    written = doc(cli)
    assert written["metarr"] == {"database": str(metarr.path)}
    assert written["players"]["living-room"]["password"] == "kodi-pass-1"
    assert written["players"]["jellyfin"] == {
        "type": "jellyfin", "url": "http://jelly.lan:8096", "token": "jelly-api-key",
        "skip_active": False, "mappings": [{"metarr": "/data/media", "player": "/media"}]}
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    # The written file is a working config: a run syncs through the shared library.
    assert cli("players", "list").returncode == 0

    before = cli.config.read_bytes()
    again = cli("players", "import")
    assert again.returncode == 0
    assert again.stdout.strip() == "Nothing new to import."
    assert ("metarr-sync: skipped 'Living Room': a player named 'living-room' is configured "
            "already; remove it first (`metarr-sync players remove living-room`) to import it "
            "again") in lines(again.stderr)
    assert cli.config.read_bytes() == before


def test_import_without_a_metarr_database(cli, tmp_path):
    result = cli("players", "import")
    assert result.returncode == 3
    assert lines(result.stderr) == [
        "metarr-sync: no Metarr database to import from: give --database PATH (Metarr's "
        f"data/metarr.sqlite) or set [metarr] database in {cli.config} (`metarr-sync config "
        "init` looks for it)"]
    assert not cli.config.exists()
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    result = cli("players", "import", "--database", str(other))
    assert result.returncode == 4
    assert "is not a Metarr database this version understands" in result.stderr
    assert not cli.config.exists()


def test_import_from_a_metarr_without_player_tables(cli, metarr):
    metarr.conn.execute("DROP TABLE media_player_group_path_mappings")
    result = cli("players", "import", "--database", str(metarr.path))
    assert result.returncode == 4
    assert lines(result.stderr) == [
        f"metarr-sync: Metarr database {metarr.path} has no table "
        "media_player_group_path_mappings: this Metarr version keeps no media players to "
        "import"]
    assert not cli.config.exists()


def test_player_urls_from_metarrs_host_and_port():
    from metarr_sync.importer import player_url, slug

    assert player_url("192.168.1.10", None, "kodi") == ("http://192.168.1.10:8080", None)
    assert player_url("fd00::5", 32400, "plex") == ("http://[fd00::5]:32400", None)
    assert player_url("https://jelly.example.org/", 443, "jellyfin") == (
        "https://jelly.example.org:443", None)
    assert player_url("https://jelly.example.org:8920", 8096, "jellyfin") == (
        "https://jelly.example.org:8920", None)
    assert player_url("nas", 99999, "kodi") == (
        "http://nas:99999", "its address 'http://nas:99999' not a valid URL (Port out of "
        "range 0-65535)")
    assert slug("Living Room (Kodi)") == "living-room-kodi"
    assert slug("ÄÖÜ") == "player"
