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


def rows(state: State, player: str = "kodi") -> list[tuple[str, str, int, str | None]]:
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
            assert rows(state)[0] == ("movie:1", "pending", run, offline)
            assert [i.key for i in state.work("kodi")] == ["movie:1", "movie:2"]
        # The fifth run in a row fails too: given up on, with its cause, until a person
        # looks. Someone watching is no failure: movie 2 is not counted.
        state.record("kodi", [movie(1), movie(2)],
                     [Outcome("movie:1", "retry", offline),
                      Outcome("movie:2", "deferred", "player busy: someone is watching")],
                     5, max_attempts=5)
        assert rows(state) == [
            ("movie:1", "failed", 5, f"{offline} (failed 5 runs in a row: given up until a "
             "person runs `metarr-sync queue retry`)"),
            ("movie:2", "deferred", 0, "player busy: someone is watching")]
        assert [i.key for i in state.work("kodi")] == ["movie:2"]
        # `queue retry` brings it back with its count reset.
        assert state.retry_failed("kodi") == 1
        assert rows(state)[0][:3] == ("movie:1", "pending", 0)
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
        assert rows(state) == [("movie:1", "pending", 0, None)]
        state.record("kodi", [newer], [Outcome("movie:1", "retry", "timeout")], 3,
                     max_attempts=3)
        assert rows(state)[0][1:3] == ("pending", 1)
        # Without a limit (None) nothing is ever given up on.
        for run in range(4, 10):
            state.record("kodi", [newer], [Outcome("movie:1", "retry", "timeout")], run)
        assert rows(state)[0][1:3] == ("pending", 7)
    finally:
        state.close()
