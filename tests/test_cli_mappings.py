"""`metarr-sync mappings ...` through the installed command: list/add/remove write the
config, test shows the path each player gets, detect pairs Metarr's library roots with the
player's (reported by the recording adapter) and --apply writes them."""

from __future__ import annotations

import json
import tomllib

import pytest
from support.snapshots import snapshot, unwritable

CONFIG = """
[metarr]
database = "{db}"

[players.lounge]
type = "recorder"
url = "http://127.0.0.1:9"
mappings = [ {{ metarr = "/data/media/movies", player = "smb://nas/movies" }},
             {{ metarr = "/data/media/movies/4k", player = "smb://nas/uhd" }} ]

[players.bedroom]
type = "recorder"
url = "http://127.0.0.1:10"
"""


@pytest.fixture
def setup(cli, metarr):
    cli.write_config(CONFIG.format(db=metarr.path))
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
    config.write_text(CONFIG.format(db=metarr.path))
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

DETECT = """
[metarr]
database = "{db}"

[players.nas-kodi]
type = "recorder"
url = "http://127.0.0.1:9"

[players.jelly]
type = "recorder"
url = "http://127.0.0.1:10"
mappings = [ {{ metarr = "/data/media/movies", player = "/srv/films" }} ]
"""


def test_detect_proposes_by_trailing_components_and_apply_writes(cli, metarr):
    cli.write_config(DETECT.format(db=metarr.path))
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
    assert [c["op"] for c in cli.calls("nas-kodi")] == ["probe"]  # nothing sent

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
    cli.write_config(DETECT.format(db=metarr.path))
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
    cli.write_config(DETECT.format(db=tmp_path / "missing.sqlite"))
    result = cli("mappings", "detect")
    assert result.returncode == 4
    assert "does not exist" in result.stderr
    assert cli.calls("jelly") == []


def test_detect_apply_with_an_unwritable_config(cli, metarr, tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    config = etc / "config.toml"
    config.write_text(DETECT.format(db=metarr.path))
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
