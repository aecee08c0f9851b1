"""A real Kodi running headless under Xvfb, for integration tests: Kodi 20.1 or Kodi 21.2.

- Kodi 20.1 (Nexus; JSON-RPC API 13.0.0) is Debian bookworm's `kodi`
  package, installed on the host: /usr/lib/<arch>/kodi/kodi.bin.
- Kodi 21.2 (Omega; JSON-RPC API 13.5.0) is Debian trixie's `kodi 2:21.2+dfsg-4`, which
  bookworm does not have. `.ci/kodi21-root` builds a trixie root holding it (debootstrap
  --variant=minbase, then apt-get inside the root: debootstrap's own resolver fails on kodi;
  ~3 min, 1.2 GB) at $METARR_SYNC_KODI21_ROOT (default
  /var/cache/metarr-sync-ci/kodi-21-root), and writes `.metarr-sync-complete` in it only once
  everything succeeded. Kodi 21.2 runs chrooted into that root, in a mount namespace of its
  own (`unshare --mount --propagation private`) where the host's /proc, /dev and /tmp are
  mounted at the same paths inside the root: the profile HOME and media folders (pytest's
  tmp dirs under /tmp) and the X socket are the same inside and out, and each Kodi's mounts
  vanish with it, so several Kodis and parallel test runs never share or leak a mount. The
  shell that mounts `exec`s chroot, which `exec`s kodi.bin: the PID signalled is Kodi's
  (checked at start). Measured: JSON-RPC up in ~8 s (20.1: ~7 s), ~250 MB RAM each.

The recipe, the same for both versions:
- a private HOME, so the user's own Kodi profile is never touched;
- guisettings.xml written *before* the first start: web server on a free loopback-chosen port
  with Basic auth, and every network announcement off (zeroconf, WS-Discovery, UPnP, AirPlay,
  event server, add-on updates), so Kodi sends nothing to the network; the web server still
  listens on all interfaces, so tests talk to it only on 127.0.0.1. No library update on
  start-up or in the background, no thumbnail or flag extraction (extraction from the 0-byte
  dummy videos crashed Kodi once);
- sources.xml with one movie root and one TV root (paths ending in `/`), and rows in Kodi's
  `path` table giving them content types and the offline `metadata.local` scraper (it reads
  NFO files only). No JSON-RPC call sets those and sources.xml cannot hold them; Kodi reads
  the rows at scan time, so they are written once JSON-RPC answers, into the video database
  of the version: MyVideos121.db for 20.1, MyVideos131.db for 21.2;
- kodi.bin started directly (the /usr/bin/kodi wrapper's PID is not Kodi's), without
  KODI_* variables in its environment (Kodi reads them as its own install paths and
  crashes), with HOME and DISPLAY set; stopped with SIGTERM (2-3 s) and, after 15 s,
  SIGKILL;
- once up, Kodi's own `Application.GetProperties` version must be the one asked for, so a
  test id saying 20.1 or 21.2 is the Kodi that really ran.

This module installs nothing: `.ci/run` installs kodi and xvfb and builds the 21.2 root;
elsewhere `missing(version)` says why a version cannot run. The fixtures (tests/conftest.py)
skip with that reason, and fail with it under CI.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import requests

USERNAME = "kodi"
PASSWORD = "kodi-test-pw-4821"

GUI_SETTINGS = {
    "services.webserver": "true",
    "services.webserverauthentication": "true",
    "services.webserverusername": USERNAME,
    "services.esenabled": "false",
    "services.esallinterfaces": "false",
    "services.zeroconf": "false",
    "services.wsdiscovery": "false",
    "services.upnp": "false",
    "services.upnpserver": "false",
    "services.upnprenderer": "false",
    "services.upnpcontroller": "false",
    "services.airplay": "false",
    "general.addonupdates": "2",
    "videolibrary.updateonstartup": "false",
    "videolibrary.backgroundupdate": "false",
    "myvideos.extractflags": "false",
    "myvideos.extractthumb": "false",
    "myvideos.extractchapterthumbs": "false",
}


VERSIONS = ("20.1", "21.2")
# Each version's video database, named by its schema version.
VIDEO_DB = {"20.1": "MyVideos121.db", "21.2": "MyVideos131.db"}
KODI21_ROOT_DEFAULT = "/var/cache/metarr-sync-ci/kodi-21-root"
ROOT_COMPLETE = ".metarr-sync-complete"  # written by .ci/kodi21-root after a full build


def kodi21_root() -> Path:
    return Path(os.environ.get("METARR_SYNC_KODI21_ROOT") or KODI21_ROOT_DEFAULT)


def kodi_binary(version: str = "20.1") -> str | None:
    """kodi.bin of `version`: a host path for 20.1, a path inside the root for 21.2."""
    if version == "21.2":
        root = kodi21_root()
        if not (root / ROOT_COMPLETE).is_file():
            return None
        found = sorted(glob.glob(str(root / "usr/lib/*/kodi/kodi.bin")))
        return "/" + str(Path(found[0]).relative_to(root)) if found else None
    found = sorted(glob.glob("/usr/lib/*/kodi/kodi.bin"))
    return found[0] if found else None


def missing(version: str = "20.1") -> str | None:
    """Why Kodi `version` cannot run here, or None when it can."""
    if version not in VERSIONS:
        return f"no recipe for Kodi {version} (known: {', '.join(VERSIONS)})"
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed: `.ci/run` installs it with apt-get (xvfb)"
    if version == "20.1" and kodi_binary(version) is None:
        return ("Kodi 20.1 is not installed (no /usr/lib/*/kodi/kodi.bin): "
                "`.ci/run` installs it with apt-get (kodi, xvfb)")
    if version == "21.2":
        root = kodi21_root()
        if not (root / ROOT_COMPLETE).is_file():
            return (f"no complete Kodi 21.2 root at {root} (no {ROOT_COMPLETE}; "
                    "METARR_SYNC_KODI21_ROOT sets the place): `.ci/kodi21-root` builds it")
        if kodi_binary(version) is None:
            return f"the Kodi 21.2 root {root} has no usr/lib/*/kodi/kodi.bin"
        if os.geteuid() != 0:
            return "Kodi 21.2 runs chrooted in a mount namespace of its own: that needs root"
        if shutil.which("unshare") is None:
            return "unshare (util-linux) is not installed: Kodi 21.2 needs it"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class KodiError(Exception):
    pass


class KodiServer:
    """One Kodi instance with its own HOME, web server port and Xvfb display.

    `media` (default: its own folder under `root`) holds the movies/ and tv/ source folders:
    give two servers the same one to have two Kodis over the same library.
    """

    def __init__(self, root: Path, version: str = "20.1", media: Path | None = None):
        if version not in VERSIONS:
            raise KodiError(str(missing(version)))
        self.version = version
        self.root = root
        self.home = root / "home"
        self.media = media or root / "media"
        self.movies = self.media / "movies"
        self.tv = self.media / "tv"
        self.port = free_port()
        self.username, self.password = USERNAME, PASSWORD
        self.kodi: subprocess.Popen[bytes] | None = None
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.display: str | None = None
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.auth = (self.username, self.password)
        self._id = 0

    # --- paths -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def userdata(self) -> Path:
        return self.home / ".kodi" / "userdata"

    @property
    def log_file(self) -> Path:
        return self.home / ".kodi" / "temp" / "kodi.log"

    @property
    def stderr_file(self) -> Path:
        return self.root / "kodi.stderr"

    def log_tail(self, lines: int = 60) -> str:
        """The end of kodi.log, and of Kodi's stderr (where a failed chroot or mount says
        why) when there is any."""
        parts = []
        for path, what in ((self.log_file, "kodi.log"), (self.stderr_file, "stderr")):
            try:
                text = path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                parts.append(f"(no {what})")
                continue
            if text or what == "kodi.log":
                parts.append(f"--- {what}:\n" + "\n".join(text))
        return "\n".join(parts)

    # --- lifecycle ---------------------------------------------------------------------

    def _write_profile(self) -> None:
        self.movies.mkdir(parents=True, exist_ok=True)
        self.tv.mkdir(parents=True, exist_ok=True)
        self.userdata.mkdir(parents=True, exist_ok=True)
        settings = dict(GUI_SETTINGS, **{
            "services.webserverport": str(self.port),
            "services.webserverpassword": self.password,
        })
        lines = [f'    <setting id="{key}">{escape(value)}</setting>'
                 for key, value in settings.items()]
        (self.userdata / "guisettings.xml").write_text(
            '<settings version="2">\n' + "\n".join(lines) + "\n</settings>\n")
        sources = "".join(
            f"    <source><name>{name}</name><path pathversion=\"1\">{escape(str(path))}/"
            f"</path><allowsharing>true</allowsharing></source>\n"
            for name, path in (("Movies", self.movies), ("TV Shows", self.tv)))
        (self.userdata / "sources.xml").write_text(
            "<sources>\n  <video>\n    <default pathversion=\"1\"></default>\n"
            + sources + "  </video>\n</sources>\n")

    def write_profiles(self, labels: list[str]) -> None:
        """Before the first start: these profiles (the first is the master profile, the
        one loaded), each with a library of its own, as Kodi's profile editor saves them."""
        self.userdata.mkdir(parents=True, exist_ok=True)
        entries = []
        for index, label in enumerate(labels):
            folder = ("special://masterprofile/" if index == 0
                      else f"special://masterprofile/profiles/{escape(label)}/")
            entries.append(
                f"  <profile>\n    <id>{index}</id>\n    <name>{escape(label)}</name>\n"
                f"    <directory pathversion=\"1\">{folder}</directory>\n"
                "    <thumbnail pathversion=\"1\"></thumbnail>\n"
                "    <hasdatabases>true</hasdatabases>\n"
                "    <canwritedatabases>true</canwritedatabases>\n"
                "    <hassources>true</hassources>\n"
                "    <canwritesources>true</canwritesources>\n"
                "    <lockaddonmanager>false</lockaddonmanager>\n"
                "    <locksettings>0</locksettings>\n    <lockfiles>false</lockfiles>\n"
                "    <lockmusic>false</lockmusic>\n    <lockvideo>false</lockvideo>\n"
                "    <lockpictures>false</lockpictures>\n"
                "    <lockprograms>false</lockprograms>\n    <lockgames>false</lockgames>\n"
                "    <lockmode>0</lockmode>\n    <lockcode></lockcode>\n"
                "    <lastdate></lastdate>\n  </profile>\n")
        (self.userdata / "profiles.xml").write_text(
            "<profiles>\n  <lastloaded>0</lastloaded>\n  <useloginscreen>false</useloginscreen>"
            f"\n  <autologin>-1</autologin>\n  <nextIdProfile>{len(labels)}</nextIdProfile>\n"
            + "".join(entries) + "</profiles>\n")

    def _start_xvfb(self) -> None:
        read, write = os.pipe()
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x720x24", "-nolisten",
             "tcp"], pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(write)
        number = b""
        deadline = time.monotonic() + 15
        while not number.endswith(b"\n") and time.monotonic() < deadline:
            chunk = os.read(read, 16)
            if not chunk:
                break
            number += chunk
        os.close(read)
        if not number.strip():
            raise KodiError("Xvfb did not report a display number")
        self.display = ":" + number.decode().strip()

    def _command(self) -> list[str]:
        binary = kodi_binary(self.version)
        if binary is None:
            raise KodiError(str(missing(self.version)))
        args = [binary, "--standalone", "--windowing=x11"]
        if self.version != "21.2":
            return args
        # /tmp (profile, media, X socket) at the same path inside the root; folders outside
        # /tmp (a TMPDIR elsewhere) are bound at their own paths too.
        shared = ["/tmp"] + sorted({
            str(p.resolve()) for p in (self.root, self.media)
            if not p.resolve().is_relative_to("/tmp")})
        script = (
            'root=$1 kodi=$2; shift 2; '
            'mount -t proc proc "$root/proc" && mount --rbind /dev "$root/dev" || exit 125; '
            'for dir; do mkdir -p "$root$dir" && mount --bind "$dir" "$root$dir" || exit 125; '
            'done; exec chroot "$root" "$kodi" --standalone --windowing=x11')
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                "kodi21", str(kodi21_root()), binary, *shared]

    def start(self, timeout: float = 60) -> None:
        """Start Kodi (and Xvfb on first use); return once JSON-RPC answers."""
        if not (self.userdata / "guisettings.xml").exists():
            self._write_profile()
        if self.xvfb is None or self.xvfb.poll() is not None:
            self._start_xvfb()
        command = self._command()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("KODI_", "XDG_", "DBUS_", "WAYLAND_"))}
        env.update({"HOME": str(self.home), "DISPLAY": str(self.display),
                    "LIBGL_ALWAYS_SOFTWARE": "1"})
        with self.stderr_file.open("ab") as stderr:
            self.kodi = subprocess.Popen(
                command, env=env, cwd=self.home, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.kodi.poll() is not None:
                raise KodiError(f"Kodi {self.version} exited with {self.kodi.returncode} "
                                "while starting:\n" + self.log_tail())
            try:
                if self.rpc("JSONRPC.Ping", timeout=2) == "pong":
                    break
            except (requests.RequestException, KodiError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise KodiError(f"Kodi {self.version}'s JSON-RPC did not answer within "
                                f"{timeout:g} s:\n" + self.log_tail())
            time.sleep(0.2)
        self._check_identity()
        self._set_content_types()

    def _check_identity(self) -> None:
        """The process we signal is kodi.bin itself, and it is the version asked for."""
        assert self.kodi is not None
        exe = os.readlink(f"/proc/{self.kodi.pid}/exe")
        if Path(exe).name != "kodi.bin":
            self.stop()
            raise KodiError(f"PID {self.kodi.pid} is {exe}, not kodi.bin")
        version = self.rpc("Application.GetProperties", {"properties": ["version"]})["version"]
        running = f"{version['major']}.{version['minor']}"
        if running != self.version:
            self.stop()
            raise KodiError(f"asked for Kodi {self.version}, but {exe} is Kodi {running}")

    def _set_content_types(self) -> None:
        """Give both sources a content type and the offline metadata.local scraper."""
        rows = [(f"{self.movies}/", "movies", 2147483647, 1),
                (f"{self.tv}/", "tvshows", 0, 0)]
        database = self.userdata / "Database" / VIDEO_DB[self.version]
        deadline = time.monotonic() + 20
        while not database.exists():
            if time.monotonic() > deadline:
                found = [p.name for p in database.parent.glob("MyVideos*.db")]
                raise KodiError(f"Kodi {self.version} created no {database.name} "
                                f"(video databases found: {found or 'none'})")
            time.sleep(0.1)
        conn = sqlite3.connect(database, timeout=10)
        try:
            with conn:
                for path, content, recursive, folder_names in rows:
                    known = conn.execute("SELECT idPath FROM path WHERE strPath = ?",
                                         (path,)).fetchone()
                    values = (content, "metadata.local", recursive, folder_names, "", 0, 0)
                    if known:
                        conn.execute(
                            "UPDATE path SET strContent=?, strScraper=?, scanRecursive=?, "
                            "useFolderNames=?, strSettings=?, noUpdate=?, exclude=? "
                            "WHERE idPath=?", (*values, known[0]))
                    else:
                        conn.execute(
                            "INSERT INTO path (strContent, strScraper, scanRecursive, "
                            "useFolderNames, strSettings, noUpdate, exclude, strPath) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (*values, path))
        finally:
            conn.close()

    def stop(self) -> None:
        """SIGTERM (Kodi needs 2-3 s), SIGKILL after 15 s. A 21.2 Kodi's mounts live in its
        own mount namespace, which ends with it: nothing stays mounted."""
        if self.kodi is None:
            return
        if self.kodi.poll() is None:
            self.kodi.send_signal(signal.SIGTERM)
            try:
                self.kodi.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kodi.kill()
                self.kodi.wait(timeout=10)
        self.kodi = None

    def close(self) -> None:
        self.stop()
        if self.xvfb is not None and self.xvfb.poll() is None:
            self.xvfb.terminate()
            try:
                self.xvfb.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.xvfb.kill()
                self.xvfb.wait(timeout=10)
        self.xvfb = None
        self.session.close()

    @property
    def running(self) -> bool:
        return self.kodi is not None and self.kodi.poll() is None

    # --- JSON-RPC, for assertions ------------------------------------------------------

    def rpc(self, method: str, params: dict[str, Any] | None = None,
            timeout: float = 10) -> Any:
        self._id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._id}
        if params is not None:
            body["params"] = params
        answer = self.session.post(f"{self.url}/jsonrpc", json=body, timeout=timeout)
        answer.raise_for_status()
        doc = answer.json()
        if "error" in doc:
            raise KodiError(f"{method}: {doc['error']}")
        return doc["result"]

    def scanning(self) -> bool:
        result = self.rpc("XBMC.GetInfoBooleans", {"booleans": ["Library.IsScanningVideo"]})
        return bool(result["Library.IsScanningVideo"])

    def movies_by_file(self) -> dict[str, dict[str, Any]]:
        result = self.rpc("VideoLibrary.GetMovies", {"properties": ["file", "title"]})
        return {m["file"]: m for m in result.get("movies", [])}

    def shows_by_folder(self) -> dict[str, dict[str, Any]]:
        result = self.rpc("VideoLibrary.GetTVShows", {"properties": ["file", "title"]})
        return {s["file"]: s for s in result.get("tvshows", [])}

    def episodes_by_file(self) -> dict[str, dict[str, Any]]:
        result = self.rpc("VideoLibrary.GetEpisodes", {"properties": ["file", "title"]})
        return {e["file"]: e for e in result.get("episodes", [])}

    def wait_until(self, condition: Callable[[], bool], what: str,
                   timeout: float = 20) -> None:
        """Poll until `condition()` holds: Kodi scans and refreshes asynchronously."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"Kodi never showed {what} within {timeout:g} s; "
                                     f"kodi.log ends with:\n{self.log_tail(30)}")
            time.sleep(0.1)

    # --- media on disk (what Metarr publishes) -----------------------------------------

    def write_movie(self, folder: Path, file_name: str, title: str, year: int,
                    imdb: str = "tt0000001") -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        video = folder / file_name
        video.touch()
        (folder / "movie.nfo").write_text(
            f"<movie><title>{escape(title)}</title><year>{year}</year>"
            f'<uniqueid type="imdb" default="true">{imdb}</uniqueid></movie>\n')
        return video

    def write_show(self, folder: Path, title: str, premiered: str = "2019-03-01") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "tvshow.nfo").write_text(
            f"<tvshow><title>{escape(title)}</title><premiered>{premiered}</premiered>"
            "</tvshow>\n")

    def write_episode(self, video: Path, title: str, season: int, episode: int) -> Path:
        video.parent.mkdir(parents=True, exist_ok=True)
        video.touch()
        video.with_suffix(".nfo").write_text(
            f"<episodedetails><title>{escape(title)}</title><season>{season}</season>"
            f"<episode>{episode}</episode></episodedetails>\n")
        return video


class RecordingProxy:
    """A loopback HTTP proxy in front of the real Kodi that keeps every JSON-RPC body it
    forwards: what metarr-sync really put on the wire, one entry per HTTP request."""

    def __init__(self, target: str):
        self.target = target
        self.bodies: list[Any] = []
        session = requests.Session()
        session.trust_env = False
        self.session = session
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as Kodi's own web server

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                proxy.bodies.append(json.loads(body) if body else None)
                answer = session.post(target + self.path, data=body, timeout=30, headers={
                    k: v for k, v in self.headers.items()
                    if k.lower() in ("authorization", "content-type")})
                self.send_response(answer.status_code)
                for name in ("Content-Type", "WWW-Authenticate"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self.session.close()

    def posts_with(self, method: str) -> list[list[dict[str, Any]]]:
        """The calls of each request that carried `method` (a lone call as a list of one)."""
        found = []
        for body in self.bodies:
            calls = body if isinstance(body, list) else [body]
            if any(isinstance(c, dict) and c.get("method") == method for c in calls):
                found.append(calls)
        return found
