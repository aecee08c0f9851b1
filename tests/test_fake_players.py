"""The fake players of tests/support/fake_players.py answer like the real servers and
misbehave exactly as told: the fault matrix and the benchmark are only as good as they are."""

from __future__ import annotations

import base64

import pytest
import requests
from support.fake_players import FakeJellyfin, FakeKodi, FakePlex


def rpc(kodi: FakeKodi, method: str, params: dict | None = None, **kw) -> requests.Response:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or {}}
    kw.setdefault("timeout", 3)
    return requests.post(kodi.url + "/jsonrpc", json=body, auth=("kodi", "pw"), **kw)


@pytest.fixture
def kodi():
    with FakeKodi(username="kodi", password="pw") as fake:
        fake.add_file("/mnt/movies/Heat (1995)/Heat (1995).mkv",
                      "/mnt/tv/Show/Season 01/Show - S01E01.mkv")
        yield fake


def test_kodi_library_behaves_like_kodi(kodi):
    assert rpc(kodi, "JSONRPC.Ping").json()["result"] == "pong"
    # Without the trailing separator Kodi answers OK and adds nothing.
    rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/movies/Heat (1995)"})
    assert kodi.library_files() == set()
    # A season folder of a show Kodi does not know adds nothing either; the show folder does.
    rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/tv/Show/Season 01/"})
    assert kodi.library_files() == set()
    rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/tv/Show/"})
    rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/movies/Heat (1995)/"})
    assert kodi.library_files() == {"/mnt/tv/Show/", "/mnt/tv/Show/Season 01/Show - S01E01.mkv",
                                    "/mnt/movies/Heat (1995)/Heat (1995).mkv"}
    movies = rpc(kodi, "VideoLibrary.GetMovies", {"properties": ["file"]}).json()["result"]
    old_id = movies["movies"][0]["movieid"]
    assert rpc(kodi, "VideoLibrary.RefreshMovie", {"movieid": old_id}).json()["result"] == "OK"
    # A refresh re-adds the movie under a new id: the old one is now invalid (-32602).
    again = rpc(kodi, "VideoLibrary.RefreshMovie", {"movieid": old_id}).json()
    assert again["error"]["code"] == -32602
    assert rpc(kodi, "VideoLibrary.Scan", {"directory": ["/mnt/"]}).json()["error"]["code"] \
        == -32602
    assert kodi.full_scans == 0 and kodi.count("VideoLibrary.Scan") == 5
    bad = requests.post(kodi.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 1,
                                                     "method": "JSONRPC.Ping"},
                        auth=("kodi", "wrong"), timeout=3)
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"] == 'Basic realm="Kodi"'
    recorded = kodi.received("JSONRPC.Ping")[-1]
    assert base64.b64decode(recorded.header("Authorization")[6:]) == b"kodi:wrong"


def test_kodi_drops_a_scan_sent_while_one_runs():
    with FakeKodi(scan_seconds=0.5) as kodi:
        kodi.add_file("/mnt/movies/A (1)/A (1).mkv", "/mnt/movies/B (2)/B (2).mkv")
        rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/movies/A (1)/"})
        scanning = rpc(kodi, "XBMC.GetInfoBooleans", {"booleans": ["Library.IsScanningVideo"]})
        assert scanning.json()["result"] == {"Library.IsScanningVideo": True}
        rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/movies/B (2)/"})
        assert kodi.dropped_scans == 1
        assert kodi.library_files() == set()  # the running scan stopped, the new one dropped


def test_faults_apply_per_request_and_heal(kodi):
    kodi.misbehave("503", times=2, retry_after=1)
    first, second, third = (rpc(kodi, "JSONRPC.Ping") for _ in range(3))
    assert (first.status_code, second.status_code, third.status_code) == (503, 503, 200)
    assert first.headers["Retry-After"] == "1"
    kodi.misbehave("jsonrpc_error", match="VideoLibrary.Scan")
    assert rpc(kodi, "JSONRPC.Ping").json()["result"] == "pong"
    assert rpc(kodi, "VideoLibrary.Scan", {"directory": "/mnt/"}).json()["error"]["code"] \
        == -32603
    kodi.heal()
    kodi.misbehave("truncated", times=1)
    with pytest.raises(ValueError):
        rpc(kodi, "JSONRPC.Ping").json()
    kodi.misbehave("reset", times=1)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # headers came, body broke
        rpc(kodi, "JSONRPC.Ping")
    kodi.misbehave("hang", times=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        rpc(kodi, "JSONRPC.Ping", timeout=0.3)
    kodi.misbehave("redirect", times=1)
    moved = rpc(kodi, "JSONRPC.Ping", allow_redirects=False)
    assert moved.status_code == 302 and moved.headers["Location"].endswith("/web/index.html")
    port = kodi.port
    with requests.Session() as pooled:
        pooled.post(kodi.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 1,
                                                 "method": "JSONRPC.Ping"},
                    auth=("kodi", "pw"), timeout=3)
        kodi.misbehave("refused")
        # Also a pooled keep-alive connection is gone, not only new ones.
        with pytest.raises(requests.exceptions.ConnectionError):
            pooled.post(kodi.url + "/jsonrpc", json={"jsonrpc": "2.0", "id": 2,
                                                     "method": "JSONRPC.Ping"},
                        auth=("kodi", "pw"), timeout=3)
    kodi.heal()
    assert kodi.port == port and rpc(kodi, "JSONRPC.Ping").status_code == 200
    faults = [r.fault for r in kodi.received("JSONRPC.Ping")]
    assert faults.count("503") == 2 and faults.count("hang") == 1


def test_plex_answers_like_plex():
    with FakePlex(token="tok") as plex:
        plex.add_file("/media/movies/Heat (1995)/Heat (1995).mkv")
        head = {"X-Plex-Token": "tok", "Accept": "application/json"}
        assert requests.get(plex.url + "/identity", timeout=3).json()["MediaContainer"][
            "version"]
        denied = requests.get(plex.url + "/library/sections", timeout=3,
                              headers={"Accept": "application/json"})
        assert denied.status_code == 401 and denied.text.startswith("<html>")
        refresh = plex.url + "/library/sections/1/refresh"
        assert requests.put(refresh, params={"path": "/media/movies/Heat (1995)"},
                            headers=head, timeout=3).status_code == 404
        # Outside every location: 200 all the same, and ignored.
        assert requests.get(refresh, params={"path": "/elsewhere/Heat"}, headers=head,
                            timeout=3).status_code == 200
        assert plex.library_files() == set() and plex.ignored_scans == ["/elsewhere/Heat"]
        requests.get(refresh, params={"path": "/media/movies/Heat (1995)"}, headers=head,
                     timeout=3)
        listing = requests.get(plex.url + "/library/sections/1/all", headers=head, timeout=3,
                               params={"type": 1, "includeGuids": 1}).json()
        (movie,) = listing["MediaContainer"]["Metadata"]
        assert movie["Media"][0]["Part"][0]["file"] == "/media/movies/Heat (1995)/Heat (1995).mkv"
        key = movie["ratingKey"]
        assert requests.get(f"{plex.url}/library/metadata/{key}/refresh", headers=head,
                            timeout=3).status_code == 405
        assert requests.put(f"{plex.url}/library/metadata/{key}/refresh", headers=head,
                            timeout=3).status_code == 200
        plex.remove_file("/media/movies/Heat (1995)/Heat (1995).mkv")
        requests.get(refresh, params={"path": "/media/movies/Heat (1995)"}, headers=head,
                     timeout=3)
        assert plex.library_files() == set()  # marked missing, still in the trash
        requests.put(plex.url + "/library/sections/1/emptyTrash", headers=head, timeout=3)
        assert plex.items == {} and plex.full_scans == 0
        assert plex.count("GET /library/sections/{key}/refresh") == 3


def test_jellyfin_takes_only_the_mediabrowser_header():
    with FakeJellyfin(token="key") as jelly:
        jelly.add_file("/media/movies/Heat (1995)/Heat (1995).mkv")
        assert requests.get(jelly.url + "/System/Info/Public", timeout=3).status_code == 200
        legacy = requests.get(jelly.url + "/System/Info", headers={"X-Emby-Token": "key"},
                              timeout=3)
        assert legacy.status_code == 401
        auth = {"Authorization": 'MediaBrowser Client="t", Device="d", DeviceId="1", '
                                 'Version="1", Token="key"'}
        assert requests.post(jelly.url + "/Library/Media/Updated", headers=auth, timeout=3,
                             json={"Updates": [{"Path": "/media/movies/Heat (1995)/Heat (1995)"
                                                ".mkv", "UpdateType": "Created"}]}
                             ).status_code == 204
        (library,) = [lib for lib in jelly.libraries if lib.collection_type == "movies"]
        items = requests.get(jelly.url + "/Items", headers=auth, timeout=3, params=[
            ("parentId", library.item_id), ("recursive", "true"), ("fields", "Path"),
            ("fields", "ProviderIds"), ("includeItemTypes", "Movie")]).json()
        assert [i["Path"] for i in items["Items"]] == [
            "/media/movies/Heat (1995)/Heat (1995).mkv"]
        item = items["Items"][0]["Id"]
        assert requests.post(f"{jelly.url}/Items/{item}/Refresh", headers=auth, timeout=3,
                             params={"metadataRefreshMode": "Default"}).status_code == 204
        assert jelly.refreshed == [(item, {"metadataRefreshMode": "Default"})]
        assert jelly.count("POST /Items/{id}/Refresh") == 1


def test_kodi_answers_a_batch_of_refreshes_only_after_carrying_it_out():
    """As the real Kodi 20.1 (120 RefreshMovie answered after 7.7-9.4 s; a client that gave
    up after 1 s did not stop it; other requests answered at once meanwhile)."""
    import time

    with FakeKodi(refresh_seconds=0.02) as kodi:
        for n in range(100):
            kodi.movies[n + 1] = f"/mnt/movies/M{n}/M{n}.mkv"
        batch = [{"jsonrpc": "2.0", "id": n + 1, "method": "VideoLibrary.RefreshMovie",
                  "params": {"movieid": n + 1}} for n in range(100)]
        started = time.monotonic()
        answer = requests.post(kodi.url + "/jsonrpc", json=batch[:10], timeout=5)
        assert time.monotonic() - started >= 0.2  # 10 × 20 ms, then the answer
        assert [a["result"] for a in answer.json()] == ["OK"] * 10
        # A client that stops waiting after 0.5 s does not stop Kodi's work on the rest.
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(kodi.url + "/jsonrpc", json=batch[10:], timeout=0.5)
        ping = {"jsonrpc": "2.0", "id": 0, "method": "JSONRPC.Ping"}
        assert requests.post(kodi.url + "/jsonrpc", json=ping, timeout=0.5).json()[
            "result"] == "pong"  # answered at once meanwhile
        assert len(kodi.refreshed) == 10
        while len(kodi.refreshed) < 100 and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert sorted(kodi.refreshed) == sorted(f"/mnt/movies/M{n}/M{n}.mkv"
                                                for n in range(100))
        assert time.monotonic() - started >= 1.8  # 90 × 20 ms
