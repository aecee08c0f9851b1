"""Loading, validating and writing the TOML configuration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from metarr_sync.config import ConfigError, load_config, save_config

EXAMPLE = """
[metarr]
database = "/opt/metarr/data/metarr.sqlite"

[sync]
batch_size = 100
timeout = 30
retry_attempts = 3
skip_active = true
clean_deleted = true
send_notifications = false
targeted_updates = true

[groups.living-room]
sync_mode = "parallel"
continue_on_error = true
shared_library = false

[players.lounge]
type = "kodi"
url = "http://192.168.1.10:8080"
username = "kodi"
password = { env = "KODI_PASSWORD" }
group = "living-room"
priority = 10
enabled = true
mappings = [ { metarr = "/data/media/movies", player = "smb://nas/movies" } ]

[players.jelly]
type = "jellyfin"
url = "http://jellyfin:8096"
token = { file = "SECRET_FILE" }

[players.plex]
type = "plex"
url = "http://plex:32400/"
token = "plex-token-value"
"""


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_documented_example_loads(tmp_path, monkeypatch):
    secret = tmp_path / "jellyfin"
    secret.write_text("jelly-token\n")
    monkeypatch.setenv("KODI_PASSWORD", "kodi-pass")
    config = load_config(write(tmp_path, EXAMPLE.replace("SECRET_FILE", str(secret))))
    lounge = config.players["lounge"]
    assert lounge.password_value == "kodi-pass" and lounge.priority == 10
    assert lounge.mappings[0].player == "smb://nas/movies"
    assert config.players["jelly"].token_value == "jelly-token"
    assert config.players["plex"].url == "http://plex:32400"  # trailing slash dropped
    assert config.groups["living-room"].sync_mode == "parallel"
    assert config.sync.timeout == 30.0 and config.sync.lookback_seconds() == 86400
    assert config.warnings == []
    assert "kodi-pass" not in repr(config) and "plex-token-value" not in repr(config)


def test_every_problem_is_reported_with_file_and_key(tmp_path):
    path = write(tmp_path, """
[sync]
batch_sise = 10
timeout = -1
[players.a]
type = "kody"
url = "http://x"
[players.b]
type = "plex"
url = "not a url"
group = "nowhere"
mappings = [ { metarr = "relative/path", player = "/x" } ]
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert f"{path}: sync.batch_sise: unknown key (did you mean 'batch_size'?)" in problems
    assert f"{path}: sync.timeout: must be a positive number of seconds, not -1.0" in problems
    assert any("players.a.type: unknown player type 'kody' (did you mean 'kodi'?)" in p
               for p in problems)
    assert f"{path}: players.b.url: 'not a url' must start with http:// or https://" in problems
    assert f"{path}: players.b.group: no [groups.nowhere] table" in problems
    assert f"{path}: players.b.token: missing (plex needs an API token)" in problems
    assert any("mappings[0].metarr: must be an absolute path" in p for p in problems)


def test_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[sync]\nbatch_size = 1\ntimeout = "30\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].startswith(f"{path}: line 3, column")


def test_missing_secret_sources_are_config_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE_VAR", raising=False)
    path = write(tmp_path, """
[players.k]
type = "kodi"
url = "http://127.0.0.1:8080"
username = "kodi"
password = { env = "NOPE_VAR" }
[players.p]
type = "plex"
url = "http://127.0.0.1:32400"
token = { file = "/nonexistent/token" }
""")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}: players.k.password: environment variable NOPE_VAR is not set",
        f"{path}: players.p.token: secret file /nonexistent/token does not exist",
    ]
    # Commands that never contact players (status) load without resolving secrets.
    assert load_config(path, secrets=False).players["k"].password_value is None


def test_world_readable_file_with_inline_secret_warns(tmp_path):
    path = write(tmp_path, '[players.p]\ntype = "plex"\nurl = "http://h:1"\ntoken = "abc"\n',
                 mode=0o644)
    config = load_config(path)
    assert config.warnings == [
        f"{path} holds passwords or tokens and is readable by others; "
        f"fix with: chmod 600 {path}"]


def test_save_is_atomic_0600_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("KODI_PASSWORD", "kodi-pass")
    secret = tmp_path / "jellyfin"
    secret.write_text("tok")
    path = write(tmp_path, EXAMPLE.replace("SECRET_FILE", str(secret)), mode=0o644)
    config = load_config(path)
    config.players["lounge"].priority = 5
    save_config(config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = load_config(path)
    assert again.players["lounge"].priority == 5
    assert again.players["lounge"].password.env == "KODI_PASSWORD"
    assert "kodi-pass" not in path.read_text()  # env references stay references
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".config")] == []


def test_save_refuses_an_invalid_document_and_keeps_the_old_file(tmp_path):
    path = write(tmp_path, '[players.p]\ntype = "plex"\nurl = "http://h:1"\ntoken = "abc"\n')
    before = path.read_bytes()
    config = load_config(path)
    config.players["p"].url = "ftp://bad"
    with pytest.raises(ConfigError):
        save_config(config)
    assert path.read_bytes() == before


HAND_WRITTEN = """\
# metarr-sync, by hand
[metarr]
database = "/opt/metarr/data/metarr.sqlite"  # Metarr's own file

[sync]
timeout = 30  # the default, on purpose
batch_size = 20

# upstairs
[players.lounge]
type = "kodi"
url = "http://192.168.1.10:8080"
username = "kodi"
password = { env = "KODI_PASSWORD" }
mappings = [ { metarr = "/data/media", player = "smb://nas/media" } ]
"""


def edit(text: str, change) -> str:
    import tomllib

    from metarr_sync.config import edited_text, parse_config, to_document

    config = parse_config(tomllib.loads(text), Path("config.toml"))
    change(config)
    result = edited_text(text, to_document(config), Path("config.toml"))
    parse_config(tomllib.loads(result), Path("config.toml"))  # it loads again
    return result


def test_an_edit_changes_only_what_changed():
    from metarr_sync.config import Mapping

    def change(config):
        config.sync.batch_size = 100  # back to the default
        config.players["lounge"].mappings.append(Mapping("/data/tv", "smb://nas/tv"))

    result = edit(HAND_WRITTEN, change)
    assert result == HAND_WRITTEN.replace("batch_size = 20\n", "").replace(
        '[ { metarr = "/data/media", player = "smb://nas/media" } ]',
        '[\n    {metarr = "/data/media", player = "smb://nas/media"},\n'
        '    {metarr = "/data/tv", player = "smb://nas/tv"},\n]')


def test_a_new_key_goes_after_its_tables_last_key_not_after_the_next_tables_comment():
    def change(config):
        config.sync.max_removals = 5

    result = edit(HAND_WRITTEN, change)
    assert "batch_size = 20\nmax_removals = 5\n\n# upstairs\n[players.lounge]" in result


def test_a_removed_player_takes_its_table_and_an_unchanged_file_stays_byte_for_byte():
    assert edit(HAND_WRITTEN, lambda config: None) == HAND_WRITTEN
    result = edit(HAND_WRITTEN, lambda config: config.players.pop("lounge"))
    assert "[players.lounge]" not in result and "KODI_PASSWORD" not in result
    assert result.startswith(HAND_WRITTEN.split("# upstairs")[0].rstrip("\n"))


def test_kodis_scan_timeout_is_its_own_limit_ten_minutes_unless_set(tmp_path):
    path = write(tmp_path, """
[sync]
timeout = 20
[players.lounge]
type = "kodi"
url = "http://127.0.0.1:8080"
scan_timeout = 1800
[players.bedroom]
type = "kodi"
url = "http://127.0.0.1:8081"
""")
    config = load_config(path)
    assert config.players["lounge"].scan_timeout == 1800.0
    assert config.players["bedroom"].scan_timeout == 600.0
    assert config.sync.timeout == 20.0
    config.players["bedroom"].scan_timeout = 900.0
    save_config(config)
    text = path.read_text()
    # Only the changed key is written; the person's own spelling of the other stays.
    assert "scan_timeout = 1800\n" in text and "scan_timeout = 900.0\n" in text
    assert load_config(path).players["lounge"].scan_timeout == 1800.0
    assert load_config(path).players["bedroom"].scan_timeout == 900.0


def test_max_attempts_defaults_to_five_and_must_be_at_least_one(tmp_path):
    assert load_config(write(tmp_path, "")).sync.max_attempts == 5
    assert load_config(write(tmp_path, "[sync]\nmax_attempts = 1\n")).sync.max_attempts == 1
    path = write(tmp_path, "[sync]\nmax_attempts = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == [
        f"{path}: sync.max_attempts: must be at least 1 (runs in a row an item may fail "
        "before it waits for a person), not 0"]
