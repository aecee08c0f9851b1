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
- A JSON-RPC batch (an array of calls in one POST) is answered call by call. Look-ups,
  refreshes and removals of a batch of targets travel together (one round trip instead of
  one per item); scans, cleans and the idle checks before them never do, since Kodi drops
  a scan sent while another runs.
- Neither scans, refreshes, cleans nor removals may reach Kodi twice: a second scan stops
  the first, a refresh or removal sent again fails on the id the first one invalidated.
  So every call that changes the library is sent again only when the connection could not
  be made at all; once sent, a timeout or a 5xx answer leaves its items queued for the
  next run (which looks the items up afresh). Reads keep the client's full retries.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, NamedTuple
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
from metarr_sync.players.http import HttpClient, MaybeReceived, parse_json

log = logging.getLogger("metarr_sync.kodi")

#: Kodi's default web server user, used when only a password is configured.
DEFAULT_USER = "kodi"
#: Longest time verify() looks again for items Kodi's background job has not added yet.
VERIFY_GRACE = 3.0
#: Shows whose episode listings are kept between batches (see KodiPlayer._trim).
SHOWS_KEPT = 8
#: Rows per page of a whole-library listing (GetMovies, GetTVShows): only one page's answer
#: is ever parsed at a time, not 50,000 movies' worth of dicts at once.
PAGE = 5000
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


class _Row(NamedTuple):
    """One listed item as far as it is kept: its file (or folder), which id it has
    (movieid, ...; "" for a directory entry) and that id."""

    file: str
    field: str
    id: Any


_ID_FIELDS = ("movieid", "episodeid", "tvshowid")


def _slim(obj: dict[str, Any]) -> Any:
    """json object_hook for listings: each row shrinks to a _Row as soon as it is parsed.

    Its label and other keys are dropped at once instead of after the whole answer: a
    50,000-entry answer then never holds 50,000 dicts (40 MB, which Python then keeps as
    fragmented heap; measured 22 MB instead)."""
    file = obj.get("file")
    if not isinstance(file, str):
        return obj
    for field in _ID_FIELDS:
        if field in obj:
            return _Row(file, field, obj[field])
    return _Row(file, "", None) if "filetype" in obj else obj


def _rows(where: str, method: str, answer: Any, key: str) -> tuple[list[Any], int | None]:
    """The rows of a listing's answer (Kodi may leave out the key of an empty list) and
    the number of rows Kodi has in all (`limits.total`), when it says."""
    if answer is None:
        return [], None
    if not isinstance(answer, dict) or not isinstance(answer.get(key) or [], list):
        raise ProtocolError(f"{where} answered {method} without a list of {key}: "
                            "is this Kodi's web server?")
    limits = answer.get("limits")
    total = limits.get("total") if isinstance(limits, dict) else None
    return answer.get(key) or [], total if isinstance(total, int) else None


def _ids(where: str, method: str, rows: list[Any], id_field: str) -> Iterator[tuple[str, int]]:
    """(file, id) of each listed row (parsed with _slim)."""
    for row in rows:
        if not isinstance(row, _Row) or row.field != id_field or isinstance(row.id, bool) \
                or not isinstance(row.id, int):
            raise ProtocolError(f"{where} listed a row without {id_field} in its answer to "
                                f"{method}: is this Kodi's web server?")
        yield row.file, row.id


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
             mutating: bool = False, rows: bool = False) -> Any:
        """One JSON-RPC call; Kodi's error object is raised as KodiRejected.

        A mutating call under --dry-run is recorded in .commands, not sent, and returns None.
        """
        (answer,) = self.call_many([(method, params)], mutating=mutating, rows=rows)
        if isinstance(answer, KodiRejected):
            raise answer
        return answer

    def call_many(self, calls: Sequence[tuple[str, dict[str, Any] | None]], *,
                  mutating: bool = False, rows: bool = False) -> list[Any]:
        """Several calls in one POST (a JSON-RPC batch), answered call by call.

        Returns one entry per call, in order: its result, or a KodiRejected carrying Kodi's
        error object for that call alone (the other calls of the batch stand). An answer
        that is not a batch, or lacks a call's answer, is a ProtocolError for the player.
        A lone call is sent as itself. Every call carries an `id`: Kodi executes a call
        without one (a notification) but never answers it. Never batch scans or cleans:
        Kodi does not queue them, a second one stops the first and drops itself.

        Each mutating call is logged at -v and recorded in .commands on its own, batched
        or not (what --dry-run prints); under --dry-run nothing mutating is sent and every
        answer is None. With `rows`, each listed item arrives as a _Row (see _slim).
        """
        bodies: list[dict[str, Any]] = []
        for method, params in calls:
            self._next_id += 1
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
            if params is not None:
                body["params"] = params
            bodies.append(body)
            # -v shows what changes Kodi's library; -vv every call.
            level = logging.INFO if mutating else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(level, "%s: %s %s%s", self.name, method,
                        json.dumps(params or {}, ensure_ascii=False, sort_keys=True),
                        " (dry run: not sent)" if mutating and self.dry_run else "")
            if mutating:
                self.commands.append(self.http.describe("POST", "/jsonrpc", body=body))
        if not bodies:
            return []
        if mutating and self.dry_run:
            return [None] * len(bodies)
        try:
            # Calls that change the library are never sent twice (see the module notes).
            answer = self._post(bodies[0] if len(bodies) == 1 else bodies, rows,
                                resend=not mutating)
        except MaybeReceived:
            raise self._maybe_received([b["method"] for b in bodies]) from None
        finally:
            self.requests = self.http.requests
        if len(bodies) == 1:
            return [self._answer(bodies[0]["method"], answer)]
        return self._batch_answers(bodies, answer)

    def _maybe_received(self, methods: list[str]) -> PlayerTimeout:
        """A call that changes the library was sent and not answered in time."""
        names = sorted(set(methods))
        what = names[0] if len(methods) == 1 else \
            f"a batch of {len(methods)} calls ({', '.join(names)})"
        text = (f"Kodi at {self.where} did not answer {what} within {self.sync.timeout:g} s; "
                "Kodi may have received it and may be carrying it out, so it was not sent "
                "again (Kodi must not get it twice)")
        if any(name.startswith("VideoLibrary.") for name in names):
            text += "; the items stay queued for the next run"
        return PlayerTimeout(text)

    def _post(self, payload: Any, rows: bool, *, resend: bool = True) -> Any:
        """POST to /jsonrpc; the parsed answer (None for an empty one)."""
        if not rows:
            return self.http.json("POST", "/jsonrpc", json_body=payload, auth=self.auth,
                                  resend=resend)
        response = self.http.request("POST", "/jsonrpc", json_body=payload, auth=self.auth,
                                     resend=resend)
        if response is None or not response.content:
            return None
        try:
            return json.loads(response.content, object_hook=_slim)
        except ValueError:
            # The client's own words for an HTML page or broken JSON.
            return parse_json(response, self.http.base)

    def _batch_answers(self, bodies: list[dict[str, Any]], answer: Any) -> list[Any]:
        """Each call's answer, matched by its id (Kodi keeps the order, JSON-RPC does not
        promise it)."""
        count = len(bodies)
        if not isinstance(answer, list):
            said = f" ({_error_text(answer['error'])})" if isinstance(answer, dict) \
                and answer.get("error") is not None else ""
            raise ProtocolError(f"{self.where} answered a batch of {count} JSON-RPC calls "
                                f"with something that is not one answer per call{said}: "
                                "is this Kodi's web server?")
        by_id = {entry.get("id"): entry for entry in answer if isinstance(entry, dict)}
        found = []
        for body in bodies:
            if body["id"] not in by_id:
                raise ProtocolError(f"{self.where} sent no answer to {body['method']} in a "
                                    f"batch of {count} JSON-RPC calls: is this Kodi's web "
                                    "server?")
            found.append(self._answer(body["method"], by_id[body["id"]]))
        return found

    def _answer(self, method: str, answer: Any) -> Any:
        """One call's result, or its error object as a KodiRejected (returned, not raised)."""
        if answer is None:
            raise ProtocolError(f"{self.where} sent an empty answer to {method}: "
                                "is this Kodi's web server?")
        if not isinstance(answer, dict) or not ("result" in answer or "error" in answer):
            raise ProtocolError(f"{self.where} answered {method} with something that is "
                                "not JSON-RPC: is this Kodi's web server?")
        if answer.get("error") is not None:
            return KodiRejected(method, answer["error"])
        return answer["result"]

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
            found: dict[str, int] = {}
            for file, movie_id in self._paged("VideoLibrary.GetMovies", "movies", "movieid"):
                for part in _stack_parts(file):
                    found[part] = movie_id
            self.library.movies = found
        return self.library.movies

    def _shows(self) -> dict[str, int]:
        if self.library.shows is None:
            self.library.shows = {_key(file): show_id for file, show_id in
                                  self._paged("VideoLibrary.GetTVShows", "tvshows", "tvshowid")}
        return self.library.shows

    def _paged(self, method: str, key: str, id_field: str) -> Iterator[tuple[str, int]]:
        """(file, id) of every row of a whole-library listing, PAGE rows per request.

        Kodi answers `limits` {start, end} with the rows in [start, end) and the number of
        rows in `limits.total`; a page shorter than asked for is the last. (`end: 0` would
        return no rows at all.) A server that ignores the limits sends everything at once,
        which ends the listing too. Pages are not one snapshot: the run's first listing
        comes before its refreshes, but a later one (after a clean, in verify()) can meet
        Kodi's background job re-adding a refreshed item at the end, which may hide a row
        between two pages; verify() looks again for what it misses.
        """
        start = 0
        while True:
            answer = self.call(method, {"properties": ["file"],
                                        "limits": {"start": start, "end": start + PAGE}},
                               rows=True)
            rows, total = _rows(self.where, method, answer, key)
            yield from _ids(self.where, method, rows, id_field)
            start += len(rows)
            if len(rows) < PAGE or total is None or start >= total:
                return
            del answer, rows  # the next page replaces this one, never joins it

    def _list_episodes(self, show_ids: Sequence[int]) -> None:
        """Have these shows' episodes listed: those not listed yet in one POST (a JSON-RPC
        batch) per [sync] batch_size shows, whatever their number.

        The shows stay listed in the order given (the last ones are kept longest).
        """
        episodes = self.library.episodes
        missing = list(dict.fromkeys(s for s in show_ids if s not in episodes))
        size = max(1, self.sync.batch_size)
        for at in range(0, len(missing), size):
            chunk = missing[at:at + size]
            method = "VideoLibrary.GetEpisodes"
            answers = self.call_many([(method, {"tvshowid": show, "properties": ["file"]})
                                      for show in chunk], rows=True)
            for show, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, KodiRejected):
                    raise answer
                rows = _rows(self.where, method, answer, "episodes")[0]
                episodes[show] = {part: episode_id for file, episode_id
                                  in _ids(self.where, method, rows, "episodeid")
                                  for part in _stack_parts(file)}
        for show in dict.fromkeys(show_ids):
            if show in episodes:
                episodes[show] = episodes.pop(show)  # most recently needed last

    def _trim(self) -> None:
        """Keep only the last few shows' episode listings between batches: a run goes
        through episodes show by show (ordered by path), so a show continued by the next
        batch is among them, and a whole TV library's worth is never held."""
        episodes = self.library.episodes
        while len(episodes) > SHOWS_KEPT:
            episodes.pop(next(iter(episodes)))

    def sample_paths(self, limit: int = 20) -> list[str]:
        """A few movies' and episodes' files (the first part of a stack), read-only."""
        paths: list[str] = []
        for method, key in (("VideoLibrary.GetMovies", "movies"),
                            ("VideoLibrary.GetEpisodes", "episodes")):
            answer = self.call(method, {"properties": ["file"],
                                        "limits": {"start": 0, "end": limit}}) or {}
            # Kodi 20.1 sends an empty list (a missing key is read as one too); a server
            # ignoring the limits must still not make this list the whole library.
            for row in (answer.get(key) or [])[:limit]:
                parts = _stack_parts(str(row.get("file") or ""))
                if parts and parts[0]:
                    paths.append(parts[0])
        return paths

    def _episodes(self, show_id: int) -> dict[str, int]:
        self._list_episodes([show_id])
        return self.library.episodes[show_id]

    def _show_of(self, target: Target) -> int | None:
        folder = target.path if target.item.kind == "series" else target.series_folder
        return self._shows().get(_key(folder)) if folder else None

    def _look_up(self, targets: Sequence[Target]) -> None:
        """List everything finding these targets needs, in as few requests as possible:
        the whole-library listings (once per run), then the episodes of every show the
        targets need, in one batch. find() then sends nothing."""
        if any(t.path in self.library.stale for t in targets):
            self.library = _Library()  # rare: asked again about a refreshed item
        if any(t.item.kind == "movie" for t in targets):
            self._movies()
        tv = [t for t in targets if t.item.kind != "movie"]
        if not tv:
            return
        # A show removed with these targets takes its episodes along: no need to list them.
        gone = {self._show_of(t) for t in tv if t.item.kind == "series" and t.item.removed}
        shows = [self._show_of(t) for t in tv if t.item.kind == "episode"]
        self._list_episodes([s for s in shows if s is not None and s not in gone])

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
        """Deliver a batch: look-ups in one or two round trips, then every removal and
        refresh in one POST (removals first), then cleans and scans one at a time.

        Ids are planned from one state of the listings and dropped as each planned call
        makes them stale, exactly as if the calls were sent one by one.
        """
        outcomes: dict[str, Outcome] = {}
        self._look_up([t for t in batch if not t.item.removed or self.sync.clean_deleted])
        changes: list[tuple[Target, str, dict[str, Any]]] = []
        cleans: list[Target] = []
        for target in batch:
            if not target.item.removed:
                continue
            if not self.sync.clean_deleted:
                # The user keeps deleted items in their players ([sync] clean_deleted = false).
                outcomes[target.key] = Outcome(target.key, "synced")
                continue
            kodi_id = self.find(target)
            if kodi_id is not None:
                method, field = _REMOVE[target.item.kind]
                changes.append((target, method, {field: kodi_id}))
                self._forget(target, removed=True)
            elif self._left_behind(target):
                cleans.append(target)
            else:
                # Kodi does not have it (any more): nothing left to remove.
                outcomes[target.key] = Outcome(target.key, "synced")
        to_scan: list[Target] = []
        for target in batch:
            if target.item.removed:
                continue
            kodi_id = self.find(target)
            if kodi_id is None:
                to_scan.append(target)
                continue
            method, field = _REFRESH[target.item.kind]
            changes.append((target, method, {field: kodi_id, "ignorenfo": False}))
            self._forget(target, removed=False)
        outcomes.update(self._change(changes))
        for target in cleans:
            outcomes[target.key] = self._clean(target)
        self._trim()
        outcomes.update(self._scan(to_scan))
        return [outcomes[t.key] for t in batch]

    def _change(self, changes: Sequence[tuple[Target, str, dict[str, Any]]]
                ) -> dict[str, Outcome]:
        """Send removals and refreshes, [sync] batch_size calls per POST: Kodi's refusal of
        one call fails that item only."""
        outcomes: dict[str, Outcome] = {}
        size = max(1, self.sync.batch_size)
        for at in range(0, len(changes), size):
            chunk = changes[at:at + size]
            answers = self.call_many([(method, params) for _, method, params in chunk],
                                     mutating=True)
            for (target, _, _), answer in zip(chunk, answers, strict=True):
                outcomes[target.key] = Outcome(target.key, "failed", answer.message) \
                    if isinstance(answer, KodiRejected) else Outcome(target.key, "synced")
        return outcomes

    def _left_behind(self, target: Target) -> bool:
        """A removed movie not at its exact path (renamed since?) of which Kodi still
        lists a file in its folder: a Clean scoped to that folder removes only entries
        whose files are gone. Never for TV (unreliable there) and never library-wide."""
        if target.item.kind != "movie" or target.folder_is_root:
            return False
        folder = with_trailing(target.folder, target.style)
        return any(file.startswith(folder) for file in self._movies())

    def _clean(self, target: Target) -> Outcome:
        self.wait_idle()
        try:
            self.call("VideoLibrary.Clean", {"showdialogs": False, "content": "movies",
                                             "directory": with_trailing(target.folder,
                                                                        target.style)},
                      mutating=True)
        except KodiRejected as exc:
            return Outcome(target.key, "failed", exc.message)
        self.library.forget_movies()
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
        method = "Files.GetDirectory"
        try:
            answer = self.call(method, {"directory": folder}, rows=True)
        except KodiRejected as exc:
            return exc
        # A parent listing can be a whole library folder (50,000 movie folders): one
        # answer, parsed row by row into the folder names only (see _slim).
        return {_key(row.file) for row in _rows(self.where, method, answer, "files")[0]
                if isinstance(row, _Row)}

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
            waiting = self._not_landed(waiting)
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

    def _not_landed(self, targets: Sequence[Target]) -> list[Target]:
        """The targets Kodi does not show as delivered, looked up with the whole-library
        listings and the episodes of [sync] batch_size shows per POST (each group of shows
        dropped once checked: verifying a run over 1,000 shows holds a hundred at most)."""
        if any(t.item.kind == "movie" for t in targets):
            self._movies()
        by_show: dict[int, list[Target]] = {}
        late: list[Target] = []
        for target in targets:
            show = self._show_of(target) if target.item.kind == "episode" else None
            if show is not None:
                by_show.setdefault(show, []).append(target)
            elif not self._landed(target):
                late.append(target)
        shows = list(by_show)
        size = max(1, self.sync.batch_size)
        for at in range(0, len(shows), size):
            chunk = shows[at:at + size]
            self.library.episodes = {}
            self._list_episodes(chunk)
            late += [t for show in chunk for t in by_show[show] if not self._landed(t)]
        self.library.episodes = {}
        return late

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
