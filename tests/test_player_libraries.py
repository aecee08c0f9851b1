"""Players that serve only some of Metarr's libraries (`libraries = [...]`).

A Kodi in the kids' room has the movies only: a new episode is not its work — not sent,
not queued, not failed — while the players that serve everything get both. End to end
through the installed command against the fake Kodi, Jellyfin and Plex
(tests/support/fake_players.py), on each Metarr backend (SQLite, PostgreSQL).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.configs import config_with, kodi, player, recorder
from support.fake_players import FakeJellyfin, FakeKodi, FakePlex

from metarr_sync.config import ConfigError, parse_config


def run(cli, *args: str) -> tuple[int, dict]:
    result = cli("run", "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def queue(cli) -> dict[tuple[str, str], str]:
    with cli.state() as state:
        return {(r[0], r[1]): r[2] for r in state.execute(
            "SELECT player, item_key, status FROM sync_queue")}


class World:
    """Metarr's media on disk under `root`; Kodi sees the movies as /mnt/movies (it has
    no TV source at all), Jellyfin and Plex the whole root as /media."""

    def __init__(self, cli, db, root: Path, kodi_fake: FakeKodi, jelly: FakeJellyfin,
                 plex: FakePlex):
        self.cli, self.db, self.root = cli, db, root
        self.kodi, self.jelly, self.plex = kodi_fake, jelly, plex

    def publish(self, path: str) -> None:
        tail = path[len(str(self.root)):]
        if tail.startswith("/movies/"):
            self.kodi.add_file("/mnt" + tail)
        self.jelly.add_file("/media" + tail)
        self.plex.add_file("/media" + tail)

    def config(self, libraries: list[str | int] | None = None) -> str:
        return config_with(
            metarr=self.db.config_table,
            sync={"initial_lookback": "all", "timeout": 10, "retry_attempts": 1,
                  "max_removal_percent": 100},
            players=[
                kodi("kids", url=self.kodi.url, libraries=libraries,
                     mappings=[(f"{self.root}/movies", "/mnt/movies")]),
                player("jellyfin", "den", url=self.jelly.url, token=self.jelly.token,
                       mappings=[(str(self.root), "/media")]),
                player("plex", "living", url=self.plex.url, token=self.plex.token,
                       mappings=[(str(self.root), "/media")])])


@pytest.fixture
def world(cli, metarr_db, tmp_path):
    root = tmp_path / "media"
    metarr_db.use_disk(root)
    with FakeKodi(sources={"/mnt/movies/": "movies"}) as kodi_fake, \
            FakeJellyfin() as jelly, FakePlex() as plex:
        w = World(cli, metarr_db, root, kodi_fake, jelly, plex)
        cli.write_config(w.config(["Movies"]))
        yield w


def add_movie_and_episode(w: World) -> tuple[int, int, int]:
    movie = w.db.add_movie("The Matrix", 1999)
    show = w.db.add_series("Severance")
    season = w.db.add_season(show, 1)
    episode = w.db.add_episode(show, season, 1, 1)
    w.publish(w.db.file_of("movies", movie))
    w.publish(w.db.file_of("episodes", episode))
    return movie, show, episode


def test_movies_only_kodi_gets_the_movie_and_the_others_get_both(world):
    w = world
    movie, show, episode = add_movie_and_episode(w)
    code, report = run(w.cli)
    assert code == 0, json.dumps(report)
    assert report["status"] == "synced"
    rows = {p["name"]: p for p in report["players"]}
    # Kodi's only item is the movie: the show and its episode are not counted for it.
    assert (rows["kids"]["status"], rows["kids"]["items"], rows["kids"]["synced"],
            rows["kids"]["failed"]) == ("synced", 1, 1, 0)
    assert rows["kids"]["failures"] == []
    for name in ("den", "living"):
        assert (rows[name]["items"], rows[name]["synced"], rows[name]["failed"]) == (3, 3, 0)
    movie_path = "/mnt" + w.db.file_of("movies", movie)[len(str(w.root)):]
    assert w.kodi.library_files() == {movie_path}
    # Nothing about TV went to Kodi, not even a scan of a path it does not have.
    assert "/tv" not in w.kodi.all_text().replace("tvshow", "")
    episode_path = "/media" + w.db.file_of("episodes", episode)[len(str(w.root)):]
    assert episode_path in w.jelly.library_files()
    assert episode_path in w.plex.library_files()
    # The queue holds nothing for Kodi: not the episode, not the show.
    assert not [k for k in queue(w.cli) if k[0] == "kids"]

    status = w.cli("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.startswith("OK: 3 player(s) in sync"), status.stdout


def test_removal_of_an_unserved_item_is_not_sent_to_it(world):
    w = world
    _, _, episode = add_movie_and_episode(w)
    assert run(w.cli)[0] == 0
    gone = w.db.delete_media("episodes", episode)
    w.jelly.remove_file("/media" + gone[len(str(w.root)):])
    w.plex.remove_file("/media" + gone[len(str(w.root)):])
    w.db.soft_delete("episodes", episode)
    w.kodi.reset_log()
    code, report = run(w.cli)
    assert code == 0, json.dumps(report)
    rows = {p["name"]: p for p in report["players"]}
    assert rows["kids"]["items"] == 0 and rows["kids"]["requests"] == 0
    assert w.kodi.received() == []
    assert rows["den"]["synced"] == 1 and rows["living"]["synced"] == 1


def test_entries_queued_before_the_setting_leave_the_queue_quietly(world):
    w = world
    w.cli.write_config(w.config(None))  # Kodi serving everything, the TV unmapped
    _, show, episode = add_movie_and_episode(w)
    code, _ = run(w.cli)
    assert code == 1  # the show and episode map nowhere for Kodi: failed, as before
    assert queue(w.cli)[("kids", f"episode:{episode}")] == "failed"

    w.cli.write_config(w.config(["Movies"]))
    rehearsal = w.cli("-v", "run", "--dry-run")
    assert (f"kids: episode:{episode} (Severance S01E01) would leave its queue: library "
            "TV Shows is not among its libraries") in rehearsal.stderr
    assert queue(w.cli)[("kids", f"episode:{episode}")] == "failed"  # a dry run changes nothing
    result = w.cli("-v", "run", "--json")
    assert result.returncode == 0, result.stderr
    assert not [k for k in queue(w.cli) if k[0] == "kids"]
    assert (f"kids: episode:{episode} (Severance S01E01) left its queue: library "
            "TV Shows is not among its libraries") in result.stderr
    assert f"kids: series:{show} (Severance) left its queue" in result.stderr
    status = w.cli("status")
    assert status.returncode == 0, status.stdout


def test_a_served_library_that_maps_nowhere_stays_an_error(world):
    w = world
    w.cli.write_config(w.config(["Movies", w.db.tv_lib]))  # a name and an id
    _, _, episode = add_movie_and_episode(w)
    code, report = run(w.cli)
    assert code == 1
    kids = next(p for p in report["players"] if p["name"] == "kids")
    assert (kids["status"], kids["synced"], kids["failed"]) == ("partial", 1, 2)
    assert queue(w.cli)[("kids", f"episode:{episode}")] == "failed"


def test_unknown_library_fails_that_player_only_and_keeps_its_work(world):
    w = world
    w.cli.write_config(w.config(["Movies", "Kids TV", 99]))
    movie, _, _ = add_movie_and_episode(w)
    result = w.cli("run")
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stdout
    code, report = run(w.cli)
    assert code == 1
    rows = {p["name"]: p for p in report["players"]}
    kids = rows["kids"]
    assert kids["status"] == "failed" and kids["requests"] == 0
    assert kids["error"].startswith(
        "players.kids.libraries: Metarr has no library 'Kids TV', id 99 (names match "
        "exactly; Metarr's libraries: 'Movies' (id 1), 'TV Shows' (id 2))")
    assert w.kodi.received() == []
    # The others went on; Kodi's work waits (nothing was dropped for it).
    assert rows["den"]["status"] == "synced" and rows["living"]["status"] == "synced"
    assert queue(w.cli)[("kids", f"movie:{movie}")] == "pending"
    # Fixed: the movie goes, the TV items leave Kodi's queue.
    w.cli.write_config(w.config(["Movies"]))
    code, report = run(w.cli)
    assert code == 0, json.dumps(report)
    assert not [k for k in queue(w.cli) if k[0] == "kids"]
    assert len(w.kodi.library_files()) == 1


def test_a_shared_library_member_with_an_unknown_library_lets_the_next_one_sync(cli, metarr):
    cli.write_config(config_with(
        metarr=metarr.path, groups={"house": {"shared_library": True}},
        players=[recorder("first", group="house", priority=10, libraries=["Moovies"]),
                 recorder("second", group="house", priority=20, libraries=["Movies"])]))
    movie = metarr.add_movie("The Matrix", 1999)
    show = metarr.add_series("Severance")
    result = cli("run", "--json")
    assert result.returncode == 1  # a player failed: its config needs a person
    rows = {p["name"]: p for p in json.loads(result.stdout)["players"]}
    assert rows["first"]["status"] == "failed"
    assert rows["first"]["error"].startswith(
        "players.first.libraries: Metarr has no library 'Moovies'")
    assert cli.calls("first") == []
    # The next member synced the library they share: the movie, not the show.
    assert rows["second"]["status"] == "synced"
    assert [t["key"] for t in cli.sent("second")] == [f"movie:{movie}"]
    # The movie was delivered for both; the show waits for `first` only, whose work is
    # unknown until its libraries are fixed.
    assert queue(cli) == {("first", f"series:{show}"): "pending"}


# --- queue add and sync with auto_sync off: only the player's libraries are queued -----

def test_queue_add_queues_only_the_libraries_a_player_serves(cli, metarr):
    movie = metarr.add_movie("The Matrix", 1999)
    show = metarr.add_series("Severance")
    season = metarr.add_season(show, 1)
    episode = metarr.add_episode(show, season, 1, 1)
    cli.write_config(config_with(metarr=metarr.path, players=[
        recorder("kids", libraries=["Movies"], mappings=[("/data/media", "/mnt")]),
        recorder("den", mappings=[("/data/media", "/mnt")])]))
    result = cli("queue", "add", "--movie", str(movie), "--episode", str(episode))
    assert result.returncode == 0, result.stderr
    assert queue(cli) == {("kids", f"movie:{movie}"): "pending",
                          ("den", f"movie:{movie}"): "pending",
                          ("den", f"episode:{episode}"): "pending"}


def test_sync_with_auto_sync_off_queues_only_the_libraries_a_player_serves(cli, metarr):
    movie = metarr.add_movie("The Matrix", 1999)
    show = metarr.add_series("Severance")
    episode = metarr.add_episode(show, metarr.add_season(show, 1), 1, 1)
    cli.write_config(config_with(metarr=metarr.path, sync={"auto_sync": False}, players=[
        recorder("kids", libraries=[metarr.movie_lib], mappings=[("/data/media", "/mnt")]),
        recorder("den", mappings=[("/data/media", "/mnt")])]))
    result = cli("sync", "--series", str(show), "--movie", str(movie))
    assert result.returncode == 0, result.stderr
    assert queue(cli) == {("kids", f"movie:{movie}"): "pending",
                          ("den", f"movie:{movie}"): "pending",
                          ("den", f"series:{show}"): "pending",
                          ("den", f"episode:{episode}"): "pending"}
    # The run that follows: the kids' player gets the movie only, and all is well.
    auto = cli.config.read_text().replace("auto_sync = false", "auto_sync = true")
    cli.write_config(auto)
    code, report = run(cli)
    assert code == 0, json.dumps(report)
    assert [t["key"] for t in cli.sent("kids")] == [f"movie:{movie}"]
    assert sorted(t["key"] for t in cli.sent("den")) == sorted(
        [f"movie:{movie}", f"series:{show}", f"episode:{episode}"])
    assert queue(cli) == {}


# --- configuration --------------------------------------------------------------------

KODI = {"type": "kodi", "url": "http://127.0.0.1:8080"}


@pytest.mark.parametrize(("value", "problem"), [
    ("Movies", 'players.k.libraries: must be a list of Metarr library names or ids, e.g. '
               '["Movies", 3], not a string \'Movies\''),
    ([], "players.k.libraries: an empty list would serve nothing; leave the key out to "
         "serve every library, or remove the player"),
    (["Movies", ""], "players.k.libraries: an empty library name"),
    ([0], "players.k.libraries: 0 is no library id (ids are positive)"),
    ([-3], "players.k.libraries: -3 is no library id (ids are positive)"),
    (["Movies", "Movies"], "players.k.libraries: 'Movies' is listed twice"),
    ([2, 2], "players.k.libraries: 2 is listed twice"),
    ([True], "players.k.libraries: True is neither a library name nor an id"),
    ([1.5], "players.k.libraries: 1.5 is neither a library name nor an id"),
    ([["Movies"]], "players.k.libraries: ['Movies'] is neither a library name nor an id"),
])
def test_bad_libraries_are_refused_with_the_reason(value, problem):
    with pytest.raises(ConfigError) as caught:
        parse_config({"players": {"k": {**KODI, "libraries": value}}}, None)
    assert caught.value.problems == [problem] or any(
        p.endswith(problem) for p in caught.value.problems), caught.value.problems


@pytest.mark.parametrize("value", [["Movies"], [3], ["Movies", 3, "Kids Films"]])
def test_good_libraries_are_kept_as_written(value):
    config = parse_config({"players": {"k": {**KODI, "libraries": value}}}, None)
    assert config.players["k"].libraries == value


def test_absent_libraries_serve_everything():
    assert parse_config({"players": {"k": KODI}}, None).players["k"].libraries is None


def test_bad_libraries_exit_as_a_config_error(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path,
                                 players=[recorder("kids", libraries=["Movies", "Movies"])]))
    result = cli("run")
    assert result.returncode == 3, result.stderr
    assert "players.kids.libraries: 'Movies' is listed twice" in result.stderr
    assert "Traceback" not in result.stderr


# --- players import: libraries from Metarr's media_player_libraries --------------------

def test_import_fills_libraries_from_the_groups_metarr_records(cli, metarr_db):
    db = metarr_db
    # `enabled` left to its default: 1 on SQLite, true on PostgreSQL.
    db._exec("INSERT INTO media_player_groups (id, name, type) VALUES "
             "(1, 'Kids Kodi', 'kodi'), (2, 'Jellyfin', 'jellyfin'), (3, 'Plex', 'plex')")
    db._exec("INSERT INTO media_players (id, group_id, name, type, host, http_port, api_key) "
             "VALUES (1, 1, 'Kids Room', 'kodi', '192.168.1.20', 8080, NULL), "
             "(2, 2, 'Jellyfin', 'jellyfin', 'jelly.lan', 8096, 'k'), "
             "(3, 3, 'Plex', 'plex', 'plex.lan', 32400, 't'), "
             "(4, NULL, 'Lounge', 'kodi', '192.168.1.21', 8080, NULL)")
    db._exec("INSERT INTO media_player_libraries (group_id, library_id) VALUES "
             f"(1, {db.movie_lib}), (2, {db.tv_lib}), (2, {db.movie_lib})")
    cli.write_config(config_with(metarr=db.config_table))
    result = cli("players", "import")
    assert result.returncode == 0, result.stderr
    assert "Imported kids-room (kodi, http://192.168.1.20:8080, 0 mapping(s), libraries: " \
           "Movies)" in result.stdout
    assert ("metarr-sync: note: plex: libraries left unset, serving every library: Metarr "
            "records no library for group 'Plex'") in result.stderr.splitlines()
    assert ("metarr-sync: note: lounge: libraries left unset, serving every library: not in "
            "a player group in Metarr, which records libraries per group"
            ) in result.stderr.splitlines()
    import tomllib
    written = tomllib.loads(cli.config.read_text())["players"]
    assert written["kids-room"]["libraries"] == ["Movies"]
    assert written["jellyfin"]["libraries"] == ["Movies", "TV Shows"]  # in Metarr's id order
    assert "libraries" not in written["plex"] and "libraries" not in written["lounge"]

    # What was written works: the kids' Kodi is queued the movie only.
    movie = db.add_movie("The Matrix", 1999)
    show = db.add_series("Severance")
    episode = db.add_episode(show, db.add_season(show, 1), 1, 1)
    added = cli("queue", "add", "--movie", str(movie), "--episode", str(episode), "--json")
    assert added.returncode == 0, added.stderr
    entries = queue(cli)
    assert {k for p, k in entries if p == "kids-room"} == {f"movie:{movie}"}
    assert {k for p, k in entries if p == "plex"} == {f"movie:{movie}", f"episode:{episode}"}


def test_import_names_a_library_by_id_when_two_share_its_name():
    from metarr_sync.config import Config
    from metarr_sync.importer import from_metarr
    from metarr_sync.metarr import Library, MetarrPlayer, MetarrPlayerGroup, PlayerSetup

    movies = Library(1, "Movies", "/data/movies", "movie")
    other = Library(2, "Movies", "/data/4k", "movie")
    kids = Library(3, "Kids", "/data/kids", "movie")
    setup = PlayerSetup(
        [MetarrPlayerGroup(7, "Kids", "kodi", True, True)],
        [MetarrPlayer(1, 7, "Kids", "kodi", "10.0.0.2", 8080, None, None, None, True)],
        [], {7: [other, kids]}, [movies, other, kids])
    found = from_metarr(setup, Config(Path("unused.toml")))
    assert [p.libraries for p in found.players] == [[2, "Kids"]]
    assert found.notes == []


def test_import_from_a_metarr_without_media_player_libraries_says_so(cli, metarr):
    metarr.conn.execute("DROP TABLE media_player_libraries")
    metarr.conn.execute("INSERT INTO media_players (id, name, type, host, http_port) VALUES "
                        "(1, 'Lounge', 'kodi', '192.168.1.21', 8080)")
    result = cli("players", "import", "--database", str(metarr.path))
    assert result.returncode == 0, result.stderr
    assert ("metarr-sync: note: lounge: libraries left unset, serving every library: this "
            "Metarr has no table media_player_libraries") in result.stderr.splitlines()


# --- mappings detect: a library the player does not serve needs no mapping for it ------

def test_detect_does_not_flag_libraries_a_player_does_not_serve(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, players=[
        recorder("kids", libraries=["Movies"]), recorder("typo", libraries=["Moovies"])]))
    cli.behave("kids", "roots", "smb://nas/share/Movies/\n")
    cli.behave("typo", "roots", "smb://nas/share/Movies/\n")
    result = cli("mappings", "detect", "--json")
    rows = json.loads(result.stdout)["proposals"]
    kids = [(r["library"], r["status"]) for r in rows if r["player"] == "kids"]
    assert kids == [("Movies", "new")]  # not "TV Shows: unmatched"
    (typo,) = [r for r in rows if r["player"] == "typo"]
    assert typo["status"] == "error" and typo["detail"].startswith(
        "players.typo.libraries: Metarr has no library 'Moovies'")
    # What to write in `libraries`: each library's name and id.
    assert [(lib["id"], lib["name"]) for lib in json.loads(result.stdout)["libraries"]] == [
        (metarr.movie_lib, "Movies"), (metarr.tv_lib, "TV Shows")]
    assert result.returncode == 1  # for the typo only:
    cli.write_config(config_with(metarr=metarr.path, players=[
        recorder("kids", libraries=["Movies"])]))
    assert cli("mappings", "detect").returncode == 0
