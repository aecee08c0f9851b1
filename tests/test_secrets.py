"""Passwords, API keys and tokens never leave the config: not in stdout, stderr, -vv logs,
--log-file, --json, --dry-run output, the state database, error messages or URLs. Each
test searches everything captured for the secret values themselves.

The fault matrix (test_faults.py) runs the same search after every fault.
"""

from __future__ import annotations

import json
import sqlite3
import stat
from typing import Any

import pytest
from support.configs import config_with, env_secret, file_secret, player, recorder
from support.fake_players import FakeJellyfin, FakeKodi, FakePlex

KODI_PW = "kodi-Secret-31c8a0"
JF_TOKEN = "jf-Secret-77d2e9"
PLEX_TOKEN = "plex-Secret-4b6f13"
SECRETS = (KODI_PW, JF_TOKEN, PLEX_TOKEN)
PLUGINS = ("recorder=support.recorder_player:RecorderPlayer,"
           "leaky=support.leaky_player:LeakyPlayer")


def everything(cli, *results) -> list[str]:
    """All that a user, a log collector or a backup could see."""
    texts = [r.stdout for r in results] + [r.stderr for r in results]
    for log in cli.root.glob("*.log"):
        texts.append(log.read_text())
    db = cli.state_dir / "state.sqlite"
    if db.exists():
        conn = sqlite3.connect(db)
        texts.append("\n".join(conn.iterdump()))
        conn.close()
    return texts


def assert_no_secret(texts: list[str], secrets=SECRETS) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"{secret} leaked in: {text[:400]}"


def secret_value(how: str, name: str, value: str, cli) -> tuple[Any, dict[str, str]]:
    """The config value of a secret given inline, by environment variable or by file,
    and the environment it needs."""
    if how == "inline":
        return value, {}
    if how == "env":
        return env_secret(f"{name.upper()}_SECRET"), {f"{name.upper()}_SECRET": value}
    path = cli.root / f"{name}.secret"
    path.write_text(value + "\n")
    return file_secret(path), {}


@pytest.fixture
def players(cli, metarr):
    kodi = FakeKodi(username="kodi", password=KODI_PW, sources={"/mnt/movies/": "movies"})
    jelly = FakeJellyfin(token=JF_TOKEN)
    plex = FakePlex(token=PLEX_TOKEN)
    for fake in (kodi, jelly, plex):
        fake.start()
    metarr.add_movie("The Matrix", 1999)
    kodi.add_file("/mnt/movies/The Matrix (1999)/The Matrix (1999).mkv")
    for fake in (jelly, plex):
        fake.add_file("/media/movies/The Matrix (1999)/The Matrix (1999).mkv")
    yield kodi, jelly, plex
    for fake in (kodi, jelly, plex):
        fake.stop()


def write_config(cli, metarr, kodi, jelly, plex, how: str) -> dict[str, str]:
    env: dict[str, str] = {}
    values = {}
    for name, value in (("kodi", KODI_PW), ("jelly", JF_TOKEN), ("plex", PLEX_TOKEN)):
        values[name], extra = secret_value(how, name, value, cli)
        env.update(extra)
    cli.write_config(config_with(
        metarr=metarr.path,
        sync={"timeout": 2, "retry_attempts": 1, "initial_lookback": "all"},
        players=[kodi.player("kodi", [("/data/media", "/mnt")], password=values["kodi"]),
                 jelly.player("jelly", [("/data/media", "/media")], token=values["jelly"]),
                 plex.player("plex", [("/data/media", "/media")], token=values["plex"])]))
    return env


@pytest.mark.parametrize("how", ["inline", "env", "file"])
def test_verbose_logs_json_and_state_hold_no_secret(cli, metarr, players, how):
    kodi, jelly, plex = players
    env = write_config(cli, metarr, kodi, jelly, plex, how)
    log = cli.root / "run.log"
    result = cli("-vv", "--log-file", str(log), "run", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {p["status"] for p in json.loads(result.stdout)["players"]} == {"synced"}
    # The requests were logged (so redaction, not silence, keeps the secrets out) ...
    assert "POST /jsonrpc" in result.stderr and "GET /library/sections" in log.read_text()
    # ... and the players did get their credentials.
    assert plex.received("GET /library/sections")[0].header("X-Plex-Token") == PLEX_TOKEN
    assert f'Token="{JF_TOKEN}"' in jelly.received("GET /System/Info")[0].header(
        "Authorization")
    table = cli("-v", "run", env=env)
    dry = cli("run", "--dry-run", env=env)
    dry_json = cli("run", "--dry-run", "--json", env=env)
    assert_no_secret(everything(cli, result, table, dry, dry_json))


def test_tokens_travel_in_headers_never_in_urls(cli, metarr, players):
    kodi, jelly, plex = players
    env = write_config(cli, metarr, kodi, jelly, plex, "inline")
    assert cli("run", env=env).returncode == 0
    for fake in players:
        assert fake.count() > 0
        for request in fake.received():
            url = f"{request.path}?{request.query}"
            assert_no_secret([url])


def test_dry_run_commands_hold_no_secret(cli, metarr, players):
    kodi, jelly, plex = players
    env = write_config(cli, metarr, kodi, jelly, plex, "inline")
    dry = cli("run", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    commands = [c for p in json.loads(dry.stdout)["players"] for c in p["commands"]]
    assert any("VideoLibrary.Scan" in c for c in commands)
    assert any("/library/sections/" in c for c in commands)
    assert_no_secret(everything(cli, dry))
    # Nothing was changed on the players.
    assert kodi.count("VideoLibrary.Scan") == 0 and plex.count("/refresh") == 0


@pytest.mark.parametrize("mode", ["probe", "item", "crash"])
def test_a_player_echoing_its_token_in_errors_is_masked_everywhere(cli, metarr, mode):
    metarr.add_movie("The Matrix", 1999)
    secret = "Echoed-Secret-9d1c"
    cli.write_config(config_with(
        metarr=metarr.path, sync={"initial_lookback": "all"},
        players=[player("leaky", "echo", url="http://127.0.0.1:9", token=secret)]))
    env = {"METARR_SYNC_PLUGINS": PLUGINS, "LEAK_MODE": mode}
    result = cli("-vv", "--log-file", str(cli.root / "run.log"), "run", "--json", env=env)
    table = cli("run", env=env)
    assert result.returncode == 1, result.stderr
    row = json.loads(result.stdout)["players"][0]
    words = {"probe": "server said: token ••••", "item": "server echoed ••••",
             "crash": "internal error: adapter bug while sending Authorization: ••••"}[mode]
    texts = everything(cli, result, table)
    assert any(words in text for text in texts), (row, texts[1][:500])
    assert_no_secret(texts, [secret])


def test_config_is_written_0600_even_over_a_readable_file(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path))
    cli.config.chmod(0o644)
    added = cli("players", "add", "plex", "den", "--url", "http://127.0.0.1:32400",
                "--token", "-", "--json", input=PLEX_TOKEN + "\n")
    assert added.returncode == 0, added.stdout + added.stderr
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert PLEX_TOKEN in cli.config.read_text()  # it is stored, in the private file
    shown = cli("config", "show")
    listed = cli("players", "list")
    assert_no_secret([added.stdout, added.stderr, shown.stdout, shown.stderr,
                      listed.stdout, listed.stderr])


def test_a_readable_config_with_inline_secrets_warns_with_the_fix(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a", token=PLEX_TOKEN)]))
    for mode in (0o644, 0o640, 0o604):
        cli.config.chmod(mode)
        result = cli("run")
        assert result.returncode == 0, result.stderr
        warning = (f"metarr-sync: warning: {cli.config} holds passwords or tokens and is "
                   f"readable by others; fix with: chmod 600 {cli.config}")
        assert result.stderr.strip().splitlines() == [warning], (oct(mode), result.stderr)
        assert_no_secret([result.stdout, result.stderr])
    cli.config.chmod(0o600)
    assert cli("run").stderr == ""
    # Secrets kept elsewhere ({ env } / { file }) need no warning, whatever the mode.
    cli.write_config(config_with(metarr=metarr.path,
                                 players=[recorder("a", token=env_secret("A_TOKEN"))]))
    cli.config.chmod(0o644)
    quiet = cli("run", env={"A_TOKEN": PLEX_TOKEN})
    assert quiet.returncode == 0 and quiet.stderr == ""
