"""Read-only access to Metarr's database: what is in the library, and in which version.

Every item (movie, series, episode) is read with a *stamp*: the newest of its own
timestamps and the `published_at` of the asset files Metarr published for it, all
normalised by the database to one canonical UTC text form (`YYYY-MM-DDTHH:MM:SS.mmmZ`)
so they compare correctly as text, whichever of Metarr's two formats they were stored in.
Whether an item changed is decided elsewhere (state.py) by comparing stamps for equality.
"""

from __future__ import annotations

import contextlib
import math
import re
import sqlite3
import zlib
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from metarr_sync.collect import BUCKET, Checks, Reading

KINDS = ("movie", "series", "episode")


class MetarrError(Exception):
    """Metarr's database cannot be read (missing, not Metarr's, locked, old schema)."""


class NotInMetarr(ValueError):
    """An item named on the command line (id or path) that Metarr's database lacks."""


@dataclass(frozen=True, slots=True)
class Item:
    """One thing in Metarr's library, in Metarr's own paths.

    Slotted: a run holds one per queued item (hundreds of thousands for a bulk sync).
    """

    kind: str  # movie | series | episode
    id: int
    path: str  # movie/episode: the video file; series: the show folder
    title: str = ""
    series_path: str | None = None  # episodes and series: the show folder
    library_id: int | None = None
    ids: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    season: int | None = None
    episode: int | None = None
    series_id: int | None = None
    stamp: str = ""
    removed: bool = False
    #: Paths this movie or episode had before Metarr rewrote its path in place (an upgrade
    #: or rename by Radarr/Sonarr) that the player may still list: set from the queue only
    #: (state.py), never read from Metarr.
    previous_paths: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"

    def label(self) -> str:
        if self.kind == "episode" and self.season is not None and self.episode is not None:
            return f"{self.title or self.path} S{self.season:02d}E{self.episode:02d}"
        return self.title or self.path


# Columns metarr-sync reads, per table. Checked when the database is opened so an older or
# newer Metarr schema gives one clear message instead of a failed query later.
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "libraries": ("id", "name", "path", "type"),
    "movies": ("id", "library_id", "file_path", "title", "year", "tmdb_id", "imdb_id",
               "published_at", "deleted_at", "created_at", "updated_at"),
    "series": ("id", "library_id", "directory_path", "title", "tvdb_id", "tmdb_id",
               "imdb_id", "deleted_at", "created_at", "updated_at"),
    "seasons": ("id", "series_id", "season_number", "updated_at"),
    "episodes": ("id", "series_id", "season_id", "file_path", "episode_number", "title",
                 "tvdb_id", "tmdb_id", "imdb_id", "deleted_at", "created_at", "updated_at"),
}
ASSET_KINDS = ("image", "text", "video", "audio")
for _kind in ASSET_KINDS:
    REQUIRED_COLUMNS[f"cache_{_kind}_files"] = ("id", "entity_type", "entity_id")
    REQUIRED_COLUMNS[f"library_{_kind}_files"] = ("id", "cache_file_id", "published_at")


class Dialect:
    """What differs between SQLite and PostgreSQL: placeholders and timestamp normalising."""

    placeholder = "?"
    now_sql = "SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"

    def ts(self, expr: str) -> str:
        # strftime parses both 'YYYY-MM-DD HH:MM:SS' and ISO '...T...Z' and yields NULL for
        # anything unparseable, so one odd row can never break the comparison.
        return f"strftime('%Y-%m-%dT%H:%M:%fZ', {expr})"


    def since(self, column: str, stamp: str) -> str:
        """`column` holds a time at or after `stamp` (canonical, see the module docstring).

        Compared as stored, not through ts(): a scan of 200,000 rows stays a few dozen
        ms. Metarr's two formats sort as text within each format, and a row's format
        shows at its 11th character: 'T' (ISO) is compared with the ISO form of `stamp`,
        ' ' (CURRENT_TIMESTAMP) with its whole seconds (rounding down: never later)."""
        _canonical(stamp)
        space = stamp[:10] + " " + stamp[11:19]
        return (f"({column} >= '{stamp}' OR ({column} >= '{space}' AND "
                f"substr({column}, 11, 1) = ' '))")


SQLITE = Dialect()

_CANONICAL = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}[.][0-9]{3}Z")


def _canonical(stamp: str) -> None:
    # Written into the statement as a literal: only the canonical form may go there.
    if not _CANONICAL.fullmatch(stamp):
        raise ValueError(f"not a canonical stamp: {stamp!r}")

# What PostgreSQL may hand ts() as text: Metarr's two formats, and (for timestamp and
# timestamptz columns, printed with DateStyle ISO) 'YYYY-MM-DD HH:MM:SS[.ffffff][+00]'.
# Anything else becomes NULL instead of failing the whole query, as strftime() does on
# SQLite. No '?' in it: _sql() turns every '?' into a placeholder.
_PG_STAMP_RE = (
    "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[ T]([01][0-9]|2[0-3]):[0-5][0-9]"
    ":[0-5][0-9]([.][0-9]+){0,1}(Z|[+-][0-9]{2}(:{0,1}[0-9]{2}){0,1}){0,1}$"
)


class PostgresDialect(Dialect):
    """PostgreSQL: %s placeholders; stamps from timestamp, timestamptz or text columns.

    The cast to timestamptz reads naive values (timestamp columns, SQLite-format text) in
    the session time zone, which open_postgres() sets to UTC as Metarr writes them; ISO text
    carries its 'Z'. to_char then prints the same text as strftime() does on SQLite.
    """

    placeholder = "%s"
    now_sql = ("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', "
               "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')")

    def ts(self, expr: str) -> str:
        return (
            f"CASE WHEN ({expr})::text ~ '{_PG_STAMP_RE}' THEN "
            f"to_char(({expr})::timestamptz AT TIME ZONE 'UTC', "
            "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') END"
        )


    def since(self, column: str, stamp: str) -> str:
        # The server compares typed timestamps natively and text through ts().
        _canonical(stamp)
        return f"{self.ts(column)} >= '{stamp}'"


POSTGRES = PostgresDialect()


def _sql(dialect: Dialect, text: str) -> str:
    """Fill the {ts(...)} markers and placeholders of a query written once for all dialects."""
    text = re.sub(r"\{ts\(([^)]*)\)\}", lambda m: dialect.ts(m.group(1)), text)
    return text.replace("?", dialect.placeholder)


def _assets(where: str = "") -> str:
    """Per entity, the newest `published_at` of its published asset files; `where` (on
    the cache row `c`) narrows it to a few entities: unnarrowed it aggregates every asset
    row of the library, which a read of a handful of items must not pay for."""
    extra = f" AND ({where})" if where else ""
    union = " UNION ALL ".join(
        f"SELECT c.entity_type AS entity_type, c.entity_id AS entity_id, "
        f"{{ts(l.published_at)}} AS published FROM library_{kind}_files l "
        f"JOIN cache_{kind}_files c ON c.id = l.cache_file_id "
        f"WHERE l.published_at IS NOT NULL{extra}"
        for kind in ASSET_KINDS)
    return (f"SELECT entity_type, entity_id, MAX(published) AS published FROM ({union}) a "
            "GROUP BY entity_type, entity_id")


def _id_list(ids: Sequence[int]) -> str:
    # Ints from Metarr's own rows (or the command line, parsed as int): safe as literals.
    return ", ".join(str(int(i)) for i in ids) or "NULL"


def movies_sql(ids: Sequence[int] | None = None) -> str:
    """Movies with their stamps; `ids`: only these (None: all)."""
    narrow = None if ids is None else _id_list(ids)
    assets = _assets("" if narrow is None else
                     f"c.entity_type = 'movie' AND c.entity_id IN ({narrow})")
    return (
        "SELECT m.id, m.library_id, m.file_path, m.title, m.year, m.tmdb_id, m.imdb_id, "
        "{ts(m.created_at)}, {ts(m.updated_at)}, {ts(m.published_at)}, a.published, "
        "m.deleted_at IS NOT NULL "
        f"FROM movies m LEFT JOIN ({assets}) a ON a.entity_type = 'movie' "
        "AND a.entity_id = m.id" + ("" if narrow is None else f" WHERE m.id IN ({narrow})"))


def series_sql(ids: Sequence[int] | None = None) -> str:
    """Series with their stamps (their seasons' included); `ids`: only these.

    The seasons' stamps are aggregated per series once and joined, not looked up by a
    correlated subquery per series row: that re-scanned the seasons (and their assets)
    for every series, 3 s for 2,000 series where the join takes 0.4 s."""
    narrow = None if ids is None else _id_list(ids)
    seasons = "" if narrow is None else f" WHERE series_id IN ({narrow})"
    own = _assets("" if narrow is None else
                  f"c.entity_type = 'series' AND c.entity_id IN ({narrow})")
    of_seasons = _assets("" if narrow is None else
                         "c.entity_type = 'season' AND c.entity_id IN (SELECT id FROM "
                         f"seasons WHERE series_id IN ({narrow}))")
    return (
        "SELECT s.id, s.library_id, s.directory_path, s.title, s.tvdb_id, s.tmdb_id, "
        "s.imdb_id, {ts(s.created_at)}, {ts(s.updated_at)}, a.published, sn.updated, "
        "ssa.published, s.deleted_at IS NOT NULL "
        f"FROM series s LEFT JOIN ({own}) a ON a.entity_type = 'series' AND a.entity_id = s.id "
        "LEFT JOIN (SELECT series_id, MAX({ts(updated_at)}) AS updated FROM seasons"
        f"{seasons} GROUP BY series_id) sn ON sn.series_id = s.id "
        "LEFT JOIN (SELECT sn2.series_id AS series_id, MAX(sa.published) AS published "
        f"FROM seasons sn2 JOIN ({of_seasons}) sa ON sa.entity_type = 'season' "
        "AND sa.entity_id = sn2.id GROUP BY sn2.series_id) ssa ON ssa.series_id = s.id"
        + ("" if narrow is None else f" WHERE s.id IN ({narrow})"))


def episodes_sql(ids: Sequence[int] | None = None) -> str:
    """Episodes with their stamps and show; `ids`: only these."""
    narrow = None if ids is None else _id_list(ids)
    assets = _assets("" if narrow is None else
                     f"c.entity_type = 'episode' AND c.entity_id IN ({narrow})")
    return (
        "SELECT e.id, s.library_id, e.file_path, s.title, e.tvdb_id, e.tmdb_id, e.imdb_id, "
        "{ts(e.created_at)}, {ts(e.updated_at)}, a.published, sn.season_number, "
        "e.episode_number, s.id, s.directory_path, "
        "(e.deleted_at IS NOT NULL OR s.deleted_at IS NOT NULL) "
        "FROM episodes e JOIN series s ON s.id = e.series_id "
        "LEFT JOIN seasons sn ON sn.id = e.season_id "
        f"LEFT JOIN ({assets}) a ON a.entity_type = 'episode' AND a.entity_id = e.id"
        + ("" if narrow is None else f" WHERE e.id IN ({narrow})"))


def _ids(**values: Any) -> dict[str, str]:
    return {k: str(v) for k, v in values.items() if v not in (None, "")}


def _newest(*stamps: str | None) -> str:
    return max((s for s in stamps if s), default="")


def _movie(row: Sequence[Any]) -> Item:
    (id_, lib, path, title, _year, tmdb, imdb, created, updated, published, assets,
     removed) = row
    return Item("movie", id_, path or "", title or "", None, lib, _ids(tmdb=tmdb, imdb=imdb),
                stamp=_newest(created, updated, published, assets), removed=bool(removed))


def _series(row: Sequence[Any]) -> Item:
    (id_, lib, path, title, tvdb, tmdb, imdb, created, updated, assets, seasons_updated,
     season_assets, removed) = row
    return Item("series", id_, path or "", title or "", path, lib,
                _ids(tvdb=tvdb, tmdb=tmdb, imdb=imdb), series_id=id_,
                stamp=_newest(created, updated, assets, seasons_updated, season_assets),
                removed=bool(removed))


def _episode(row: Sequence[Any]) -> Item:
    (id_, lib, path, title, tvdb, tmdb, imdb, created, updated, assets, season, episode,
     series_id, series_path, removed) = row
    return Item("episode", id_, path or "", title or "", series_path, lib,
                _ids(tvdb=tvdb, tmdb=tmdb, imdb=imdb), season, episode, series_id,
                stamp=_newest(created, updated, assets), removed=bool(removed))


#: Each kind's own table and the column holding its path.
TABLES = {"movie": ("movies", "file_path"), "series": ("series", "directory_path"),
          "episode": ("episodes", "file_path")}
_READERS = (("movie", movies_sql, _movie), ("series", series_sql, _series),
            ("episode", episodes_sql, _episode))


@dataclass(frozen=True)
class Library:
    id: int
    name: str
    path: str
    type: str


class MetarrSource:
    """Metarr's database, opened read-only: SQLite as it is; PostgresSource changes the
    connection and dialect."""

    dialect: Dialect = SQLITE

    def __init__(self, connection: Any, description: str):
        self.conn = connection
        self.description = description

    # -- plumbing ---------------------------------------------------------------------
    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Sequence[Any]]:
        try:
            cursor = self.conn.execute(_sql(self.dialect, sql), tuple(params))
            while rows := cursor.fetchmany(2000):
                yield from rows
        except sqlite3.Error as exc:
            raise MetarrError(self._explain(exc)) from None

    def _explain(self, exc: Exception) -> str:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return (f"Metarr database {self.description} is locked by another program "
                    f"(waited for the busy timeout): {text}")
        return f"Metarr database {self.description} cannot be read: {text}"

    def columns(self, table: str) -> set[str]:
        return {row[1] for row in self.query(f"PRAGMA table_info({table})")}

    def check_schema(self) -> None:
        problems = []
        for table, needed in REQUIRED_COLUMNS.items():
            have = self.columns(table)
            if not have:
                problems.append(f"table {table} is missing")
                continue
            missing = [c for c in needed if c not in have]
            if missing:
                problems.append(f"table {table} lacks column(s) {', '.join(missing)}")
        if problems:
            raise MetarrError(
                f"{self.description} is not a Metarr database this version understands: "
                + "; ".join(problems)
            )

    def close(self) -> None:
        # Closing a read-only handle cannot lose anything, so no failure matters here.
        with contextlib.suppress(Exception):
            self.conn.close()

    # -- what the library holds ---------------------------------------------------------
    def items(self, where: str = "", params: Sequence[Any] = (),
              kinds: Sequence[str] = KINDS) -> Iterator[Item]:
        """Every item (removed ones included) of the given kinds, optionally filtered."""
        for kind, sql, make in _READERS:
            if kind not in kinds:
                continue
            alias = {"movie": "m", "series": "s", "episode": "e"}[kind]
            clause = f" WHERE {where.format(t=alias)}" if where else ""
            for row in self.query(sql() + clause, params):
                yield make(row)

    def items_by_id(self, kind: str, ids: Sequence[int]) -> list[Item]:
        """These items of one kind (those Metarr has), reading only their own rows."""
        sql, make = {k: (q, m) for k, q, m in _READERS}[kind]
        found: list[Item] = []
        unique = sorted(set(ids))
        for start in range(0, len(unique), 500):
            found.extend(make(row) for row in self.query(sql(unique[start:start + 500])))
        return found

    # -- what changed since the last collection (metarr_sync/collect.py) -----------------
    def clock(self) -> str:
        """Now, by the database's clock (SQLite: this machine's), canonical."""
        return str(next(self.query(self.dialect.now_sql))[0])

    def checks(self, kind: str) -> Checks:
        """Per bucket of BUCKET ids of `kind`'s table: [rows, sum of ids, sum of the ids
        soft-deleted, a checksum of the paths]. Equal checks mean no row of the bucket
        appeared, vanished, was (un)deleted or had its path rewritten — the changes that
        move no timestamp. One range scan per bucket: no sort, no per-row Python."""
        table, path = TABLES[kind]
        top = next(self.query(f"SELECT max(id) FROM {table}"))[0]
        found: dict[int, list[Any]] = {}
        for bucket in range(0, int(top or 0) // BUCKET + 1):
            lo = bucket * BUCKET
            count, ids, deleted, paths = next(self.query(
                f"SELECT count(*), total(id), total(CASE WHEN deleted_at IS NOT NULL THEN id "
                f"END), group_concat({path}, char(10)) FROM {table} WHERE id >= {lo} AND "
                f"id < {lo + BUCKET}"))
            if count:
                crc = zlib.crc32((paths or "").encode("utf-8", "surrogatepass"))
                found[bucket] = [int(count), int(ids), int(deleted), crc]
        return found

    def changed_ids(self, since: str, kinds: Iterable[str] = KINDS) -> dict[str, set[int]]:
        """Per kind, the ids of the items whose stamp may be at or after `since`: their
        own timestamps, their seasons' (series) and their published asset files'."""
        d = self.dialect
        found: dict[str, set[int]] = {}
        for kind in kinds:
            table, _ = TABLES[kind]
            own = [d.since(c, since) for c in ("created_at", "updated_at")
                   + (("published_at",) if kind == "movie" else ())]
            found[kind] = {int(r[0]) for r in self.query(
                f"SELECT id FROM {table} WHERE {' OR '.join(own)}")}
        # The asset files once for every kind: four table scans, not twelve.
        assets = " UNION ALL ".join(
            f"SELECT c.entity_type, c.entity_id FROM library_{k}_files l JOIN "
            f"cache_{k}_files c ON c.id = l.cache_file_id WHERE {d.since('l.published_at', since)}"
            for k in ASSET_KINDS)
        seasons: set[int] = set()
        for entity, entity_id in self.query(assets):
            if entity in found:
                found[entity].add(int(entity_id))
            elif entity == "season":
                seasons.add(int(entity_id))
        if "series" in found:
            found["series"] |= {int(r[0]) for r in self.query(
                "SELECT series_id FROM seasons WHERE "
                f"{d.since('created_at', since)} OR {d.since('updated_at', since)}")}
            listed = sorted(seasons)
            for start in range(0, len(listed), 500):
                found["series"] |= {int(r[0]) for r in self.query(
                    "SELECT series_id FROM seasons WHERE id IN "
                    f"({_id_list(listed[start:start + 500])})")}
        return found

    def survey(self, since: str | None) -> tuple[dict[str, Checks], dict[str, set[int]]]:
        """Metarr's checks of every kind, and the ids of every kind whose stamp may be at
        or after `since` (None: none asked). Both scan the same big tables; on SQLite the
        checks run in a thread on a second read-only connection (SQLite releases the GIL
        while it works): on two cores that takes 0.23 s instead of 0.41 s at 250,000
        items."""
        if since is None:
            return {kind: self.checks(kind) for kind in KINDS}, {}
        beside = self._beside()
        if beside is None:
            return {kind: self.checks(kind) for kind in KINDS}, self.changed_ids(since)
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="metarr-checks") as pool:
                future = pool.submit(lambda: {kind: beside.checks(kind) for kind in KINDS})
                changed = self.changed_ids(since)
                return future.result(), changed
        finally:
            beside.close()

    def _beside(self) -> MetarrSource | None:
        """A second connection to the same database, when opening one is cheap."""
        return None

    def items_for(self, readings: Iterable[Reading], changed: Mapping[str, set[int]]
                  ) -> Iterator[Item]:
        """The items a collection plan reads (collect.plan), kind by kind; `changed`: the
        ids stamped since the plan's `since` (survey)."""
        for reading in readings:
            if reading.whole:
                yield from self.items(kinds=(reading.kind,))
                continue
            ids = self.ids_in(reading.kind, reading.buckets) | changed.get(reading.kind, set())
            if reading.series_buckets:
                ids |= self.ids_in("episode", reading.series_buckets, by_series=True)
            yield from self.items_by_id(reading.kind, sorted(ids))

    def ids_in(self, kind: str, buckets: Sequence[int], *, by_series: bool = False
               ) -> set[int]:
        """Ids of `kind` in these buckets of ids (`by_series`: episodes whose series id
        is in them)."""
        table, _ = TABLES[kind]
        column = "series_id" if by_series else "id"
        found: set[int] = set()
        for bucket in buckets:
            lo = int(bucket) * BUCKET
            found |= {int(r[0]) for r in self.query(
                f"SELECT id FROM {table} WHERE {column} >= {lo} AND {column} < {lo + BUCKET}")}
        return found

    def episodes_of(self, series_ids: Sequence[int]) -> list[Item]:
        ids: list[int] = []
        unique = sorted(set(series_ids))
        for start in range(0, len(unique), 500):
            ids += [int(r[0]) for r in self.query(
                "SELECT id FROM episodes WHERE series_id IN "
                f"({_id_list(unique[start:start + 500])})")]
        return self.items_by_id("episode", ids)

    def present_items(self, kind: str, *, library_id: int | None = None,
                      path_ending: str | None = None) -> Generator[Item, None, None]:
        """The movies or episodes (`kind`) not removed (nor their show) of one library, or
        whose file path ends in `path_ending`, read lazily (close() stops the query)."""
        if library_id is not None:
            where = _IN_LIBRARY[kind]
            params: tuple[object, ...] = (library_id,)
        else:
            where = "{t}.file_path LIKE ? ESCAPE '\\'"
            params = (f"%{_like_escape(path_ending or '')}",)
        yield from self.items(f"{where} AND {_PRESENT[kind]}", params, kinds=(kind,))

    def items_under(self, path: str) -> list[Item]:
        """Items at `path` or below it (whole path components), Metarr-side path."""
        base = path.rstrip("/\\") or path
        pattern = _like_escape(base) + "/%"
        found: list[Item] = []
        for kind, column in (("movie", "file_path"), ("series", "directory_path"),
                             ("episode", "file_path")):
            found.extend(self.items(
                f"({{t}}.{column} = ? OR {{t}}.{column} LIKE ? ESCAPE '\\')",
                (base, pattern), kinds=(kind,)))
        return found

    def libraries(self) -> list[Library]:
        return [Library(int(r[0]), r[1] or "", r[2] or "", r[3] or "")
                for r in self.query("SELECT id, name, path, type FROM libraries ORDER BY id")]

    def library_by_name(self, name: str) -> Library | None:
        for library in self.libraries():
            if library.name == name:
                return library
        return None

    def named_items(self, paths: Sequence[str], movies: Sequence[int],
                    episodes: Sequence[int], series: Sequence[int]) -> list[Item]:
        """The items named on a command line (`sync`, `queue add`): ids and Metarr paths.

        A series brings its episodes. Raises NotInMetarr naming what is not there, so a
        typo never silently syncs nothing.
        """
        found: dict[str, Item] = {}
        for kind, ids in (("movie", movies), ("episode", episodes), ("series", series)):
            items = self.items_by_id(kind, ids)
            missing = sorted(set(ids) - {i.id for i in items})
            if missing:
                raise NotInMetarr(f"no {kind} with id {', '.join(map(str, missing))} in "
                                  f"Metarr's database {self.description}")
            for item in items:
                found[item.key] = item
        for item in self.episodes_of(series):
            found[item.key] = item
        for path in paths:
            if not path.startswith("/") and not Path(path).is_absolute():
                raise NotInMetarr(f"{path!r} is not an absolute Metarr-side path")
            items = self.items_under(path)
            if not items:
                raise NotInMetarr(f"no Metarr item at or below {path}")
            for item in items:
                found[item.key] = item
        return list(found.values())

    def player_setup(self) -> PlayerSetup:
        """The players, groups and path mappings the user set up in Metarr itself."""
        for table, needed in PLAYER_TABLES.items():
            have = self.columns(table)
            missing = [c for c in needed if c not in have]
            if not have or missing:
                what = (f"has no table {table}" if not have
                        else f"lacks column(s) {', '.join(missing)} in table {table}")
                raise MetarrError(f"Metarr database {self.description} {what}: this Metarr "
                                  "version keeps no media players to import")
        groups = [MetarrPlayerGroup(int(r[0]), r[1] or "", r[2] or "", _truthy(r[3]),
                                    _truthy(r[4]))
                  for r in self.query("SELECT id, name, type, enabled, skip_active "
                                      "FROM media_player_groups ORDER BY id")]
        players = [MetarrPlayer(int(r[0]), None if r[1] is None else int(r[1]), r[2] or "",
                                r[3] or "", r[4] or "", None if r[5] is None else int(r[5]),
                                r[6] or None, r[7] or None, r[8] or None, _truthy(r[9]))
                   for r in self.query(
                       "SELECT id, group_id, name, type, host, http_port, username, password, "
                       "api_key, enabled FROM media_players ORDER BY id")]
        mappings = [(int(r[0]), r[1] or "", r[2] or "") for r in self.query(
            "SELECT group_id, metarr_path, player_path FROM media_player_group_path_mappings "
            "ORDER BY group_id, id")]
        return PlayerSetup(groups, players, mappings, self._group_libraries(),
                           self.libraries())

    def _group_libraries(self) -> dict[int, list[Library]] | None:
        """The libraries each player group serves (media_player_libraries), or None when
        this Metarr has no such table."""
        if not {"group_id", "library_id"} <= self.columns("media_player_libraries"):
            return None
        served: dict[int, list[Library]] = {}
        for row in self.query(
                "SELECT DISTINCT g.group_id, l.id, l.name, l.path, l.type FROM "
                "media_player_libraries g JOIN libraries l ON l.id = g.library_id "
                "WHERE g.group_id IS NOT NULL ORDER BY g.group_id, l.id"):
            served.setdefault(int(row[0]), []).append(
                Library(int(row[1]), row[2] or "", row[3] or "", row[4] or ""))
        return served


# Metarr's own player set-up, read by `players import`.
PLAYER_TABLES: dict[str, tuple[str, ...]] = {
    "media_player_groups": ("id", "name", "type", "enabled", "skip_active"),
    "media_players": ("id", "group_id", "name", "type", "host", "http_port", "username",
                      "password", "api_key", "enabled"),
    "media_player_group_path_mappings": ("group_id", "metarr_path", "player_path"),
}


@dataclass(frozen=True)
class MetarrPlayerGroup:
    id: int
    name: str
    type: str
    enabled: bool
    skip_active: bool


@dataclass(frozen=True)
class MetarrPlayer:
    id: int
    group_id: int | None
    name: str
    type: str
    host: str
    http_port: int | None
    username: str | None
    password: str | None = field(repr=False)
    api_key: str | None = field(repr=False)
    enabled: bool


@dataclass(frozen=True)
class PlayerSetup:
    groups: list[MetarrPlayerGroup]
    players: list[MetarrPlayer]
    mappings: list[tuple[int, str, str]]  # (group id, metarr path, player path)
    #: Group id -> the libraries it serves (media_player_libraries); None: no such table.
    libraries: dict[int, list[Library]] | None = None
    #: Every library of Metarr (a name two of them share is imported as ids).
    catalogue: list[Library] = field(default_factory=list)


def _truthy(value: Any) -> bool:
    """Metarr's booleans: 0/1 on SQLite, true/false on PostgreSQL, NULL for the default."""
    return True if value is None else bool(value) and str(value).lower() not in ("0", "f",
                                                                                   "false")


#: Movies and episodes not removed, and an episode's show not removed either.
_PRESENT = {"movie": "{t}.deleted_at IS NULL",
            "episode": "{t}.deleted_at IS NULL AND s.deleted_at IS NULL"}
_IN_LIBRARY = {"movie": "{t}.library_id = ?", "episode": "s.library_id = ?"}


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqliteSource(MetarrSource):
    """Metarr's SQLite file, opened read-only (its URI kept to open a second handle)."""

    def __init__(self, connection: Any, description: str, uri: str, busy_timeout: float):
        super().__init__(connection, description)
        self._uri, self._busy_timeout = uri, busy_timeout

    def _beside(self) -> MetarrSource | None:
        try:
            conn = sqlite3.connect(self._uri, uri=True, timeout=self._busy_timeout,
                                   check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
        except sqlite3.Error:
            return None  # the survey then runs on this connection alone
        return MetarrSource(conn, self.description)


def open_sqlite(path: str | Path, busy_timeout: float = 30.0) -> MetarrSource:
    """Open Metarr's SQLite file read-only; it is never written, not even its -wal."""
    path = Path(path).expanduser()
    if not path.exists():
        raise MetarrError(
            f"Metarr database {path} does not exist; set [metarr] database in the config "
            "to Metarr's data/metarr.sqlite"
        )
    if path.is_dir():
        raise MetarrError(f"Metarr database {path} is a directory, not a database file")
    try:
        with path.open("rb") as handle:
            head = handle.read(16)
    except OSError as exc:
        raise MetarrError(f"Metarr database {path} cannot be read: {exc.strerror}") from None
    if head and head != b"SQLite format 3\x00":
        raise MetarrError(f"{path} is not an SQLite database (Metarr's is data/metarr.sqlite)")
    uri = f"file:{quote(str(path.resolve()))}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy_timeout, check_same_thread=False)
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise MetarrError(f"Metarr database {path} cannot be opened: {exc}") from None
    source = SqliteSource(conn, str(path), uri, busy_timeout)
    try:
        source.check_schema()
    except MetarrError:
        source.close()
        raise
    return source


# --- PostgreSQL -------------------------------------------------------------------------
# psycopg 3 is an optional extra, imported only when a postgresql:// URL is used.

PG_SCHEMES = ("postgresql://", "postgres://")
PG_EXTRA_HINT = "pip install 'metarr-sync[postgres]'"


def is_postgres_url(database: str) -> bool:
    return database.strip().lower().startswith(PG_SCHEMES)


def describe_url(url: str) -> str:
    """The URL as it may be shown: no password, no query string (it may hold one too)."""
    parts = urlsplit(url.strip())
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    shown = f"{parts.scheme}://{user + '@' if user else ''}{hosts}{parts.path}"
    return shown


class PostgresSource(MetarrSource):
    """Metarr's PostgreSQL database over one read-only psycopg connection."""

    dialect: Dialect = POSTGRES

    def __init__(self, connection: Any, description: str, secrets: Sequence[str] = ()):
        super().__init__(connection, description)
        self._secrets = [s for s in secrets if s]

    def query(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Sequence[Any]]:
        import psycopg

        try:
            with self.conn.cursor() as cursor:
                # No parameters: pass None, so psycopg does not parse the text for them.
                cursor.execute(_sql(self.dialect, sql), tuple(params) or None)
                rows = cursor.fetchall() if cursor.description else []
            # End the read-only transaction at once: a reader that idles inside one holds
            # back Metarr's vacuum for the whole run (and may be cut off by the server).
            self.conn.rollback()
        except psycopg.Error as exc:
            with contextlib.suppress(Exception):
                self.conn.rollback()
            raise MetarrError(self._explain(exc)) from None
        yield from rows

    def checks(self, kind: str) -> Checks:
        """As MetarrSource.checks, in one query the server aggregates (md5 of the paths
        in id order)."""
        table, path = TABLES[kind]
        return {int(r[0]): [int(r[1]), int(r[2]), int(r[3]), r[4]] for r in self.query(
            f"SELECT id / {BUCKET}, count(*), coalesce(sum(id), 0), coalesce(sum(CASE WHEN "
            f"deleted_at IS NOT NULL THEN id END), 0), md5(string_agg(coalesce({path}, ''), "
            f"E'\\n' ORDER BY id)) FROM {table} GROUP BY 1")}

    def _explain(self, exc: Exception) -> str:
        sqlstate = getattr(exc, "sqlstate", None) or ""
        detail = _first_line(str(exc), self._secrets)
        where = f"Metarr database {self.description}"
        if sqlstate == "55P03":  # lock_not_available: waited lock_timeout
            return (f"{where} is locked by another program (waited for the lock timeout): "
                    f"{detail}")
        if sqlstate == "42501":  # insufficient_privilege
            return f"{where}: the user may not read it ({detail}); grant it SELECT"
        if sqlstate == "25006":  # read_only_sql_transaction
            return f"{where} is opened read-only; metarr-sync never writes it: {detail}"
        if sqlstate.startswith("08") or getattr(self.conn, "closed", False):
            return f"{where}: the connection to the PostgreSQL server was lost: {detail}"
        return f"{where} cannot be read: {detail}"

    def columns(self, table: str) -> set[str]:
        # information_schema, in the first schema of the search_path holding the table,
        # like an unqualified name in the queries resolves.
        found = {row[0] for row in self.query(
            "SELECT c.column_name FROM information_schema.columns c "
            "WHERE c.table_name = ? AND c.table_schema = ("
            "  SELECT s.schema_name FROM unnest(current_schemas(false)) "
            "  WITH ORDINALITY AS s(schema_name, position) "
            "  WHERE EXISTS (SELECT 1 FROM information_schema.tables t "
            "                WHERE t.table_schema = s.schema_name AND t.table_name = ?) "
            "  ORDER BY s.position LIMIT 1)", (table, table))}
        if not found:
            # information_schema hides tables the user has no privilege on: say so rather
            # than calling them missing.
            exists = next(iter(self.query("SELECT to_regclass(?) IS NOT NULL", (table,))))
            if exists[0]:
                user = next(iter(self.query("SELECT current_user")))[0]
                raise MetarrError(
                    f"Metarr database {self.description}: user {user} may not read table "
                    f"{table}; grant it SELECT on Metarr's tables")
        return found


def _first_line(text: str, secrets: Sequence[str] = ()) -> str:
    """libpq's message, shortened to its cause, with any secret masked."""
    from metarr_sync.logs import redact

    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[0] if lines else text.strip()
    line = re.sub(r"^connection failed:\s*", "", line)
    line = re.sub(r"\s*(FATAL|ERROR):\s+", " ", line).strip()
    return redact(line, secrets)


def _connect_cause(text: str, target: str) -> str:
    """Why a connection failed, in the user's words, from libpq's message."""
    lowered = text.lower()
    match = re.search(r'database "([^"]*)" does not exist', text)
    if match:
        return (f"database {match.group(1)} does not exist on the PostgreSQL server at "
                f"{target}; name Metarr's database in the URL")
    if any(sign in lowered for sign in ("authentication failed", "no password supplied",
                                        "pg_hba.conf", "permission denied for database")
           ) or re.search(r'role "[^"]*" does not exist', text):
        return (f"the PostgreSQL server at {target} refused the credentials; check the "
                "user in the URL and [metarr] password (or PGPASSFILE)")
    if any(sign in lowered for sign in ("connection refused", "timeout", "resolve host",
                                        "translate host", "no route", "unreachable",
                                        "no such file or directory", "could not connect")):
        return f"cannot reach the PostgreSQL server at {target}"
    return f"cannot connect to the PostgreSQL server at {target}"


def open_postgres(url: str, timeout: float = 30.0, password: str | None = None
                  ) -> PostgresSource:
    """Open Metarr's PostgreSQL database read-only, from a postgresql:// URL.

    `password` (from [metarr] password) wins over one in the URL; without either, libpq's
    own means apply (PGPASSFILE / ~/.pgpass, PGPASSWORD). `timeout` bounds connecting and
    waiting for locks, like the busy timeout on SQLite.
    """
    description = describe_url(url)
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:
        raise MetarrError(
            f"Metarr database {description} is on PostgreSQL, which needs the optional "
            f"driver: {PG_EXTRA_HINT}"
        ) from None
    url_password = urlsplit(url.strip()).password or ""
    secrets = [s for s in (password, url_password) if s]
    if secrets:
        from metarr_sync.logs import add_secrets

        add_secrets(secrets)  # a -v log or a traceback must never show them either
    try:
        params = conninfo_to_dict(url.strip())
    except psycopg.Error as exc:
        raise MetarrError(f"{description} is not a valid PostgreSQL URL: "
                          f"{_first_line(str(exc), secrets)}") from None
    host = params.get("host") or "the local socket"
    target = f"{host}:{params['port']}" if params.get("port") else str(host)
    options: dict[str, Any] = {"application_name": params.get("application_name")
                               or "metarr-sync"}
    if not params.get("connect_timeout"):
        options["connect_timeout"] = max(2, math.ceil(timeout))  # libpq's minimum is 2
    if password:
        options["password"] = password
    try:
        conn = psycopg.connect(url.strip(), **options)
    except psycopg.Error as exc:
        detail = _first_line(str(exc), secrets)
        if isinstance(exc, psycopg.errors.ConnectionTimeout):
            cause = (f"the PostgreSQL server at {target} did not answer within "
                     f"{options.get('connect_timeout', params.get('connect_timeout'))} s")
        else:
            cause = _connect_cause(str(exc), target)
        raise MetarrError(f"Metarr database {description}: {cause} ({detail})") from None
    source = PostgresSource(conn, description, secrets)
    try:
        # Every transaction is BEGIN READ ONLY, and the session default says so too. The
        # session reads naive times as UTC and prints ISO dates, whatever the server's
        # defaults, so stamps come out the same as on SQLite. All of it parameterised.
        conn.read_only = True
        for name, value in (("default_transaction_read_only", "on"), ("TimeZone", "UTC"),
                            ("DateStyle", "ISO, YMD"),
                            ("lock_timeout", f"{max(1, int(timeout * 1000))}ms")):
            conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        conn.commit()
        source.check_schema()
    except psycopg.Error as exc:
        source.close()
        raise MetarrError(source._explain(exc)) from None
    except MetarrError:
        source.close()
        raise
    return source


def open_source(database: str, busy_timeout: float = 30.0, password: str | None = None
                ) -> MetarrSource:
    """Open Metarr's database named by a file path or a postgresql:// URL."""
    if is_postgres_url(database):
        return open_postgres(database, busy_timeout, password)
    return open_sqlite(database, busy_timeout)
