"""The Jellyfin and Emby adapters against `responses`-mocked servers.

Every request a Jellyfin test sends is also checked against both Jellyfin OpenAPI specs
when the test ends (the `jf` fixture): a test that makes the adapter send an undocumented
endpoint, parameter or enum value fails even if the mock happily answered it.
"""

from __future__ import annotations

import json
import re
import socket
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from support.contract import shared_spec, validate_calls

from metarr_sync import __version__
from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.metarr import Item
from metarr_sync.plan import target_for
from metarr_sync.players import adapter_class
from metarr_sync.players.base import (
    AuthFailed,
    PlayerError,
    ProtocolError,
    Rejected,
)
from metarr_sync.players.jellyfin import EmbyPlayer, JellyfinPlayer, device_id

BASE = "http://127.0.0.1:8096"
TOKEN = "5ecret0token0value0000000000abcd"
SPECS = ("jellyfin-openapi-10.11.11.json", "jellyfin-openapi-12.0.0.json")
MOVIES_ID = "f137a2dd21bbc1b99aa5c0f6bf02a805"
TV_ID = "a656b907eb3a73532e40e44b968d0225"
MAPPINGS = [Mapping("/data/movies", "/media/movies"), Mapping("/data/tv", "/media/tv")]
LIBRARIES = [
    {"Name": "Movies", "Locations": ["/media/movies", "/media/movies-extra"],
     "CollectionType": "movies", "ItemId": MOVIES_ID},
    {"Name": "Shows", "Locations": ["/media/tv"], "CollectionType": "tvshows", "ItemId": TV_ID},
]
HTML_401 = "<!DOCTYPE html><html><body><h1>401 Unauthorized</h1></body></html>"


def new_id() -> str:
    return uuid.uuid4().hex


# --- Metarr items and their targets ------------------------------------------------------

def movie(n: int, title: str, year: int, *, removed: bool = False, **ids: str) -> Item:
    name = f"{title} ({year})"
    return Item("movie", n, f"/data/movies/{name}/{name}.mkv", title=title, ids=ids,
                removed=removed)


def show(n: int, title: str, **ids: str) -> Item:
    return Item("series", n, f"/data/tv/{title}", title=title, series_path=f"/data/tv/{title}",
                ids=ids)


def episode(n: int, title: str, season: int, number: int, **ids: str) -> Item:
    return Item("episode", n, f"/data/tv/{title}/Season {season:02d}/{title} "
                f"S{season:02d}E{number:02d}.mkv", title=title,
                series_path=f"/data/tv/{title}", season=season, episode=number, ids=ids)


def targets(*items: Item, mappings: list[Mapping] = MAPPINGS) -> list:
    return [target_for(i, mappings) for i in items]


def jf_item(kind: str, path: str, **ids: str) -> dict[str, Any]:
    return {"Id": new_id(), "Name": path.rsplit("/", 1)[-1], "Type": kind, "Path": path,
            "ProviderIds": {k.capitalize(): v for k, v in ids.items()}}


# --- a mocked server ---------------------------------------------------------------------

class Server:
    """A mocked Jellyfin: register what it knows, then read back what it was sent."""

    def __init__(self, mock: responses.RequestsMock, base: str = BASE):
        self.mock = mock
        self.base = base
        self.library_items: dict[str, list[dict[str, Any]]] = {MOVIES_ID: [], TV_ID: []}

    def url(self, path: str) -> str:
        return self.base + path

    def standard(self, *, product: str = "Jellyfin Server", version: str = "10.11.11",
                 libraries: list[dict[str, Any]] | None = None) -> Server:
        self.mock.get(self.url("/System/Info/Public"), json={
            "ProductName": product, "Version": version, "ServerName": "nas", "Id": new_id(),
            "LocalAddress": self.base, "StartupWizardCompleted": True})
        self.mock.get(self.url("/System/Info"), json={"Version": version, "Id": new_id()})
        self.mock.get(self.url("/Library/VirtualFolders"),
                      json=LIBRARIES if libraries is None else libraries)
        self.mock.add_callback(responses.GET, self.url("/Items"), callback=self._items)
        self.mock.add(responses.POST, re.compile(re.escape(self.base) + r"/Items/\w+/Refresh"),
                      status=204)
        self.mock.post(self.url("/Library/Media/Updated"), status=204)
        return self

    def has(self, library: str, *items: dict[str, Any]) -> None:
        self.library_items[library].extend(items)

    def _items(self, request: requests.PreparedRequest) -> tuple[int, dict, str]:
        query = parse_qs(urlsplit(request.url).query)
        found = self.library_items.get(query["parentId"][0], [])
        kinds = set(query.get("includeItemTypes", []))
        found = [i for i in found if not kinds or i["Type"] in kinds]
        start = int(query.get("startIndex", ["0"])[0])
        limit = int(query.get("limit", ["100000"])[0])
        items = found[start:start + limit]
        # Without the count Jellyfin sends the page's own size (QueryResult): never the end.
        counted = query.get("enableTotalRecordCount", ["true"])[0] != "false"
        page = {"Items": items, "TotalRecordCount": len(found) if counted else len(items),
                "StartIndex": start}
        return 200, {"Content-Type": "application/json"}, json.dumps(page)

    def sent(self, method: str, path: str | None = None) -> list[requests.PreparedRequest]:
        found = []
        for call in self.mock.calls:
            request = call.request
            if request.method != method:
                continue
            if path is None or re.fullmatch(path, urlsplit(request.url).path[
                    len(urlsplit(self.base).path):]):
                found.append(request)
        return found

    def updates(self) -> list[list[dict[str, str]]]:
        return [json.loads(r.body)["Updates"] for r in self.sent("POST", "/Library/Media/Updated")]

    def refreshed(self) -> list[tuple[str, dict[str, list[str]]]]:
        return [(urlsplit(r.url).path.split("/")[-2], parse_qs(urlsplit(r.url).query))
                for r in self.sent("POST", r"/Items/\w+/Refresh")]


def sync_config(**kw: Any) -> SyncConfig:
    return SyncConfig(**{"timeout": 2.0, "retry_attempts": 0, **kw})


def make_player(cls: type[JellyfinPlayer] = JellyfinPlayer, *, url: str = BASE,
                dry_run: bool = False, sync: SyncConfig | None = None, **kw: Any
                ) -> JellyfinPlayer:
    config = PlayerConfig(name=kw.pop("name", "living-room"), type=cls.type_name, url=url,
                          mappings=kw.pop("mappings", MAPPINGS), **kw)
    if "token_value" not in kw:
        config.token_value = TOKEN
    return cls(config, sync or sync_config(), dry_run=dry_run)


@pytest.fixture
def jf():
    """A mocked Jellyfin; every request sent to it is checked against both specs."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server = Server(mock)
        yield server
        calls = [c for c in mock.calls if c.request.url.startswith(BASE)]
    for name in SPECS:
        validate_calls(shared_spec(name), calls, base_path=urlsplit(server.base).path)


@pytest.fixture
def emby():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield Server(mock)


# --- authentication and identity ---------------------------------------------------------

def test_every_request_carries_the_mediabrowser_authorization(jf: Server) -> None:
    jf.standard()
    player = make_player()
    player.probe()
    assert len(jf.mock.calls) == 3
    for call in jf.mock.calls:
        header = call.request.headers["Authorization"]
        assert header == (f'MediaBrowser Client="metarr-sync", '
                          f'Device="{socket.gethostname()}", '
                          f'DeviceId="{device_id("living-room")}", Version="{__version__}", '
                          f'Token="{TOKEN}"')
        # the legacy forms Jellyfin 12 rejects are never used, and the key is not in URLs
        assert "X-Emby-Token" not in call.request.headers
        assert TOKEN not in call.request.url and "api_key" not in call.request.url.lower()


def test_device_id_is_stable_per_player_and_not_the_token() -> None:
    first, again, other = device_id("living-room"), device_id("living-room"), device_id("den")
    assert first == again and first != other
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert make_player().device == make_player().device == first


def test_header_values_are_url_encoded(jf: Server) -> None:
    # Jellyfin URL-decodes each value: a quote or comma in a token must not break parsing
    jf.standard()
    player = make_player(token_value='a"b,c d')
    player.probe()
    assert 'Token="a%22b%2Cc%20d"' in jf.mock.calls[0].request.headers["Authorization"]


# --- probe -------------------------------------------------------------------------------

def test_probe_reports_version_steps_and_every_library_location(jf: Server) -> None:
    jf.standard(version="10.11.11")
    result = make_player().probe()
    assert result.version == "10.11.11"
    assert [s.name for s in result.steps] == ["reachable", "credentials", "libraries"]
    assert all(s.ok for s in result.steps)
    assert result.steps[0].detail == "Jellyfin Server 10.11.11 (nas)"
    assert result.roots == ["/media/movies", "/media/movies-extra", "/media/tv"]
    assert "'Movies' (/media/movies, /media/movies-extra)" in result.steps[2].detail
    assert [urlsplit(c.request.url).path for c in jf.mock.calls] == [
        "/System/Info/Public", "/System/Info", "/Library/VirtualFolders"]


def test_probe_401_with_html_body_is_auth_failed_with_advice(jf: Server) -> None:
    jf.mock.get(jf.url("/System/Info/Public"), json={"ProductName": "Jellyfin Server",
                                                     "Version": "12.0.0"})
    jf.mock.get(jf.url("/System/Info"), status=401, body=HTML_401,
                content_type="text/html")
    with pytest.raises(AuthFailed) as caught:
        make_player().probe()
    assert "rejected the API key (HTTP 401)" in caught.value.message
    assert "API Keys" in caught.value.message
    assert TOKEN not in caught.value.message
    assert not caught.value.transient


def test_probe_403_on_libraries_says_token_lacks_admin_rights(jf: Server) -> None:
    jf.mock.get(jf.url("/System/Info/Public"), json={"Version": "10.11.11"})
    jf.mock.get(jf.url("/System/Info"), json={})
    jf.mock.get(jf.url("/Library/VirtualFolders"), status=403)
    with pytest.raises(Rejected, match="token lacks admin rights"):
        make_player().probe()


def test_probe_404_means_not_a_jellyfin_at_that_url(jf: Server) -> None:
    jf.mock.get(jf.url("/System/Info/Public"), status=404, body="Not Found")
    with pytest.raises(Rejected, match=r"has no /System/Info/Public \(HTTP 404\)"):
        make_player().probe()


def test_probe_with_a_base_path_keeps_it(jf: Server) -> None:
    base = BASE + "/jellyfin"
    jf.base = base
    jf.standard()
    make_player(url=base + "/").probe()
    assert [c.request.url for c in jf.mock.calls][0] == base + "/System/Info/Public"


def test_probe_of_an_emby_server_as_jellyfin_names_the_fix(jf: Server) -> None:
    jf.mock.get(jf.url("/System/Info/Public"), json={"ProductName": "Emby Server",
                                                     "Version": "4.8.10.0"})
    with pytest.raises(Rejected, match='is Emby Server: set type = "emby"'):
        make_player().probe()


def test_probe_without_a_token_is_auth_failed(jf: Server) -> None:
    jf.standard()
    player = make_player(token_value=None)
    with pytest.raises(AuthFailed, match="no API key configured"):
        player.probe()
    assert "Authorization" not in jf.mock.calls[0].request.headers


def test_registry_builds_both_adapters() -> None:
    assert adapter_class("jellyfin") is JellyfinPlayer
    assert adapter_class("emby") is EmbyPlayer


# --- changed items Jellyfin already has: refresh ----------------------------------------

def test_changed_movie_is_refreshed_with_explicit_default_modes(jf: Server) -> None:
    jf.standard()
    heat = jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv", Tmdb="949")
    jf.has(MOVIES_ID, heat, jf_item("Movie", "/media/movies/Alien (1979)/Alien (1979).mkv"))
    player = make_player()
    player.probe()
    outcomes = player.apply(targets(movie(1, "Heat", 1995, tmdb="949")))
    assert [(o.item_key, o.result, o.error) for o in outcomes] == [("movie:1", "synced", None)]
    assert jf.refreshed() == [(heat["Id"], {
        "metadataRefreshMode": ["Default"], "imageRefreshMode": ["Default"],
        "replaceAllMetadata": ["false"], "replaceAllImages": ["false"]})]
    refresh = jf.sent("POST", r"/Items/\w+/Refresh")[0]
    assert refresh.body is None  # everything is query-string; a body would be ignored
    assert jf.updates() == []  # nothing new: no media report


def test_refresh_mode_full_forces_full_refresh(jf: Server) -> None:
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"))
    player = make_player(refresh_mode="full")
    player.apply(targets(movie(1, "Heat", 1995)))
    (_, params), = jf.refreshed()
    assert params["metadataRefreshMode"] == ["FullRefresh"]
    assert params["imageRefreshMode"] == ["FullRefresh"]
    assert params["replaceAllMetadata"] == ["false"]


def test_library_items_are_listed_with_the_documented_query(jf: Server) -> None:
    jf.standard()
    player = make_player()
    player.apply(targets(movie(1, "Heat", 1995), show(2, "Severance")))
    lists = {parse_qs(urlsplit(r.url).query)["parentId"][0]: parse_qs(urlsplit(r.url).query)
             for r in jf.sent("GET", "/Items")}
    assert lists[MOVIES_ID] == {
        "parentId": [MOVIES_ID], "recursive": ["true"], "includeItemTypes": ["Movie"],
        "fields": ["Path", "ProviderIds"], "enableImages": ["false"],
        "enableUserData": ["false"],
        # an explicit order for paging (no sort option is unique: these leave fewest ties)
        "sortBy": ["SortName", "Name", "ProductionYear", "DateCreated"],
        "sortOrder": ["Ascending"],
        "enableTotalRecordCount": ["false"],  # no count of the whole library per page
        "startIndex": ["0"], "limit": ["500"]}
    # a TV library's episodes are never listed whole: only shows, then one show's episodes
    assert lists[TV_ID]["includeItemTypes"] == ["Series"]


def test_an_episode_is_looked_for_among_its_own_shows_episodes(jf: Server) -> None:
    jf.standard()
    severance = jf_item("Series", "/media/tv/Severance")
    known = jf_item("Episode", "/media/tv/Severance/Season 01/Severance S01E01.mkv")
    jf.has(TV_ID, severance, jf_item("Series", "/media/tv/Andor"))
    jf.library_items[severance["Id"]] = [known]
    outcomes = make_player().apply(targets(episode(10, "Severance", 1, 1),
                                           episode(11, "Severance", 1, 2)))
    assert [o.result for o in outcomes] == ["synced", "synced"]
    listings = [parse_qs(urlsplit(r.url).query) for r in jf.sent("GET", "/Items")]
    assert [(q["parentId"][0], q["includeItemTypes"]) for q in listings] == [
        (TV_ID, ["Series"]), (severance["Id"], ["Episode"])]  # the show's, once
    assert [item_id for item_id, _ in jf.refreshed()] == [known["Id"]]
    assert jf.updates() == [[{"Path": "/media/tv/Severance/Season 01/Severance S01E02.mkv",
                              "UpdateType": "Created"}]]


def test_only_the_last_few_shows_episode_listings_are_kept(jf: Server) -> None:
    # Episodes come show by show: a thousand shows' listings kept to the end of the run
    # would only cost memory. A show asked about again after SHOWS_KEPT others is listed
    # again (rare: the run's order is by path).
    from metarr_sync.players.jellyfin import SHOWS_KEPT

    jf.standard()
    titles = [f"Show {n:02d}" for n in range(SHOWS_KEPT + 2)]
    for title in titles:
        series = jf_item("Series", f"/media/tv/{title}")
        jf.has(TV_ID, series)
        jf.library_items[series["Id"]] = [
            jf_item("Episode", f"/media/tv/{title}/Season 01/{title} S01E01.mkv")]
    player = make_player()
    batch = [episode(n, title, 1, 1) for n, title in enumerate(titles)]
    assert [o.result for o in player.apply(targets(*batch))] == ["synced"] * len(titles)
    assert len(player._indexes) == 1 + SHOWS_KEPT  # the TV library and the last shows
    player.apply(targets(batch[0]))
    listings = [parse_qs(urlsplit(r.url).query)["parentId"][0]
                for r in jf.sent("GET", "/Items")]
    assert len(listings) == 1 + len(titles) + 1  # the first show listed a second time
    assert len(jf.refreshed()) == len(titles) + 1


def test_paging_across_several_pages_finds_an_item_on_the_last(jf: Server) -> None:
    jf.standard()
    filler = [jf_item("Movie", f"/media/movies/Film {n} (2000)/Film {n} (2000).mkv")
              for n in range(1203)]
    last = jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv")
    jf.has(MOVIES_ID, *filler, last)
    player = make_player()
    outcomes = player.apply(targets(movie(1, "Heat", 1995)))
    starts = [parse_qs(urlsplit(r.url).query)["startIndex"][0] for r in jf.sent("GET", "/Items")]
    # each page repeats the last LISTING_OVERLAP (20) of the one before; a short page ends
    assert starts == ["0", "480", "960"]
    assert outcomes[0].result == "synced"
    assert [item_id for item_id, _ in jf.refreshed()] == [last["Id"]]


def test_libraries_are_listed_once_per_run_across_batches(jf: Server) -> None:
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"),
           jf_item("Movie", "/media/movies/Alien (1979)/Alien (1979).mkv"))
    player = make_player()
    player.probe()
    player.apply(targets(movie(1, "Heat", 1995)))
    player.apply(targets(movie(2, "Alien", 1979)))
    assert len(jf.sent("GET", "/Items")) == 1
    assert len(jf.sent("GET", "/Library/VirtualFolders")) == 1
    assert len(jf.refreshed()) == 2


def test_provider_id_match_when_paths_differ(jf: Server) -> None:
    # Jellyfin knows the film under its old file name (upgraded since): refresh it by
    # its tmdb id, and report the new file so Jellyfin picks that up too.
    jf.standard()
    old = jf_item("Movie", "/media/movies/Heat (1995)/Heat.1995.720p.mkv", Tmdb="949",
                  Imdb="tt0113277")
    other = jf_item("Movie", "/media/movies/Alien (1979)/Alien (1979).mkv", Tmdb="348")
    jf.has(MOVIES_ID, old, other)
    outcomes = make_player().apply(targets(movie(1, "Heat", 1995, imdb="tt0113277")))
    assert outcomes[0].result == "synced"
    assert [item_id for item_id, _ in jf.refreshed()] == [old["Id"]]
    assert jf.updates() == [[{"Path": "/media/movies/Heat (1995)/Heat (1995).mkv",
                              "UpdateType": "Modified"}]]


def test_provider_ids_do_not_cross_item_types(jf: Server) -> None:
    # tvdb 123 is a show; an episode with the same number must not refresh the show
    jf.standard()
    jf.has(TV_ID, jf_item("Series", "/media/tv/Other Show", Tvdb="123"))
    make_player().apply(targets(episode(5, "Severance", 1, 1, tvdb="123")))
    assert jf.refreshed() == []


def test_vanished_item_falls_back_to_a_media_report(jf: Server) -> None:
    jf.mock.post(re.compile(re.escape(BASE) + r"/Items/\w+/Refresh"), status=404)
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"))
    outcomes = make_player().apply(targets(movie(1, "Heat", 1995)))
    assert outcomes[0].result == "synced"
    assert jf.updates() == [[{"Path": "/media/movies/Heat (1995)/Heat (1995).mkv",
                              "UpdateType": "Modified"}]]


def test_refresh_403_stops_the_player_with_the_rights_message(jf: Server) -> None:
    jf.mock.post(re.compile(re.escape(BASE) + r"/Items/\w+/Refresh"), status=403)
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"))
    with pytest.raises(Rejected, match="token lacks admin rights"):
        make_player().apply(targets(movie(1, "Heat", 1995)))


# --- new and removed items: one media report per batch ----------------------------------

def test_one_media_report_per_batch_with_files_and_new_show_folders(jf: Server) -> None:
    jf.standard()
    gone = jf_item("Movie", "/media/movies/Old (1990)/Old (1990).mkv")
    known_show = jf_item("Series", "/media/tv/Severance")
    jf.has(MOVIES_ID, gone)
    jf.has(TV_ID, known_show)
    batch = targets(
        movie(1, "Heat", 1995),                      # new movie: its file
        movie(2, "Alien", 1979),                     # new movie: its file
        movie(3, "Old", 1990, removed=True),         # removed movie Jellyfin has
        episode(10, "Severance", 2, 1),              # new episode of a known show
        episode(11, "Andor", 1, 1),                  # new show: the show folder...
        episode(12, "Andor", 1, 2),                  # ...once for both episodes
        show(20, "Andor"),                           # the show itself: same folder
    )
    outcomes = make_player().apply(batch)
    assert [o.result for o in outcomes] == ["synced"] * 7
    # The episode of a known show lands on that show: sent as it is. The three movie
    # paths each land on /media/movies (movie folders are no items), which Jellyfin then
    # validates whole: that folder goes once instead of three validations. The new show
    # lands on /media/tv: alone there, it goes as it is.
    assert jf.updates() == [[
        {"Path": "/media/tv/Severance/Season 02/Severance S02E01.mkv",
         "UpdateType": "Created"},
        {"Path": "/media/movies", "UpdateType": "Modified"},
        {"Path": "/media/tv/Andor", "UpdateType": "Created"},
    ]]
    # a movie folder would land on the library folder just the same: never sent
    sent = [u["Path"] for u in jf.updates()[0]]
    assert "/media/movies/Heat (1995)" not in sent
    assert jf.sent("POST", "/Library/Media/Updated")[0].headers["Content-Type"] == \
        "application/json"


def test_episode_file_inside_a_new_show_folder_is_not_reported_twice(jf: Server) -> None:
    jf.standard()
    make_player().apply(targets(show(20, "Andor"), episode(11, "Andor", 1, 1)))
    assert jf.updates() == [[{"Path": "/media/tv/Andor", "UpdateType": "Created"}]]


def test_media_updates_collapse_into_reported_folders_but_keep_removals() -> None:
    from metarr_sync.players.jellyfin import _collapse

    updates = {
        "/media/tv/Andor": ("Created", ["series:20"]),
        "/media/tv/Andor/Season 01/Andor S01E01.mkv": ("Created", ["episode:11"]),
        "/media/tv/Andor/Season 01/old.mkv": ("Deleted", ["episode:9"]),
        "/media/tv/Andor-Extras/clip.mkv": ("Modified", ["episode:12"]),
        "/media/movies/Heat (1995)/Heat (1995).mkv": ("Modified", ["movie:1"]),
    }
    assert _collapse(updates) == [
        ("/media/tv/Andor", "Created"),
        ("/media/tv/Andor/Season 01/old.mkv", "Deleted"),
        ("/media/tv/Andor-Extras/clip.mkv", "Modified"),  # a sibling, not inside Andor
        ("/media/movies/Heat (1995)/Heat (1995).mkv", "Modified")]


def test_removed_item_jellyfin_never_had_costs_no_scan(jf: Server) -> None:
    jf.standard()
    outcomes = make_player().apply(targets(movie(3, "Old", 1990, removed=True)))
    assert outcomes[0].result == "synced"
    assert jf.updates() == []


def test_path_outside_every_library_fails_that_item_and_sends_nothing(jf: Server) -> None:
    jf.standard()
    mappings = [*MAPPINGS, Mapping("/data/docs", "/media/documentaries")]
    item = Item("movie", 7, "/data/docs/Koyaanisqatsi (1982)/Koyaanisqatsi (1982).mkv")
    batch = targets(item, movie(1, "Heat", 1995), mappings=mappings)
    outcomes = make_player(mappings=mappings).apply(batch)
    assert outcomes[0].result == "failed"
    assert outcomes[0].error == (
        "not in any Jellyfin library: /media/documentaries/Koyaanisqatsi (1982)/"
        "Koyaanisqatsi (1982).mkv (libraries: 'Movies' (/media/movies, /media/movies-extra); "
        "'Shows' (/media/tv))")
    assert outcomes[1].result == "synced"
    assert [u["Path"] for u in jf.updates()[0]] == [
        "/media/movies/Heat (1995)/Heat (1995).mkv"]


def test_library_match_is_by_whole_path_components(jf: Server) -> None:
    # /media/movies4k is not inside /media/movies
    jf.standard()
    mappings = [Mapping("/data", "/media")]
    item = Item("movie", 8, "/data/movies4k/Dune (2021)/Dune (2021).mkv")
    outcomes = make_player(mappings=mappings).apply(targets(item, mappings=mappings))
    assert outcomes[0].result == "failed" and "not in any Jellyfin library" in outcomes[0].error
    assert jf.sent("POST") == []


def test_media_report_failure_keeps_the_batch_pending(jf: Server) -> None:
    jf.mock.post(jf.url("/Library/Media/Updated"), status=500)
    jf.standard()
    with pytest.raises(PlayerError, match="HTTP 500"):
        make_player().apply(targets(movie(1, "Heat", 1995)))


def test_dry_run_sends_no_post_but_records_every_command(jf: Server) -> None:
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Alien (1979)/Alien (1979).mkv"))
    player = make_player(dry_run=True)
    player.probe()
    outcomes = player.apply(targets(movie(1, "Heat", 1995), movie(2, "Alien", 1979)))
    assert [o.result for o in outcomes] == ["synced", "synced"]
    assert jf.sent("POST") == []
    assert len(player.commands) == 2
    assert re.fullmatch(r"POST /Items/\w+/Refresh\?metadataRefreshMode=Default&"
                        r"imageRefreshMode=Default&replaceAllMetadata=false&"
                        r"replaceAllImages=false", player.commands[0])
    assert player.commands[1] == ('POST /Library/Media/Updated {"Updates": [{"Path": '
                                  '"/media/movies/Heat (1995)/Heat (1995).mkv", '
                                  '"UpdateType": "Created"}]}')
    assert player.requests == len(jf.mock.calls) == 4  # reads only: probe and one listing
    assert all(TOKEN not in c for c in player.commands)


# --- sessions ----------------------------------------------------------------------------

def test_is_playing_only_when_a_session_plays_something(jf: Server) -> None:
    jf.mock.get(jf.url("/Sessions"), json=[
        {"Id": "s1", "NowPlayingItem": None, "DeviceId": "tv"},
        {"Id": "s2", "DeviceId": "phone"}])
    jf.mock.get(jf.url("/Sessions"), json=[
        {"Id": "s1", "NowPlayingItem": None},
        {"Id": "s2", "NowPlayingItem": {"Name": "Heat", "Type": "Movie"},
         "PlayState": {"IsPaused": True}}])
    player = make_player()
    assert player.is_playing() is False
    assert player.is_playing() is True  # paused still counts: someone is watching


def test_notify_messages_active_sessions_but_not_ours(jf: Server) -> None:
    player = make_player()
    jf.mock.get(jf.url("/Sessions"), json=[
        {"Id": "tv", "DeviceId": "tv-1", "SupportsRemoteControl": True},
        {"Id": "cli", "DeviceId": player.device, "SupportsRemoteControl": True},
        {"Id": "dlna", "DeviceId": "x", "SupportsRemoteControl": False},
        {"Id": "gone", "DeviceId": "y"}])
    jf.mock.post(jf.url("/Sessions/gone/Message"), status=404)
    jf.mock.post(jf.url("/Sessions/tv/Message"), status=204)
    player.notify("Metarr", "3 item(s) updated")
    listing = jf.sent("GET", "/Sessions")[0]
    assert parse_qs(urlsplit(listing.url).query) == {"activeWithinSeconds": ["960"]}
    sent = jf.sent("POST", r"/Sessions/\w+/Message")
    assert [urlsplit(r.url).path for r in sent] == ["/Sessions/tv/Message",
                                                    "/Sessions/gone/Message"]
    assert json.loads(sent[0].body) == {"Header": "Metarr", "Text": "3 item(s) updated",
                                        "TimeoutMs": 5000}


# --- verify ------------------------------------------------------------------------------

def test_verify_finds_delivered_items_and_explains_missing_ones(jf: Server) -> None:
    jf.standard()
    player = make_player()
    player.probe()
    player.apply(targets(movie(1, "Heat", 1995)))  # lists the library: nothing yet
    # the server scanned meanwhile: Heat landed, Alien did not, Old is still there
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"),
           jf_item("Movie", "/media/movies/Old (1990)/Old (1990).mkv"),
           jf_item("Movie", "/media/movies/Brazil/old-name.mkv", Tmdb="68"))
    mappings = [*MAPPINGS, Mapping("/data/docs", "/media/documentaries")]
    outside = Item("movie", 7, "/data/docs/Baraka (1992)/Baraka (1992).mkv")
    outcomes = player.verify(targets(
        movie(1, "Heat", 1995), movie(2, "Alien", 1979), movie(3, "Old", 1990, removed=True),
        movie(4, "Gone", 2001, removed=True), movie(5, "Brazil", 1985, tmdb="68"), outside,
        mappings=mappings))
    results = {o.item_key: (o.result, o.error) for o in outcomes}
    assert results["movie:1"] == ("synced", None)
    assert results["movie:2"] == ("unverified", (
        "Jellyfin has no movie at /media/movies/Alien (1979)/Alien (1979).mkv — is the file "
        "really there as Jellyfin sees it, inside library 'Movies' (/media/movies, "
        "/media/movies-extra), and named so Jellyfin recognises it? (or its scan is still "
        "running)"))
    assert results["movie:3"][0] == "unverified"
    assert "Jellyfin still lists /media/movies/Old (1990)/Old (1990).mkv" in results["movie:3"][1]
    assert results["movie:4"] == ("synced", None)
    assert results["movie:5"] == ("synced", None)  # by its tmdb id
    assert results["movie:7"][0] == "unverified"
    assert results["movie:7"][1].startswith("not in any Jellyfin library: /media/documentaries")
    assert len(jf.sent("GET", "/Items")) == 2  # verify looked again, once
    assert jf.sent("POST", r"/Items/\w+/Refresh") == []


def test_verify_of_a_new_show_and_episode(jf: Server) -> None:
    jf.standard()
    jf.has(TV_ID, jf_item("Series", "/media/tv/Andor"))
    outcomes = make_player().verify(targets(show(20, "Andor"), episode(11, "Andor", 1, 1)))
    assert outcomes[0].result == "synced"
    assert outcomes[1].result == "unverified"
    assert outcomes[1].error.startswith("Jellyfin has no episode at /media/tv/Andor/Season 01/")
    assert "'Shows' (/media/tv)" in outcomes[1].error


def test_jellyfin_is_verified_on_a_later_run() -> None:
    assert JellyfinPlayer.verify_after >= 60  # the server debounces reports for ~60 s


# --- upgrades and renames ---------------------------------------------------------------

def upgraded_heat(root, *, old_on_disk: bool = False) -> tuple[Item, list[Mapping]]:
    """Heat, whose 720p file Radarr replaced with a 1080p one: Metarr's media on this
    machine's disk (under `root`), seen by Jellyfin as /media/movies."""
    folder = root / "movies" / "Heat (1995)"
    folder.mkdir(parents=True)
    (folder / "Heat - 1080p.mkv").touch()
    if old_on_disk:
        (folder / "Heat - 720p.mkv").touch()
    item = Item("movie", 1, str(folder / "Heat - 1080p.mkv"), title="Heat",
                ids={"tmdb": "949"}, previous_paths=(str(folder / "Heat - 720p.mkv"),))
    return item, [Mapping(str(root / "movies"), "/media/movies")]


def test_upgrade_reports_the_new_file_and_the_gone_old_one_and_refreshes_nothing(
        jf: Server, tmp_path) -> None:
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat - 720p.mkv",
                              Tmdb="949"))
    item, mappings = upgraded_heat(tmp_path)
    outcomes = make_player(mappings=mappings).apply(targets(item, mappings=mappings))
    assert [o.result for o in outcomes] == ["synced"]
    # The old item, found by its tmdb id, is about to go: no refresh for it. One report
    # with both files: Jellyfin validates the folder above them, the old item goes and
    # the new file becomes the movie's one entry.
    assert jf.refreshed() == []
    assert jf.updates() == [[
        {"Path": "/media/movies/Heat (1995)/Heat - 1080p.mkv", "UpdateType": "Created"},
        {"Path": "/media/movies/Heat (1995)/Heat - 720p.mkv", "UpdateType": "Deleted"}]]


def test_upgrade_whose_old_file_is_kept_reports_only_the_new_file(jf: Server,
                                                                   tmp_path) -> None:
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat - 720p.mkv",
                              Tmdb="949"))
    item, mappings = upgraded_heat(tmp_path, old_on_disk=True)
    make_player(mappings=mappings).apply(targets(item, mappings=mappings))
    assert jf.updates() == [[
        {"Path": "/media/movies/Heat (1995)/Heat - 1080p.mkv", "UpdateType": "Created"}]]


def test_verify_counts_an_upgrade_only_as_one_entry_for_the_new_file(jf: Server,
                                                                      tmp_path) -> None:
    jf.standard()
    item, mappings = upgraded_heat(tmp_path)
    old = jf_item("Movie", "/media/movies/Heat (1995)/Heat - 720p.mkv", Tmdb="949")
    new = jf_item("Movie", "/media/movies/Heat (1995)/Heat - 1080p.mkv", Tmdb="949")
    player = make_player(mappings=mappings)

    def verdict() -> tuple[str, str | None]:
        (outcome,) = player.verify(targets(item, mappings=mappings))
        return outcome.result, outcome.error

    jf.has(MOVIES_ID, old)  # not scanned yet: the old item matches by its tmdb id only
    assert verdict()[0] == "unverified"
    jf.has(MOVIES_ID, new)  # both listed
    assert verdict() == ("unverified", (
        "Jellyfin still lists /media/movies/Heat (1995)/Heat - 720p.mkv, replaced by "
        "/media/movies/Heat (1995)/Heat - 1080p.mkv: its scan of that folder has not run "
        "yet, or the file is still there as Jellyfin sees it"))
    jf.library_items[MOVIES_ID].remove(old)
    assert verdict() == ("synced", None)


# --- Emby --------------------------------------------------------------------------------

def emby_standard(server: Server) -> None:
    server.mock.get(server.url("/System/Info/Public"),
                    json={"ProductName": "Emby Server", "Version": "4.8.10.0"})
    server.mock.get(server.url("/System/Info"), json={"Version": "4.8.10.0"})
    server.mock.get(server.url("/Library/VirtualFolders/Query"), json={
        "Items": LIBRARIES, "TotalRecordCount": 2})


def test_emby_uses_x_emby_token_and_its_library_query(emby: Server) -> None:
    emby_standard(emby)
    result = make_player(EmbyPlayer).probe()
    assert result.version == "4.8.10.0"
    assert result.roots == ["/media/movies", "/media/movies-extra", "/media/tv"]
    for call in emby.mock.calls:
        assert call.request.headers["X-Emby-Token"] == TOKEN
        assert "Authorization" not in call.request.headers


def test_emby_403_on_libraries(emby: Server) -> None:
    emby.mock.get(emby.url("/System/Info/Public"), json={"ProductName": "Emby Server"})
    emby.mock.get(emby.url("/System/Info"), json={})
    emby.mock.get(emby.url("/Library/VirtualFolders/Query"), status=403)
    with pytest.raises(Rejected, match="token lacks admin rights"):
        make_player(EmbyPlayer).probe()


def test_emby_finds_by_path_then_provider_id_and_refreshes_recursively(emby: Server) -> None:
    emby_standard(emby)
    heat = {"Id": "101", "Type": "Movie",
            "Path": "/media/movies/Heat (1995)/Heat (1995).mkv"}
    alien = {"Id": "102", "Type": "Movie", "Path": "/media/movies/Alien/alien.mkv"}

    def items(request: requests.PreparedRequest) -> tuple[int, dict, str]:
        query = parse_qs(urlsplit(request.url).query)
        if query.get("Path") == [heat["Path"]]:
            found = [heat]
        elif query.get("AnyProviderIdEquals") == ["imdb.tt0078748,tmdb.348"]:
            found = [alien]
        else:
            found = []
        return 200, {}, json.dumps({"Items": found, "TotalRecordCount": len(found)})

    emby.mock.add_callback(responses.GET, emby.url("/Items"), callback=items)
    emby.mock.add(responses.POST, re.compile(re.escape(BASE) + r"/Items/\d+/Refresh"),
                  status=204)
    emby.mock.post(emby.url("/Library/Media/Updated"), status=200)
    player = make_player(EmbyPlayer)
    player.probe()
    outcomes = player.apply(targets(movie(1, "Heat", 1995),
                                    movie(2, "Alien", 1979, tmdb="348", imdb="tt0078748"),
                                    movie(3, "Dune", 2021)))
    assert [o.result for o in outcomes] == ["synced"] * 3
    lookups = [parse_qs(urlsplit(r.url).query) for r in emby.sent("GET", "/Items")]
    assert lookups[0] == {"Recursive": ["true"], "IncludeItemTypes": ["Movie"],
                          "Fields": ["Path,ProviderIds"], "Path": [heat["Path"]]}
    assert lookups[2]["AnyProviderIdEquals"] == ["imdb.tt0078748,tmdb.348"]
    assert sorted(emby.refreshed()) == [  # sent several at a time: in any order
        ("101", {"Recursive": ["true"], "MetadataRefreshMode": ["Default"],
                 "ImageRefreshMode": ["Default"], "ReplaceAllMetadata": ["false"],
                 "ReplaceAllImages": ["false"]}),
        ("102", {"Recursive": ["true"], "MetadataRefreshMode": ["Default"],
                 "ImageRefreshMode": ["Default"], "ReplaceAllMetadata": ["false"],
                 "ReplaceAllImages": ["false"]})]
    # Alien's new path and Dune's file both land on /media/movies: that folder, once.
    assert emby.updates() == [[{"Path": "/media/movies", "UpdateType": "Modified"}]]


def test_emby_message_goes_in_the_query_string(emby: Server) -> None:
    emby.mock.get(emby.url("/Sessions"), json=[{"Id": "abc", "DeviceId": "tv"}])
    emby.mock.post(emby.url("/Sessions/abc/Message"), status=204)
    make_player(EmbyPlayer).notify("Metarr", "2 item(s) updated")
    sent, = emby.sent("POST", "/Sessions/abc/Message")
    assert parse_qs(urlsplit(sent.url).query) == {
        "Header": ["Metarr"], "Text": ["2 item(s) updated"], "TimeoutMs": ["5000"]}
    assert not sent.body


def test_emby_type_on_a_jellyfin_server_names_the_fix(emby: Server) -> None:
    emby.mock.get(emby.url("/System/Info/Public"), json={"ProductName": "Jellyfin Server"})
    with pytest.raises(Rejected, match='is Jellyfin Server: set type = "jellyfin"'):
        make_player(EmbyPlayer).probe()


# --- sample paths (mappings detect) ----------------------------------------------------------

def test_sample_paths_reads_one_small_page_per_library(jf: Server) -> None:
    jf.standard()
    jf.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"),
           jf_item("Movie", "/media/movies/Alien (1979)/Alien (1979).mkv"),
           jf_item("Movie", "/media/movies/Dune (2021)/Dune (2021).mkv"))
    jf.has(TV_ID, jf_item("Series", "/media/tv/Severance"),
           jf_item("Episode", "/media/tv/Severance/Season 01/Severance S01E01.mkv"))
    paths = make_player().sample_paths(limit=2)
    assert paths == ["/media/movies/Heat (1995)/Heat (1995).mkv",
                     "/media/movies/Alien (1979)/Alien (1979).mkv",
                     "/media/tv/Severance/Season 01/Severance S01E01.mkv"]
    queries = [parse_qs(urlsplit(r.url).query) for r in jf.sent("GET", "/Items")]
    assert queries == [
        {"parentId": [MOVIES_ID], "recursive": ["true"], "includeItemTypes": ["Movie"],
         "fields": ["Path"], "enableImages": ["false"], "enableUserData": ["false"],
         "sortBy": ["SortName"], "enableTotalRecordCount": ["false"],
         "startIndex": ["0"], "limit": ["2"]},
        {"parentId": [TV_ID], "recursive": ["true"], "includeItemTypes": ["Episode"],
         "fields": ["Path"], "enableImages": ["false"], "enableUserData": ["false"],
         "sortBy": ["SortName"], "enableTotalRecordCount": ["false"],
         "startIndex": ["0"], "limit": ["2"]}]
    assert jf.sent("POST") == []


def test_sample_paths_with_a_broken_item_list_is_a_protocol_error(jf: Server) -> None:
    jf.mock.get(jf.url("/Library/VirtualFolders"), json=LIBRARIES[:1])
    jf.mock.get(jf.url("/Items"), json={"Nope": 1})
    with pytest.raises(ProtocolError, match="unexpected item list"):
        make_player().sample_paths()
