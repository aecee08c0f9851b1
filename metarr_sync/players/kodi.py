"""Kodi: JSON-RPC 2.0 over HTTP (`POST /jsonrpc`), built on what a real Kodi does.

The facts this adapter relies on, measured on real Kodi 20.1 and 21.2 (JSON-RPC API 13.0
and 13.5; tests/test_kodi_real.py runs against both; the artwork facts are in
kodi_artwork.md beside this module):
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
- The `path` filter of `Get*` is SQL LIKE on the item's folder with its trailing separator
  (ASCII case ignored, non-ASCII byte for byte, `_`/`%` wildcards that cannot be escaped;
  measured on 20.1 and 21.2, kodi_lookup.md beside this module). A small run (SMALL_RUN)
  looks its items up by folder with it; a bigger one lists each library once per run.
  Either way items are matched here by comparing Kodi's `file` with the expected path,
  as the file system holding it compares names (paths.match_key: case ignored
  for Windows drive, UNC and `smb://` paths, names in NFC everywhere, since Kodi lists a
  name as the file system has it, NFD when macOS wrote it). What is sent back is Kodi's
  own spelling where Kodi gave one: an item's id, a new folder as the listing of its
  parent spells it, the source holding a folder as Kodi lists its sources (a scan below
  a source spelled in another case could miss the source's content settings, which
  Kodi keeps under the path as typed); else the mapped path (plan.map_path).
- A JSON-RPC batch (an array of calls in one POST) is answered call by call. Look-ups,
  refreshes and removals of a batch of targets travel together (one round trip instead of
  one per item); scans, cleans and the idle checks before them never do, since Kodi drops
  a scan sent while another runs.
- Kodi mostly answers a batch of refreshes only after working through them (measured:
  120 RefreshMovie calls 7.3-10 s on tiny local files; a box reading NFOs over SMB is many
  times slower), but may answer before carrying some out (single calls on 20.1, batches
  on 21.2 under load): the next batch then waits behind that work, and verify() waits
  while items are still listed under the id they were refreshed with. So the engine's
  batch of targets (`[sync] batch_size`, one transaction in the state) is sent as JSON-RPC
  batches of at most that many calls, each sized from the answer times measured so far in
  the run (batching.BatchSizer, never past the slowest pace seen) so that none comes near
  the request timeout.
- Neither scans, refreshes, cleans nor removals may reach Kodi twice; the JSON-RPC client
  (kodi_rpc.KodiClient, `self.kodi`) sends them at most once, and says why in its notes.
- Kodi shows artwork from its own texture cache, which a refresh does not renew: a
  republished poster under the same name stays old on screen until the cached copy is
  dropped (`Textures.RemoveTexture`). So every refresh is followed by dropping the cached
  copies of the item's own art, and verification checks the title Kodi shows and that no
  cached copy is older than the file. The measured facts are in kodi_artwork.md beside
  this module.

Upgrades and renames (Radarr/Sonarr replace a file; Metarr rewrites the movie's or
episode's path in place). Measured on Kodi 20.1 (tests/test_kodi_real.py fails without
the removal below) and reported the same for 21.2: a scan of the folder adds the new file
and leaves the old entry, so Kodi lists both (the 720p beside the 1080p) until the old
entry is removed by id or the folder cleaned. So for an item whose path changed
(`Target.previous`, from the state) the new file is scanned (or refreshed, when Kodi found
it already), and each old file Kodi still lists — looked up by its exact path, never by a
LIKE match — is removed with `RemoveMovie`/`RemoveEpisode` in the same batch as the
refreshes. Only when the disk proves the old file gone (disk.old_file_gone, on Metarr's
paths): a file still there is a copy someone kept, and its entry stays. verify() then
counts the item only when Kodi lists the new file and none of the old ones; otherwise it
is unverified with the reason (the kept copy, or a disk that could not be checked) and
tried again on the next runs, so deleting the copy lets a later run finish the job.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Container, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import unquote

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.disk import old_file_gone
from metarr_sync.paths import (
    PLATFORM,
    PathStyle,
    collapse_folders,
    components_below,
    is_absolute_any,
    is_under,
    join,
    match_key,
    nfc,
    parent,
    strip_trailing,
    with_trailing,
)
from metarr_sync.plan import OldFile, Target, best_mapping, unmap_path
from metarr_sync.players.base import (
    Outcome,
    Player,
    PlayerError,
    ProbeResult,
    ProbeStep,
    ProtocolError,
    Result,
)
from metarr_sync.players.batching import BatchSizer
from metarr_sync.players.http import MaybeReceived
from metarr_sync.players.kodi_rpc import KodiClient, KodiRejected, Row, listed_ids, listed_rows

# The client's logger: -v lines read "metarr_sync.kodi: <player>: ...".
log = logging.getLogger("metarr_sync.kodi")

#: Longest time verify() looks again for items Kodi's background job has not added yet.
VERIFY_GRACE = 3.0
#: Shows whose episode listings are kept between batches (see KodiPlayer._trim).
SHOWS_KEPT = 8
#: Up to this many targets (a batch in apply(), the run in verify()), Kodi's items are
#: looked up by their folder (one call each, all in one POST) instead of listing the
#: library (one call per PAGE rows, each row built and sent by Kodi): a small run then
#: costs what it changes. With [sync] batch_size 100, 50 look-ups are one POST of ~50
#: short answers, against listing pages of 5,000 rows each; above it the listing, read
#: once per run, is shared by every batch. The measured filter facts: kodi_lookup.md.
SMALL_RUN = 50
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
#: What a look-up by folder asks of Kodi for each kind: (method, rows key, id field).
_LOOK_UP = {
    "movie": ("VideoLibrary.GetMovies", "movies", "movieid"),
    "show": ("VideoLibrary.GetTVShows", "tvshows", "tvshowid"),
    "episode": ("VideoLibrary.GetEpisodes", "episodes", "episodeid"),
}
_DETAILS = {
    "movie": ("VideoLibrary.GetMovieDetails", "movieid", "moviedetails"),
    "series": ("VideoLibrary.GetTVShowDetails", "tvshowid", "tvshowdetails"),
    "episode": ("VideoLibrary.GetEpisodeDetails", "episodeid", "episodedetails"),
}
#: What verify() compares with Metarr's item, from the NFOs Metarr writes: a movie's or
#: show's title; for an episode the show it belongs to and its season and number (the
#: queue keeps an episode's show title, not the episode's own).
_SHOWN = {"movie": ("title",), "series": ("title",),
          "episode": ("showtitle", "season", "episode")}
#: Seconds Kodi's library job takes per refresh (measured: 120 refreshes of tiny local
#: files in 9.3 s): verify() waits this much longer per refresh the run sent, since a
#: refresh is answered at once and carried out afterwards.
REFRESH_SECONDS = 0.1


def art_file(url: Any) -> str | None:
    """The file behind one of Kodi's art URLs (`image://<encoded path>/`), or None for
    anything that is not a file: a skin icon (`image://DefaultVideo.png/`), a thumbnail
    Kodi extracts from the video (`image://video@.../`), a transformed image."""
    if not isinstance(url, str) or not url.startswith("image://") or not url.endswith("/"):
        return None
    inner = url[len("image://"):-1]
    if "/" in inner:
        return None  # options after the wrapped path (`.../transform?size=thumb`)
    path = unquote(inner)
    # Absolute in any style Kodi keeps a file under (paths.is_absolute_any): POSIX, a drive,
    # a URL, and a UNC path, which a Kodi on Windows lists for a `\\\\nas\\share` source.
    return path if is_absolute_any(path) else None


def own_art(art: Any) -> list[str]:
    """The art URLs of an item's own images, from its `art` (type -> URL): not those it
    shows of its show, season or movie set (`tvshow.poster`, `season.poster`,
    `set.fanart`: they belong to those items), and only images that are files."""
    if not isinstance(art, dict):
        return []
    return list(dict.fromkeys(url for key, url in art.items()
                              if "." not in str(key) and art_file(url) is not None))


def image_hash(path: str) -> str | None:
    """Kodi's `imagehash` of a file as it is now (`d<mtime>s<size>`, mtime in whole
    seconds, the ctime when there is no mtime), or None when it cannot be read here."""
    try:
        stat = os.stat(path)
    except (OSError, ValueError):
        return None
    mtime = int(stat.st_mtime) or int(stat.st_ctime)
    return f"d{mtime}s{stat.st_size}" if mtime or stat.st_size else "BADHASH"


def _key(path: str) -> str:
    """What a path of Kodi's is compared by: its paths.match_key (no trailing separator,
    NFC, case-folded where the file system ignores case)."""
    return match_key(path)


def _stack_parts(file: str) -> list[str]:
    """The files of a Kodi stack (`stack://a.avi , b.avi`; commas in names doubled)."""
    if not file.startswith("stack://"):
        return [file]
    return [part.replace(",,", ",") for part in file[len("stack://"):].split(" , ")]


def _like(folder: str) -> str:
    """A folder as the value of a `path` filter, which Kodi matches with SQL LIKE: `_` and
    `%` are wildcards there and cannot be escaped (a backslash is taken literally), and
    only ASCII letters match in either case, while non-ASCII names must match byte for
    byte (NFC does not find an NFD folder). So each run of non-ASCII characters becomes
    `%`, the answer is a superset of the folder's items, and each row is confirmed by
    `_key` (exact, NFC, case as the file system holding it) before it is used."""
    return re.sub(r"[^\x00-\x7f]+", "%", folder)


def _expand_source(path: str) -> list[str]:
    """A source's folders: a multipath source lists several, URL-encoded."""
    if not path.startswith("multipath://"):
        return [path]
    return [unquote(part) for part in path[len("multipath://"):].split("/") if part]


def _source_roots(answer: Any) -> list[str]:
    """The folders of Kodi's video sources, from its answer to Files.GetSources."""
    roots: list[str] = []
    for source in (answer or {}).get("sources") or []:
        roots.extend(_expand_source(str(source.get("file", ""))))
    return [r for r in roots if r]


def _holder(folder: str, style: PathStyle, folders: Container[str],
            key: Callable[[str], str] = strip_trailing) -> str | None:
    """The key in `folders` of the folder that holds `folder` (or is it), found by walking
    up; `key` is how `folders` is keyed (our own spelling, or Kodi's `_key`)."""
    folder = strip_trailing(folder)
    while True:
        if key(folder) in folders:
            return key(folder)
        above = strip_trailing(parent(folder, style))
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
        #: A show folder's key -> Kodi's spelling of it, where the two differ (rare).
        self.show_spellings: dict[str, str] = {}
        self.episodes: dict[int, dict[str, int]] = {}
        #: Paths of items refreshed in this run: Kodi has them under an id not known here.
        self.stale: set[str] = set()
        #: A small run's look-ups by folder (SMALL_RUN): the rows Kodi answered, by `_key`,
        #: and the folders asked about ("movie"/"show"/"episode", folder key).
        self.some_movies: dict[str, int] = {}
        self.some_shows: dict[str, int] = {}
        self.some_episodes: dict[str, int] = {}
        self.looked: set[tuple[str, str]] = set()

    def forget_movies(self) -> None:
        self.movies = None
        self.some_movies = {}
        self.looked = {key for key in self.looked if key[0] != "movie"}


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
        self.parents: dict[str, dict[str, str] | KodiRejected] = {}
        #: Refreshes sent in this run: Kodi carries them out after answering (verify()).
        self.refreshes = 0
        #: Item key -> the Kodi id it had when its refresh was sent. Kodi re-adds a
        #: refreshed item under a new id (or, when it had the highest, the same one), so
        #: an item still listed under its old id may not have been carried out yet.
        self.refreshed_ids: dict[str, int] = {}
        #: Calls per JSON-RPC batch of refreshes and removals, learnt over the run.
        self.sizer = BatchSizer(sync.timeout, max(1, sync.batch_size))
        #: (calls, seconds) of every such batch: this box's pace, for verify()'s wait.
        self.pace: list[tuple[int, float]] = []
        #: The same for the reads around them (art, textures, details): a Kodi working
        #: through refreshes answers those slower too.
        self.read_sizer = BatchSizer(sync.timeout, max(1, sync.batch_size))
        #: Whether items are looked up by folder rather than listed (up to small_run).
        self.small_run = SMALL_RUN
        self.narrow = False

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
        # The rest in one POST (a JSON-RPC batch, answered call by call): discovery is most
        # of a small run's requests. Ping alone first: what answers it tells what the server
        # is (not Kodi, wrong password) as clearly as a lone call can.
        version, app, sources = self.kodi.call_many([
            ("JSONRPC.Version", None),
            ("Application.GetProperties", {"properties": ["version", "name"]}),
            ("Files.GetSources", {"media": "video"})])
        result.steps.append(ProbeStep("JSON-RPC", True, f"{self.where}/jsonrpc answers"))
        if isinstance(version, KodiRejected):
            raise version
        try:
            api = version["version"]
            result.api_version = f"{api['major']}.{api.get('minor', 0)}.{api.get('patch', 0)}"
        except (TypeError, KeyError):
            raise ProtocolError(f"{self.where} sent no usable JSONRPC.Version") from None
        try:
            if isinstance(app, KodiRejected):
                raise app
            ver = app["version"]
            tag = ver.get("tag", "")
            result.version = f"{ver['major']}.{ver['minor']}" + (
                f" ({tag})" if tag and tag != "stable" else "")
        except (KodiRejected, TypeError, KeyError):
            result.version = ""  # informative only; the API version is what matters
        if isinstance(sources, KodiRejected):
            raise sources
        self.sources = _source_roots(sources)
        result.steps.append(ProbeStep(
            "version", True, f"Kodi {result.version or '?'}, JSON-RPC API {result.api_version}"))
        result.roots = self.video_sources()
        result.steps.append(ProbeStep(
            "video sources", bool(result.roots), ", ".join(result.roots)
            or "Kodi has no video sources: add the library folders as sources in Kodi"))
        for mapping in self.config.mappings:
            covered = any(is_under(mapping.player, r, PLATFORM)
                          or is_under(r, mapping.player, PLATFORM)
                          for r in result.roots)
            result.steps.append(ProbeStep(
                f"mapping {mapping.metarr}", covered,
                f"{mapping.player} is inside a Kodi source" if covered else
                f"no Kodi source contains {mapping.player}: check this mapping against "
                f"Kodi's sources"))
        return result

    def check_settings(self) -> list[ProbeStep]:
        """The loaded profile (only its library gets the updates), and what cannot be read:
        the sources' scrapers (players/settings.py)."""
        from metarr_sync.players.settings import KODI_SCRAPER_NOTE, kodi_profile_check

        answers = self.kodi.call_many([("Profiles.GetCurrentProfile", None),
                                       ("Profiles.GetProfiles", None)])
        for answer in answers:
            if isinstance(answer, KodiRejected):
                raise answer
        current, listed = (a if isinstance(a, dict) else {} for a in answers)
        labels = [str(p.get("label") or "") for p in listed.get("profiles") or []
                  if isinstance(p, dict)]
        return [kodi_profile_check(str(current.get("label") or ""), labels), KODI_SCRAPER_NOTE]

    def video_sources(self) -> list[str]:
        if self.sources is None:
            self.sources = _source_roots(self.kodi.call("Files.GetSources", {"media": "video"}))
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
                    found[_key(part)] = movie_id
            self.library.movies = found
        return self.library.movies

    def _shows(self) -> dict[str, int]:
        if self.library.shows is None:
            shows: dict[str, int] = {}
            for file, show_id in self.kodi.paged("VideoLibrary.GetTVShows", "tvshows",
                                                 "tvshowid"):
                key = _key(file)
                shows[key] = show_id
                if strip_trailing(file) != key:
                    self.library.show_spellings[key] = strip_trailing(file)
            self.library.shows = shows
        return self.library.shows

    def _movie_ids(self, paths: Iterable[str], style: PathStyle) -> Mapping[str, int]:
        """`_key` of a file -> its movie id: the whole listing when there is one or the run
        is not small, else the movies of these files' folders, looked up."""
        if self.library.movies is not None or not self.narrow:
            return self._movies()
        self._look_up_folders([(parent(p, style), style) for p in paths], [])
        return self.library.some_movies

    def _show_ids(self, folders: Iterable[str], style: PathStyle) -> Mapping[str, int]:
        """`_key` of a show folder -> its show id, as _movie_ids() for movies."""
        if self.library.shows is not None or not self.narrow:
            return self._shows()
        self._look_up_folders([], [(f, style) for f in folders])
        return self.library.some_shows

    def _look_up_folders(self, movies: Sequence[tuple[str, PathStyle]],
                         shows: Sequence[tuple[str, PathStyle]],
                         episodes: Sequence[tuple[str, PathStyle]] = (), *,
                         idle_check: bool = False) -> bool:
        """Ask Kodi for the movies in these folders, the shows at these folders and the
        episodes in these folders, each folder once per listing state, every call in one
        POST per [sync] batch_size: `GetMovies`/`GetTVShows`/`GetEpisodes` filtered on
        `path` `is` the folder (with its trailing separator: Kodi's `strPath`), see
        _like() and kodi_lookup.md.

        With `idle_check`, Kodi's "is the library scanning" question travels first in the
        same POST (verify() saves a request); returns whether Kodi said it was idle, False
        when nothing was sent. Scanning: what it answered is dropped (Kodi is adding items).
        """
        calls: list[tuple[str, str, str]] = []  # (kind, folder key, LIKE value)
        for kind, folders in (("movie", movies), ("show", shows), ("episode", episodes)):
            for folder, style in folders:
                key = (kind, _key(folder))
                if key not in self.library.looked:
                    self.library.looked.add(key)
                    calls.append((kind, key[1], _like(with_trailing(folder, style))))
        size = max(1, self.sync.batch_size)
        idle = False
        for at in range(0, len(calls), size):
            chunk = calls[at:at + size]
            ask: list[tuple[str, dict[str, Any] | None]] = [
                (_LOOK_UP[kind][0],
                 {"properties": ["file"], "filter": {"field": "path", "operator": "is",
                                                     "value": value}})
                for kind, _, value in chunk]
            if idle_check and at == 0 and not self.kodi.dry_run:
                first, *answers = self.kodi.call_many(
                    [("XBMC.GetInfoBooleans", {"booleans": ["Library.IsScanningVideo"]}),
                     *ask], rows=True)
                idle = isinstance(first, dict) and first.get("Library.IsScanningVideo") \
                    is False
                if not idle:
                    self.library = _Library()
                    return False
            else:
                answers = self.kodi.call_many(ask, rows=True)
            for (kind, _, _), answer in zip(chunk, answers, strict=True):
                if isinstance(answer, KodiRejected):
                    raise answer
                method, rows_key, field = _LOOK_UP[kind]
                rows = listed_rows(self.where, method, answer, rows_key)[0]
                for file, item_id in listed_ids(self.where, method, rows, field):
                    if kind != "show":
                        found = self.library.some_movies if kind == "movie" else \
                            self.library.some_episodes
                        for part in _stack_parts(file):
                            found[_key(part)] = item_id
                    else:
                        self.library.some_shows[_key(file)] = item_id
                        if strip_trailing(file) != _key(file):
                            self.library.show_spellings[_key(file)] = strip_trailing(file)
        return idle

    def _prefetch(self, targets: Sequence[Target], *, idle_check: bool = False) -> bool:
        """What finding these targets needs, in as few POSTs as possible: the whole
        listings of their kinds, or (a small run) their folders looked up together (with
        `idle_check`, see _look_up_folders: whether Kodi said it was idle)."""
        movies = [t for t in targets if t.item.kind == "movie"]
        tv = [t for t in targets if t.item.kind != "movie"]
        if not self.narrow:
            if movies:
                self._movies()
            if tv:
                self._shows()
            return False
        movie_folders = [] if self.library.movies is not None else [
            (parent(p, t.style), t.style) for t in movies
            for p in [t.path, *(old.path for old in t.previous)]]
        show_folders = [] if self.library.shows is not None else [
            (f, t.style) for t in tv
            if (f := t.path if t.item.kind == "series" else t.series_folder)]
        episode_folders = [(parent(p, t.style), t.style) for t in tv
                           if t.item.kind == "episode"
                           for p in [t.path, *(old.path for old in t.previous)]]
        return self._look_up_folders(movie_folders, show_folders, episode_folders,
                                     idle_check=idle_check)

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
                episodes[show] = {_key(part): episode_id for file, episode_id
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
        return self._show_ids([folder], target.style).get(_key(folder)) if folder else None

    def _look_up(self, targets: Sequence[Target]) -> None:
        """List everything finding these targets needs, in as few requests as possible:
        the whole-library listings (once per run), then the episodes of every show the
        targets need, in one batch. find() then sends nothing."""
        if any(t.path in self.library.stale for t in targets):
            self.library = _Library()  # rare: asked again about a refreshed item
        self.narrow = len(targets) <= self.small_run
        self._prefetch(targets)
        tv = [t for t in targets if t.item.kind != "movie"]
        if not tv:
            return
        # A show removed with these targets takes its episodes along: no need to list them.
        if self.narrow:
            return  # the episodes were looked up by their folders with the shows
        gone = {self._show_of(t) for t in tv if t.item.kind == "series" and t.item.removed}
        shows = [self._show_of(t) for t in tv if t.item.kind == "episode"]
        self._list_episodes([s for s in shows if s is not None and s not in gone])

    def find(self, target: Target) -> int | None:
        """Kodi's current id of the target's item, matched by its path (`_key`)."""
        if target.path in self.library.stale:
            self.library = _Library()  # rare: asked again about a refreshed item
        kind = target.item.kind
        if kind == "movie":
            return self._movie_ids([target.path], target.style).get(_key(target.path))
        show = self._show_of(target)
        if kind == "series" or show is None:
            return show
        return self._episode_ids(show, target.path, target.style).get(_key(target.path))

    def _episode_ids(self, show: int, path: str, style: PathStyle) -> Mapping[str, int]:
        """`_key` of a file -> its episode id: the show's episodes when they are listed
        or the run is not small, else the episodes of the file's folder, looked up."""
        if show in self.library.episodes or not self.narrow:
            return self._episodes(show)
        self._look_up_folders([], [], [(parent(path, style), style)])
        return self.library.some_episodes

    def _old_entry(self, target: Target, old: OldFile) -> tuple[int, int | None] | None:
        """(Kodi's id, its show's id) of the movie or episode whose file is exactly the old
        file, or None. An old episode is looked for in the show whose folder holds it."""
        if target.item.kind == "movie":
            movie_id = self._movie_ids([old.path], target.style).get(_key(old.path))
            return None if movie_id is None else (movie_id, None)
        shows = self._show_ids([target.series_folder] if target.series_folder else [],
                               target.style)
        show = _holder(parent(old.path, target.style), target.style, shows, _key)
        if show is None and shows is not self.library.shows:
            shows = self._shows()  # rare: an old file outside the item's show folder
            show = _holder(parent(old.path, target.style), target.style, shows, _key)
        if show is None:
            return None
        show_id = shows[show]
        episode_id = self._episode_ids(show_id, old.path, target.style).get(_key(old.path))
        return None if episode_id is None else (episode_id, show_id)

    def _replace_old(self, target: Target) -> list[tuple[Target, str, dict[str, Any]]]:
        """The removals of the old entries of an upgraded or renamed item: each old file
        Kodi still lists and that the disk proves gone (the others are kept, and verify()
        says why)."""
        removals: list[tuple[Target, str, dict[str, Any]]] = []
        for old in target.previous:
            found = self._old_entry(target, old)
            if found is None:
                continue  # Kodi does not list it (never had it, or already replaced)
            verdict = old_file_gone(old.metarr, target.item.path)
            if not verdict.gone:
                log.warning("%s: keeping Kodi's entry for %s: %s", self.name, old.path,
                            verdict.why)
                continue
            kodi_id, show_id = found
            method, field = _REMOVE[target.item.kind]
            removals.append((target, method, {field: kodi_id}))
            for entries in ((self.library.movies, self.library.some_movies)
                            if show_id is None else (self.library.episodes.get(show_id),
                                                     self.library.some_episodes)):
                if entries is not None:
                    entries.pop(_key(old.path), None)  # its id is about to go
        return removals

    def _forget(self, target: Target, *, removed: bool) -> None:
        """Drop an id a call just made stale; a refreshed item is re-listed if asked again.

        A movie or episode refresh re-adds the item under a new id; a show refresh keeps
        the show's id; a removal deletes the item (and a show's episodes with it).
        """
        kind = target.item.kind
        if kind == "series":
            show = self._show_of(target)
            if removed and show is not None:
                self.library.episodes.pop(show, None)
                self.library.some_shows.pop(_key(target.path), None)
                if self.library.shows is not None:
                    self.library.shows.pop(_key(target.path), None)
            return
        held: tuple[dict[str, int] | None, ...]
        if kind == "movie":
            held = (self.library.movies, self.library.some_movies)
        else:
            show = self._show_of(target)
            held = (self.library.episodes.get(show) if show is not None else None,
                    self.library.some_episodes)
        for entries in held:
            if entries is not None:
                entries.pop(_key(target.path), None)
        if not removed:
            self.library.stale.add(target.path)

    # --- delivering --------------------------------------------------------------------

    def apply(self, batch: Sequence[Target]) -> list[Outcome]:
        """Deliver a batch: look-ups in one or two round trips, then every removal and
        refresh in as few POSTs as the measured pace allows (removals first), then cleans
        and scans one at a time. Around the refreshes, Kodi's cached copies of the
        refreshed items' images are dropped: their art read just before, looked up and
        removed just after (one POST per [sync] batch_size each), so that Kodi shows the
        republished files.

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
                outcomes[target.key] = Outcome(target.key, Result.SYNCED)
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
                outcomes[target.key] = Outcome(target.key, Result.SYNCED)
        to_scan: list[Target] = []
        refreshing: list[tuple[Target, int]] = []
        for target in batch:
            if target.item.removed:
                continue
            if target.previous:
                changes += self._replace_old(target)
            kodi_id = self.find(target)
            if kodi_id is None:
                to_scan.append(target)
                continue
            method, field = _REFRESH[target.item.kind]
            changes.append((target, method, {field: kodi_id, "ignorenfo": False}))
            refreshing.append((target, kodi_id))
            self.refreshed_ids[target.key] = kodi_id
            self._forget(target, removed=False)
        # The art each item has *before* its refresh, read with the ids about to go stale:
        # the images Kodi may have cached (a refresh is carried out after Kodi answered).
        art = {key: found[1] for key, found in self._details(refreshing).items()
               if isinstance(found, tuple) and found[1]}
        self._change(changes, outcomes)
        self.refreshes += len(refreshing)
        refreshed = {k: v for k, v in art.items() if outcomes[k].result == Result.SYNCED}
        self.cached_art.update(refreshed)
        for key, error in self._drop_textures(refreshed).items():
            outcomes[key] = Outcome(key, Result.RETRY, error + "; the item stays queued")
        for target in cleans:
            outcomes[target.key] = self._clean(target, outcomes)
        self._trim()
        scanned: dict[str, Outcome] = {}
        try:
            self._scan(to_scan, scanned)
        finally:  # also what a scan settled before Kodi failed (PlayerError.settled)
            for key, outcome in scanned.items():
                # An upgraded item whose old entry Kodi refused to remove stays failed.
                if key not in outcomes or outcomes[key].result == Result.SYNCED:
                    outcomes[key] = outcome

    @staticmethod
    def _sent(targets: Iterable[Target], exc: MaybeReceived,
              outcomes: dict[str, Outcome]) -> MaybeReceived:
        """Kodi may be carrying out what it was sent for these targets: they are `sent`,
        to be looked up before anything is sent for them again."""
        for target in targets:
            outcomes[target.key] = Outcome(target.key, Result.SENT, exc.message)
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
                took = self.kodi.clock() - started
                self.sizer.measured(len(chunk), took)
                self.pace.append((len(chunk), took))
            for (target, _, _), answer in zip(chunk, answers, strict=True):
                if target.key in outcomes and outcomes[target.key].result != Result.SYNCED:
                    continue  # an upgrade's removal and refresh: the first refusal counts
                outcomes[target.key] = Outcome(target.key, Result.FAILED, answer.message) \
                    if isinstance(answer, KodiRejected) else Outcome(target.key, Result.SYNCED)
            at += len(chunk)

    def _in_batches(self, calls: Sequence[tuple[str, dict[str, Any]]], *,
                    mutating: bool = False) -> Iterator[tuple[int, list[Any]]]:
        """(offset, answers) of `calls` sent in JSON-RPC batches sized by the answer times
        measured so far (self.read_sizer), at most [sync] batch_size calls each."""
        at = 0
        while at < len(calls):
            chunk = calls[at:at + self.read_sizer.size]
            started = self.kodi.clock()
            answers = self.kodi.call_many(list(chunk), mutating=mutating)
            if not self.dry_run:
                self.read_sizer.measured(len(chunk), self.kodi.clock() - started)
            yield at, answers
            at += len(chunk)

    # --- artwork ------------------------------------------------------------------------

    def _metarr_file(self, url: str) -> str | None:
        """The file behind an art URL on Metarr's side (where metarr-sync reads), or None
        when it is not one Metarr could have published (outside every mapping)."""
        path = art_file(url)
        return None if path is None else unmap_path(path, self.config.mappings)

    def _details(self, items: Sequence[tuple[Target, int]], *, shown: bool = False
                 ) -> dict[str, tuple[dict[str, Any], list[str]] | KodiRejected]:
        """Item key -> (details, own art URLs of Metarr's files) of items by their Kodi id,
        in JSON-RPC batches of [sync] batch_size calls; a show's own art includes its
        seasons' (`VideoLibrary.GetSeasons`). With `shown`, also what verify() compares
        with Metarr's item (_SHOWN). A call Kodi refused gives its KodiRejected (an id a
        refresh has just made stale)."""
        calls: list[tuple[str, dict[str, Any]]] = []
        owners: list[tuple[str, str]] = []
        for target, kodi_id in items:
            method, field, key = _DETAILS[target.item.kind]
            properties = [*(_SHOWN[target.item.kind] if shown else ()), "art"]
            calls.append((method, {field: kodi_id, "properties": properties}))
            owners.append((target.key, key))
            if target.item.kind == "series":
                calls.append(("VideoLibrary.GetSeasons",
                              {"tvshowid": kodi_id, "properties": ["art"]}))
                owners.append((target.key, "seasons"))
        found: dict[str, tuple[dict[str, Any], list[str]] | KodiRejected] = {}
        for at, answers in self._in_batches(calls):
            chunk = calls[at:at + len(answers)]
            for (method, _), (item_key, key), answer in zip(
                    chunk, owners[at:at + len(answers)], answers, strict=True):
                if isinstance(answer, KodiRejected) or isinstance(found.get(item_key),
                                                                  KodiRejected):
                    if isinstance(answer, KodiRejected):
                        found[item_key] = answer
                    continue
                rows = answer.get(key) if isinstance(answer, dict) else None
                if key == "seasons":
                    rows = rows or []  # a show without seasons may leave the list out
                if not isinstance(rows, dict if key != "seasons" else list):
                    raise ProtocolError(f"{self.where} answered {method} without "
                                        f"{key}: is this Kodi's web server?")
                earlier = found.get(item_key)  # not a KodiRejected: see above
                details, urls = earlier if isinstance(earlier, tuple) else ({}, [])
                for row in rows if isinstance(rows, list) else [rows]:
                    if isinstance(row, dict):
                        urls += [u for u in own_art(row.get("art"))
                                 if self._metarr_file(u) is not None and u not in urls]
                found[item_key] = (rows if isinstance(rows, dict) else details, urls)
        return found

    def _textures(self, urls: Sequence[str], *fields: str
                  ) -> Iterator[tuple[str, list[dict[str, Any]] | KodiRejected]]:
        """(url, its cached copies (textureid, url and `fields`), or Kodi's refusal) for
        each art URL:
        `Textures.GetTextures` (filter `url is`) in batches sized like the other reads.
        `is` is SQL in Kodi: only rows of exactly that URL are kept, as for listings."""
        lookups = [("Textures.GetTextures", {"properties": ["url", *fields], "filter": {
            "field": "url", "operator": "is", "value": url}}) for url in urls]
        for at, answers in self._in_batches(lookups):
            for url, answer in zip(urls[at:at + len(answers)], answers, strict=True):
                if isinstance(answer, KodiRejected):
                    yield url, answer
                    continue
                rows = answer.get("textures") if isinstance(answer, dict) else None
                if not isinstance(rows, list):
                    raise ProtocolError(f"{self.where} answered Textures.GetTextures "
                                        "without a list of textures: is this Kodi?")
                yield url, [row for row in rows
                            if isinstance(row, dict) and row.get("url") == url]

    def _drop_textures(self, art: Mapping[str, Sequence[str]]) -> dict[str, str]:
        """Drop Kodi's cached copies of these images (item key -> art URLs): each URL's
        textures looked up (`Textures.GetTextures`, filter `url is`), then removed by id
        (`Textures.RemoveTexture`), both in JSON-RPC batches of [sync] batch_size calls.
        Returns item key -> why a cached copy of one of its images may remain."""
        urls = list(dict.fromkeys(url for item in art.values() for url in item))
        textures: list[tuple[str, int]] = []
        failed: dict[str, str] = {}
        for url, rows in self._textures(urls):
            if isinstance(rows, KodiRejected):
                failed[url] = (f"Kodi did not list its cached copies of "
                               f"{art_file(url)} ({rows.detail})")
                continue
            textures += [(url, row["textureid"]) for row in rows
                         if isinstance(row.get("textureid"), int)]
        removals = [("Textures.RemoveTexture", {"textureid": texture})
                    for _, texture in textures]
        for at, answers in self._in_batches(removals, mutating=True):
            for (url, _), answer in zip(textures[at:at + len(answers)], answers,
                                        strict=True):
                # -32602 is Kodi's answer for an id it no longer has: already dropped.
                if isinstance(answer, KodiRejected) and answer.code != -32602:
                    failed[url] = (f"Kodi refused to drop its cached copy of "
                                   f"{art_file(url)} ({answer.detail})")
        return {key: "; ".join(failed[u] for u in item if u in failed)
                for key, item in art.items() if any(u in failed for u in item)}

    def drop_cached_art(self, art: Mapping[str, Sequence[str]]) -> list[Outcome]:
        """Another member of a shared library refreshed these items: drop this Kodi's own
        cached copies of their images (each Kodi box has its own texture cache)."""
        errors = self._drop_textures(art)
        return [Outcome(key, Result.RETRY, errors[key]) if key in errors else
                Outcome(key, Result.SYNCED) for key in art]

    def _left_behind(self, target: Target) -> bool:
        """A removed movie not at its exact path (renamed since?) of which Kodi still
        lists a file in its folder: a Clean scoped to that folder removes only entries
        whose files are gone. Never for TV (unreliable there) and never library-wide."""
        if target.item.kind != "movie" or target.folder_is_root:
            return False
        folder = with_trailing(_key(target.folder), target.style)
        if self.library.movies is None and self.narrow:
            # A small run: the movies at or below that folder (LIKE, confirmed by key).
            method = "VideoLibrary.GetMovies"
            answer = self.kodi.call(method, {"properties": ["file"], "filter": {
                "field": "path", "operator": "startswith",
                "value": _like(with_trailing(target.folder, target.style))}}, rows=True)
            rows = listed_rows(self.where, method, answer, "movies")[0]
            files: Iterable[str] = [_key(part) for file, _ in
                                    listed_ids(self.where, method, rows, "movieid")
                                    for part in _stack_parts(file)]
        else:
            files = self._movies()
        return any(file.startswith(folder) for file in files)  # keys, both

    def _clean(self, target: Target, outcomes: dict[str, Outcome]) -> Outcome:
        self.kodi.wait_idle()
        try:
            self.kodi.call("VideoLibrary.Clean",
                           {"showdialogs": False, "content": "movies",
                            "directory": with_trailing(
                                self._as_kodi_spells(target.folder, target.style),
                                target.style)},
                           mutating=True)
        except KodiRejected as exc:
            return Outcome(target.key, Result.FAILED, exc.message)
        except MaybeReceived as exc:
            raise self._sent([target], exc, outcomes) from None
        self.library.forget_movies()
        return Outcome(target.key, Result.SYNCED)

    def _as_kodi_spells(self, folder: str, style: PathStyle) -> str:
        """`folder` with the Kodi source holding it spelled as Kodi lists that source, or the
        show holding it as Kodi lists that show.

        Kodi keeps a source's settings (content type, scraper) under the source's path as
        it was typed; a mapping typed in another case (on an SMB share or a Windows Kodi,
        where that is the same folder) must not lead a scan past them. Below the source,
        and whenever no source holds the folder, it is spelled as it was (plan.map_path).
        """
        shows = self.library.shows if self.library.shows is not None else \
            self.library.some_shows
        if shows:
            # Below a show Kodi has: its folder as Kodi spells it (an NFD show folder).
            show = _holder(folder, style, shows, _key)
            if show is not None:
                kodi_show = self.library.show_spellings.get(show, show)
                rest = components_below(folder, kodi_show, PLATFORM)
                if rest is not None:
                    return join(kodi_show, rest, style) if rest else kodi_show
        best: tuple[int, str] | None = None
        for source in self.sources or ():
            if PathStyle.of(source).encoded:
                continue  # its names are %-escaped; ours are spelled the mapping's way
            rest = components_below(folder, source, PLATFORM)
            if rest is not None and (best is None or len(rest) < best[0]):
                best = (len(rest), source)
        if best is None:
            return folder
        source = best[1]
        rest = components_below(folder, source, PLATFORM) or []
        return join(source, rest, style) if rest else strip_trailing(source)

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
            if _key(folder) == _key(target.root) or is_under(target.root, folder, PLATFORM):
                outcomes[target.key] = Outcome(
                    target.key, Result.FAILED,
                    f"Kodi does not have {target.path}, and adding it would mean scanning "
                    f"the whole library folder {with_trailing(folder, target.style)}; "
                    "metarr-sync only scans an item's own folder: give it a folder of its "
                    f"own below {target.root}")
                continue
            wanted.setdefault(strip_trailing(folder), []).append(target)
        for folder in list(wanted):
            earlier = _holder(folder, wanted[folder][0].style, self.scanned)
            if earlier is None:
                continue
            # Below a folder this run scanned already: that scan added the item, there is
            # nothing to send (Kodi's listings are kept for the run, so it was not seen).
            for t in wanted.pop(folder):
                outcomes[t.key] = Outcome(t.key, Result.SYNCED) if self.scanned[earlier] else \
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
            if listing is None or (isinstance(listing, dict) and _key(folder) not in listing):
                # Listed once per run, and again when a folder is missing from it (new
                # since): that listing also clears Kodi's stale cache of the parent.
                listing = self.parents[above] = self._listing(
                    with_trailing(self._as_kodi_spells(above, style), style))
            if isinstance(listing, KodiRejected):
                for t in members:
                    outcomes[t.key] = Outcome(
                        t.key, Result.RETRY,
                        f"Kodi cannot open {with_trailing(above, style)} "
                        f"({listing.detail}): is that share reachable from Kodi, "
                        f"and does the mapping for {self._mapping_hint(t)} point at it?")
                continue
            # Kodi's spelling of the folder when its parent's listing has it: a name macOS
            # wrote in NFD is another file than Metarr's NFC spelling on a POSIX share.
            key = _key(folder)
            spelled = (listing[key] or key) if key in listing else \
                self._as_kodi_spells(folder, style)
            self.kodi.wait_idle()
            try:
                self.kodi.call("VideoLibrary.Scan",
                               {"directory": with_trailing(spelled, style), "showdialogs": False},
                               mutating=True)
            except KodiRejected as exc:
                for t in members:
                    outcomes[t.key] = Outcome(t.key, Result.FAILED, exc.message)
                continue
            except MaybeReceived as exc:
                raise self._sent(members, exc, outcomes) from None
            # Kodi's listings stay valid: a scan only adds items (found again below
            # self.scanned), it never renumbers the ones listed.
            seen = self.scanned[folder] = key in listing
            for t in members:
                outcomes[t.key] = Outcome(t.key, Result.SYNCED) if seen else \
                    self._unseen(t, folder)

    def _unseen(self, target: Target, folder: str) -> Outcome:
        style = target.style
        return Outcome(target.key, Result.UNVERIFIED,
                       f"sent a scan of {with_trailing(folder, style)}, but Kodi does not see "
                       f"that folder in {with_trailing(parent(folder, style), style)}: check "
                       f"the mapping for {self._mapping_hint(target)}")

    def _listing(self, folder: str) -> dict[str, str] | KodiRejected:
        """List `folder` in Kodi (refreshing Kodi's cache of it), or why not: each entry's
        `_key` -> Kodi's spelling of it ("" when that is the key itself, as nearly always:
        a whole library folder's worth of names is not held twice)."""
        method = "Files.GetDirectory"
        try:
            answer = self.kodi.call(method, {"directory": folder}, rows=True)
        except KodiRejected as exc:
            return exc
        # A parent listing can be a whole library folder (50,000 movie folders): one
        # answer, parsed row by row into the folder names only (rows=True: see Row).
        entries: dict[str, str] = {}
        for row in listed_rows(self.where, method, answer, "files")[0]:
            if isinstance(row, Row):
                key, spelled = _key(row.file), strip_trailing(row.file)
                entries[key] = "" if spelled == key else spelled
        return entries

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
        """Check that Kodi shows what Metarr published, after its scans and refreshes.

        An item counts as shown when Kodi lists it at its path (`_key`), shows Metarr's title
        for it (the title Metarr writes into the NFO) and holds no cached copy of its
        artwork older than the file (a cached copy's `imagehash` against the file as
        metarr-sync reads it). Kodi works through scans and refreshes in a background job
        (a refresh deletes and re-adds the item), so what is not shown yet is looked at
        again for a few seconds, longer after many refreshes, before it is unverified.
        """
        # Kodi may still be carrying out refreshes it has answered: wait for them at this
        # box's measured pace (at least REFRESH_SECONDS each), up to scan_timeout, the
        # limit of waiting for Kodi's library work. What is shown ends the wait at once.
        calls = sum(n for n, _ in self.pace)
        per_refresh = max(REFRESH_SECONDS, sum(t for _, t in self.pace) / calls if calls
                          else 0.0)
        grace = min(self.config.scan_timeout, VERIFY_GRACE + per_refresh * self.refreshes)
        started = self.kodi.clock()
        deadline = started + grace
        delay = 0.25
        waiting = list(targets)
        late: list[Target] = []
        causes: dict[str, str] = {}
        behind = len(targets) + 1
        while True:
            self.library = _Library()  # scans and refreshes since the last listing
            self.narrow = len(waiting) <= self.small_run
            # A small run asks whether Kodi is scanning in the POST of its look-ups.
            if not (self.narrow and self._prefetch(waiting, idle_check=True)):
                self.kodi.wait_idle()
                self.library = _Library()
            late, ids = self._not_landed(waiting)
            missing = {t.key for t in late}
            present = [t for t in waiting if t.key not in missing and not t.item.removed]
            causes = self._not_shown(present, ids)
            waiting = late + [t for t in present if t.key in causes]
            # Items still under the id they were refreshed with: Kodi is still working
            # through the refreshes. While it makes progress, wait on (up to scan_timeout).
            still = sum(1 for t in waiting if t.key in self.refreshed_ids
                        and ids.get(t.key) == self.refreshed_ids[t.key])
            if still and still < behind:
                deadline = max(deadline, min(started + self.config.scan_timeout,
                                             self.kodi.clock() + VERIFY_GRACE))
            behind = still
            if not waiting or self.kodi.clock() + delay > deadline:
                break
            self.kodi.sleep(delay)
            delay = min(delay * 2, 1.0)
        missing = {t.key for t in late}
        outcomes = []
        for target in targets:
            if target.key in causes:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, causes[target.key]))
            elif target.key not in missing:
                outcomes.append(Outcome(target.key, Result.SYNCED))
            elif target.item.removed:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED,
                                        f"Kodi still lists {target.path} after its removal"))
            elif target.previous and (kept := self._old_listed(target)) and \
                    self.find(target) is not None:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, self._why_two(target, kept)))
            else:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, self._why_missing(target)))
        self.library.episodes = {}  # nothing held once checked
        return outcomes

    def _old_listed(self, target: Target) -> list[OldFile]:
        """The old files of an upgraded or renamed item that Kodi still lists."""
        return [old for old in target.previous if self._old_entry(target, old) is not None]

    def _why_two(self, target: Target, kept: Sequence[OldFile]) -> str:
        """Why Kodi lists an old file beside the new one, and what a person can do."""
        causes = []
        for old in kept:
            verdict = old_file_gone(old.metarr, target.item.path)
            if verdict.gone is False:
                causes.append(f"{old.metarr} is still on disk (a copy kept beside the new "
                              "file?), so its entry was kept: delete that file if it is not "
                              "wanted, and the next run removes the entry")
            elif verdict.gone is None:
                causes.append(f"its entry was kept: {verdict.why}")
            else:
                causes.append(f"{old.metarr} is gone from disk, but Kodi did not remove its "
                              "entry")
        olds = ", ".join(old.path for old in kept)
        return (f"Kodi lists {olds} beside the new file {target.path}: " + "; ".join(causes))

    def _not_landed(self, targets: Sequence[Target]) -> tuple[list[Target], dict[str, int]]:
        """The targets Kodi does not show as delivered, and the ids of those it lists,
        looked up with the whole-library listings and the episodes of [sync] batch_size
        shows per POST (each group of shows dropped once checked: verifying a run over
        1,000 shows holds a hundred at most)."""
        self._prefetch(targets)
        by_show: dict[int, list[Target]] = {}
        late: list[Target] = []
        ids: dict[str, int] = {}
        for target in targets:
            # A small run looked each episode up by its folder (_prefetch): no show listed.
            show = self._show_of(target) if target.item.kind == "episode" and \
                not self.narrow else None
            if show is not None:
                by_show.setdefault(show, []).append(target)
            elif not self._landed(target, ids):
                late.append(target)
        shows = list(by_show)
        size = max(1, self.sync.batch_size)
        for at in range(0, len(shows), size):
            chunk = shows[at:at + size]
            self.library.episodes = {}
            self._list_episodes(chunk)
            late += [t for show in chunk for t in by_show[show] if not self._landed(t, ids)]
        self.library.episodes = {}
        return late, ids

    def _landed(self, target: Target, ids: dict[str, int]) -> bool:
        """Removed: Kodi no longer lists it. Otherwise exactly one entry, for the new
        file: Kodi lists it (its id goes to `ids`), and none of the item's old files."""
        kodi_id = self.find(target)
        if kodi_id is not None:
            ids[target.key] = kodi_id
        if target.item.removed:
            return kodi_id is None or not self.sync.clean_deleted
        return kodi_id is not None and not self._old_listed(target)

    @staticmethod
    def _differs(target: Target, shown: dict[str, Any]) -> str | None:
        """How what Kodi shows for an item differs from what Metarr published, if it does."""
        item = target.item
        # In NFC, both: a title read from a name macOS wrote (NFD) reads the same.
        title = nfc(item.title.strip())
        if item.kind != "episode":
            seen = nfc(str(shown.get("title") or "").strip())
            if title and seen != title:
                return f"Kodi shows the title {seen!r}, Metarr published {title!r}"
            return None
        seen = nfc(str(shown.get("showtitle") or "").strip())
        if title and seen != title:
            return f"Kodi shows it under the show {seen!r}, Metarr published it under {title!r}"
        if item.season is not None and item.episode is not None and (
                shown.get("season"), shown.get("episode")) != (item.season, item.episode):
            return (f"Kodi shows it as season {shown.get('season')} episode "
                    f"{shown.get('episode')}, Metarr published season {item.season} episode "
                    f"{item.episode}")
        return None

    def _not_shown(self, targets: Sequence[Target], ids: Mapping[str, int]) -> dict[str, str]:
        """Item key -> why what Kodi shows for a listed item is not what Metarr published:
        another title, or a cached copy of its artwork older than the file."""
        causes: dict[str, list[str]] = {}
        details = self._details([(t, ids[t.key]) for t in targets], shown=True)
        expected: dict[str, tuple[str, str]] = {}  # art URL -> (file, its imagehash now)
        owners: dict[str, list[Target]] = {}
        for target in targets:
            found = details.get(target.key)
            if isinstance(found, KodiRejected):
                # The id listed a moment ago is gone: the refresh is being carried out.
                causes[target.key] = [
                    f"Kodi was still refreshing {target.path} (it no longer knows the id "
                    f"it listed: {found.detail}) — it is sent again on the next run"]
                continue
            if found is None:
                continue
            shown, urls = found
            differs = self._differs(target, shown)
            if differs:
                causes.setdefault(target.key, []).append(
                    f"{differs}: Kodi did not read Metarr's NFO — check that the Kodi source "
                    f"holding {with_trailing(target.folder, target.style)} uses the scraper "
                    "'Local information only' (Set content) and that Metarr published the NFO")
            for url in urls:
                file = self._metarr_file(url)
                current = image_hash(file) if file is not None else None
                if file is not None and current is not None:  # else: not readable here
                    expected[url] = (file, current)
                    owners.setdefault(url, []).append(target)
        for url, rows in self._textures(list(expected), "imagehash"):
            file, current = expected[url]
            if isinstance(rows, KodiRejected):
                for target in owners[url]:
                    causes.setdefault(target.key, []).append(
                        f"Kodi did not list its cached copies of {file} "
                        f"({rows.detail}), so what it shows could not be checked")
                continue
            stale = sorted({str(row.get("imagehash")) for row in rows
                            if row.get("imagehash") != current})
            if not stale:
                continue
            for target in owners[url]:
                causes.setdefault(target.key, []).append(
                    f"Kodi still shows a cached copy of {file} older than the file "
                    f"(cached from {', '.join(stale)}, the file is {current}, as "
                    "d<mtime>s<size>): it is sent again on the next run, which drops "
                    "that copy — if this stays, check that the mapping for "
                    f"{self._mapping_hint(target)} leads Kodi to the same file")
        return {key: "; ".join(found) for key, found in causes.items()}

    def _why_missing(self, target: Target) -> str:
        """An actionable cause for an item Kodi does not list after delivery."""
        folder = with_trailing(target.folder, target.style)
        hint = self._mapping_hint(target)
        if not any(is_under(target.path, root, PLATFORM) for root in self.video_sources()):
            return f"Kodi has no source containing {folder} — check the mapping for {hint}"
        listing = self._listing(with_trailing(
            self._as_kodi_spells(target.folder, target.style), target.style))
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
