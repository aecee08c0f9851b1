"""The Jellyfin adapter against Jellyfin's own OpenAPI documents (10.11.11 and 12.0.0).

Two layers:
- every request of every Jellyfin test in test_jellyfin.py is validated against both specs
  when that test ends (its `jf` fixture); a violation fails the test that sent it;
- here, one run through every call the adapter makes is validated and its coverage
  asserted (so the check is never vacuous), and negative tests prove that an undocumented
  endpoint, parameter, enum value or body field does fail the check.

The specs are big (2 MB each): they are loaded once per session (`shared_spec`). They are
looked up at ../shared/specs beside the repository (CI), then /work/shared/specs; a
missing spec fails, it never skips.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import responses
from support.contract import Spec, find_spec, shared_spec, validate_calls, validate_request
from test_jellyfin import (
    BASE,
    MOVIES_ID,
    SPECS,
    TV_ID,
    Server,
    episode,
    jf_item,
    make_player,
    movie,
    show,
    targets,
)

from metarr_sync.players.jellyfin import EmbyPlayer, JellyfinPlayer

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPECTED_OPERATIONS = {
    ("GET", "/System/Info/Public"),
    ("GET", "/System/Info"),
    ("GET", "/Library/VirtualFolders"),
    ("GET", "/Items"),
    ("POST", "/Items/{itemId}/Refresh"),
    ("POST", "/Library/Media/Updated"),
    ("GET", "/Sessions"),
    ("POST", "/Sessions/{sessionId}/Message"),
}


@pytest.fixture(params=SPECS)
def spec(request: pytest.FixtureRequest) -> Spec:
    return shared_spec(request.param)


def full_run(player: JellyfinPlayer, server: Server) -> None:
    """Every kind of call the adapter makes, as one run would make them."""
    server.standard()
    server.has(MOVIES_ID, jf_item("Movie", "/media/movies/Heat (1995)/Heat (1995).mkv"),
               jf_item("Movie", "/media/movies/Old (1990)/Old (1990).mkv"),
               jf_item("Movie", "/media/movies/Brazil/old.mkv", Tmdb="68"))
    server.has(TV_ID, jf_item("Series", "/media/tv/Severance"))
    server.mock.get(server.url("/Sessions"), json=[
        {"Id": "abc", "DeviceId": "tv", "NowPlayingItem": None}])
    server.mock.post(server.url("/Sessions/abc/Message"), status=204)
    player.probe()
    player.is_playing()
    player.apply(targets(
        movie(1, "Heat", 1995), movie(2, "Dune", 2021), movie(3, "Old", 1990, removed=True),
        movie(4, "Brazil", 1985, tmdb="68"), show(5, "Severance"),
        episode(6, "Severance", 1, 1), episode(7, "Andor", 1, 1)))
    player.verify(targets(movie(2, "Dune", 2021)))
    player.notify("Metarr", "4 item(s) updated")


def operations(spec: Spec, calls: list[Any]) -> set[tuple[str, str]]:
    return {(c.request.method, spec.match(urlsplit(c.request.url).path)[0][0]) for c in calls}


@pytest.mark.parametrize("refresh_mode", ["default", "full"])
def test_a_whole_run_follows_both_specs(spec: Spec, refresh_mode: str) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        full_run(make_player(refresh_mode=refresh_mode), Server(mock))
        calls = list(mock.calls)
    assert validate_calls(spec, calls) == len(calls) > 10
    assert operations(spec, calls) == EXPECTED_OPERATIONS  # nothing left unchecked
    refresh = next(c.request.url for c in calls if c.request.url.endswith(
        "replaceAllImages=false"))
    mode = "FullRefresh" if refresh_mode == "full" else "Default"
    assert f"metadataRefreshMode={mode}&imageRefreshMode={mode}" in refresh


class RecursiveRefresh(JellyfinPlayer):
    """Sends Emby's Recursive parameter, which Jellyfin does not have."""

    def refresh_params(self) -> dict[str, str]:
        return {**super().refresh_params(), "Recursive": "true"}


class MisspeltMode(JellyfinPlayer):
    def refresh_params(self) -> dict[str, str]:
        return {**super().refresh_params(), "metadataRefreshMode": "Full"}


class LowercaseBody(JellyfinPlayer):
    def media_updated(self, updates: Any) -> None:
        self.http.request("POST", "/Library/Media/Updated", mutating=True, json_body={
            "Updates": [{"path": path, "updateType": kind} for path, kind in updates]})


class CommaFields(JellyfinPlayer):
    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        if params and isinstance(params.get("fields"), list):
            params = {**params, "fields": ",".join(params["fields"])}
        return super()._get(path, params)


@pytest.mark.parametrize(("cls", "expected"), [
    (RecursiveRefresh, "query parameter 'Recursive' is not documented for POST "
                       "/Items/{itemId}/Refresh"),
    (MisspeltMode, "query parameter 'metadataRefreshMode'=Full: 'Full' is not one of"),
    (LowercaseBody, "Additional properties are not allowed"),
    (CommaFields, "query parameter 'fields'=Path,ProviderIds: 0: 'Path,ProviderIds' is not "
                  "one of"),
])
def test_a_request_off_the_spec_fails_the_contract(spec: Spec, cls: type[JellyfinPlayer],
                                                   expected: str) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        full_run(make_player(cls), Server(mock))
        calls = list(mock.calls)
    with pytest.raises(AssertionError) as caught:
        validate_calls(spec, calls)
    assert expected in str(caught.value)


def test_emby_calls_are_not_jellyfin_calls(spec: Spec) -> None:
    """Emby's adapter, checked against Jellyfin's spec, must fail on exactly its
    differences: an undocumented endpoint and undocumented parameters."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        server = Server(mock)
        mock.get(server.url("/System/Info/Public"), json={"ProductName": "Emby Server"})
        mock.get(server.url("/System/Info"), json={})
        mock.get(server.url("/Library/VirtualFolders/Query"), json={"Items": [
            {"Name": "Movies", "Locations": ["/media/movies"], "ItemId": MOVIES_ID}]})
        mock.get(server.url("/Items"), json={"Items": [
            {"Id": "1f0e9bb55ad34e0f8bd9b7a4a5b6c7d8", "Type": "Movie",
             "Path": "/media/movies/Heat (1995)/Heat (1995).mkv"}]})
        mock.add(responses.POST, re.compile(re.escape(BASE) + r"/Items/\w+/Refresh"),
                 status=204)
        player = make_player(EmbyPlayer)
        player.probe()
        player.apply(targets(movie(1, "Heat", 1995)))
        calls = list(mock.calls)
    with pytest.raises(AssertionError) as caught:
        validate_calls(spec, calls)
    text = str(caught.value)
    assert "no documented path matches /Library/VirtualFolders/Query" in text
    assert "query parameter 'Path' is not documented for GET /Items" in text
    assert "query parameter 'Recursive' is not documented for POST /Items/{itemId}/Refresh" \
        in text
    # the calls both servers share are still fine
    validate_request(spec, "GET", BASE + "/System/Info/Public")


def test_legacy_token_in_the_url_is_not_documented(spec: Spec) -> None:
    # api_key= is a legacy form Jellyfin 12 rejects; the adapter never sends it
    with pytest.raises(AssertionError, match="'api_key' is not documented"):
        validate_request(spec, "GET", BASE + "/System/Info?api_key=abc")


def test_specs_are_found_beside_the_repository_first(tmp_path: Path) -> None:
    repo = tmp_path / "checkout"
    (repo / "tests").mkdir(parents=True)
    shared = tmp_path / "shared" / "specs"
    shared.mkdir(parents=True)
    shutil.copy(find_spec(SPECS[0]), shared / SPECS[0])
    assert find_spec(SPECS[0], repo) == (shared / SPECS[0]).resolve()


def test_the_specs_used_here_exist_and_are_the_right_ones() -> None:
    for name in SPECS:
        path = find_spec(name, REPO_ROOT)  # raises (fails the test) when missing
        spec = shared_spec(name)
        assert spec.title == f"Jellyfin API {name.split('-')[-1].removesuffix('.json')}"
        assert path.stat().st_size > 1_000_000
    assert shared_spec(SPECS[0]) is shared_spec(SPECS[0])  # loaded once per session
