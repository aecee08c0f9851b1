"""Jellyfin/Emby reports that make the server validate a whole library folder.

A reported path walks up to the nearest item the server knows (Jellyfin's FileRefresher);
a new or removed movie and a new show land on the library folder, validated whole. Such
paths go at most once per library folder and run, and not again while an earlier run's
validation of that folder is still to be seen (within `verify_after`); paths landing on a
known show stay targeted. First against `responses` (what the adapter sends), then the
installed `metarr-sync` against the fake Jellyfin, whose library monitor runs reports
later, as Jellyfin's does (tests/support/fake_players.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import responses
from support.configs import config_with, player
from support.fake_players import FakeJellyfin
from support.metarr_factory import MetarrDB
from test_jellyfin import (
    MAPPINGS,
    TV_ID,
    Server,
    emby_standard,
    episode,
    jf_item,
    make_player,
    movie,
    show,
    targets,
)

from metarr_sync.config import ConfigError, Mapping, load_config
from metarr_sync.metarr import Item
from metarr_sync.players.jellyfin import EmbyPlayer, JellyfinPlayer


@pytest.fixture
def jf():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Server(mock)


# --- what the adapter sends --------------------------------------------------------------

def test_three_new_movies_of_one_library_folder_go_as_that_folder_once(jf: Server) -> None:
    jf.standard()
    player = make_player()
    batch = targets(movie(1, "Heat", 1995), movie(2, "Alien", 1979), movie(3, "Dune", 2021))
    assert [o.result for o in player.apply(batch)] == ["synced"] * 3
    # Each file would land on /media/movies in a FileRefresher of its own (they are not
    # siblings): three validations of the whole folder. The folder itself goes once.
    assert jf.updates() == [[{"Path": "/media/movies", "UpdateType": "Modified"}]]
    assert player.roots_reported == {"/media/movies": ["movie:1", "movie:2", "movie:3"]}


def test_a_later_batch_of_the_same_run_sends_nothing_for_a_folder_already_reported(
        jf: Server) -> None:
    jf.standard()
    player = make_player()
    player.apply(targets(movie(1, "Heat", 1995), movie(2, "Alien", 1979)))
    later = player.apply(targets(movie(3, "Dune", 2021), movie(4, "Up", 2009)))
    assert [o.result for o in later] == ["synced"] * 2  # the first report's validation
    assert jf.updates() == [[{"Path": "/media/movies", "UpdateType": "Modified"}]]
    assert player.roots_reported == {"/media/movies": ["movie:1", "movie:2", "movie:3",
                                                        "movie:4"]}


def test_each_folder_of_a_library_is_its_own_root(jf: Server) -> None:
    # The Movies library has two folders: a validation of one does not reach the other.
    jf.standard()
    player = make_player()
    extra = [Item("movie", n, f"/data/extra/{name}/{name}.mkv", title=name)
             for n, name in ((4, "Up (2009)"), (5, "Jaws (1975)"))]
    batch = targets(movie(1, "Heat", 1995), movie(2, "Alien", 1979), movie(3, "Dune", 2021),
                    *extra, mappings=[*MAPPINGS, Mapping("/data/extra", "/media/movies-extra")])
    player.apply(batch)
    assert jf.updates() == [[{"Path": "/media/movies", "UpdateType": "Modified"},
                             {"Path": "/media/movies-extra", "UpdateType": "Modified"}]]


def test_new_episodes_of_a_known_show_stay_targeted(jf: Server) -> None:
    jf.standard()
    jf.has(TV_ID, jf_item("Series", "/media/tv/Severance"))
    player = make_player()
    batch = targets(episode(1, "Severance", 2, 1), episode(2, "Severance", 2, 2),
                    episode(3, "Severance", 2, 3))
    player.apply(batch)
    assert jf.updates() == [[
        {"Path": f"/media/tv/Severance/Season 02/Severance S02E0{n}.mkv",
         "UpdateType": "Created"} for n in (1, 2, 3)]]
    assert player.roots_reported == {}


def test_new_shows_land_on_the_library_folder_once(jf: Server) -> None:
    jf.standard()
    player = make_player()
    player.apply(targets(episode(1, "Andor", 1, 1), show(2, "Andor"),
                         episode(3, "Dark", 1, 1)))
    # Neither show folder is an item yet: both walk up to /media/tv. They are siblings,
    # which Jellyfin merges into one refresher (one validation): sent as they are.
    assert jf.updates() == [[{"Path": "/media/tv/Andor", "UpdateType": "Created"},
                             {"Path": "/media/tv/Dark", "UpdateType": "Created"}]]
    assert player.roots_reported == {"/media/tv": ["episode:1", "series:2", "episode:3"]}


def test_a_removed_show_lands_on_the_library_folder_a_removed_episode_on_its_show(
        jf: Server) -> None:
    jf.standard()
    dark = jf_item("Series", "/media/tv/Dark")
    jf.has(TV_ID, jf_item("Series", "/media/tv/Andor"), dark)
    jf.library_items[dark["Id"]] = [  # the show's episodes, listed by its id
        jf_item("Episode", "/media/tv/Dark/Season 01/Dark S01E01.mkv")]
    player = make_player()
    removed_show = Item("series", 20, "/data/tv/Andor", title="Andor",
                        series_path="/data/tv/Andor", removed=True)
    removed_ep = Item("episode", 21, "/data/tv/Dark/Season 01/Dark S01E01.mkv", title="Dark",
                      series_path="/data/tv/Dark", season=1, episode=1, removed=True)
    player.apply(targets(removed_show, removed_ep))
    # The show's folder is gone: Jellyfin goes on to its parent, the library folder. The
    # episode's file is gone: its season (or show) folder is still there.
    assert jf.updates() == [[
        {"Path": "/media/tv/Dark/Season 01/Dark S01E01.mkv", "UpdateType": "Deleted"},
        {"Path": "/media/tv/Andor", "UpdateType": "Deleted"}]]
    assert player.roots_reported == {"/media/tv": ["series:20"]}


def test_a_movie_upgrade_alone_goes_as_its_files(jf: Server, tmp_path: Path) -> None:
    # Paths of one folder are siblings: Jellyfin merges them into one refresher itself.
    jf.standard()
    player = make_player()
    player.apply(targets(movie(1, "Heat", 1995)))
    assert jf.updates() == [[{"Path": "/media/movies/Heat (1995)/Heat (1995).mkv",
                              "UpdateType": "Created"}]]
    assert player.roots_reported == {"/media/movies": ["movie:1"]}


def test_a_folder_an_earlier_run_reported_is_not_reported_again(jf: Server) -> None:
    jf.standard()
    jf.has(TV_ID, jf_item("Series", "/media/tv/Severance"))
    player = make_player()
    player.roots_in_flight = {"/media/movies": "2026-12-04T04:00:00.000Z"}
    outcomes = player.apply(targets(movie(1, "Heat", 1995), movie(2, "Old", 1990,
                                                                  removed=True),
                                    episode(3, "Severance", 2, 1)))
    # Delivered all the same (verified later); only the targeted episode goes.
    assert [o.result for o in outcomes] == ["synced"] * 3
    assert jf.updates() == [[{"Path": "/media/tv/Severance/Season 02/Severance S02E01.mkv",
                              "UpdateType": "Created"}]]
    assert player.roots_reported == {}


def test_nothing_is_sent_when_every_path_lands_on_a_folder_in_flight(jf: Server) -> None:
    jf.standard()
    player = make_player()
    player.roots_in_flight = {"/media/movies": "2026-12-04T04:00:00.000Z"}
    assert [o.result for o in player.apply(targets(movie(1, "Heat", 1995)))] == ["synced"]
    assert jf.sent("POST", "/Library/Media/Updated") == []


def test_emby_coalesces_the_same_way(jf: Server) -> None:
    emby_standard(jf)

    def items(request: Any) -> tuple[int, dict, str]:
        return 200, {}, json.dumps({"Items": [], "TotalRecordCount": 0})

    jf.mock.add_callback(responses.GET, jf.url("/Items"), callback=items)
    jf.mock.post(jf.url("/Library/Media/Updated"), status=200)
    player = make_player(EmbyPlayer)
    player.apply(targets(movie(1, "Heat", 1995), movie(2, "Alien", 1979)))
    assert jf.updates() == [[{"Path": "/media/movies", "UpdateType": "Modified"}]]


def test_verify_after_is_the_players_setting(tmp_path: Path) -> None:
    assert make_player().verify_after == JellyfinPlayer.verify_after == 1800.0
    assert make_player(verify_after=90.0).verify_after == 90.0
    config = tmp_path / "config.toml"
    config.write_text(config_with(metarr="/nonexistent.sqlite", players=[
        player("emby", "den", url="http://127.0.0.1:8096", token="t", verify_after=600)]))
    den = load_config(config).players["den"]
    assert den.verify_after == 600.0 and isinstance(den.verify_after, float)


@pytest.mark.parametrize(("kind", "value", "problem"), [
    ("jellyfin", "0", "players.den.verify_after: must be a positive number of seconds, at "
                      "most 86400, not 0"),
    ("emby", "90000", "players.den.verify_after: must be a positive number of seconds, at "
                      "most 86400, not 90000"),
    ("jellyfin", '"30m"', "players.den.verify_after"),
    ("kodi", "600", "players.den.verify_after: not a setting of kodi players"),
])
def test_bad_verify_after_is_refused_clearly(tmp_path: Path, kind: str, value: str,
                                             problem: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[metarr]\ndatabase = "/nonexistent.sqlite"\n\n'
                      f'[players.den]\ntype = "{kind}"\nurl = "http://127.0.0.1:8096"\n'
                      f'token = "t"\nverify_after = {value}\n')
    with pytest.raises(ConfigError) as raised:
        load_config(config)
    assert any(problem in p for p in raised.value.problems), raised.value.problems


# --- end to end: the installed command against the fake Jellyfin -------------------------

class World:
    """Metarr's media on disk under tmp/media, seen by the fake Jellyfin as /media."""

    def __init__(self, cli: Any, metarr: MetarrDB, tmp_path: Path, jelly: FakeJellyfin):
        self.cli, self.metarr, self.jelly = cli, metarr, jelly
        self.root = tmp_path / "media"
        metarr.use_disk(self.root)

    def configure(self, verify_after: float) -> None:
        self.cli.write_config(config_with(
            metarr=self.metarr.path,
            sync={"timeout": 5, "retry_attempts": 1, "initial_lookback": "all"},
            players=[self.jelly.player("jelly", [(str(self.root), "/media")],
                                       verify_after=verify_after)]))

    def player_path(self, path: str) -> str:
        return "/media" + path[len(str(self.root)):]

    def new_movie(self, title: str, year: int) -> int:
        row = self.metarr.add_movie(title, year)
        self.jelly.add_file(self.player_path(self.metarr.file_of("movies", row)))
        return row

    def run(self, *args: str) -> dict[str, Any]:
        result = self.cli("run", "--json", *args)
        assert "Traceback" not in result.stderr, result.stderr
        return json.loads(result.stdout)["players"][0]

    def reports(self) -> list[list[dict[str, str]]]:
        return [r.json["Updates"] for r in self.jelly.received("/Library/Media/Updated")]

    def queue(self) -> dict[str, tuple[str, int]]:
        with self.cli.state() as state:
            return {r[0]: (r[1], r[2]) for r in state.execute(
                "SELECT item_key, status, attempts FROM sync_queue")}

    def window_passed(self) -> None:
        """verify_after has passed since the last deliveries and root reports (their
        times moved back instead of sleeping)."""
        with self.cli.state() as state:
            state.execute("UPDATE sync_queue SET updated_at = '2000-01-01T00:00:00.000Z'")
            state.execute("UPDATE player_roots SET reported_at = '2000-01-01T00:00:00.000Z'")


@pytest.fixture
def world(cli, metarr: MetarrDB, tmp_path: Path):
    # monitor_delay=None: Jellyfin's library monitor runs only when the test says.
    with FakeJellyfin(monitor_delay=None) as jelly:
        yield World(cli, metarr, tmp_path, jelly)


def test_three_new_movies_one_root_report_then_verified_after_verify_after(world) -> None:
    world.configure(verify_after=1)
    movies = [world.new_movie(t, y) for t, y in (("Heat", 1995), ("Alien", 1979),
                                                 ("Dune", 2021))]
    first = world.run()
    assert (first["synced"], first["verified"], first["failed"]) == (3, 0, 0)
    assert world.reports() == [[{"Path": "/media/movies", "UpdateType": "Modified"}]]
    # Answered at once; nothing new is listed before the monitor has run.
    assert world.jelly.library_files() == set()
    world.jelly.finish_validations()
    assert world.jelly.root_validations == ["/media/movies"]
    assert len(world.jelly.library_files()) == 3
    time.sleep(1.2)  # verify_after = 1
    second = world.run()
    assert second["verified"] == 3 and second["failed"] == 0
    assert world.queue() == {}
    assert len(world.reports()) == 1, "verification reports nothing"
    with world.cli.state() as state:
        assert {f"movie:{m}" for m in movies} == {r[0] for r in state.execute(
            "SELECT item_key FROM player_sync_status WHERE verified_at IS NOT NULL")}


def test_new_episodes_of_a_known_show_are_reported_as_files_not_the_root(world) -> None:
    world.configure(verify_after=600)
    dark = world.metarr.add_series("Dark")
    season = world.metarr.add_season(dark, 1)
    first_ep = world.metarr.add_episode(dark, season, 1, 1)
    world.jelly.add_file(world.player_path(world.metarr.file_of("episodes", first_ep)))
    world.run()
    # A new show: its folder is no item yet, so it lands on /media/tv, validated whole.
    assert world.reports() == [[{"Path": "/media/tv/Dark", "UpdateType": "Created"}]]
    world.jelly.finish_validations()
    assert world.jelly.root_validations == ["/media/tv"]
    assert world.cli("verify").returncode == 0
    world.jelly.reset_log()

    new = [world.metarr.add_episode(dark, season, 1, n) for n in (2, 3)]
    files = [world.player_path(world.metarr.file_of("episodes", e)) for e in new]
    world.jelly.add_file(*files)
    report = world.run()
    assert report["synced"] == 2
    assert world.reports() == [[{"Path": f, "UpdateType": "Created"} for f in files]]
    world.jelly.finish_validations()
    # Siblings in one refresher, walked up to the show: only the show is validated.
    assert world.jelly.root_validations == []
    assert world.jelly.validations == ["/media/tv/Dark"]
    assert set(files) <= world.jelly.library_files()


def test_a_new_movie_within_the_window_is_not_reported_again_and_is_verified(
        world) -> None:
    world.configure(verify_after=600)
    for title, year in (("Heat", 1995), ("Alien", 1979), ("Dune", 2021)):
        world.new_movie(title, year)
    world.run()
    assert len(world.reports()) == 1
    fourth = world.new_movie("Up", 2009)
    # Jellyfin's validation of /media/movies has not been seen yet: no second one.
    second = world.run()
    assert second["synced"] == 1 and second["failed"] == 0
    assert len(world.reports()) == 1
    assert world.queue()[f"movie:{fourth}"] == ("sent", 1)
    # The pending validation runs after the file arrived: it finds all four.
    world.jelly.finish_validations()
    assert world.jelly.root_validations == ["/media/movies"]
    world.window_passed()
    third = world.run()
    assert third["verified"] == 4 and third["failed"] == 0
    assert world.queue() == {}
    assert len(world.reports()) == 1


def test_unseen_after_the_window_the_movie_is_reported_again(world) -> None:
    world.configure(verify_after=600)
    for title, year in (("Heat", 1995), ("Alien", 1979), ("Dune", 2021)):
        world.new_movie(title, year)
    world.run()
    # Jellyfin's validation ran before the fourth file arrived: it will not find it.
    world.jelly.finish_validations()
    fourth = world.new_movie("Up", 2009)
    world.run()
    assert len(world.reports()) == 1  # the first run's validation is not seen yet
    world.jelly.finish_validations()
    assert world.jelly.root_validations == ["/media/movies"]
    world.window_passed()
    third = world.run()
    assert third["verified"] == 3
    # Judged unverified by this run (after its verify_after, still not listed) ...
    assert world.queue()[f"movie:{fourth}"] == ("unverified", 1)
    assert len(world.reports()) == 1
    # ... and sent again by the next: the folder's window is over, so it goes.
    world.run()
    fourth_file = world.player_path(world.metarr.file_of("movies", fourth))
    assert world.reports()[1:] == [[{"Path": fourth_file, "UpdateType": "Created"}]]
    world.jelly.finish_validations()
    assert world.jelly.root_validations == ["/media/movies"] * 2
    assert fourth_file in world.jelly.library_files()
    world.window_passed()
    assert world.run()["verified"] == 1
    assert world.queue() == {}


def test_a_seen_validation_ends_the_window(world) -> None:
    # One item of the earlier report is seen: that validation has run, and a new movie
    # needs a report of its own even within verify_after.
    world.configure(verify_after=600)
    world.new_movie("Heat", 1995)
    world.new_movie("Alien", 1979)
    world.run()
    world.jelly.finish_validations()
    assert world.cli("verify").returncode == 0
    fourth = world.new_movie("Up", 2009)
    world.run()
    fourth_file = world.player_path(world.metarr.file_of("movies", fourth))
    assert world.reports()[1:] == [[{"Path": fourth_file, "UpdateType": "Created"}]]


# --- what the state remembers ----------------------------------------------------------

def test_a_library_folder_is_in_flight_until_its_window_ends_or_an_item_is_seen(
        tmp_path: Path) -> None:
    from metarr_sync.players.base import Outcome, Result
    from metarr_sync.state import State

    state = State(tmp_path)
    try:
        items = [movie(1, "Heat", 1995), movie(2, "Alien", 1979), movie(3, "Dune", 2021)]
        state.enqueue(items, ["jelly", "den"], "run")
        state.record("jelly", items, [Outcome(i.key, Result.SENT) for i in items], None)
        state.record_roots("jelly", {"/media/movies": ["movie:1", "movie:2"],
                                     "/media/tv": []})
        # Reported just now, both items waiting: in flight for this player only. A
        # report without items (nothing to see) never holds anything back.
        assert set(state.roots_in_flight("jelly", 600)) == {"/media/movies"}
        assert state.roots_in_flight("den", 600) == {}
        # The window is over.
        state.conn.execute("UPDATE player_roots SET reported_at = '2000-01-01T00:00:00.000Z'")
        assert state.roots_in_flight("jelly", 600) == {}
        # Reported again; then one of its items is seen: that validation has run.
        state.record_roots("jelly", {"/media/movies": ["movie:1", "movie:2"]})
        assert set(state.roots_in_flight("jelly", 600)) == {"/media/movies"}
        state.record("jelly", items[:1], [Outcome("movie:1", Result.VERIFIED)], None)
        assert state.roots_in_flight("jelly", 600) == {}
        # A player removed from the configuration takes its folders along.
        state.forget_players(["den"])
        assert state.conn.execute("SELECT count(*) FROM player_roots").fetchone()[0] == 0
    finally:
        state.close()


def test_a_dry_run_shows_the_folder_report_and_remembers_nothing(world) -> None:
    world.configure(verify_after=600)
    for title, year in (("Heat", 1995), ("Alien", 1979)):
        world.new_movie(title, year)
    dry = world.cli("run", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "/Library/Media/Updated" in dry.stdout and "/media/movies" in dry.stdout
    assert world.reports() == []
    with world.cli.state() as state:
        assert state.execute("SELECT count(*) FROM player_roots").fetchone()[0] == 0
    world.run()  # the real run is not held back by the rehearsal
    assert world.reports() == [[{"Path": "/media/movies", "UpdateType": "Modified"}]]
