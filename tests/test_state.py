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
