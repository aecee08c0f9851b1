"""The fake players of tests/support/fake_players.py answer like the real servers and
misbehave exactly as told: the fault matrix and the benchmark are only as good as they are."""

from __future__ import annotations

import base64
import time

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


def test_plex_scans_in_the_background_and_empties_every_missing_item_of_a_section():
    head = {"X-Plex-Token": "tok", "Accept": "application/json"}
    with FakePlex(token="tok", scan_lag=None) as plex:
        heat = plex.put_item("/media/movies/Heat (1995)/Heat (1995).mkv")
        alien = plex.put_item("/media/movies/Alien (1979)/Alien (1979).mkv")
        episode = plex.put_item("/media/tv/Show/Season 01/Show - S01E01.mkv")
        plex.add_file(episode.file)  # Heat's and Alien's files are gone (a share is down)

        def listed(section: str, kind: int) -> dict[str, bool]:
            answer = requests.get(f"{plex.url}/library/sections/{section}/all", headers=head,
                                  params={"type": kind}, timeout=3).json()["MediaContainer"]
            return {m["Media"][0]["Part"][0]["file"]: "deletedAt" in m
                    for m in answer.get("Metadata", [])}

        scan = requests.get(plex.url + "/library/sections/1/refresh", headers=head,
                            params={"path": "/media/movies/Heat (1995)"}, timeout=3)
        assert scan.status_code == 200
        # Answered, and nothing changed: the scanner has not got to it.
        assert listed("1", 1) == {heat.file: False, alien.file: False}
        assert plex.queued and plex.trash("1") == []
        plex.finish_scans()
        assert listed("1", 1) == {heat.file: True, alien.file: False}
        # Alien's folder is scanned too (by Plex itself, say): both are in the trash now.
        requests.get(plex.url + "/library/sections/1/refresh", headers=head,
                     params={"path": "/media/movies/Alien (1979)"}, timeout=3)
        plex.finish_scans()
        assert plex.trash("1") == [alien.file, heat.file]
        # emptyTrash takes no item: every missing one goes.
        assert requests.put(plex.url + "/library/sections/1/emptyTrash", headers=head,
                            timeout=3).status_code == 200
        assert listed("1", 1) == {} and sorted(plex.purged) == [alien.file, heat.file]
        # A show's episodes, with deletedAt like the listing; the show goes with its last.
        leaves = requests.get(f"{plex.url}/library/metadata/{episode.show}/allLeaves",
                              headers=head, timeout=3).json()["MediaContainer"]["Metadata"]
        assert [(m["ratingKey"], "deletedAt" in m) for m in leaves] == [
            (episode.rating_key, False)]
        plex.remove_file(episode.file)
        requests.get(plex.url + "/library/sections/2/refresh", headers=head,
                     params={"path": "/media/tv/Show"}, timeout=3)
        plex.finish_scans()
        requests.put(plex.url + "/library/sections/2/emptyTrash", headers=head, timeout=3)
        assert plex.items == {}
        assert [r.endpoint for r in plex.received()].count(
            "PUT /library/sections/{key}/emptyTrash") == 2


def test_plex_scan_lag_runs_a_scan_only_for_requests_arriving_after_it():
    head = {"X-Plex-Token": "tok", "Accept": "application/json"}
    with FakePlex(token="tok", scan_lag=0.3) as plex:
        plex.add_file("/media/movies/Heat (1995)/Heat (1995).mkv")
        requests.get(plex.url + "/library/sections/1/refresh", headers=head,
                     params={"path": "/media/movies/Heat (1995)"}, timeout=3)
        requests.get(plex.url + "/identity", timeout=3)
        assert plex.library_files(settled=False) == set()
        time.sleep(0.35)
        requests.get(plex.url + "/identity", timeout=3)
        assert plex.library_files(settled=False) == {"/media/movies/Heat (1995)/Heat (1995).mkv"}


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


# --- Kodi's texture cache, modelled as measured (support/texture_scenario.py) ------------


class FakeEnd:
    """The fake Kodi reading real files below `root`, spoken to like the real one."""

    def __init__(self, fake: FakeKodi, root):
        self.fake, self.movies = fake, root / "movies"
        self.session = requests.Session()
        self.session.auth = ("kodi", "pw")

    def rpc(self, method: str, params: dict | None = None):
        from support.texture_scenario import RpcFailed

        body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or {}}
        doc = self.session.post(self.fake.url + "/jsonrpc", json=body, timeout=3).json()
        if "error" in doc:
            raise RpcFailed(doc["error"])
        return doc["result"]

    def image(self, art_url: str) -> bytes:
        from support.texture_scenario import image_path

        answer = self.session.get(self.fake.url + image_path(art_url), timeout=3)
        answer.raise_for_status()
        return answer.content


def kodi_on_disk(root) -> FakeKodi:
    """A fake Kodi whose sources are real folders below `root` (same paths both sides)."""
    (root / "movies").mkdir(exist_ok=True)
    (root / "tv").mkdir(exist_ok=True)
    return FakeKodi(username="kodi", password="pw", disk={f"{root}/": str(root)},
                    sources={f"{root}/movies/": "movies", f"{root}/tv/": "tvshows"})


def test_fake_kodis_texture_cache_passes_the_real_kodis_scenario(tmp_path):
    from support.texture_scenario import texture_cache_behaves_as_measured

    with kodi_on_disk(tmp_path) as fake:
        end = FakeEnd(fake, tmp_path)
        # add_file: the fake's scans list the videos it was given (the real one lists disk)
        folder = tmp_path / "movies" / "Conformance (2001)"
        fake.add_file(f"{folder}/Conformance (2001).mkv")
        texture_cache_behaves_as_measured(end)
        assert fake.calls("Textures.RemoveTexture") == 2


def test_fake_kodi_reads_titles_and_art_of_shows_seasons_and_episodes(tmp_path):
    from support.fake_players import kodi_image_url
    from support.images import png

    with kodi_on_disk(tmp_path) as fake:
        show = tmp_path / "tv" / "Dark"
        (show / "Season 01").mkdir(parents=True)
        (show / "tvshow.nfo").write_text("<tvshow><title>Dark</title></tvshow>")
        (show / "poster.jpg").write_bytes(png(2, 3))
        (show / "season01-poster.png").write_bytes(png(2, 3))
        episode = show / "Season 01" / "Dark - S01E01.mkv"
        (show / "Season 01" / "Dark - S01E01.nfo").write_text(
            "<episodedetails><title>Secrets &amp; Lies</title></episodedetails>")
        (show / "Season 01" / "Dark - S01E01-thumb.jpg").write_bytes(png(16, 9))
        fake.add_file(str(episode))
        end = FakeEnd(fake, tmp_path)
        end.rpc("VideoLibrary.Scan", {"directory": f"{show}/"})
        (row,) = end.rpc("VideoLibrary.GetEpisodes", {"properties": ["file"]})["episodes"]
        details = end.rpc("VideoLibrary.GetEpisodeDetails", {
            "episodeid": row["episodeid"], "properties": ["title", "art"]})["episodedetails"]
        assert details["title"] == "Secrets & Lies"
        assert details["art"] == {
            "thumb": kodi_image_url(f"{show}/Season 01/Dark - S01E01-thumb.jpg"),
            "season.poster": kodi_image_url(f"{show}/season01-poster.png"),
            "tvshow.poster": kodi_image_url(f"{show}/poster.jpg"),
            "icon": "image://DefaultVideo.png/"}
        (tv,) = end.rpc("VideoLibrary.GetTVShows", {"properties": ["file"]})["tvshows"]
        (season,) = end.rpc("VideoLibrary.GetSeasons", {
            "tvshowid": tv["tvshowid"], "properties": ["season", "art"]})["seasons"]
        assert season["season"] == 1 and season["art"] == {
            "poster": kodi_image_url(f"{show}/season01-poster.png"),
            "tvshow.poster": kodi_image_url(f"{show}/poster.jpg")}
        # As measured: the scan cached the show's and the episode's own art, not the
        # season's, which is cached when first displayed.
        cached = {t["url"] for t in end.rpc("Textures.GetTextures", {
            "properties": ["url"]})["textures"]}
        assert cached == {details["art"]["thumb"], details["art"]["tvshow.poster"]}
        fake.display(f"{show}/")
        assert len(fake.textures) == 3
        assert kodi_image_url("/a b/Ça~x(1).jpg") == \
            "image://%2fa%20b%2f%c3%87a%7ex(1).jpg/"


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
