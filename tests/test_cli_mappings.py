"""`metarr-sync mappings ...` through the installed command: list/add/remove write the
config, test shows the path each player gets, detect pairs Metarr's library roots with the
player's (reported by the recording adapter) and --apply writes them."""

from __future__ import annotations

import json
import tomllib

import pytest
from support.configs import config_with, recorder
from support.snapshots import snapshot, unwritable


def lounge_and_bedroom(db: object) -> str:
    """lounge with a movies mapping and a nested 4k one, bedroom with none."""
    return config_with(metarr=str(db), players=[
        recorder("lounge", mappings=[("/data/media/movies", "smb://nas/movies"),
                                     ("/data/media/movies/4k", "smb://nas/uhd")]),
        recorder("bedroom", url="http://127.0.0.1:10")])


@pytest.fixture
def setup(cli, metarr):
    cli.write_config(lounge_and_bedroom(metarr.path))
    return cli


def mappings_of(cli, player: str) -> list[dict]:
    return tomllib.loads(cli.config.read_text())["players"][player].get("mappings", [])


def test_list_add_remove(setup):
    cli = setup
    listed = cli("mappings", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"config": str(cli.config), "players": {
        "lounge": [{"metarr": "/data/media/movies", "player": "smb://nas/movies"},
                   {"metarr": "/data/media/movies/4k", "player": "smb://nas/uhd"}],
        "bedroom": []}}
    table = cli("mappings", "list")
    assert "/data/media/movies/4k" in table.stdout and "smb://nas/uhd" in table.stdout
    assert "(none: Metarr's own paths are sent)" in table.stdout

    added = cli("mappings", "add", "bedroom", "/data/media/tv/", "D:\\TV\\")
    assert added.returncode == 0, added.stderr
    assert added.stdout.strip() == "bedroom: added mapping /data/media/tv → D:\\TV"
    assert ("metarr-sync: note: bedroom had no mappings, so it was sent Metarr's own paths; "
            "now only paths under its mapped folders reach it") in added.stderr.splitlines()
    assert mappings_of(cli, "bedroom") == [{"metarr": "/data/media/tv", "player": "D:\\TV"}]
    assert cli("mappings", "list", "--player", "bedroom", "--json").stdout.count("D:") == 1

    removed = cli("mappings", "remove", "lounge", "/data/media/movies/4k/", "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout) == {"config": str(cli.config), "player": "lounge",
                                          "removed": [{"metarr": "/data/media/movies/4k",
                                                       "player": "smb://nas/uhd"}]}
    assert mappings_of(cli, "lounge") == [{"metarr": "/data/media/movies",
                                           "player": "smb://nas/movies"}]


REFUSED = [
    (["mappings", "add", "nobody", "/data", "/mnt"],
     "metarr-sync: unknown player 'nobody' (players: lounge, bedroom)"),
    (["mappings", "add", "lounge", "/data/media/movies/", "smb://nas/other"],
     "metarr-sync: lounge maps /data/media/movies already (to smb://nas/movies); remove it "
     "first: metarr-sync mappings remove lounge /data/media/movies"),
    (["mappings", "add", "lounge", "data/tv", "smb://nas/tv"],
     "metarr-sync: METARR_PATH 'data/tv' is not an absolute Metarr-side path "
     "(e.g. /data/media/movies)"),
    (["mappings", "add", "lounge", "/data/tv", "tv"],
     "metarr-sync: PLAYER_PATH 'tv' is not an absolute path as the player sees it (/..., "
     "D:\\... or smb://...)"),
    (["mappings", "remove", "lounge", "/data/media/tv"],
     "metarr-sync: lounge has no mapping for /data/media/tv (its mappings: "
     "/data/media/movies, /data/media/movies/4k)"),
    (["mappings", "remove", "nobody", "/data/media/tv"],
     "metarr-sync: unknown player 'nobody' (players: lounge, bedroom)"),
    (["mappings", "test", "relative/path.mkv"],
     "metarr-sync: PATH 'relative/path.mkv' is not an absolute Metarr-side path "
     "(e.g. /data/media/movies)"),
    (["mappings", "test", "/data/x", "--player", "nobody"],
     "metarr-sync: unknown player 'nobody' (players: lounge, bedroom)"),
    (["mappings", "list", "--player", "nobody"],
     "metarr-sync: unknown player 'nobody' (players: lounge, bedroom)"),
    (["mappings", "detect", "--player", "nobody", "--apply"],
     "metarr-sync: unknown player 'nobody' (players: lounge, bedroom)"),
]


@pytest.mark.parametrize(("args", "message"), REFUSED,
                         ids=[" ".join(a[1:3]) for a, _ in REFUSED])
def test_refused_commands_exit_2_and_change_nothing(setup, args, message):
    cli = setup
    assert cli("run").returncode == 0
    before = snapshot(cli.config, cli.state_dir)
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr.splitlines()
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert snapshot(cli.config, cli.state_dir) == before
    assert cli.calls("lounge") == [] and cli.calls("bedroom") == []


def test_config_not_writable(cli, metarr, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text(lounge_and_bedroom(metarr.path))
    env = {"METARR_SYNC_CONFIG": str(config)}
    before = config.read_bytes()
    with unwritable(etc):
        for args in (("mappings", "add", "bedroom", "/data/media/tv", "/mnt/tv"),
                     ("mappings", "remove", "lounge", "/data/media/movies")):
            result = cli(*args, env=env)
            assert result.returncode == 3, result.stderr
            assert result.stderr.startswith(f"metarr-sync: {config}: cannot be written: ")
            assert config.read_bytes() == before


def test_mappings_test_shows_the_mapping_used_and_the_player_path(setup):
    cli = setup
    path = "/data/media/movies/4k/Dune (2021)/Dune (2021).mkv"
    result = cli("mappings", "test", path, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"path": path, "ok": True, "players": [
        {"name": "lounge", "enabled": True,
         "mapping": {"metarr": "/data/media/movies/4k", "player": "smb://nas/uhd"},
         "player_path": "smb://nas/uhd/Dune (2021)/Dune (2021).mkv", "error": None},
        {"name": "bedroom", "enabled": True, "mapping": None, "player_path": path,
         "error": None}]}

    # /data/media/movies4k is not under /data/media/movies: whole components only.
    other = "/data/media/movies4k/Alien (1979)/Alien (1979).mkv"
    result = cli("mappings", "test", other, "--player", "lounge", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["players"] == [{
        "name": "lounge", "enabled": True, "mapping": None, "player_path": None,
        "error": f"no path mapping covers {other} (mapped: /data/media/movies, "
                 "/data/media/movies/4k)"}]
    table = cli("mappings", "test", other)
    assert table.returncode == 1
    assert f"no path mapping covers {other}" in table.stdout
    assert "(no mappings: Metarr's own path)" in table.stdout


# --- detect ----------------------------------------------------------------------------

def detect_config(db: object) -> str:
    """nas-kodi with no mappings, jelly with one (movies to /srv/films)."""
    return config_with(metarr=str(db), players=[
        recorder("nas-kodi"),
        recorder("jelly", url="http://127.0.0.1:10",
                 mappings=[("/data/media/movies", "/srv/films")])])


def test_detect_proposes_by_trailing_components_and_apply_writes(cli, metarr):
    cli.write_config(detect_config(metarr.path))
    cli.behave("nas-kodi", "roots", "smb://nas/share/Movies/\nsmb://nas/share/tv/\n")
    cli.behave("jelly", "roots", "/media/movies\n/media/tv\n")
    before = cli.config.read_bytes()
    result = cli("mappings", "detect", "--json")
    assert result.returncode == 1, result.stderr  # jelly's movies mapping conflicts
    assert cli.config.read_bytes() == before  # no --apply: nothing written
    rows = {(r["player"], r["library_path"]): r for r in json.loads(result.stdout)["proposals"]}
    assert rows["nas-kodi", "/data/media/movies"]["status"] == "new"
    assert rows["nas-kodi", "/data/media/movies"]["mapping"] == {
        "metarr": "/data/media/movies", "player": "smb://nas/share/Movies"}
    assert rows["nas-kodi", "/data/media/tv"]["mapping"] == {
        "metarr": "/data/media/tv", "player": "smb://nas/share/tv"}
    assert rows["jelly", "/data/media/tv"]["status"] == "new"
    conflict = rows["jelly", "/data/media/movies"]
    assert conflict["status"] == "conflict"
    assert conflict["detail"] == ("the mapping in place sends it to /srv/films, but the "
                                  "player's library root is /media/movies; `mappings remove` "
                                  "it first")
    # only read: its roots, then a few of its item paths; nothing sent
    assert [c["op"] for c in cli.calls("nas-kodi")] == ["probe", "samples"]

    applied = cli("mappings", "detect", "--apply")
    assert applied.returncode == 1
    assert "applied" in applied.stdout
    written = tomllib.loads(cli.config.read_text())["players"]
    assert written["nas-kodi"]["mappings"] == [
        {"metarr": "/data/media/movies", "player": "smb://nas/share/Movies"},
        {"metarr": "/data/media/tv", "player": "smb://nas/share/tv"}]
    # The conflicting mapping is shown, never overwritten.
    assert written["jelly"]["mappings"] == [
        {"metarr": "/data/media/movies", "player": "/srv/films"},
        {"metarr": "/data/media/tv", "player": "/media/tv"}]

    fixed = cli("mappings", "remove", "jelly", "/data/media/movies")
    assert fixed.returncode == 0
    again = cli("mappings", "detect", "--apply", "--json")
    assert again.returncode == 0, again.stdout
    statuses = {(r["player"], r["library_path"]): r["status"]
                for r in json.loads(again.stdout)["proposals"]}
    assert statuses == {("nas-kodi", "/data/media/movies"): "configured",
                        ("nas-kodi", "/data/media/tv"): "configured",
                        ("jelly", "/data/media/movies"): "applied",
                        ("jelly", "/data/media/tv"): "configured"}
    # With the mappings detected a run sends the player's own paths.
    metarr.add_movie("The Matrix", 1999)
    assert cli("run").returncode == 0
    assert [t["path"] for t in cli.sent("jelly")] == [
        "/media/movies/The Matrix (1999)/The Matrix (1999).mkv"]


def test_detect_reports_unmatched_ambiguous_and_unreachable(cli, metarr):
    cli.write_config(detect_config(metarr.path))
    cli.behave("nas-kodi", "roots", "/mnt/a/tv\n/mnt/b/tv\n")
    cli.behave("jelly", "fail", "offline")
    result = cli("mappings", "detect", "--json")
    assert result.returncode == 1
    rows = json.loads(result.stdout)["proposals"]
    by = {(r["player"], r["library_path"]): r for r in rows}
    assert by["nas-kodi", "/data/media/movies"]["status"] == "unmatched"
    assert by["nas-kodi", "/data/media/movies"]["detail"] == (
        "no library root on the player ends in 'movies' (its roots: /mnt/a/tv, /mnt/b/tv)")
    assert by["nas-kodi", "/data/media/tv"]["status"] == "ambiguous"
    assert by["nas-kodi", "/data/media/tv"]["detail"] == (
        "several player roots match equally: /mnt/a/tv, /mnt/b/tv")
    assert by["jelly", None] == {"player": "jelly", "library": None, "library_path": None,
                                 "status": "error", "mapping": None,
                                 "detail": "recorder told to fail: offline"}


def test_detect_with_an_unreadable_metarr_database(cli, tmp_path):
    cli.write_config(detect_config(tmp_path / "missing.sqlite"))
    result = cli("mappings", "detect")
    assert result.returncode == 4
    assert "does not exist" in result.stderr
    assert cli.calls("jelly") == []


def test_detect_apply_with_an_unwritable_config(cli, metarr, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text(detect_config(metarr.path))
    cli.behave("nas-kodi", "roots", "smb://nas/share/movies\n")
    before = config.read_bytes()
    with unwritable(etc):
        result = cli("mappings", "detect", "--apply", "--player", "nas-kodi",
                     env={"METARR_SYNC_CONFIG": str(config)})
    assert result.returncode == 3, result.stderr
    assert f"metarr-sync: {config}: cannot be written: " in result.stderr
    assert config.read_bytes() == before


# --- the path comparisons behind players test and detect (pure) -------------------------

def test_mapping_roots_compare_by_whole_components_and_player_case_rules():
    from metarr_sync.discovery import check_mapping

    assert check_mapping("/data/movies", ["/data/movies4k"]) == (
        False, "not a library root on the player, nor inside one; its roots: /data/movies4k")
    assert check_mapping("D:\\Media\\Movies", ["d:\\media\\movies\\"]) == (
        True, "a library root on the player")
    assert check_mapping("smb://NAS/Share/movies", ["smb://nas/share/"]) == (
        True, "inside the player's library root smb://nas/share/")
    # POSIX paths are case-sensitive: /Movies is another folder than /movies.
    assert check_mapping("/srv/Movies", ["/srv/movies"])[0] is False


def test_proposals_prefer_the_longest_common_tail():
    from metarr_sync.config import Mapping
    from metarr_sync.discovery import propose_mappings
    from metarr_sync.metarr import Library

    libraries = [Library(1, "Movies", "/data/media/movies", "movie"),
                 Library(2, "Music", "/data/media/music", "music")]
    roots = ["/mnt/movies4k", "/srv/media/movies", "/backup/movies"]
    (proposal,) = propose_mappings(libraries, roots, [])  # music libraries are left out
    assert proposal.status == "new"
    assert proposal.mapping == Mapping("/data/media/movies", "/srv/media/movies")
    same = propose_mappings(libraries[:1], ["/data/media/movies/"], [])
    assert same[0].status == "configured"  # the player sees Metarr's own path


# --- detect by items: the player's own item paths --------------------------------------

def test_detect_finds_the_mapping_from_items_when_roots_tell_nothing(cli, metarr):
    cli.write_config(detect_config(metarr.path))
    # 25 movies: Metarr's first few are not the player's, so the item is found by its name.
    for n in range(24):
        metarr.add_movie(f"Filler {n:02d}", 2000)
    metarr.add_movie("The Matrix", 1999)
    show = metarr.add_series("Severance")
    metarr.add_episode(show, metarr.add_season(show, 1), 1, 1)
    # The player reports no library roots at all (e.g. a Kodi with path substitution).
    cli.behave("nas-kodi", "samples", "smb://nas/films/The Matrix (1999)/The Matrix (1999).mkv\n"
               "smb://nas/series/Severance/Season 01/Severance - S01E01.mkv\n"
               "smb://nas/films/Unknown (2001)/Unknown (2001).mkv\n")
    result = cli("mappings", "detect", "--player", "nas-kodi", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {r["library_path"]: r for r in json.loads(result.stdout)["proposals"]}
    movies, tv = rows["/data/media/movies"], rows["/data/media/tv"]
    assert movies["status"] == "new" and movies["confidence"] == "medium"
    assert movies["mapping"] == {"metarr": "/data/media/movies", "player": "smb://nas/films"}
    assert movies["evidence"] == [
        "/data/media/movies/The Matrix (1999)/The Matrix (1999).mkv ↔ "
        "smb://nas/films/The Matrix (1999)/The Matrix (1999).mkv"]
    assert movies["detail"].startswith("1 item(s) found on the player, e.g. /data/media/")
    assert tv["mapping"] == {"metarr": "/data/media/tv", "player": "smb://nas/series"}
    assert [c["op"] for c in cli.calls("nas-kodi")] == ["probe", "samples"]

    applied = cli("mappings", "detect", "--player", "nas-kodi", "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert mappings_of(cli, "nas-kodi") == [
        {"metarr": "/data/media/movies", "player": "smb://nas/films"},
        {"metarr": "/data/media/tv", "player": "smb://nas/series"}]
    again = cli("mappings", "detect", "--player", "nas-kodi", "--json")
    assert {r["status"] for r in json.loads(again.stdout)["proposals"]} == {"configured"}
    assert cli("run", "--player", "nas-kodi").returncode == 0
    assert "smb://nas/films/The Matrix (1999)/The Matrix (1999).mkv" in [
        t["path"] for t in cli.sent("nas-kodi")]


def test_detect_items_confirm_roots_and_a_failed_item_listing_is_not_fatal(cli, metarr):
    cli.write_config(detect_config(metarr.path))
    metarr.add_movie("Heat", 1995)
    cli.behave("nas-kodi", "roots", "/mnt/movies\n")
    cli.behave("nas-kodi", "samples", "/mnt/movies/Heat (1995)/Heat (1995).mkv\n")
    cli.behave("jelly", "roots", "/media/movies\n")
    cli.behave("jelly", "samples_fail", "timeout")
    result = cli("mappings", "detect", "--json")
    rows = {(r["player"], r["library_path"]): r for r in json.loads(result.stdout)["proposals"]}
    confirmed = rows["nas-kodi", "/data/media/movies"]
    assert confirmed["status"] == "new" and confirmed["confidence"] == "high"
    assert confirmed["mapping"] == {"metarr": "/data/media/movies", "player": "/mnt/movies"}
    assert confirmed["detail"] == (
        "1 trailing path component(s) match; confirmed by 1 item(s) found on the player, "
        "e.g. /data/media/movies/Heat (1995)/Heat (1995).mkv ↔ "
        "/mnt/movies/Heat (1995)/Heat (1995).mkv")
    # jelly could not list its items: judged by its roots alone, the reason shown.
    assert rows["jelly", "/data/media/movies"]["status"] == "conflict"
    assert rows["jelly", "/data/media/movies"]["confidence"] == "low"
    assert rows["jelly", "/data/media/movies"]["samples_error"] == (
        "recorder told to fail listing items: timeout")


# --- matching items (pure) -------------------------------------------------------------

def test_items_give_the_library_mapping_by_their_whole_relative_path():
    from metarr_sync.config import Mapping
    from metarr_sync.discovery import match_items
    from metarr_sync.metarr import Library

    movies = Library(1, "Movies", "/data/media/movies/", "movie")
    found = match_items(movies, [
        "/data/media/movies/Heat (1995)/Heat (1995).mkv",
        "/data/media/movies/Alien (1979)/Alien (1979).mkv",
        "/data/media/movies/Solo.mkv"],  # one component below the library: proves nothing
        ["D:\\Films\\HEAT (1995)\\Heat (1995).mkv", "D:\\Films\\Alien (1979)\\Alien (1979).mkv",
         "/other/Solo.mkv"])
    assert found is not None
    assert found.mapping == Mapping("/data/media/movies", "D:\\Films")
    assert found.votes == 2 and len(found.evidence) == 2
    # Only the file name matches (another folder): not the same item.
    assert match_items(movies, ["/data/media/movies/Heat (1995)/Heat (1995).mkv"],
                       ["/mnt/x/Heat/Heat (1995).mkv"]) is None
    # An episode must match its show and season folders too.
    tv = Library(2, "TV", "/data/tv", "tv")
    episode = "/data/tv/Severance/Season 01/Severance - S01E01.mkv"
    assert match_items(tv, [episode], ["/srv/Severance/Specials/Severance - S01E01.mkv"]) is None
    assert match_items(tv, [episode], ["/srv/tv/Severance/Season 01/Severance - S01E01.mkv"]
                       ).mapping == Mapping("/data/tv", "/srv/tv")


def test_items_split_between_folders_are_ambiguous_and_never_applied():
    from metarr_sync.config import Mapping
    from metarr_sync.discovery import mappings_to_apply, match_items, propose_mappings
    from metarr_sync.metarr import Library

    movies = Library(1, "Movies", "/data/movies", "movie")
    heat = "/data/movies/Heat (1995)/Heat (1995).mkv"
    # The same file under two player folders (a 4K copy): that item is left out.
    assert match_items(movies, [heat], ["/a/Heat (1995)/Heat (1995).mkv",
                                        "/b/Heat (1995)/Heat (1995).mkv"]) is None
    alien = "/data/movies/Alien (1979)/Alien (1979).mkv"
    split = match_items(movies, [heat, alien], ["/a/Heat (1995)/Heat (1995).mkv",
                                                "/b/Alien (1979)/Alien (1979).mkv"])
    assert split is not None and split.mapping is None
    assert split.others == [Mapping("/data/movies", "/a"), Mapping("/data/movies", "/b")]
    # Roots say /srv/movies, the items say /a: ambiguous, nothing written.
    (proposal,) = propose_mappings([movies], ["/srv/movies"], [], {1: [heat]},
                                   ["/a/Heat (1995)/Heat (1995).mkv"])
    assert proposal.status == "ambiguous" and proposal.mapping is None
    assert proposal.detail.startswith("the player's library root /srv/movies matches its "
                                      "name, but its items are under /a (1 item(s)")
    assert mappings_to_apply([proposal], []) == []
    # Items resolve what the roots could not choose between.
    (chosen,) = propose_mappings([movies], ["/x/movies", "/y/movies"], [], {1: [heat]},
                                 ["/y/movies/Heat (1995)/Heat (1995).mkv"])
    assert (chosen.status, chosen.mapping, chosen.confidence) == (
        "new", Mapping("/data/movies", "/y/movies"), "medium")
    # A mapping in place that the items contradict is a conflict, not overwritten.
    (conflict,) = propose_mappings([movies], [], [Mapping("/data/movies", "/old")],
                                   {1: [heat]}, ["/new/Heat (1995)/Heat (1995).mkv"])
    assert conflict.status == "conflict" and "under /new" in conflict.detail


def test_metarr_items_are_read_a_few_per_library_plus_those_named_like_samples(metarr):
    from metarr_sync.discovery import library_item_paths
    from metarr_sync.metarr import open_sqlite

    for n in range(5):
        metarr.add_movie(f"Film_{n}", 2000)
    metarr.add_movie("100%", 2010)
    gone = metarr.add_movie("Gone", 2001)
    metarr.soft_delete("movies", gone)
    source = open_sqlite(metarr.path)
    try:
        libraries = source.libraries()
        found = library_item_paths(source, libraries, per_library=2, samples=[
            "D:\\Films\\100% (2010)\\100% (2010).mkv", "/x/Gone (2001)/Gone (2001).mkv",
            "/x/Film_3 (2000)/Film_3 (2000).mkv"])
    finally:
        source.close()
    root = "/data/media/movies"
    assert found == {metarr.movie_lib: [
        f"{root}/Film_0 (2000)/Film_0 (2000).mkv", f"{root}/Film_1 (2000)/Film_1 (2000).mkv",
        f"{root}/100% (2010)/100% (2010).mkv", f"{root}/Film_3 (2000)/Film_3 (2000).mkv"],
        metarr.tv_lib: []}
