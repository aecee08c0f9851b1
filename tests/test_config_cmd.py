"""`metarr-sync config path|show|init` through the installed command, and a newcomer's way
from nothing to a first sync: config init → players add → run."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from support.configs import config_with, env_secret, file_secret, jellyfin, kodi, plex
from support.metarr_factory import MetarrDB, ago

SYSTEM_PLACES = [Path("/opt/metarr/data/metarr.sqlite"), Path("/app/data/metarr.sqlite")]


def in_dir(cli, cwd: Path, *args: str, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """The installed command started in `cwd` (config init looks at ./data)."""
    return subprocess.run([cli.exe, *args], capture_output=True, text=True, cwd=cwd,
                          env={**cli.env, **(env or {})}, timeout=60)


@pytest.fixture
def empty_dir(tmp_path: Path) -> Path:
    here = tmp_path / "here"
    here.mkdir()
    return here


def test_init_without_a_metarr_database_says_what_to_set(cli, empty_dir):
    if any(p.exists() for p in SYSTEM_PLACES):
        pytest.skip(f"this machine has a Metarr database in {SYSTEM_PLACES}")
    result = in_dir(cli, empty_dir, "config", "init")
    assert result.returncode == 0, result.stderr
    assert f"Wrote a starter configuration to {cli.config}" in result.stdout
    assert "Metarr's database was not found" in result.stdout
    assert str(empty_dir / "data" / "metarr.sqlite") in result.stdout
    assert "Next: `metarr-sync players import`" in " ".join(result.stdout.split())
    text = cli.config.read_text()
    assert stat.S_IMODE(cli.config.stat().st_mode) == 0o600
    assert '# database = "/opt/metarr/data/metarr.sqlite"' in text
    assert "# No Metarr database was found" in text
    assert "# batch_size = 100" in text and "# initial_lookback = \"24h\"" in text

    # The starter file loads; every setting is at its default.
    shown = cli("config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["metarr"] == {"database": None, "database_source": "not set"}
    assert doc["sync"]["batch_size"] == 100 and doc["sync"]["initial_lookback"] == "24h"
    assert doc["players"] == {} and doc["secret_problems"] == []

    # The next step says exactly what to do, without a traceback.
    run = cli("run")
    assert run.returncode == 3
    assert "[metarr] database is not set: point it at Metarr's data/metarr.sqlite" in run.stderr
    assert "Traceback" not in run.stderr


def test_from_nothing_to_a_first_sync(cli, tmp_path, empty_dir):
    """A Metarr installed in ~/metarr: init finds its database, a player is added, the first
    run delivers the recent change."""
    home_db = Path(cli.env["HOME"]) / "metarr" / "data" / "metarr.sqlite"
    home_db.parent.mkdir(parents=True)
    db = MetarrDB(home_db)
    try:
        movie = db.add_movie("The Matrix", 1999, when=ago(hours=1))
        db.add_movie("Heat", 1995, when=ago(days=90))
    finally:
        db.close()

    init = in_dir(cli, empty_dir, "config", "init")
    assert init.returncode == 0, init.stderr
    assert f"Metarr's database: {home_db} (found)" in init.stdout
    assert f'database = "{home_db}"' in cli.config.read_text()
    assert "# Found by `metarr-sync config init`." in cli.config.read_text()

    nothing = cli("run")
    assert nothing.returncode == 0, nothing.stderr
    assert ("No players configured: add one with `metarr-sync players add TYPE NAME --url "
            "URL`, or import those set up in Metarr with `metarr-sync players import`."
            in " ".join(nothing.stdout.split()))

    # No players set up in Metarr: the import says what to do instead.
    imported = cli("players", "import")
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == (
        "Nothing imported: no media players are set up in Metarr. Add yours with "
        "`metarr-sync players add TYPE NAME --url URL`.")

    added = cli("players", "add", "recorder", "lounge", "--url", "http://127.0.0.1:9",
                "--map", "/data/media=/mnt/media")
    assert added.returncode == 0, added.stderr
    first = cli("run", "--json")
    assert first.returncode == 0, first.stderr
    assert [t["key"] for t in cli.sent("lounge")] == [f"movie:{movie}"]
    assert cli.sent("lounge")[0]["path"].startswith("/mnt/media/movies/The Matrix (1999)")
    assert json.loads(first.stdout)["players"][0]["synced"] == 1


def test_init_finds_data_metarr_sqlite_in_the_current_folder(cli, empty_dir):
    (empty_dir / "data").mkdir()
    MetarrDB(empty_dir / "data" / "metarr.sqlite").close()
    result = in_dir(cli, empty_dir, "config", "init", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["database"] == str(empty_dir / "data" / "metarr.sqlite")
    assert doc["database_found"] is True and doc["database_problem"] is None
    assert json.loads(cli("config", "show", "--json").stdout)["metarr"] == {
        "database": str(empty_dir / "data" / "metarr.sqlite"),
        "database_source": "[metarr] database"}


def test_init_warns_when_the_found_file_is_not_metarrs(cli, empty_dir):
    (empty_dir / "data").mkdir()
    (empty_dir / "data" / "metarr.sqlite").write_bytes(b"not a database at all")
    result = in_dir(cli, empty_dir, "config", "init")
    assert result.returncode == 0
    assert "warning:" in result.stderr and "is not an SQLite database" in result.stderr
    assert cli.config.exists()


def test_init_with_an_explicit_database_and_bad_ones(cli, metarr, empty_dir):
    missing = in_dir(cli, empty_dir, "config", "init", "--database", "/nowhere/metarr.sqlite")
    assert missing.returncode == 2
    assert "--database /nowhere/metarr.sqlite: no such file" in missing.stderr
    assert not cli.config.exists()

    given = in_dir(cli, empty_dir, "config", "init", "--database", str(metarr.path))
    assert given.returncode == 0, given.stderr
    assert f'database = "{metarr.path}"' in cli.config.read_text()


def test_init_never_overwrites(cli, empty_dir):
    cli.write_config("# mine\n[sync]\nbatch_size = 5\n")
    before = cli.config.read_bytes()
    result = in_dir(cli, empty_dir, "config", "init")
    assert result.returncode == 3
    assert f"{cli.config} exists already: nothing was written" in result.stderr
    assert cli.config.read_bytes() == before


def test_init_cannot_write_says_so(cli, tmp_path, empty_dir):
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    target = blocked / "config.toml"
    result = in_dir(cli, empty_dir, "--config", str(target), "config", "init")
    assert result.returncode == 3
    assert f"{target}: cannot be written" in result.stderr
    assert "Traceback" not in result.stderr


def secrets_config(token_file: object) -> str:
    """A secret of every kind: in the database URL, inline, from the environment and from
    `token_file`; with a group and a non-default batch size."""
    return config_with(
        metarr="postgresql://metarr:pg-Secret-123@db:5432/metarr",
        sync={"batch_size": 7}, groups={"lr": {"sync_mode": "sequential"}},
        players=[kodi("lounge", url="http://192.168.1.10:8080", username="kodi",
                      password="kodi-Secret-456", group="lr"),
                 jellyfin("jelly", url="http://jellyfin:8096", token=env_secret("JELLY_TOKEN"),
                          refresh_mode="full"),
                 plex("plex", url="http://plex:32400", token=file_secret(token_file),
                      mappings=[("/data/media", "/media")])])


def test_show_masks_every_secret_and_fills_in_defaults(cli, tmp_path):
    token_file = tmp_path / "plex-token"
    token_file.write_text("plex-Secret-789\n")
    cli.write_config(secrets_config(token_file))
    env = {"JELLY_TOKEN": "jelly-Secret-000"}
    shown = cli("config", "show", "--json", env=env)
    text = cli("config", "show", env=env)
    assert shown.returncode == 0 and text.returncode == 0, shown.stderr + text.stderr
    for out in (shown.stdout, shown.stderr, text.stdout, text.stderr):
        for secret in ("pg-Secret-123", "kodi-Secret-456", "jelly-Secret-000",
                       "plex-Secret-789"):
            assert secret not in out
    doc = json.loads(shown.stdout)
    assert doc["metarr"]["database"] == "postgresql://metarr@db:5432/metarr"
    assert doc["sync"]["batch_size"] == 7 and doc["sync"]["timeout"] == 30.0
    assert doc["groups"] == {"lr": {"sync_mode": "sequential", "continue_on_error": True,
                                    "shared_library": False}}
    lounge, jelly, plex = (doc["players"][n] for n in ("lounge", "jelly", "plex"))
    assert lounge["password"] == "••••" and lounge["username"] == "kodi"
    assert lounge["priority"] == 100 and lounge["verify"] is True
    assert "refresh_mode" not in lounge and "analyze" not in lounge  # not Kodi settings
    assert jelly["token"] == "env:JELLY_TOKEN" and jelly["refresh_mode"] == "full"
    assert plex["token"] == f"file:{token_file}" and plex["max_trash_items"] == 10
    assert plex["mappings"] == [{"metarr": "/data/media", "player": "/media"}]
    assert doc["secret_problems"] == []
    # The plain form is TOML a person can read (and that parses).
    import tomllib

    body = tomllib.loads(text.stdout)
    assert body["players"]["jelly"]["token"] == "env:JELLY_TOKEN"
    assert body["sync"]["batch_size"] == 7


def test_show_names_secrets_that_runs_could_not_read(cli, tmp_path):
    cli.write_config(secrets_config(tmp_path / "missing-token"))
    result = cli("config", "show", "--json")
    assert result.returncode == 0
    problems = json.loads(result.stdout)["secret_problems"]
    assert any("players.jelly.token: environment variable JELLY_TOKEN is not set" in p
               for p in problems)
    assert any("players.plex.token: secret file" in p and "does not exist" in p
               for p in problems)
    assert "warning:" in result.stderr and "JELLY_TOKEN is not set" in result.stderr


def test_show_and_path_on_a_broken_config(cli):
    cli.write_config("[sync]\nbatch_size = \"many\"\n")
    shown = cli("config", "show")
    assert shown.returncode == 3
    assert "sync.batch_size: must be an integer" in shown.stderr
    where = cli("config", "path", "--json")
    assert where.returncode == 0  # path must work exactly when something is wrong
    doc = json.loads(where.stdout)
    assert doc["config"]["exists"] is True
    assert "sync.batch_size" in doc["problem"]


def test_path_says_where_everything_lives_and_why(cli, tmp_path, metarr):
    cli.write_config(config_with(metarr=metarr.path))
    doc = json.loads(cli("config", "path", "--json").stdout)
    assert doc["config"] == {"path": str(cli.config), "source": "METARR_SYNC_CONFIG",
                             "exists": True}
    assert doc["state_dir"]["path"] == str(cli.state_dir)
    assert doc["state_dir"]["source"] == "METARR_SYNC_STATE_DIR"
    assert doc["state_database"] == {"path": str(cli.state_dir / "state.sqlite"),
                                     "exists": False}
    assert doc["lock"] == {"path": str(cli.state_dir / "run.lock")}
    assert doc["metarr_database"] == {"location": str(metarr.path),
                                      "source": "[metarr] database"}

    other = tmp_path / "other.toml"
    flagged = cli("--config", str(other), "--state-dir", str(tmp_path / "s2"), "config",
                  "path")
    assert flagged.returncode == 0
    lines = flagged.stdout.splitlines()
    assert lines[0].split()[:3] == ["config", "file", str(other)]
    assert "(--config; missing: create it with `metarr-sync config init`)" in lines[0]
    assert str(tmp_path / "s2") in lines[1] and "(--state-dir)" in lines[1]

    # Without any override: platformdirs' locations under $HOME.
    env = {k: v for k, v in cli.env.items() if not k.startswith("METARR_SYNC_")}
    plain = subprocess.run([cli.exe, "config", "path", "--json"], capture_output=True,
                           text=True, env=env, timeout=60)
    doc = json.loads(plain.stdout)
    assert doc["config"]["source"] == "default"
    assert doc["config"]["path"] == f"{env['HOME']}/.config/metarr-sync/config.toml"
    assert doc["state_dir"]["path"] == f"{env['HOME']}/.local/state/metarr-sync"


def test_version_is_the_package_version(cli):
    from metarr_sync import __version__

    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"metarr-sync {__version__}\n"
