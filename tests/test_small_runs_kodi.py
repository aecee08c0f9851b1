"""A small run costs Kodi what it changes, not what its library holds (issue 19).

The installed `metarr-sync run` against the fake Kodi, whose `path` filter answers as the
real one was measured to (SQL LIKE on the item's folder: `_` and `%` wildcards that cannot
be escaped, ASCII case ignored, see metarr_sync/players/kodi_lookup.md). Kodi's library is
written straight into the fake's tables (cheap at 20,000 movies); Metarr's database holds
only what changed, as a timer run after one publish sees it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from support.configs import config_with
from support.fake_players import FakeKodi
from support.images import png

SOURCES = {"/mnt/movies/": "movies", "/mnt/tv/": "tvshows"}
#: Every listing method: a call of one of these without a filter lists a whole library.
LISTINGS = ("VideoLibrary.GetMovies", "VideoLibrary.GetTVShows")


def fill(kodi: FakeKodi, movies: int, shows: int) -> None:
    """Kodi already holds `movies` other movies and `shows` other shows of 5 episodes."""
    with kodi.lock:
        for n in range(movies):
            kodi.movies[kodi._id()] = f"/mnt/movies/Film {n:05d} (2000)/Film {n:05d} (2000).mkv"
        for n in range(shows):
            show = kodi._id()
            kodi.shows[show] = f"/mnt/tv/Show {n:05d}/"
            for e in range(1, 6):
                kodi.episodes[kodi._id()] = (
                    show, f"/mnt/tv/Show {n:05d}/Season 01/Show {n:05d} - S01E{e:02d}.mkv")


def start(cli, metarr, movies: int, shows: int = 0) -> FakeKodi:
    kodi = FakeKodi(sources=dict(SOURCES)).start()
    fill(kodi, movies, shows)
    cli.write_config(config_with(
        metarr=metarr.path, sync={"timeout": 5, "retry_attempts": 1},
        players=[kodi.player("lounge", [("/data/media", "/mnt")])]))
    return kodi


def add_movie(kodi: FakeKodi, folder: str, title: str) -> str:
    """A movie Kodi holds already, with the NFO Metarr wrote (Kodi reads its title)."""
    file = f"/mnt/movies/{folder}/{folder}.mkv"
    kodi.add_file(file)
    kodi.write(f"/mnt/movies/{folder}/movie.nfo", f"<movie><title>{title}</title></movie>")
    kodi.write(f"/mnt/movies/{folder}/poster.png", png(2, 3))  # its cached copy is dropped
    with kodi.lock:
        kodi._add([("movie", file)])
    return file


def calls(kodi: FakeKodi) -> list[tuple[str, dict[str, Any]]]:
    """Every JSON-RPC call received, each call of a batch on its own."""
    found: list[tuple[str, dict[str, Any]]] = []
    for request in kodi.received():
        if request.path != "/jsonrpc":
            continue
        doc = request.json
        for call in doc if isinstance(doc, list) else [doc]:
            found.append((call["method"], call.get("params") or {}))
    return found


def shape(kodi: FakeKodi) -> list[str]:
    """The calls, with the folder a look-up names left out (it differs per scenario)."""
    return [method + ("(filter)" if "filter" in params else "") for method, params in calls(kodi)]


def run(cli) -> dict:
    result = cli("run", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout)


def whole_listings(kodi: FakeKodi) -> list[tuple[str, dict[str, Any]]]:
    return [(m, p) for m, p in calls(kodi) if m in LISTINGS and "filter" not in p]


def one_movie_run(cli, metarr, size: int) -> tuple[int, list[str], FakeKodi]:
    kodi = start(cli, metarr, size)
    try:
        file = add_movie(kodi, "Heat (1995)", "Heat")
        metarr.add_movie("Heat", 1995)
        kodi.reset_log()
        report = run(cli)
        assert report["players"][0]["synced"] == 1, report
        assert kodi.refreshed == [file]
        return kodi.count(), shape(kodi), kodi
    finally:
        kodi.stop()


def test_one_changed_movie_costs_the_same_at_2000_and_20000_movies(cli, metarr) -> None:
    small_requests, small_calls, small = one_movie_run(cli, metarr, 2000)
    big_requests, big_calls, big = one_movie_run(cli, metarr, 20000)
    assert (small_requests, small_calls) == (big_requests, big_calls)
    assert big_requests <= 10, big_calls
    assert whole_listings(big) == [] and whole_listings(small) == []
    # Found, then verified, each by its folder: two look-ups of exactly that folder.
    assert [p["filter"] for m, p in calls(big) if m == "VideoLibrary.GetMovies"] == [
        {"field": "path", "operator": "is", "value": "/mnt/movies/Heat (1995)/"}] * 2


def one_episode_run(cli, metarr, shows: int) -> tuple[int, list[str], FakeKodi]:
    kodi = start(cli, metarr, 0, shows)
    try:
        episode = "/mnt/tv/Dark/Season 01/Dark - S01E01.mkv"
        kodi.add_file(episode)
        kodi.write("/mnt/tv/Dark/tvshow.nfo", "<tvshow><title>Dark</title></tvshow>")
        kodi.write("/mnt/tv/Dark/Season 01/Dark - S01E01-thumb.png", png(4, 3))
        kodi.write("/mnt/tv/Dark/Season 01/Dark - S01E01.nfo",
                   "<episodedetails><title>Secrets</title><season>1</season>"
                   "<episode>1</episode></episodedetails>")
        with kodi.lock:
            kodi._add([("show", "/mnt/tv/Dark/"), ("episode", episode)])
        show = metarr.add_series("Dark")
        season = metarr.add_season(show, 1)
        metarr.add_episode(show, season, 1, 1, title="Secrets")
        kodi.reset_log()
        report = run(cli)
        assert report["players"][0]["synced"] >= 1, report
        assert episode in kodi.refreshed
        return kodi.count(), shape(kodi), kodi
    finally:
        kodi.stop()


def test_one_changed_episode_costs_the_same_at_400_and_4000_shows(cli, metarr) -> None:
    small_requests, small_calls, small = one_episode_run(cli, metarr, 400)
    big_requests, big_calls, big = one_episode_run(cli, metarr, 4000)
    assert (small_requests, small_calls) == (big_requests, big_calls)
    assert big_requests <= 10, big_calls
    assert whole_listings(big) == [] and whole_listings(small) == []
    # The show is looked up by its folder, the episode by its season folder, no show's
    # episodes listed.
    assert {p["filter"]["value"] for m, p in calls(big) if m == "VideoLibrary.GetTVShows"} \
        == {"/mnt/tv/Dark/"}
    assert [p["filter"] for m, p in calls(big) if m == "VideoLibrary.GetEpisodes"] == [
        {"field": "path", "operator": "is", "value": "/mnt/tv/Dark/Season 01/"}] * 2


@pytest.mark.parametrize("folder", ["50% Off_ (2002)", "50_ Off% (2002)"])
def test_wildcards_in_a_folder_name_match_exactly_and_not_a_look_alike(
        cli, metarr, folder) -> None:
    kodi = start(cli, metarr, 100)
    try:
        # LIKE reads `_` as any one character and `%` as any run: each of these folders
        # matches the other's look-up, and only the exact one may be refreshed.
        twin = "50_ Off% (2002)" if folder.startswith("50%") else "50% Off_ (2002)"
        mine = add_movie(kodi, folder, "Half")
        other = add_movie(kodi, twin, "Other")
        metarr.add_movie(folder.split(" (")[0], 2002)
        with metarr.conn:  # the title Metarr published is the one in the NFO
            metarr.conn.execute("UPDATE movies SET title = 'Half'")
        kodi.reset_log()
        report = run(cli)
        assert report["players"][0]["synced"] == 1, report
        assert kodi.refreshed == [mine]
        assert other in kodi.movies.values() and other not in kodi.refreshed
        answered = [p for m, p in calls(kodi) if m == "VideoLibrary.GetMovies"]
        assert answered and all("filter" in p for p in answered)
    finally:
        kodi.stop()


def test_a_big_change_still_lists_the_library_whole(cli, metarr) -> None:
    kodi = start(cli, metarr, 300)
    try:
        for n in range(60):  # more than SMALL_RUN (50) targets in one batch
            add_movie(kodi, f"New {n:02d} (2010)", f"New {n:02d}")
            metarr.add_movie(f"New {n:02d}", 2010)
        kodi.reset_log()
        report = run(cli)
        assert report["players"][0]["synced"] == 60, report
        assert len(kodi.refreshed) == 60
        listed = [p for m, p in whole_listings(kodi) if m == "VideoLibrary.GetMovies"]
        assert listed and all("limits" in p for p in listed)  # delivery and verification
        assert not [p for m, p in calls(kodi) if "filter" in p and m in LISTINGS]
    finally:
        kodi.stop()
