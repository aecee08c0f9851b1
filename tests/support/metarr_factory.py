"""Builds Metarr-shaped SQLite databases for tests: Metarr's tables, realistic rows.

Timestamps are written the way Metarr writes them: SQLite's CURRENT_TIMESTAMP text
(`2026-11-25 16:20:35`) for some columns and JavaScript ISO strings
(`2026-11-25T16:20:35.123Z`) for others; soft deletes are dated 30 days in the future.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA = """
PRAGMA journal_mode = WAL;
CREATE TABLE libraries (id INTEGER PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL,
  type TEXT NOT NULL, enabled INTEGER DEFAULT 1, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE movies (id INTEGER PRIMARY KEY, library_id INTEGER REFERENCES libraries(id),
  file_path TEXT NOT NULL, file_name TEXT, title TEXT, year INTEGER, tmdb_id INTEGER,
  imdb_id TEXT, tvdb_id INTEGER, identification_status TEXT DEFAULT 'unidentified',
  published_at TEXT, deleted_at TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE series (id INTEGER PRIMARY KEY, library_id INTEGER REFERENCES libraries(id),
  directory_path TEXT NOT NULL, title TEXT, tvdb_id INTEGER, tmdb_id INTEGER, imdb_id TEXT,
  deleted_at TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE seasons (id INTEGER PRIMARY KEY, series_id INTEGER REFERENCES series(id),
  season_number INTEGER, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE episodes (id INTEGER PRIMARY KEY, series_id INTEGER REFERENCES series(id),
  season_id INTEGER REFERENCES seasons(id), file_path TEXT NOT NULL, file_name TEXT,
  episode_number INTEGER, title TEXT, tvdb_id INTEGER, tmdb_id INTEGER, imdb_id TEXT,
  deleted_at TEXT, created_at TEXT DEFAULT CURRENT_TIMESTAMP,
  updated_at TEXT DEFAULT CURRENT_TIMESTAMP);
CREATE TABLE media_player_groups (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
  type TEXT NOT NULL, max_members INTEGER, enabled INTEGER DEFAULT 1,
  skip_active INTEGER DEFAULT 1);
CREATE TABLE media_players (id INTEGER PRIMARY KEY, group_id INTEGER REFERENCES
  media_player_groups(id), name TEXT NOT NULL, type TEXT NOT NULL, host TEXT NOT NULL,
  http_port INTEGER, username TEXT, password TEXT, api_key TEXT, enabled INTEGER DEFAULT 1,
  library_paths TEXT, config TEXT);
CREATE TABLE media_player_group_path_mappings (id INTEGER PRIMARY KEY, group_id INTEGER
  REFERENCES media_player_groups(id), metarr_path TEXT NOT NULL, player_path TEXT NOT NULL,
  description TEXT, UNIQUE (group_id, metarr_path));
CREATE TABLE media_player_libraries (group_id INTEGER, library_id INTEGER);
"""
for _kind in ("image", "text", "video", "audio"):
    SCHEMA += (
        f"CREATE TABLE cache_{_kind}_files (id INTEGER PRIMARY KEY, entity_type TEXT NOT NULL,"
        f" entity_id INTEGER NOT NULL, file_path TEXT, file_hash TEXT);\n"
        f"CREATE TABLE library_{_kind}_files (id INTEGER PRIMARY KEY, cache_file_id INTEGER"
        f" REFERENCES cache_{_kind}_files(id), file_path TEXT NOT NULL, published_at TEXT);\n"
    )

# The indexes Metarr's own schema creates (its clean-schema migration, 20251015_001) on
# the tables metarr-sync reads: what a query can count on in a real Metarr.
INDEXES = """
CREATE INDEX idx_movies_library ON movies(library_id);
CREATE INDEX idx_movies_deleted ON movies(deleted_at);
CREATE INDEX idx_movies_file_path ON movies(file_path);
CREATE INDEX idx_series_library ON series(library_id);
CREATE INDEX idx_series_deleted ON series(deleted_at);
CREATE INDEX idx_seasons_series ON seasons(series_id);
CREATE INDEX idx_episodes_series ON episodes(series_id);
CREATE INDEX idx_episodes_season ON episodes(season_id);
CREATE INDEX idx_episodes_deleted ON episodes(deleted_at);
CREATE INDEX idx_episodes_file_path ON episodes(file_path);
"""
for _kind in ("image", "text", "video", "audio"):
    INDEXES += (
        f"CREATE INDEX idx_cache_{_kind}_entity ON cache_{_kind}_files(entity_type, entity_id);\n"
        f"CREATE INDEX idx_library_{_kind}_cache ON library_{_kind}_files(cache_file_id);\n")
SCHEMA += INDEXES


def sqlite_ts(moment: datetime) -> str:
    """SQLite's CURRENT_TIMESTAMP format."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def iso_ts(moment: datetime) -> str:
    """JavaScript's Date.toISOString() format."""
    m = moment.astimezone(UTC)
    return m.strftime("%Y-%m-%dT%H:%M:%S.") + f"{m.microsecond // 1000:03d}Z"


def ago(**kw: float) -> datetime:
    return datetime.now(UTC) - timedelta(**kw)


# Tables whose rows the methods below change by name (never user input).
_TABLES = {"movies", "series", "seasons", "episodes"}


class MetarrDB:
    """A Metarr database file under construction; every method commits.

    Subclasses for other databases (metarr_pg_factory.PgMetarrDB) change how a statement
    is run, how a row is inserted and how a time is stored; the rows are the same.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.conn = sqlite3.connect(self.path, isolation_level=None)
        self.conn.executescript(SCHEMA)
        self._add_libraries()

    @property
    def config_table(self) -> dict[str, object]:
        """The [metarr] config table that reads this database."""
        return {"database": str(self.path)}

    #: Where the libraries really are, once use_disk() was called: items added from then
    #: on get their files (metarr-sync only removes media that is gone from disk).
    media_root: Path | None = None

    def _add_libraries(self) -> None:
        self.movies_root = "/data/media/movies"
        self.tv_root = "/data/media/tv"
        self.movie_lib = self.add_library("Movies", self.movies_root, "movie")
        self.tv_lib = self.add_library("TV Shows", self.tv_root, "tv")

    def use_disk(self, root: Path, *, make_files: bool = True) -> None:
        """Put both libraries in real folders under `root` (call before adding items);
        `make_files=False` when the test writes the media files itself."""
        self.media_root = Path(root)
        self.make_files = make_files
        self.movies_root, self.tv_root = str(root / "movies"), str(root / "tv")
        for library, path in ((self.movie_lib, self.movies_root), (self.tv_lib, self.tv_root)):
            Path(path).mkdir(parents=True, exist_ok=True)
            self._exec("UPDATE libraries SET path = ? WHERE id = ?", (path, library))

    make_files = False

    def _make_file(self, path: str) -> None:
        if self.media_root is not None and self.make_files:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(b"")

    def delete_media(self, table: str, row_id: int) -> str:
        """What Radarr/Sonarr do on disk (never Metarr): the item's file (a show: its
        folder) is deleted. Returns the deleted path."""
        import shutil

        assert self.media_root is not None, "call use_disk() first"
        column = "directory_path" if table == "series" else "file_path"
        assert table in _TABLES
        path = self._one(f"SELECT {column} FROM {table} WHERE id = ?", row_id)[0]
        if table == "series":
            shutil.rmtree(path)
        else:
            Path(path).unlink()
        return path

    def close(self) -> None:
        self.conn.close()

    def _exec(self, sql: str, params: tuple = ()) -> object:
        """Run a statement written with `?` placeholders."""
        return self.conn.execute(sql, params)

    def _one(self, sql: str, *params: object) -> tuple:
        row = self._exec(sql, params).fetchone()  # type: ignore[attr-defined]
        assert row is not None
        return tuple(row)

    def _insert(self, table: str, **values: object) -> int:
        cols = ", ".join(values)
        marks = ", ".join("?" for _ in values)
        cur = self.conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})",
                                tuple(values.values()))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def _stored(self, table: str, column: str, when: datetime | None, *,
                iso: bool = False) -> object:
        """`when` as Metarr writes it in that column: SQLite text, or ISO with `iso`."""
        if when is None:
            return None
        return iso_ts(when) if iso else sqlite_ts(when)

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
            published_at=self._stored("movies", "published_at", when) if published else None,
            created_at=self._stored("movies", "created_at", old),
            updated_at=self._stored("movies", "updated_at", old))
        self._make_file(f"{folder}/{name}")
        if published:
            self.add_asset("text", "movie", movie, f"{folder}/movie.nfo", when)
            self.add_asset("image", "movie", movie, f"{folder}/poster.jpg", when)
        return movie

    def add_series(self, title: str, *, when: datetime | None = None,
                   tvdb: int | None = None) -> int:
        when = when or ago(hours=1)
        if self.media_root is not None and self.make_files:
            Path(self.tv_root, title).mkdir(parents=True, exist_ok=True)
        return self._insert("series", library_id=self.tv_lib,
                            directory_path=f"{self.tv_root}/{title}", title=title, tvdb_id=tvdb,
                            created_at=self._stored("series", "created_at", when),
                            updated_at=self._stored("series", "updated_at", when, iso=True))

    def add_season(self, series_id: int, number: int, *, when: datetime | None = None) -> int:
        when = when or ago(hours=1)
        return self._insert("seasons", series_id=series_id, season_number=number,
                            created_at=self._stored("seasons", "created_at", when),
                            updated_at=self._stored("seasons", "updated_at", when))

    def add_episode(self, series_id: int, season_id: int, season: int, number: int, *,
                    title: str = "", when: datetime | None = None) -> int:
        when = when or ago(hours=1)
        show_title, show_path = self._one(
            "SELECT title, directory_path FROM series WHERE id = ?", series_id)
        name = f"{show_title} - S{season:02d}E{number:02d}.mkv"
        path = f"{show_path}/Season {season:02d}/{name}"
        self._make_file(path)
        return self._insert("episodes", series_id=series_id, season_id=season_id,
                            file_path=path, file_name=name, episode_number=number,
                            title=title or f"Episode {number}",
                            created_at=self._stored("episodes", "created_at", when, iso=True),
                            updated_at=self._stored("episodes", "updated_at", when, iso=True))

    def add_asset(self, kind: str, entity_type: str, entity_id: int, path: str,
                  when: datetime, *, iso: bool = False) -> None:
        cache = self._insert(f"cache_{kind}_files", entity_type=entity_type,
                             entity_id=entity_id, file_path=f"/data/cache/{entity_id}/{path}")
        self._insert(f"library_{kind}_files", cache_file_id=cache, file_path=path,
                     published_at=self._stored(f"library_{kind}_files", "published_at", when,
                                               iso=iso))

    def republish_movie(self, movie_id: int, when: datetime | None = None) -> None:
        """What Metarr's publish step does: published_at, asset rows; not updated_at."""
        when = when or datetime.now(UTC)
        self._exec("UPDATE movies SET published_at = ?, identification_status = 'published' "
                   "WHERE id = ?", (self._stored("movies", "published_at", when), movie_id))
        folder = self._one("SELECT file_path FROM movies WHERE id = ?",
                           movie_id)[0].rsplit("/", 1)[0]
        self.add_asset("image", "movie", movie_id, f"{folder}/fanart.jpg", when, iso=True)

    def retitle(self, table: str, row_id: int, title: str) -> None:
        """Metarr's title of an item changed (the title it writes into the NFO it
        publishes); the NFO itself and the publish stamp are the caller's to write."""
        assert table in _TABLES
        self._exec(f"UPDATE {table} SET title = ? WHERE id = ?", (title, row_id))

    def touch(self, table: str, row_id: int, when: datetime | None = None) -> None:
        assert table in _TABLES
        when = when or datetime.now(UTC)
        self._exec(f"UPDATE {table} SET updated_at = ? WHERE id = ?",
                   (self._stored(table, "updated_at", when, iso=True), row_id))

    def replace_file(self, table: str, row_id: int, path: str) -> None:
        """What Metarr's Radarr/Sonarr webhook does on an upgrade or rename: the movie's or
        episode's file_path and file_name rewritten in place (same row id). No timestamp
        is touched here: metarr-sync must notice the new path on its own."""
        assert table in ("movies", "episodes")
        self._exec(f"UPDATE {table} SET file_path = ?, file_name = ? WHERE id = ?",
                   (path, path.rsplit("/", 1)[-1], row_id))

    def file_of(self, table: str, row_id: int) -> str:
        assert table in ("movies", "episodes")
        return str(self._one(f"SELECT file_path FROM {table} WHERE id = ?", row_id)[0])

    def soft_delete(self, table: str, row_id: int) -> None:
        """Metarr's recycle bin: deleted_at 30 days in the future."""
        assert table in _TABLES
        future = datetime.now(UTC) + timedelta(days=30)
        self._exec(f"UPDATE {table} SET deleted_at = ? WHERE id = ?",
                   (self._stored(table, "deleted_at", future, iso=True), row_id))

    def restore(self, table: str, row_id: int) -> None:
        assert table in _TABLES
        self._exec(f"UPDATE {table} SET deleted_at = NULL WHERE id = ?", (row_id,))

    def delete_library(self, library_id: int) -> None:
        """Metarr's "delete library": DELETE FROM libraries, cascading to its movies,
        series, seasons and episodes. No file is touched."""
        self._exec("DELETE FROM episodes WHERE series_id IN "
                   "(SELECT id FROM series WHERE library_id = ?)", (library_id,))
        self._exec("DELETE FROM seasons WHERE series_id IN "
                   "(SELECT id FROM series WHERE library_id = ?)", (library_id,))
        self._exec("DELETE FROM series WHERE library_id = ?", (library_id,))
        self._exec("DELETE FROM movies WHERE library_id = ?", (library_id,))
        self._exec("DELETE FROM libraries WHERE id = ?", (library_id,))

    def purge(self, table: str, row_id: int) -> None:
        """Metarr's garbage collector, 30 days after a soft delete."""
        assert table in _TABLES
        self._exec(f"DELETE FROM {table} WHERE id = ?", (row_id,))
