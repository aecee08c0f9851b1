"""What Kodi's texture cache does with republished artwork, as one scenario run against
both the real Kodi (tests/test_kodi_real.py) and the fake (tests/test_fake_players.py):
the fake is only a model if it fails where the real Kodi fails.

Measured on a real Kodi 20.1 and kept here as the conformance check:
- a scan caches the new movie's poster at once (Textures13.db), with `imagehash`
  `d<mtime>s<size>` of the file it read; `url` is the art URL exactly as `art` lists it
  (`image://<encoded path>/`), and a `url is` filter needs that wrapped form;
- `/image/<url-encoded art URL>` serves the cached copy (re-encoded by the real Kodi);
- a refresh re-reads the NFO but leaves the cached copy alone: the old poster is served,
  under the same texture id and hash, after the file was replaced;
- `Textures.RemoveTexture` drops it ("OK"; an unknown id is -32602); the next `/image/`
  caches and serves the file as it is now.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from support.images import dimensions, png


class RpcFailed(Exception):
    def __init__(self, error: Any):
        super().__init__(str(error))
        self.code = error.get("code") if isinstance(error, dict) else None


class KodiEnd(Protocol):
    """A Kodi to talk to: JSON-RPC and the web server's /image/ route."""

    movies: Path

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> Any: ...

    def image(self, art_url: str) -> bytes: ...


def image_path(art_url: str) -> str:
    """The /image/ route of an art URL."""
    return "/image/" + quote(art_url, safe="")


def file_hash(path: Path) -> str:
    """Kodi's `imagehash` of a file: d<mtime>s<size>."""
    stat = path.stat()
    return f"d{int(stat.st_mtime)}s{stat.st_size}"


def wait(condition: Callable[[], Any], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what} within {timeout:g} s")
        time.sleep(0.1)


def texture_cache_behaves_as_measured(kodi: KodiEnd, name: str = "Conformance") -> None:
    folder = kodi.movies / f"{name} (2001)"
    folder.mkdir(parents=True, exist_ok=True)
    video = folder / f"{name} (2001).mkv"
    video.touch()
    nfo = folder / "movie.nfo"
    nfo.write_text(f"<movie><title>{name}</title><year>2001</year></movie>\n")
    poster = folder / "poster.png"
    poster.write_bytes(png(4, 6, (220, 20, 20)))
    kodi.rpc("Files.GetDirectory", {"directory": f"{kodi.movies}/"})
    kodi.rpc("VideoLibrary.Scan", {"directory": f"{folder}/", "showdialogs": False})

    def movie() -> dict[str, Any] | None:
        found = kodi.rpc("VideoLibrary.GetMovies", {"properties": ["file", "title", "art"]})
        return next((m for m in found.get("movies") or [] if m["file"] == str(video)), None)

    first = wait(movie, "the scanned movie")
    url = first["art"]["poster"]
    assert url.startswith("image://") and url.endswith("/"), url

    def textures() -> list[dict[str, Any]]:
        return kodi.rpc("Textures.GetTextures", {
            "properties": ["url", "imagehash"],
            "filter": {"field": "url", "operator": "is", "value": url}})["textures"]

    # The scan cached the poster, hashed as d<mtime>s<size> of the file.
    (cached,) = wait(textures, "the poster cached by the scan")
    assert cached["url"] == url and cached["imagehash"] == file_hash(poster)
    assert dimensions(kodi.image(url)) == (4, 6)
    unwrapped = kodi.rpc("Textures.GetTextures", {"properties": ["url"], "filter": {
        "field": "url", "operator": "is", "value": url[len("image://"):-1]}})["textures"]
    assert unwrapped == []  # the filter takes the art URL as `art` lists it

    # Metarr republishes: a new NFO title and a new poster under the same name.
    nfo.write_text(f"<movie><title>{name} (New)</title><year>2001</year></movie>\n")
    poster.write_bytes(png(8, 12, (240, 220, 0)))
    later = int(time.time()) + 5
    os.utime(poster, (later, later))
    kodi.rpc("VideoLibrary.RefreshMovie", {"movieid": first["movieid"], "ignorenfo": False})
    refreshed = wait(lambda: (m := movie()) and m["title"] == f"{name} (New)" and m,
                     "the refreshed title")
    assert refreshed["art"]["poster"] == url
    # The refresh left the cached copy alone: the old poster is still what Kodi shows.
    assert textures() == [cached]
    assert dimensions(kodi.image(url)) == (4, 6)

    assert kodi.rpc("Textures.RemoveTexture", {"textureid": cached["textureid"]}) == "OK"
    # An id Kodi never gave out: the removed id itself may be given again at once when Kodi
    # re-caches the file by itself (SQLite reuses the highest rowid), seen in CI on 20.1.
    try:
        kodi.rpc("Textures.RemoveTexture", {"textureid": cached["textureid"] + 100000})
    except RpcFailed as exc:
        assert exc.code == -32602
    else:
        raise AssertionError("removing an unknown texture id answered OK")
    # The stale copy is gone. Kodi may already have cached the file again by itself (its
    # background work after a refresh, seen once in CI on 20.1): then only as it is now.
    assert all(t["imagehash"] == file_hash(poster) for t in textures())
    # The next display caches the file as it is now.
    assert dimensions(kodi.image(url)) == (8, 12)
    (fresh,) = textures()
    assert fresh["imagehash"] == file_hash(poster) != cached["imagehash"]
