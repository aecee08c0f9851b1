"""`metarr-sync run` and `sync` end to end against Metarr on a real PostgreSQL.

The installed command, the recording adapter (tests/support/recorder_player.py) and a
Metarr database in the session's PostgreSQL server (tests/support/postgres.py): the tool
must behave exactly as it does on SQLite, and fail with exit 4 and a clear cause, never
showing the password, when the database cannot be read.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from support.metarr_pg_factory import PgMetarrDB, ago
from support.postgres import OWNER_PASSWORD, pg_database, postgres_server  # noqa: F401

pytestmark = pytest.mark.postgres

PLAYERS = """
[players.lounge]
type = "recorder"
url = "http://127.0.0.1:9"
mappings = [ { metarr = "/data/media/movies", player = "smb://nas/movies" },
             { metarr = "/data/media/tv", player = "smb://nas/tv" } ]

[players.bedroom]
type = "recorder"
url = "http://127.0.0.1:9"
mappings = [ { metarr = "/data/media", player = "/mnt/media" } ]
"""

PASSWORD_ENV = "METARR_SYNC_TEST_PG_PASSWORD"


def config(database: str | None, password: str | None = f'{{ env = "{PASSWORD_ENV}" }}',
           timeout: int = 10) -> str:
    lines = ["[metarr]"]
    if database is not None:
        lines.append(f'database = "{database}"')
    if password is not None:
        lines.append(f"password = {password}")
    return "\n".join(lines) + f"\n\n[sync]\ntimeout = {timeout}\n" + PLAYERS


@pytest.fixture
def pg_metarr(postgres_server, pg_database):  # noqa: F811 - fixtures imported above
    db = PgMetarrDB(postgres_server, pg_database)
    yield db
    db.close()


@pytest.fixture
def setup(cli, pg_metarr, tmp_path):
    # Nothing of the developer's own libpq set-up may help or hurt: no PGPASSWORD, no
    # ~/.pgpass (HOME is the test's), no service files.
    for name in [k for k in cli.env if k.startswith("PG")]:
        del cli.env[name]
    cli.env["PGPASSFILE"] = str(tmp_path / "no-pgpass")
    cli.env[PASSWORD_ENV] = OWNER_PASSWORD
    cli.write_config(config(pg_metarr.url))
    return cli, pg_metarr


@pytest.fixture
def on_disk(setup, tmp_path):
    """`setup` with Metarr's library in real folders: a removal needs its media gone."""
    cli, db = setup
    media = tmp_path / "media"
    db.use_disk(media)
    # Every removal of these small libraries is a big share of them: only max_removals.
    cli.write_config(config(db.url).replace("/data/media", str(media)).replace(
        "[sync]\n", "[sync]\nmax_removal_percent = 100\n"))
    return cli, db


def keys(sent):
    return sorted(t["key"] for t in sent)


def no_secret(result, *secrets: str) -> None:
    for secret in (OWNER_PASSWORD, *secrets):
        assert secret not in result.stdout and secret not in result.stderr
    assert "Traceback" not in result.stderr


def test_first_run_sends_recent_changes_only_and_second_run_nothing(setup):
    cli, db = setup
    old = db.add_movie("Heat", 1995, when=ago(days=40))
    recent = db.add_movie("The Matrix", 1999, when=ago(hours=2))
    show = db.add_series("Severance", when=ago(hours=3))
    season = db.add_season(show, 1, when=ago(hours=3))
    episode = db.add_episode(show, season, 1, 1, when=ago(hours=3))

    first = cli("run", "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["status"] == "synced"
    expected = sorted([f"movie:{recent}", f"series:{show}", f"episode:{episode}"])
    for player in ("lounge", "bedroom"):
        assert keys(cli.sent(player)) == expected, player
        row = next(p for p in report["players"] if p["name"] == player)
        assert row["status"] == "synced" and row["synced"] == 3 and row["failed"] == 0
    assert f"movie:{old}" not in keys(cli.sent("lounge"))
    assert [t["path"] for t in cli.sent("lounge") if t["key"] == f"movie:{recent}"] == [
        "smb://nas/movies/The Matrix (1999)/The Matrix (1999).mkv"]

    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
        delivered = state.execute("SELECT count(*) FROM player_sync_status").fetchone()[0]
        stamps = dict(state.execute("SELECT item_key, stamp FROM items").fetchall())
    assert delivered == 6
    # The state holds canonical UTC stamps, from timestamptz, timestamp and text columns.
    assert all(len(s) == 24 and s.endswith("Z") and s[10] == "T" for s in stamps.values())

    for player in ("lounge", "bedroom"):
        cli.reset_log(player)
    second = cli("run", "--json")
    assert second.returncode == 0, second.stderr
    assert cli.calls("lounge") == [] and cli.calls("bedroom") == []
    assert json.loads(second.stdout)["items"] == 0


def test_republished_soft_deleted_restored_and_purged_movies(on_disk):
    cli, db = on_disk
    matrix = db.add_movie("The Matrix", 1999)
    heat = db.add_movie("Heat", 1995)
    assert cli("run").returncode == 0
    cli.reset_log("lounge")

    db.republish_movie(matrix)  # published_at (timestamptz) and a new asset row only
    heat_file = db.delete_media("movies", heat)  # Radarr deleted the file ...
    db.soft_delete("movies", heat)  # ... and Metarr's row: deleted_at 30 days ahead
    assert cli("run").returncode == 0
    sent = {t["key"]: t["removed"] for t in cli.sent("lounge")}
    assert sent == {f"movie:{matrix}": False, f"movie:{heat}": True}

    cli.reset_log("lounge")
    Path(heat_file).write_bytes(b"")  # the file is back ...
    db.restore("movies", heat)  # ... and the row: added again
    assert cli("run").returncode == 0
    assert [(t["key"], t["removed"]) for t in cli.sent("lounge")] == [(f"movie:{heat}", False)]

    cli.reset_log("lounge")
    db.delete_media("movies", heat)
    db.soft_delete("movies", heat)
    assert cli("run").returncode == 0
    cli.reset_log("lounge")
    db.purge("movies", heat)  # garbage collected: already sent as removed
    assert cli("run").returncode == 0
    assert cli.sent("lounge") == []


def test_vanished_rows_count_as_removed(on_disk):
    cli, db = on_disk
    heat = db.add_movie("Heat", 1995)
    show = db.add_series("Severance")
    episode = db.add_episode(show, db.add_season(show, 1), 1, 1)
    # The libraries keep something: an empty library folder looks like an unmounted share.
    db.add_movie("Alien", 1979)
    db.add_series("Dark")
    assert cli("run").returncode == 0
    cli.reset_log("bedroom")
    db.delete_media("movies", heat)
    db.delete_media("series", show)
    db.purge("movies", heat)
    db.purge("series", show)  # takes its seasons and episodes with it
    assert cli("run").returncode == 0
    assert sorted((t["key"], t["removed"]) for t in cli.sent("bedroom")) == sorted([
        (f"movie:{heat}", True), (f"series:{show}", True), (f"episode:{episode}", True)])


def test_changed_episode_and_series_are_found_through_their_own_columns(setup):
    cli, db = setup
    show = db.add_series("Severance", when=ago(hours=3))
    season = db.add_season(show, 1, when=ago(hours=3))
    episode = db.add_episode(show, season, 1, 1, when=ago(hours=3))
    other = db.add_episode(show, season, 1, 2, when=ago(hours=3))
    assert cli("run").returncode == 0
    cli.reset_log("lounge")
    db.add_asset("image", "episode", episode, "S01E01-thumb.jpg", ago(minutes=1))
    db.touch("seasons", season)  # timestamptz column: the show is re-read
    assert cli("run").returncode == 0
    assert keys(cli.sent("lounge")) == sorted([f"series:{show}", f"episode:{episode}"])
    assert f"episode:{other}" not in keys(cli.sent("lounge"))


def test_sync_named_items_by_id_and_path(setup):
    cli, db = setup
    matrix = db.add_movie("The Matrix", 1999)
    db.add_movie("Heat", 1995)
    show = db.add_series("Severance")
    eps = [db.add_episode(show, db.add_season(show, 1), 1, 1)]
    assert cli("run").returncode == 0
    cli.reset_log("lounge")
    result = cli("sync", "--movie", str(matrix), "--player", "lounge", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["command"] == "sync"
    assert keys(cli.sent("lounge")) == [f"movie:{matrix}"]

    cli.reset_log("lounge")
    by_series = cli("sync", "--series", str(show), "--player", "lounge")
    assert by_series.returncode == 0, by_series.stderr
    assert keys(cli.sent("lounge")) == sorted([f"series:{show}", f"episode:{eps[0]}"])

    cli.reset_log("lounge")
    by_path = cli("sync", "/data/media/movies/The Matrix (1999)", "--player", "lounge")
    assert by_path.returncode == 0, by_path.stderr
    assert keys(cli.sent("lounge")) == [f"movie:{matrix}"]


def test_sync_unknown_id_names_the_database_without_its_password(setup):
    cli, db = setup
    url = db.server.url(db.dbname, password=OWNER_PASSWORD)
    cli.write_config(config(url, password=None))  # the password in the URL, as Metarr has it
    result = cli("sync", "--movie", "999")
    assert result.returncode == 2
    assert f"no movie with id 999 in Metarr's database {db.url}" in result.stderr
    no_secret(result)


# --- where the database and its password come from ------------------------------------

def test_password_from_a_file_secret(setup, tmp_path):
    cli, db = setup
    secret = tmp_path / "pg-password"
    secret.write_text(OWNER_PASSWORD + "\n")
    cli.write_config(config(db.url, password=f'{{ file = "{secret}" }}'))
    db.add_movie("Heat", 1995)
    result = cli("run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["items"] == 1


def test_password_from_libpq_pgpassfile(setup, tmp_path):
    cli, db = setup
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{db.server.port}:{db.dbname}:metarr:{OWNER_PASSWORD}\n")
    passfile.chmod(0o600)
    cli.write_config(config(db.url, password=None))
    db.add_movie("Heat", 1995)
    result = cli("run", env={"PGPASSFILE": str(passfile)})
    assert result.returncode == 0, result.stderr
    assert len(cli.sent("lounge")) == 1


@pytest.mark.parametrize("variables", [
    {"METARR_DATABASE_URL": "{url}"},
    {"DATABASE_URL": "{url}", "DB_TYPE": "postgres"},
    # METARR_DATABASE_URL wins over Metarr's own variables.
    {"METARR_DATABASE_URL": "{url}", "DATABASE_URL": "/nowhere.sqlite", "DB_TYPE": "postgres"},
])
def test_database_from_metarrs_environment(setup, variables):
    cli, db = setup
    cli.write_config(config(None, password=None))
    heat = db.add_movie("Heat", 1995)
    url = db.server.url(db.dbname, password=OWNER_PASSWORD)
    result = cli("run", "--json", env={k: v.format(url=url) for k, v in variables.items()})
    assert result.returncode == 0, result.stderr
    assert keys(cli.sent("lounge")) == [f"movie:{heat}"]
    no_secret(result)


def test_database_url_without_db_type_postgres_is_not_used(setup):
    cli, db = setup
    cli.write_config(config(None, password=None))
    result = cli("run", env={"DATABASE_URL": db.url})
    assert result.returncode == 3
    assert "[metarr] database is not set" in result.stderr
    assert "DATABASE_URL is only used together with DB_TYPE=postgres" in result.stderr


def test_metarr_database_url_may_name_an_sqlite_file(setup, tmp_path):
    cli, _ = setup
    from support.metarr_factory import MetarrDB

    sqlite_db = MetarrDB(tmp_path / "metarr.sqlite")
    sqlite_db.add_movie("Heat", 1995)
    sqlite_db.close()
    cli.write_config(config(None, password=None))
    result = cli("run", env={"METARR_DATABASE_URL": str(tmp_path / "metarr.sqlite")})
    assert result.returncode == 0, result.stderr
    assert len(cli.sent("lounge")) == 1


# --- exit 4 with the cause, never the password --------------------------------------------

def test_wrong_password_exits_4_without_showing_it(setup):
    cli, db = setup
    result = cli("run", "--json", env={PASSWORD_ENV: "Wrong-Secret-42"})
    assert result.returncode == 4
    assert result.stdout == ""
    assert "refused the credentials" in result.stderr
    assert f"Metarr database {db.url}" in result.stderr
    no_secret(result, "Wrong-Secret-42")
    assert cli.calls("lounge") == []

    url = db.server.url(db.dbname, password="Url-Secret-43")
    cli.write_config(config(url, password=None))
    in_url = cli("-v", "run")
    assert in_url.returncode == 4 and "refused the credentials" in in_url.stderr
    no_secret(in_url, "Url-Secret-43")


def test_unreachable_server_exits_4(setup):
    cli, _ = setup
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli.write_config(config(f"postgresql://metarr:Url-Secret-44@127.0.0.1:{port}/metarr"))
    result = cli("run")
    assert result.returncode == 4
    assert f"cannot reach the PostgreSQL server at 127.0.0.1:{port}" in result.stderr
    no_secret(result, "Url-Secret-44")


def test_missing_database_and_missing_table_exit_4(setup):
    cli, db = setup
    cli.write_config(config(db.server.url("no_such_metarr")))
    result = cli("run")
    assert result.returncode == 4
    assert "database no_such_metarr does not exist on the PostgreSQL server" in result.stderr
    no_secret(result)

    cli.write_config(config(db.url))
    db.conn.execute("DROP TABLE episodes")
    result = cli("run")
    assert result.returncode == 4
    assert "is not a Metarr database this version understands: table episodes is missing" \
        in result.stderr
    no_secret(result)


def test_missing_driver_names_the_extra_and_exits_4(setup, tmp_path):
    cli, db = setup
    # An installation without the extra: `import psycopg` fails as it would there.
    shim = tmp_path / "no-psycopg"
    shim.mkdir()
    (shim / "psycopg.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\")\n")
    result = cli("run", env={"PYTHONPATH": f"{shim}:{cli.env['PYTHONPATH']}"})
    assert result.returncode == 4
    assert "pip install 'metarr-sync[postgres]'" in result.stderr
    assert db.url in result.stderr
    no_secret(result)
