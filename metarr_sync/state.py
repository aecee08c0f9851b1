"""The tool's own SQLite state: what Metarr looked like, the queue, deliveries, runs.

Tables
- `items`: every Metarr item as seen at the last collection (stamp, removed, paths). The
  next collection compares Metarr with it, so an unchanged item is never sent again and a
  row that vanished from Metarr is noticed as removed. A new path is a change even when
  the stamp did not move: Radarr/Sonarr upgrades and renames make Metarr rewrite a
  movie's or episode's file path in place (same row id).
- `players`: per configured player: when its baseline was taken, and whether it is
  disabled after an authentication failure.
- `sync_queue`: per (player, item) the work still to deliver: pending, deferred (someone
  was watching), failed (needs a person), sent (delivered, not yet verified on the
  player) or unverified (delivered, but not seen on the player).
  Items stay here until a player confirms them, so nothing is lost when a player, the
  NAS or this tool goes down: delivery is at-least-once.
  `previous_paths` (schema 2) lists, for an item whose path changed, every earlier path
  the player may still have an entry for: the path the player last received
  (`player_sync_status.path`), the path of the last collection, and every path this entry
  held before it was delivered (the player may have found one by its own scanning). It
  goes with the entry when the player confirms the new file, so two renames before a
  delivery still get the first file's entry removed. An extra path costs nothing: the
  adapters look each one up exactly and act only on what the player really lists.
  `deferred_since` (schema 3) is when the
  entry was first deferred because someone was watching; `max_defer` counts from it.
- `player_sync_status`: per (player, item) what was last delivered (stamp, removed, and
  since schema 2 the path).
- `runs`, `run_players`: history for `status` and its metrics.
- `collect_marks` (schema 5): per kind, where the last collection left off (when it
  began, Metarr's checks then, when the kind was last read whole), so that a run reads
  only what changed since (metarr_sync/collect.py). `items` then holds every item as
  last seen, whether it was read in this run or an earlier one.
- `watcher`, `player_alerts`, `alert_log` (schema 6): the heartbeat of `metarr-sync
  watch` (pid, last beat, last run), the condition each player's last alert told
  about, and when alerts last went out or failed (watch.py, alerts.py, `status`).

Every state change of a batch is one transaction.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from metarr_sync.collect import BUCKET, Mark
from metarr_sync.players.base import Result  # no adapter: light enough for `status`
from metarr_sync.stamps import now_stamp, stamp_ago

if TYPE_CHECKING:  # `status` reads no items: it never imports the Metarr reader or players
    from metarr_sync.metarr import Item
    from metarr_sync.players.base import Outcome
    from metarr_sync.players.index import IndexedLibrary, IndexRow

SCHEMA_VERSION = 6


class QueueStatus(StrEnum):
    """The state of a queue entry (sync_queue.status, `queue list`, --json)."""

    PENDING = "pending"  # sent at the next run
    DEFERRED = "deferred"  # someone was watching: not tried, sent at the next run
    FAILED = "failed"  # needs a person (`queue retry`)
    UNVERIFIED = "unverified"  # sent, not seen on the player
    # Delivered, waiting to be verified on the player (kept until it is seen there).
    SENT = "sent"
    # A removal not sent, by the mass-removal guard or because the disk could not tell
    # whether its media is gone (re-examined by every run; the cause is in last_error).
    HELD = "held"


QUEUE_STATUSES = tuple(QueueStatus)
# An item not seen on its player after this many deliveries stays `unverified` for a
# person to look at (`queue retry` sends it again), instead of being resent forever.
MAX_DELIVERIES = 3
# A removal the player has not picked up is reported once more, not three times: each
# report of a removed file can cost a rescan of the whole library root (Jellyfin).
MAX_REMOVAL_DELIVERIES = 2

_ITEM_COLUMNS = ("item_key", "kind", "item_id", "path", "title", "series_path", "library_id",
                 "ids", "season", "episode", "series_id", "stamp", "removed")
_ITEM_DDL = """
    item_key TEXT NOT NULL, kind TEXT NOT NULL, item_id INTEGER NOT NULL, path TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '', series_path TEXT, library_id INTEGER, ids TEXT NOT NULL
    DEFAULT '{}', season INTEGER, episode INTEGER, series_id INTEGER, stamp TEXT NOT NULL
    DEFAULT '', removed INTEGER NOT NULL DEFAULT 0
"""

MIGRATIONS: list[str] = [
    # 1: the first schema. sync_queue.next_attempt_at is never written: there is no delay
    # between runs to store (a pending item goes at the next run); dropping the column
    # would need a schema step that makes older versions refuse the state file.
    f"""
    CREATE TABLE items ({_ITEM_DDL}, PRIMARY KEY (item_key)) WITHOUT ROWID;
    CREATE TABLE players (
        name TEXT PRIMARY KEY, type TEXT, baselined_at TEXT,
        disabled_reason TEXT, disabled_at TEXT
    );
    CREATE TABLE sync_queue ({_ITEM_DDL},
        player TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT, next_attempt_at TEXT,
        enqueued_at TEXT NOT NULL, updated_at TEXT NOT NULL, source TEXT NOT NULL DEFAULT 'run',
        PRIMARY KEY (player, item_key)
    ) WITHOUT ROWID;
    CREATE INDEX sync_queue_status ON sync_queue (status, player);
    CREATE TABLE player_sync_status (
        player TEXT NOT NULL, item_key TEXT NOT NULL, stamp TEXT NOT NULL,
        removed INTEGER NOT NULL, synced_at TEXT NOT NULL, run_id INTEGER,
        verified_at TEXT,
        PRIMARY KEY (player, item_key)
    ) WITHOUT ROWID;
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY, trigger TEXT NOT NULL, command TEXT NOT NULL,
        started_at TEXT NOT NULL, finished_at TEXT, status TEXT, exit_code INTEGER,
        items INTEGER NOT NULL DEFAULT 0, synced INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE run_players (
        run_id INTEGER NOT NULL REFERENCES runs(id), player TEXT NOT NULL, type TEXT NOT NULL,
        status TEXT NOT NULL, items INTEGER NOT NULL, synced INTEGER NOT NULL,
        failed INTEGER NOT NULL, deferred INTEGER NOT NULL, verified INTEGER NOT NULL DEFAULT 0,
        requests INTEGER NOT NULL, duration_ms INTEGER NOT NULL, error TEXT,
        finished_at TEXT NOT NULL,
        PRIMARY KEY (run_id, player)
    );
    """,
    # 2: previous paths of upgraded/renamed items, and the path each player last received.
    # A delivery recorded under schema 1 was of the path the last collection saw, as long
    # as that collection saw the same version (stamp); otherwise the path is unknown.
    """
    ALTER TABLE sync_queue ADD COLUMN previous_paths TEXT;
    ALTER TABLE player_sync_status ADD COLUMN path TEXT;
    UPDATE player_sync_status SET path = (
        SELECT i.path FROM items i WHERE i.item_key = player_sync_status.item_key
        AND i.stamp = player_sync_status.stamp AND i.removed = player_sync_status.removed);
    """,
    # 3: when each player was last made to rescan a whole library folder (Jellyfin: a
    # report that walks up to the library root), and for which items (JSON list of item
    # keys), so that runs within its verify_after do not make it rescan that folder again
    # while none of those items has been seen yet; and when a queued update was first
    # deferred because someone was watching (max_defer counts from it; cleared when it is
    # delivered).
    """
    ALTER TABLE sync_queue ADD COLUMN deferred_since TEXT;
    CREATE TABLE player_roots (
        player TEXT NOT NULL, root TEXT NOT NULL, reported_at TEXT NOT NULL,
        items TEXT NOT NULL DEFAULT '[]',
        PRIMARY KEY (player, root)
    ) WITHOUT ROWID;
    """,
    # 4: each Jellyfin player's index of its libraries (path -> item id, type, show,
    # provider ids), so that a small run need not list whole libraries (players/
    # jellyfin.py, "The index"). player_index_libraries: per library (its ItemId), the
    # server and folders the index was built for, when it was listed whole and since when
    # the server's later saves have been read (minDateLastSaved of the next update).
    # A series row's `complete`: its episodes are all in the index.
    """
    CREATE TABLE player_index_libraries (
        player TEXT NOT NULL, library TEXT NOT NULL, server_id TEXT NOT NULL,
        locations TEXT NOT NULL, built_at TEXT NOT NULL, saved_since TEXT NOT NULL,
        PRIMARY KEY (player, library)
    ) WITHOUT ROWID;
    CREATE TABLE player_index (
        player TEXT NOT NULL, item_id TEXT NOT NULL, library TEXT NOT NULL,
        path_key TEXT NOT NULL, type TEXT NOT NULL, series_id TEXT,
        complete INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (player, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX player_index_path ON player_index (player, path_key);
    CREATE INDEX player_index_series ON player_index (player, series_id);
    CREATE TABLE player_index_ids (
        player TEXT NOT NULL, provider_key TEXT NOT NULL, item_id TEXT NOT NULL,
        PRIMARY KEY (player, provider_key, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX player_index_ids_item ON player_index_ids (player, item_id);
    """,
    # 5: how far the last collection read Metarr, per kind (movie, series, episode), so
    # that a run reads only the rows changed since (metarr_sync/collect.py): when it
    # began by Metarr's database clock, Metarr's cheap per-bucket checks it was read with
    # (JSON; rows vanished, paths rewritten or soft deletes move no timestamp), and when
    # the kind was last read whole.
    """
    CREATE TABLE collect_marks (
        kind TEXT PRIMARY KEY, read_at TEXT NOT NULL, checks TEXT NOT NULL,
        full_at TEXT NOT NULL
    ) WITHOUT ROWID;
    """,
    # 6: the tables of `metarr-sync watch` and of alerts, one step for both.
    # watcher: the watcher's heartbeat (one row: a state directory has one lock, so one
    # watcher at a time does work): its pid, when it started, its last heartbeat, its last
    # run and what it says of itself; stopped_at once it ended cleanly.
    # player_alerts (alerts.py): per player the condition its last alert told about
    # (problem kinds, comma-separated; '' once it recovered), so that an alert goes out on
    # a change only, never on every run. alert_log: one row, when an alert last went out
    # and the last error of one that did not (for `status`).
    """
    CREATE TABLE watcher (
        id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL,
        started_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL, interval REAL NOT NULL,
        last_run_id INTEGER, status TEXT, stopped_at TEXT
    );
    CREATE TABLE player_alerts (
        player TEXT PRIMARY KEY, condition TEXT NOT NULL, alerted_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE alert_log (
        id INTEGER PRIMARY KEY CHECK (id = 1), last_sent_at TEXT, last_error TEXT,
        last_error_at TEXT
    );
    """,
]



class StateError(Exception):
    """The state database cannot be opened or is from a newer metarr-sync."""


def item_row(item: Item) -> tuple[Any, ...]:
    return (item.key, item.kind, item.id, item.path, item.title, item.series_path,
            item.library_id, json.dumps(item.ids, sort_keys=True), item.season, item.episode,
            item.series_id, item.stamp, int(item.removed))


def row_item(row: sqlite3.Row) -> Item:
    """The Item of a sync_queue row (with the previous paths the entry keeps)."""
    Item = _item_class()  # the class, imported on first use
    series_path = row["series_path"]
    previous = row["previous_paths"]
    # Interned: a show's episodes share one show-folder string, all items a few kinds.
    return Item(kind=sys.intern(row["kind"]), id=row["item_id"], path=row["path"],
                title=row["title"],
                series_path=None if series_path is None else sys.intern(series_path),
                library_id=row["library_id"],
                ids=json.loads(row["ids"] or "{}"), season=row["season"],
                episode=row["episode"], series_id=row["series_id"], stamp=row["stamp"],
                removed=bool(row["removed"]),
                previous_paths=tuple(json.loads(previous)) if previous else ())


def merge_previous(*args: str | None) -> str | None:
    """SQL function previous_paths(list, list, path, path, current): the distinct earlier
    paths of an item as a JSON list (oldest first), leaving out `current`; NULL for none.

    The first two arguments are JSON lists (or NULL), the next two single paths (or NULL).
    """
    *lists, first, second, current = args
    paths: list[str] = []
    for text in lists:
        paths += json.loads(text) if text else []
    paths += [p for p in (first, second) if p]
    kept = [p for p in dict.fromkeys(paths) if p != current]
    return json.dumps(kept) if kept else None


@functools.cache
def _item_class() -> type[Item]:
    """metarr.Item, imported on first use (cached: row_item runs once per queued row)."""
    from metarr_sync.metarr import Item

    return Item


@dataclass(frozen=True)
class QueueEntry:
    player: str
    item: Item
    status: QueueStatus
    attempts: int
    last_error: str | None
    enqueued_at: str
    updated_at: str
    source: str


class FinishedPlayer(Protocol):
    """What a run keeps of one player's pass (player_run.PlayerResult): a run_players row.
    A protocol, so that the state needs nothing from the engine's side."""

    name: str
    type: str

    @property
    def status(self) -> str: ...  # a player_run.PlayerStatus

    items: int
    synced: int
    failed: int
    deferred: int
    verified: int
    requests: int
    duration_ms: int
    error: str | None


@dataclass
class CollectResult:
    changed: int  # items whose stamp, path or removed flag differ from the last collection
    vanished: int  # items that disappeared from Metarr (removed for good)
    enqueued: dict[str, int]  # per player: queue entries added or renewed
    baselined: list[str]  # players whose first run this was
    read: dict[str, int] = field(default_factory=dict)  # per kind: items read from Metarr


def _scope_sql(scope: Mapping[str, Sequence[tuple[str, int]] | None] | None) -> str:
    """SQL on `items AS i`: the items a collection of this scope read all there is of."""
    if scope is None:
        return "1"
    parts = []
    for kind, buckets in scope.items():
        # Kinds and bucket numbers come from collect.py, never from outside: literals.
        if kind not in ("movie", "series", "episode"):
            raise ValueError(kind)
        if buckets is None:
            parts.append(f"i.kind = '{kind}'")
        elif buckets:
            if any(column not in ("item_id", "series_id") for column, _ in buckets):
                raise ValueError(buckets)
            spans = " OR ".join(f"(i.{column} >= {int(b) * BUCKET} AND i.{column} < "
                                f"{(int(b) + 1) * BUCKET})" for column, b in buckets)
            parts.append(f"(i.kind = '{kind}' AND ({spans}))")
    return " OR ".join(parts) or "0"


class State:
    """One connection to the state database; open one per thread."""

    def __init__(self, directory: Path, *, migrate: bool = True):
        self.directory = directory
        self.path = directory / "state.sqlite"
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                        check_same_thread=False)
            self.conn.row_factory = sqlite3.Row
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.conn.create_function("previous_paths", 5, merge_previous, deterministic=True)
            if migrate:
                self._migrate()
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path} cannot be used: {exc}") from None
        except OSError as exc:
            raise StateError(f"state directory {directory} cannot be used: {exc.strerror}"
                             ) from None

    @classmethod
    def open_existing(cls, directory: Path) -> State | None:
        """The state read-only for reporting, or None when no run has created it yet."""
        if not (directory / "state.sqlite").exists():
            return None
        state = cls(directory, migrate=False)
        version = state.conn.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA_VERSION:
            state.close()
            if version > SCHEMA_VERSION:
                raise StateError(f"state database {state.path} is from a newer metarr-sync")
            return cls(directory)
        return state

    def _migrate(self) -> None:
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StateError(f"state database {self.path} is from a newer metarr-sync "
                             f"(schema {version}, this one knows {len(MIGRATIONS)})")
        for number in range(version, len(MIGRATIONS)):
            # executescript commits on its own, so the script carries its transaction.
            self.conn.executescript(
                f"BEGIN IMMEDIATE; {MIGRATIONS[number]}; PRAGMA user_version = {number + 1};"
                " COMMIT;")
        with suppress(OSError):
            os.chmod(self.path, 0o600)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        if self.conn.in_transaction:
            yield self.conn
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self.conn.execute("COMMIT")

    @contextmanager
    def rehearsal(self) -> Iterator[None]:
        """Run state changes and undo them all afterwards (for --dry-run)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            self.conn.execute("ROLLBACK")

    # -- collection ---------------------------------------------------------------------
    def collect(self, items: Iterable[Item], players: Sequence[str],
                lookback: int | None, now: datetime | None = None,
                served: Mapping[str, frozenset[int]] | None = None,
                scope: Mapping[str, Sequence[tuple[str, int]] | None] | None = None
                ) -> CollectResult:
        """Compare Metarr's items with the last collection and queue what changed.

        Players seen for the first time get a baseline instead: items whose stamp lies
        within `lookback` seconds (None: all present items, 0: none) are queued; older
        ones count as already delivered (their baseline needs every item: `scope` None).
        A player in `served` is queued only the items of those library ids (and of none
        known). `scope` (collect.Plan.scope): per kind, where `items` are all Metarr has
        — None for the whole kind, else these buckets of collect.BUCKET values of a
        column (item_id, series_id); a known item missing from them vanished. Kinds left
        out of `scope`: none vanished. No `scope`: `items` are everything.
        """
        served = served or {}
        now = now or datetime.now(UTC)
        stamp_now = now_stamp(now)
        c = self.conn
        within = _scope_sql(scope)
        with self.transaction():
            self._load_temp("current", items)
            c.execute("CREATE TEMP TABLE IF NOT EXISTS changed AS SELECT * FROM items WHERE 0")
            c.execute("DELETE FROM temp.changed")
            c.execute(
                "INSERT INTO temp.changed SELECT cur.* FROM temp.current cur "
                "LEFT JOIN items i ON i.item_key = cur.item_key "
                "WHERE i.item_key IS NULL OR i.stamp != cur.stamp OR i.removed != cur.removed "
                # Upgraded or renamed in place: Metarr may leave every timestamp alone.
                "OR i.path != cur.path")
            changed = c.execute("SELECT count(*) FROM temp.changed").fetchone()[0]
            # Metarr's garbage collector deletes rows 30 days after a soft delete; an item
            # we knew and that vanished without being seen as removed was removed too.
            vanished = c.execute(
                "INSERT INTO temp.changed SELECT i.item_key, i.kind, i.item_id, i.path, "
                "i.title, i.series_path, i.library_id, i.ids, i.season, i.episode, "
                "i.series_id, i.stamp, 1 FROM items i "
                f"WHERE i.removed = 0 AND ({within}) AND NOT EXISTS "
                "(SELECT 1 FROM temp.current cur WHERE cur.item_key = i.item_key)"
            ).rowcount
            known = {r[0] for r in c.execute("SELECT name FROM players WHERE baselined_at "
                                             "IS NOT NULL")}
            enqueued: dict[str, int] = {}
            baselined: list[str] = []
            for player in players:
                if player in known:
                    enqueued[player] = self._enqueue_from(player, "temp.changed", "", (),
                                                          stamp_now, "run",
                                                          served.get(player))
                    continue
                params: tuple[str, ...]
                if lookback is None:
                    where, params = "WHERE t.removed = 0", ()
                elif lookback == 0:
                    where, params = "WHERE 0", ()
                else:
                    cutoff = stamp_ago(lookback, now)
                    where, params = "WHERE t.stamp >= ?", (cutoff,)
                enqueued[player] = self._enqueue_from(player, "temp.current", where, params,
                                                      stamp_now, "baseline",
                                                      served.get(player))
                c.execute(
                    "INSERT INTO players (name, baselined_at) VALUES (?, ?) "
                    "ON CONFLICT(name) DO UPDATE SET baselined_at = excluded.baselined_at",
                    (player, stamp_now))
                baselined.append(player)
            c.execute("INSERT OR REPLACE INTO items SELECT * FROM temp.current "
                      "WHERE item_key IN (SELECT item_key FROM temp.changed)")
            c.execute(f"DELETE FROM items AS i WHERE ({within}) AND i.item_key NOT IN "
                      "(SELECT item_key FROM temp.current)")
            read = dict(c.execute("SELECT kind, count(*) FROM temp.current GROUP BY kind"
                                  ).fetchall())
        return CollectResult(changed, vanished, enqueued, baselined, read)

    def baselined_players(self) -> set[str]:
        return {r[0] for r in self.conn.execute(
            "SELECT name FROM players WHERE baselined_at IS NOT NULL")}

    def collect_marks(self) -> dict[str, Mark]:
        """Where the last collection left off, per kind (collect.py)."""
        found = {}
        for row in self.conn.execute("SELECT * FROM collect_marks"):
            try:
                checks = {int(k): v for k, v in json.loads(row["checks"]).items()}
            except (ValueError, AttributeError):
                continue  # unreadable: that kind is read whole
            found[row["kind"]] = Mark(row["read_at"], checks, row["full_at"])
        return found

    def save_marks(self, marks: Mapping[str, Mark]) -> None:
        with self.transaction() as c:
            c.executemany("INSERT OR REPLACE INTO collect_marks VALUES (?, ?, ?, ?)",
                          [(kind, m.read_at, json.dumps(m.checks), m.whole_at)
                           for kind, m in marks.items()])

    def _enqueue_from(self, player: str, table: str, where: str, params: Sequence[Any],
                      stamp_now: str, source: str,
                      libraries: frozenset[int] | None = None) -> int:
        """Queue the items of `table` (alias `t` in `where`) for `player`, keeping the
        earlier paths the player may still list (see the module docstring): the path of
        the last collection (`items`, not yet updated) and the one it last received.
        `libraries`: only items of these library ids (or of none known)."""
        if libraries is not None:
            # Ids are ints from Metarr's own table: safe to write into the statement.
            ids = ", ".join(str(int(i)) for i in sorted(libraries)) or "NULL"
            where = (f"{where or 'WHERE 1'} AND (t.library_id IS NULL OR t.library_id "
                     f"IN ({ids}))")
        columns = ", ".join(_ITEM_COLUMNS)
        selected = ", ".join(f"t.{c}" for c in _ITEM_COLUMNS)
        cursor = self.conn.execute(
            f"INSERT INTO sync_queue ({columns}, previous_paths, player, status, attempts, "
            f"enqueued_at, updated_at, source) SELECT {selected}, "
            # The function runs only for the rare item whose path changed.
            "CASE WHEN i.path != t.path OR (d.removed = 0 AND d.path != t.path) THEN "
            "previous_paths(NULL, NULL, i.path, CASE WHEN d.removed = 0 THEN d.path END, "
            f"t.path) END, ?, 'pending', 0, ?, ?, ? FROM {table} t "
            "LEFT JOIN items i ON i.item_key = t.item_key "
            "LEFT JOIN player_sync_status d ON d.player = ? AND d.item_key = t.item_key "
            # SQLite needs a WHERE before ON CONFLICT to parse an upsert from a SELECT.
            f"{where or 'WHERE 1'} "
            "ON CONFLICT(player, item_key) DO UPDATE SET "
            "kind = excluded.kind, item_id = excluded.item_id, path = excluded.path, "
            "title = excluded.title, series_path = excluded.series_path, "
            "library_id = excluded.library_id, ids = excluded.ids, season = excluded.season, "
            "episode = excluded.episode, series_id = excluded.series_id, "
            "stamp = excluded.stamp, removed = excluded.removed, status = 'pending', "
            "attempts = 0, last_error = NULL, "
            "updated_at = excluded.updated_at, source = excluded.source, "
            # An entry not yet confirmed may have reached the player (or the player found
            # it on its own): its path joins the ones to replace.
            "previous_paths = CASE WHEN sync_queue.previous_paths IS NULL AND "
            "excluded.previous_paths IS NULL AND sync_queue.path = excluded.path THEN NULL "
            "ELSE previous_paths(sync_queue.previous_paths, excluded.previous_paths, "
            "sync_queue.path, NULL, excluded.path) END",
            (player, stamp_now, stamp_now, source, player, *params))
        return cursor.rowcount

    def _load_temp(self, table: str, items: Iterable[Item]) -> None:
        """Fill temp table `table` with `items`, so SQL can compare them with the state."""
        self.conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({_ITEM_DDL}, "
                          "PRIMARY KEY (item_key)) WITHOUT ROWID")
        self.conn.execute(f"DELETE FROM temp.{table}")
        marks = ", ".join("?" for _ in _ITEM_COLUMNS)
        self.conn.executemany(f"INSERT OR REPLACE INTO temp.{table} VALUES ({marks})",
                              (item_row(i) for i in items))

    def enqueue(self, items: Sequence[Item], players: Sequence[str], source: str,
                served: Mapping[str, frozenset[int]] | None = None) -> int:
        """Queue named items for players regardless of what was delivered before (a
        player in `served`: only the items of those library ids)."""
        stamp_now = now_stamp()
        count = 0
        served = served or {}
        with self.transaction():
            c = self.conn
            self._load_temp("named", items)
            for player in players:
                count += self._enqueue_from(player, "temp.named", "", (), stamp_now, source,
                                            served.get(player))
            # The named items are now queued for everyone: the next collection must not
            # queue the same versions again.
            c.execute("INSERT OR REPLACE INTO items SELECT * FROM temp.named")
        return count

    def forget_players(self, keep: Sequence[str]) -> None:
        """Drop queue and baseline of players no longer in the config."""
        marks = ", ".join("?" for _ in keep) or "NULL"
        with self.transaction():
            for table, column in (("sync_queue", "player"), ("player_sync_status", "player"),
                                  ("players", "name"), ("player_roots", "player"),
                                  ("player_index_libraries", "player"),
                                  ("player_index", "player"), ("player_index_ids", "player"),
                                  ("player_alerts", "player")):
                self.conn.execute(f"DELETE FROM {table} WHERE {column} NOT IN ({marks})",
                                  tuple(keep))

    def drop_unserved(self, player: str, libraries: frozenset[int]) -> list[Item]:
        """Take out of `player`'s queue the entries of libraries it does not serve (queued
        before its `libraries` said so), and return them."""
        ids = ", ".join(str(int(i)) for i in sorted(libraries)) or "NULL"
        where = f"player = ? AND library_id IS NOT NULL AND library_id NOT IN ({ids})"
        with self.transaction():
            gone = [row_item(r) for r in self.conn.execute(
                f"SELECT * FROM sync_queue WHERE {where} ORDER BY kind, path", (player,))]
            if gone:
                self.conn.execute(f"DELETE FROM sync_queue WHERE {where}", (player,))
        return gone

    # -- the queue ----------------------------------------------------------------------
    def work(self, player: str, keys: Sequence[str] | None = None,
             shared: dict[tuple[Any, ...], Item] | None = None) -> list[Item]:
        """Items to deliver to `player` now, in a stable order (kind, then path).

        `shared` lets the players of one run share one Item per identical queue row:
        usually every player is sent the same changes, and a bulk sync queues 100,000s.
        """
        cursor = self.conn.execute(
            "SELECT * FROM sync_queue WHERE player = ? AND (status IN ('pending', 'deferred', "
            "'held') OR (status = 'unverified' AND attempts < CASE WHEN removed THEN ? "
            "ELSE ? END)) ORDER BY kind, path",
            (player, MAX_REMOVAL_DELIVERIES, MAX_DELIVERIES))
        wanted = None if keys is None else set(keys)
        items: list[Item] = []
        for row in cursor:  # row by row: never all rows and all items at once
            if wanted is not None and row["item_key"] not in wanted:
                continue
            if shared is None:
                items.append(row_item(row))
                continue
            same = (*(row[c] for c in _ITEM_COLUMNS), row["previous_paths"])
            item = shared.get(same)
            if item is None:
                item = shared[same] = row_item(row)
            items.append(item)
        return items

    def awaiting_verification(self, player: str, older_than: float = 0.0) -> list[Item]:
        """Items delivered to `player` at least `older_than` seconds ago, not yet verified.

        Removals that stay unverified after their last report are looked at again too
        (never sent again): a server that drops the item later must not leave a warning
        for an item it no longer lists.
        """
        cutoff = stamp_ago(older_than)
        rows = self.conn.execute(
            "SELECT * FROM sync_queue WHERE player = ? AND updated_at <= ? AND (status = 'sent'"
            " OR (status = 'unverified' AND removed AND attempts >= ?)) ORDER BY kind, path",
            (player, cutoff, MAX_REMOVAL_DELIVERIES)).fetchall()
        return [row_item(r) for r in rows]

    def roots_in_flight(self, player: str, within: float) -> dict[str, str]:
        """Library folders `player` was made to rescan whole less than `within` seconds
        ago whose rescan has not been seen yet: every item reported with the folder is
        still waiting to be verified (one seen, or judged, and the rescan has run).
        Folder -> when it was reported."""
        rows = self.conn.execute(
            "SELECT root, reported_at, items FROM player_roots WHERE player = ? "
            "AND reported_at > ?", (player, stamp_ago(within))).fetchall()
        waiting = {r["item_key"] for r in self.conn.execute(
            "SELECT item_key FROM sync_queue WHERE player = ? AND status = 'sent'",
            (player,))} if rows else set()
        found = {}
        for row in rows:
            try:
                keys = json.loads(row["items"])
            except ValueError:
                continue
            if isinstance(keys, list) and keys and all(k in waiting for k in keys):
                found[row["root"]] = row["reported_at"]
        return found

    def record_roots(self, player: str, roots: Mapping[str, Sequence[str]]) -> None:
        """`player` was just made to rescan these library folders whole, for these
        items (folder -> item keys)."""
        stamp_now = now_stamp()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO player_roots (player, root, reported_at, items) "
                "VALUES (?, ?, ?, ?)", [(player, root, stamp_now, json.dumps(list(keys)))
                                        for root, keys in roots.items()])

    # -- a player's item index (Jellyfin, Plex) ------------------------------------------
    def indexed_libraries(self, player: str) -> dict[str, IndexedLibrary]:
        """The libraries (by ItemId) `player`'s index covers, and what it was built for."""
        from metarr_sync.players.index import IndexedLibrary

        return {r["library"]: IndexedLibrary(r["server_id"], json.loads(r["locations"]),
                                             r["built_at"], r["saved_since"])
                for r in self.conn.execute(
                    "SELECT * FROM player_index_libraries WHERE player = ?", (player,))}

    def drop_index(self, player: str, library: str | None = None) -> None:
        """Forget the index of one library of `player` (None: all of it)."""
        where, args = ("player = ?", (player,)) if library is None else (
            "player = ? AND library = ?", (player, library))
        with self.transaction() as c:
            if library is not None:
                c.execute("DELETE FROM player_index_ids WHERE player = ? AND item_id IN ("
                          "SELECT item_id FROM player_index WHERE player = ? AND library = ?)",
                          (player, player, library))
            else:
                c.execute("DELETE FROM player_index_ids WHERE player = ?", (player,))
            c.execute(f"DELETE FROM player_index WHERE {where}", args)
            c.execute(f"DELETE FROM player_index_libraries WHERE {where}", args)

    def index_items(self, player: str, library: str, rows: Sequence[IndexRow], *,
                    fresh: bool = False) -> None:
        """Add or replace items of `player`'s index (a series keeps its `complete`);
        `fresh`: a library being listed whole after drop_index, nothing to replace."""
        if not rows:
            return
        with self.transaction() as c:
            if not fresh:
                c.executemany("DELETE FROM player_index_ids WHERE player = ? AND item_id = ?",
                              [(player, r.item_id) for r in rows])
            c.executemany(
                "INSERT INTO player_index (player, item_id, library, path_key, type, "
                "series_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (player, item_id) DO "
                "UPDATE SET library = excluded.library, path_key = excluded.path_key, "
                "type = excluded.type, series_id = excluded.series_id",
                [(player, r.item_id, library, r.path_key, r.type, r.series_id)
                 for r in rows])
            c.executemany("INSERT OR IGNORE INTO player_index_ids VALUES (?, ?, ?)",
                          [(player, key, r.item_id) for r in rows for key in r.providers])

    def forget_index_items(self, player: str, item_ids: Sequence[str]) -> None:
        """Items the server no longer has (or no longer where the index put them)."""
        with self.transaction() as c:
            for table in ("player_index", "player_index_ids"):
                c.executemany(f"DELETE FROM {table} WHERE player = ? AND item_id = ?",
                              [(player, i) for i in item_ids])

    def index_library(self, player: str, library: str, server_id: str,
                      locations: Sequence[str], saved_since: str, *, built: bool) -> None:
        """Record that `library`'s index is up to date with the server's saves up to
        `saved_since` (`built`: it was just listed whole)."""
        with self.transaction() as c:
            if built:
                c.execute("INSERT OR REPLACE INTO player_index_libraries VALUES "
                          "(?, ?, ?, ?, ?, ?)", (player, library, server_id,
                                                 json.dumps(list(locations)), now_stamp(),
                                                 saved_since))
            else:
                c.execute("UPDATE player_index_libraries SET saved_since = ? WHERE "
                          "player = ? AND library = ?", (saved_since, player, library))

    def index_show_complete(self, player: str, series_id: str) -> None:
        with self.transaction() as c:
            c.execute("UPDATE player_index SET complete = 1 WHERE player = ? AND item_id = ?",
                      (player, series_id))

    def index_at_path(self, player: str, path_key: str, *, library: str | None = None,
                      series_id: str | None = None) -> list[tuple[str, str]]:
        """(item id, type) of the indexed items at `path_key` in a library or show."""
        scope, value = ("library", library) if series_id is None else ("series_id",
                                                                        series_id)
        return [(r[0], r[1]) for r in self.conn.execute(
            f"SELECT item_id, type FROM player_index WHERE player = ? AND path_key = ? "
            f"AND {scope} = ?", (player, path_key, value))]

    def index_with_ids(self, player: str, keys: Sequence[str], *, library: str | None = None,
                       series_id: str | None = None) -> list[str]:
        """Ids of the indexed items of a library or show having any of these provider keys."""
        scope, value = ("library", library) if series_id is None else ("series_id",
                                                                        series_id)
        found: list[str] = []
        for key in keys:
            found += [r[0] for r in self.conn.execute(
                f"SELECT i.item_id FROM player_index_ids k JOIN player_index i ON "
                f"i.player = k.player AND i.item_id = k.item_id WHERE k.player = ? AND "
                f"k.provider_key = ? AND i.{scope} = ?", (player, key, value))]
        return found

    def index_library_of(self, player: str, item_id: str) -> str | None:
        row = self.conn.execute("SELECT library FROM player_index WHERE player = ? AND "
                                "item_id = ?", (player, item_id)).fetchone()
        return str(row[0]) if row else None

    def index_show_is_complete(self, player: str, series_id: str) -> bool:
        row = self.conn.execute("SELECT complete FROM player_index WHERE player = ? AND "
                                "item_id = ?", (player, series_id)).fetchone()
        return bool(row and row[0])

    def queue(self, player: str | None = None, status: QueueStatus | None = None
              ) -> list[QueueEntry]:
        sql = "SELECT * FROM sync_queue WHERE 1"
        params: list[Any] = []
        if player:
            sql += " AND player = ?"
            params.append(player)
        if status:
            sql += " AND status = ?"
            params.append(status)
        rows = self.conn.execute(sql + " ORDER BY player, kind, path", params).fetchall()
        return [QueueEntry(r["player"], row_item(r), QueueStatus(r["status"]), r["attempts"],
                           r["last_error"], r["enqueued_at"],
                           r["updated_at"], r["source"]) for r in rows]

    def record(self, player: str, items: Sequence[Item], outcomes: Iterable[Outcome],
               run_id: int | None, max_attempts: int | None = None) -> dict[str, str]:
        """Store what became of a batch, in one transaction.

        An item to try again (`retry`) stays pending with one more attempt counted; once
        it has failed `max_attempts` runs in a row (None: no limit) it is `failed`, with
        its cause, for a person: a player that never answers must not keep it pending
        for ever. `queue retry` (retry_failed) brings it back with the count reset.
        Returns the items given up on this way: key -> the cause stored.
        """
        by_key = {i.key: i for i in items}
        given_up: dict[str, str] = {}
        stamp_now = now_stamp()
        with self.transaction():
            for outcome in outcomes:
                item = by_key.get(outcome.item_key)
                if item is None:
                    continue
                if outcome.result in (Result.SYNCED, Result.SENT):
                    self.conn.execute(
                        "INSERT OR REPLACE INTO player_sync_status (player, item_key, stamp, "
                        "removed, synced_at, run_id, verified_at, path) VALUES (?, ?, ?, ?, "
                        "?, ?, NULL, ?)", (player, item.key, item.stamp, int(item.removed),
                                           stamp_now, run_id, item.path))
                if outcome.result in (Result.SYNCED, Result.VERIFIED, Result.DROPPED):
                    # Only drop the entry if it still holds the version we delivered (or
                    # judged: "dropped" is a removal whose media is still on disk).
                    self.conn.execute(
                        "DELETE FROM sync_queue WHERE player = ? AND item_key = ? "
                        "AND stamp = ? AND removed = ? AND path = ?",
                        (player, item.key, item.stamp, int(item.removed), item.path))
                if outcome.result == Result.VERIFIED:
                    self.conn.execute(
                        "UPDATE player_sync_status SET verified_at = ? WHERE player = ? "
                        "AND item_key = ?", (stamp_now, player, item.key))
                if outcome.result in (Result.SYNCED, Result.VERIFIED, Result.DROPPED):
                    continue
                if outcome.result == Result.SENT:
                    # Delivered: counts as one delivery, waits in the queue to be verified
                    # (its error says so when the player did not answer in time).
                    self.conn.execute(
                        "UPDATE sync_queue SET status = 'sent', attempts = attempts + 1, "
                        "last_error = ?, updated_at = ?, deferred_since = NULL "
                        "WHERE player = ? AND item_key = ? "
                        "AND stamp = ? AND removed = ? AND path = ?",
                        (outcome.error, stamp_now, player, item.key, item.stamp,
                         int(item.removed), item.path))
                    continue
                if outcome.result == Result.UNVERIFIED:
                    # Its delivery was counted when it was sent.
                    self.conn.execute(
                        "UPDATE sync_queue SET status = 'unverified', last_error = ?, "
                        "updated_at = ? WHERE player = ? AND item_key = ?",
                        (outcome.error, stamp_now, player, item.key))
                    continue
                status = {Result.FAILED: QueueStatus.FAILED, Result.DEFERRED: QueueStatus.DEFERRED,
                          Result.HELD: QueueStatus.HELD}.get(outcome.result, QueueStatus.PENDING)
                # Deferred and held items were not tried: no attempt is counted.
                tried = 0 if outcome.result in (Result.DEFERRED, Result.HELD) else 1
                error = outcome.error
                if status == QueueStatus.PENDING and max_attempts:
                    row = self.conn.execute(
                        "SELECT attempts FROM sync_queue WHERE player = ? AND item_key = ?",
                        (player, item.key)).fetchone()
                    runs = (row[0] if row else 0) + tried
                    if runs >= max_attempts:
                        # The last allowed attempt failed: for a person, with its cause.
                        status, error = QueueStatus.FAILED, gave_up(error, runs)
                        given_up[item.key] = error
                # An upsert: finish() may re-judge an item an earlier batch of this run
                # recorded as synced (its queue row is gone); the item must come back.
                # A deferral keeps the time of the first one, for max_defer.
                marks = ", ".join("?" for _ in _ITEM_COLUMNS)
                previous = json.dumps(item.previous_paths) if item.previous_paths else None
                deferred = stamp_now if outcome.result == Result.DEFERRED else None
                self.conn.execute(
                    f"INSERT INTO sync_queue ({', '.join(_ITEM_COLUMNS)}, previous_paths, "
                    f"player, status, attempts, last_error, enqueued_at, updated_at, "
                    f"deferred_since) VALUES ({marks}, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "ON CONFLICT(player, item_key) DO UPDATE "
                    "SET status = excluded.status, attempts = attempts + ?, "
                    "last_error = excluded.last_error, updated_at = excluded.updated_at, "
                    "deferred_since = COALESCE(deferred_since, excluded.deferred_since)",
                    (*item_row(item), previous, player, status, tried, error,
                     stamp_now, stamp_now, deferred, tried))
        return given_up

    def deferred_since(self, player: str) -> dict[str, str]:
        """Per item key: when the update waiting for `player` was first deferred."""
        return {row[0]: row[1] for row in self.conn.execute(
            "SELECT item_key, deferred_since FROM sync_queue WHERE player = ? "
            "AND deferred_since IS NOT NULL", (player,))}

    def library_size(self) -> int:
        """Items Metarr lists now (at the last collection), removed ones left out: the
        library the removal guard measures a run's removals against."""
        return int(self.conn.execute("SELECT count(*) FROM items WHERE removed = 0"
                                     ).fetchone()[0])

    def retry_failed(self, player: str | None = None,
                     keys: Sequence[str] | None = None) -> int:
        sql = ("UPDATE sync_queue SET status = 'pending', attempts = 0, "
               "updated_at = ? WHERE status IN ('failed', 'unverified')")
        params: list[Any] = [now_stamp()]
        if player:
            sql += " AND player = ?"
            params.append(player)
        if keys:
            sql += f" AND item_key IN ({', '.join('?' for _ in keys)})"
            params.extend(keys)
        with self.transaction():
            return self.conn.execute(sql, params).rowcount

    def clear_queue(self, player: str | None = None, status: QueueStatus | None = None) -> int:
        sql, params = "DELETE FROM sync_queue WHERE 1", []
        if player:
            sql += " AND player = ?"
            params.append(player)
        if status:
            sql += " AND status = ?"
            params.append(status)
        with self.transaction():
            return self.conn.execute(sql, params).rowcount

    def delivered(self, player: str, key: str) -> tuple[str, bool] | None:
        row = self.conn.execute(
            "SELECT stamp, removed FROM player_sync_status WHERE player = ? AND item_key = ?",
            (player, key)).fetchone()
        return (row[0], bool(row[1])) if row else None

    # -- players ------------------------------------------------------------------------
    def disabled_reason(self, player: str) -> str | None:
        row = self.conn.execute("SELECT disabled_reason FROM players WHERE name = ?",
                                (player,)).fetchone()
        return row[0] if row else None

    def disable_player(self, player: str, reason: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO players (name, disabled_reason, disabled_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET disabled_reason = excluded.disabled_reason, "
                "disabled_at = excluded.disabled_at", (player, reason, now_stamp()))

    def enable_player(self, player: str) -> bool:
        with self.transaction():
            return self.conn.execute(
                "UPDATE players SET disabled_reason = NULL, disabled_at = NULL "
                "WHERE name = ? AND disabled_reason IS NOT NULL", (player,)).rowcount > 0

    # -- alerts (alerts.py) ---------------------------------------------------------------
    def alert_conditions(self) -> dict[str, str]:
        """Per player, the condition its last alert told about ('' : recovered)."""
        return {r[0]: r[1] for r in self.conn.execute(
            "SELECT player, condition FROM player_alerts")}

    def set_alert_condition(self, player: str, condition: str) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT INTO player_alerts (player, condition, alerted_at) VALUES (?, ?, ?) "
                "ON CONFLICT(player) DO UPDATE SET condition = excluded.condition, "
                "alerted_at = excluded.alerted_at", (player, condition, now_stamp()))

    def alert_facts(self, player: str) -> dict[QueueStatus, tuple[int, str | None]]:
        """What waits for a person in `player`'s queue: per status (failed, held, and
        unverified given up on after MAX_DELIVERIES) how many, and the cause of the
        entry judged first."""
        facts: dict[QueueStatus, tuple[int, str | None]] = {}
        for status, extra in ((QueueStatus.FAILED, ""), (QueueStatus.HELD, ""),
                              (QueueStatus.UNVERIFIED, f" AND attempts >= {MAX_DELIVERIES}")):
            where = f"player = ? AND status = ?{extra}"
            count = self.conn.execute(f"SELECT count(*) FROM sync_queue WHERE {where}",
                                      (player, status.value)).fetchone()[0]
            if count:
                first = self.conn.execute(
                    f"SELECT last_error FROM sync_queue WHERE {where} "
                    "ORDER BY updated_at, item_key LIMIT 1", (player, status.value)).fetchone()
                facts[status] = (count, first[0])
        return facts

    def last_pass_failed(self, player: str) -> bool:
        """Whether the player's last recorded pass that did something (sent a request,
        or failed) failed as a whole."""
        row = self.conn.execute(
            "SELECT status FROM run_players WHERE player = ? AND (requests > 0 OR "
            "status = 'failed') ORDER BY run_id DESC LIMIT 1", (player,)).fetchone()
        return row is not None and row[0] == "failed"

    def record_alert_delivery(self, error: str | None) -> None:
        """An alert went out (error None) or did not (the reason, secret-free)."""
        column = "last_sent_at" if error is None else "last_error_at"
        with self.transaction():
            self.conn.execute("INSERT OR IGNORE INTO alert_log (id) VALUES (1)")
            self.conn.execute(f"UPDATE alert_log SET {column} = ? WHERE id = 1", (now_stamp(),))
            if error is not None:
                self.conn.execute("UPDATE alert_log SET last_error = ? WHERE id = 1", (error,))

    def alert_log(self) -> dict[str, Any] | None:
        """When an alert last went out, and the last error of one that did not."""
        row = self.conn.execute(
            "SELECT last_sent_at, last_error, last_error_at FROM alert_log WHERE id = 1"
        ).fetchone()
        return dict(row) if row else None

    # -- runs ---------------------------------------------------------------------------
    def start_run(self, trigger: str, command: str) -> int:
        with self.transaction():
            cursor = self.conn.execute(
                "INSERT INTO runs (trigger, command, started_at) VALUES (?, ?, ?)",
                (trigger, command, now_stamp()))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def finish_player(self, run_id: int, result: FinishedPlayer) -> None:
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO run_players VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?)",
                (run_id, result.name, result.type, result.status, result.items,
                 result.synced, result.failed, result.deferred, result.verified,
                 result.requests, result.duration_ms, result.error, now_stamp()))

    def finish_run(self, run_id: int, status: str, exit_code: int, items: int, synced: int,
                   failed: int) -> None:
        with self.transaction():
            self.conn.execute(
                "UPDATE runs SET finished_at = ?, status = ?, exit_code = ?, items = ?, "
                "synced = ?, failed = ? WHERE id = ?",
                (now_stamp(), status, exit_code, items, synced, failed, run_id))

    # -- `metarr-sync watch` -------------------------------------------------------------
    def watcher_started(self, pid: int, interval: float) -> None:
        stamp_now = now_stamp()
        with self.transaction():
            self.conn.execute(
                "INSERT OR REPLACE INTO watcher (id, pid, started_at, heartbeat_at, interval, "
                "last_run_id, status, stopped_at) VALUES (1, ?, ?, ?, ?, NULL, 'starting', "
                "NULL)", (pid, stamp_now, stamp_now, interval))

    def watcher_beat(self, pid: int, status: str | None = None,
                     last_run_id: int | None = None) -> None:
        """The watcher `pid` is alive now; its status line and last run, when given."""
        with self.transaction():
            self.conn.execute(
                "UPDATE watcher SET heartbeat_at = ?, status = COALESCE(?, status), "
                "last_run_id = COALESCE(?, last_run_id) WHERE pid = ?",
                (now_stamp(), status, last_run_id, pid))

    def watcher_stopped(self, pid: int, status: str) -> None:
        with self.transaction():
            self.conn.execute("UPDATE watcher SET stopped_at = ?, status = ? WHERE pid = ?",
                              (now_stamp(), status, pid))

    def watcher(self) -> dict[str, Any] | None:
        """The last watcher's row with its last run's status and end (`last_run_status`,
        `last_run_finished_at`), or None when no watcher ever ran here."""
        row = self.conn.execute(
            "SELECT w.*, r.status AS last_run_status, r.finished_at AS last_run_finished_at "
            "FROM watcher w LEFT JOIN runs r ON r.id = w.last_run_id WHERE w.id = 1"
        ).fetchone()
        return dict(row) if row else None

    def watch_schedule(self) -> dict[str, tuple[int, str | None]]:
        """Per player (not disabled after an authentication failure): queue entries a
        later run would send again (pending, deferred, unverified below its limit; not
        held removals, which wait for a person) and the oldest delivery waiting to be
        verified (its updated_at), for `watch`'s retries and verifications."""
        found: dict[str, tuple[int, str | None]] = {}
        for row in self.conn.execute(
                "SELECT player, SUM(status IN ('pending', 'deferred') OR (status = "
                "'unverified' AND attempts < CASE WHEN removed THEN ? ELSE ? END)), "
                "MIN(CASE WHEN status = 'sent' THEN updated_at END) FROM sync_queue "
                "WHERE player NOT IN (SELECT name FROM players WHERE disabled_reason IS NOT "
                "NULL) GROUP BY player", (MAX_REMOVAL_DELIVERIES, MAX_DELIVERIES)):
            if row[1] or row[2]:
                found[row[0]] = (int(row[1] or 0), row[2])
        return found

    # -- reports: `players list`, `queue list`, `status` (read only) ----------------------
    def player_states(self) -> dict[str, dict[str, Any]]:
        """Per player the state knows: baseline time and any authentication-failure disable."""
        return {r["name"]: dict(r) for r in self.conn.execute("SELECT * FROM players")}

    def last_results(self) -> dict[str, dict[str, Any]]:
        """Per player, its row of the most recent run it took part in."""
        rows = self.conn.execute(
            "SELECT rp.* FROM run_players rp JOIN (SELECT player, MAX(run_id) AS run_id "
            "FROM run_players GROUP BY player) last USING (player, run_id)")
        return {r["player"]: dict(r) for r in rows}

    def run_history(self, limit: int = 10) -> list[dict[str, Any]]:
        """The latest runs, newest first, with their duration in seconds (None: unfinished)."""
        rows = self.conn.execute(
            f"SELECT *, {_SECONDS} AS duration FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [dict(r) for r in rows]

    def queue_summary(self) -> dict[str, QueueSummary]:
        """Per player: entries per status, oldest waiting entry, items given up on."""
        summary: dict[str, QueueSummary] = {}
        for row in self.conn.execute(
                "SELECT player, status, count(*), MIN(enqueued_at), "
                "SUM(status = 'unverified' AND attempts >= ?) "
                "FROM sync_queue GROUP BY player, status", (MAX_DELIVERIES,)):
            entry = summary.setdefault(row[0], QueueSummary())
            entry.counts[QueueStatus(row[1])] = row[2]
            entry.stuck += row[4] or 0
            if row[1] in WAITING_STATUSES and (entry.oldest_waiting is None
                                               or row[3] < entry.oldest_waiting):
                entry.oldest_waiting = row[3]
        return summary

    def waiting_since(self, cutoff: str) -> dict[str, int]:
        """Per player: entries still to deliver that were queued before `cutoff`."""
        marks = ", ".join("?" for _ in WAITING_STATUSES)
        return {r[0]: r[1] for r in self.conn.execute(
            f"SELECT player, count(*) FROM sync_queue WHERE status IN ({marks}) "
            "AND enqueued_at < ? AND NOT (status = 'unverified' AND attempts >= ?) "
            "GROUP BY player", (*WAITING_STATUSES, cutoff, MAX_DELIVERIES))}

    def sync_metrics(self) -> SyncMetrics:
        """The design's SyncMetrics over every recorded sync (`run`, `sync`) run.

        `verify` runs send nothing and are not counted; unfinished runs (interrupted, or
        still going) are counted apart. Times are in seconds.
        """
        c = self.conn
        row = c.execute(
            f"SELECT count(*), SUM(status = 'synced'), SUM(status IN ('failed', 'partial')), "
            f"AVG({_SECONDS}), MAX(finished_at), SUM(CASE WHEN synced > 0 THEN synced END), "
            f"SUM(CASE WHEN synced > 0 THEN {_SECONDS} END) "
            f"FROM runs WHERE finished_at IS NOT NULL AND {_SYNC_RUNS}").fetchone()
        metrics = SyncMetrics(
            total_syncs=row[0], successful_syncs=row[1] or 0, failed_syncs=row[2] or 0,
            average_sync_time=_round(row[3]), last_sync_timestamp=row[4],
            items_per_second=_round(row[5] / row[6]) if row[5] and row[6] else None)
        metrics.unfinished = c.execute(
            f"SELECT count(*) FROM runs WHERE finished_at IS NULL AND {_SYNC_RUNS}"
        ).fetchone()[0]
        # Every finished run counts here, verify runs too: how runs are started.
        metrics.by_trigger = {r[0]: r[1] for r in c.execute(
            "SELECT trigger, count(*) FROM runs WHERE finished_at IS NOT NULL "
            "GROUP BY trigger ORDER BY trigger")}
        last = c.execute(f"SELECT id, status FROM runs WHERE finished_at IS NOT NULL AND "
                         f"{_SYNC_RUNS} ORDER BY id DESC LIMIT 1").fetchone()
        if last:
            metrics.last_run_id, metrics.last_status = last[0], last[1]
        # A player's sync counts when it had something to do and was tried.
        tried = "rp.items > 0 AND rp.status IN ('synced', 'partial', 'failed', 'deferred')"
        for r in c.execute(
                f"SELECT rp.player, SUM({tried}), "
                f"SUM({tried} AND rp.status IN ('synced', 'deferred')), "
                "SUM(CASE WHEN rp.requests > 0 THEN rp.duration_ms END), "
                "SUM(CASE WHEN rp.requests > 0 THEN rp.requests END), "
                f"MAX(CASE WHEN {tried} THEN rp.finished_at END), "
                "MAX(rp.finished_at) "
                f"FROM run_players rp JOIN runs ON runs.id = rp.run_id WHERE {_SYNC_RUNS} "
                "GROUP BY rp.player ORDER BY rp.player"):
            player = PlayerMetrics(
                success_rate=_round(r[2] / r[1]) if r[1] else None,
                average_response_time=_round(r[3] / r[4] / 1000.0) if r[4] else None,
                last_error=None, syncs=r[1] or 0, last_sync_at=r[5], last_run_at=r[6])
            metrics.by_player[r[0]] = player
        for r in c.execute(
                "SELECT rp.player, rp.error, rp.finished_at, rp.status FROM run_players rp "
                "JOIN (SELECT player, MAX(run_id) AS run_id FROM run_players "
                "WHERE error IS NOT NULL AND status IN ('failed', 'partial', 'disabled') "
                "GROUP BY player) e USING (player, run_id)"):
            if r[0] in metrics.by_player:
                metrics.by_player[r[0]].last_error = r[1]
                metrics.by_player[r[0]].last_error_at = r[2]
        for r in c.execute(
                "SELECT rp.player, rp.status FROM run_players rp JOIN (SELECT player, "
                f"MAX(run_id) AS run_id FROM run_players JOIN runs ON runs.id = run_id "
                f"WHERE {_SYNC_RUNS} GROUP BY player) l USING (player, run_id)"):
            if r[0] in metrics.by_player:
                metrics.by_player[r[0]].last_result = r[1]
        return metrics


def gave_up(error: str | None, runs: int) -> str:
    """The cause of an item that failed `runs` runs in a row, given up on until a person
    looks ([sync] max_attempts)."""
    return (f"{error or 'not delivered'} (failed {runs} runs in a row: given up until a "
            "person runs `metarr-sync queue retry`)")


# Statuses of queue entries still to be delivered (`sent` ones wait for verification).
WAITING_STATUSES = (QueueStatus.PENDING, QueueStatus.UNVERIFIED)
_SECONDS = "(julianday(finished_at) - julianday(started_at)) * 86400.0"
_SYNC_RUNS = "runs.command != 'verify'"


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


@dataclass
class QueueSummary:
    counts: dict[QueueStatus, int] = field(default_factory=dict)  # status -> entries
    oldest_waiting: str | None = None  # enqueued_at of the oldest pending/unverified entry
    stuck: int = 0  # unverified after MAX_DELIVERIES deliveries: needs a person


@dataclass
class PlayerMetrics:
    """The design's per-player metrics, plus when (the last three fields are extras)."""

    success_rate: float | None  # share of tried syncs that ended synced (or deferred)
    average_response_time: float | None  # seconds per request
    last_error: str | None
    syncs: int = 0
    last_sync_at: str | None = None  # last run with work for this player
    last_run_at: str | None = None
    last_error_at: str | None = None
    last_result: str | None = None


@dataclass
class SyncMetrics:
    """The design's SyncMetrics; `unfinished`, `last_run_id`, `last_status` are extras."""

    total_syncs: int = 0
    successful_syncs: int = 0
    failed_syncs: int = 0  # failed or partial runs
    average_sync_time: float | None = None  # seconds per run
    last_sync_timestamp: str | None = None
    items_per_second: float | None = None
    by_player: dict[str, PlayerMetrics] = field(default_factory=dict)
    unfinished: int = 0
    last_run_id: int | None = None
    last_status: str | None = None
    by_trigger: dict[str, int] = field(default_factory=dict)  # finished runs per trigger


class RunLock:
    """An exclusive lock in the state directory so that two runs never overlap."""

    def __init__(self, directory: Path):
        self.path = directory / "run.lock"
        self.handle: Any = None

    def acquire(self, wait: float = 0.0) -> bool:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a+")
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    self.handle.close()
                    self.handle = None
                    return False
                time.sleep(0.1)
                continue
            self.handle.seek(0)
            self.handle.truncate()
            self.handle.write(f"{os.getpid()}\n")
            self.handle.flush()
            return True

    def holder(self) -> str | None:
        try:
            return self.path.read_text().strip() or None
        except OSError:
            return None

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None
