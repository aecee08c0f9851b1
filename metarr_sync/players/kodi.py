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
- Kodi answers a batch of refreshes only after working through them (measured: 120
  RefreshMovie calls 7.3-10 s on tiny local files; a box reading NFOs over SMB is many
  times slower). So the engine's batch of targets (`[sync] batch_size`, one transaction
  in the state) is sent as JSON-RPC batches of at most that many calls, each sized from
  the answer times measured so far in the run (batching.BatchSizer) so that none comes
  near the request timeout.
- Neither scans, refreshes, cleans nor removals may reach Kodi twice; the JSON-RPC client
  (kodi_rpc.KodiClient, `self.kodi`) sends them at most once, and says why in its notes.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
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
    PlayerError,
    ProbeResult,
    ProbeStep,
    ProtocolError,
)
from metarr_sync.players.batching import BatchSizer
from metarr_sync.players.http import MaybeReceived
from metarr_sync.players.kodi_rpc import KodiClient, KodiRejected, Row, listed_ids, listed_rows

#: Longest time verify() looks again for items Kodi's background job has not added yet.
VERIFY_GRACE = 3.0
#: Shows whose episode listings are kept between batches (see KodiPlayer._trim).
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


def _holder(folder: str, style: PathStyle, folders: Container[str]) -> str | None:
    """The folder of `folders` that holds `folder` (or is it), found by walking up."""
    while True:
        if folder in folders:
            return folder
        above = _key(parent(folder, style))
        if above == folder:
            return None
        folder = above


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
    """The Kodi target: finds Metarr's items in Kodi's library and plans the refreshes,
    removals and scans that bring them up to date; every call goes through `self.kodi`."""

    type_name: ClassVar[str] = "kodi"

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False):
        super().__init__(config, sync, dry_run=dry_run)
        self.kodi = KodiClient(config, sync, dry_run=dry_run)
        self.use_client(self.kodi)
        self.library = _Library()
        self.sources: list[str] | None = None
        #: Folders scanned in this run, and whether Kodi saw each in its parent's listing.
        #: An item below one of them was added by that scan (with its NFO and artwork).
        self.scanned: dict[str, bool] = {}
        #: Parent folder -> its entries as Kodi listed them in this run (or why not).
        self.parents: dict[str, set[str] | KodiRejected] = {}
        #: Calls per JSON-RPC batch of refreshes and removals, learnt over the run.
        self.sizer = BatchSizer(sync.timeout, max(1, sync.batch_size))

    @property
    def where(self) -> str:
        return self.kodi.where

    # --- discovery ---------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        result = ProbeResult()
        pong = self.kodi.call("JSONRPC.Ping")
        if pong != "pong":
            raise ProtocolError(f"{self.where} answered JSONRPC.Ping with {pong!r} instead "
                                "of 'pong': is this Kodi?")
        result.steps.append(ProbeStep("JSON-RPC", True, f"{self.where}/jsonrpc answers"))
        version = self.kodi.call("JSONRPC.Version")
        try:
            api = version["version"]
            result.api_version = f"{api['major']}.{api.get('minor', 0)}.{api.get('patch', 0)}"
        except (TypeError, KeyError):
            raise ProtocolError(f"{self.where} sent no usable JSONRPC.Version") from None
        try:
            app = self.kodi.call("Application.GetProperties",
                                 {"properties": ["version", "name"]})
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
            answer = self.kodi.call("Files.GetSources", {"media": "video"}) or {}
            roots: list[str] = []
            for source in answer.get("sources") or []:
                roots.extend(_expand_source(str(source.get("file", ""))))
            self.sources = [r for r in roots if r]
        return self.sources

    def is_playing(self) -> bool:
        active = self.kodi.call("Player.GetActivePlayers")
        return bool(active)

    # --- finding items -----------------------------------------------------------------

    def _movies(self) -> dict[str, int]:
        if self.library.movies is None:
            found: dict[str, int] = {}
            for file, movie_id in self.kodi.paged("VideoLibrary.GetMovies", "movies", "movieid"):
                for part in _stack_parts(file):
                    found[part] = movie_id
            self.library.movies = found
        return self.library.movies

    def _shows(self) -> dict[str, int]:
        if self.library.shows is None:
            self.library.shows = {_key(file): show_id for file, show_id in
                                  self.kodi.paged("VideoLibrary.GetTVShows", "tvshows", "tvshowid")}
        return self.library.shows

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
            answers = self.kodi.call_many(
                [(method, {"tvshowid": show, "properties": ["file"]}) for show in chunk],
                rows=True)
            for show, answer in zip(chunk, answers, strict=True):
                if isinstance(answer, KodiRejected):
                    raise answer
                rows = listed_rows(self.where, method, answer, "episodes")[0]
                episodes[show] = {part: episode_id for file, episode_id
                                  in listed_ids(self.where, method, rows, "episodeid")
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
            answer = self.kodi.call(method, {"properties": ["file"],
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
        refresh in as few POSTs as the measured pace allows (removals first), then cleans
        and scans one at a time.

        Ids are planned from one state of the listings and dropped as each planned call
        makes them stale, exactly as if the calls were sent one by one. When Kodi fails
        midway, what was settled before (answered, or sent without an answer: `sent`)
        travels with the error (PlayerError.settled) for the engine to record.
        """
        outcomes: dict[str, Outcome] = {}
        try:
            self._deliver(batch, outcomes)
        except PlayerError as exc:
            exc.settled = list(outcomes.values())
            raise
        return [outcomes[t.key] for t in batch]

    def _deliver(self, batch: Sequence[Target], outcomes: dict[str, Outcome]) -> None:
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
        self._change(changes, outcomes)
        for target in cleans:
            outcomes[target.key] = self._clean(target, outcomes)
        self._trim()
        self._scan(to_scan, outcomes)

    @staticmethod
    def _sent(targets: Iterable[Target], exc: MaybeReceived,
              outcomes: dict[str, Outcome]) -> MaybeReceived:
        """Kodi may be carrying out what it was sent for these targets: they are `sent`,
        to be looked up before anything is sent for them again."""
        for target in targets:
            outcomes[target.key] = Outcome(target.key, "sent", exc.message)
        return exc

    def _change(self, changes: Sequence[tuple[Target, str, dict[str, Any]]],
                outcomes: dict[str, Outcome]) -> None:
        """Send removals and refreshes in JSON-RPC batches sized by self.sizer (at most
        [sync] batch_size calls each); Kodi's refusal of one call fails that item only.

        Each batch's answer time (Kodi answers after working through the calls) sizes
        the next one. A batch not answered in time is not sent again: its items are `sent`.
        """
        at = 0
        while at < len(changes):
            chunk = changes[at:at + self.sizer.size]
            started = self.kodi.clock()
            try:
                answers = self.kodi.call_many(
                    [(method, params) for _, method, params in chunk], mutating=True)
            except MaybeReceived as exc:
                raise self._sent((target for target, _, _ in chunk), exc, outcomes) from None
            if not self.dry_run:
                self.sizer.measured(len(chunk), self.kodi.clock() - started)
            for (target, _, _), answer in zip(chunk, answers, strict=True):
                outcomes[target.key] = Outcome(target.key, "failed", answer.message) \
                    if isinstance(answer, KodiRejected) else Outcome(target.key, "synced")
            at += len(chunk)

    def _left_behind(self, target: Target) -> bool:
        """A removed movie not at its exact path (renamed since?) of which Kodi still
        lists a file in its folder: a Clean scoped to that folder removes only entries
        whose files are gone. Never for TV (unreliable there) and never library-wide."""
        if target.item.kind != "movie" or target.folder_is_root:
            return False
        folder = with_trailing(target.folder, target.style)
        return any(file.startswith(folder) for file in self._movies())

    def _clean(self, target: Target, outcomes: dict[str, Outcome]) -> Outcome:
        self.kodi.wait_idle()
        try:
            self.kodi.call("VideoLibrary.Clean",
                           {"showdialogs": False, "content": "movies",
                            "directory": with_trailing(target.folder, target.style)},
                           mutating=True)
        except KodiRejected as exc:
            return Outcome(target.key, "failed", exc.message)
        except MaybeReceived as exc:
            raise self._sent([target], exc, outcomes) from None
        self.library.forget_movies()
        return Outcome(target.key, "synced")

    def _scan_folder(self, target: Target) -> str:
        """The folder whose scan adds the item: a new show is added through its show
        folder (a season folder scan only works for a show Kodi knows)."""
        kind = target.item.kind
        if kind == "episode" and target.series_folder and self._show_of(target) is None:
            return target.series_folder
        return target.folder

    def _scan(self, targets: Iterable[Target], outcomes: dict[str, Outcome]) -> None:
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
            earlier = _holder(folder, wanted[folder][0].style, self.scanned)
            if earlier is None:
                continue
            # Below a folder this run scanned already: that scan added the item, there is
            # nothing to send (Kodi's listings are kept for the run, so it was not seen).
            for t in wanted.pop(folder):
                outcomes[t.key] = Outcome(t.key, "synced") if self.scanned[earlier] else \
                    self._unseen(t, earlier)
        groups: dict[str, list[Target]] = {f: [] for f in collapse_folders(wanted)}
        for folder, members in wanted.items():
            # Walking up, not comparing with every group: a batch's folders stay linear.
            top = _holder(folder, members[0].style, groups)
            groups.setdefault(top or folder, []).extend(members)
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
            self.kodi.wait_idle()
            try:
                self.kodi.call("VideoLibrary.Scan",
                               {"directory": with_trailing(folder, style), "showdialogs": False},
                               mutating=True)
            except KodiRejected as exc:
                for t in members:
                    outcomes[t.key] = Outcome(t.key, "failed", exc.message)
                continue
            except MaybeReceived as exc:
                raise self._sent(members, exc, outcomes) from None
            # Kodi's listings stay valid: a scan only adds items (found again below
            # self.scanned), it never renumbers the ones listed.
            seen = self.scanned[folder] = folder in listing
            for t in members:
                outcomes[t.key] = Outcome(t.key, "synced") if seen else \
                    self._unseen(t, folder)

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
            answer = self.kodi.call(method, {"directory": folder}, rows=True)
        except KodiRejected as exc:
            return exc
        # A parent listing can be a whole library folder (50,000 movie folders): one
        # answer, parsed row by row into the folder names only (rows=True: see Row).
        return {_key(row.file) for row in listed_rows(self.where, method, answer, "files")[0]
                if isinstance(row, Row)}

    def _mapping_hint(self, target: Target) -> str:
        mapping = best_mapping(target.item.path, self.config.mappings)
        if mapping is None:
            return f"{target.item.path} (player {self.name} has no mapping: Kodi is " \
                   "given Metarr's own paths)"
        return mapping.metarr

    def scan_all(self) -> None:
        """A full library scan: only when the user turned targeted_updates off."""
        self.kodi.wait_idle()
        self.kodi.call("VideoLibrary.Scan", {"showdialogs": False}, mutating=True)
        self.library = _Library()

    def notify(self, title: str, message: str) -> None:
        self.kodi.call("GUI.ShowNotification", {"title": title, "message": message,
                                                "displaytime": NOTIFICATION_MS}, mutating=True)

    # --- verifying ---------------------------------------------------------------------

    def verify(self, targets: Sequence[Target]) -> list[Outcome]:
        """Look every delivered item up in Kodi by its exact path, after scans finished.

        Kodi works through scans and refreshes in a background job (a refresh deletes and
        re-adds the item), so an item not seen at once is looked for again for a few
        seconds before it is called unverified.
        """
        deadline = self.kodi.clock() + min(self.sync.timeout, VERIFY_GRACE)
        delay = 0.25
        waiting = list(targets)
        while True:
            self.kodi.wait_idle()
            self.library = _Library()  # scans and refreshes since the last listing
            waiting = self._not_landed(waiting)
            if not waiting or self.kodi.clock() + delay > deadline:
                break
            self.kodi.sleep(delay)
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
        self.kodi.close()
