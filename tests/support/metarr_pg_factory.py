"""Builds Metarr-shaped PostgreSQL databases for tests: the same API as MetarrDB.

Same tables and columns as METARR.md (and tests/support/metarr_factory.py), with PostgreSQL
types. Metarr's timestamps are spread over every kind of column a PostgreSQL Metarr could
have, so each comparison is proven for each: `timestamptz`, `timestamp` (naive, UTC) and
`text` holding either of Metarr's formats (SQLite's `2026-11-25 16:20:35` or JavaScript's
`2026-11-25T16:20:35.123Z`). Which column has which type is in COLUMN_TYPES.
"""

from __future__ import annotations

from datetime import UTC, datetime

from support.metarr_factory import _TABLES, INDEXES, MetarrDB, ago, iso_ts, sqlite_ts
from support.postgres import OWNER_PASSWORD, PostgresServer

__all__ = ["PASSWORD_ENV", "PgMetarrDB", "ago"]

#: The environment variable a config names for the password (`{ env = ... }`).
PASSWORD_ENV = "METARR_SYNC_TEST_PG_PASSWORD"

# (table, column) -> "timestamptz" | "timestamp" | "text-sqlite" | "text-iso"
COLUMN_TYPES: dict[tuple[str, str], str] = {
    ("libraries", "created_at"): "timestamptz",
    ("movies", "published_at"): "timestamptz",
    ("movies", "deleted_at"): "timestamptz",
    ("movies", "created_at"): "timestamp",
    ("movies", "updated_at"): "timestamp",
    ("series", "created_at"): "text-sqlite",
    ("series", "updated_at"): "text-iso",
    ("series", "deleted_at"): "text-iso",
    ("seasons", "created_at"): "timestamp",
    ("seasons", "updated_at"): "timestamptz",
    ("episodes", "created_at"): "text-iso",
    ("episodes", "updated_at"): "timestamp",
    ("episodes", "deleted_at"): "text-iso",
    ("library_image_files", "published_at"): "timestamptz",
    ("library_text_files", "published_at"): "text-sqlite",  # add_asset(iso=True): ISO
    ("library_video_files", "published_at"): "timestamp",
    ("library_audio_files", "published_at"): "text-iso",
}


def _sql_type(table: str, column: str) -> str:
    kind = COLUMN_TYPES[(table, column)]
    return {"timestamptz": "timestamptz", "timestamp": "timestamp"}.get(kind, "text")


def _ts(table: str, column: str) -> str:
    return f"{column} {_sql_type(table, column)}"


SCHEMA = f"""
CREATE TABLE libraries (id serial PRIMARY KEY, name text NOT NULL, path text NOT NULL,
  type text NOT NULL, enabled boolean DEFAULT true,
  {_ts('libraries', 'created_at')} DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE movies (id serial PRIMARY KEY, library_id integer REFERENCES libraries(id),
  file_path text NOT NULL, file_name text, title text, year integer, tmdb_id integer,
  imdb_id text, tvdb_id integer, identification_status text DEFAULT 'unidentified',
  {_ts('movies', 'published_at')}, {_ts('movies', 'deleted_at')},
  {_ts('movies', 'created_at')}, {_ts('movies', 'updated_at')});
CREATE TABLE series (id serial PRIMARY KEY, library_id integer REFERENCES libraries(id),
  directory_path text NOT NULL, title text, tvdb_id integer, tmdb_id integer, imdb_id text,
  {_ts('series', 'deleted_at')}, {_ts('series', 'created_at')},
  {_ts('series', 'updated_at')});
CREATE TABLE seasons (id serial PRIMARY KEY, series_id integer REFERENCES series(id),
  season_number integer, {_ts('seasons', 'created_at')}, {_ts('seasons', 'updated_at')});
CREATE TABLE episodes (id serial PRIMARY KEY, series_id integer REFERENCES series(id),
  season_id integer REFERENCES seasons(id), file_path text NOT NULL, file_name text,
  episode_number integer, title text, tvdb_id integer, tmdb_id integer, imdb_id text,
  {_ts('episodes', 'deleted_at')}, {_ts('episodes', 'created_at')},
  {_ts('episodes', 'updated_at')});
CREATE TABLE media_player_groups (id serial PRIMARY KEY, name text NOT NULL,
  type text NOT NULL, max_members integer, enabled boolean DEFAULT true,
  skip_active boolean DEFAULT true);
CREATE TABLE media_players (id serial PRIMARY KEY, group_id integer REFERENCES
  media_player_groups(id), name text NOT NULL, type text NOT NULL, host text NOT NULL,
  http_port integer, username text, password text, api_key text, enabled boolean DEFAULT true,
  library_paths text, config text);
CREATE TABLE media_player_group_path_mappings (id serial PRIMARY KEY, group_id integer
  REFERENCES media_player_groups(id), metarr_path text NOT NULL, player_path text NOT NULL,
  description text, UNIQUE (group_id, metarr_path));
CREATE TABLE media_player_libraries (group_id integer, library_id integer);
"""
for _kind in ("image", "text", "video", "audio"):
    SCHEMA += (
        f"CREATE TABLE cache_{_kind}_files (id serial PRIMARY KEY, entity_type text NOT NULL,"
        f" entity_id integer NOT NULL, file_path text, file_hash text);\n"
        f"CREATE TABLE library_{_kind}_files (id serial PRIMARY KEY, cache_file_id integer"
        f" REFERENCES cache_{_kind}_files(id), file_path text NOT NULL,"
        f" {_ts(f'library_{_kind}_files', 'published_at')});\n"
    )
SCHEMA += INDEXES  # Metarr's own indexes (see metarr_factory)

def stored(table: str, column: str, when: datetime | None, *, iso: bool = False) -> object:
    """`when` as Metarr would store it in that column of a PostgreSQL Metarr."""
    if when is None:
        return None
    kind = COLUMN_TYPES[(table, column)]
    if kind == "timestamptz":
        return when.astimezone(UTC)
    if kind == "timestamp":
        return when.astimezone(UTC).replace(tzinfo=None)
    return iso_ts(when) if kind == "text-iso" or iso else sqlite_ts(when)


class PgMetarrDB(MetarrDB):
    """A Metarr database in PostgreSQL under construction; every method commits.

    `url` has no password: tests give it through [metarr] password, PGPASSFILE or the URL.
    """

    def __init__(self, server: PostgresServer, dbname: str):
        import psycopg

        self.server = server
        self.dbname = dbname
        self.url = server.url(dbname)
        self.password = OWNER_PASSWORD
        self.description = self.url
        self.conn = psycopg.connect(server.url(dbname, password=OWNER_PASSWORD),
                                    autocommit=True)
        self.conn.execute(SCHEMA)
        self._add_libraries()

    @property
    def config_table(self) -> dict[str, object]:
        return {"database": self.url, "password": {"env": PASSWORD_ENV}}

    def _exec(self, sql: str, params: tuple = ()) -> object:
        return self.conn.execute(sql.replace("?", "%s"), params)

    def _insert(self, table: str, **values: object) -> int:
        cols = ", ".join(values)
        marks = ", ".join("%s" for _ in values)
        row = self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id",
                                tuple(values.values())).fetchone()
        assert row is not None
        return int(row[0])

    def _stored(self, table: str, column: str, when: datetime | None, *,
                iso: bool = False) -> object:
        return stored(table, column, when, iso=iso)

    def purge(self, table: str, row_id: int) -> None:
        assert table in _TABLES
        if table == "series":
            # PostgreSQL enforces the foreign keys SQLite leaves off: Metarr's collector
            # takes a show's seasons and episodes with it.
            self._exec("DELETE FROM episodes WHERE series_id = ?", (row_id,))
            self._exec("DELETE FROM seasons WHERE series_id = ?", (row_id,))
        if table == "seasons":
            self._exec("DELETE FROM episodes WHERE season_id = ?", (row_id,))
        super().purge(table, row_id)
