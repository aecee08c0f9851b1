"""`metarr-sync run` and `sync` end to end against Metarr on a real PostgreSQL.

The installed command, the recording adapter (tests/support/recorder_player.py) and a
Metarr database in the session's PostgreSQL server (tests/support/postgres.py): the tool
must behave exactly as it does on SQLite, and fail with exit 4 and a clear cause, never
showing the password, when the database cannot be read. The scenarios that behave the same
on both backends run on both from test_e2e_run.py (the `metarr_db` fixture of conftest.py);
what is particular to PostgreSQL (where its password and database come from, its
failures) is here.
"""

from __future__ import annotations

import json
import socket

import pytest
from support.configs import config_with, env_secret, file_secret, recorder
from support.metarr_pg_factory import PASSWORD_ENV, PgMetarrDB
from support.postgres import OWNER_PASSWORD, pg_database, postgres_server  # noqa: F401

pytestmark = pytest.mark.postgres

PLAYERS = (recorder("lounge", mappings=[("/data/media/movies", "smb://nas/movies"),
                                         ("/data/media/tv", "smb://nas/tv")]),
           recorder("bedroom", mappings=[("/data/media", "/mnt/media")]))
PASSWORD = env_secret(PASSWORD_ENV)


def config(database: str | None, password: object = PASSWORD, timeout: int = 10) -> str:
    """[metarr] with the database and password given (None: left out), two recorders."""
    table = {key: value for key, value in (("database", database), ("password", password))
             if value is not None}
    return config_with(metarr=table, sync={"timeout": timeout}, players=PLAYERS)


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


def keys(sent):
    return sorted(t["key"] for t in sent)


def no_secret(result, *secrets: str) -> None:
    for secret in (OWNER_PASSWORD, *secrets):
        assert secret not in result.stdout and secret not in result.stderr
    assert "Traceback" not in result.stderr


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
    cli.write_config(config(db.url, password=file_secret(secret)))
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
