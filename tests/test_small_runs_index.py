"""Issue 19: a small run costs what it changes, not what the library holds (Jellyfin).

The installed `metarr-sync` against the fake Jellyfin, which models DateLastSaved (set
when an item is created, refreshed or moved, never by a read) and `minDateLastSaved`
(tests/support/fake_players.py). The first run that needs a library lists it whole and
keeps an index of it in the state; later runs ask only for what the server saved since.
Whatever the index says must never make a run wrong: a rebuilt library is listed whole
again, an item moved on the server is found at its new path, a stale id falls back to the
server's own look-up, an index older than its limit is listed whole again.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from support.fake_players import FakeJellyfin, Recorded
from support.metarr_factory import MetarrDB, ago

CONFIG = """
[metarr]
database = "{db}"

[sync]
timeout = 5
retry_attempts = 1
initial_lookback = "none"

{players}
"""
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
EPISODES_PER_SHOW = 4


class World:
    """A Metarr library of `movies` movies and `shows` shows that the fake Jellyfin
    already holds (saved long ago), seen by it under /media."""

    def __init__(self, cli: Any, metarr: MetarrDB, jelly: FakeJellyfin, movies: int,
                 shows: int, disk: Path | None = None):
        self.cli, self.metarr, self.jelly = cli, metarr, jelly
        # Metarr's media on disk (removals are sent only when the disk proves them).
        self.prefix = "/data/media" if disk is None else str(disk)
        if disk is not None:
            metarr.use_disk(disk)
        old = ago(days=30)
        self.movies: list[int] = []
        for n in range(movies):
            row = metarr.add_movie(f"Film {n:05d}", 2000 + n % 20, when=old)
            jelly.put("Movie", self.player_path(metarr.file_of("movies", row)),
                      saved=LONG_AGO)
            self.movies.append(row)
        self.episodes: list[int] = []
        for n in range(shows):
            series = metarr.add_series(f"Show {n:04d}", when=old)
            season = metarr.add_season(series, 1, when=old)
            show_id = jelly.put("Series", f"/media/tv/Show {n:04d}", saved=LONG_AGO)
            for e in range(1, EPISODES_PER_SHOW + 1):
                episode = metarr.add_episode(series, season, 1, e, when=old)
                jelly.put("Episode", self.player_path(metarr.file_of("episodes", episode)),
                          series_id=show_id, saved=LONG_AGO)
                self.episodes.append(episode)

    def configure(self, verify_after: float = 600) -> None:
        self.cli.write_config(CONFIG.format(db=self.metarr.path, players=self.jelly.toml(
            "jelly", [(self.prefix, "/media")], verify_after=verify_after)))

    def player_path(self, path: str) -> str:
        return "/media" + path[len(self.prefix):]

    def run(self) -> dict[str, Any]:
        result = self.cli("run", "--json")
        assert "Traceback" not in result.stderr, result.stderr
        return json.loads(result.stdout)["players"][0]

    def change_movie(self, index: int) -> None:
        self.metarr.republish_movie(self.movies[index])

    def change_episode(self, index: int) -> None:
        self.metarr.touch("episodes", self.episodes[index])

    def verify(self) -> int:
        """`metarr-sync verify` (no verify_after wait); how many deliveries are verified."""
        result = self.cli("verify")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        with self.cli.state() as state:
            return int(state.execute("SELECT count(*) FROM player_sync_status WHERE "
                                     "verified_at IS NOT NULL").fetchone()[0])

    def verified(self, kind: str, row: int) -> bool:
        with self.cli.state() as state:
            return bool(state.execute(
                "SELECT verified_at FROM player_sync_status WHERE item_key = ?",
                (f"{kind}:{row}",)).fetchone()[0])

    def requests(self) -> list[Recorded]:
        return self.jelly.received()

    def index_rows(self) -> int:
        with self.cli.state() as state:
            return int(state.execute("SELECT count(*) FROM player_index").fetchone()[0])


def shape(request: Recorded) -> str:
    """A request as it would be at any library size: method, path, and which of the
    listing's parameters it carried (ids and dates vary)."""
    path = "/Items/{id}/Refresh" if request.path.endswith("/Refresh") else request.path
    marks = [name for name in ("minDateLastSaved", "ids", "parentId", "limit")
             if request.param(name) is not None]
    return f"{request.method} {path} {' '.join(marks)}".strip()


def full_listings(world: World) -> list[Recorded]:
    """Listings of a whole library (its ItemId, no date filter)."""
    libraries = {lib.item_id for lib in world.jelly.libraries}
    return [r for r in world.requests() if r.path == "/Items"
            and r.param("parentId") in libraries and r.param("minDateLastSaved") is None]


def small_run_requests(cli: Any, metarr: MetarrDB, movies: int, shows: int
                       ) -> tuple[list[str], list[str]]:
    with FakeJellyfin() as jelly:
        world = World(cli, metarr, jelly, movies, shows)
        world.configure()
        assert world.run()["items"] == 0  # initial_lookback none: a baseline, nothing sent
        # The first run that needs the libraries lists them whole and keeps the index.
        world.change_movie(0)
        world.change_episode(0)
        first = world.run()
        assert (first["synced"], first["failed"]) == (2, 0)
        assert len(full_listings(world)) >= 2
        assert world.index_rows() >= movies + shows
        seen: list[list[str]] = []
        for change in (lambda: world.change_movie(movies // 2),
                       lambda: world.change_episode(len(world.episodes) - 1)):
            jelly.reset_log()
            jelly.refreshed.clear()
            change()
            report = world.run()
            assert (report["synced"], report["failed"]) == (1, 0), report
            sent = world.requests()
            assert len(sent) <= 10, [shape(r) for r in sent]
            assert full_listings(world) == [], [shape(r) for r in sent]
            assert len(jelly.refreshed) == 1
            seen.append([shape(r) for r in sent])
        return seen[0], seen[1]


def test_one_change_sends_the_same_few_requests_at_two_library_sizes(
        tmp_path: Path) -> None:
    from conftest import Cli

    found = []
    for size, (movies, shows) in enumerate(((60, 5), (1300, 40))):
        root = tmp_path / f"size{size}"
        root.mkdir()
        metarr = MetarrDB(root / "metarr.sqlite")
        try:
            found.append(small_run_requests(Cli(root), metarr, movies, shows))
        finally:
            metarr.close()
    (small_movie, small_episode), (big_movie, big_episode) = found
    # 1,300 movies are three listing pages where 60 were one: a full listing would differ.
    assert small_movie == big_movie
    assert small_episode == big_episode
    # Discovery, the library's saves since the last run, the refresh; the episode's show
    # is listed once (its first episode to change), its own size, not the library's.
    assert small_movie == ["GET /System/Info/Public", "GET /System/Info",
                           "GET /Library/VirtualFolders",
                           "GET /Items minDateLastSaved parentId limit",
                           "POST /Items/{id}/Refresh"]
    assert small_episode == ["GET /System/Info/Public", "GET /System/Info",
                             "GET /Library/VirtualFolders",
                             "GET /Items minDateLastSaved parentId limit",
                             "GET /Items parentId limit", "POST /Items/{id}/Refresh"]


@pytest.fixture
def world(cli: Any, metarr: MetarrDB, tmp_path: Path):
    with FakeJellyfin() as jelly:
        world = World(cli, metarr, jelly, movies=30, shows=3, disk=tmp_path / "media")
        world.configure()
        assert world.run()["items"] == 0
        world.change_movie(0)
        world.change_episode(0)
        assert world.run()["synced"] == 2  # the index is built
        assert world.verify() == 2
        jelly.reset_log()
        jelly.refreshed.clear()
        yield world


def movie_id(world: World, index: int) -> str:
    path = world.player_path(world.metarr.file_of("movies", world.movies[index]))
    return next(i.id for i in world.jelly.items.values() if i.path == path)


def test_a_library_rebuilt_behind_our_back_is_listed_whole_again(world: World) -> None:
    world.jelly.rebuild_library("Movies")  # new ItemId, new item ids, no newer saves
    world.change_movie(5)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0)
    assert len(full_listings(world)) == 1
    # The item was found under its new id: refreshed, not reported as new.
    assert [i for i, _ in world.jelly.refreshed] == [movie_id(world, 5)]
    assert world.jelly.updates == []
    world.verify()
    assert world.verified("movie", world.movies[5])
    with world.cli.state() as state:
        libraries = {r[0] for r in state.execute(
            "SELECT DISTINCT library FROM player_index")}
    assert libraries == {lib.item_id for lib in world.jelly.libraries}


def test_an_item_moved_on_the_server_is_found_at_its_new_path(world: World) -> None:
    row = world.movies[7]
    old = world.metarr.file_of("movies", row)
    new = old.replace(".mkv", " - 1080p.mkv")
    Path(old).rename(new)  # Radarr's rename, then Metarr's webhook
    world.metarr.replace_file("movies", row, new)
    moved = world.jelly.move(world.player_path(old), world.player_path(new))
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0)
    assert [i for i, _ in world.jelly.refreshed] == [moved]
    assert full_listings(world) == []
    world.verify()
    assert world.verified("movie", row)
    # The old id was confirmed gone with the server, and left the index.
    assert any(r.path == "/Items" and r.param("ids") for r in world.requests())
    with world.cli.state() as state:
        assert state.execute("SELECT count(*) FROM player_index WHERE path_key LIKE ?",
                             ("%" + old.rsplit("/", 1)[1],)).fetchone()[0] == 0


def test_a_stale_id_falls_back_to_the_servers_look_up(world: World) -> None:
    stale = movie_id(world, 3)
    # The server lost the item (its database restored from a backup, say): the file is
    # there, the id in the index is not.
    del world.jelly.items[stale]
    world.change_movie(3)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0)
    path = world.player_path(world.metarr.file_of("movies", world.movies[3]))
    # The refresh of the stale id got 404; the path went to the server, which scanned it
    # and made the item again; verification found it there.
    assert [i for i, _ in world.jelly.refreshed] == []
    assert world.jelly.updates == [{"Path": path, "UpdateType": "Modified"}]
    assert path in world.jelly.library_files()  # the monitor has run the report
    assert world.jelly.validations == ["/media/movies"]
    world.verify()
    assert world.verified("movie", world.movies[3])
    assert full_listings(world) == []
    with world.cli.state() as state:
        assert state.execute("SELECT count(*) FROM player_index WHERE item_id = ?",
                             (stale,)).fetchone()[0] == 0


def test_an_index_older_than_its_limit_is_listed_whole_again(world: World) -> None:
    with world.cli.state() as state:
        state.execute("UPDATE player_index_libraries SET built_at = ?",
                      ((datetime.now(UTC) - timedelta(days=8)).strftime(
                          "%Y-%m-%dT%H:%M:%S.000Z"),))
    world.change_movie(9)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0)
    assert len(full_listings(world)) == 1  # the movie library, listed whole again
    world.jelly.reset_log()
    world.change_movie(10)
    assert world.run()["synced"] == 1
    assert full_listings(world) == []  # and trusted again
    world.verify()
    assert world.verified("movie", world.movies[9]) and world.verified(
        "movie", world.movies[10])


def test_a_removal_is_proven_against_the_server_not_the_index(world: World) -> None:
    gone = movie_id(world, 11)
    # Jellyfin dropped the movie on its own; the index still has it.
    path = world.jelly.items.pop(gone).path
    world.jelly.remove_file(path)
    world.metarr.delete_media("movies", world.movies[11])
    world.metarr.soft_delete("movies", world.movies[11])
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    # The server said it has no such item: nothing to report, no scan of the folder.
    assert world.jelly.updates == []
    assert any(r.param("ids") == gone for r in world.requests())


def test_emby_looks_each_change_up_by_path_at_any_library_size(tmp_path: Path) -> None:
    """Emby keeps no index: `/Items?Path=` finds the item, whatever the library's size."""
    from conftest import Cli

    found = []
    for size, (movies, shows) in enumerate(((60, 5), (1300, 40))):
        root = tmp_path / f"size{size}"
        root.mkdir()
        metarr = MetarrDB(root / "metarr.sqlite")
        try:
            with FakeJellyfin(emby=True) as emby:
                world = World(Cli(root), metarr, emby, movies, shows)
                world.configure()
                assert world.run()["items"] == 0
                sent = []
                for kind in ("movie", "episode"):
                    emby.reset_log()
                    emby.refreshed.clear()
                    if kind == "movie":
                        world.change_movie(movies // 2)
                    else:
                        world.change_episode(len(world.episodes) - 1)
                    report = world.run()
                    assert (report["synced"], report["failed"]) == (1, 0), report
                    assert len(emby.refreshed) == 1 and emby.updates == []
                    assert not any(r.param("Limit") or r.param("limit")
                                   for r in world.requests())  # no listing
                    sent.append([shape(r) for r in world.requests()])
                assert world.index_rows() == 0
                found.append(sent)
        finally:
            metarr.close()
    assert found[0] == found[1]
    # Discovery, the look-up by path, the refresh: for a movie and for an episode.
    assert found[0] == [["GET /System/Info/Public", "GET /System/Info",
                         "GET /Library/VirtualFolders/Query", "GET /Items",
                         "POST /Items/{id}/Refresh"]] * 2


@pytest.mark.parametrize("change", ["server", "folders"])
def test_another_server_or_other_library_folders_throw_the_index_away(
        world: World, change: str) -> None:
    if change == "server":  # the same address now answers as another install
        world.jelly.server_id = "0" * 32
    else:  # a folder added to the library: its items are in no index
        world.jelly.libraries[0].locations.append("/media/more-movies")
    world.change_movie(12)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0)
    assert len(full_listings(world)) == 1
    assert [i for i, _ in world.jelly.refreshed] == [movie_id(world, 12)]
    with world.cli.state() as state:
        built = state.execute("SELECT server_id, locations FROM player_index_libraries "
                              "WHERE library = ?", (world.jelly.libraries[0].item_id,)
                              ).fetchone()
    assert built[0] == world.jelly.server_id
    assert json.loads(built[1]) == world.jelly.libraries[0].locations


def test_the_update_asks_from_the_servers_clock_not_ours(world: World) -> None:
    # The server's clock is an hour behind ours: it stamps its saves an hour earlier.
    # Asked from our own clock minus the 15-minute margin, the update would miss them;
    # the index's stamp follows the server's Date header instead.
    world.jelly.clock = -3600.0
    world.change_movie(13)
    assert world.run()["synced"] == 1  # stamps the index in the server's time
    world.jelly.reset_log()
    world.jelly.refreshed.clear()
    world.change_movie(14)
    assert world.run()["synced"] == 1
    update = next(r for r in world.requests() if r.param("minDateLastSaved"))
    asked = datetime.fromisoformat(str(update.param("minDateLastSaved")).replace("Z",
                                                                                "+00:00"))
    server_now = world.jelly.server_time()
    # From the server's clock minus the 15-minute margin, not from ours.
    assert timedelta(minutes=14) < server_now - asked < timedelta(minutes=17)
    # So the movie the run before refreshed (saved "an hour ago" in our time) is in it.
    refreshed_before = movie_id(world, 13)
    saved = world.jelly.items[refreshed_before].saved
    assert saved is not None and saved >= asked


def test_why_an_index_is_listed_again_in_one_place_for_jellyfin_and_plex():
    from metarr_sync.players.index import IndexedLibrary, why_list_again
    from metarr_sync.stamps import now_stamp, stamp_ago

    fresh = IndexedLibrary("server-a", ["/media/movies"], now_stamp(), now_stamp())
    words = {"other_server": "another server", "gone": "gone"}
    assert why_list_again(fresh, "server-a", ["/media/movies/"], lambda p: p.rstrip("/"),
                          **words) is None
    assert why_list_again(fresh, "server-b", ["/media/movies"], str, **words) == "another server"
    assert why_list_again(fresh, "server-a", None, str, **words) == "gone"
    assert why_list_again(fresh, "server-a", ["/media/films"], str, **words) == (
        "the library's folders changed")
    old = IndexedLibrary("server-a", ["/media/movies"], stamp_ago(8 * 86400), now_stamp())
    assert why_list_again(old, "server-a", ["/media/movies"], str, **words) == (
        "listed whole more than 7 days ago")
