"""Kodi: JSON-RPC 2.0 over HTTP (`POST /jsonrpc`), built on what a real Kodi 20.1 does.

The facts this adapter relies on (measured; see ../shared/PLAYERS.md):
- `VideoLibrary.Scan` only *adds* new items, takes one folder that must end with the
  separator, answers "OK" whatever happens, and is not queued: a scan sent while another
  scan or clean runs stops the running one and drops itself. So every scan and clean waits
  until `Library.IsScanningVideo` is false, and folders are scanned one at a time.
- Kodi caches folder listings: a folder created after Kodi listed its parent is reported
  missing and skipped, unless the parent is listed again (`Files.GetDirectory`) first.
- Changed NFO/artwork needs `VideoLibrary.Refresh*` on the item; a refresh deletes and
  re-adds it, usually under a new id, so Kodi ids are never kept past the call that used them.
- Removal is surgical (`Remove*` by id); a folder-scoped `Clean` is used only for movie
  folders (it is unreliable for TV), and a whole-library clean never.
- The `path` filter of `Get*` is SQL LIKE (case-insensitive, `_`/`%` wildcards), so items
  are matched here by comparing Kodi's `file` exactly, from one listing per run.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar
from urllib.parse import unquote

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.plan import (
    PathStyle,
    Target,
    best_mapping,
    collapse_folders,
    is_under,
    parent,
    strip_trailing,
    with_trailing,
)
from metarr_sync.players.base import (
    Outcome,
    Player,
    PlayerTimeout,
    ProbeResult,
    ProbeStep,
    ProtocolError,
    Rejected,
)
from metarr_sync.players.http import HttpClient

log = logging.getLogger("metarr_sync.kodi")

#: Kodi's default web server user, used when only a password is configured.
DEFAULT_USER = "kodi"
#: Longest time verify() looks again for items Kodi's background job has not added yet.
VERIFY_GRACE = 3.0
#: Shows whose episode listings are kept at a time (see KodiPlayer._episodes).
SHOWS_KEPT = 8
#: How long a notification stays on screen; Kodi rejects less than 1500 ms.
NOTIFICATION_MS = 5000
_REFRESH = {
    "movie": ("VideoLibrary.RefreshMovie", "movieid"),
    "series": ("VideoLibrary.RefreshTVShow", "tvshowid"),
    "episode": ("VideoLibrary.RefreshEpisode", "episodeid"),
}
_REMOVE = {
    "movie": ("VideoLibrary.RemoveMovie", "movieid"),
    "series": ("VideoLibrary.RemoveTVShow", "tvshowid"),
    "episode": ("VideoLibrary.RemoveEpisode", "episodeid"),
}


class KodiRejected(Rejected):
    """Kodi answered one call with a JSON-RPC error object."""

    def __init__(self, method: str, error: Any):
        self.method = method
        self.code = error.get("code") if isinstance(error, dict) else None
        self.detail = _error_text(error)
        super().__init__(f"Kodi rejected {method}: {self.detail}")


def _error_text(error: Any) -> str:
    """Kodi's own words: `message`, plus which parameter and why when it says so."""
    if not isinstance(error, dict):
        return str(error)
    text = str(error.get("message") or "unknown error").strip()
    stack = (error.get("data") or {}).get("stack") if isinstance(error.get("data"), dict) \
        else None
    if isinstance(stack, dict) and stack.get("message"):
        where = f"{stack['name']}: " if stack.get("name") else ""
        text += f" ({where}{stack['message']})"
    if error.get("code") is not None:
        text += f" [code {error['code']}]"
    return text


def _key(path: str) -> str:
    """Folder paths compare without their trailing separator; everything else exactly."""
    return strip_trailing(path)


def _stack_parts(file: str) -> list[str]:
    """The files of a Kodi stack (`stack://a.avi , b.avi`; commas in names doubled)."""
    if not file.startswith("stack://"):
        return [file]
    return [part.replace(",,", ",") for part in file[len("stack://"):].split(" , ")]


def _expand_source(path: str) -> list[str]:
    """A source's folders: a multipath source lists several, URL-encoded."""
    if not path.startswith("multipath://"):
        return [path]
    return [unquote(part) for part in path[len("multipath://"):].split("/") if part]


class _Library:
    """What Kodi's library holds, listed at most once per run (scans only add items).

    Only `file` → id is kept, and an entry is dropped as soon as a call made its id stale
    (refresh re-adds the item under a new id; remove deletes it).
    """

    def __init__(self) -> None:
        self.movies: dict[str, int] | None = None
        self.shows: dict[str, int] | None = None
        self.episodes: dict[int, dict[str, int]] = {}
        #: Paths of items refreshed in this run: Kodi has them under an id not known here.
        self.stale: set[str] = set()

    def forget_movies(self) -> None:
        self.movies = None

    def forget_tv(self) -> None:
        self.shows = None
        self.episodes = {}


class KodiPlayer(Player):
    type_name: ClassVar[str] = "kodi"

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False):
        super().__init__(config, sync, dry_run=dry_run)
        self.http = HttpClient(config, sync, dry_run=dry_run)
        self.commands = self.http.commands  # one list: what --dry-run prints
        self.auth: tuple[str, str] | None = None
        if config.username or config.password_value:
            self.auth = (config.username or DEFAULT_USER, config.password_value or "")
        self.library = _Library()
        self.sources: list[str] | None = None
        #: Folders scanned in this run, and whether Kodi saw each in its parent's listing.
        #: An item below one of them was added by that scan (with its NFO and artwork).
        self.scanned: dict[str, bool] = {}
        #: Parent folder -> its entries as Kodi listed them in this run (or why not).
        self.parents: dict[str, set[str] | KodiRejected] = {}
        self._next_id = 0
        # Injectable for tests: waiting for Kodi's scanner is the only sleeping done here.
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic

    @property
    def where(self) -> str:
        return self.http.base

    # --- JSON-RPC ----------------------------------------------------------------------

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             mutating: bool = False) -> Any:
        """One JSON-RPC call; Kodi's error object is raised as KodiRejected.

        Every request carries an `id`: Kodi executes a request without one (a JSON-RPC
        notification) but never answers it. A mutating call under --dry-run is recorded
        in .commands, not sent, and returns None.
        """
        self._next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if params is not None:
            body["params"] = params
        # -v shows what changes Kodi's library; -vv every call.
        log.log(logging.INFO if mutating else logging.DEBUG, "%s: %s %s%s", self.name, method,
                json.dumps(params or {}, ensure_ascii=False, sort_keys=True),
                " (dry run: not sent)" if mutating and self.dry_run else "")
        try:
            answer = self.http.json("POST", "/jsonrpc", json_body=body, mutating=mutating,
                                    auth=self.auth)
        finally:
            self.requests = self.http.requests
        if answer is None:
            if mutating and self.dry_run:
                return None
            raise ProtocolError(f"{self.where} sent an empty answer to {method}: "
                                "is this Kodi's web server?")
        if not isinstance(answer, dict) or not ("result" in answer or "error" in answer):
            raise ProtocolError(f"{self.where} answered {method} with something that is "
                                "not JSON-RPC: is this Kodi's web server?")
        if answer.get("error") is not None:
            raise KodiRejected(method, answer["error"])
        return answer["result"]

    def _item_call(self, target: Target, method: str, params: dict[str, Any]) -> Outcome:
        """A mutating call about one item: Kodi's refusal fails that item only."""
        try:
            self.call(method, params, mutating=True)
        except KodiRejected as exc:
            return Outcome(target.key, "failed", exc.message)
        return Outcome(target.key, "synced")

    def wait_idle(self) -> None:
        """Wait until Kodi's video library is neither scanning nor cleaning.

        Kodi does not queue scans: one sent now would stop the running scan and drop
        itself. Bounded by the player timeout; past it the player fails for this run and
        its remaining work stays queued.
        """
        if self.dry_run:
            return  # nothing is sent, so nothing can collide
        deadline = self.clock() + self.sync.timeout
        delay = 0.05
        while True:
            result = self.call("XBMC.GetInfoBooleans",
                               {"booleans": ["Library.IsScanningVideo"]})
            if not isinstance(result, dict) or "Library.IsScanningVideo" not in result:
                raise ProtocolError(f"{self.where} did not say whether its library is "
                                    "scanning (XBMC.GetInfoBooleans)")
            if not result["Library.IsScanningVideo"]:
                return
            if self.clock() + delay > deadline:
                raise PlayerTimeout(
                    f"Kodi at {self.where} was still scanning its video library after "
                    f"{self.sync.timeout:g} s; the remaining updates stay queued for the "
                    "next run")
            self.sleep(delay)
            delay = min(delay * 2, 1.0)

    # --- discovery ---------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        result = ProbeResult()
        pong = self.call("JSONRPC.Ping")
        if pong != "pong":
            raise ProtocolError(f"{self.where} answered JSONRPC.Ping with {pong!r} instead "
                                "of 'pong': is this Kodi?")
        result.steps.append(ProbeStep("JSON-RPC", True, f"{self.where}/jsonrpc answers"))
        version = self.call("JSONRPC.Version")
        try:
            api = version["version"]
            result.api_version = f"{api['major']}.{api.get('minor', 0)}.{api.get('patch', 0)}"
        except (TypeError, KeyError):
            raise ProtocolError(f"{self.where} sent no usable JSONRPC.Version") from None
        try:
            app = self.call("Application.GetProperties", {"properties": ["version", "name"]})
            ver = app["version"]
            tag = ver.get("tag", "")
            result.version = f"{ver['major']}.{ver['minor']}" + (
                f" ({tag})" if tag and tag != "stable" else "")
        except (KodiRejected, TypeError, KeyError):
            result.version = ""  # informative only; the API version is what matters
        result.steps.append(ProbeStep(
            "version", True, f"Kodi {result.version or '?'}, JSON-RPC API {result.api_version}"))
        result.roots = self.video_sources()
        result.steps.append(ProbeStep(
            "video sources", bool(result.roots), ", ".join(result.roots)
            or "Kodi has no video sources: add the library folders as sources in Kodi"))
        for mapping in self.config.mappings:
            covered = any(is_under(mapping.player, r) or is_under(r, mapping.player)
                          for r in result.roots)
            result.steps.append(ProbeStep(
                f"mapping {mapping.metarr}", covered,
                f"{mapping.player} is inside a Kodi source" if covered else
                f"no Kodi source contains {mapping.player}: check this mapping against "
                f"Kodi's sources"))
        return result

    def video_sources(self) -> list[str]:
        if self.sources is None:
            answer = self.call("Files.GetSources", {"media": "video"}) or {}
            roots: list[str] = []
            for source in answer.get("sources") or []:
                roots.extend(_expand_source(str(source.get("file", ""))))
            self.sources = [r for r in roots if r]
        return self.sources

    def is_playing(self) -> bool:
        active = self.call("Player.GetActivePlayers")
        return bool(active)

    # --- finding items -----------------------------------------------------------------

    def _movies(self) -> dict[str, int]:
        if self.library.movies is None:
            answer = self.call("VideoLibrary.GetMovies", {"properties": ["file"]}) or {}
            found: dict[str, int] = {}
            for movie in answer.get("movies") or []:
                for part in _stack_parts(str(movie.get("file", ""))):
                    found[part] = int(movie["movieid"])
            self.library.movies = found
        return self.library.movies

    def sample_paths(self, limit: int = 20) -> list[str]:
        """A few movies' and episodes' files (the first part of a stack), read-only."""
        paths: list[str] = []
        for method, key in (("VideoLibrary.GetMovies", "movies"),
                            ("VideoLibrary.GetEpisodes", "episodes")):
            answer = self.call(method, {"properties": ["file"],
                                        "limits": {"start": 0, "end": limit}}) or {}
            # Kodi leaves the key out of an empty answer; a server ignoring the limits
            # must still not make this list the whole library.
            for row in (answer.get(key) or [])[:limit]:
                parts = _stack_parts(str(row.get("file") or ""))
                if parts and parts[0]:
                    paths.append(parts[0])
        return paths

    def _shows(self) -> dict[str, int]:
        if self.library.shows is None:
            answer = self.call("VideoLibrary.GetTVShows", {"properties": ["file"]}) or {}
            self.library.shows = {_key(str(s.get("file", ""))): int(s["tvshowid"])
                                  for s in answer.get("tvshows") or []}
        return self.library.shows

    def _episodes(self, show_id: int) -> dict[str, int]:
        if show_id not in self.library.episodes:
            answer = self.call("VideoLibrary.GetEpisodes",
                               {"tvshowid": show_id, "properties": ["file"]}) or {}
            found: dict[str, int] = {}
            for episode in answer.get("episodes") or []:
                for part in _stack_parts(str(episode.get("file", ""))):
                    found[part] = int(episode["episodeid"])
            self.library.episodes[show_id] = found
            # A run goes through episodes show by show (ordered by path): only the last
            # few shows' listings are kept, not a whole TV library's worth.
            while len(self.library.episodes) > SHOWS_KEPT:
                self.library.episodes.pop(next(iter(self.library.episodes)))
        return self.library.episodes[show_id]

    def _show_of(self, target: Target) -> int | None:
        folder = target.path if target.item.kind == "series" else target.series_folder
        return self._shows().get(_key(folder)) if folder else None

    def find(self, target: Target) -> int | None:
        """Kodi's current id of the target's item, matched by its exact path."""
        if target.path in self.library.stale:
            self.library = _Library()  # rare: asked again about a refreshed item
        kind = target.item.kind
        if kind == "movie":
            return self._movies().get(target.path)
        show = self._show_of(target)
        if kind == "series" or show is None:
            return show
        return self._episodes(show).get(target.path)

    def _forget(self, target: Target, *, removed: bool) -> None:
        """Drop an id a call just made stale; a refreshed item is re-listed if asked again.

        A movie or episode refresh re-adds the item under a new id; a show refresh keeps
        the show's id; a removal deletes the item (and a show's episodes with it).
        """
        kind = target.item.kind
        if kind == "series":
            show = self._show_of(target)
            if removed and show is not None and self.library.shows is not None:
                self.library.episodes.pop(show, None)
                self.library.shows.pop(_key(target.path), None)
            return
        if kind == "movie":
            entries = self.library.movies
        else:
            show = self._show_of(target)
            entries = self.library.episodes.get(show) if show is not None else None
        if entries is not None:
            entries.pop(target.path, None)
        if not removed:
            self.library.stale.add(target.path)

    # --- delivering --------------------------------------------------------------------

    def apply(self, batch: Sequence[Target]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        for target in batch:
            if target.item.removed:
                outcomes[target.key] = self._remove(target)
        to_scan: list[Target] = []
        for target in batch:
            if target.item.removed:
                continue
            kodi_id = self.find(target)
            if kodi_id is None:
                to_scan.append(target)
                continue
            method, field = _REFRESH[target.item.kind]
            outcomes[target.key] = self._item_call(
                target, method, {field: kodi_id, "ignorenfo": False})
            self._forget(target, removed=False)
        outcomes.update(self._scan(to_scan))
        return [outcomes[t.key] for t in batch]

    def _remove(self, target: Target) -> Outcome:
        if not self.sync.clean_deleted:
            # The user keeps deleted items in their players ([sync] clean_deleted = false).
            return Outcome(target.key, "synced")
        kind = target.item.kind
        kodi_id = self.find(target)
        if kodi_id is not None:
            method, field = _REMOVE[kind]
            outcome = self._item_call(target, method, {field: kodi_id})
            self._forget(target, removed=True)
            return outcome
        if kind == "movie" and not target.folder_is_root:
            # Not at its exact path (renamed since?), yet Kodi may still list a file of
            # that folder: a Clean scoped to the movie folder removes only entries whose
            # files are gone. Never for TV (unreliable there) and never library-wide.
            folder = with_trailing(target.folder, target.style)
            if any(file.startswith(folder) for file in self._movies()):
                self.wait_idle()
                try:
                    self.call("VideoLibrary.Clean", {"showdialogs": False, "content": "movies",
                                                     "directory": folder}, mutating=True)
                except KodiRejected as exc:
                    return Outcome(target.key, "failed", exc.message)
                self.library.forget_movies()
        # Kodi does not have it (any more): nothing left to remove.
        return Outcome(target.key, "synced")

    def _scan_folder(self, target: Target) -> str:
        """The folder whose scan adds the item: a new show is added through its show
        folder (a season folder scan only works for a show Kodi knows)."""
        kind = target.item.kind
        if kind == "episode" and target.series_folder and self._show_of(target) is None:
            return target.series_folder
        return target.folder

    def _scan(self, targets: Iterable[Target]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        wanted: dict[str, list[Target]] = {}
        for target in targets:
            folder = self._scan_folder(target)
            if _key(folder) == _key(target.root) or is_under(target.root, folder):
                outcomes[target.key] = Outcome(
                    target.key, "failed",
                    f"Kodi does not have {target.path}, and adding it would mean scanning "
                    f"the whole library folder {with_trailing(folder, target.style)}; "
                    "metarr-sync only scans an item's own folder: give it a folder of its "
                    f"own below {target.root}")
                continue
            wanted.setdefault(_key(folder), []).append(target)
        for folder in list(wanted):
            earlier = self._scanned_above(folder, wanted[folder][0].style)
            if earlier is None:
                continue
            # Below a folder this run scanned already: that scan added the item, there is
            # nothing to send (Kodi's listings are kept for the run, so it was not seen).
            for t in wanted.pop(folder):
                outcomes[t.key] = Outcome(t.key, "synced") if self.scanned[earlier] else \
                    self._unseen(t, earlier)
        groups: dict[str, list[Target]] = {f: [] for f in collapse_folders(wanted)}
        for folder, members in wanted.items():
            top = next(g for g in groups if is_under(folder, g))
            groups[top].extend(members)
        for folder, members in groups.items():
            style: PathStyle = members[0].style
            above = parent(folder, style)
            listing = self.parents.get(above)
            if listing is None or (isinstance(listing, set) and folder not in listing):
                # Listed once per run, and again when a folder is missing from it (new
                # since): that listing also clears Kodi's stale cache of the parent.
                listing = self.parents[above] = self._listing(with_trailing(above, style))
            if isinstance(listing, KodiRejected):
                for t in members:
                    outcomes[t.key] = Outcome(
                        t.key, "retry",
                        f"Kodi cannot open {with_trailing(above, style)} "
                        f"({listing.detail}): is that share reachable from Kodi, "
                        f"and does the mapping for {self._mapping_hint(t)} point at it?")
                continue
            self.wait_idle()
            try:
                self.call("VideoLibrary.Scan", {"directory": with_trailing(folder, style),
                                                "showdialogs": False}, mutating=True)
            except KodiRejected as exc:
                for t in members:
                    outcomes[t.key] = Outcome(t.key, "failed", exc.message)
                continue
            # Kodi's listings stay valid: a scan only adds items (found again below
            # self.scanned), it never renumbers the ones listed.
            seen = self.scanned[folder] = folder in listing
            for t in members:
                outcomes[t.key] = Outcome(t.key, "synced") if seen else \
                    self._unseen(t, folder)
        return outcomes

    def _scanned_above(self, folder: str, style: PathStyle) -> str | None:
        """The folder scanned in this run that holds `folder` (or is it), if any."""
        while True:
            if folder in self.scanned:
                return folder
            above = _key(parent(folder, style))
            if above == folder:
                return None
            folder = above

    def _unseen(self, target: Target, folder: str) -> Outcome:
        style = target.style
        return Outcome(target.key, "unverified",
                       f"sent a scan of {with_trailing(folder, style)}, but Kodi does not see "
                       f"that folder in {with_trailing(parent(folder, style), style)}: check "
                       f"the mapping for {self._mapping_hint(target)}")

    def _listing(self, folder: str) -> set[str] | KodiRejected:
        """List `folder` in Kodi (refreshing Kodi's cache of it); the entries, or why not."""
        try:
            answer = self.call("Files.GetDirectory", {"directory": folder}) or {}
        except KodiRejected as exc:
            return exc
        return {_key(str(entry.get("file", ""))) for entry in answer.get("files") or []}

    def _mapping_hint(self, target: Target) -> str:
        mapping = best_mapping(target.item.path, self.config.mappings)
        if mapping is None:
            return f"{target.item.path} (player {self.name} has no mapping: Kodi is " \
                   "given Metarr's own paths)"
        return mapping.metarr

    def scan_all(self) -> None:
        """A full library scan: only when the user turned targeted_updates off."""
        self.wait_idle()
        self.call("VideoLibrary.Scan", {"showdialogs": False}, mutating=True)
        self.library = _Library()

    def notify(self, title: str, message: str) -> None:
        self.call("GUI.ShowNotification", {"title": title, "message": message,
                                           "displaytime": NOTIFICATION_MS}, mutating=True)

    # --- verifying ---------------------------------------------------------------------

    def verify(self, targets: Sequence[Target]) -> list[Outcome]:
        """Look every delivered item up in Kodi by its exact path, after scans finished.

        Kodi works through scans and refreshes in a background job (a refresh deletes and
        re-adds the item), so an item not seen at once is looked for again for a few
        seconds before it is called unverified.
        """
        deadline = self.clock() + min(self.sync.timeout, VERIFY_GRACE)
        delay = 0.25
        waiting = list(targets)
        while True:
            self.wait_idle()
            self.library = _Library()  # scans and refreshes since the last listing
            waiting = [t for t in waiting if not self._landed(t)]
            if not waiting or self.clock() + delay > deadline:
                break
            self.sleep(delay)
            delay = min(delay * 2, 1.0)
        late = {t.key for t in waiting}
        outcomes = []
        for target in targets:
            if target.key not in late:
                outcomes.append(Outcome(target.key, "synced"))
            elif target.item.removed:
                outcomes.append(Outcome(target.key, "unverified",
                                        f"Kodi still lists {target.path} after its removal"))
            else:
                outcomes.append(Outcome(target.key, "unverified", self._why_missing(target)))
        return outcomes

    def _landed(self, target: Target) -> bool:
        present = self.find(target) is not None
        if target.item.removed:
            return not present or not self.sync.clean_deleted
        return present

    def _why_missing(self, target: Target) -> str:
        """An actionable cause for an item Kodi does not list after delivery."""
        folder = with_trailing(target.folder, target.style)
        hint = self._mapping_hint(target)
        if not any(is_under(target.path, root) for root in self.video_sources()):
            return f"Kodi has no source containing {folder} — check the mapping for {hint}"
        listing = self._listing(folder)
        if isinstance(listing, KodiRejected):
            return (f"Kodi cannot open {folder} ({listing.detail}) — is the share "
                    f"reachable from Kodi, and does the mapping for {hint} point at it?")
        if target.item.kind != "series" and _key(target.path) not in listing:
            return (f"Kodi does not see {target.path} in {folder} — check the mapping for "
                    f"{hint}")
        if target.item.kind == "episode" and self._show_of(target) is None:
            show = with_trailing(target.series_folder or folder, target.style)
            return (f"Kodi has not added the show {show}, so it skipped the episode — check "
                    "that the show's source is set to TV shows and that tvshow.nfo is readable")
        return (f"Kodi sees {target.path} but skipped it — check the content type and "
                "scraper of its source in Kodi (Set content) and Kodi's log")

    def close(self) -> None:
        self.http.close()
