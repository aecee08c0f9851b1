"""The same change-detection cases against Metarr on SQLite and on a real PostgreSQL.

Every test taking `backend` runs twice: on a Metarr-shaped SQLite file and on a Metarr
database in a PostgreSQL server started for the session (tests/support/postgres.py), whose
timestamp columns are timestamptz, timestamp and text in both of Metarr's formats
(tests/support/metarr_pg_factory.py). Further down: what only PostgreSQL has (its types,
session settings, connecting, credentials, permissions).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from support.metarr_factory import MetarrDB
from support.postgres import (  # noqa: F401 - fixtures
    OWNER,
    OWNER_PASSWORD,
    pg_database,
    postgres_server,
)

from metarr_sync.metarr import (
    MetarrError,
    describe_url,
    open_postgres,
    open_source,
    open_sqlite,
)
from metarr_sync.stamps import now_stamp

T0 = datetime(2026, 11, 20, 10, 0, 0, tzinfo=UTC)


class Backend:
    """A Metarr database under construction plus a way to open it the way the tool does."""

    def __init__(self, name: str, db, opener):
        self.name = name
        self.db = db
        self._open = opener

    def open(self):
        return self._open()

    def items(self) -> dict:
        source = self.open()
        try:
            return {i.key: i for i in source.items()}
        finally:
            source.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request, tmp_path):
    if request.param == "sqlite":
        db = MetarrDB(tmp_path / "metarr.sqlite")
        yield Backend("sqlite", db, lambda: open_sqlite(db.path))
        db.close()
        return
    from support.metarr_pg_factory import PgMetarrDB

    server = request.getfixturevalue("postgres_server")
    name = server.create_database()
    db = PgMetarrDB(server, name)
    yield Backend("postgres", db, lambda: open_source(db.url, 10, db.password))
    db.close()
    server.drop_database(name)


# --- the same cases on both ---------------------------------------------------------------

def test_movie_stamp_is_the_newest_of_its_timestamps_in_either_format(backend):
    db = backend.db
    movie = db.add_movie("The Matrix", 1999, when=T0)
    db.add_asset("image", "movie", movie, "fanart.jpg", T0 + timedelta(seconds=1), iso=True)
    got = backend.items()[f"movie:{movie}"]
    assert got.stamp == "2026-11-20T10:00:01.000Z"
    assert got.path == "/data/media/movies/The Matrix (1999)/The Matrix (1999).mkv"
    assert got.title == "The Matrix" and got.library_id == db.movie_lib
    assert not got.removed


# Each way Metarr records a change, and which item's stamp it must move. On PostgreSQL
# these land in timestamptz, timestamp and text columns (see COLUMN_TYPES).
CHANGES = {
    "movie republished": lambda db, ids: db.republish_movie(ids["movie"], T0 + timedelta(hours=1)),
    "movie row updated": lambda db, ids: db.touch("movies", ids["movie"], T0 + timedelta(hours=1)),
    "movie nfo (text file)": lambda db, ids: db.add_asset(
        "text", "movie", ids["movie"], "movie.nfo", T0 + timedelta(hours=1)),
    "movie trailer (video file)": lambda db, ids: db.add_asset(
        "video", "movie", ids["movie"], "trailer.mkv", T0 + timedelta(hours=1)),
    "movie theme (audio file)": lambda db, ids: db.add_asset(
        "audio", "movie", ids["movie"], "theme.mp3", T0 + timedelta(hours=1)),
    "series row updated": lambda db, ids: db.touch("series", ids["series"],
                                                   T0 + timedelta(hours=1)),
    "series poster": lambda db, ids: db.add_asset(
        "image", "series", ids["series"], "poster.jpg", T0 + timedelta(hours=1)),
    "season row updated": lambda db, ids: db.touch("seasons", ids["season"],
                                                   T0 + timedelta(hours=1)),
    "season poster": lambda db, ids: db.add_asset(
        "image", "season", ids["season"], "season01-poster.jpg", T0 + timedelta(hours=1)),
    "episode row updated": lambda db, ids: db.touch("episodes", ids["episode"],
                                                    T0 + timedelta(hours=1)),
    "episode nfo (ISO text)": lambda db, ids: db.add_asset(
        "text", "episode", ids["episode"], "S01E01.nfo", T0 + timedelta(hours=1), iso=True),
    "episode thumb": lambda db, ids: db.add_asset(
        "image", "episode", ids["episode"], "S01E01-thumb.jpg", T0 + timedelta(hours=1)),
}
MOVES = {
    "movie republished": "movie", "movie row updated": "movie",
    "movie nfo (text file)": "movie", "movie trailer (video file)": "movie",
    "movie theme (audio file)": "movie", "series row updated": "series",
    "series poster": "series", "season row updated": "series", "season poster": "series",
    "episode row updated": "episode", "episode nfo (ISO text)": "episode",
    "episode thumb": "episode",
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_change_moves_exactly_its_items_stamp(backend, change):
    db = backend.db
    ids = {"movie": db.add_movie("Heat", 1995, when=T0)}
    ids["series"] = db.add_series("Severance", when=T0)
    ids["season"] = db.add_season(ids["series"], 1, when=T0)
    ids["episode"] = db.add_episode(ids["series"], ids["season"], 1, 1, when=T0)
    before = {k: i.stamp for k, i in backend.items().items()}
    assert set(before.values()) == {"2026-11-20T10:00:00.000Z"}, before

    CHANGES[change](db, ids)
    after = {k: i.stamp for k, i in backend.items().items()}
    moved = {k for k in after if after[k] != before[k]}
    expected = f"{MOVES[change]}:{ids[MOVES[change]]}"
    assert moved == {expected}
    assert after[expected] == "2026-11-20T11:00:00.000Z"


def test_reading_twice_gives_identical_items(backend):
    db = backend.db
    db.add_movie("Heat", 1995, when=T0)
    show = db.add_series("Severance", when=T0)
    db.add_episode(show, db.add_season(show, 1, when=T0), 1, 1, when=T0)
    first, second = backend.items(), backend.items()
    assert first == second and len(first) == 3
    assert [i.stamp for i in first.values()] == [i.stamp for i in second.values()]


def test_soft_delete_restore_and_purge(backend):
    db = backend.db
    heat = db.add_movie("Heat", 1995, when=T0)
    stamp = backend.items()[f"movie:{heat}"].stamp
    db.soft_delete("movies", heat)  # deleted_at 30 days in the future: removed anyway
    got = backend.items()[f"movie:{heat}"]
    assert got.removed and got.stamp == stamp
    db.restore("movies", heat)
    assert not backend.items()[f"movie:{heat}"].removed
    db.purge("movies", heat)
    assert f"movie:{heat}" not in backend.items()


def test_a_deleted_series_removes_its_episodes(backend):
    db = backend.db
    show = db.add_series("Severance", when=T0)
    season = db.add_season(show, 1, when=T0)
    eps = [db.add_episode(show, season, 1, n, when=T0) for n in (1, 2)]
    db.soft_delete("episodes", eps[1])
    got = backend.items()
    assert [got[f"episode:{e}"].removed for e in eps] == [False, True]
    db.soft_delete("series", show)
    got = backend.items()
    assert got[f"series:{show}"].removed
    assert all(got[f"episode:{e}"].removed for e in eps)


def test_an_unreadable_timestamp_is_ignored_not_fatal(backend):
    db = backend.db
    show = db.add_series("Severance", when=T0)
    db.conn.execute(f"UPDATE series SET updated_at = 'not a date' WHERE id = {int(show)}")
    # created_at still dates the show; the odd value neither breaks the read nor wins.
    assert backend.items()[f"series:{show}"].stamp == "2026-11-20T10:00:00.000Z"


def test_lookups_by_id_episodes_of_and_whole_path_components(backend):
    db = backend.db
    alien = db.add_movie("Alien", 1979)
    db.add_movie("Alien", 1979, folder="/data/media/movies/Alien (1979) Director's Cut")
    # Quotes, % and _ in names must be data, never SQL or LIKE wildcards.
    odd = db.add_movie("100% Wolf", 2020, folder="/data/media/movies/Ocean's 100%_%s (2020)")
    show = db.add_series("Severance")
    season = db.add_season(show, 1)
    eps = [db.add_episode(show, season, 1, n) for n in (1, 2)]
    source = backend.open()
    try:
        assert [i.id for i in source.items_by_id("movie", [alien])] == [alien]
        assert {i.id for i in source.items_by_id("episode", eps)} == set(eps)
        assert source.items_by_id("movie", [99999]) == []
        assert sorted(i.id for i in source.episodes_of([show])) == sorted(eps)
        assert [i.id for i in source.items_under("/data/media/movies/Alien (1979)")] == [alien]
        assert source.items_under("/data/media/movies/Alien (1979)_") == []
        assert source.items_under("/data/media/movies/Alien (1979%") == []
        assert [i.id for i in source.items_under("/data/media/movies/Ocean's 100%_%s (2020)/")
                ] == [odd]
        under = source.items_under("/data/media/tv/Severance")
        assert sorted(i.key for i in under) == sorted(
            [f"series:{show}"] + [f"episode:{e}" for e in eps])
        assert [(lib.name, lib.path, lib.type) for lib in source.libraries()] == [
            ("Movies", "/data/media/movies", "movie"), ("TV Shows", "/data/media/tv", "tv")]
        assert source.library_by_name("TV Shows").id == db.tv_lib
        assert source.library_by_name("Music") is None
    finally:
        source.close()


def test_the_tool_cannot_write_metarrs_database(backend):
    heat = backend.db.add_movie("Heat", 1995)
    source = backend.open()
    try:
        with pytest.raises(MetarrError, match=r"read-?only"):
            list(source.query("UPDATE movies SET title = ? WHERE id = ?", ("Hacked", heat)))
    finally:
        source.close()
    assert backend.items()[f"movie:{heat}"].title == "Heat"


def test_metarrs_player_setup_reads_the_same(backend):
    # `players import` reads these; PostgreSQL hands back real booleans, SQLite 0/1.
    db = backend.db
    truth = (lambda v: v) if backend.name == "postgres" else int
    group = db._insert("media_player_groups", name="Living room", type="kodi", max_members=3,
                       enabled=truth(True), skip_active=truth(False))
    db._insert("media_players", group_id=group, name="Lounge Kodi", type="kodi",
               host="192.168.1.20", http_port=8080, username="kodi", password="kodi-pw",
               enabled=truth(False))
    db._insert("media_player_group_path_mappings", group_id=group,
               metarr_path="/data/media", player_path="smb://nas/media")
    source = backend.open()
    try:
        setup = source.player_setup()
    finally:
        source.close()
    assert [(g.name, g.type, g.enabled, g.skip_active) for g in setup.groups] == [
        ("Living room", "kodi", True, False)]
    assert [(p.name, p.host, p.http_port, p.username, p.password, p.enabled)
            for p in setup.players] == [
        ("Lounge Kodi", "192.168.1.20", 8080, "kodi", "kodi-pw", False)]
    assert setup.mappings == [(group, "/data/media", "smb://nas/media")]


def test_missing_table_and_missing_column_are_named(backend):
    db = backend.db
    db.conn.execute("DROP TABLE library_audio_files")
    db.conn.execute("ALTER TABLE movies DROP COLUMN published_at")
    with pytest.raises(MetarrError) as caught:
        backend.open()
    message = str(caught.value)
    assert "table library_audio_files is missing" in message
    assert "table movies lacks column(s) published_at" in message


# --- PostgreSQL only ------------------------------------------------------------------

pg = pytest.mark.postgres


@pytest.fixture
def pg_db(postgres_server, pg_database):  # noqa: F811 - fixtures imported above
    from support.metarr_pg_factory import PgMetarrDB

    db = PgMetarrDB(postgres_server, pg_database)
    yield db
    db.close()


def stamps_of(source, *exprs: str) -> list[str | None]:
    """The dialect's stamp for SQL literals, through the tool's own query path."""
    sql = "SELECT " + ", ".join("{ts(" + e + ")}" for e in exprs)
    return list(next(iter(source.query(sql))))


@pg
def test_every_postgres_type_and_both_metarr_formats_give_the_canonical_stamp(pg_db):
    source = open_postgres(pg_db.url, 10, pg_db.password)
    try:
        got = stamps_of(
            source,
            "'2026-11-25 16:20:35.123+00'::timestamptz",
            "'2026-11-26 05:20:35.123+13'::timestamptz",  # same instant, other zone
            "'2026-11-25 16:20:35.123'::timestamp",  # naive: UTC, as Metarr writes
            "'2026-11-25T16:20:35.123Z'::text",  # JavaScript's toISOString()
            "'2026-11-25T16:20:35.123Z'::varchar",
            "'2026-11-25 16:20:35'::text",  # SQLite's CURRENT_TIMESTAMP
            "'2026-11-25T18:20:35.123+02:00'::text",
            "'2026-11-25 16:20:35.123999'::timestamp",  # sub-millisecond is cut, not rounded
        )
    finally:
        source.close()
    assert got == ["2026-11-25T16:20:35.123Z"] * 5 + ["2026-11-25T16:20:35.000Z"] + \
        ["2026-11-25T16:20:35.123Z"] * 2
    # ... which is exactly the text state.py stamps and compares with.
    assert got[0] == now_stamp(datetime(2026, 11, 25, 16, 20, 35, 123999, tzinfo=UTC))


@pg
def test_unparseable_values_become_null_instead_of_failing_the_read(pg_db):
    source = open_postgres(pg_db.url, 10, pg_db.password)
    try:
        assert stamps_of(source, "'not a date'::text", "''::text", "'2026-13-45 10:00:00'::text",
                         "'infinity'::timestamptz", "NULL::timestamp") == [None] * 5
    finally:
        source.close()


@pg
def test_stamps_do_not_depend_on_the_servers_or_the_clients_time_zone(pg_db):
    # The test server's own defaults are TimeZone=Pacific/Auckland, DateStyle=SQL, DMY; this
    # client also asks for Tokyo time. Naive text must still be read as UTC.
    movie = pg_db.add_movie("Heat", 1995, when=T0)
    url = pg_db.url + "?options=-c%20TimeZone%3DAsia%2FTokyo%20-c%20DateStyle%3DGerman"
    source = open_postgres(url, 10, pg_db.password)
    try:
        stamp = source.items_by_id("movie", [movie])[0].stamp
        settings = [r[0] for r in source.query(
            "SELECT current_setting(name) FROM unnest(ARRAY['TimeZone', 'DateStyle', "
            "'default_transaction_read_only']) AS name")]
    finally:
        source.close()
    assert stamp == "2026-11-20T10:00:00.000Z"
    assert settings == ["UTC", "ISO, YMD", "on"]


@pg
def test_no_transaction_is_left_open_between_queries(pg_db):
    import psycopg

    pg_db.add_movie("Heat", 1995)
    source = open_postgres(pg_db.url, 10, pg_db.password)
    try:
        assert len(list(source.items())) == 1
        assert source.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert source.conn.read_only is True
        # The server sees an idle session of metarr-sync, not "idle in transaction".
        with pg_db.server.admin() as admin:
            state = admin.execute(
                "SELECT state FROM pg_stat_activity WHERE application_name = 'metarr-sync' "
                "AND datname = %s", (pg_db.dbname,)).fetchall()
        assert state == [("idle",)]
    finally:
        source.close()


@pg
def test_password_in_the_url_works_and_is_never_shown(pg_db):
    url = pg_db.server.url(pg_db.dbname, password=OWNER_PASSWORD)
    source = open_postgres(url)
    try:
        assert OWNER_PASSWORD not in source.description
        assert source.description == pg_db.url
    finally:
        source.close()


@pg
def test_pgpassfile_is_honoured(pg_db, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    passfile = tmp_path / "pgpass"
    server = pg_db.server
    passfile.write_text(f"{server.host}:{server.port}:{pg_db.dbname}:{OWNER}:{OWNER_PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    source = open_postgres(pg_db.url)  # no password in the URL nor from the config
    try:
        assert [lib.name for lib in source.libraries()] == ["Movies", "TV Shows"]
    finally:
        source.close()


@pg
@pytest.mark.parametrize("where", ["config", "url", "nowhere"])
def test_bad_credentials_are_named_without_the_password(pg_db, where, tmp_path, monkeypatch):
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-pgpass"))
    url, password = {
        "config": (pg_db.url, "wrong-Passw0rd"),
        "url": (pg_db.server.url(pg_db.dbname, password="url-secret-pw"), None),
        "nowhere": (pg_db.url, None),
    }[where]
    with pytest.raises(MetarrError) as caught:
        open_postgres(url, 5, password)
    message = str(caught.value)
    assert "refused the credentials" in message
    assert f"127.0.0.1:{pg_db.server.port}" in message
    assert message.startswith(f"Metarr database {pg_db.url}: ")
    for secret in ("wrong-Passw0rd", "url-secret-pw", OWNER_PASSWORD):
        assert secret not in message


@pg
def test_missing_database_is_named(postgres_server):  # noqa: F811
    with pytest.raises(MetarrError, match="database no_such_db does not exist on the "
                                          "PostgreSQL server at 127.0.0.1"):
        open_postgres(postgres_server.url("no_such_db"), 5, OWNER_PASSWORD)


@pg
def test_empty_database_reports_the_missing_tables(postgres_server, pg_database):  # noqa: F811
    with pytest.raises(MetarrError, match="is not a Metarr database .*table libraries is "
                                          "missing; table movies is missing"):
        open_postgres(postgres_server.url(pg_database), 5, OWNER_PASSWORD)


@pg
def test_a_user_without_select_is_told_so_and_select_is_enough(pg_db):
    with pg_db.server.admin() as admin:
        admin.execute("CREATE ROLE stranger LOGIN PASSWORD 'stranger-pw-1'")
    try:
        url = pg_db.server.url(pg_db.dbname, user="stranger")
        with pytest.raises(MetarrError, match="user stranger may not read table libraries; "
                                              "grant it SELECT"):
            open_postgres(url, 5, "stranger-pw-1")
        # SELECT is all a read-only role needs (README says so).
        with pg_db.server.admin(pg_db.dbname) as admin:
            admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO stranger")
        pg_db.add_movie("Heat", 1995)
        source = open_postgres(url, 5, "stranger-pw-1")
        try:
            assert [i.title for i in source.items()] == ["Heat"]
        finally:
            source.close()
    finally:
        with pg_db.server.admin(pg_db.dbname) as admin:
            admin.execute("DROP OWNED BY stranger")
            admin.execute("DROP ROLE stranger")


@pg
def test_unreachable_server_fails_fast_with_the_cause():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(MetarrError, match=f"cannot reach the PostgreSQL server at "
                                          f"127.0.0.1:{port}.*Connection refused"):
        open_postgres(f"postgresql://metarr:pw-in-url@127.0.0.1:{port}/metarr", 30, None)
    assert time.monotonic() - started < 5
    with pytest.raises(MetarrError) as caught:
        open_postgres(f"postgresql://metarr:pw-in-url@127.0.0.1:{port}/metarr", 30, None)
    assert "pw-in-url" not in str(caught.value)


@pg
def test_a_server_that_never_answers_hits_the_connect_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept_and_say_nothing() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_and_say_nothing, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(MetarrError, match=f"server at 127.0.0.1:{port} did not answer "
                                              "within 2 s"):
            open_postgres(f"postgresql://metarr@127.0.0.1:{port}/metarr", 2.0, "pw")
        assert 1.5 < time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()


def test_urls_are_shown_without_password_or_query():
    assert describe_url("postgresql://metarr:s3cret@db-host:5432/metarr?password=x&sslmode=require"
                        ) == "postgresql://metarr@db-host:5432/metarr"
    assert describe_url("postgres://u:p:q@h1:1,h2:2/db") == "postgres://u@h1:1,h2:2/db"
    assert describe_url("postgresql:///metarr") == "postgresql:///metarr"
    assert not re.search("s3cret", describe_url("postgresql://:s3cret@host/db"))


def test_sqlite_users_never_load_the_postgresql_driver(tmp_path):
    db = MetarrDB(tmp_path / "metarr.sqlite")
    db.add_movie("Heat", 1995)
    db.close()
    script = (
        "import sys\n"
        "from metarr_sync.metarr import open_source\n"
        f"source = open_source({str(tmp_path / 'metarr.sqlite')!r})\n"
        "assert [i.title for i in source.items()] == ['Heat']\n"
        "print('psycopg' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
