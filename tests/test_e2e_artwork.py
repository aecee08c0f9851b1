"""Republished artwork reaches the screen: `metarr-sync run` (the installed command) against
the fake Kodi, whose texture cache behaves as the real one was measured to (a scan caches
an item's art, a refresh leaves the cached copy stale, only Textures.RemoveTexture drops
it; support/texture_scenario.py runs the same facts against both).

The media are real files: Metarr's side is `<tmp>/media` (what metarr-sync reads to check
a cached copy against the file), and the fake Kodi sees the same files as `/mnt/...`
through its `disk`, so the path mapping is exercised both ways. What Kodi would show is
asked of the fake as a viewer would get it: `GET /image/<art URL>`.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from support.configs import config_with
from support.fake_players import FakeKodi, kodi_image_url
from support.images import dimensions, png

SOURCES = {"/mnt/movies/": "movies", "/mnt/tv/": "tvshows"}


class Media:
    """Metarr's library on disk, and the fake Kodi's view of it (/mnt/...)."""

    def __init__(self, root: Path):
        self.root = root
        (root / "movies").mkdir(parents=True)
        (root / "tv").mkdir()
        self.clock = int(time.time()) - 1000  # every write a few seconds newer

    def player(self, path: Path) -> str:
        return "/mnt/" + path.relative_to(self.root).as_posix()

    def write(self, path: Path, data: bytes | str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        self.clock += 10  # Kodi hashes mtimes in whole seconds: keep them apart
        os.utime(path, (self.clock, self.clock))
        return path

    def movie(self, title: str, year: int, nfo_title: str | None = None) -> Path:
        folder = self.root / "movies" / f"{title} ({year})"
        self.write(folder / "movie.nfo",
                   f"<movie><title>{nfo_title or title}</title><year>{year}</year></movie>")
        return self.write(folder / f"{title} ({year}).mkv", b"")

    def show(self, title: str) -> Path:
        folder = self.root / "tv" / title
        self.write(folder / "tvshow.nfo", f"<tvshow><title>{title}</title></tvshow>")
        return folder

    def episode(self, show: str, season: int, number: int, title: str) -> Path:
        folder = self.root / "tv" / show / f"Season {season:02d}"
        name = f"{show} - S{season:02d}E{number:02d}"
        self.write(folder / f"{name}.nfo", f"<episodedetails><title>{title}</title>"
                   f"<season>{season}</season><episode>{number}</episode></episodedetails>")
        return self.write(folder / f"{name}.mkv", b"")


@pytest.fixture
def media(tmp_path: Path) -> Media:
    return Media(tmp_path / "media")


@pytest.fixture
def metarr_on_disk(metarr, media):
    """Metarr's database with its libraries where the media really are."""
    metarr.movies_root, metarr.tv_root = str(media.root / "movies"), str(media.root / "tv")
    return metarr


def fake_kodi(media: Media) -> FakeKodi:
    return FakeKodi(sources=dict(SOURCES), disk={"/mnt/": str(media.root)}).start()


def configure(cli, metarr, media: Media, *kodis: tuple[str, FakeKodi],
              groups: dict[str, dict[str, Any]] | None = None,
              settings: dict[str, dict[str, Any]] | None = None) -> None:
    """Kodis by name, each mapping the media root to /mnt; `settings`: more keys by name."""
    settings = settings or {}
    cli.write_config(config_with(
        metarr=metarr.path, sync={"timeout": 5, "retry_attempts": 1}, groups=groups,
        players=[kodi.player(name, [(str(media.root), "/mnt")], **settings.get(name, {}))
                 for name, kodi in kodis]))


def run(cli) -> tuple[int, dict]:
    result = cli("run", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def shown(kodi: FakeKodi, art_url: str) -> tuple[int, int]:
    """The size of the image Kodi's web server serves for an art URL (what a viewer gets)."""
    answer = requests.get(f"{kodi.url}/image/{quote(art_url, safe='')}", timeout=3)
    answer.raise_for_status()
    return dimensions(answer.content)


def queue(cli) -> list[tuple]:
    with cli.state() as state:
        return [tuple(r) for r in state.execute(
            "SELECT player, item_key, status, last_error FROM sync_queue ORDER BY 1, 2")]


def test_a_republished_movie_poster_and_fanart_are_what_kodi_shows_after_the_run(
        cli, metarr_on_disk, media):
    metarr = metarr_on_disk
    video = media.movie("Heat", 1995)
    poster = media.write(video.parent / "poster.jpg", png(4, 6, (200, 0, 0)))
    fanart = media.write(video.parent / "fanart.jpg", png(16, 9, (0, 0, 200)))
    heat = metarr.add_movie("Heat", 1995)
    with fake_kodi(media) as kodi:
        kodi.add_file(media.player(video))
        configure(cli, metarr, media, ("lounge", kodi))
        code, report = run(cli)
        assert code == 0 and report["players"][0]["verified"] == 1, report
        poster_url = kodi_image_url(media.player(poster))
        fanart_url = kodi_image_url(media.player(fanart))
        kodi.display(media.player(video))  # someone browses the movies
        assert (shown(kodi, poster_url), shown(kodi, fanart_url)) == ((4, 6), (16, 9))

        # Metarr republishes both under the same names.
        media.write(poster, png(8, 12, (250, 250, 0)))
        media.write(fanart, png(32, 18, (0, 250, 0)))
        metarr.republish_movie(heat)
        # The stale state the run must fix: a refresh alone leaves Kodi's copies.
        assert (shown(kodi, poster_url), shown(kodi, fanart_url)) == ((4, 6), (16, 9))

        kodi.reset_log()
        code, report = run(cli)
        assert code == 0, report
        row = report["players"][0]
        assert (row["synced"], row["verified"], row["failed"]) == (1, 1, 0)
        assert kodi.refreshed[-1] == media.player(video)
        # What a viewer now gets: the new images, cached from the files as they are.
        assert (shown(kodi, poster_url), shown(kodi, fanart_url)) == ((8, 12), (32, 18))
        assert kodi.textures[poster_url].imagehash == \
            f"d{int(poster.stat().st_mtime)}s{poster.stat().st_size}"
        assert sorted(kodi.removed_textures) == sorted([poster_url, fanart_url])
        # The art was read, looked up and dropped in three POSTs (JSON-RPC batches).
        assert kodi.count("VideoLibrary.GetMovieDetails") == 2  # before refresh, verify
        assert kodi.count("Textures.RemoveTexture") == 1
        assert kodi.calls("Textures.RemoveTexture") == 2
        assert queue(cli) == []


def test_a_republished_show_poster_and_episode_thumb_are_what_kodi_shows(
        cli, metarr_on_disk, media):
    metarr = metarr_on_disk
    folder = media.show("Dark")
    show_poster = media.write(folder / "poster.jpg", png(4, 6, (9, 9, 9)))
    video = media.episode("Dark", 1, 1, "Secrets")
    thumb = media.write(video.with_name("Dark - S01E01-thumb.jpg"), png(16, 9, (90, 0, 0)))
    show = metarr.add_series("Dark")
    season = metarr.add_season(show, 1)
    episode = metarr.add_episode(show, season, 1, 1, title="Secrets")
    with fake_kodi(media) as kodi:
        kodi.add_file(media.player(video))
        configure(cli, metarr, media, ("lounge", kodi))
        code, report = run(cli)
        assert code == 0 and report["players"][0]["verified"] == 2, queue(cli)
        poster_url = kodi_image_url(media.player(show_poster))
        thumb_url = kodi_image_url(media.player(thumb))
        assert (shown(kodi, poster_url), shown(kodi, thumb_url)) == ((4, 6), (16, 9))

        media.write(show_poster, png(8, 12, (9, 200, 9)))
        media.write(thumb, png(32, 18, (200, 0, 200)))
        when = metarr.conn.execute("SELECT strftime('%Y-%m-%dT%H:%M:%fZ', 'now')").fetchone()[0]
        from datetime import datetime

        now = datetime.fromisoformat(when.replace("Z", "+00:00"))
        metarr.add_asset("image", "series", show, str(show_poster), now, iso=True)
        metarr.add_asset("image", "episode", episode, str(thumb), now, iso=True)
        assert (shown(kodi, poster_url), shown(kodi, thumb_url)) == ((4, 6), (16, 9))

        code, report = run(cli)
        assert code == 0, report
        assert (report["players"][0]["synced"], report["players"][0]["verified"]) == (2, 2)
        assert (shown(kodi, poster_url), shown(kodi, thumb_url)) == ((8, 12), (32, 18))
        assert queue(cli) == []


def test_kodi_showing_another_title_than_metarr_published_is_unverified_with_a_cause(
        cli, metarr_on_disk, media):
    metarr = metarr_on_disk
    # Kodi reads this NFO; Metarr has another title for the movie (say Kodi's source uses
    # an online scraper, or the NFO on the share is an old one).
    video = media.movie("Heat", 1995, nfo_title="Heat - Old Cut")
    heat = metarr.add_movie("Heat", 1995)
    with fake_kodi(media) as kodi:
        kodi.add_file(media.player(video))
        configure(cli, metarr, media, ("lounge", kodi))
        code, report = run(cli)
        assert code == 1
        row = report["players"][0]
        assert (row["status"], row["synced"], row["verified"], row["failed"]) == (
            "partial", 0, 0, 1)
        assert queue(cli) == [(
            "lounge", f"movie:{heat}", "unverified",
            "Kodi shows the title 'Heat - Old Cut', Metarr published 'Heat': Kodi did not "
            "read Metarr's NFO — check that the Kodi source holding /mnt/movies/Heat (1995)/"
            " uses the scraper 'Local information only' (Set content) and that Metarr "
            "published the NFO")]


def test_both_boxes_of_a_shared_library_show_the_new_poster(cli, metarr_on_disk, media):
    metarr = metarr_on_disk
    video = media.movie("Heat", 1995)
    poster = media.write(video.parent / "poster.jpg", png(4, 6))
    heat = metarr.add_movie("Heat", 1995)
    with fake_kodi(media) as lounge, fake_kodi(media) as bedroom:
        for kodi in (lounge, bedroom):
            kodi.add_file(media.player(video))
        configure(cli, metarr, media, ("lounge", lounge), ("bedroom", bedroom),
                  groups={"house": {"shared_library": True}},
                  settings={"lounge": {"group": "house", "priority": 1},
                            "bedroom": {"group": "house", "priority": 2}})
        assert run(cli)[0] == 0
        # One MySQL library for both: the bedroom box has the movie too (and its poster
        # cached, by its own scan of the shared library).
        bedroom.rpc_VideoLibrary_Scan({"directory": "/mnt/movies/Heat (1995)/"})
        url = kodi_image_url(media.player(poster))
        assert shown(lounge, url) == shown(bedroom, url) == (4, 6)

        media.write(poster, png(8, 12))
        metarr.republish_movie(heat)
        code, report = run(cli)
        assert code == 0, report
        got = {p["name"]: p for p in report["players"]}
        assert (got["lounge"]["status"], got["bedroom"]["status"]) == ("synced", "synced")
        assert bedroom.refreshed == []  # the library work was done once, by the lounge
        assert shown(lounge, url) == shown(bedroom, url) == (8, 12)

        # The bedroom box is off at the next republish: the group still syncs, the
        # bedroom's stale copy stays queued for it and is dropped once it is back.
        media.write(poster, png(12, 18))
        metarr.republish_movie(heat)
        bedroom.misbehave("refused")
        code, report = run(cli)
        assert code == 0, report
        got = {p["name"]: p for p in report["players"]}
        assert (got["bedroom"]["status"], got["bedroom"]["error_kind"]) == (
            "skipped", "offline")
        assert "may show the old images" in got["bedroom"]["error"]
        assert [q[:3] for q in queue(cli)] == [("bedroom", f"movie:{heat}", "pending")]
        bedroom.heal()
        assert shown(bedroom, url) == (8, 12)  # still stale
        code, report = run(cli)
        assert code == 0, report
        assert shown(lounge, url) == shown(bedroom, url) == (12, 18)
        assert queue(cli) == []
