"""Builds Metarr-shaped PostgreSQL databases for tests: the same API as MetarrDB.

Same tables and columns as METARR.md (and tests/support/metarr_factory.py), with PostgreSQL
types. Metarr's timestamps are spread over every kind of column a PostgreSQL Metarr could
have, so each comparison is proven for each: `timestamptz`, `timestamp` (naive, UTC) and
`text` holding either of Metarr's formats (SQLite's `2026-11-25 16:20:35` or JavaScript's
`2026-11-25T16:20:35.123Z`). Which column has which type is in COLUMN_TYPES.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.metarr_factory import ago, iso_ts, sqlite_ts
from support.postgres import OWNER_PASSWORD, PostgresServer

__all__ = ["PgMetarrDB", "ago"]

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

# Tables whose ids are looked up by a name in methods (never user input).
_TABLES = {"movies", "series", "seasons", "episodes"}


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


class PgMetarrDB:
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
        self.movies_root = "/data/media/movies"
        self.tv_root = "/data/media/tv"
        self.movie_lib = self.add_library("Movies", self.movies_root, "movie")
        self.tv_lib = self.add_library("TV Shows", self.tv_root, "tv")

    def close(self) -> None:
        self.conn.close()

    def _insert(self, table: str, **values: object) -> int:
        cols = ", ".join(values)
        marks = ", ".join("%s" for _ in values)
        row = self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks}) RETURNING id",
                                tuple(values.values())).fetchone()
        assert row is not None
        return int(row[0])

    def _one(self, sql: str, *params: object) -> tuple:
        row = self.conn.execute(sql, params).fetchone()
        assert row is not None
        return row

    def add_library(self, name: str, path: str, type_: str) -> int:
        return self._insert("libraries", name=name, path=path, type=type_)

    def add_movie(self, title: str, year: int, *, when: datetime | None = None,
                  published: bool = True, folder: str | None = None, tmdb: int | None = None,
                  imdb: str | None = None) -> int:
        when = when or ago(hours=1)
        folder = folder or f"{self.movies_root}/{title} ({year})"
        name = f"{title} ({year}).mkv"
        old = when - timedelta(days=400)
        movie = self._insert(
            "movies", library_id=self.movie_lib, file_path=f"{folder}/{name}", file_name=name,
            title=title, year=year, tmdb_id=tmdb, imdb_id=imdb,
            identification_status="published" if published else "identified",
            published_at=stored("movies", "published_at", when) if published else None,
            created_at=stored("movies", "created_at", old),
            updated_at=stored("movies", "updated_at", old))
        if published:
            self.add_asset("text", "movie", movie, f"{folder}/movie.nfo", when)
            self.add_asset("image", "movie", movie, f"{folder}/poster.jpg", when)
        return movie

    def add_series(self, title: str, *, when: datetime | None = None,
                   tvdb: int | None = None) -> int:
        when = when or ago(hours=1)
        return self._insert("series", library_id=self.tv_lib,
                            directory_path=f"{self.tv_root}/{title}", title=title, tvdb_id=tvdb,
                            created_at=stored("series", "created_at", when),
                            updated_at=stored("series", "updated_at", when))

    def add_season(self, series_id: int, number: int, *, when: datetime | None = None) -> int:
        when = when or ago(hours=1)
        return self._insert("seasons", series_id=series_id, season_number=number,
                            created_at=stored("seasons", "created_at", when),
                            updated_at=stored("seasons", "updated_at", when))

    def add_episode(self, series_id: int, season_id: int, season: int, number: int, *,
                    title: str = "", when: datetime | None = None) -> int:
        when = when or ago(hours=1)
        show_title, show_path = self._one(
            "SELECT title, directory_path FROM series WHERE id = %s", series_id)
        name = f"{show_title} - S{season:02d}E{number:02d}.mkv"
        path = f"{show_path}/Season {season:02d}/{name}"
        return self._insert("episodes", series_id=series_id, season_id=season_id,
                            file_path=path, file_name=name, episode_number=number,
                            title=title or f"Episode {number}",
                            created_at=stored("episodes", "created_at", when),
                            updated_at=stored("episodes", "updated_at", when))

    def add_asset(self, kind: str, entity_type: str, entity_id: int, path: str,
                  when: datetime, *, iso: bool = False) -> None:
        cache = self._insert(f"cache_{kind}_files", entity_type=entity_type,
                             entity_id=entity_id, file_path=f"/data/cache/{entity_id}/{path}")
        self._insert(f"library_{kind}_files", cache_file_id=cache, file_path=path,
                     published_at=stored(f"library_{kind}_files", "published_at", when,
                                         iso=iso))

    def republish_movie(self, movie_id: int, when: datetime | None = None) -> None:
        """What Metarr's publish step does: published_at, asset rows; not updated_at."""
        when = when or datetime.now(UTC)
        self.conn.execute("UPDATE movies SET published_at = %s, identification_status = "
                          "'published' WHERE id = %s",
                          (stored("movies", "published_at", when), movie_id))
        folder = self._one("SELECT file_path FROM movies WHERE id = %s",
                           movie_id)[0].rsplit("/", 1)[0]
        self.add_asset("image", "movie", movie_id, f"{folder}/fanart.jpg", when, iso=True)

    def touch(self, table: str, row_id: int, when: datetime | None = None) -> None:
        assert table in _TABLES
        when = when or datetime.now(UTC)
        self.conn.execute(f"UPDATE {table} SET updated_at = %s WHERE id = %s",
                          (stored(table, "updated_at", when), row_id))

    def soft_delete(self, table: str, row_id: int) -> None:
        """Metarr's recycle bin: deleted_at 30 days in the future."""
        assert table in _TABLES
        future = datetime.now(UTC) + timedelta(days=30)
        self.conn.execute(f"UPDATE {table} SET deleted_at = %s WHERE id = %s",
                          (stored(table, "deleted_at", future), row_id))

    def restore(self, table: str, row_id: int) -> None:
        assert table in _TABLES
        self.conn.execute(f"UPDATE {table} SET deleted_at = NULL WHERE id = %s", (row_id,))

    def purge(self, table: str, row_id: int) -> None:
        """Metarr's garbage collector, 30 days after a soft delete."""
        assert table in _TABLES
        if table == "series":
            # PostgreSQL enforces the foreign keys SQLite leaves off: Metarr's collector
            # takes a show's seasons and episodes with it.
            self.conn.execute("DELETE FROM episodes WHERE series_id = %s", (row_id,))
            self.conn.execute("DELETE FROM seasons WHERE series_id = %s", (row_id,))
        if table == "seasons":
            self.conn.execute("DELETE FROM episodes WHERE season_id = %s", (row_id,))
        self.conn.execute(f"DELETE FROM {table} WHERE id = %s", (row_id,))
