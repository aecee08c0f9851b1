"""The tool's own state: how a run reads each player's queue."""

from __future__ import annotations

from pathlib import Path

from metarr_sync.metarr import Item
from metarr_sync.state import State


def movie(n: int, stamp: str = "2026-11-01T10:00:00.000Z", title: str = "") -> Item:
    return Item(kind="movie", id=n, path=f"/data/movies/M{n}/M{n}.mkv",
                title=title or f"M{n}", library_id=1, ids={"tmdb": str(n)}, stamp=stamp)


def test_players_of_one_run_share_one_item_per_identical_queue_row(tmp_path: Path) -> None:
    state = State(tmp_path)
    try:
        state.enqueue([movie(1), movie(2), movie(3)], ["kodi", "plex"], source="run")
        # A newer version of movie 2 reaches Kodi's queue only: its rows now differ.
        newer = movie(2, stamp="2026-11-02T10:00:00.000Z", title="M2 (director's cut)")
        state.enqueue([newer], ["kodi"], source="sync")
        shared: dict[tuple[object, ...], Item] = {}
        kodi = state.work("kodi", None, shared)
        plex = state.work("plex", None, shared)
    finally:
        state.close()
    assert [i.key for i in kodi] == [i.key for i in plex] == ["movie:1", "movie:2", "movie:3"]
    assert kodi[0] is plex[0] and kodi[2] is plex[2]
    assert kodi[1] is not plex[1]
    assert (kodi[1].title, kodi[1].stamp) == ("M2 (director's cut)", newer.stamp)
    assert (plex[1].title, plex[1].stamp) == ("M2", "2026-11-01T10:00:00.000Z")
    assert kodi[0] == movie(1) and kodi[0].ids == {"tmdb": "1"}


def test_work_without_sharing_and_with_named_keys(tmp_path: Path) -> None:
    state = State(tmp_path)
    try:
        state.enqueue([movie(1), movie(2), movie(3)], ["kodi", "plex"], source="run")
        first = state.work("kodi")
        again = state.work("kodi")
        named = state.work("plex", ["movie:3", "movie:1"], {})
    finally:
        state.close()
    assert first == again and first[0] is not again[0]
    assert [i.key for i in named] == ["movie:1", "movie:3"]  # queue order, not the keys'


# --- upgrades and renames: the previous paths a player may still list ---------------------

def renamed(item: Item, name: str, stamp: str | None = None) -> Item:
    """The same Metarr row after Radarr replaced its file: a new path, same id."""
    folder = item.path.rsplit("/", 1)[0]
    return Item(kind=item.kind, id=item.id, path=f"{folder}/{name}", title=item.title,
                library_id=item.library_id, ids=item.ids, stamp=stamp or item.stamp)


def queued(state: State, player: str = "kodi") -> dict[str, tuple[str, tuple[str, ...]]]:
    return {i.key: (i.path, i.previous_paths) for i in state.work(player)}


def deliver(state: State, player: str = "kodi", result: str = "synced") -> None:
    from metarr_sync.players.base import Outcome

    items = state.work(player)
    state.record(player, items, [Outcome(i.key, result) for i in items], None)


def test_a_new_path_with_the_same_stamp_is_a_change_and_keeps_the_old_path(
        tmp_path: Path) -> None:
    state = State(tmp_path)
    try:
        heat = movie(1)
        state.collect([heat, movie(2)], ["kodi"], None)
        deliver(state)
        assert queued(state) == {}
        # Radarr upgraded the file: Metarr rewrote file_path in place, no timestamp moved.
        upgraded = renamed(heat, "M1 - 1080p.mkv")
        result = state.collect([upgraded, movie(2)], ["kodi"], None)
        assert result.changed == 1
        assert queued(state) == {"movie:1": (upgraded.path, (heat.path,))}
        deliver(state)
        assert queued(state) == {}
        delivered = state.conn.execute(
            "SELECT path FROM player_sync_status WHERE item_key = 'movie:1'").fetchone()
        assert delivered[0] == upgraded.path
        # Nothing changed since: nothing is queued again.
        assert state.collect([upgraded, movie(2)], ["kodi"], None).changed == 0
    finally:
        state.close()


def test_two_renames_before_delivery_keep_the_file_the_player_last_received(
        tmp_path: Path) -> None:
    state = State(tmp_path)
    try:
        first = movie(1)
        state.collect([first], ["kodi", "plex"], None)
        deliver(state, "kodi")
        deliver(state, "plex")
        second = renamed(first, "M1 - 720p.mkv")
        state.collect([second], ["kodi", "plex"], None)
        deliver(state, "plex")  # Plex got the 720p file; Kodi was offline
        third = renamed(first, "M1 - 1080p.mkv", stamp="2026-11-03T10:00:00.000Z")
        state.collect([third], ["kodi", "plex"], None)
        # Kodi may list the first file (its last delivery) and the second (found by a scan
        # of its own); Plex only ever had the first replaced already.
        assert queued(state, "kodi") == {"movie:1": (third.path, (first.path, second.path))}
        assert queued(state, "plex") == {"movie:1": (third.path, (second.path,))}
    finally:
        state.close()


def test_a_sent_but_unconfirmed_delivery_keeps_the_old_path_until_verified(
        tmp_path: Path) -> None:
    from metarr_sync.players.base import Outcome

    state = State(tmp_path)
    try:
        first = movie(1)
        state.collect([first], ["kodi"], None)
        deliver(state)
        second = renamed(first, "M1 - 1080p.mkv")
        state.collect([second], ["kodi"], None)
        deliver(state, result="sent")
        (waiting,) = state.awaiting_verification("kodi")
        assert (waiting.path, waiting.previous_paths) == (second.path, (first.path,))
        # Not seen as one entry on the player: it stays queued with the old path...
        state.record("kodi", [waiting], [Outcome(waiting.key, "unverified", "two entries")],
                     None)
        assert queued(state) == {"movie:1": (second.path, (first.path,))}
        # ...and a later delivery that is verified drops it with the entry.
        (again,) = state.work("kodi")
        state.record("kodi", [again], [Outcome(again.key, "sent")], None)
        state.record("kodi", [again], [Outcome(again.key, "verified")], None)
        assert state.conn.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
    finally:
        state.close()


def test_a_retried_item_keeps_its_previous_paths(tmp_path: Path) -> None:
    from metarr_sync.players.base import Outcome

    state = State(tmp_path)
    try:
        first = movie(1)
        state.collect([first], ["kodi"], None)
        deliver(state)
        state.collect([renamed(first, "M1 - 1080p.mkv")], ["kodi"], None)
        (item,) = state.work("kodi")
        state.clear_queue("kodi")  # as if finish() re-judged an item whose row is gone
        state.record("kodi", [item], [Outcome(item.key, "retry", "Kodi was busy")], None)
        assert queued(state)["movie:1"][1] == (first.path,)
    finally:
        state.close()


def test_migration_from_schema_1_keeps_everything_and_learns_delivered_paths(
        tmp_path: Path) -> None:
    import sqlite3

    from metarr_sync.state import MIGRATIONS, SCHEMA_VERSION

    conn = sqlite3.connect(tmp_path / "state.sqlite", isolation_level=None)
    conn.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
    item = ("movie:1", "movie", 1, "/data/movies/M1/M1.mkv", "M1", None, 1, '{"tmdb": "1"}',
            None, None, None, "2026-11-01T10:00:00.000Z", 0)
    other = ("movie:2", "movie", 2, "/data/movies/M2/M2.mkv", "M2", None, 1, "{}",
             None, None, None, "2026-11-02T10:00:00.000Z", 0)
    conn.executemany("INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     [item, other])
    conn.execute("INSERT INTO players (name, baselined_at) VALUES "
                 "('kodi', '2026-10-01T00:00:00.000Z')")
    # Movie 1 was delivered in the version collected; movie 2 in an older one (its newer
    # version is still queued), so which path Kodi got for it is not known.
    conn.execute("INSERT INTO player_sync_status VALUES ('kodi', 'movie:1', "
                 "'2026-11-01T10:00:00.000Z', 0, '2026-11-01T11:00:00.000Z', 1, NULL)")
    conn.execute("INSERT INTO player_sync_status VALUES ('kodi', 'movie:2', "
                 "'2026-10-20T10:00:00.000Z', 0, '2026-10-20T11:00:00.000Z', 1, NULL)")
    conn.execute("INSERT INTO sync_queue (item_key, kind, item_id, path, title, series_path, "
                 "library_id, ids, season, episode, series_id, stamp, removed, player, "
                 "status, attempts, last_error, enqueued_at, updated_at) VALUES ("
                 + ", ".join("?" for _ in other) + ", 'kodi', 'failed', 2, 'Kodi said no', "
                 "'2026-11-02T10:00:01.000Z', '2026-11-02T10:05:00.000Z')", other)
    conn.execute("INSERT INTO runs (trigger, command, started_at) VALUES "
                 "('manual', 'run', '2026-11-01T11:00:00.000Z')")
    before = {table: conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
              for table in ("items", "players", "sync_queue", "player_sync_status", "runs")}
    conn.close()

    state = State(tmp_path)
    try:
        c = state.conn
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        for table, rows in before.items():
            after = c.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            width = len(rows[0])
            assert [tuple(r)[:width] for r in after] == rows, table
        assert [tuple(r) for r in c.execute(
            "SELECT item_key, path FROM player_sync_status ORDER BY 1")] == [
            ("movie:1", "/data/movies/M1/M1.mkv"), ("movie:2", None)]
        assert c.execute("SELECT previous_paths FROM sync_queue").fetchone()[0] is None
        (entry,) = state.queue("kodi")
        assert (entry.status, entry.attempts, entry.last_error) == ("failed", 2, "Kodi said no")
        # An upgrade collected after the migration replaces the file Kodi has.
        upgraded = Item(kind="movie", id=1, path="/data/movies/M1/M1 - 1080p.mkv",
                        title="M1", library_id=1, ids={"tmdb": "1"},
                        stamp="2026-11-01T10:00:00.000Z")
        second = Item(kind="movie", id=2, path="/data/movies/M2/M2.mkv", title="M2",
                      library_id=1, stamp="2026-11-02T10:00:00.000Z")
        state.collect([upgraded, second], ["kodi"], None)
        assert queued(state)["movie:1"] == (upgraded.path, ("/data/movies/M1/M1.mkv",))
    finally:
        state.close()


def removed(n: int) -> Item:
    return Item(kind="movie", id=n, path=f"/data/movies/M{n}/M{n}.mkv", title=f"M{n}",
                library_id=1, stamp="2026-11-01T10:00:00.000Z", removed=True)


def rows(state: State) -> list[tuple[str, str, int, str | None]]:
    return [tuple(r) for r in state.conn.execute(
        "SELECT item_key, status, attempts, last_error FROM sync_queue ORDER BY item_key")]


def test_held_removals_wait_untried_and_dropped_ones_leave_the_queue(tmp_path: Path) -> None:
    from metarr_sync.players.base import Outcome

    state = State(tmp_path)
    try:
        items = [removed(1), removed(2), movie(3)]
        state.enqueue(items, ["kodi"], source="run")
        state.record("kodi", items, [Outcome("movie:1", "held", "20 removals held"),
                                     Outcome("movie:2", "dropped", "its file still exists")],
                     None)
        assert rows(state) == [("movie:1", "held", 0, "20 removals held"),
                               ("movie:3", "pending", 0, None)]
        # Held removals are looked at again by every run.
        assert [i.key for i in state.work("kodi")] == ["movie:1", "movie:3"]
        state.record("kodi", items[:1], [Outcome("movie:1", "held", "still")], None)
        assert rows(state)[0] == ("movie:1", "held", 0, "still")
    finally:
        state.close()


def test_a_removal_is_delivered_twice_at_most_then_only_looked_at(tmp_path: Path) -> None:
    from metarr_sync.players.base import Outcome

    state = State(tmp_path)
    try:
        gone, update = removed(1), movie(2)
        state.enqueue([gone, update], ["jelly"], source="run")
        for delivery in (1, 2, 3):
            work = [i.key for i in state.work("jelly")]
            if delivery < 3:
                assert work == ["movie:1", "movie:2"]
            else:  # an update gets its third delivery; the removal does not
                assert work == ["movie:2"]
            state.record("jelly", [gone, update], [Outcome(k, "sent") for k in work], None)
            state.record("jelly", [gone, update],
                         [Outcome(k, "unverified", "still listed") for k in work], None)
        # Never sent again, but handed to verification on every run ...
        assert [i.key for i in state.awaiting_verification("jelly")] == ["movie:1"]
        # ... which clears it once the player no longer lists it.
        state.record("jelly", [gone], [Outcome("movie:1", "verified")], None)
        assert [r[0] for r in rows(state)] == ["movie:2"]
    finally:
        state.close()


def test_library_size_counts_what_metarr_lists(tmp_path: Path) -> None:
    state = State(tmp_path)
    try:
        state.collect([movie(1), movie(2), removed(3)], ["kodi"], lookback=None)
        assert state.library_size() == 2
    finally:
        state.close()


def attempt_rows(state: State, player: str = "kodi") -> list[tuple[str, str, int, str | None]]:
    return [tuple(r) for r in state.conn.execute(
        "SELECT item_key, status, attempts, last_error FROM sync_queue WHERE player = ? "
        "ORDER BY item_key", (player,))]


def test_an_item_failing_max_attempts_runs_in_a_row_is_failed_for_a_person(tmp_path: Path
                                                                          ) -> None:
    from metarr_sync.players.base import Outcome

    state = State(tmp_path)
    try:
        state.enqueue([movie(1), movie(2)], ["kodi"], source="run")
        offline = "http://kodi:8080 refused the connection (player offline?)"
        for run in range(1, 5):
            state.record("kodi", [movie(1), movie(2)],
                         [Outcome("movie:1", "retry", offline),
                          Outcome("movie:2", "deferred", "player busy: someone is watching")],
                         run, max_attempts=5)
            assert attempt_rows(state)[0] == ("movie:1", "pending", run, offline)
            assert [i.key for i in state.work("kodi")] == ["movie:1", "movie:2"]
        # The fifth run in a row fails too: given up on, with its cause, until a person
        # looks. Someone watching is no failure: movie 2 is not counted.
        state.record("kodi", [movie(1), movie(2)],
                     [Outcome("movie:1", "retry", offline),
                      Outcome("movie:2", "deferred", "player busy: someone is watching")],
                     5, max_attempts=5)
        assert attempt_rows(state) == [
            ("movie:1", "failed", 5, f"{offline} (failed 5 runs in a row: given up until a "
             "person runs `metarr-sync queue retry`)"),
            ("movie:2", "deferred", 0, "player busy: someone is watching")]
        assert [i.key for i in state.work("kodi")] == ["movie:2"]
        # `queue retry` brings it back with its count reset.
        assert state.retry_failed("kodi") == 1
        assert attempt_rows(state)[0][:3] == ("movie:1", "pending", 0)
        assert [i.key for i in state.work("kodi")] == ["movie:1", "movie:2"]
    finally:
        state.close()


def test_a_success_or_a_new_version_starts_the_count_again(tmp_path: Path) -> None:
    from metarr_sync.players.base import Outcome

    state = State(tmp_path)
    try:
        state.enqueue([movie(1)], ["kodi"], source="run")
        for run in (1, 2):
            state.record("kodi", [movie(1)], [Outcome("movie:1", "retry", "timeout")], run,
                         max_attempts=3)
        # Metarr publishes the item again: a new version, queued afresh.
        newer = movie(1, stamp="2026-11-03T10:00:00.000Z")
        state.enqueue([newer], ["kodi"], source="run")
        assert attempt_rows(state) == [("movie:1", "pending", 0, None)]
        state.record("kodi", [newer], [Outcome("movie:1", "retry", "timeout")], 3,
                     max_attempts=3)
        assert attempt_rows(state)[0][1:3] == ("pending", 1)
        # Without a limit (None) nothing is ever given up on.
        for run in range(4, 10):
            state.record("kodi", [newer], [Outcome("movie:1", "retry", "timeout")], run)
        assert attempt_rows(state)[0][1:3] == ("pending", 7)
    finally:
        state.close()
