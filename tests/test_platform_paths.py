"""Paths compared as the player's platform compares them, end to end: the installed
`metarr-sync` against a fake Kodi and a fake Jellyfin whose disks behave like a Windows
server or an SMB share (names in any case reach a file, and are reported as written),
with names macOS wrote decomposed (NFD) while Metarr holds them composed (NFC), and
with UNC paths on both sides of a mapping.

Each scenario runs twice: the first run finds the items the player has (refreshing them
by id, never scanning their folders) and adds the new one, all verified; the second run
sends nothing and leaves nothing unverified (before, every such item looked new: a scan
and an `unverified` on every run). Then the same rules where `mappings detect`, Plex's
file keys, Kodi's art URLs and `mappings add/remove` meet such paths."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from support.configs import config_with, recorder
from support.fake_players import FakeJellyfin, FakeKodi, JellyfinLibrary

#: "Amélie" as macOS writes it (e + U+0301) and as Metarr holds it (U+00E9).
NFD = "Ame\u0301lie"
NFC = "Am\u00e9lie"



def config(metarr, *players: dict[str, object]) -> str:
    return config_with(metarr=metarr.path, sync={"initial_lookback": "all"}, players=players)


def movie_files(root: str, sep: str) -> dict[str, str]:
    """title -> the movie's file as the player's disk spells it."""
    return {title: f"{root}{sep}{name} ({year}){sep}{name} ({year}).mkv"
            for title, name, year in (("Heat", "Heat", 1995), (NFC, NFD, 2001),
                                      ("Up", "Up", 2009))}


def add_movies(metarr, folder_of=None) -> dict[str, int]:
    """Metarr's three movies (Amélie in NFC), optionally in folders of its own spelling."""
    ids = {}
    for title, year in (("Heat", 1995), (NFC, 2001), ("Up", 2009)):
        folder = folder_of(f"{title} ({year})") if folder_of else None
        ids[title] = metarr.add_movie(title, year, folder=folder)
    return ids


def player_row(result) -> dict:
    assert result.returncode == 0, (result.stdout, result.stderr)
    (row,) = json.loads(result.stdout)["players"]
    return row


def queue(cli) -> list[tuple[str, str]]:
    with cli.state() as state:
        return [(r["item_key"], r["status"]) for r in state.execute(
            "SELECT item_key, status FROM sync_queue ORDER BY item_key")]


def kodi_sent(kodi: FakeKodi, method: str) -> list[dict]:
    """The params of every call of `method` Kodi received, batches included."""
    with kodi.lock:
        docs = [r.json for r in kodi.requests if r.path == "/jsonrpc"]
    return [call.get("params") for doc in docs for call in _calls(doc)
            if call.get("method") == method]


def scanned(kodi: FakeKodi) -> list[str]:
    return [p["directory"] for p in kodi_sent(kodi, "VideoLibrary.Scan")]


def _calls(doc) -> list[dict]:
    return [c for c in (doc if isinstance(doc, list) else [doc]) if isinstance(c, dict)]


def kodi_library(kodi: FakeKodi, root: str, files: dict[str, str]) -> None:
    """Heat and Amélie on Kodi's disk and in its library (scanned before metarr-sync ever
    ran); Up on the disk only: new, as Radarr just put it there."""
    kodi.add_file(files["Heat"], files[NFC])
    kodi.rpc_VideoLibrary_Scan({"directory": root})
    kodi.add_file(files["Up"])
    assert kodi.library_files() == {files["Heat"], files[NFC]}
    kodi.reset_log()


@pytest.fixture
def smb_kodi() -> Iterator[FakeKodi]:
    """A Kodi reading an SMB share: its source is spelled `smb://NAS/Movies/`, the share
    ignores case and keeps the names as macOS wrote them."""
    fake = FakeKodi(sources={"smb://NAS/Movies/": "movies"})
    fake.ignore_case = True
    fake.start()
    yield fake
    fake.stop()


def test_kodi_on_an_smb_share_matches_a_mapping_typed_in_another_case_and_nfd_names(
        cli, metarr, smb_kodi):
    files = movie_files("smb://NAS/Movies", "/")
    kodi_library(smb_kodi, "smb://NAS/Movies/", files)
    heat_id, amelie_id = (next(i for i, f in smb_kodi.movies.items() if f == files[t])
                          for t in ("Heat", NFC))
    add_movies(metarr)
    cli.write_config(config(metarr, smb_kodi.player(
        "lounge", [("/data/media/movies", "smb://nas/movies")])))

    first = player_row(cli("run", "--json"))
    assert (first["synced"], first["verified"], first["failed"]) == (3, 3, 0)
    assert first["failures"] == []
    # The two Kodi has are refreshed by their ids; only the new one's folder is scanned,
    # below the source as Kodi spells it (where Kodi keeps the source's content settings).
    assert sorted(p["movieid"] for p in kodi_sent(smb_kodi, "VideoLibrary.RefreshMovie")) \
        == sorted([heat_id, amelie_id])
    assert scanned(smb_kodi) == ["smb://NAS/Movies/Up (2009)/"]
    assert len(smb_kodi.library_files()) == 3
    assert queue(cli) == []

    smb_kodi.reset_log()
    second = player_row(cli("run", "--json"))
    assert (second["synced"], second["failed"], second["failures"]) == (0, 0, [])
    for method in ("VideoLibrary.Scan", "VideoLibrary.RefreshMovie",
                   "VideoLibrary.RemoveMovie", "VideoLibrary.Clean"):
        assert kodi_sent(smb_kodi, method) == [], method
    assert queue(cli) == []


def test_kodi_is_sent_its_own_spelling_of_a_new_nfd_folder(cli, metarr):
    """A POSIX share (case and every byte count): macOS wrote `Amélie (2001)` in NFD and
    Metarr holds it in NFC. Kodi lists its parent folder before the scan; the scan goes
    to the folder as Kodi listed it, since the NFC spelling names no folder on that disk."""
    kodi = FakeKodi(sources={"/mnt/movies/": "movies"}).start()
    try:
        files = movie_files("/mnt/movies", "/")
        kodi.add_file(files[NFC])
        metarr.add_movie(NFC, 2001)
        cli.write_config(config(metarr, kodi.player(
            "lounge", [("/data/media/movies", "/mnt/movies")])))
        first = player_row(cli("run", "--json"))
        assert (first["synced"], first["verified"], first["failed"]) == (1, 1, 0)
        assert scanned(kodi) == [f"/mnt/movies/{NFD} (2001)/"]
        assert kodi.library_files() == {files[NFC]}
        kodi.reset_log()
        second = player_row(cli("run", "--json"))
        assert (second["synced"], second["failures"]) == (0, [])
        assert kodi_sent(kodi, "VideoLibrary.Scan") == []
        assert kodi_sent(kodi, "VideoLibrary.RefreshMovie") == []
        assert queue(cli) == []
    finally:
        kodi.stop()


def test_kodi_scans_a_new_episode_below_the_nfd_show_folder_it_has(cli, metarr):
    """A show macOS named in NFD, which Kodi has; Metarr holds its name in NFC. The new
    episode's season folder is scanned below the show folder as Kodi lists the show."""
    kodi = FakeKodi(sources={"/mnt/tv/": "tvshows"}).start()
    try:
        show = f"/mnt/tv/{NFD} Diaries"
        first_file, new_file = (f"{show}/Season 01/{NFD} Diaries - S01E0{n}.mkv"
                                for n in (1, 2))
        kodi.add_file(first_file)
        kodi.rpc_VideoLibrary_Scan({"directory": "/mnt/tv/"})
        kodi.add_file(new_file)
        assert kodi.library_files() == {f"{show}/", first_file}
        series = metarr.add_series(f"{NFC} Diaries")
        metarr.add_episode(series, metarr.add_season(series, 1), 1, 2)
        cli.write_config(config(metarr, kodi.player(
            "lounge", [("/data/media/tv", "/mnt/tv")])))
        kodi.reset_log()
        first = player_row(cli("run", "--json"))
        # The show (Kodi has it: refreshed by its id) and the new episode.
        assert (first["synced"], first["verified"], first["failures"]) == (2, 2, [])
        (show_id,) = (i for i, folder in kodi.shows.items() if folder == f"{show}/")
        assert [p["tvshowid"] for p in kodi_sent(kodi, "VideoLibrary.RefreshTVShow")] \
            == [show_id]
        assert scanned(kodi) == [f"{show}/Season 01/"]
        assert new_file in kodi.library_files()
        kodi.reset_log()
        second = player_row(cli("run", "--json"))
        assert (second["synced"], second["failures"]) == (0, [])
        assert kodi_sent(kodi, "VideoLibrary.Scan") == []
        assert queue(cli) == []
    finally:
        kodi.stop()


def test_kodi_case_still_counts_on_a_posix_share(cli, metarr):
    """The other way round: on a POSIX disk `/mnt/Movies` is not `/mnt/movies`, so a
    mapping typed in another case reaches nothing and says so."""
    kodi = FakeKodi(sources={"/mnt/movies/": "movies"}).start()
    try:
        kodi.add_file("/mnt/movies/Heat (1995)/Heat (1995).mkv")
        kodi.rpc_VideoLibrary_Scan({"directory": "/mnt/movies/"})
        kodi.reset_log()
        metarr.add_movie("Heat", 1995)
        cli.write_config(config(metarr, kodi.player(
            "lounge", [("/data/media/movies", "/mnt/Movies")])))
        result = cli("run", "--json")
        assert result.returncode == 1
        (row,) = json.loads(result.stdout)["players"]
        assert row["verified"] == 0
        assert kodi_sent(kodi, "VideoLibrary.RefreshMovie") == []
        assert [f["item"] for f in row["failures"]] == ["movie:1"]
    finally:
        kodi.stop()


def test_kodi_with_unc_paths_on_both_sides(cli, metarr):
    """A Metarr on Windows reading `\\\\nas\\media\\movies`, a Kodi on Windows whose source
    is the UNC share `\\\\SERVER\\Films\\`; the mapping is typed in lower case on both sides."""
    kodi = FakeKodi(sources={"\\\\SERVER\\Films\\": "movies"})
    kodi.ignore_case = True
    kodi.start()
    try:
        files = movie_files("\\\\SERVER\\Films", "\\")
        kodi_library(kodi, "\\\\SERVER\\Films\\", files)
        add_movies(metarr, lambda name: f"\\\\NAS\\Media\\Movies\\{name}")
        cli.write_config(config(metarr, kodi.player(
            "lounge", [("\\\\nas\\media\\movies", "\\\\server\\films")])))
        first = player_row(cli("run", "--json"))
        assert (first["synced"], first["verified"], first["failed"]) == (3, 3, 0)
        assert len(kodi_sent(kodi, "VideoLibrary.RefreshMovie")) == 2
        assert scanned(kodi) == ["\\\\SERVER\\Films\\Up (2009)\\"]
        kodi.reset_log()
        second = player_row(cli("run", "--json"))
        assert (second["synced"], second["failures"]) == (0, [])
        assert kodi_sent(kodi, "VideoLibrary.Scan") == []
        assert kodi_sent(kodi, "VideoLibrary.RefreshMovie") == []
        assert queue(cli) == []
    finally:
        kodi.stop()


def test_jellyfin_on_windows_matches_backslashed_paths_in_another_case_and_nfd_names(
        cli, metarr):
    jellyfin = FakeJellyfin(libraries=[
        JellyfinLibrary("Movies", "movies", ["D:\\Media\\Movies"])])
    jellyfin.ignore_case = True
    jellyfin.start()
    try:
        files = movie_files("D:\\Media\\Movies", "\\")
        jellyfin.add_file(files["Heat"], files[NFC])
        jellyfin._rescan("D:\\Media\\Movies")  # its own library scan, before metarr-sync
        known = {i.path: i.id for i in jellyfin.items.values()}
        assert set(known) == {files["Heat"], files[NFC]}
        jellyfin.add_file(files["Up"])
        add_movies(metarr)
        cli.write_config(config(metarr, jellyfin.player(
            "den", [("/data/media/movies", "d:/media/movies")])))

        first = player_row(cli("run", "--json"))
        assert (first["synced"], first["failed"], first["failures"]) == (3, 0, [])
        # Found by path (no provider ids here): refreshed by id, never reported as new.
        assert sorted(i for i, _ in jellyfin.refreshed) == sorted(known.values())
        assert [u["Path"] for u in jellyfin.updates] == [
            "d:/media/movies\\Up (2009)\\Up (2009).mkv"]
        assert files["Up"] in jellyfin.library_files()
        # Jellyfin scans in the background: its deliveries are verified on a later run,
        # once they are old enough (their time moved back instead of sleeping).
        assert {status for _, status in queue(cli)} == {"sent"}
        with cli.state() as state:
            state.execute("UPDATE sync_queue SET updated_at = '2000-01-01T00:00:00.000Z'")
        jellyfin.reset_log()
        refreshed, updates = len(jellyfin.refreshed), len(jellyfin.updates)
        second = player_row(cli("run", "--json"))
        assert (second["synced"], second["verified"], second["failures"]) == (0, 3, [])
        assert (len(jellyfin.refreshed), len(jellyfin.updates)) == (refreshed, updates)
        assert queue(cli) == []
    finally:
        jellyfin.stop()


# --- mappings detect, and Plex's keys ---------------------------------------------------

def test_mappings_detect_finds_metarrs_nfc_item_from_a_players_nfd_name(metarr):
    """The player samples a name macOS wrote (NFD); Metarr holds it in NFC: the item is
    looked up by both spellings and the two match, on a UNC share in another case."""
    from metarr_sync.config import Mapping
    from metarr_sync.discovery import library_item_paths, match_items
    from metarr_sync.metarr import open_sqlite

    for n in range(3):
        metarr.add_movie(f"Other {n}", 2000)
    metarr.add_movie(NFC, 2001)
    sample = f"\\\\HTPC\\Films\\{NFD} (2001)\\{NFD} (2001).mkv"
    source = open_sqlite(metarr.path)
    try:
        libraries = source.libraries()
        found = library_item_paths(source, libraries, per_library=1, samples=[sample])
    finally:
        source.close()
    amelie = f"/data/media/movies/{NFC} (2001)/{NFC} (2001).mkv"
    assert amelie in found[metarr.movie_lib]
    movies = next(lib for lib in libraries if lib.id == metarr.movie_lib)
    match = match_items(movies, [amelie], [sample])
    assert match is not None and match.mapping == Mapping("/data/media/movies",
                                                          "\\\\HTPC\\Films")


@pytest.mark.parametrize(("listed", "asked", "found"), [
    (f"/mnt/movies/{NFD} (2001)/{NFD} (2001).mkv",
     f"/mnt/movies/{NFC} (2001)/{NFC} (2001).mkv", True),
    ("D:\\Movies\\Heat (1995)\\Heat (1995).mkv", "d:\\movies\\heat (1995)\\HEAT (1995).mkv",
     True),
    ("/mnt/Movies/Heat (1995)/Heat (1995).mkv", "/mnt/movies/Heat (1995)/Heat (1995).mkv",
     False),
])
def test_plex_finds_an_item_by_its_file_as_the_servers_file_system_does(listed, asked, found):
    from metarr_sync.players.plex import Listing

    listing = Listing()
    listing.add({"ratingKey": "7", "Media": [{"Part": [{"file": listed}]}]})
    assert listing.by_path(asked) == (["7"] if found else [])


@pytest.mark.parametrize(("url", "file"), [
    ("image://%2fmnt%2fmovies%2fHeat%2fposter.png/", "/mnt/movies/Heat/poster.png"),
    ("image://D%3a%5cMovies%5cHeat%5cposter.png/", "D:\\Movies\\Heat\\poster.png"),
    ("image://smb%3a%2f%2fnas%2fmovies%2fposter.png/", "smb://nas/movies/poster.png"),
    # A Kodi on Windows with a UNC source: a file like any other.
    ("image://%5c%5cnas%5cshare%5cHeat%5cposter.png/", "\\\\nas\\share\\Heat\\poster.png"),
    # Not files: a skin placeholder, an extracted thumbnail, a transformed image, and
    # anything relative.
    ("image://DefaultVideo.png/", None),
    ("image://video@%2fmnt%2fmovies%2fHeat.mkv/", None),
    ("image://%2fmnt%2fposter.png/transform?size=thumb", None),
    ("image://poster.png/", None),
    ("image://%5cposter.png/", None),
])
def test_a_kodi_art_file_is_an_absolute_path_in_any_players_style(url, file):
    from metarr_sync.players.kodi import art_file

    assert art_file(url) == file


def test_mappings_add_and_remove_name_a_windows_or_unc_folder_in_any_case(cli, metarr):
    import tomllib

    cli.write_config(config(metarr, recorder("lounge", mappings=[
        ("\\\\NAS\\Media\\Movies", "smb://nas/movies"),
        ("/data/Movies", "/mnt/movies")])))
    # The same UNC folder typed in another case: refused, naming the mapping in place.
    again = cli("mappings", "add", "lounge", "\\\\nas\\media\\movies\\", "smb://nas/other")
    assert again.returncode == 2
    assert again.stderr.splitlines()[0] == (
        "metarr-sync: lounge maps \\\\NAS\\Media\\Movies already (to smb://nas/movies); "
        "remove it first: metarr-sync mappings remove lounge \\\\NAS\\Media\\Movies")
    # A POSIX folder in another case is another folder.
    other = cli("mappings", "add", "lounge", "/data/movies", "/mnt/other")
    assert other.returncode == 0, other.stderr
    removed = cli("mappings", "remove", "lounge", "\\\\Nas\\MEDIA\\movies", "--json")
    assert removed.returncode == 0, removed.stderr
    assert json.loads(removed.stdout)["removed"] == [
        {"metarr": "\\\\NAS\\Media\\Movies", "player": "smb://nas/movies"}]
    players = tomllib.loads(cli.config.read_text())["players"]
    assert players["lounge"]["mappings"] == [
        {"metarr": "/data/Movies", "player": "/mnt/movies"},
        {"metarr": "/data/movies", "player": "/mnt/other"}]
