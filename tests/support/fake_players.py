"""Small fake Kodi, Jellyfin and Plex servers on 127.0.0.1, for fault and load tests.

Each fake is a threaded `http.server` on a free port that answers the way the real server
does for the calls metarr-sync makes (see ../shared/PLAYERS.md), keeps an in-memory library
so that scans, refreshes, look-ups and verification behave plausibly, records every request
and can be told to misbehave.

The "disk" is what the player would find on its shares: a set of file paths as the player
spells them (`add_file`). A scan of a folder adds the video files below it to the library;
a refresh re-reads an item; a removal or a scan of a folder whose files are gone drops it.

    with FakeKodi(sources={"/mnt/movies/": "movies"}) as kodi:
        kodi.add_file("/mnt/movies/Heat (1995)/Heat (1995).mkv")
        kodi.misbehave("503", times=2, retry_after=1)   # the first two requests get 503
        ... run metarr-sync against kodi.url ...
        assert kodi.count("VideoLibrary.Scan") == 1
        kodi.heal()

Faults (`misbehave(kind, times=N, match=TEXT)`; `times` None = until healed, `match` a
substring of the endpoint such as "VideoLibrary.Scan" or "GET /library/sections"):
  refused        the server stops listening (connection refused) until healed
  hang           the request is read and never answered (the client times out)
  slow           answered normally after `seconds` (default 2 s)
  401 403 404 500 502 503 429   that status (503/429 with Retry-After when `retry_after`)
  html           200 with an HTML page instead of JSON (a proxy or web UI in the way)
  truncated      200 with JSON cut in half (a consistent Content-Length, so it parses badly)
  reset          headers and part of the body, then the connection is reset
  jsonrpc_error  (Kodi) 200 with a JSON-RPC error object
  redirect       302 to the web UI
Every fault applies per request, so retries of the client are each counted (and, with
`times`, the retry after the last faulty answer succeeds).

Kodi takes JSON-RPC batches as the real one does (an array of calls in one POST, an array
of answers back, none for a call without id): `count()` counts HTTP requests (a batch's
endpoint is "batch(<its methods>)", so `match` and `count("VideoLibrary.RefreshMovie")`
also find batches carrying that method), `calls()` the JSON-RPC calls in them.
With `refresh_seconds`, Kodi works through a request's refreshes (RefreshMovie,
RefreshEpisode, RefreshTVShow) before answering it, that long per refresh, one request at
a time, as the real Kodi 20.1 did (120 refreshes answered after 7.3-10 s); a client that
stops waiting does not stop it: the refreshes are carried out all the same. Other requests
are answered meanwhile.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import ssl
import struct
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support import configs

VIDEO_EXTENSIONS = (".mkv", ".mp4", ".avi", ".m4v", ".ts", ".iso", ".mov", ".wmv")
FAULTS = ("refused", "hang", "slow", "401", "403", "404", "500", "502", "503", "429",
          "html", "truncated", "reset", "jsonrpc_error", "redirect")
HTML_PAGE = (b"<!DOCTYPE html><html><head><title>Sign in</title></head>"
             b"<body><h1>Welcome</h1><p>This is a web page, not an API.</p></body></html>")


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str]
    endpoint: str  # what `counts` counts: a JSON-RPC method or "GET /route/{template}"
    at: float
    fault: str | None = None  # the fault this request got, if any

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def values(self, name: str) -> set[str]:
        """Every value of a list parameter, repeated (`a=1&a=2`) or comma-separated,
        with the name compared case-insensitively (as ASP.NET binds Jellyfin's)."""
        found: set[str] = set()
        for key, values in self.query.items():
            if key.lower() == name.lower():
                found.update(v.strip() for value in values for v in value.split(",")
                             if v.strip())
        return found

    def text(self) -> str:
        """Everything the client sent, as text (for searching secrets)."""
        heads = "\n".join(f"{k}: {v}" for k, v in self.headers.items())
        return f"{self.method} {self.path}?{self.query}\n{heads}\n" + \
            self.body.decode("utf-8", "replace")


@dataclass
class Fault:
    kind: str
    times: int | None = None
    match: str | None = None
    seconds: float = 2.0
    retry_after: float | None = None
    hits: int = 0

    def applies(self, endpoint: str, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        return not self.match or self.match in endpoint or self.match in f"{method} {path}"


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    #: Close the connection without any answer (Kodi does this for a JSON-RPC notification).
    silent: bool = False


def json_reply(document: Any, status: int = 200) -> Reply:
    return Reply(status, json.dumps(document).encode(), {"Content-Type": "application/json"})


def sep_of(root: str) -> str:
    return "\\" if "\\" in root or re.match(r"^[A-Za-z]:", root) else "/"


def trailing(path: str, sep: str | None = None) -> str:
    sep = sep or sep_of(path)
    return path if path.endswith(sep) else path + sep


def under(path: str, folder: str) -> bool:
    """`path` lies at or below `folder`, by whole components (no `/Movies4K` for `/Movies`)."""
    sep = sep_of(folder)
    base = folder.rstrip("/\\")
    return path.rstrip("/\\") == base or path.startswith(base + sep)


def item_folder(file: str) -> str:
    """What Kodi's `path` filter compares for an item: its folder (`strPath`) with the
    trailing separator; a show's `file` is that folder, a stack's folder is its first
    part's."""
    if file.startswith("stack://"):
        file = file[len("stack://"):].split(" , ")[0]
    cut = max(file.rfind("/"), file.rfind("\\"))
    return file[:cut + 1]


def sql_like(pattern: str, text: str) -> bool:
    """SQLite's LIKE as Kodi's `path` filter applies it (measured on Kodi 20.1 and 21.2):
    `%` any run of characters, `_` exactly one, no escape character (`\\_` is a backslash
    and any character), ASCII letters in either case, any other character only as itself
    (an NFC name does not match its NFD spelling)."""
    def fold(t: str) -> str:
        return "".join(c.lower() if c.isascii() else c for c in t)
    rx = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c)
                 for c in fold(pattern))
    return re.fullmatch(rx, fold(text), re.S) is not None


def windows(path: str, like: str) -> str:
    """`path` with `/` read as `\\` when `like` is a Windows path, as Windows reads it."""
    return path.replace("/", "\\") if sep_of(like) == "\\" else path


def same_file(a: str, b: str, ignore_case: bool) -> bool:
    """One file for a file system that ignores case (a Windows server, an SMB share) or
    not; never Unicode-normalised: NTFS and Linux keep NFC and NFD spellings apart."""
    return a.casefold() == b.casefold() if ignore_case else a == b


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTENSIONS)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakePlayer

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.fake.tls
        if tls is not None:
            try:
                request = tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client refused our certificate: exactly what TLS tests want
        self.fake._track(request, True)
        try:
            super().finish_request(request, client_address)
        finally:
            self.fake._track(request, False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer is normal here (timeouts, resets)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real servers: the client pools
    server: _Server
    timeout = 30

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in two writes: with Nagle on, the body waits for the
        # client's delayed ACK (40 ms on Linux) on every answer, which real servers avoid.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _any(self) -> None:
        self.server.fake._serve(self)

    def date_time_string(self, timestamp: float | None = None) -> str:
        # The Date header from the fake's own clock (FakePlayer.clock: a host whose clock
        # is off).
        return super().date_time_string(
            (time.time() if timestamp is None else timestamp) + self.server.fake.clock)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _any


class FakePlayer:
    """The HTTP plumbing, recording and fault injection shared by the three fakes."""

    kind = "fake"
    #: Seconds this server's clock is ahead of the test host's (its Date header and
    #: whatever it stamps).
    clock = 0.0
    #: The disk's case rule. True models a Windows server or an SMB share: names keep the
    #: spelling they were written with (and are reported so), and any spelling in another
    #: case reaches them. Names are never Unicode-normalised (NTFS and ext4 both keep the
    #: NFC and NFD spellings of a name apart).
    ignore_case = False

    def __init__(self, *, latency: float = 0.0, tls: ssl.SSLContext | None = None,
                 port: int = 0):
        self.latency = latency
        self.tls = tls
        self.port = port
        self.requests: list[Recorded] = []
        self.counts: Counter[str] = Counter()
        self.files: set[str] = set()
        self.faults: list[Fault] = []
        self.lock = threading.RLock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._release = threading.Event()  # wakes hanging requests when healed or stopped
        self._connections: set[Any] = set()
        self._refused = False

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> FakePlayer:
        self._release.clear()
        httpd = _Server(("127.0.0.1", self.port), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True, name=f"fake-{self.kind}")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection (pooled ones included)."""
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self.lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                conn.close()

    def __enter__(self) -> FakePlayer:
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _track(self, conn: Any, add: bool) -> None:
        with self.lock:
            (self._connections.add if add else self._connections.discard)(conn)

    # --- faults ------------------------------------------------------------------------

    def misbehave(self, kind: str | int, *, times: int | None = None, match: str | None = None,
                  seconds: float = 2.0, retry_after: float | None = None) -> None:
        """Misbehave in this way (see the module docstring) from now on."""
        kind = str(kind)
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}: one of {', '.join(FAULTS)}")
        if kind == "jsonrpc_error" and self.kind != "kodi":
            raise ValueError("only Kodi speaks JSON-RPC")
        if kind == "refused":
            if times is not None or match is not None:
                raise ValueError("a refused connection reaches no endpoint: no times/match")
            self._refused = True
            self.stop()
            return
        with self.lock:
            self.faults.append(Fault(kind, times, match, seconds, retry_after))

    def heal(self) -> None:
        """Behave again: restart a stopped server on the same port, wake hanging requests."""
        with self.lock:
            self.faults.clear()
        self._release.set()
        if self._refused:
            self._refused = False
            self.start()
        else:
            self._release = threading.Event()

    def fault_hits(self) -> int:
        with self.lock:
            return sum(f.hits for f in self.faults)

    def _take_fault(self, endpoint: str, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.applies(endpoint, method, path):
                    fault.hits += 1
                    return fault
        return None

    # --- recording ---------------------------------------------------------------------

    def count(self, endpoint: str | None = None) -> int:
        """Requests received in all, or for endpoints containing `endpoint`."""
        with self.lock:
            if endpoint is None:
                return len(self.requests)
            return sum(n for name, n in self.counts.items() if endpoint in name)

    def calls(self, endpoint: str | None = None) -> int:
        """API calls received: one per request here (Kodi counts each call of a batch)."""
        return self.count(endpoint)

    def call_counts(self) -> Counter[str]:
        """API calls received, by endpoint (Kodi: by JSON-RPC method)."""
        with self.lock:
            return Counter(self.counts)

    def received(self, endpoint: str | None = None) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if endpoint is None or endpoint in r.endpoint]

    def reset_log(self) -> None:
        with self.lock:
            self.requests.clear()
            self.counts.clear()

    def all_text(self) -> str:
        with self.lock:
            return "\n".join(r.text() for r in self.requests)

    # --- the disk ----------------------------------------------------------------------

    def add_file(self, *paths: str) -> None:
        with self.lock:
            self.files.update(paths)

    def remove_file(self, *paths: str) -> None:
        with self.lock:
            self.files.difference_update(paths)

    def files_under(self, folder: str) -> list[str]:
        with self.lock:
            return sorted(f for f in self.files if self.under(f, folder))

    def under(self, path: str, folder: str) -> bool:
        """`under` as this disk compares names (see ignore_case)."""
        if self.ignore_case:
            return under(windows(path, folder).casefold(), folder.casefold())
        return under(path, folder)

    # --- serving -----------------------------------------------------------------------

    def endpoint(self, method: str, path: str, body: bytes) -> str:
        return f"{method} {path}"

    def handle(self, request: Recorded) -> Reply:
        raise NotImplementedError

    def work(self, request: Recorded) -> None:
        """The time the server spends on a request before handling and answering it
        (outside the lock: other requests are served meanwhile)."""

    def unauthorized(self) -> Reply:
        return Reply(401)

    def _serve(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        method = handler.command
        record = Recorded(method, parts.path, parse_qs(parts.query, keep_blank_values=True),
                          body, dict(handler.headers.items()),
                          self.endpoint(method, parts.path, body), time.monotonic())
        with self.lock:
            self.requests.append(record)
            self.counts[record.endpoint] += 1
        if self.latency:
            time.sleep(self.latency)
        fault = self._take_fault(record.endpoint, method, parts.path)
        if fault is None:
            self.work(record)
        if fault is not None:
            record.fault = fault.kind
            reply = self._faulty(handler, fault, record)
            if reply is None:
                return
        else:
            try:
                with self.lock:
                    reply = self.handle(record)
            except Exception as exc:  # noqa: BLE001 - a bug in a fake must show in the test
                reply = Reply(500, f"fake {self.kind} crashed: {exc!r}".encode(),
                              {"Content-Type": "text/plain"})
        if reply.silent:
            handler.close_connection = True
            return
        self._write(handler, reply)

    def _write(self, handler: _Handler, reply: Reply) -> None:
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(reply.body)
            handler.wfile.flush()
        except OSError:
            handler.close_connection = True

    def _faulty(self, handler: _Handler, fault: Fault, record: Recorded) -> Reply | None:
        """The faulty answer, or None when the fault already dealt with the connection."""
        kind = fault.kind
        if kind == "hang":
            self._release.wait(60)
            handler.close_connection = True
            return None
        if kind == "slow":
            time.sleep(fault.seconds)
            with self.lock:
                return self.handle(record)
        if kind == "reset":
            full = json.dumps({"partial": "x" * 4000}).encode()
            try:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Content-Length", str(len(full)))
                handler.end_headers()
                handler.wfile.write(full[:100])
                handler.wfile.flush()
                # SO_LINGER 0: close sends a TCP RST, as a crashing proxy or server would.
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                              struct.pack("ii", 1, 0))
                handler.connection.close()
            except OSError:
                pass
            handler.close_connection = True
            return None
        if kind == "html":
            return Reply(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
        if kind == "truncated":
            with self.lock:
                whole = self.handle(record)
            text = whole.body or json.dumps({"result": {"items": ["a", "b", "c"]}}).encode()
            return Reply(200, text[: max(1, len(text) // 2)],
                         {"Content-Type": "application/json"})
        if kind == "redirect":
            return Reply(302, b"", {"Location": f"{self.url}/web/index.html"})
        if kind == "jsonrpc_error":
            request_id = (record.json or {}).get("id") if isinstance(record.json, dict) else None
            return json_reply({"jsonrpc": "2.0", "id": request_id, "error": {
                "code": -32603, "message": "Internal error."}})
        status = int(kind)
        if status == 401:
            return self.unauthorized()
        headers = {"Content-Type": "text/html"}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return Reply(status, b"<html><body>" + str(status).encode() + b"</body></html>",
                     headers)


# --- Kodi ---------------------------------------------------------------------------------

#: What Kodi's CURL::Encode leaves as it is in an art URL; everything else is %xx (lower case).
_KODI_KEEP = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._!()")
#: Local artwork Kodi finds beside an item, by kind (measured on 20.1: a movie folder's
#: poster/fanart, a show folder's poster, an episode's <name>-thumb, seasonNN-poster).
ART_TYPES = {"movie": ("poster", "fanart", "banner", "clearlogo", "clearart", "landscape",
                       "keyart", "discart"),
             "show": ("poster", "fanart", "banner", "clearlogo", "clearart", "landscape",
                      "keyart"),
             "season": ("poster", "fanart", "banner", "landscape"),
             "episode": ("thumb",)}
ART_EXTENSIONS = (".jpg", ".png")
#: The skin's placeholder icons Kodi 20.1 lists among an item's art (no file behind them).
ICONS = {"movie": "image://DefaultVideo.png/", "episode": "image://DefaultVideo.png/",
         "show": "image://DefaultFolder.png/"}


def kodi_image_url(path: str) -> str:
    """The art URL Kodi stores and lists for a local file: `image://` + the path encoded
    as CURL::Encode does (lower-case %xx; letters, digits and `-._!()` kept) + `/`."""
    return "image://" + "".join(
        c if c in _KODI_KEEP else "".join(f"%{b:02x}" for b in c.encode()) for c in path) + "/"


def kodi_unwrap(url: str) -> str:
    """The file behind an `image://.../` art URL (a skin icon unwraps to its bare name)."""
    from urllib.parse import unquote

    if url.startswith("image://") and url.endswith("/"):
        return unquote(url[len("image://"):-1])
    return url


@dataclass
class KodiMeta:
    """What Kodi read for one item when it scanned or refreshed it: the NFO's title and
    the art it found (art type -> art URL). Kept until the next refresh, like Kodi's DB."""

    title: str
    art: dict[str, str]
    kind: str = "movie"  # movie | show | episode
    show: str | None = None  # an episode's show folder
    season: int | None = None  # an episode's season and number
    episode: int | None = None


@dataclass
class KodiTexture:
    """One row of Kodi's texture cache (Textures13.db): the art URL, the `d<mtime>s<size>`
    hash of the file it was cached from, and the cached copy (here: that file's bytes)."""

    textureid: int
    url: str
    imagehash: str
    data: bytes
    lasthashcheck: str = ""


class FakeKodi(FakePlayer):
    """Kodi's JSON-RPC over `POST /jsonrpc`, with the library behaviour measured on Kodi 20.1:
    scans only add, need the trailing separator and are dropped while another runs (so
    after an upgrade — a file replaced under another name — a scan adds the new file and
    the old entry stays, as on Kodi 20.1 and 21.2, until it is removed by id or its movie
    folder cleaned); refreshes re-add movies/episodes under a new id; removals answer OK
    for any id.

    What Kodi reads from disk is modelled too: a scan or refresh reads the item's NFO title
    and the local artwork beside it (files written with `write()`, or real files below the
    folders given as `disk`: player root -> real folder). Kodi's texture cache is modelled
    as measured, unforgivingly: a scan caches the art of the movies, shows and episodes it
    adds (a season's art is cached when first displayed: `display()`, or `GET /image/...`),
    a cached copy is served as it is for ever (Kodi re-checks a file only 24 h later), and
    neither a refresh nor a rescan replaces it: only `Textures.RemoveTexture` does, after
    which the next display caches the file as it is now.
    """

    kind = "kodi"

    def __init__(self, *, sources: dict[str, str] | None = None, username: str | None = None,
                 password: str | None = None, scan_seconds: float = 0.0,
                 disk: dict[str, str] | None = None, refresh_seconds: float = 0.0,
                 **kw: Any):
        super().__init__(**kw)
        #: player root -> real folder: Kodi reads NFOs and artwork there (see read()).
        self.disk = dict(disk or {})
        #: Files written on the fake's own disk: path -> (mtime, bytes).
        self.written: dict[str, tuple[int, bytes]] = {}
        #: What Kodi read per item (movie/episode file, show folder with its separator).
        self.meta: dict[str, KodiMeta] = {}
        #: Season art per (show folder, season number), read with the show.
        self.season_art: dict[tuple[str, int], dict[str, str]] = {}
        self.textures: dict[str, KodiTexture] = {}
        self._next_texture = 0
        self.removed_textures: list[str] = []  # art URLs whose cached copy was dropped
        #: Seconds Kodi works on each refresh of a request before answering it.
        self.refresh_seconds = refresh_seconds
        self._worker = threading.Lock()  # one request's refreshes at a time
        #: root (with trailing separator) -> "movies" | "tvshows"
        self.sources = sources if sources is not None else {
            "/mnt/movies/": "movies", "/mnt/tv/": "tvshows"}
        self.username, self.password = username, password
        #: Kodi's profiles (labels) and the one loaded: library calls act on its library.
        self.profiles = ["Master user"]
        self.profile = "Master user"
        self.scan_seconds = scan_seconds
        self.movies: dict[int, str] = {}
        self.shows: dict[int, str] = {}  # id -> show folder with trailing separator
        self.episodes: dict[int, tuple[int, str]] = {}
        self._next = 0
        self.playing = False
        self.scanning_until = 0.0
        self._pending_scan: list[tuple[str, str]] | None = None
        self.scans: list[str] = []  # every Scan directory received ("" = whole library)
        self.dropped_scans = 0
        self.full_scans = 0
        self.full_cleans = 0
        self.refreshed: list[str] = []  # files (or show folders) refreshed
        self.removed: list[str] = []
        self.notifications: list[dict[str, Any]] = []

    # -- plumbing --
    def endpoint(self, method: str, path: str, body: bytes) -> str:
        """The method of a lone call; for a batch "batch(" + its distinct methods + ")", so
        that `count("VideoLibrary.RefreshMovie")` and a fault's `match` also find the HTTP
        requests that carried that method in a batch."""
        if method == "POST" and path == "/jsonrpc":
            methods = _methods(body)
            if isinstance(methods, list):
                return "batch(" + ",".join(sorted(set(methods))) + ")"
            if methods is not None:
                return methods
        return f"{method} {path}"

    def _call_log(self) -> list[str]:
        """The method of every call received, each call of a batch on its own."""
        with self.lock:
            bodies = [r.body for r in self.requests if r.path == "/jsonrpc"]
        found: list[str] = []
        for body in bodies:
            methods = _methods(body)
            if isinstance(methods, list):
                found += methods
            elif methods is not None:
                found.append(methods)
        return found

    def calls(self, endpoint: str | None = None) -> int:
        """JSON-RPC calls received (every call of a batch counts), in all or of methods
        containing `endpoint`. count() counts HTTP requests."""
        return sum(1 for m in self._call_log() if endpoint is None or endpoint in m)

    def call_counts(self) -> Counter[str]:
        return Counter(self._call_log())

    def unauthorized(self) -> Reply:
        return Reply(401, b"", {"WWW-Authenticate": 'Basic realm="Kodi"'})

    def work(self, request: Recorded) -> None:
        """Kodi carries out a request's refreshes before it answers (refresh_seconds)."""
        if not self.refresh_seconds or request.path != "/jsonrpc" \
                or not self._authorized(request):
            return
        methods = _methods(request.body)
        calls = methods if isinstance(methods, list) else [methods]
        refreshes = sum(1 for m in calls if m and m.startswith("VideoLibrary.Refresh"))
        if refreshes:
            with self._worker:
                time.sleep(refreshes * self.refresh_seconds)

    def _authorized(self, request: Recorded) -> bool:
        if self.username is None and self.password is None:
            return True
        import base64

        header = request.header("Authorization") or ""
        if not header.startswith("Basic "):
            return False
        try:
            user, _, word = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == (self.username or "kodi") and word == (self.password or "")

    def handle(self, request: Recorded) -> Reply:
        if request.path.startswith("/image/") and request.method == "GET":
            if not self._authorized(request):
                return self.unauthorized()
            return self._image(request.path[len("/image/"):])
        if request.path != "/jsonrpc":
            return Reply(404, b"File not found", {"Content-Type": "text/plain"})
        if not self._authorized(request):
            return self.unauthorized()
        if request.method != "POST":
            return Reply(405)
        if "application/json" not in (request.header("Content-Type") or ""):
            return Reply(415)
        doc = request.json
        if doc is None:
            return json_reply({"jsonrpc": "2.0", "id": None, "error": {
                "code": -32700, "message": "Parse error."}})
        if isinstance(doc, list):
            if not doc:  # Kodi 20.1 answers an empty batch with one error object
                return json_reply({"jsonrpc": "2.0", "id": None, "error": {
                    "code": -32600, "message": "Invalid request."}})
            # One answer per call that has an id, in order; a notification gets none.
            answers = [a for a in (self._call(d) for d in doc) if a is not None]
            return json_reply(answers)
        answer = self._call(doc)
        if answer is None:
            return Reply(silent=True)  # a notification: executed, never answered
        return json_reply(answer)

    def _call(self, doc: Any) -> dict[str, Any] | None:
        if not isinstance(doc, dict) or not isinstance(doc.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {
                "code": -32600, "message": "Invalid request."}}
        has_id = "id" in doc
        method = doc["method"]
        params = doc.get("params") or {}
        handler = getattr(self, "rpc_" + method.replace(".", "_"), None)
        if handler is None:
            error = {"code": -32601, "message": "Method not found."}
            return {"jsonrpc": "2.0", "id": doc.get("id"), "error": error} if has_id else None
        try:
            result = handler(params)
        except _InvalidParams as exc:
            error = {"code": -32602, "message": "Invalid params.",
                     "data": {"method": method, "stack": {"message": str(exc),
                                                          "name": exc.name}}}
            return {"jsonrpc": "2.0", "id": doc.get("id"), "error": error} if has_id else None
        return {"jsonrpc": "2.0", "id": doc.get("id"), "result": result} if has_id else None

    # -- helpers --
    def _id(self) -> int:
        self._next += 1
        return self._next

    def _source_of(self, path: str) -> tuple[str, str] | None:
        for root, content in self.sources.items():
            if self.under(path, root):
                return root, content
        return None

    def _show_folder(self, root: str, file: str) -> str:
        sep = sep_of(root)
        rest = file[len(trailing(root, sep)):]
        return trailing(root, sep) + rest.split(sep)[0] + sep

    def scanning(self) -> bool:
        self._finish_scan()
        return time.monotonic() < self.scanning_until

    def _finish_scan(self) -> None:
        if self._pending_scan is not None and time.monotonic() >= self.scanning_until:
            additions, self._pending_scan = self._pending_scan, None
            self._add(additions)

    def _add(self, additions: Iterable[tuple[str, str]]) -> None:
        for kind, file in additions:
            if kind == "movie" and file not in self.movies.values():
                self.movies[self._id()] = file
                self.read(kind, file, cache=True)
            elif kind == "show" and file not in self.shows.values():
                self.shows[self._id()] = file
                self.read(kind, file, cache=True)
            elif kind == "episode" and file not in (f for _, f in self.episodes.values()):
                source = self._source_of(file)
                assert source is not None
                show = self._show_folder(source[0], file)
                show_id = next((i for i, f in self.shows.items() if f == show), None)
                if show_id is not None:
                    self.episodes[self._id()] = (show_id, file)
                    self.read(kind, file, cache=True)

    # -- what Kodi reads from disk, and its texture cache --
    def write(self, path: str, data: bytes | str, mtime: int | None = None) -> None:
        """A file on the fake's own disk (an NFO, a poster), as the player spells its path."""
        raw = data.encode() if isinstance(data, str) else data
        with self.lock:
            stamp = mtime if mtime is not None else int(time.time())
            old = self.written.get(path)
            if old is not None and mtime is None and old[0] >= stamp:
                stamp = old[0] + 1  # a rewrite is newer, as on a real disk a second later
            self.written[path] = (stamp, raw)

    def _file(self, path: str) -> tuple[int, bytes] | None:
        """(mtime, bytes) of a file Kodi would read at `path`, or None."""
        if path in self.written:
            return self.written[path]
        for root, real in self.disk.items():
            if under(path, root):
                import os

                rest = path[len(trailing(root, sep_of(root))):].split(sep_of(root))
                local = os.path.join(real, *rest)
                try:
                    with open(local, "rb") as handle:
                        data = handle.read()
                    stat = os.stat(local)
                except OSError:
                    return None
                return int(stat.st_mtime) or int(stat.st_ctime), data
        return None

    def _title(self, kind: str, path: str) -> str:
        """The NFO's <title>, or what Kodi makes of the name when there is none."""
        sep = sep_of(path)
        base = path.rstrip(sep)
        folder, _, name = base.rpartition(sep)
        stem = name.rsplit(".", 1)[0] if kind != "show" else name
        nfos = {"movie": [f"{folder}{sep}{stem}.nfo", f"{folder}{sep}movie.nfo"],
                "show": [f"{base}{sep}tvshow.nfo"],
                "episode": [f"{folder}{sep}{stem}.nfo"]}[kind]
        for nfo in nfos:
            found = self._file(nfo)
            match = re.search(rb"<title>(.*?)</title>", found[1], re.S) if found else None
            if match:
                from xml.sax.saxutils import unescape

                return unescape(match.group(1).decode("utf-8", "replace")).strip()
        if kind == "movie":
            return re.sub(r" \(\d{4}\)$", "", folder.rsplit(sep, 1)[-1])
        return stem

    def _art(self, kind: str, folder: str, names: Sequence[str]) -> dict[str, str]:
        """Art type -> art URL of the local artwork files Kodi finds under these names."""
        sep = sep_of(folder)
        art: dict[str, str] = {}
        for art_type in ART_TYPES[kind]:
            for name in names:
                for ext in ART_EXTENSIONS:
                    path = f"{folder.rstrip(sep)}{sep}{name}{art_type}{ext}"
                    if art_type not in art and self._file(path) is not None:
                        art[art_type] = kodi_image_url(path)
        return art

    def read(self, kind: str, path: str, *, cache: bool = False) -> KodiMeta:
        """Read an item's NFO and artwork, as a scan or refresh does; with `cache`, cache
        its own art not cached yet, as Kodi's scanner does (a stale copy stays)."""
        sep = sep_of(path)
        folder, _, name = path.rstrip(sep).rpartition(sep)
        stem = name.rsplit(".", 1)[0]
        show: str | None = None
        season = number = None
        if kind == "movie":
            art = self._art(kind, folder, [f"{stem}-", ""])
        elif kind == "episode":
            art = self._art(kind, folder, [f"{stem}-"])
            source = self._source_of(path)
            show = self._show_folder(source[0], path) if source else None
            match = re.search(r"[Ss](\d+)[Ee](\d+)", name)
            season, number = (int(match.group(1)), int(match.group(2))) if match else (None, None)
            if show is not None and season is not None:
                self._read_season(show, season)
        else:
            art = self._art(kind, path, [""])
            for number in self._season_numbers(path):
                self._read_season(path, number)
        meta = self.meta[path] = KodiMeta(self._title(kind, path), art, kind, show, season,
                                          number if kind == "episode" else None)
        if cache:
            for url in art.values():
                self.cache(url)
        return meta

    def meta_of(self, path: str) -> KodiMeta | None:
        """What Kodi holds for the item at `path` (read at its last scan or refresh)."""
        return self.meta.get(path)

    def _read_season(self, show: str, number: int) -> None:
        prefix = "season-specials-" if number == 0 else f"season{number:02d}-"
        self.season_art[(show, number)] = self._art("season", show, [prefix])

    def _season_numbers(self, show: str) -> list[int]:
        numbers = set()
        for file in self.files_under(show):
            match = re.search(r"[Ss](\d+)[Ee]\d+", file)
            if match and is_video(file):
                numbers.add(int(match.group(1)))
        return sorted(numbers)

    def cache(self, url: str) -> KodiTexture | None:
        """Kodi's texture cache for one art URL: the cached copy, caching the file now
        when there is none (never re-checked: Kodi does so only 24 h later)."""
        texture = self.textures.get(url)
        if texture is not None:
            return texture
        found = self._file(kodi_unwrap(url))
        if found is None:
            return None  # a skin icon, or a missing file: nothing is cached
        mtime, data = found
        self._next_texture += 1
        texture = self.textures[url] = KodiTexture(
            self._next_texture, url, f"d{mtime}s{len(data)}", data,
            time.strftime("%Y-%m-%d %H:%M:%S"))
        return texture

    def item_art(self, path: str) -> dict[str, str]:
        """Everything an item's `art` lists, as Kodi lists it: its own art, the skin's
        icon, and for an episode its season's and show's art (`season.poster`, ...)."""
        meta = self.meta_of(path)
        if meta is None:
            return {}
        art = dict(meta.art)
        if meta.kind == "episode" and meta.show is not None:
            if meta.season is not None:
                for key, url in self.season_art.get((meta.show, meta.season), {}).items():
                    art[f"season.{key}"] = url
            show = self.meta_of(meta.show)
            for key, url in (show.art if show is not None else {}).items():
                art[f"tvshow.{key}"] = url
        art["icon"] = ICONS[meta.kind]  # listed beside the real art (measured on 20.1)
        return art

    def display(self, path: str) -> None:
        """Someone browses to the item: every image it shows is cached if it is not yet."""
        with self.lock:
            for url in self.item_art(path).values():
                self.cache(url)
            if path.endswith(("/", "\\")):
                for (show, _), art in self.season_art.items():
                    if show == path:
                        for url in art.values():
                            self.cache(url)

    def served(self, url: str) -> bytes | None:
        """What `GET /image/<url>` serves: the cached copy (caching the file if needed)."""
        with self.lock:
            texture = self.cache(url)
            return None if texture is None else texture.data

    def _image(self, quoted: str) -> Reply:
        from urllib.parse import unquote

        texture = self.cache(unquote(quoted))
        if texture is None:
            return Reply(404, b"File not found", {"Content-Type": "text/plain"})
        return Reply(200, texture.data, {"Content-Type": "image/jpeg"})

    def _plan_scan(self, directory: str) -> list[tuple[str, str]]:
        source = self._source_of(directory)
        if source is None:
            return []  # outside every source: "OK", and nothing happens
        root, content = source
        if not under(directory, root):
            # Spelled in another case than the source (a disk ignoring case reaches the
            # folder): Kodi looks a folder's content settings up by the source's path as
            # stored, so a real Kodi may find none and add nothing. Not measured (no
            # Windows Kodi or SMB share here): the fake takes the stricter reading.
            return []
        new_shows: set[str] = set()
        additions: list[tuple[str, str]] = []
        for file in self.files_under(directory):
            if self.ignore_case:
                # Kodi builds the paths it stores from the folder as it was asked for and
                # the names the server lists below it.
                base = trailing(directory, sep_of(directory))
                file = base + file[len(base):]
            if not is_video(file):
                continue
            if content == "movies":
                additions.append(("movie", file))
                continue
            show = self._show_folder(root, file)
            if not self._has_show(show) and show not in new_shows:
                if not under(show, directory):
                    continue  # a season folder of a show Kodi does not know: skipped
                additions.append(("show", show))
                new_shows.add(show)
            additions.append(("episode", file))
        return additions

    def _has_show(self, folder: str) -> bool:
        return folder in self.shows.values()

    def _listed(self, items: list[dict[str, Any]], params: dict[str, Any]) -> list[dict]:
        flt = params.get("filter")
        if flt is not None:
            if not isinstance(flt, dict) or flt.get("field") != "path" or \
                    flt.get("operator") not in ("is", "startswith"):
                raise _InvalidParams("filter", "only path/is and path/startswith are "
                                     "modelled by the fake")
            value = str(flt.get("value", ""))
            pattern = value + ("%" if flt["operator"] == "startswith" else "")
            items = [i for i in items if sql_like(pattern, item_folder(i["file"]))]
        limits = params.get("limits")
        if isinstance(limits, dict):
            start, end = int(limits.get("start", 0)), limits.get("end")
            items = items[start:None if end is None else int(end)]
        return items

    @staticmethod
    def _page(rows: Sequence[Any], params: dict[str, Any]
              ) -> tuple[Sequence[Any], dict[str, int]]:
        """Rows [start, end) of `limits` and the answer's `limits`, as Kodi 20.1 gives them:
        `total` counts every row, `start` is at most `total` (`end: 0` gives no rows)."""
        total = len(rows)
        limits = params.get("limits")
        start, end = 0, total
        if isinstance(limits, dict):
            start = min(int(limits.get("start", 0)), total)
            end = min(int(limits.get("end", total)), total)
        page = rows[start:max(start, end)]
        return page, {"start": start, "end": start + len(page), "total": total}

    # -- the JSON-RPC methods metarr-sync uses --
    def rpc_JSONRPC_Ping(self, params: Any) -> str:
        return "pong"

    def rpc_JSONRPC_Version(self, params: Any) -> dict[str, Any]:
        return {"version": {"major": 13, "minor": 0, "patch": 0}}

    def rpc_Application_GetProperties(self, params: Any) -> dict[str, Any]:
        return {"name": "Kodi", "version": {"major": 20, "minor": 1, "revision": "fake",
                                            "tag": "stable"}}

    # Profiles.* as Kodi 20.1 answers them (label always; lockmode/thumbnail when asked).
    def _profile(self, label: str, params: Any) -> dict[str, Any]:
        extra = {"lockmode": 0, "thumbnail": ""}
        asked = (params or {}).get("properties") or [] if isinstance(params, dict) else []
        return {"label": label, **{k: v for k, v in extra.items() if k in asked}}

    def rpc_Profiles_GetCurrentProfile(self, params: Any) -> dict[str, Any]:
        return self._profile(self.profile, params)

    def rpc_Profiles_GetProfiles(self, params: Any) -> dict[str, Any]:
        profiles = [self._profile(label, params) for label in self.profiles]
        return {"limits": {"start": 0, "end": len(profiles), "total": len(profiles)},
                "profiles": profiles}

    def rpc_Files_GetSources(self, params: Any) -> dict[str, Any]:
        sources = [{"file": root, "label": root.rstrip("/\\").rsplit("/", 1)[-1]}
                   for root in self.sources]
        return {"limits": {"start": 0, "end": len(sources), "total": len(sources)},
                "sources": sources}

    def rpc_Files_GetDirectory(self, params: Any) -> dict[str, Any]:
        directory = str(params.get("directory") or "")
        sep = sep_of(directory)
        base = trailing(directory, sep)
        if self._source_of(base) is None and not any(self.under(r, base) for r in self.sources):
            raise _InvalidParams("directory", f"{directory} is not inside a source")
        entries: dict[str, str] = {}
        for file in self.files_under(base):
            if not same_file(file[:len(base)], base, self.ignore_case):
                continue  # the folder itself, were it a file
            name, more, _ = file[len(base):].partition(sep)
            if more:
                entries[base + name + sep] = "directory"
            else:
                entries[base + name] = "file"
        if not entries and base not in self.sources:
            raise _InvalidParams("directory", f"{directory} does not exist")
        files = [{"file": f, "filetype": t, "label": f.rstrip(sep).rsplit(sep, 1)[-1],
                  "type": "unknown"} for f, t in sorted(entries.items())]
        return {"files": files, "limits": {"start": 0, "end": len(files), "total": len(files)}}

    def rpc_XBMC_GetInfoBooleans(self, params: Any) -> dict[str, bool]:
        return {name: (self.scanning() if name == "Library.IsScanningVideo" else False)
                for name in params.get("booleans") or []}

    def rpc_Player_GetActivePlayers(self, params: Any) -> list[dict[str, Any]]:
        return [{"playerid": 1, "playertype": "internal", "type": "video"}] if self.playing \
            else []

    def rpc_GUI_ShowNotification(self, params: Any) -> str:
        if int(params.get("displaytime", 5000)) < 1500:
            raise _InvalidParams("displaytime", "Value must be at least 1500")
        self.notifications.append(dict(params))
        return "OK"

    def rpc_VideoLibrary_Scan(self, params: Any) -> str:
        directory = params.get("directory", "")
        if not isinstance(directory, str):
            raise _InvalidParams("directory", f"Invalid type {type(directory).__name__} "
                                 "received")
        self.scans.append(directory)
        if self.scanning():
            # Not queued: the running scan stops and this one is dropped.
            self._pending_scan, self.scanning_until = None, 0.0
            self.dropped_scans += 1
            return "OK"
        if not directory:
            self.full_scans += 1
            additions = [a for root in self.sources for a in self._plan_scan(root)]
        elif not directory.endswith(("/", "\\")):
            additions = []  # without the trailing separator Kodi adds nothing
        else:
            additions = self._plan_scan(directory)
        if self.scan_seconds:
            self._pending_scan = additions
            self.scanning_until = time.monotonic() + self.scan_seconds
        else:
            self._add(additions)
        return "OK"

    def rpc_VideoLibrary_Clean(self, params: Any) -> str:
        directory = params.get("directory") or ""
        if not directory:
            self.full_cleans += 1
        if self.scanning():
            return "OK"  # dropped
        if directory and params.get("content") != "movies":
            return "OK"  # a folder-scoped clean does nothing without a matching content
        for movie_id, file in list(self.movies.items()):
            if (not directory or file.startswith(directory)) and file not in self.files:
                del self.movies[movie_id]
                self.removed.append(file)
        return "OK"

    def _get(self, table: dict[int, Any], key: str, params: Any, name: str) -> dict:
        rows = [{key: i, "label": (f if isinstance(f, str) else f[1]).rstrip("/\\")
                 .rsplit("/", 1)[-1], "file": f if isinstance(f, str) else f[1]}
                for i, f in sorted(table.items())]
        rows = self._listed(rows, {k: v for k, v in params.items() if k != "limits"})
        page, limits = self._page(rows, params)
        wanted = params.get("properties") or []
        for row in page:
            meta = self.meta_of(row["file"]) or KodiMeta(row["label"], {})
            if "title" in wanted:
                row["title"] = meta.title
            if "art" in wanted:
                row["art"] = self.item_art(row["file"])
        return {"limits": limits, name: page}  # Kodi 20.1 sends the list even when empty

    def rpc_VideoLibrary_GetMovies(self, params: Any) -> dict[str, Any]:
        return self._get(self.movies, "movieid", params, "movies")

    def rpc_VideoLibrary_GetTVShows(self, params: Any) -> dict[str, Any]:
        return self._get(self.shows, "tvshowid", params, "tvshows")

    def rpc_VideoLibrary_GetEpisodes(self, params: Any) -> dict[str, Any]:
        show = params.get("tvshowid")
        rows = {i: e for i, e in self.episodes.items() if show is None or e[0] == show}
        return self._get(rows, "episodeid", params, "episodes")

    def _refresh(self, table: dict[int, Any], params: Any, field_name: str, readd: bool,
                 kind: str) -> str:
        item_id = params.get(field_name)
        if item_id not in table:
            raise _InvalidParams(field_name, f"Value {item_id} is not a known id")
        entry = table[item_id]
        path = entry if isinstance(entry, str) else entry[1]
        self.refreshed.append(path)
        if readd:  # deleted and re-added with the next free id
            del table[item_id]
            table[self._id()] = entry
        # The NFO and the art paths are read again; a cached copy of an art file stays.
        self.read(kind, path, cache=True)
        return "OK"

    def rpc_VideoLibrary_RefreshMovie(self, params: Any) -> str:
        return self._refresh(self.movies, params, "movieid", True, "movie")

    def rpc_VideoLibrary_RefreshEpisode(self, params: Any) -> str:
        return self._refresh(self.episodes, params, "episodeid", True, "episode")

    def rpc_VideoLibrary_RefreshTVShow(self, params: Any) -> str:
        return self._refresh(self.shows, params, "tvshowid", False, "show")

    def _details(self, table: dict[int, Any], params: Any, field_name: str, key: str
                 ) -> dict[str, Any]:
        item_id = params.get(field_name)
        if item_id not in table:
            raise _InvalidParams(field_name, f"Value {item_id} is not a known id")
        entry = table[item_id]
        path = entry if isinstance(entry, str) else entry[1]
        meta = self.meta_of(path) or KodiMeta("", {})
        row: dict[str, Any] = {field_name: item_id, "label": meta.title}
        wanted = params.get("properties") or []
        if "title" in wanted:
            row["title"] = meta.title
        if "file" in wanted:
            row["file"] = path
        if "showtitle" in wanted:
            row["showtitle"] = (self.meta_of(meta.show or "") or KodiMeta("", {})).title
        for number in ("season", "episode"):
            if number in wanted:
                row[number] = getattr(meta, number) if getattr(meta, number) is not None \
                    else -1
        if "art" in wanted:
            row["art"] = self.item_art(path)
        return {key: row}

    def rpc_VideoLibrary_GetMovieDetails(self, params: Any) -> dict[str, Any]:
        return self._details(self.movies, params, "movieid", "moviedetails")

    def rpc_VideoLibrary_GetTVShowDetails(self, params: Any) -> dict[str, Any]:
        return self._details(self.shows, params, "tvshowid", "tvshowdetails")

    def rpc_VideoLibrary_GetEpisodeDetails(self, params: Any) -> dict[str, Any]:
        return self._details(self.episodes, params, "episodeid", "episodedetails")

    def rpc_VideoLibrary_GetSeasons(self, params: Any) -> dict[str, Any]:
        show_id = params.get("tvshowid")
        show = self.shows.get(show_id)
        rows = []
        if show is not None:
            wanted = params.get("properties") or []
            for (folder, number), art in sorted(self.season_art.items()):
                if folder != show:
                    continue
                row: dict[str, Any] = {"seasonid": show_id * 1000 + number,
                                       "label": f"Season {number}"}
                if "season" in wanted:
                    row["season"] = number
                if "art" in wanted:
                    row["art"] = dict(art, **{f"tvshow.{k}": v for k, v in
                                              (self.meta_of(show) or KodiMeta("", {})).art
                                              .items()})
                rows.append(row)
        page, limits = self._page(rows, params)
        return {"limits": limits, "seasons": list(page)}

    def rpc_Textures_GetTextures(self, params: Any) -> dict[str, Any]:
        rows = sorted(self.textures.values(), key=lambda t: t.textureid)
        flt = params.get("filter")
        if isinstance(flt, dict):
            if flt.get("field") != "url" or flt.get("operator") != "is":
                raise _InvalidParams("filter", "only url/is is modelled by the fake")
            rows = [t for t in rows if t.url == flt.get("value")]
        wanted = params.get("properties") or []
        return {"textures": [{"textureid": t.textureid,
                              **{p: getattr(t, p) for p in wanted if hasattr(t, p)}}
                             for t in rows]}

    def rpc_Textures_RemoveTexture(self, params: Any) -> str:
        texture_id = params.get("textureid")
        url = next((u for u, t in self.textures.items() if t.textureid == texture_id), None)
        if url is None:  # measured: an unknown id is -32602, not "OK"
            raise _InvalidParams("textureid", f"Value {texture_id} is not a known texture")
        del self.textures[url]
        self.removed_textures.append(url)
        return "OK"

    def _remove(self, table: dict[int, Any], params: Any, field_name: str) -> str:
        entry = table.pop(params.get(field_name), None)
        if entry is not None:
            self.removed.append(entry if isinstance(entry, str) else entry[1])
        return "OK"  # also for an unknown id

    def rpc_VideoLibrary_RemoveMovie(self, params: Any) -> str:
        return self._remove(self.movies, params, "movieid")

    def rpc_VideoLibrary_RemoveEpisode(self, params: Any) -> str:
        return self._remove(self.episodes, params, "episodeid")

    def rpc_VideoLibrary_RemoveTVShow(self, params: Any) -> str:
        show = params.get("tvshowid")
        for episode_id in [i for i, e in self.episodes.items() if e[0] == show]:
            del self.episodes[episode_id]
        return self._remove(self.shows, params, "tvshowid")

    # -- for tests --
    def library_files(self) -> set[str]:
        with self.lock:
            self._finish_scan()
            return set(self.movies.values()) | set(self.shows.values()) | {
                f for _, f in self.episodes.values()}

    def player(self, name: str, mappings: Iterable[tuple[str, str]] = (), **extra: Any
               ) -> dict[str, Any]:
        """This Kodi as a player of support.configs.config_with."""
        if self.username or self.password:
            extra = {"username": self.username or "kodi", "password": self.password or "",
                     **extra}
        return _player("kodi", name, self.url, mappings, extra)

    def toml(self, name: str, mappings: Iterable[tuple[str, str]] = (), **extra: Any) -> str:
        return _toml(self.player(name, mappings, **extra))


def _methods(body: bytes) -> str | list[str] | None:
    """The method of a JSON-RPC request body, the methods of a batch, or None."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        return None
    if isinstance(doc, list):
        return [str(d.get("method")) for d in doc if isinstance(d, dict)]
    if isinstance(doc, dict) and isinstance(doc.get("method"), str):
        return doc["method"]
    return None


class _InvalidParams(Exception):
    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


# --- Plex ---------------------------------------------------------------------------------

@dataclass
class PlexSection:
    key: str
    type: str  # movie | show
    title: str
    locations: list[str]
    #: The metadata agent; None: Plex's default for the type (Plex Movie / Plex Series),
    #: which does not read NFO files.
    agent: str | None = None
    #: A section deleted and added again gets a new one (FakePlex.rebuild_section).
    uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def agent_id(self) -> str:
        if self.agent is not None:
            return self.agent
        return "tv.plex.agents.movie" if self.type == "movie" else "tv.plex.agents.series"


@dataclass
class PlexItem:
    rating_key: str
    type: str  # movie | show | episode
    section: str
    file: str  # the video file; for shows the show folder
    show: str | None = None  # rating key of an episode's show
    guids: list[str] = field(default_factory=list)
    deleted: bool = False
    #: Files of versions whose file went missing when a new file joined the item (an
    #: upgrade): listed as further Media until the section's trash is emptied.
    unavailable: list[str] = field(default_factory=list)
    #: updatedAt (epoch seconds, the server's clock): set when a scan adds the item or
    #: changes its files or marks it missing, and by a refresh; never by a read. Items
    #: put in by a test were updated long ago (PLEX_LONG_AGO) unless it says otherwise.
    updated_at: int = 0


#: updatedAt of the items a test puts in a FakePlex (2025-01-01).
PLEX_LONG_AGO = 1_735_689_600
#: The parameters a FakePlex section listing understands; any other is answered 400 (a
#: real Plex ignores a filter it does not know and lists everything: a fake that did so
#: would hide a misspelt filter).
PLEX_LISTING_PARAMS = {"type", "includeGuids", "X-Plex-Container-Start",
                       "X-Plex-Container-Size", "X-Plex-Token", "updatedAt>>"}


class FakePlex(FakePlayer):
    """Plex Media Server: X-Plex-Token header, JSON answers, GET partial scans (PUT/POST
    404 since 1.32.7), 200 for folders outside every section (then ignored), PUT item
    refresh, emptyTrash, paged section listings and a show's episodes (allLeaves, paged
    the same way; every request counted, `count()`); a bad
    token gets 401 with HTML.

    Scans run in the background, as Plex's do: a partial scan's GET is answered before
    anything changes, and the scan runs `scan_lag` seconds after it arrived, seen only by
    requests arriving after that (0: from the next request on; None: only when the test
    calls `finish_scans()`, the unforgiving model of a busy scanner). Only a scan that has
    run adds new files and marks the items of deleted files missing (`deletedAt`).
    `emptyTrash` then permanently deletes EVERY item of its section marked missing,
    whoever's it is (`purged` lists their files), and a show left without episodes.

    updatedAt: set (from the server's clock, FakePlayer.clock) when a scan adds an item,
    changes its files or marks it missing, and by a refresh; never by a read. A section
    listing answers the filter `updatedAt>>=<epoch>` (updated strictly after) and nothing
    else: an unknown parameter is a 400, never ignored. `GET /library/metadata/{k1,k2}`
    answers the items it has among those keys (404 when none).

    Upgrades (as users report Plex doing them; no real Plex in this rig): a partial scan
    marks a file that is gone missing; a new file in the same folder that replaces a
    missing one (same folder for a movie, same SxxEyy for an episode) joins that item as
    its file, the old one staying as an unavailable version until emptyTrash. With
    `upgrades_as_new_items` the new file becomes an item of its own instead and the old
    item stays, marked missing (deletedAt), until emptyTrash. The trash is never emptied
    automatically (as with Plex's "Empty trash automatically after every scan" off).
    """

    kind = "plex"
    PAGE_DEFAULT = 50

    def __init__(self, *, token: str = "plex-token-fake", sections: list[PlexSection] | None
                 = None, version: str = "1.41.3.9314", scan_lag: float | None = 0.0,
                 **kw: Any):
        super().__init__(**kw)
        self.scan_lag = scan_lag
        #: scans Plex's scanner has not run yet: (when it runs or None, section, folder)
        self.queued: list[tuple[float | None, str, str | None]] = []
        self.purged: list[str] = []  # files of the items emptyTrash deleted
        self.token = token
        self.version = version
        self.machine = uuid.uuid4().hex
        self.sections = sections if sections is not None else [
            PlexSection("1", "movie", "Movies", ["/media/movies"]),
            PlexSection("2", "show", "TV Shows", ["/media/tv"])]
        self.items: dict[str, PlexItem] = {}
        self._next = 100
        self.playing = 0
        self.scans: list[tuple[str, str | None]] = []  # (section key, path or None)
        self.ignored_scans: list[str] = []  # folders outside the section's locations
        self.full_scans = 0
        self.refreshed: list[str] = []  # rating keys
        self.analyzed: list[str] = []
        self.emptied: list[str] = []  # section keys whose trash was emptied
        self.upgrades_as_new_items = False

    def endpoint(self, method: str, path: str, body: bytes) -> str:
        path = re.sub(r"^/library/sections/[^/]+/", "/library/sections/{key}/", path)
        path = re.sub(r"^/library/metadata/[^/]+", "/library/metadata/{id}", path)
        return f"{method} {path}"

    def unauthorized(self) -> Reply:
        # Plex answers a bad token with an HTML page even when JSON was asked for.
        return Reply(401, b"<html><head><title>Unauthorized</title></head><body>"
                     b"<h1>401 Unauthorized</h1></body></html>", {"Content-Type": "text/html"})

    def _section(self, key: str) -> PlexSection | None:
        return next((s for s in self.sections if s.key == key), None)

    def _new_key(self) -> str:
        self._next += 1
        return str(self._next)

    def plex_time(self) -> int:
        """The server's clock, as Plex stamps updatedAt."""
        return int(time.time() + self.clock)

    def rebuild_section(self, key: str) -> PlexSection:
        """The section deleted and added again behind metarr-sync's back: a new key and
        uuid, its items scanned afresh under new rating keys (updatedAt now)."""
        with self.lock:
            old = self._section(key)
            assert old is not None
            new = PlexSection(str(max(int(s.key) for s in self.sections) + 1), old.type,
                              old.title, list(old.locations), old.agent)
            self.sections[self.sections.index(old)] = new
            renamed: dict[str, str] = {}
            for item in sorted((i for i in self.items.values() if i.section == key),
                               key=lambda i: (i.type != "show", int(i.rating_key))):
                del self.items[item.rating_key]
                renamed[item.rating_key] = item.rating_key = self._new_key()
                item.section, item.updated_at = new.key, self.plex_time()
                item.show = renamed.get(item.show, item.show) if item.show else None
                self.items[item.rating_key] = item
            return new

    def handle(self, request: Recorded) -> Reply:
        path, method = request.path, request.method
        self._run_scans(request.at)  # what the scanner did before this request arrived
        if path == "/identity" and method == "GET":
            return json_reply({"MediaContainer": {"size": 0, "claimed": True,
                                                  "machineIdentifier": self.machine,
                                                  "version": self.version}})
        token = request.header("X-Plex-Token") or request.param("X-Plex-Token")
        if token != self.token:
            return self.unauthorized()
        if path == "/library/sections" and method == "GET":
            return json_reply({"MediaContainer": {"size": len(self.sections), "Directory": [
                {"key": s.key, "uuid": s.uuid, "type": s.type, "title": s.title,
                 "refreshing": False,
                 "agent": s.agent_id, "Location": [
                     {"id": n + 1, "path": loc} for n, loc in enumerate(s.locations)]}
                for s in self.sections]}})
        if path == "/status/sessions" and method == "GET":
            metadata = [{"type": "movie", "title": "Something"}] * self.playing
            return json_reply({"MediaContainer": {"size": self.playing,
                                                  **({"Metadata": metadata} if metadata
                                                     else {})}})
        match = re.fullmatch(r"/library/sections/([^/]+)/(refresh|all|emptyTrash)", path)
        if match:
            section = self._section(match.group(1))
            if section is None:
                return Reply(404)
            action = match.group(2)
            if action == "refresh":
                return self._scan(section, request) if method == "GET" else Reply(404)
            if action == "all":
                return self._all(section, request) if method == "GET" else Reply(405)
            if method != "PUT":
                return Reply(404)
            self._empty_trash(section)
            return Reply(200)
        match = re.fullmatch(r"/library/metadata/([^/]+)/allLeaves", path)
        if match:
            if method != "GET":
                return Reply(405)
            show = self.items.get(match.group(1))
            if show is None:
                return Reply(404)
            return self._paged(self._leaves(show.rating_key), request,
                               {"key": show.rating_key})
        match = re.fullmatch(r"/library/metadata/([^/]+)/(refresh|analyze)", path)
        if match:
            if method != "PUT":
                return Reply(405)
            if match.group(1) not in self.items:
                return Reply(404)
            if match.group(2) == "refresh":
                self.items[match.group(1)].updated_at = self.plex_time()
            (self.refreshed if match.group(2) == "refresh" else self.analyzed).append(
                match.group(1))
            return Reply(200)
        match = re.fullmatch(r"/library/metadata/([0-9,]+)", path)
        if match and method == "GET":
            found = [self.items[k] for k in match.group(1).split(",") if k in self.items]
            if not found:
                return Reply(404)
            with_guids = request.param("includeGuids") == "1"
            return json_reply({"MediaContainer": {"size": len(found), "Metadata": [
                {**self._meta(item, with_guids), "librarySectionID": item.section}
                for item in found]}})
        return Reply(404, b"<html><body>404 Not Found</body></html>",
                     {"Content-Type": "text/html"})

    def _scan(self, section: PlexSection, request: Recorded) -> Reply:
        folder = request.param("path")
        self.scans.append((section.key, folder))
        if folder is None:
            self.full_scans += 1
        elif not any(under(folder, loc) for loc in section.locations) or is_video(folder):
            self.ignored_scans.append(folder)  # 200 all the same; Plex just skips it
            return Reply(200)
        # Queued: answered now, run by the scanner later (never within this answer).
        due = None if self.scan_lag is None else request.at + self.scan_lag
        self.queued.append((due, section.key, folder))
        return Reply(200)

    def _run_scans(self, now: float | None = None) -> None:
        """Run the queued scans due by `now` (None: all of them), in the order sent."""
        with self.lock:
            waiting = []
            for due, key, folder in self.queued:
                if now is not None and (due is None or due > now):
                    waiting.append((due, key, folder))
                    continue
                section = self._section(key)
                if section is None:
                    continue
                for place in [folder] if folder is not None else section.locations:
                    self._scan_folder(section, place)
            self.queued = waiting

    def finish_scans(self) -> None:
        """Plex's scanner has worked through every scan sent so far."""
        self._run_scans(None)

    def _empty_trash(self, section: PlexSection) -> None:
        """Delete every item of the section marked missing, and the shows left empty."""
        for key, item in list(self.items.items()):
            if item.section == section.key and item.deleted:
                self.purged.append(item.file)
                del self.items[key]
            elif item.section == section.key and item.unavailable:
                self.purged += item.unavailable  # versions whose file went missing
                item.unavailable.clear()
        shows = {i.show for i in self.items.values() if i.show is not None}
        for key, item in list(self.items.items()):
            if item.section == section.key and item.type == "show" and key not in shows:
                self.purged.append(item.file)
                del self.items[key]
        self.emptied.append(section.key)

    def trash(self, section_key: str) -> list[str]:
        """Files of the section's items marked missing (what emptyTrash would delete)."""
        with self.lock:
            return sorted(i.file for i in self.items.values()
                          if i.section == section_key and i.deleted)

    def put_item(self, file: str, section_key: str | None = None, *,
                 deleted: bool = False) -> PlexItem:
        """An item Plex already has (a show's episode brings its show), scanned long ago."""
        with self.lock:
            section = next(s for s in self.sections if (
                s.key == section_key if section_key else any(under(file, loc)
                                                             for loc in s.locations)))
            if section.type == "movie":
                item = PlexItem(self._new_key(), "movie", section.key, file, deleted=deleted,
                                updated_at=PLEX_LONG_AGO)
            else:
                location = next(loc for loc in section.locations if under(file, loc))
                sep = sep_of(location)
                show_folder = trailing(location, sep) + \
                    file[len(trailing(location, sep)):].split(sep)[0]
                show = next((i for i in self.items.values()
                             if i.type == "show" and i.file == show_folder), None)
                if show is None:
                    show = PlexItem(self._new_key(), "show", section.key, show_folder,
                                    updated_at=PLEX_LONG_AGO)
                    self.items[show.rating_key] = show
                item = PlexItem(self._new_key(), "episode", section.key, file,
                                show=show.rating_key, deleted=deleted,
                                updated_at=PLEX_LONG_AGO)
            self.items[item.rating_key] = item
            return item

    def put_show(self, folder: str, files: Sequence[str], section_key: str = "2") -> str:
        """A show Plex already has, with these episodes (quicker than put_item for a
        big section); the show's rating key."""
        with self.lock:
            show = PlexItem(self._new_key(), "show", section_key, folder,
                            updated_at=PLEX_LONG_AGO)
            self.items[show.rating_key] = show
            for file in files:
                key = self._new_key()
                self.items[key] = PlexItem(key, "episode", section_key, file,
                                           show=show.rating_key, updated_at=PLEX_LONG_AGO)
            return show.rating_key

    def _scan_folder(self, section: PlexSection, folder: str) -> None:
        present = set(self.files_under(folder))
        known = {i.file: i for i in self.items.values() if i.section == section.key}
        now = self.plex_time()
        for item in known.values():
            if item.type != "show" and under(item.file, folder):
                deleted = item.file not in present
                if deleted != item.deleted:
                    item.deleted, item.updated_at = deleted, now
        location = next(loc for loc in section.locations if under(folder, loc))
        sep = sep_of(location)
        for file in sorted(present):
            if not is_video(file) or file in known:
                continue
            replaced = None if self.upgrades_as_new_items else self._replaced_by(
                file, [i for i in known.values() if i.deleted])
            if replaced is not None:
                replaced.unavailable.append(replaced.file)
                replaced.file, replaced.deleted, replaced.updated_at = file, False, now
                continue
            if section.type == "movie":
                key = self._new_key()
                self.items[key] = PlexItem(key, "movie", section.key, file, updated_at=now)
                continue
            rest = file[len(trailing(location, sep)):]
            show_folder = trailing(location, sep) + rest.split(sep)[0]
            show = next((i for i in self.items.values()
                         if i.type == "show" and i.file == show_folder), None)
            if show is None:
                key = self._new_key()
                show = self.items[key] = PlexItem(key, "show", section.key, show_folder,
                                                  updated_at=now)
            key = self._new_key()
            self.items[key] = PlexItem(key, "episode", section.key, file, show=show.rating_key,
                                       updated_at=now)

    @staticmethod
    def _replaced_by(file: str, missing: list[PlexItem]) -> PlexItem | None:
        """The missing movie or episode a new file replaces: a movie in the same folder,
        an episode in the same folder with the same SxxEyy."""
        folder = file.rstrip("/\\").rsplit(sep_of(file), 1)[0]
        number = re.search(r"(?i)S\d+E\d+", file)
        for item in missing:
            if item.type == "show" or item.file.rsplit(sep_of(file), 1)[0] != folder:
                continue
            if item.type == "movie":
                return item
            other = re.search(r"(?i)S\d+E\d+", item.file)
            if number and other and number.group(0).lower() == other.group(0).lower():
                return item
        return None

    def _rows(self, section: PlexSection, wanted: str | None) -> list[PlexItem]:
        """The section's items of one type (None: all), in rating-key order."""
        return [i for k, i in sorted(self.items.items(), key=lambda kv: int(kv[0]))
                if i.section == section.key and (wanted is None or i.type == wanted)]

    def _all(self, section: PlexSection, request: Recorded) -> Reply:
        unknown = sorted(set(request.query) - PLEX_LISTING_PARAMS)
        if unknown:
            return Reply(400, f"unknown filter {unknown}".encode())
        wanted = {"1": "movie", "2": "show", "4": "episode"}.get(request.param("type") or "")
        rows = self._rows(section, wanted)
        after = request.param("updatedAt>>")
        if after is not None:
            if not after.isdigit():
                return Reply(400, b"updatedAt takes epoch seconds")
            rows = [i for i in rows if i.updated_at > int(after)]
        return self._paged(rows, request, {"librarySectionID": section.key})

    def _leaves(self, show_key: str) -> list[PlexItem]:
        """A show's episodes (allLeaves), in rating-key order."""
        return [i for _, i in sorted(self.items.items(), key=lambda kv: int(kv[0]))
                if i.show == show_key]

    def _paged(self, rows: Sequence[PlexItem], request: Recorded,
               extra: dict[str, Any]) -> Reply:
        """One page of a listing (a section's items or a show's episodes), paged by
        X-Plex-Container-Start/Size as query parameters or headers, as Plex does; without
        a size, PAGE_DEFAULT items (a client must page)."""
        start = int(request.param("X-Plex-Container-Start")
                    or request.header("X-Plex-Container-Start") or 0)
        size = int(request.param("X-Plex-Container-Size")
                   or request.header("X-Plex-Container-Size") or self.PAGE_DEFAULT)
        page = rows[start:start + size]
        with_guids = request.param("includeGuids") == "1"
        metadata = [self._meta(item, with_guids) for item in page]
        container: dict[str, Any] = {"size": len(page), "totalSize": len(rows),
                                     "offset": start, **extra}
        if metadata:
            container["Metadata"] = metadata
        return json_reply({"MediaContainer": container})

    @staticmethod
    def _meta(item: PlexItem, with_guids: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"ratingKey": item.rating_key,
                                 "key": f"/library/metadata/{item.rating_key}",
                                 "type": item.type,
                                 "title": item.file.rstrip("/\\").rsplit("/", 1)[-1]}
        if item.type == "show":
            entry["Location"] = [{"path": item.file}]
        else:  # an upgraded item lists its unavailable old versions too
            entry["Media"] = [{"id": int(item.rating_key) * 100 + n,
                               "Part": [{"id": int(item.rating_key) * 100 + n, "file": file}]}
                              for n, file in enumerate([item.file, *item.unavailable])]
        if with_guids:
            entry["Guid"] = [{"id": g} for g in item.guids]
        if item.deleted:
            entry["deletedAt"] = int(time.time())
        return entry

    def library_files(self, settled: bool = True) -> set[str]:
        """What Plex lists and can play; `settled`: once its queued scans have run."""
        if settled:
            self.finish_scans()
        with self.lock:
            return {i.file for i in self.items.values() if not i.deleted}

    def entries(self) -> dict[str, list[str]]:
        """What a viewer sees: rating key -> the files of each listed item (deleted ones
        and unavailable versions included: they show until the trash is emptied)."""
        with self.lock:
            return {k: [i.file, *i.unavailable] for k, i in self.items.items()
                    if i.type != "show"}

    def player(self, name: str, mappings: Iterable[tuple[str, str]] = (), **extra: Any
               ) -> dict[str, Any]:
        """This Plex as a player of support.configs.config_with."""
        return _player("plex", name, self.url, mappings, {"token": self.token, **extra})

    def toml(self, name: str, mappings: Iterable[tuple[str, str]] = (), **extra: Any) -> str:
        return _toml(self.player(name, mappings, **extra))


# --- Jellyfin -----------------------------------------------------------------------------

@dataclass
class JellyfinLibrary:
    name: str
    collection_type: str  # movies | tvshows
    locations: list[str]
    item_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    #: LibraryOptions fields that differ from a library created in Jellyfin 10.11's web
    #: editor (see library_options), e.g. {"MetadataSavers": ["Nfo"]}.
    options: dict[str, Any] = field(default_factory=dict)

    def library_options(self) -> dict[str, Any]:
        """LibraryOptions as GET /Library/VirtualFolders sends them (OpenAPI 10.11/12.0):
        a new library's defaults (no metadata saver: Jellyfin's editor leaves "Nfo" off
        for a new library), overridden by `options`."""
        item_type = "Movie" if self.collection_type == "movies" else "Series"
        return {
            "Enabled": True, "EnableRealtimeMonitor": True, "SaveLocalMetadata": False,
            "EnableInternetProviders": True, "PreferredMetadataLanguage": "en",
            "MetadataCountryCode": "US", "SeasonZeroDisplayName": "Specials",
            "MetadataSavers": [], "DisabledLocalMetadataReaders": [],
            "LocalMetadataReaderOrder": ["Nfo"], "PathInfos": [
                {"Path": location} for location in self.locations],
            "TypeOptions": [{"Type": item_type,
                             "MetadataFetchers": ["TheMovieDb", "The Open Movie Database"],
                             "MetadataFetcherOrder": ["TheMovieDb",
                                                      "The Open Movie Database"],
                             "ImageFetchers": ["TheMovieDb"],
                             "ImageFetcherOrder": ["TheMovieDb"], "ImageOptions": []}],
            **self.options,
        }


@dataclass
class JellyfinItem:
    id: str
    type: str  # Movie | Series | Episode
    path: str
    library: str  # the library's ItemId
    series_id: str | None = None
    provider_ids: dict[str, str] = field(default_factory=dict)
    #: DateCreated's stand-in: the order items were added in
    created: int = field(default_factory=lambda: next(_CREATED))
    #: DateLastSaved: set when the item is created (Jellyfin: its first metadata save,
    #: queued by the scan that adds it), refreshed or moved (a moved file is a new item);
    #: never by a read. None: never saved (excluded by minDateLastSaved, as Jellyfin's
    #: `DateLastSaved != null` filter does).
    saved: datetime | None = field(default_factory=lambda: datetime.now(UTC))

    @property
    def name(self) -> str:
        return self.path.rstrip("/\\").rsplit("/", 1)[-1]


@dataclass
class JellyfinRefresher:
    """A pending FileRefresher of Jellyfin's library monitor: the paths it will walk up,
    and when its wait ends (None: when the test says)."""

    path: str
    paths: list[str]
    due: float | None


_CREATED = itertools.count()
_MEDIABROWSER_TOKEN = re.compile(r'(?i)\bToken="([^"]*)"')


class FakeJellyfin(FakePlayer):
    """Jellyfin: `Authorization: MediaBrowser ... Token="..."` (legacy X-Emby-Token and
    api_key are refused, as Jellyfin 12 does), /System/Info/Public without auth,
    POST /Library/Media/Updated (204; the reported paths are scanned later), POST
    /Items/{id}/Refresh with query parameters (204, 404 unknown), paged /Items listings.
    With `emby=True` it takes X-Emby-Token instead, as Emby does.

    Listings page by offset in the order asked for, as Jellyfin's do: `sortBy` of
    SortName (here the name case-folded), Name, ProductionYear (none here: all tie) and
    DateCreated (the order items were added). Less forgiving than Jellyfin, which falls
    back to SortName alone (ties in any order): a page (`limit` or `startIndex`) asked
    without a sort, or with a sort it does not know, gets 400.
    `enableTotalRecordCount=false` makes TotalRecordCount the page's own size, as
    Jellyfin's QueryResult does. `between_pages`, when set, is called after each listing
    page is answered (the library changing while it is listed).

    Media reports go through a model of Jellyfin's library monitor (LibraryMonitor.cs,
    FileRefresher.cs): the answer comes first and changes nothing. A reported path joins a
    pending refresher when it is that refresher's path, lies inside it, holds it, or is its
    sibling (the refresher moves up to the common parent); otherwise it gets a refresher
    of its own. A refresher waits `monitor_delay` seconds (Jellyfin: LibraryMonitorDelay,
    60 s; every path joining restarts the wait; 0: it has run before the next request;
    None: only when the test calls `finish_validations()`), then walks each of its paths
    up to the nearest item the server knows (see _affected) and validates each distinct
    folder found once. A folder reached that is a library folder is a validation of the
    whole library folder: counted in `root_validations`. Nothing a report finds is
    listed before its refresher has run."""

    kind = "jellyfin"

    def __init__(self, *, token: str = "jellyfin-api-key-fake",
                 libraries: list[JellyfinLibrary] | None = None, version: str = "10.11.11",
                 emby: bool = False, admin: bool = True, monitor_delay: float | None = 0.0,
                 **kw: Any):
        super().__init__(**kw)
        self.token = token
        self.monitor_delay = monitor_delay
        self.refreshers: list[JellyfinRefresher] = []
        #: Every folder validated, in order, and those that were a library folder whole.
        self.validations: list[str] = []
        self.root_validations: list[str] = []
        self.version = version
        self.emby = emby
        self.admin = admin
        self.server_id = uuid.uuid4().hex
        self.libraries = libraries if libraries is not None else [
            JellyfinLibrary("Movies", "movies", ["/media/movies"]),
            JellyfinLibrary("Shows", "tvshows", ["/media/tv"])]
        self.items: dict[str, JellyfinItem] = {}
        self.sessions: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []  # every reported {Path, UpdateType}
        self.refreshed: list[tuple[str, dict[str, str]]] = []  # (item id, query)
        self.messages: list[dict[str, Any]] = []
        self.between_pages: Callable[[Recorded], None] | None = None

    def endpoint(self, method: str, path: str, body: bytes) -> str:
        path = re.sub(r"^/Items/[0-9a-fA-F-]{8,}", "/Items/{id}", path)
        path = re.sub(r"^/Sessions/[^/]+/", "/Sessions/{id}/", path)
        return f"{method} {path}"

    def _token(self, request: Recorded) -> str | None:
        if self.emby:
            return request.header("X-Emby-Token") or request.param("api_key")
        header = request.header("Authorization") or ""
        if header.lower().startswith("mediabrowser"):
            found = _MEDIABROWSER_TOKEN.search(header)
            return found.group(1) if found else None
        return None

    def _library_of(self, path: str) -> tuple[JellyfinLibrary, str] | None:
        for library in self.libraries:
            for location in library.locations:
                if self.under(path, location):
                    return library, location
        return None

    def _fold(self, path: str) -> str:
        return path.casefold() if self.ignore_case else path

    def handle(self, request: Recorded) -> Reply:
        path, method = request.path, request.method
        lower = path.lower()
        self._run_refreshers(request.at)  # what the monitor did before this request came
        if lower == "/system/info/public" and method == "GET":
            return json_reply({"LocalAddress": self.url, "ServerName": "fake-jellyfin",
                               "Version": self.version,
                               "ProductName": "Emby Server" if self.emby else
                               "Jellyfin Server", "Id": self.server_id,
                               "StartupWizardCompleted": True})
        if self._token(request) != self.token:
            return Reply(401)
        if lower == "/system/info" and method == "GET":
            return json_reply({"ServerName": "fake-jellyfin", "Version": self.version,
                               "Id": self.server_id, "OperatingSystem": "Linux"})
        if lower in ("/library/virtualfolders", "/library/virtualfolders/query") \
                and method == "GET":
            if not self.admin:
                return Reply(403)
            folders = [{"Name": lib.name, "Locations": list(lib.locations),
                        "CollectionType": lib.collection_type, "ItemId": lib.item_id,
                        "LibraryOptions": lib.library_options(), "RefreshStatus": "Idle"}
                       for lib in self.libraries]
            return json_reply({"Items": folders, "TotalRecordCount": len(folders)}
                              if lower.endswith("/query") else folders)
        if lower == "/library/media/updated" and method == "POST":
            body = request.json
            updates = body.get("Updates") if isinstance(body, dict) else None
            if not isinstance(updates, list):
                return Reply(400, b'{"title":"One or more validation errors occurred."}',
                             {"Content-Type": "application/json"})
            for update in updates:
                self.updates.append(dict(update))
                self._report(str(update.get("Path", "")), request.at)
            return Reply(200 if self.emby else 204)
        if lower == "/items" and method == "GET":
            reply = self._items(request)
            if self.between_pages is not None and reply.status == 200 \
                    and request.param("limit") is not None:
                self.between_pages(request)
            return reply
        match = re.fullmatch(r"/Items/([^/]+)/Refresh", path, flags=re.IGNORECASE)
        if match and method == "POST":
            if not self.admin:
                return Reply(403)
            if match.group(1) not in self.items:
                return Reply(404)
            self.items[match.group(1)].saved = self.server_time()  # the refresh saves it
            self.refreshed.append((match.group(1), {k: v[0] for k, v in request.query.items()}))
            return Reply(204)
        match = re.fullmatch(r"/Items/([^/]+)", path, flags=re.IGNORECASE)
        if match and method == "GET":
            item = self.items.get(match.group(1))
            return json_reply(self._dto(item, {"Path", "ProviderIds"})) if item else Reply(404)
        if lower == "/sessions" and method == "GET":
            return json_reply(self.sessions)
        match = re.fullmatch(r"/Sessions/([^/]+)/Message", path, flags=re.IGNORECASE)
        if match and method == "POST":
            self.messages.append({"session": match.group(1), **(request.json or {}),
                                  **{k: v[0] for k, v in request.query.items()}})
            return Reply(204)
        return Reply(404)

    def _report(self, path: str, at: float) -> None:
        """LibraryMonitor.CreateRefresher: the path joins a pending refresher or starts
        one; joining restarts the refresher's wait."""
        if not path:
            return
        due = None if self.monitor_delay is None else at + self.monitor_delay
        parent = path.rstrip("/\\").rsplit(sep_of(path), 1)[0]
        for refresher in self.refreshers:
            other_parent = refresher.path.rstrip("/\\").rsplit(sep_of(refresher.path), 1)[0]
            if under(path, refresher.path):  # the same path, or inside it
                refresher.paths.append(path)
            elif under(refresher.path, path):  # the new path holds it
                refresher.path = path
                refresher.paths.append(path)
            elif parent == other_parent:  # siblings: the refresher moves up to the parent
                refresher.path = parent
                refresher.paths += [parent, path]
            else:
                continue
            refresher.due = due
            return
        self.refreshers.append(JellyfinRefresher(path, [path], due))

    def _run_refreshers(self, now: float | None) -> None:
        """Run the refreshers whose wait ended by `now` (None: all): each walks its
        paths up and validates each distinct folder found once (FileRefresher)."""
        with self.lock:
            ready = [r for r in self.refreshers
                     if now is None or (r.due is not None and r.due <= now)]
            self.refreshers = [r for r in self.refreshers if r not in ready]
            for refresher in ready:
                scopes: list[str] = []
                for path in dict.fromkeys(refresher.paths):
                    place = self._library_of(path)
                    scope = self._affected(path, place[1]) if place else None
                    if scope is not None and scope not in scopes:
                        scopes.append(scope)
                for scope in scopes:
                    self._rescan(scope)

    def reset_log(self) -> None:
        super().reset_log()
        with self.lock:
            self.validations.clear()
            self.root_validations.clear()

    def finish_validations(self) -> None:
        """Jellyfin's library monitor has run every refresher pending."""
        self._run_refreshers(None)

    def _rescan(self, path: str) -> None:
        """Validate what a reported path lands on, at once: the path walks up to the
        nearest item the server knows (the parent of an item whose file is gone); an item
        whose file is there is only refreshed, a folder is validated: items below it whose
        files are gone are deleted, new files added (a renamed file is a new item: ids
        come from paths)."""
        place = self._library_of(path)
        if place is None:
            return
        library, location = place
        if self.ignore_case:
            path = windows(path, location)
        scope = self._affected(path, location)
        if scope is None:
            return  # a known item whose file is there: a metadata refresh, nothing more
        path = scope
        self.validations.append(path)
        if path.rstrip("/\\") == location.rstrip("/\\"):
            self.root_validations.append(location)
        present = set(self.files_under(path)) | ({path} if path in self.files else set())
        held = {self._fold(f) for f in present}
        for item_id, item in list(self.items.items()):
            if item.type != "Series" and self.under(item.path, path) \
                    and self._fold(item.path) not in held:
                del self.items[item_id]
            elif item.type == "Series" and self.under(item.path, path) and \
                    not any(self.under(f, item.path) for f in present):
                del self.items[item_id]  # its folder is gone (validated from above it)
        known = {self._fold(i.path) for i in self.items.values()}
        sep = sep_of(location)
        for file in sorted(present):
            if not is_video(file) or self._fold(file) in known:
                continue
            if library.collection_type == "movies":
                new = uuid.uuid4().hex
                self.items[new] = JellyfinItem(new, "Movie", file, library.item_id,
                                                   saved=self.server_time())
                continue
            rest = file[len(trailing(location, sep)):]
            show_folder = trailing(location, sep) + rest.split(sep)[0]
            series = next((i for i in self.items.values()
                           if i.type == "Series" and i.path == show_folder), None)
            if series is None:
                new = uuid.uuid4().hex
                series = self.items[new] = JellyfinItem(new, "Series", show_folder,
                                                        library.item_id, saved=self.server_time())
            new = uuid.uuid4().hex
            self.items[new] = JellyfinItem(new, "Episode", file, library.item_id,
                                           series_id=series.id, saved=self.server_time())

    def _affected(self, path: str, location: str) -> str | None:
        """The folder the server validates for a reported path, or None when the path is
        a known item whose file exists. Movie folders and season folders are not items
        here (movies are their files; the fake keeps no seasons): a movie walks up to its
        library folder, an episode to its show's folder."""
        sep = sep_of(location)
        known = {self._fold(i.path.rstrip("/\\")): i for i in self.items.values()}
        files = {self._fold(f) for f in self.files}
        top = location.rstrip("/\\")
        # A Windows server reads `/` as `\` (a mapping may be typed either way).
        current = windows(path, location).rstrip("/\\")
        while True:
            item = known.get(self._fold(current))
            if item is not None and item.type == "Series" and not self.files_under(item.path):
                item = None  # its folder is gone: on to its parent, the library folder
            if item is not None:
                if item.type == "Series":
                    return item.path
                if self._fold(current) in files:
                    return None
                show = self.items.get(item.series_id or "")
                return show.path if show is not None else location
            parent = current.rsplit(sep, 1)[0]
            if (same_file(current, top, self.ignore_case) or parent == current
                    or not self.under(current, location)):
                return location
            current = parent

    def _dto(self, item: JellyfinItem, fields: set[str]) -> dict[str, Any]:
        dto: dict[str, Any] = {"Id": item.id, "Type": item.type, "ServerId": self.server_id,
                               "Name": item.path.rstrip("/\\").rsplit("/", 1)[-1]}
        if "Path" in fields:
            dto["Path"] = item.path
        if "ProviderIds" in fields:
            dto["ProviderIds"] = dict(item.provider_ids)
        if item.series_id:
            dto["SeriesId"] = item.series_id
        if "DateLastSaved" in fields:
            dto["DateLastSaved"] = (item.saved or datetime.min.replace(tzinfo=UTC)).strftime(
                "%Y-%m-%dT%H:%M:%S.%fZ")
        return dto

    def _items(self, request: Recorded, candidates: Iterable[JellyfinItem] | None = None
               ) -> Reply:
        """GET /Items. `candidates`: a subset of `items` that holds every item the filters
        can let through (the benchmark's indexed fake narrows by id or save time first)."""
        parent = request.param("parentId") or request.param("ParentId")
        types = request.values("includeItemTypes")
        fields = request.values("fields")
        # parentId is a library's ItemId or a show's Id (its episodes, as metarr-sync asks).
        rows = [i for i in (self.items.values() if candidates is None else candidates)
                if (parent is None or i.library == parent or i.series_id == parent)
                and (not types or i.type in types)]
        if self.emby and request.param("Path"):
            rows = [i for i in rows if i.path == request.param("Path")]
        wanted_ids = request.values("ids")
        if wanted_ids:
            rows = [i for i in rows if i.id in wanted_ids]
        saved_since = request.param("minDateLastSaved") or request.param("MinDateLastSaved")
        if saved_since:
            try:
                since = datetime.fromisoformat(saved_since.replace("Z", "+00:00"))
            except ValueError:
                return Reply(400, b"fake Jellyfin: minDateLastSaved is not a date",
                             {"Content-Type": "text/plain"})
            if since.tzinfo is None:
                return Reply(400, b"fake Jellyfin: a date without its zone",
                             {"Content-Type": "text/plain"})
            rows = [i for i in rows if i.saved is not None and i.saved >= since]
        start = int(request.param("startIndex") or request.param("StartIndex") or 0)
        limit = request.param("limit") or request.param("Limit")
        paged = limit is not None or start > 0
        sort = [s.strip() for s in (request.param("sortBy") or request.param("SortBy")
                                    or "").split(",") if s.strip()]
        keys = {"SortName": lambda i: i.name.casefold(), "Name": lambda i: i.name,
                "ProductionYear": lambda i: 0, "DateCreated": lambda i: i.created}
        if paged and (not sort or any(s not in keys for s in sort)):
            return Reply(400, b"fake Jellyfin: a page without a known sortBy has no order",
                         {"Content-Type": "text/plain"})
        order = (request.param("sortOrder") or "Ascending").split(",")[0]
        rows.sort(key=lambda i: tuple(keys[s](i) for s in sort) if sort else (i.path,),
                  reverse=order == "Descending")
        page = rows[start:None if limit is None else start + int(limit)]
        counted = (request.param("enableTotalRecordCount") or "true").lower() != "false"
        return json_reply({"Items": [self._dto(i, fields) for i in page],
                           "TotalRecordCount": len(rows) if counted else len(page),
                           "StartIndex": start})

    def server_time(self) -> datetime:
        """The server's clock (FakePlayer.clock ahead of the test host's)."""
        return datetime.now(UTC) + timedelta(seconds=self.clock)

    def put(self, kind: str, path: str, *, series_id: str | None = None,
            saved: datetime | None = None, provider_ids: dict[str, str] | None = None
            ) -> str:
        """An item the server already has (its file added too), saved at `saved` (default
        now); returns its id. Episodes need their show's id."""
        place = self._library_of(path)
        assert place is not None, path
        if kind != "Series":
            self.add_file(path)
        new = uuid.uuid4().hex
        item = JellyfinItem(new, kind, path, place[0].item_id, series_id=series_id,
                            provider_ids=dict(provider_ids or {}),
                            saved=saved or self.server_time())
        with self.lock:
            self.items[new] = item
        return new

    def move(self, old: str, new_path: str) -> str:
        """A file moved or renamed and the server rescanned it: a new item (ids come from
        paths), saved now; the old one is gone."""
        self.remove_file(old)
        self.add_file(new_path)
        with self.lock:
            item = next(i for i in self.items.values() if i.path == old)
            del self.items[item.id]
            new = uuid.uuid4().hex
            self.items[new] = JellyfinItem(new, item.type, new_path, item.library,
                                           series_id=item.series_id,
                                           provider_ids=dict(item.provider_ids),
                                           saved=self.server_time())
        return new

    def rebuild_library(self, name: str) -> None:
        """The library removed and added again behind metarr-sync's back: a new ItemId,
        every item of it created again under a new id and saved at `saved` of the old
        one (a rebuild this modelled sends nothing an update by date would see)."""
        with self.lock:
            library = next(lib for lib in self.libraries if lib.name == name)
            old_id, library.item_id = library.item_id, uuid.uuid4().hex
            renamed: dict[str, str] = {}
            for item in sorted([i for i in self.items.values() if i.library == old_id],
                               key=lambda i: i.type != "Series"):
                del self.items[item.id]
                new = renamed[item.id] = uuid.uuid4().hex
                self.items[new] = JellyfinItem(
                    new, item.type, item.path, library.item_id,
                    series_id=renamed.get(item.series_id or "", item.series_id),
                    provider_ids=dict(item.provider_ids), saved=item.saved)

    def library_files(self) -> set[str]:
        """What the server lists now (refreshers whose wait has ended have run)."""
        self._run_refreshers(time.monotonic())
        with self.lock:
            return {i.path for i in self.items.values()}

    def player(self, name: str, mappings: Iterable[tuple[str, str]] = (), **extra: Any
               ) -> dict[str, Any]:
        """This Jellyfin (or Emby) as a player of support.configs.config_with."""
        return _player("emby" if self.emby else "jellyfin", name, self.url, mappings,
                       {"token": self.token, **extra})

    def toml(self, name: str, mappings: Iterable[tuple[str, str]] = (), **extra: Any) -> str:
        return _toml(self.player(name, mappings, **extra))


def _player(type: str, name: str, url: str, mappings: Iterable[tuple[str, str]],
            extra: dict[str, Any]) -> dict[str, Any]:
    """A fake's [players.NAME] table; no `mappings` key when it has none."""
    pairs = list(mappings)
    return configs.player(type, name, url=url, mappings=pairs or None, **extra)


def _toml(table: dict[str, Any]) -> str:
    """One player's [players.NAME] table as TOML text, for a config assembled as text
    (prefer passing `player(...)` to config_with)."""
    return configs.config_with(players=[table])


__all__ = ["FAULTS", "FakeJellyfin", "FakeKodi", "FakePlayer", "FakePlex", "JellyfinLibrary",
           "PlexSection", "Recorded", "Reply"]
