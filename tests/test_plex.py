"""The Plex adapter against a fake Plex Media Server (`responses`), plus real sockets for
refused connections and timeouts, and the installed CLI against a local stub server.

Every request a test provokes through the `plex` fixture is also checked against the
Plex OpenAPI spec when the test ends (test_contract_plex.check_contract).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from support import configs
from test_contract_plex import check_contract

from metarr_sync import __version__
from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.metarr import Item
from metarr_sync.plan import Target, target_for
from metarr_sync.players import adapter_class, base, plex
from metarr_sync.players.plex import PlexPlayer, client_identifier

TOKEN = "plx-Tok3n-d0-n0t-l3ak"
BASE = "http://plex.test:32400"
HTML_401 = ("<html><head><title>Unauthorized</title></head><body><h1>401 Unauthorized</h1>"
            "</body></html>")

MOVIES = {"key": "1", "type": "movie", "title": "Movies",
          "Location": [{"id": 1, "path": "/data/Movies"}]}
MOVIES_4K = {"key": "2", "type": "movie", "title": "Movies 4K",
             "Location": [{"id": 2, "path": "/data/Movies4K"}]}
TV = {"key": "3", "type": "show", "title": "TV Shows",
      "Location": [{"id": 3, "path": "/data/TV"}]}
MUSIC = {"key": "4", "type": "artist", "title": "Music",
         "Location": [{"id": 4, "path": "/data/Music"}]}


# --- a fake Plex Media Server -----------------------------------------------------------

class FakePlex:
    """Answers like Plex: JSON for known routes, HTML for errors; records nothing itself
    (responses does). `listings[(section, type)]` holds the Metadata of section listings."""

    def __init__(self, rsps: responses.RequestsMock):
        self.rsps = rsps
        self.sections: list[dict[str, Any]] = [MOVIES, MOVIES_4K, TV, MUSIC]
        self.listings: dict[tuple[str, int], list[dict[str, Any]]] = {}
        #: show rating key -> the Metadata of its episodes (allLeaves)
        self.leaves: dict[str, list[dict[str, Any]]] = {}
        #: False: emptyTrash answers 200 and Plex still lists the items for a while
        self.trash_empties = True
        self.playing = 0
        #: (method, path) -> (status, body, content type): a failure to answer with
        self.fail: dict[tuple[str, str], tuple[int, str, str]] = {}
        for method in ("GET", "PUT", "POST", "DELETE"):
            rsps.add_callback(method, re.compile(re.escape(BASE) + r"/.*"), self.answer)

    def answer(self, request: Any) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(request.url)
        path, query = parts.path, parse_qs(parts.query)
        if (request.method, path) in self.fail:
            status, body, kind = self.fail[(request.method, path)]
            return status, {"Content-Type": kind}, body
        if request.headers.get("X-Plex-Token") != TOKEN and path != "/identity":
            return 401, {"Content-Type": "text/html"}, HTML_401
        if request.method == "GET" and path == "/identity":
            return _json({"MediaContainer": {"size": 0, "claimed": True,
                                             "machineIdentifier": "abc123",
                                             "version": "1.41.3.9314-a0bfb8370"}})
        if request.method == "GET" and path == "/library/sections":
            return _json({"MediaContainer": {"size": len(self.sections),
                                             "Directory": self.sections}})
        if request.method == "GET" and path == "/status/sessions":
            return _json({"MediaContainer": {"size": self.playing, "Metadata": [
                {"ratingKey": "9", "title": "Heat"}] * self.playing}})
        match = re.fullmatch(r"/library/sections/(\w+)/all", path)
        if request.method == "GET" and match:
            items = self.listings.get((match.group(1), int(query["type"][0])), [])
            start = int(query.get("X-Plex-Container-Start", ["0"])[0])
            size = int(query.get("X-Plex-Container-Size", [str(len(items) or 1)])[0])
            page = items[start:start + size]
            return _json({"MediaContainer": {"size": len(page), "totalSize": len(items),
                                             "offset": start, "Metadata": page}})
        if request.method == "GET" and re.fullmatch(r"/library/sections/\d+/refresh", path):
            return 200, {}, ""
        match = re.fullmatch(r"/library/metadata/(\d+)/allLeaves", path)
        if request.method == "GET" and match:
            leaves = self.episodes_of(match.group(1))
            start = int(query.get("X-Plex-Container-Start", ["0"])[0])
            size = int(query.get("X-Plex-Container-Size", [str(len(leaves) or 1)])[0])
            page = leaves[start:start + size]
            return _json({"MediaContainer": {"size": len(page), "totalSize": len(leaves),
                                             "offset": start, "Metadata": page}})
        match = re.fullmatch(r"/library/sections/(\d+)/emptyTrash", path)
        if request.method == "PUT" and match:
            if self.trash_empties:
                self.empty_trash(match.group(1))
            return 200, {}, ""
        if request.method == "PUT" and re.fullmatch(r"/library/metadata/\d+/(refresh|analyze)",
                                                    path):
            return 200, {}, ""
        return 404, {"Content-Type": "text/html"}, "<html><body>Not Found</body></html>"

    def episodes_of(self, show_key: str) -> list[dict[str, Any]]:
        """A show's episodes (allLeaves): `leaves[show]` when set, else the episodes of
        its section's listing whose file lies in the show's folder (its Location)."""
        if show_key in self.leaves:
            return self.leaves[show_key]
        for (section, kind), shows in list(self.listings.items()):
            for show in shows if kind == 2 else ():
                if show["ratingKey"] != show_key:
                    continue
                folders = [loc["path"].rstrip("/") + "/" for loc in show["Location"]]
                return [m for m in self.listings.get((section, 4), [])
                        if any(part["file"].startswith(tuple(folders))
                               for media in m.get("Media", []) for part in media["Part"])]
        return []

    def empty_trash(self, section: str) -> None:
        """What Plex does: every item of the section marked missing goes, and a show left
        without episodes with it."""
        for (key, _), items in self.listings.items():
            if key == section:
                items[:] = [m for m in items if m.get("deletedAt") is None]
        shows = self.listings.get((section, 2), [])
        for show in list(shows):
            leaves = self.leaves.get(show["ratingKey"])
            if leaves is not None:
                leaves[:] = [m for m in leaves if m.get("deletedAt") is None]
            if not self.episodes_of(show["ratingKey"]):
                shows.remove(show)

    # What the adapter sent, decoded.
    def sent(self) -> list[tuple[str, str, dict[str, list[str]]]]:
        found = []
        for call in self.rsps.calls:
            parts = urlsplit(call.request.url)
            found.append((call.request.method, parts.path, parse_qs(parts.query)))
        return found

    def scans(self) -> list[tuple[str, str | None]]:
        """(section key, decoded path) of every partial scan, in order."""
        return [(p.split("/")[3], q.get("path", [None])[0]) for m, p, q in self.sent()
                if m == "GET" and p.endswith("/refresh")]

    def puts(self) -> list[str]:
        return [p for m, p, _ in self.sent() if m == "PUT"]

    def mutating(self) -> list[str]:
        return [f"{m} {p}" for m, p, _ in self.sent()
                if m != "GET" or p.endswith("/refresh")]

    def listing_calls(self) -> list[tuple[str, str]]:
        return [(p.split("/")[3], q["type"][0]) for m, p, q in self.sent()
                if p.endswith("/all")]


def _json(data: Any) -> tuple[int, dict[str, str], str]:
    return 200, {"Content-Type": "application/json"}, json.dumps(data)


def movie_meta(key: str, file: str, guids: tuple[str, ...] = (), deleted: bool = False,
               legacy_guid: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"ratingKey": key, "type": "movie", "title": f"movie {key}",
                            "Media": [{"id": int(key), "Part": [{"id": int(key), "file": file}]}],
                            "Guid": [{"id": g} for g in guids]}
    if legacy_guid:
        meta["guid"] = legacy_guid
    if deleted:
        meta["deletedAt"] = 1700000000
    return meta


def show_meta(key: str, folder: str, guids: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"ratingKey": key, "type": "show", "title": f"show {key}",
            "Location": [{"path": folder}], "Guid": [{"id": g} for g in guids]}


@pytest.fixture
def plex_mock() -> Iterator[FakePlex]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakePlex(rsps)
        yield fake
        # Every request of the test must be one the Plex spec documents.
        check_contract(rsps.calls)


@pytest.fixture
def made(plex_mock: FakePlex) -> Iterator[list[PlexPlayer]]:
    players: list[PlexPlayer] = []
    yield players
    for player in players:
        player.close()


def make_player(made_list: list[PlexPlayer] | None = None, *, dry_run: bool = False,
                url: str = BASE, sleep: Any = None, sync: SyncConfig | None = None,
                token: str | None = TOKEN, **settings: Any) -> PlexPlayer:
    config = PlayerConfig(name="den", type="plex", url=url, token_value=token, **settings)
    sync = sync or SyncConfig(retry_attempts=0, timeout=5)
    kw = {"sleep": sleep} if sleep else {}
    player = PlexPlayer(config, sync, dry_run=dry_run, **kw)
    if made_list is not None:
        made_list.append(player)
    return player


_ids = iter(range(1, 10_000))


def movie(path: str, ids: dict[str, str] | None = None, removed: bool = False) -> Item:
    return Item("movie", next(_ids), path, title=path.rsplit("/", 1)[-1], ids=ids or {},
                stamp="2026-01-01T00:00:00.000Z", removed=removed)


def series(path: str, ids: dict[str, str] | None = None) -> Item:
    return Item("series", next(_ids), path, series_path=path, ids=ids or {},
                stamp="2026-01-01T00:00:00.000Z")


def episode(path: str, show: str) -> Item:
    return Item("episode", next(_ids), path, series_path=show, season=1, episode=1,
                stamp="2026-01-01T00:00:00.000Z")


def targets(*items: Item, mappings: tuple[Mapping, ...] = ()) -> list[Target]:
    return [target_for(i, list(mappings)) for i in items]


# --- headers, identity, discovery -------------------------------------------------------

def test_registry_finds_the_plex_adapter():
    assert adapter_class("plex") is PlexPlayer
    assert PlexPlayer.type_name == "plex"


def test_every_call_carries_the_plex_headers_and_never_the_token_in_the_url(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv")]
    player = make_player(made, analyze=True)
    player.probe()
    player.is_playing()
    player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                         movie("/data/Movies/Alien (1979)/Alien.mkv")))
    calls = plex_mock.rsps.calls
    assert len(calls) == player.requests == 7
    for call in calls:
        headers = call.request.headers
        assert headers["X-Plex-Token"] == TOKEN
        assert headers["Accept"] == "application/json"
        assert headers["X-Plex-Client-Identifier"] == client_identifier("den")
        assert headers["X-Plex-Product"] == "metarr-sync"
        assert headers["X-Plex-Version"] == __version__
        assert TOKEN not in call.request.url and "token" not in call.request.url.lower()


def test_the_client_identifier_is_stable_per_player_and_machine():
    first = client_identifier("den", "machine-a")
    assert first == client_identifier("den", "machine-a")
    assert first != client_identifier("lounge", "machine-a")
    assert first != client_identifier("den", "machine-b")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", first)
    # Two runs on this machine present themselves as the same device.
    assert client_identifier("den") == client_identifier("den") == client_identifier(
        "den", plex.machine_id())


def test_probe_reports_version_sections_and_every_location_as_roots(plex_mock, made):
    plex_mock.sections = [MOVIES, {**MOVIES_4K, "Location": [
        {"id": 2, "path": "/data/Movies4K"}, {"id": 5, "path": "/mnt/more4k"}]}, TV]
    player = make_player(made)
    result = player.probe()
    assert result.version == "1.41.3.9314-a0bfb8370"
    assert [s.name for s in result.steps] == ["reachable", "token"]
    assert all(s.ok for s in result.steps)
    assert "Movies 4K (movie)" in result.steps[1].detail and "3 libraries" in \
        result.steps[1].detail
    assert result.roots == ["/data/Movies", "/data/Movies4K", "/mnt/more4k", "/data/TV"]
    # The sections are read once per run: applying afterwards does not read them again.
    player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv")))
    paths = [p for _, p, _ in plex_mock.sent()]
    assert paths.count("/library/sections") == 1 and paths.count("/identity") == 1


def test_a_bad_token_gets_401_html_and_is_reported_without_parsing_it(plex_mock, made):
    player = make_player(made, token="wrong-token-value")
    with pytest.raises(base.AuthFailed) as caught:
        player.probe()
    assert "rejected the token (HTTP 401)" in caught.value.message
    assert "wrong-token-value" not in caught.value.message
    assert caught.value.kind == "auth_failed" and not caught.value.transient


def test_401_on_a_later_call_is_auth_failed_too(plex_mock, made):
    player = make_player(made)
    player.probe()
    plex_mock.fail[("GET", "/library/sections/1/all")] = (401, HTML_401, "text/html")
    with pytest.raises(base.AuthFailed, match="HTTP 401"):
        player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv")))


def test_a_wrong_url_answering_404_is_rejected(plex_mock, made):
    plex_mock.fail[("GET", "/identity")] = (404, "<html>Not Found</html>", "text/html")
    with pytest.raises(base.Rejected, match=r"has no /identity \(HTTP 404\)"):
        make_player(made).probe()


def test_json_that_is_not_plex_is_a_protocol_error(plex_mock, made):
    plex_mock.fail[("GET", "/identity")] = (200, '{"ProductName": "Jellyfin Server"}',
                                            "application/json")
    with pytest.raises(base.ProtocolError, match="not a Plex answer"):
        make_player(made).probe()


def test_a_404_on_an_item_refresh_keeps_that_item_pending_and_syncs_the_others(
        plex_mock, made):
    # Plex removed the item since it was listed: that item is tried again by the next run
    # (a fresh listing then finds it, or not, and scans its folder); the others are synced.
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv"),
                                    movie_meta("11", "/data/Movies/Up (2009)/Up.mkv")]
    plex_mock.fail[("PUT", "/library/metadata/10/refresh")] = (404, "<html/>", "text/html")
    batch = targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                    movie("/data/Movies/Up (2009)/Up.mkv"))
    outcomes = make_player(made).apply(batch)
    assert [(o.item_key, o.result) for o in outcomes] == [(batch[0].key, "retry"),
                                                          (batch[1].key, "synced")]
    assert outcomes[0].error == ("Plex no longer has item 10 it listed for /data/Movies/Heat "
                                 "(1995)/Heat.mkv (HTTP 404 on its refresh): the next run "
                                 "looks for it again")
    assert sorted(plex_mock.puts()) == ["/library/metadata/10/refresh",
                                        "/library/metadata/11/refresh"]


def test_a_403_on_an_item_refresh_stops_the_player_so_the_batch_stays_pending(
        plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv")]
    plex_mock.fail[("PUT", "/library/metadata/10/refresh")] = (403, "<html/>", "text/html")
    with pytest.raises(base.Rejected, match="HTTP 403"):
        make_player(made).apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv")))


@pytest.mark.parametrize(("size", "playing"), [(0, False), (1, True), (2, True)])
def test_someone_watching_is_read_from_the_sessions(plex_mock, made, size, playing):
    plex_mock.playing = size
    assert make_player(made).is_playing() is playing
    assert plex_mock.sent()[0][1] == "/status/sessions"


# --- partial scans ----------------------------------------------------------------------

def test_a_new_movie_gets_one_partial_scan_of_its_folder(plex_mock, made):
    player = make_player(made)
    outcomes = player.apply(targets(movie("/data/Movies/Heat (1995)/Heat (1995).mkv")))
    assert outcomes == [base.Outcome(outcomes[0].item_key, "synced")]
    assert plex_mock.scans() == [("1", "/data/Movies/Heat (1995)")]  # the folder, not the file
    assert plex_mock.puts() == []
    assert player.commands == ["GET /library/sections/1/refresh?path=/data/Movies/Heat (1995)"]


def test_two_items_in_one_folder_and_a_show_with_its_episode_scan_each_folder_once(
        plex_mock, made):
    player = make_player(made)
    batch = targets(
        movie("/data/Movies/Heat (1995)/Heat (1995).mkv"),
        movie("/data/Movies/Heat (1995)/Heat (1995) - Director's Cut.mkv"),
        series("/data/TV/Severance"),
        episode("/data/TV/Severance/Season 01/Severance - S01E01.mkv", "/data/TV/Severance"),
        episode("/data/TV/Severance/Season 01/Severance - S01E02.mkv", "/data/TV/Severance"))
    assert [o.result for o in player.apply(batch)] == ["synced"] * 5
    assert plex_mock.scans() == [("1", "/data/Movies/Heat (1995)"), ("3", "/data/TV/Severance")]
    # A later batch of the same run does not scan a folder already covered.
    player.apply(targets(episode("/data/TV/Severance/Season 02/Severance - S02E01.mkv",
                                 "/data/TV/Severance")))
    assert len(plex_mock.scans()) == 2


def test_scans_are_spaced_by_scan_delay_and_sent_one_at_a_time(plex_mock, made):
    pauses: list[float] = []
    player = make_player(made, scan_delay=1.5, sleep=pauses.append)
    player.apply(targets(movie("/data/Movies/A (2001)/A.mkv"),
                         movie("/data/Movies/B (2002)/B.mkv")))
    player.apply(targets(movie("/data/Movies/C (2003)/C.mkv")))
    assert [p for _, p in plex_mock.scans()] == [
        "/data/Movies/A (2001)", "/data/Movies/B (2002)", "/data/Movies/C (2003)"]
    assert pauses == [1.5, 1.5]  # between scans, not before the first


def test_a_folder_in_two_sections_is_scanned_in_both(plex_mock, made):
    # 4K and HD libraries sharing a folder (Radarr with two root folders into one).
    plex_mock.sections = [MOVIES, {**MOVIES_4K, "Location": [
        {"id": 2, "path": "/data/Movies4K"}, {"id": 6, "path": "/data/Movies"}]}, TV]
    player = make_player(made)
    player.apply(targets(movie("/data/Movies/Dune (2021)/Dune (2021).mkv")))
    assert plex_mock.scans() == [("1", "/data/Movies/Dune (2021)"),
                                 ("2", "/data/Movies/Dune (2021)")]


def test_a_folder_in_both_sections_known_to_one_is_refreshed_there_and_scanned_in_the_other(
        plex_mock, made):
    plex_mock.sections = [MOVIES, {**MOVIES_4K, "Location": [{"id": 6, "path": "/data/Movies"}]}]
    plex_mock.listings[("1", 1)] = [movie_meta("21", "/data/Movies/Dune (2021)/Dune (2021).mkv")]
    player = make_player(made)
    player.apply(targets(movie("/data/Movies/Dune (2021)/Dune (2021).mkv")))
    assert plex_mock.puts() == ["/library/metadata/21/refresh"]
    assert plex_mock.scans() == [("2", "/data/Movies/Dune (2021)")]


def test_movies_does_not_match_movies4k(plex_mock, made):
    player = make_player(made)
    player.apply(targets(movie("/data/Movies4K/Dune (2021)/Dune (2021).mkv"),
                         movie("/data/Movies/Heat (1995)/Heat (1995).mkv")))
    assert plex_mock.scans() == [("2", "/data/Movies4K/Dune (2021)"),
                                 ("1", "/data/Movies/Heat (1995)")]


def test_a_folder_outside_every_library_fails_and_is_not_scanned(plex_mock, made):
    player = make_player(made)
    outcomes = player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                                    movie("/srv/elsewhere/Alien (1979)/Alien.mkv"),
                                    movie("/data/Movies-old/Up (2009)/Up.mkv")))
    assert [o.result for o in outcomes] == ["synced", "failed", "failed"]
    assert "/srv/elsewhere/Alien (1979) is not in any Plex library" in outcomes[1].error
    assert "/data/Movies" in outcomes[1].error and "check the path mapping" in outcomes[1].error
    assert "not in any Plex library" in outcomes[2].error
    assert plex_mock.scans() == [("1", "/data/Movies/Heat (1995)")]


def test_a_movie_folder_only_in_a_music_library_is_not_scanned_there(plex_mock, made):
    outcomes = make_player(made).apply(targets(movie("/data/Music/Heat (1995)/Heat.mkv")))
    assert outcomes[0].result == "failed"
    assert "not in any Plex movie library, only in 'Music' (artist)" in outcomes[0].error
    assert plex_mock.scans() == []


def test_episodes_a_scan_of_this_run_just_added_are_not_refreshed(plex_mock, made):
    # A new show: its folder is scanned in the batch of the show; the episodes come in a
    # later batch, and the episode listing then already holds what that scan added.
    # They got their NFO and artwork from the scan: no refresh each.
    player = make_player(made)
    player.apply(targets(series("/data/TV/Andor")))
    plex_mock.listings[("3", 4)] = [
        {**movie_meta("71", "/data/TV/Andor/Season 01/Andor - S01E01.mkv"), "type": "episode"},
        {**movie_meta("72", "/data/TV/Andor/Season 01/Andor - S01E02.mkv"), "type": "episode"}]
    out = player.apply(targets(episode("/data/TV/Andor/Season 01/Andor - S01E01.mkv",
                                       "/data/TV/Andor"),
                               episode("/data/TV/Andor/Season 01/Andor - S01E02.mkv",
                                       "/data/TV/Andor")))
    assert [o.result for o in out] == ["synced", "synced"]
    assert plex_mock.scans() == [("3", "/data/TV/Andor")]
    assert plex_mock.puts() == []


def test_episodes_listed_before_a_scan_of_their_folder_are_still_refreshed(plex_mock, made):
    # Listed first, then a missing sibling's season folder is scanned: the listed episode
    # existed before the run and its changed NFO needs the refresh (a scan does not).
    plex_mock.listings[("3", 2)] = [show_meta("70", "/data/TV/Andor")]
    plex_mock.listings[("3", 4)] = [
        {**movie_meta("71", "/data/TV/Andor/Season 01/Andor - S01E01.mkv"), "type": "episode"}]
    player = make_player(made)
    player.apply(targets(episode("/data/TV/Andor/Season 01/Andor - S01E02.mkv",
                                 "/data/TV/Andor")))
    player.apply(targets(episode("/data/TV/Andor/Season 01/Andor - S01E01.mkv",
                                 "/data/TV/Andor")))
    assert plex_mock.scans() == [("3", "/data/TV/Andor/Season 01")]
    assert plex_mock.puts() == ["/library/metadata/71/refresh"]


def test_each_new_folder_is_scanned_once_in_a_run_of_many(plex_mock, made):
    # The check for an earlier scan looks up the folder and its parents: thousands of
    # new folders in a run cost no pairwise comparison, and none is scanned twice.
    player = make_player(made)
    folders = [f"/data/Movies/New {n} (2020)" for n in range(300)]
    for start in range(0, 300, 100):
        player.apply(targets(*(movie(f"{f}/{f.rsplit('/', 1)[1]}.mkv")
                               for f in folders[start:start + 100])))
    player.apply(targets(movie(f"{folders[7]}/extra.mkv")))
    scanned = [path for _, path in plex_mock.scans()]
    assert len(scanned) == 300 and sorted(scanned) == sorted(folders)


def test_a_library_root_is_never_scanned_for_one_item(plex_mock, made):
    player = make_player(made)
    # A file right in the mapped root: its folder is the root itself.
    flat = movie("/media/movies/Heat (1995)/Heat.mkv")
    root_target = Target(flat, "/data/Movies/Heat.mkv", "/data/Movies", None, "/data/Movies")
    assert root_target.folder_is_root
    # A mapping root above Plex's location: the folder is a whole Plex location.
    whole = targets(movie("/data/Movies/Heat.mkv"), mappings=(Mapping("/data", "/data"),))
    outcomes = player.apply([root_target, *whole])
    assert [o.result for o in outcomes] == ["failed", "failed"]
    assert "library root itself" in outcomes[0].error
    assert "whole location of Plex library 'Movies'" in outcomes[1].error
    assert plex_mock.scans() == []


@pytest.mark.parametrize("name", [
    "Fast & Furious (2001)",
    "Se7en #1 (1995)",
    "1+1 (2011)",
    "100% Wolf (2020)",
    "Am\u00e9lie  (2001)",  # two spaces and an accent
    "\u6771\u4eac\u7269\u8a9e (1953)",
    "Crouching Tiger; Hidden=Dragon? (2000)",
    "A %20 literal + and %2F (1999)",
])
def test_folder_names_round_trip_exactly_through_the_query_string(plex_mock, made, name):
    folder = f"/data/Movies/{name}"
    make_player(made).apply(targets(movie(f"{folder}/{name}.mkv")))
    [call] = [c for c in plex_mock.rsps.calls if "/refresh" in c.request.url]
    raw_query = urlsplit(call.request.url).query
    assert parse_qs(raw_query, keep_blank_values=True) == {"path": [folder]}
    assert "#" not in call.request.url  # a raw # would cut the query off


def test_a_windows_plex_gets_backslashes_from_its_location(plex_mock, made):
    plex_mock.sections = [
        {"key": "1", "type": "movie", "title": "Films",
         "Location": [{"id": 1, "path": "S:\\Movies"}]},
        {"key": "3", "type": "show", "title": "Series", "Location": [{"id": 3, "path": "T:\\"}]},
    ]
    mappings = (Mapping("/media/movies", "S:/Movies"), Mapping("/media/tv", "T:\\"))
    player = make_player(made)
    outcomes = player.apply(targets(
        movie("/media/movies/Heat (1995)/Heat (1995).mkv"),
        series("/media/tv/Severance"),
        mappings=mappings))
    assert [o.result for o in outcomes] == ["synced", "synced"]
    # Separator from the location; a drive root gives T:\Severance, never T:\\Severance.
    assert plex_mock.scans() == [("1", "S:\\Movies\\Heat (1995)"), ("3", "T:\\Severance")]


def test_a_windows_plex_matches_files_regardless_of_case_and_separator(plex_mock, made):
    plex_mock.sections = [{"key": "1", "type": "movie", "title": "Films",
                           "Location": [{"id": 1, "path": "S:\\Movies"}]}]
    plex_mock.listings[("1", 1)] = [movie_meta("77", "s:\\movies\\HEAT (1995)\\Heat (1995).mkv")]
    player = make_player(made)
    player.apply(targets(movie("/media/movies/Heat (1995)/Heat (1995).mkv"),
                         mappings=(Mapping("/media/movies", "S:\\Movies"),)))
    assert plex_mock.puts() == ["/library/metadata/77/refresh"]
    assert plex_mock.scans() == []


def test_a_name_windows_cannot_hold_fails_that_item_only(plex_mock, made):
    plex_mock.sections = [{"key": "1", "type": "movie", "title": "Films",
                           "Location": [{"id": 1, "path": "S:\\Movies"}]}]
    item = movie("/media/movies/What? (2001)/What.mkv")
    # A POSIX-spelled target whose folder is under the Windows location by components.
    target = Target(item, "S:/Movies/What? (2001)/What.mkv", "S:/Movies/What? (2001)", None,
                    "S:/Movies")
    outcomes = make_player(made).apply([target])
    assert outcomes[0].result == "failed" and "cannot exist on a Windows player" in \
        outcomes[0].error
    assert plex_mock.scans() == []


# --- refreshing items Plex already has --------------------------------------------------

def test_a_changed_movie_plex_has_is_refreshed_by_its_rating_key(plex_mock, made):
    plex_mock.listings[("1", 1)] = [
        movie_meta("10", "/data/Movies/Heat (1995)/Heat (1995).mkv"),
        movie_meta("11", "/data/Movies/Alien (1979)/Alien (1979).mkv")]
    player = make_player(made)
    outcomes = player.apply(targets(movie("/data/Movies/Heat (1995)/Heat (1995).mkv")))
    assert outcomes[0].result == "synced"
    assert plex_mock.puts() == ["/library/metadata/10/refresh"]
    assert plex_mock.scans() == []  # a scan would not pick up rewritten NFO/artwork
    assert plex_mock.listing_calls() == [("1", "1")]
    [listing] = [q for _, p, q in plex_mock.sent() if p.endswith("/all")]
    assert listing["includeGuids"] == ["1"]


def test_analyze_follows_the_refresh_when_asked(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv")]
    make_player(made, analyze=True).apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv")))
    assert plex_mock.puts() == ["/library/metadata/10/refresh", "/library/metadata/10/analyze"]


def test_the_listing_is_read_once_per_section_and_type_per_run(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/A (2001)/A.mkv"),
                                    movie_meta("11", "/data/Movies/B (2002)/B.mkv")]
    player = make_player(made)
    player.apply(targets(movie("/data/Movies/A (2001)/A.mkv")))
    player.apply(targets(movie("/data/Movies/B (2002)/B.mkv"),
                         series("/data/TV/Severance"),
                         episode("/data/TV/Severance/Season 01/S01E01.mkv", "/data/TV/Severance")))
    # A TV section's episodes are never listed whole: an episode's show is found among
    # the section's shows (read once), then only its episodes (none here: a new show).
    assert sorted(plex_mock.listing_calls()) == [("1", "1"), ("3", "2")]
    assert plex_mock.puts() == ["/library/metadata/10/refresh", "/library/metadata/11/refresh"]


def test_big_sections_are_listed_page_by_page(plex_mock, made, monkeypatch):
    monkeypatch.setattr(plex, "PAGE_SIZE", 2)
    plex_mock.listings[("1", 1)] = [movie_meta(str(20 + i), f"/data/Movies/M{i}/M{i}.mkv")
                                    for i in range(5)]
    make_player(made).apply(targets(movie("/data/Movies/M4/M4.mkv")))
    starts = [q["X-Plex-Container-Start"][0] for _, p, q in plex_mock.sent()
              if p.endswith("/all")]
    assert starts == ["0", "2", "4"]
    assert plex_mock.puts() == ["/library/metadata/24/refresh"]


def test_an_episode_is_looked_for_among_its_own_shows_episodes_once_per_show(
        plex_mock, made):
    # Two shows; three changed episodes of one: the section's shows are listed once, that
    # show's episodes (allLeaves) once, and the section's episodes never.
    plex_mock.listings[("3", 2)] = [show_meta("300", "/data/TV/Severance"),
                                    show_meta("400", "/data/TV/Andor")]
    plex_mock.listings[("3", 4)] = [
        {**movie_meta(key, f"/data/TV/{show}/Season 01/{show} - S01E0{n}.mkv"),
         "type": "episode"}
        for key, show, n in (("301", "Severance", 1), ("302", "Severance", 2),
                             ("401", "Andor", 1))]
    player = make_player(made)
    player.apply(targets(episode("/data/TV/Severance/Season 01/Severance - S01E01.mkv",
                                 "/data/TV/Severance")))
    outcomes = player.apply(targets(
        episode("/data/TV/Severance/Season 01/Severance - S01E02.mkv", "/data/TV/Severance"),
        episode("/data/TV/Severance/Season 01/Severance - S01E03.mkv", "/data/TV/Severance")))
    assert [o.result for o in outcomes] == ["synced", "synced"]
    assert plex_mock.listing_calls() == [("3", "2")]
    leaves = [(p, q) for m, p, q in plex_mock.sent() if p.endswith("/allLeaves")]
    assert leaves == [("/library/metadata/300/allLeaves", {
        "includeGuids": ["1"], "X-Plex-Container-Start": ["0"],
        "X-Plex-Container-Size": ["1000"]})]
    assert sorted(plex_mock.puts()) == ["/library/metadata/301/refresh",
                                        "/library/metadata/302/refresh"]
    assert plex_mock.scans() == [("3", "/data/TV/Severance/Season 01")]  # for S01E03


def test_a_shows_episodes_come_in_pages(plex_mock, made, monkeypatch):
    monkeypatch.setattr(plex, "PAGE_SIZE", 2)
    plex_mock.listings[("3", 2)] = [show_meta("300", "/data/TV/Severance")]
    plex_mock.listings[("3", 4)] = [
        {**movie_meta(str(301 + n), f"/data/TV/Severance/Season 01/e{n}.mkv"),
         "type": "episode"} for n in range(5)]
    outcomes = make_player(made).apply(targets(
        episode("/data/TV/Severance/Season 01/e4.mkv", "/data/TV/Severance")))
    assert [o.result for o in outcomes] == ["synced"]
    starts = [q["X-Plex-Container-Start"][0] for m, p, q in plex_mock.sent()
              if p.endswith("/allLeaves")]
    assert starts == ["0", "2", "4"]
    assert plex_mock.puts() == ["/library/metadata/305/refresh"]


def test_shows_match_by_location_and_episodes_by_file(plex_mock, made):
    plex_mock.listings[("3", 2)] = [show_meta("300", "/data/TV/Severance")]
    plex_mock.listings[("3", 4)] = [{
        "ratingKey": "301", "type": "episode",
        "Media": [{"Part": [{"file": "/data/TV/Severance/Season 01/Severance - S01E01.mkv"}]}]}]
    player = make_player(made)
    outcomes = player.apply(targets(
        series("/data/TV/Severance"),
        episode("/data/TV/Severance/Season 01/Severance - S01E01.mkv", "/data/TV/Severance"),
        episode("/data/TV/Severance/Season 01/Severance - S01E02.mkv", "/data/TV/Severance")))
    assert [o.result for o in outcomes] == ["synced"] * 3
    # refreshes go several at a time (concurrency): their order is not fixed
    assert sorted(plex_mock.puts()) == ["/library/metadata/300/refresh",
                                        "/library/metadata/301/refresh"]
    assert plex_mock.scans() == [("3", "/data/TV/Severance/Season 01")]  # the new episode


def test_provider_ids_find_an_item_whose_file_moved_and_its_new_folder_is_scanned(
        plex_mock, made):
    plex_mock.listings[("1", 1)] = [
        movie_meta("10", "/data/Movies/Heat/Heat.avi", guids=("imdb://tt0113277", "tmdb://949")),
        movie_meta("12", "/data/Movies/Old/Alien.avi",
                   legacy_guid="com.plexapp.agents.imdb://tt0078748?lang=en"),
        movie_meta("13", "/data/Movies/Other/Other.mkv", guids=("tmdb://1",))]
    player = make_player(made)
    player.apply(targets(
        movie("/data/Movies/Heat (1995)/Heat (1995).mkv", ids={"tmdb": "949"}),
        movie("/data/Movies/Alien (1979)/Alien (1979).mkv", ids={"imdb": "tt0078748"})))
    assert sorted(plex_mock.puts()) == ["/library/metadata/10/refresh",  # any order
                                        "/library/metadata/12/refresh"]
    assert plex_mock.scans() == [("1", "/data/Movies/Alien (1979)"),
                                 ("1", "/data/Movies/Heat (1995)")]


# --- upgrades and renames ---------------------------------------------------------------

def upgraded(root: Path, new: str, old: str, *, old_on_disk: bool = False) -> Item:
    """A movie Radarr moved from `old` to `new` (relative to Metarr's folder `root`)."""
    (root / new).parent.mkdir(parents=True, exist_ok=True)
    (root / new).touch()
    if old_on_disk:
        (root / old).parent.mkdir(parents=True, exist_ok=True)
        (root / old).touch()
    return Item("movie", next(_ids), str(root / new), ids={"imdb": "tt0113277"},
                previous_paths=(str(root / old),))


def test_upgrade_into_another_folder_scans_both_and_never_empties_the_trash(plex_mock, made,
                                                                            tmp_path):
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat/Heat 720p.mkv",
                                               guids=("imdb://tt0113277",))]
    item = upgraded(tmp_path, "Heat (1995)/Heat 1080p.mkv", "Heat/Heat 720p.mkv")
    # Radarr renamed the folder: the old one is gone with the old file.
    player = make_player(made)
    outcomes = player.apply(targets(item, mappings=(Mapping(str(tmp_path), "/data/Movies"),)))
    assert [o.result for o in outcomes] == ["synced"]
    # The old folder's scan marks the old file missing; the new one's adds the new file.
    assert sorted(plex_mock.scans()) == [("1", "/data/Movies/Heat"),
                                         ("1", "/data/Movies/Heat (1995)")]
    assert plex_mock.puts() == ["/library/metadata/10/refresh"]
    player.finish()
    # The trash may hold other missing items: an upgrade never empties it.
    assert plex_mock.puts() == ["/library/metadata/10/refresh"]


def test_upgrade_with_the_old_file_kept_never_empties_the_trash(plex_mock, made, tmp_path):
    item = upgraded(tmp_path, "Heat (1995)/Heat 1080p.mkv", "Heat (1995)/Heat 720p.mkv",
                    old_on_disk=True)
    player = make_player(made)
    player.apply(targets(item, mappings=(Mapping(str(tmp_path), "/data/Movies"),)))
    player.finish()
    assert plex_mock.scans() == [("1", "/data/Movies/Heat (1995)")]
    assert "/library/sections/1/emptyTrash" not in plex_mock.puts()


def test_verify_of_an_upgrade_wants_one_entry_for_the_new_file(plex_mock, made, tmp_path):
    item = upgraded(tmp_path, "Heat (1995)/Heat 1080p.mkv", "Heat (1995)/Heat 720p.mkv")
    mappings = (Mapping(str(tmp_path), "/data/Movies"),)
    new, old = "/data/Movies/Heat (1995)/Heat 1080p.mkv", "/data/Movies/Heat (1995)/Heat 720p.mkv"

    def verdict() -> tuple[str, str | None]:
        (outcome,) = make_player(made).verify(targets(item, mappings=mappings))
        return outcome.result, outcome.error

    # Only the old item, found by its imdb id: the new file is not there yet.
    plex_mock.listings[("1", 1)] = [movie_meta("10", old, guids=("imdb://tt0113277",))]
    assert verdict()[0] == "unverified"
    # A new item beside the old one (marked missing, not yet out of the trash).
    plex_mock.listings[("1", 1)] = [movie_meta("10", old, deleted=True),
                                    movie_meta("11", new)]
    result, why = verdict()
    assert result == "unverified"
    assert why.startswith(f"Plex still lists {old} beside the new file {new} (shown as "
                          "unavailable until the library's trash is emptied)")
    # The same item with the new file and the old one as an unavailable version: one entry.
    both = movie_meta("10", new)
    both["Media"].append({"id": 12, "Part": [{"id": 12, "file": old}]})
    plex_mock.listings[("1", 1)] = [both]
    assert verdict() == ("synced", None)


# --- removed items and the trash --------------------------------------------------------
# Plex marks a deleted file's item missing only when the scan has run, in the background;
# emptyTrash deletes EVERY item of the section marked missing. So apply() only scans, and
# verify(), on a later run, empties a trash only when all of it is our own removals.

HEAT = "/data/Movies/Heat (1995)/Heat.mkv"
UP = "/data/Movies/Up (2009)/Up.mkv"


def test_a_removal_only_scans_its_folder_and_never_empties_the_trash(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True),
                                    movie_meta("11", "/data/Movies/Lost/Lost.mkv",
                                               deleted=True)]
    player = make_player(made)
    outcomes = player.apply(targets(movie(HEAT, removed=True), movie(UP, removed=True)))
    assert [o.result for o in outcomes] == ["synced", "synced"]
    assert player.finish() == []
    assert plex_mock.scans() == [("1", "/data/Movies/Heat (1995)"), ("1", "/data/Movies/Up (2009)")]
    assert plex_mock.puts() == []
    assert plex_mock.listing_calls() == []  # nothing to look up: the scan is all it sends
    assert player.commands == ["GET /library/sections/1/refresh?path=/data/Movies/Heat (1995)",
                               "GET /library/sections/1/refresh?path=/data/Movies/Up (2009)"]


def test_a_removed_item_plex_no_longer_lists_is_verified_without_touching_the_trash(
        plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("11", "/data/Movies/Lost/Lost.mkv",
                                               deleted=True)]
    gone = targets(movie(HEAT, removed=True))
    outcomes = make_player(made).verify(gone)
    assert outcomes == [base.Outcome(gone[0].key, "synced")]
    assert plex_mock.puts() == [] and plex_mock.scans() == []


def test_a_removed_item_plex_still_lists_unmarked_is_unverified(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT)]
    gone = targets(movie(HEAT, removed=True))
    [outcome] = make_player(made).verify(gone)
    assert outcome.result == "unverified"
    assert outcome.error == (
        "Plex still lists /data/Movies/Heat (1995)/Heat.mkv in library 'Movies' and has not "
        "marked it missing: Plex has not rescanned /data/Movies/Heat (1995) yet, or the file "
        "still exists for Plex (is Plex's view of the share the same as Metarr's?)")
    assert plex_mock.puts() == []


def test_only_our_removals_marked_missing_empty_the_trash_then_they_are_looked_up_again(
        plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True),
                                    movie_meta("11", UP, deleted=True),
                                    movie_meta("12", "/data/Movies/Kept/Kept.mkv")]
    gone = targets(movie(HEAT, removed=True), movie(UP, removed=True))
    outcomes = make_player(made).verify(gone)
    assert [o.result for o in outcomes] == ["synced", "synced"]
    # One emptyTrash for the section, between a listing before and one after.
    assert [(m, p) for m, p, _ in plex_mock.sent()] == [
        ("GET", "/library/sections"), ("GET", "/library/sections/1/all"),
        ("PUT", "/library/sections/1/emptyTrash"), ("GET", "/library/sections/1/all")]
    assert [m["ratingKey"] for m in plex_mock.listings[("1", 1)]] == ["12"]


def test_a_more_recent_removal_marked_missing_does_not_block_the_trash(plex_mock, made):
    # Up was removed in a later run than Heat: not due for its check yet, but already
    # marked missing by Plex. It is ours: Heat's check may empty the trash.
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True),
                                    movie_meta("11", UP, deleted=True),
                                    movie_meta("12", "/data/Movies/Kept/Kept.mkv")]
    player = make_player(made)
    player.removing = targets(movie(HEAT, removed=True), movie(UP, removed=True))
    [outcome] = player.verify(targets(movie(HEAT, removed=True)))
    assert outcome.result == "synced"
    assert plex_mock.puts() == ["/library/sections/1/emptyTrash"]
    # Without knowing of Up, the same check leaves the trash alone.
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True),
                                    movie_meta("11", UP, deleted=True)]
    [outcome] = make_player(made).verify(targets(movie(HEAT, removed=True)))
    assert outcome.result == "unverified" and "1 other missing item" in outcome.error
    assert plex_mock.puts() == ["/library/sections/1/emptyTrash"]


def test_a_trash_holding_an_unrelated_missing_item_is_never_emptied(plex_mock, made, caplog):
    # /data/Movies/Alien sits on a share that was offline during Plex's last scan: Plex
    # marked it missing. Emptying the trash would delete it, watch history and all.
    plex_mock.listings[("1", 1)] = [
        movie_meta("10", HEAT, deleted=True),
        movie_meta("20", "/data/Movies/Alien (1979)/Alien (1979).mkv", deleted=True),
        movie_meta("21", "/data/Movies/Brazil (1985)/Brazil (1985).mkv", deleted=True),
        movie_meta("22", "/data/Movies/Kept/Kept.mkv")]
    gone = targets(movie(HEAT, removed=True))
    with caplog.at_level(logging.WARNING, logger="metarr_sync"):
        [outcome] = make_player(made, max_trash_items=50).verify(gone)
    assert outcome.result == "unverified"
    assert outcome.error == (
        "Plex marked it missing, but library 'Movies' also has 2 other missing items (e.g. "
        "/data/Movies/Alien (1979)/Alien (1979).mkv, /data/Movies/Brazil (1985)/Brazil "
        "(1985).mkv): trash not emptied — check your mounts, then empty the trash in Plex")
    assert plex_mock.puts() == []
    assert "trash not emptied" in caplog.text
    assert len(plex_mock.listings[("1", 1)]) == 4  # nothing lost


def test_the_trash_waits_until_plex_has_marked_every_removal_missing(plex_mock, made):
    # Heat is marked; Plex's scan of Up has not run yet (or Plex still sees Up's file).
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True),
                                    movie_meta("11", UP)]
    gone = targets(movie(HEAT, removed=True), movie(UP, removed=True))
    heat, up = make_player(made).verify(gone)
    assert (heat.result, up.result) == ("unverified", "unverified")
    assert heat.error == (
        "Plex marked it missing, but still lists /data/Movies/Up (2009)/Up.mkv (also removed "
        "by metarr-sync) as present: the trash of library 'Movies' is not emptied until Plex "
        "has marked every removed item missing; the next run checks again")
    assert up.error.startswith("Plex still lists /data/Movies/Up (2009)/Up.mkv in library "
                               "'Movies' and has not marked it missing")
    assert plex_mock.puts() == []


def _missing_movies(count: int) -> tuple[list[dict[str, Any]], list[Target]]:
    metas = [movie_meta(str(100 + i), f"/data/Movies/M{i}/M{i}.mkv", deleted=True)
             for i in range(count)] + [movie_meta("99", "/data/Movies/Ok/Ok.mkv")]
    return metas, targets(*(movie(f"/data/Movies/M{i}/M{i}.mkv", removed=True)
                            for i in range(count)))


def test_the_trash_is_emptied_at_exactly_max_trash_items_of_ours(plex_mock, made):
    plex_mock.listings[("1", 1)], gone = _missing_movies(3)
    outcomes = make_player(made, max_trash_items=3).verify(gone)
    assert [o.result for o in outcomes] == ["synced"] * 3
    assert plex_mock.puts() == ["/library/sections/1/emptyTrash"]


def test_more_than_max_trash_items_even_of_ours_leave_the_trash_alone(plex_mock, made):
    plex_mock.listings[("1", 1)], gone = _missing_movies(4)
    outcomes = make_player(made, max_trash_items=3).verify(gone)
    assert [o.result for o in outcomes] == ["unverified"] * 4
    assert outcomes[0].error == (
        "Plex marked it missing, but emptying the trash of library 'Movies' would delete 4 "
        "items, more than max_trash_items = 3: trash not emptied — check them in Plex, then "
        "empty its trash yourself or raise max_trash_items")
    assert plex_mock.puts() == []


def test_without_clean_deleted_a_trash_is_never_emptied(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True),
                                    movie_meta("11", UP)]
    player = make_player(made, sync=SyncConfig(retry_attempts=0, clean_deleted=False))
    assert player.apply(targets(movie(HEAT, removed=True)))[0].result == "synced"
    assert plex_mock.scans() == [("1", "/data/Movies/Heat (1995)")]
    heat, up = player.verify(targets(movie(HEAT, removed=True), movie(UP, removed=True)))
    # Marked missing is all the user wants; an item Plex still has is not removed.
    assert heat.result == "synced"
    assert up.result == "unverified" and "has not marked it missing" in up.error
    assert plex_mock.puts() == []


def test_emptytrash_answered_but_the_item_still_listed_is_not_called_removed(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True)]
    plex_mock.trash_empties = False  # Plex empties it as a task, after answering
    [outcome] = make_player(made).verify(targets(movie(HEAT, removed=True)))
    assert plex_mock.puts() == ["/library/sections/1/emptyTrash"]
    assert outcome.result == "unverified"
    assert outcome.error == ("Plex still lists /data/Movies/Heat (1995)/Heat.mkv in library "
                             "'Movies' after its trash was emptied: Plex may still be emptying "
                             "it; the next run checks again")


def test_a_removed_item_is_matched_by_its_file_never_by_provider_id(plex_mock, made):
    # The 4K copy of the same movie is still there and missing (its share is offline):
    # it shares Heat's tmdb id, and it is not ours.
    plex_mock.listings[("1", 1)] = [
        movie_meta("10", HEAT, guids=("tmdb://949",), deleted=True),
        movie_meta("30", "/data/Movies/Heat 4K/Heat.mkv", guids=("tmdb://949",),
                   deleted=True)]
    [outcome] = make_player(made).verify(
        targets(movie(HEAT, ids={"tmdb": "949"}, removed=True)))
    assert outcome.result == "unverified"
    assert "also has 1 other missing item (e.g. /data/Movies/Heat 4K/Heat.mkv)" in \
        outcome.error
    assert plex_mock.puts() == []


def test_a_removed_show_goes_with_its_episodes_once_plex_marked_them_all_missing(
        plex_mock, made):
    show = "/data/TV/Severance"
    e1, e2 = (f"{show}/Season 01/Severance - S01E0{n}.mkv" for n in (1, 2))
    episodes = [{**movie_meta("301", e1, deleted=True), "type": "episode"},
                {**movie_meta("302", e2, deleted=True), "type": "episode"}]
    plex_mock.listings[("3", 2)] = [show_meta("300", show), show_meta("400", "/data/TV/Andor")]
    plex_mock.listings[("3", 4)] = list(episodes)
    plex_mock.leaves["300"] = list(episodes)
    plex_mock.leaves["400"] = [{**movie_meta("401", "/data/TV/Andor/S1/A.mkv"),
                                "type": "episode"}]
    removed = [Item("series", 7001, show, series_path=show, removed=True),
               Item("episode", 7002, e1, series_path=show, removed=True)]
    outcomes = make_player(made).verify(targets(*removed))
    # The show's second episode was not in this check, but it is the removed show's.
    assert [o.result for o in outcomes] == ["synced", "synced"]
    assert plex_mock.puts() == ["/library/sections/3/emptyTrash"]
    assert [m["ratingKey"] for m in plex_mock.listings[("3", 2)]] == ["400"]


def test_a_removed_show_with_an_episode_plex_still_plays_is_not_removed(plex_mock, made):
    show = "/data/TV/Severance"
    plex_mock.listings[("3", 2)] = [show_meta("300", show)]
    plex_mock.leaves["300"] = [
        {**movie_meta("301", f"{show}/Season 01/e1.mkv", deleted=True), "type": "episode"},
        {**movie_meta("302", f"{show}/Season 02/e1.mkv"), "type": "episode"}]
    plex_mock.listings[("3", 4)] = list(plex_mock.leaves["300"])
    [outcome] = make_player(made).verify(targets(
        Item("series", 7003, show, series_path=show, removed=True)))
    assert outcome.result == "unverified" and "has not marked it missing" in outcome.error
    assert plex_mock.puts() == []


def test_a_removed_show_plex_lists_without_episodes_empties_no_trash(plex_mock, made):
    plex_mock.listings[("3", 2)] = [show_meta("300", "/data/TV/Empty")]
    [outcome] = make_player(made).verify(targets(
        Item("series", 7005, "/data/TV/Empty", series_path="/data/TV/Empty", removed=True)))
    assert outcome.result == "unverified" and "has not marked it missing" in outcome.error
    assert plex_mock.puts() == []


def test_episodes_marked_in_allleaves_but_not_in_the_listing_empty_no_trash(plex_mock, made):
    show = "/data/TV/Severance"
    plex_mock.listings[("3", 2)] = [show_meta("300", show)]
    plex_mock.leaves["300"] = [{**movie_meta("301", f"{show}/S1/e1.mkv", deleted=True),
                                "type": "episode"}]
    plex_mock.listings[("3", 4)] = [{**movie_meta("301", f"{show}/S1/e1.mkv"),
                                     "type": "episode"}]
    [outcome] = make_player(made).verify(targets(
        Item("series", 7006, show, series_path=show, removed=True)))
    assert outcome.result == "unverified"
    assert outcome.error == ("Plex marked it missing, but lists nothing missing in library "
                             "'TV Shows' yet: trash not emptied; the next run checks again")
    assert plex_mock.puts() == []


def test_a_missing_episode_of_another_show_keeps_a_tv_trash_closed(plex_mock, made):
    e1 = "/data/TV/Severance/Season 01/e1.mkv"
    plex_mock.listings[("3", 2)] = [show_meta("300", "/data/TV/Severance"),
                                    show_meta("400", "/data/TV/Andor")]
    plex_mock.listings[("3", 4)] = [
        {**movie_meta("301", e1, deleted=True), "type": "episode"},
        {**movie_meta("401", "/data/TV/Andor/Season 01/a1.mkv", deleted=True),
         "type": "episode"}]
    [outcome] = make_player(made).verify(targets(
        Item("episode", 7004, e1, series_path="/data/TV/Severance", removed=True)))
    assert outcome.result == "unverified"
    assert "library 'TV Shows' also has 1 other missing item (e.g. /data/TV/Andor/Season " \
        "01/a1.mkv)" in outcome.error
    assert plex_mock.puts() == []


def test_each_section_sharing_the_folder_decides_its_own_trash(plex_mock, made):
    # HD and 4K libraries share /data/Movies. The 4K library also has an unrelated missing
    # item: its trash stays, the HD one is emptied, and the removal is not done yet.
    plex_mock.sections = [MOVIES, {**MOVIES_4K, "Location": [
        {"id": 2, "path": "/data/Movies4K"}, {"id": 6, "path": "/data/Movies"}]}]
    plex_mock.listings[("1", 1)] = [movie_meta("10", HEAT, deleted=True)]
    plex_mock.listings[("2", 1)] = [movie_meta("50", HEAT, deleted=True),
                                    movie_meta("51", "/data/Movies4K/Dune/Dune.mkv",
                                               deleted=True)]
    [outcome] = make_player(made).verify(targets(movie(HEAT, removed=True)))
    assert plex_mock.puts() == ["/library/sections/1/emptyTrash"]
    assert outcome.result == "unverified"
    assert outcome.error.startswith("Plex marked it missing, but library 'Movies 4K' also "
                                    "has 1 other missing item (e.g. /data/Movies4K/Dune/")


def test_a_removal_outside_every_library_cannot_be_checked(plex_mock, made):
    [outcome] = make_player(made).verify(targets(movie("/srv/x/Y (2000)/Y.mkv",
                                                       removed=True)))
    assert outcome.result == "unverified"
    assert outcome.error.startswith("cannot check the removal in Plex: /srv/x/Y (2000) is "
                                    "not in any Plex library")
    assert plex_mock.puts() == []


# --- dry run ----------------------------------------------------------------------------

def test_dry_run_sends_nothing_that_changes_plex_and_prints_it_all(plex_mock, made):
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv")]
    pauses: list[float] = []
    player = make_player(made, dry_run=True, analyze=True, scan_delay=2, sleep=pauses.append)
    player.probe()
    player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                         movie("/data/Movies/Up (2009)/Up.mkv"),
                         movie("/data/Movies/Gone (2000)/Gone.mkv", removed=True)))
    player.finish()
    player.scan_all()
    assert plex_mock.mutating() == []
    assert {p for _, p, _ in plex_mock.sent()} == {
        "/identity", "/library/sections", "/library/sections/1/all"}
    assert player.commands == [
        "GET /library/sections/1/refresh?path=/data/Movies/Gone (2000)",
        "GET /library/sections/1/refresh?path=/data/Movies/Up (2009)",
        "PUT /library/metadata/10/refresh",
        "PUT /library/metadata/10/analyze",
        "GET /library/sections/1/refresh",
        "GET /library/sections/2/refresh",
        "GET /library/sections/3/refresh",
    ]
    assert pauses == []  # nothing is sent, so nothing to wait for
    assert player.requests == len(plex_mock.rsps.calls) == 3


def test_scan_all_scans_every_video_library_without_a_path(plex_mock, made):
    make_player(made).scan_all()
    assert plex_mock.scans() == [("1", None), ("2", None), ("3", None)]


# --- verify -----------------------------------------------------------------------------

def test_verify_finds_delivered_items_in_a_fresh_listing(plex_mock, made):
    player = make_player(made)
    new = targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                  movie("/data/Movies/Up (2009)/Up.mkv", ids={"tmdb": "14160"}),
                  movie("/data/Movies/Lost (2001)/Lost.mkv"),
                  movie("/srv/nowhere/X (2000)/X.mkv"),
                  series("/data/TV/Severance"),
                  movie("/data/Movies/Gone (2000)/Gone.mkv", removed=True))
    player.apply(new)  # listings read before the scans: empty
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv"),
                                    movie_meta("11", "/data/Movies/Up/Up.mkv",
                                               guids=("tmdb://14160",))]
    plex_mock.listings[("3", 2)] = [show_meta("300", "/data/TV/Severance")]
    outcomes = player.verify(new)
    assert [o.result for o in outcomes] == ["synced", "synced", "unverified", "unverified",
                                            "synced", "synced"]
    assert outcomes[2].error.startswith(
        "Plex has no item at /data/Movies/Lost (2001)/Lost.mkv after the scan of "
        "/data/Movies/Lost (2001) in library 'Movies'")
    assert outcomes[3].error.startswith("Plex ignored the scan: /srv/nowhere/X (2000) is not "
                                        "in any Plex library")
    assert plex_mock.listing_calls().count(("1", "1")) == 2  # read again for verify


def test_the_base_class_contract_is_kept():
    assert issubclass(PlexPlayer, base.Player)
    assert PlexPlayer.verify_after > 0  # Plex scans in the background


# --- the whole flow, for the contract test ----------------------------------------------

def full_run_calls() -> list[Any]:
    """One run touching every call the adapter makes; returns responses' calls."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        fake = FakePlex(rsps)
        fake.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv")]
        player = make_player(analyze=True)
        try:
            player.probe()
            player.is_playing()
            player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                                 movie("/data/Movies/Fast & Furious #1 + 100% (2001)/F.mkv"),
                                 series("/data/TV/Severance"),
                                 movie("/data/Movies/Gone (2000)/Gone.mkv", removed=True)))
            player.finish()
            player.scan_all()
            # A later run: Plex marked the removed movie missing; a removed show is still
            # listed, its episode marked missing.
            fake.listings[("1", 1)].append(movie_meta("11", "/data/Movies/Gone (2000)/Gone.mkv",
                                                      deleted=True))
            fake.listings[("3", 2)] = [show_meta("300", "/data/TV/Old")]
            fake.leaves["300"] = [{**movie_meta("301", "/data/TV/Old/S1/e1.mkv", deleted=True),
                                   "type": "episode"}]
            fake.listings[("3", 4)] = list(fake.leaves["300"])
            player.verify(targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                                  movie("/data/Movies/Gone (2000)/Gone.mkv", removed=True),
                                  Item("series", 7100, "/data/TV/Old", series_path="/data/TV/Old",
                                       removed=True)))
        finally:
            player.close()
        return list(rsps.calls)


# --- the token never leaks --------------------------------------------------------------

def test_the_token_appears_in_no_url_log_line_error_or_command(plex_mock, made, caplog):
    caplog.set_level(logging.DEBUG, logger="metarr_sync")
    plex_mock.listings[("1", 1)] = [movie_meta("10", "/data/Movies/Heat (1995)/Heat.mkv",
                                               deleted=True)]
    errors: list[str] = []
    player = make_player(made, analyze=True, scan_delay=0)
    player.probe()
    player.is_playing()
    outcomes = player.apply(targets(movie("/data/Movies/Heat (1995)/Heat.mkv"),
                                    movie("/srv/x/Y (2000)/Y.mkv"),
                                    movie("/data/Movies/Gone (2000)/G.mkv", removed=True)))
    outcomes += player.finish()
    outcomes += player.verify(targets(movie("/data/Movies/New (2024)/N.mkv")))
    for status in (401, 403, 404, 500):
        plex_mock.fail[("GET", "/status/sessions")] = (status, f"<html>{status}</html>",
                                                       "text/html")
        with pytest.raises(base.PlayerError) as caught:
            player.is_playing()
        errors.append(caught.value.message)
    wrong = make_player(made, token=TOKEN + "-old")
    with pytest.raises(base.AuthFailed) as caught:
        wrong.sections()
    errors.append(caught.value.message)
    assert len(caplog.records) >= 10  # every request is logged at DEBUG
    everything = "\n".join([
        *(c.request.url for c in plex_mock.rsps.calls), caplog.text,
        *(r.getMessage() for r in caplog.records), *errors, *player.commands,
        *wrong.commands, *(o.error or "" for o in outcomes)])
    assert "/library/metadata/10/refresh" in everything  # the haystack is the real one
    assert TOKEN not in everything


class _StubPlex(BaseHTTPRequestHandler):
    """A tiny Plex over real HTTP on 127.0.0.1, for the installed CLI."""

    seen: list[tuple[str, str, str | None]] = []

    def _answer(self) -> None:
        type(self).seen.append((self.command, self.path, self.headers.get("X-Plex-Token")))
        path = urlsplit(self.path).path
        if self.headers.get("X-Plex-Token") != TOKEN and path != "/identity":
            body, status, kind = HTML_401.encode(), 401, "text/html"
        elif path == "/identity":
            body, status, kind = json.dumps({"MediaContainer": {"version": "1.41.3"}}).encode(), \
                200, "application/json"
        elif path == "/library/sections":
            body, status, kind = json.dumps({"MediaContainer": {"Directory": [
                MOVIES, TV]}}).encode(), 200, "application/json"
        elif path == "/status/sessions" or path.endswith("/all"):
            body, status, kind = json.dumps({"MediaContainer": {"size": 0}}).encode(), 200, \
                "application/json"
        else:
            body, status, kind = b"", 200, "text/plain"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_PUT = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub_plex() -> Iterator[tuple[str, list[tuple[str, str, str | None]]]]:
    _StubPlex.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _StubPlex)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _StubPlex.seen
    server.shutdown()
    server.server_close()


def plex_config(db: object, url: str, token: str) -> str:
    return configs.config_with(metarr=str(db), players=[configs.plex(
        "den", url=url, token=token,
        mappings=[("/data/media/movies", "/data/Movies"), ("/data/media/tv", "/data/TV")])])


def test_the_installed_cli_never_shows_or_stores_the_token(cli, metarr, stub_plex, tmp_path):
    url, seen = stub_plex
    metarr.add_movie("Fast & Furious", 2001)
    cli.write_config(plex_config(metarr.path, url, TOKEN))
    log_file = tmp_path / "sync.log"

    rehearsal = cli("-vv", "--log-file", str(log_file), "run", "--dry-run", "--json")
    assert rehearsal.returncode == 0, rehearsal.stderr
    report = json.loads(rehearsal.stdout)
    [den] = report["players"]
    assert den["commands"] == [
        "GET /library/sections/1/refresh?path=/data/Movies/Fast & Furious (2001)"]
    assert not [s for s in seen if s[0] != "GET" or "/refresh" in s[1]]  # dry run: no change

    real = cli("-vv", "--log-file", str(log_file), "run", "--json")
    assert real.returncode == 0, real.stderr
    scans = [p for m, p, _ in seen if "/refresh" in p]
    assert len(scans) == 1
    assert parse_qs(urlsplit(scans[0]).query) == {"path": ["/data/Movies/Fast & Furious (2001)"]}

    cli.write_config(plex_config(metarr.path, url, TOKEN + "x"))
    metarr.add_movie("Heat", 1995)
    refused = cli("-vv", "--log-file", str(log_file), "run", "--json")
    assert refused.returncode == 1
    assert json.loads(refused.stdout)["players"][0]["error_kind"] == "auth_failed"

    # The stub saw the token in the header of every request and never in a URL.
    assert seen and all(token in (TOKEN, TOKEN + "x") for _, _, token in seen)
    assert not [p for _, p, _ in seen if TOKEN in p or "token" in p.lower()]
    assert "GET /library/sections/1/refresh" in log_file.read_text()  # -vv logged requests
    state_bytes = b"".join(p.read_bytes() for p in cli.state_dir.rglob("*") if p.is_file())
    for text in (rehearsal.stdout, rehearsal.stderr, real.stdout, real.stderr,
                 refused.stdout, refused.stderr, log_file.read_text()):
        assert TOKEN not in text
    assert TOKEN.encode() not in state_bytes


# --- sample paths (mappings detect) ----------------------------------------------------------

def episode_meta(key: str, file: str) -> dict[str, Any]:
    return {"ratingKey": key, "type": "episode", "title": f"episode {key}",
            "Media": [{"id": int(key), "Part": [{"id": int(key), "file": file}]}]}


def test_sample_paths_reads_the_first_page_of_each_video_section(plex_mock, made):
    plex_mock.listings[("1", 1)] = [
        movie_meta("11", "/data/Movies/Heat (1995)/Heat (1995).mkv"),
        movie_meta("12", "/data/Movies/Alien (1979)/Alien (1979).mkv"),
        movie_meta("13", "/data/Movies/Dune (2021)/Dune (2021).mkv")]
    plex_mock.listings[("3", 4)] = [
        episode_meta("31", "/data/TV/Severance/Season 01/Severance S01E01.mkv")]
    paths = make_player(made).sample_paths(limit=2)
    assert paths == ["/data/Movies/Heat (1995)/Heat (1995).mkv",
                     "/data/Movies/Alien (1979)/Alien (1979).mkv",
                     "/data/TV/Severance/Season 01/Severance S01E01.mkv"]
    lists = [(p, q) for m, p, q in plex_mock.sent() if p.endswith("/all")]
    # The music section is left out; movies are type 1, a show section's episodes type 4.
    assert lists == [(f"/library/sections/{key}/all",
                      {"type": [kind], "X-Plex-Container-Start": ["0"],
                       "X-Plex-Container-Size": ["2"]})
                     for key, kind in (("1", "1"), ("2", "1"), ("3", "4"))]
    assert plex_mock.mutating() == []
