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
