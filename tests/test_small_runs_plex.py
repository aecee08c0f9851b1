"""Issue 19 for Plex: a small run costs what it changes, not what the library holds.

The installed `metarr-sync` against the fake Plex, which models updatedAt (set when a
scan adds an item, changes its files or marks it missing, and by a refresh; never by a
read) and answers `updatedAt>>=<epoch>` strictly (an unknown filter is an error:
tests/support/fake_players.py). The first run that needs a section lists it whole and
keeps an index of it in the state; later runs ask only for what Plex updated since.
Whatever the index says must never make a run wrong: a rebuilt section, another server,
an index older than 7 days are listed whole again; a stale rating key is dropped and the
item found afresh.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support.configs import config_with
from support.fake_players import FakePlex, Recorded
from support.metarr_factory import MetarrDB, ago

SYNC = {"timeout": 10, "retry_attempts": 0, "initial_lookback": "none"}
EPISODES = 3  # per show


class World:
    """A Metarr of a few movies and shows that the fake Plex already holds (updated long
    ago), beside `filler` other movies only Plex holds (the library's size)."""

    def __init__(self, cli: Cli, metarr: MetarrDB, plex: FakePlex, filler: int,
                 movies: int = 12, shows: int = 2, disk: Path | None = None):
        self.cli, self.metarr, self.plex = cli, metarr, plex
        if disk is not None:  # Metarr's media on disk (removals need the disk's word)
            metarr.use_disk(disk)
        old = ago(days=30)
        for n in range(filler):
            folder = f"/media/movies/Filler {n:05d} (2001)"
            plex.put_item(f"{folder}/Filler {n:05d} (2001).mkv")
        self.movies: list[int] = []
        for n in range(movies):
            row = metarr.add_movie(f"Film {n:03d}", 2000 + n, when=old)
            path = self.player_path(metarr.file_of("movies", row))
            plex.put_item(path)
            plex.add_file(path)
            self.movies.append(row)
        self.episodes: list[int] = []
        for n in range(shows):
            series = metarr.add_series(f"Show {n:02d}", when=old)
            season = metarr.add_season(series, 1, when=old)
            files = []
            for e in range(1, EPISODES + 1):
                episode = metarr.add_episode(series, season, 1, e, when=old)
                files.append(self.player_path(metarr.file_of("episodes", episode)))
                self.episodes.append(episode)
            plex.put_show(f"/media/tv/Show {n:02d}", files)
            plex.add_file(*files)
        cli.write_config(config_with(metarr=metarr.path, sync=SYNC, players=[plex.player(
            "den", [(metarr.movies_root, "/media/movies"), (metarr.tv_root, "/media/tv")])]))

    def player_path(self, path: str) -> str:
        for root, there in ((self.metarr.movies_root, "/media/movies"),
                            (self.metarr.tv_root, "/media/tv")):
            if path.startswith(root):
                return there + path[len(root):]
        raise AssertionError(path)

    def run(self, command: str = "run") -> dict[str, Any]:
        result = self.cli(command, "--json")
        assert result.returncode == 0 and "Traceback" not in result.stderr, (
            result.stdout + result.stderr)
        players = json.loads(result.stdout)["players"]
        return players[0] if players else {}

    def change_movie(self, index: int) -> None:
        self.metarr.republish_movie(self.movies[index])

    def change_episode(self, index: int) -> None:
        self.metarr.touch("episodes", self.episodes[index])

    def key_of(self, kind: str, index: int) -> str:
        table, rows = ("movies", self.movies) if kind == "movie" else ("episodes",
                                                                      self.episodes)
        path = self.player_path(self.metarr.file_of(table, rows[index]))
        (key,) = [k for k, i in self.plex.items.items() if i.file == path]
        return key

    def verified(self, kind: str, index: int) -> bool:
        rows = self.movies if kind == "movie" else self.episodes
        with self.cli.state() as state:
            row = state.execute("SELECT verified_at FROM player_sync_status WHERE "
                                "item_key = ?", (f"{kind}:{rows[index]}",)).fetchone()
        return bool(row and row[0])

    def queue(self) -> int:
        with self.cli.state() as state:
            return int(state.execute("SELECT count(*) FROM sync_queue").fetchone()[0])

    def whole_listings(self, plex_type: str = "1") -> list[Recorded]:
        """Listings of a whole section (no updatedAt filter) of one type."""
        return [r for r in self.plex.received("GET /library/sections/{key}/all")
                if r.param("type") == plex_type and r.param("updatedAt>>") is None]


def shape(request: Recorded) -> str:
    """A request as it would be at any library size: its endpoint (keys templated) and
    the listing parameters it carried (dates vary)."""
    marks = [f"{name}={request.param(name)}" for name in ("type",)
             if request.param(name) is not None]
    marks += [name for name in ("updatedAt>>",) if request.param(name) is not None]
    return " ".join([request.endpoint, *marks])


def small_runs(root: Path, filler: int) -> dict[str, list[str]]:
    """The requests of a run with one changed movie, of its verification, and of a run
    with one changed episode, once the index is built; and of a run with nothing."""
    root.mkdir()
    metarr = MetarrDB(root / "metarr.sqlite")
    try:
        with FakePlex() as plex:
            assert isinstance(plex, FakePlex)
            world = World(Cli(root), metarr, plex, filler)
            assert world.run().get("items", 0) == 0  # the baseline: nothing sent
            # The first run that needs the sections lists them whole and keeps the index.
            world.change_movie(0)
            world.change_episode(0)
            first = world.run()
            assert (first["synced"], first["failed"]) == (2, 0), first
            assert len(world.whole_listings("1")) == -(-(filler + 12) // 1000)
            assert world.run("verify")["verified"] == 2
            seen: dict[str, list[str]] = {}
            for name, change, kind, index in (
                    ("movie", lambda: world.change_movie(7), "movie", 7),
                    ("episode", lambda: world.change_episode(4), "episode", 4)):
                plex.reset_log()
                plex.refreshed.clear()
                change()
                report = world.run()
                assert (report["synced"], report["failed"]) == (1, 0), report
                assert plex.refreshed == [world.key_of(kind, index)]
                assert world.whole_listings("1") == world.whole_listings("2") == []
                seen[name] = [shape(r) for r in plex.received()]
                plex.reset_log()
                assert world.run("verify")["verified"] == 1
                assert world.verified(kind, index)
                seen[f"{name} verify"] = [shape(r) for r in plex.received()]
            assert world.queue() == 0
            plex.reset_log()
            world.run()
            seen["nothing"] = [shape(r) for r in plex.received()]
            return seen
    finally:
        metarr.close()


def test_one_change_sends_the_same_few_requests_at_two_library_sizes(
        tmp_path: Path) -> None:
    small = small_runs(tmp_path / "small", 2_000)
    big = small_runs(tmp_path / "big", 20_000)
    # 20,000 movies are 21 listing pages where 2,000 were 3: a whole listing would differ.
    assert small == big
    # identity, sections, the movies Plex updated since the last run, the refresh.
    assert small["movie"] == ["GET /identity", "GET /library/sections",
                              "GET /library/sections/{key}/all type=1 updatedAt>>",
                              "PUT /library/metadata/{id}/refresh"]
    # the shows Plex updated since, the episodes of the one show, the refresh.
    assert small["episode"] == ["GET /identity", "GET /library/sections",
                                "GET /library/sections/{key}/all type=2 updatedAt>>",
                                "GET /library/metadata/{id}/allLeaves",
                                "PUT /library/metadata/{id}/refresh"]
    # Verification: the refreshed item was updated, so the update lists it (no
    # confirmation needed).
    assert small["movie verify"] == ["GET /identity", "GET /library/sections",
                                     "GET /library/sections/{key}/all type=1 updatedAt>>"]
    for name, sent in small.items():
        assert len(sent) <= 10, (name, sent)
    assert small["nothing"] == []


@pytest.fixture
def world(cli: Cli, metarr: MetarrDB, tmp_path: Path) -> Iterator[World]:
    with FakePlex() as plex:
        assert isinstance(plex, FakePlex)
        world = World(cli, metarr, plex, filler=30, disk=tmp_path / "media")
        assert world.run().get("items", 0) == 0
        world.change_movie(0)
        world.change_episode(0)
        assert world.run()["synced"] == 2  # the index is built
        assert world.run("verify")["verified"] == 2
        plex.reset_log()
        plex.refreshed.clear()
        yield world


def finish(world: World, kind: str, index: int) -> None:
    """The item is verified with Plex, and nothing stays queued."""
    assert world.run("verify")["failed"] == 0
    assert world.verified(kind, index)
    assert world.queue() == 0


def test_a_section_rebuilt_behind_our_back_is_listed_whole_again(world: World) -> None:
    new = world.plex.rebuild_section("1")  # new key and uuid, new rating keys
    world.change_movie(5)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    assert [r.path for r in world.whole_listings("1")] == [
        f"/library/sections/{new.key}/all"]
    assert world.plex.refreshed == [world.key_of("movie", 5)]  # under its new key
    finish(world, "movie", 5)


def test_items_re_added_under_new_keys_are_found_by_the_update(world: World) -> None:
    # Plex re-matched the movie: a new item (new rating key, updated now), the old gone.
    old = world.key_of("movie", 6)
    item = world.plex.items.pop(old)
    item.rating_key = world.plex._new_key()
    item.updated_at = world.plex.plex_time()
    world.plex.items[item.rating_key] = item
    world.change_movie(6)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    assert world.plex.refreshed == [item.rating_key]
    # The old key left the index with the update: no refresh of it, no scan.
    assert world.plex.scans == []
    assert world.whole_listings("1") == []
    finish(world, "movie", 6)
    with world.cli.state() as state:
        assert state.execute("SELECT count(*) FROM player_index WHERE item_id = ?",
                             (old,)).fetchone()[0] == 0


def test_a_stale_key_is_dropped_and_the_item_found_afresh(world: World) -> None:
    stale = world.key_of("movie", 3)
    # Plex lost the item (its database restored from a backup, say) without updating
    # anything: the file is there, the key in the index is not.
    del world.plex.items[stale]
    world.change_movie(3)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    # The refresh of the stale key got 404: the folder was scanned, Plex made the item
    # again, and verification found it there.
    assert world.plex.refreshed == []
    folder = world.player_path(world.metarr.file_of("movies", world.movies[3]))
    assert world.plex.scans == [("1", folder.rsplit("/", 1)[0])]
    assert world.whole_listings("1") == []
    finish(world, "movie", 3)
    with world.cli.state() as state:
        assert state.execute("SELECT count(*) FROM player_index WHERE item_id = ?",
                             (stale,)).fetchone()[0] == 0


def test_an_index_older_than_7_days_is_listed_whole_again(world: World) -> None:
    with world.cli.state() as state:
        state.execute("UPDATE player_index_libraries SET built_at = ?",
                      ((datetime.now(UTC) - timedelta(days=8)).strftime(
                          "%Y-%m-%dT%H:%M:%S.000Z"),))
    world.change_movie(9)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    assert len(world.whole_listings("1")) == 1
    world.plex.reset_log()
    world.change_movie(10)
    assert world.run()["synced"] == 1
    assert world.whole_listings("1") == []  # and trusted again
    finish(world, "movie", 9)
    assert world.verified("movie", 10)


@pytest.mark.parametrize("change", ["uuid", "folders"])
def test_a_new_section_uuid_or_other_folders_throw_the_index_away(
        world: World, change: str) -> None:
    section = world.plex.sections[0]
    if change == "uuid":  # the same key, but another section (Plex reused the number)
        section.uuid = "0" * 8 + section.uuid[8:]
    else:  # a folder added to the section: its items are in no index
        section.locations.append("/media/more-movies")
    world.change_movie(2)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    assert len(world.whole_listings("1")) == 1
    assert world.plex.refreshed == [world.key_of("movie", 2)]
    with world.cli.state() as state:
        built = state.execute("SELECT library, locations FROM player_index_libraries "
                              "WHERE library LIKE '1/%/1'").fetchall()
    assert [(b[0], json.loads(b[1])) for b in built] == [
        (f"1/{section.uuid}/1", section.locations)]
    finish(world, "movie", 2)


def remove(world: World, index: int) -> str:
    """The movie's file is deleted (Radarr), Metarr moves it to its recycle bin; Plex's
    path of it."""
    row = world.movies[index]
    path = world.player_path(world.metarr.delete_media("movies", row))
    world.metarr.soft_delete("movies", row)
    world.plex.remove_file(path)
    return path


def test_a_removal_empties_the_trash_only_after_a_whole_listing(world: World) -> None:
    """The trash guard never trusts the index: it lists the section whole, as before."""
    path = remove(world, 8)
    assert world.run()["synced"] == 1  # the scan of its folder; Plex marks it missing
    world.plex.reset_log()
    report = world.run("verify")
    assert (report["verified"], report["failed"]) == (1, 0), report
    # The update found it marked missing; the guard listed the section whole, saw only
    # ours in the trash, emptied it; the key was then confirmed gone.
    assert len(world.whole_listings("1")) == 1
    assert world.plex.emptied == ["1"] and world.plex.purged == [path]
    assert world.queue() == 0


def test_a_removal_is_proven_against_plex_not_the_index(world: World) -> None:
    key = world.key_of("movie", 9)
    path = remove(world, 9)
    del world.plex.items[key]  # Plex dropped it on its own: no update will say so
    assert world.run()["synced"] == 1
    world.plex.reset_log()
    report = world.run("verify")
    assert (report["verified"], report["failed"]) == (1, 0), report
    # Asked by key, Plex has no such item: gone, without listing the section whole or
    # touching the trash.
    assert [r.path for r in world.plex.received("GET /library/metadata/{id}")] == [
        f"/library/metadata/{key}"]
    assert world.whole_listings("1") == [] and world.plex.emptied == []
    assert path not in world.plex.library_files()
    with world.cli.state() as state:
        assert state.execute("SELECT count(*) FROM player_index WHERE item_id = ?",
                             (key,)).fetchone()[0] == 0


def test_another_server_throws_the_index_away(world: World) -> None:
    world.plex.machine = "f" * 32  # the same address now answers as another install
    world.change_movie(11)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    assert len(world.whole_listings("1")) == 1
    assert world.plex.refreshed == [world.key_of("movie", 11)]
    with world.cli.state() as state:
        servers = {r[0] for r in state.execute(
            "SELECT server_id FROM player_index_libraries")}
    assert "f" * 32 in servers
    finish(world, "movie", 11)


def test_an_unknown_listing_filter_is_an_error_in_the_fake(world: World) -> None:
    """The fake answers a misspelt filter 400 (Plex would ignore it and list everything:
    a fake doing so would hide the mistake)."""
    import requests

    answer = requests.get(f"{world.plex.url}/library/sections/1/all",
                          params={"type": 1, "updatedAt>=": 1},
                          headers={"X-Plex-Token": world.plex.token}, timeout=5)
    assert answer.status_code == 400


def test_the_update_asks_from_the_servers_clock_not_ours(world: World) -> None:
    # Plex's clock is an hour behind ours: it stamps updatedAt an hour earlier. Asked
    # from our own clock minus the 15-minute margin, the update would miss what it
    # updated; the index's stamp follows the server's Date header instead.
    world.plex.clock = -3600.0
    world.change_movie(4)
    assert world.run()["synced"] == 1  # stamps the index in the server's time
    refreshed = world.key_of("movie", 4)
    world.plex.reset_log()
    world.change_movie(5)
    assert world.run()["synced"] == 1
    (update,) = [r for r in world.plex.received("GET /library/sections/{key}/all")
                 if r.param("updatedAt>>") is not None]
    asked = int(str(update.param("updatedAt>>")))
    assert 14 * 60 < world.plex.plex_time() - asked < 17 * 60
    # So the movie the run before refreshed (updated "an hour ago" in our time) is in it.
    assert world.plex.items[refreshed].updated_at > asked


class AllOrNothingPlex(FakePlex):
    """A Plex that answers 404 to `/library/metadata/{k1,k2}` when any key is gone (not
    known of the real one: the adapter must not count the others as gone then)."""

    def handle(self, request: Recorded) -> Any:
        keys = request.path.removeprefix("/library/metadata/")
        if request.path.startswith("/library/metadata/") and "," in keys and any(
                k not in self.items for k in keys.split(",")):
            from support.fake_players import Reply

            return Reply(404)
        return super().handle(request)


def test_a_404_for_several_keys_asks_each_alone(tmp_path: Path) -> None:
    from metarr_sync.config import PlayerConfig, SyncConfig
    from metarr_sync.players.plex import PlexPlayer
    from metarr_sync.state import State

    with AllOrNothingPlex() as plex:
        assert isinstance(plex, AllOrNothingPlex)
        kept = plex.put_item("/media/movies/Kept (2001)/Kept (2001).mkv").rating_key
        gone = plex.put_item("/media/movies/Gone (2002)/Gone (2002).mkv").rating_key
        state = State(tmp_path)
        player = PlexPlayer(PlayerConfig(name="den", type="plex", url=plex.url,
                                         token_value=plex.token),
                            SyncConfig(timeout=5, retry_attempts=0))
        try:
            player.probe()
            player.keep_index(state)
            section = player.sections()[0]
            player.listing(section, 1)  # listed whole: the index is built
            del plex.items[gone]
            player._listed.clear()  # a later run: nothing listed yet
            plex.reset_log()
            assert player.confirmed([kept, gone], None) == [kept]
            assert sorted(r.path for r in plex.received("GET /library/metadata/{id}")) == sorted(
                [f"/library/metadata/{gone}", f"/library/metadata/{kept}",
                 f"/library/metadata/{kept},{gone}"])
            assert state.index_library_of("den", gone) is None
            assert state.index_library_of("den", kept) == section.index_id(1)
        finally:
            player.close()
            state.close()


def test_a_new_movie_is_scanned_then_found_by_the_next_update(world: World) -> None:
    row = world.metarr.add_movie("Newcomer", 2024)  # published an hour ago
    path = world.player_path(world.metarr.file_of("movies", row))
    world.plex.add_file(path)
    report = world.run()
    assert (report["synced"], report["failed"]) == (1, 0), report
    assert world.plex.scans == [("1", path.rsplit("/", 1)[0])]
    world.plex.reset_log()
    assert world.run("verify")["verified"] == 1
    # Plex added it when its scanner ran (updatedAt then): the update lists it, nothing
    # is listed whole or confirmed by key.
    assert world.whole_listings("1") == []
    assert world.plex.received("GET /library/metadata/{id}") == []
    assert world.queue() == 0
