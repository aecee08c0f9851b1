"""Plex Media Server adapter (REST, JSON).

What Plex needs to show what Metarr published:
- new items: a *partial scan* of their folder, `GET /library/sections/{key}/refresh?path=`,
  once per distinct folder, in every section whose locations contain the folder (Plex
  >= 1.32.7 answers 404 to PUT/POST there);
- changed items Plex already has: `PUT /library/metadata/{ratingKey}/refresh` (a scan does
  not pick up rewritten NFO/artwork of an unchanged video), optionally `.../analyze`;
- removed items: a partial scan of their folder, nothing else (see "Removals" below).

Plex answers 200 to a partial scan of a folder outside every section and then ignores it,
so this adapter checks every folder against the sections' `Location` paths itself.
The token travels only in the X-Plex-Token header: URLs end up in logs and proxies.

Finding items: movies in the movie section's listing (the spec has no look-up of an item
by its file); shows in the TV section's listing of shows (type 2: thousands of shows
against hundreds of thousands of episodes, and the spec has no filter by folder); an
episode among its own show's episodes only (`/library/metadata/{show}/allLeaves`, once
per show and run), its show found by the folder (`Location`) that holds the file. Both
section listings come from the index (below) when the run may keep one. A TV section's
episodes are listed whole only by the trash guard (_trash_verdict): it must see every
item Plex marked missing, and the spec has no filter on `deletedAt`.

The index (issue 19: a small run costs what it changes, not what the library holds). The
first run that needs a movie section, or a TV section's shows, lists it whole and keeps
what matching reads (rating key, type, files or a show's folder, provider ids) in the
state (schema 4's player_index tables, a section's listing of one type named
`{key}/{uuid}/{type}`). Later runs ask only for what Plex updated since the last update:
`GET /library/sections/{key}/all?type=1&updatedAt>>=<epoch>`, from INDEX_MARGIN before
the last update began, in the server's time (ours moved by its HTTP `Date` header at
`/identity`). The facts this relies on, with their evidence (not measured on a Plex server
here, which this rig does not have):
- Plex's filter syntax is `<field><operator>=<value>` in the query string, the operator
  being part of the parameter's name: `updatedAt>>` is "after" (strict), and `>>=`,
  `<<=`, `>=`, `<=` are the spec's listed operators (Plex OpenAPI spec, parameter
  `mediaQuery`: "Operators: =, !=, ==, !==, <=, >=, >>=, <<= (varies by field type)");
  public projects using python-plexapi ask for `filters={"updatedAt>>=": since}`. The
  HTTP client sends the name percent-encoded (`updatedAt%3E%3E=<epoch>`); that Plex
  decodes a parameter's name like any other is assumed, not measured;
- measured by a third-party Plex client on a real server (a public repository's notes,
  "Use a delta filter Plex honours", 6 August 2026): with its filter names `updatedAt>>`
  and `updatedAt>` a section listing narrowed to the items updated after the value (none
  for a minute ago, all those dated for ten years ago); with `updatedAt>=` and
  `updatedAt>>=` as its names, Plex answered 200 with the whole section: a filter Plex
  does not understand is dropped without an error. So a misspelt filter here costs a
  whole listing, never a missed item;
- every item carries `updatedAt` and `addedAt` (epoch seconds; the spec's examples,
  `updatedAt: 1715112705`); an item a scan adds is updated when it is added, and edits
  move it; a rating does not (the same notes). `addedAt` is not used: a user may set it
  back in time, and a new item is updated anyway;
- `GET /library/metadata/{k1,k2,...}` answers several items at once (python-plexapi's
  fetchItems builds it from a list of rating keys). Assumed, not measured: the items of
  keys Plex no longer has are left out of the answer, a 404 when none is left; a 404 for
  several keys is therefore asked again key by key, never taken as all of them gone;
- a section deleted and added again gets a new key and uuid (`/library/sections` sends
  both) and its items new rating keys.
Whether a metadata refresh moves `updatedAt` is not known; nothing depends on it: what
the update did not list is confirmed by key. Deleted items are in no update, so the index
may keep rating keys Plex no longer has, and whatever it says is checked where it decides
something: a key to refresh that answers 404 leaves the index and its targets' folders
are scanned (Plex finds the file itself, as a new item if it lost the old one); a removal,
an old file of an upgrade and anything verify() counts as seen are confirmed with
`/library/metadata/{keys}` unless Plex listed them in this run (StoredListing, `sure`);
a show whose allLeaves answers 404 leaves the index (its folder is scanned as a new
show's). A section's index is thrown away and the section listed whole again when the
server's machineIdentifier changed, when the section's key, uuid or folders changed (a
rebuilt library), or when it was listed whole more than 7 days ago (index.INDEX_MAX_AGE). The trash
guard never uses the index: it lists the section whole, as before.

Removals and Plex's trash: the facts this code relies on, with their evidence.
- A partial scan only queues the scan: the GET answers 200 at once and Plex's scanner
  runs it afterwards, in the background (the section's `refreshing` flag in
  `GET /library/sections` shows it running). Only when it has run does Plex mark the item
  of a deleted file missing: the item then carries `deletedAt` in the section listing
  (`GET /library/sections/{key}/all`; the example item of the Plex OpenAPI spec has
  `deletedAt: 1682628386`) and stays in the library, unplayable, with its watch history.
  Plex's own setting "Empty trash automatically after every scan" decides whether Plex
  then deletes it by itself; "Disabling this option keeps the item in the Library with an
  indicator superimposed over the item's poster" (Plex support, "Library" server
  settings, support.plex.tv/hc/en-us/articles/200289526).
- `PUT /library/sections/{key}/emptyTrash` names no item: it permanently deletes EVERY
  item of the section that is marked missing ("Empty trash in the section, permanently
  deleting media/metadata for missing media": the spec's operation emptyTrash), watch
  state, collections and edits with them; "if this leaves an item in your library with
  no source files, then the item is also removed" (README of jecal22/PlexServer-EmptyTrash,
  a script that empties the trash only while the shares are mounted). Plex marks items
  missing for any reason: a disk or share that is offline during a scan marks everything
  on it missing — which is why people with flaky mounts turn the automatic emptying off.
- Plex runs emptyTrash as a task it shows in its console (plexopedia.com, "Empty Trash"):
  the items may still be listed for a moment after the 200, so they are looked up again
  and counted as removed only when Plex no longer lists them.
Emptying the trash right after the scan (what this adapter did before) therefore came too
early for the removed item and could delete up to max_trash_items unrelated items that
only sat on an offline share. What this adapter does: apply() sends the scan only.
verify(), on a later run, looks: an item Plex no longer lists is removed; one listed and
not marked missing is not (Plex has not rescanned, or still sees the file); one marked
missing leaves with its section's trash, which is emptied only when everything in it is
one of metarr-sync's removals being checked, Plex has marked all of those missing, and
they are at most max_trash_items (PlexPlayer._verify_removals). Otherwise the trash is
left alone and the item stays unverified with the cause, for a person. `[sync]
clean_deleted = false` never empties a trash: a removal is then done once Plex has marked
the item missing.

Upgrades and renames (a file replaced under another name; Metarr rewrites the item's path
in place). Not measured on a server here (no Plex in the test rig); from the public API
spec (an item holds Media versions, each with Parts whose `file` is the path) and users'
reports of Radarr/Sonarr upgrades (Radarr issue 1249, Cloudbox/autoscan issue 84, Plex's
"unavailable" versions): a partial scan of the folder adds the new file (matched into the
same item as a new version, or as a new item) and marks the old file missing; the old
version or item stays, shown as unavailable, until the section's trash is emptied — which
Plex does by itself after every scan when "Empty trash automatically after every scan" is
on (its default). So for an item whose path changed the adapter scans the new file's
folder (and the old file's, when it lay elsewhere) and refreshes the item it finds. It
never empties the trash for an upgrade: the trash may hold other missing items (see
"Removals and Plex's trash" above). verify() counts the item only when Plex lists the new
file and no other item still holds an old, gone file (an unavailable version inside the
same item is not a second entry); otherwise the item is unverified with what to do.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.disk import old_file_gone
from metarr_sync.paths import (
    PLATFORM,
    PathStyle,
    collapse_folders,
    compare_key,
    components_below,
    join,
    parent,
)
from metarr_sync.plan import MappingError, Target
from metarr_sync.players.base import (
    AuthFailed,
    Outcome,
    Player,
    ProbeResult,
    ProbeStep,
    ProtocolError,
    Rejected,
    Result,
)
from metarr_sync.players.compact import CompactIndex, IdSet, ItemIds
from metarr_sync.players.http import HttpClient, parse_json
from metarr_sync.players.index import IndexRow, IndexStore, why_list_again
from metarr_sync.stamps import parse_stamp, seconds_ahead, stamp_ago
from metarr_sync.version import __version__

log = logging.getLogger("metarr_sync.plex")

#: Plex metadata types used in `/library/sections/{key}/all?type=`.
TYPE_MOVIE, TYPE_SHOW, TYPE_EPISODE = 1, 2, 4
#: Which listing finds an item of each Metarr kind, and which section type holds it.
LISTING_TYPE = {"movie": TYPE_MOVIE, "series": TYPE_SHOW, "episode": TYPE_EPISODE}
SECTION_TYPE = {"movie": "movie", "series": "show", "episode": "show"}
#: Items per page when listing a section: big TV sections hold tens of thousands of
#: episodes, and one huge answer risks the timeout.
PAGE_SIZE = 1000
#: Old Plex agents spell provider ids inside `guid` ("com.plexapp.agents.imdb://tt1?lang=en").
_LEGACY_GUID = re.compile(r"^com\.plexapp\.agents\.(imdb|themoviedb|thetvdb)://([^?/]+)")
_LEGACY_NAMES = {"imdb": "imdb", "themoviedb": "tmdb", "thetvdb": "tvdb"}
#: Files of missing items kept per listing, to name a few when a trash is left alone (an
#: offline share marks everything on it missing: never keep all of them).
TRASH_EXAMPLES = 1000
#: The listings kept as an index in the state (see "The index"): a movie section's movies
#: and a TV section's shows. Episodes are listed per show (allLeaves), never indexed.
INDEXED_TYPES = (TYPE_MOVIE, TYPE_SHOW)
#: A section's index is listed whole again after this long: Plex's updatedAt filter
#: never names an item Plex deleted, so rows of deleted items would pile up.
#: Seconds before the server's time of the last update that the next one asks from: the
#: Date header's whole seconds, the time between that answer and the listing, and items
#: Plex was still saving while it was read.
INDEX_MARGIN = 15 * 60
#: Index rows written to the state at a time while a section is listed.
INDEX_FLUSH = 2000
#: Rating keys confirmed in one `GET /library/metadata/{k1,k2,...}`.
CONFIRM_BATCH = 50
#: The index keeps an item's files among its provider keys, under this prefix (an item
#: has several files when it has several versions).
_FILE_KEY = "file\x1f"


def machine_id() -> str:
    """A stable identifier of this machine (systemd's machine-id where there is one)."""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(candidate).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if text:
            return text
    return f"{socket.gethostname()}-{uuid.getnode():012x}"


def client_identifier(player_name: str, machine: str | None = None) -> str:
    """The X-Plex-Client-Identifier: the same for one player on one machine, every run.

    Plex lists every new identifier as a new device under "Authorized Devices", so it
    must not change between runs.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL,
                          f"metarr-sync:{player_name}:{machine or machine_id()}"))


# --- paths as Plex spells them -----------------------------------------------------------

def path_key(path: str) -> tuple[str, ...]:
    """A path's identity for comparison: its components in NFC, case-folded on Windows
    (its file systems ignore case; paths.PLATFORM)."""
    return compare_key(path, PLATFORM)


def same_path(a: str, b: str) -> bool:
    return path_key(a) == path_key(b)


@dataclass(frozen=True)
class Section:
    """One Plex library section with the folders it covers."""

    key: str
    type: str
    title: str
    locations: tuple[str, ...]
    #: The metadata agent, e.g. tv.plex.agents.movie (see players/settings.py).
    agent: str = ""
    #: The section's uuid: a section deleted and added again gets a new one (and a new
    #: key), and new rating keys for all its items.
    uuid: str = ""

    def index_id(self, plex_type: int) -> str:
        """The name of this section's listing of `plex_type` in the state's index: a
        rebuilt section (new key or uuid) is another one."""
        return f"{self.key}/{self.uuid}/{plex_type}"

    def place(self, folder: str) -> str | None:
        """`folder` as this section's server spells it, or None when outside every location.

        The separator comes from the location (a Windows server uses `\\`); a drive root
        location `S:\\` gives `S:\\Movies`, never `S:\\\\Movies`.
        """
        for location in self.locations:
            rest = components_below(folder, location, PLATFORM)
            if rest is not None:
                return join(location, rest, PathStyle.of(location))
        return None

    def is_location(self, folder: str) -> bool:
        return any(same_path(folder, loc) for loc in self.locations)


def file_key(path: str) -> str:
    """`path_key` as one string (components joined by "/"): the index key of a listing."""
    if path.startswith("/") and "//" not in path and "\\" not in path \
            and not path.endswith("/") and path.isascii():
        return path  # a plain POSIX path is its own key (NFC when ASCII)
    return "/" + "/".join(path_key(path))


class Listing:
    """A section listing of one type, reduced to what matching needs: rating keys, found
    by file path (Media[].Part[].file, or a show's Location) or provider id
    ("imdb://tt0133093"), and which items Plex marked missing (deletedAt).

    Compact (see compact.py): a TV section lists hundreds of thousands of episodes, and
    only the few thousand items of a run are ever looked up in it.
    """

    def __init__(self) -> None:
        self.keys = ItemIds()  # record number -> rating key
        self._paths = CompactIndex()
        self._guids = CompactIndex()
        #: record numbers of items carrying deletedAt (Plex marked them missing)
        self.deleted: set[int] = set()

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, meta: Any) -> None:
        """Index one item of a listing page (its parsed JSON is not kept)."""
        if not isinstance(meta, dict) or meta.get("ratingKey") is None:
            return
        number = self.keys.add(str(meta["ratingKey"]))
        for file in {file_key(file) for file in _files(meta)}:
            self._paths.add(file, number)
        for guid in _guids(meta):
            self._guids.add(guid, number)
        if meta.get("deletedAt") is not None:
            self.deleted.add(number)

    def by_path(self, path: str, *, sure: bool = False) -> list[str]:
        """Rating keys of the items at `path` (listed in this run: `sure` changes
        nothing; see StoredListing)."""
        return _distinct(self.keys[n] for n in self._paths.get(file_key(path)))

    def by_guid(self, ids: dict[str, str], *, sure: bool = False) -> list[str]:
        """Rating keys of the items sharing any of Metarr's provider ids."""
        return _distinct(self.keys[n] for guid in _wanted_guids(ids)
                         for n in self._guids.get(guid))

    def missing(self) -> set[str]:
        """Rating keys of the items Plex marked missing."""
        return {self.keys[n] for n in self.deleted}


class StoredListing:
    """A section's listing of one type kept as an index in the state (see "The index"),
    brought up to date in this run: the same questions as Listing, answered by the
    state. With `sure`, rating keys Plex did not list in this run are confirmed with it
    first (PlexPlayer.confirmed): the index may keep items Plex has since deleted."""

    def __init__(self, player: PlexPlayer, state: IndexStore, library: str) -> None:
        self.player, self.state, self.library = player, state, library

    def by_path(self, path: str, *, sure: bool = False) -> list[str]:
        found = _distinct(self.state.index_with_ids(
            self.player.name, [_FILE_KEY + file_key(path)], library=self.library))
        return self.player.confirmed(found, path) if sure else found

    def by_guid(self, ids: dict[str, str], *, sure: bool = False) -> list[str]:
        wanted = _wanted_guids(ids)
        found = _distinct(self.state.index_with_ids(self.player.name, wanted,
                                                    library=self.library)) if wanted else []
        return self.player.confirmed(found, None) if sure else found

    def missing(self) -> set[str]:
        """Rating keys Plex marked missing among those it listed or confirmed in this run
        (never the whole section: the trash guard lists it whole, _trash_verdict)."""
        return set(self.player.marked_missing)


class Listings:
    """Several listings searched as one (the episodes of every show holding a folder)."""

    def __init__(self, listings: Sequence[Listing | StoredListing]) -> None:
        self._listings = listings

    def by_path(self, path: str, *, sure: bool = False) -> list[str]:
        return _distinct(k for listing in self._listings
                         for k in listing.by_path(path, sure=sure))

    def by_guid(self, ids: dict[str, str], *, sure: bool = False) -> list[str]:
        return _distinct(k for listing in self._listings
                         for k in listing.by_guid(ids, sure=sure))

    def missing(self) -> set[str]:
        return {k for listing in self._listings for k in listing.missing()}


def _files(meta: dict[str, Any]) -> list[str]:
    """An item's files (Media[].Part[].file) or, for a show, its folders (Location)."""
    files = [part["file"] for media in meta.get("Media") or ()
             for part in media.get("Part") or () if isinstance(part.get("file"), str)]
    return files + [loc["path"] for loc in meta.get("Location") or ()
                    if isinstance(loc.get("path"), str)]


def _guids(meta: dict[str, Any]) -> set[str]:
    """An item's provider ids as Plex spells them ("imdb://tt0133093"), old agents' too."""
    guids = {g["id"] for g in meta.get("Guid") or ()
             if isinstance(g, dict) and isinstance(g.get("id"), str)}
    legacy = _LEGACY_GUID.match(str(meta.get("guid") or ""))
    if legacy:
        guids.add(f"{_LEGACY_NAMES[legacy.group(1)]}://{legacy.group(2)}")
    return guids


def _wanted_guids(ids: dict[str, str]) -> list[str]:
    """Metarr's provider ids as Plex spells them."""
    return [f"{kind}://{ids[kind]}" for kind in ("imdb", "tmdb", "tvdb") if ids.get(kind)]


def _index_row(meta: Any) -> IndexRow | None:
    """What the state's index keeps of an item of a listing: its rating key, type, first
    file (or a show's folder), and its files and provider ids as keys to find it by."""

    if not isinstance(meta, dict) or meta.get("ratingKey") is None:
        return None
    files = _distinct(file_key(file) for file in _files(meta))
    return IndexRow(str(meta["ratingKey"]), files[0] if files else "",
                    str(meta.get("type") or ""), None,
                    tuple(_FILE_KEY + f for f in files) + tuple(sorted(_guids(meta))))


def _distinct(keys: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(keys))


def _distinct_sections(sections: Iterable[Section]) -> list[Section]:
    return list({s.key: s for s in sections}.values())


def _container(data: Any, what: str) -> dict[str, Any]:
    if not isinstance(data, dict) or not isinstance(data.get("MediaContainer"), dict):
        raise ProtocolError(f"{what} is not a Plex answer (no MediaContainer)")
    container: dict[str, Any] = data["MediaContainer"]  # a dict: checked above
    return container


# --- the adapter -------------------------------------------------------------------------

class PlexPlayer(Player):
    type_name = "plex"
    #: Plex scans and refreshes in the background: check deliveries on a later run.
    verify_after = 120.0

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False,
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(config, sync, dry_run=dry_run)
        self.http: HttpClient
        headers = {
            "Accept": "application/json",
            "X-Plex-Client-Identifier": client_identifier(config.name),
            "X-Plex-Product": "metarr-sync",
            "X-Plex-Version": __version__,
        }
        if config.token_value:
            headers["X-Plex-Token"] = config.token_value
        self.http = HttpClient(config, sync, dry_run=dry_run, headers=headers)
        self.use_client(self.http)
        self._sleep = sleep
        self._sections: list[Section] | None = None
        self._listings: dict[tuple[str, int], Listing | StoredListing] = {}
        #: (section key, type) -> the whole listing the trash guard read in this run
        self._whole: dict[tuple[str, int], Listing] = {}
        #: The state, when the index is kept there (keep_index), and the server's
        #: machineIdentifier (another one: another server, whose keys mean nothing here).
        self._store: IndexStore | None = None
        self.server_id = ""
        #: Seconds the server's clock is ahead of ours (its HTTP Date header), 0 unknown.
        self._clock_ahead = 0.0
        #: Rating keys Plex listed or confirmed in this run (no confirmation needed), and
        #: those of them it marked missing (deletedAt).
        self._listed = IdSet()  # ids listed in this run (compact: 250,000 of them)
        self.marked_missing: set[str] = set()
        #: Rating keys the index gave that answered 404 to their refresh (refreshes run
        #: in threads: noted, then dropped from the index by apply()).
        self._gone: list[str] = []
        #: section key -> folder scanned in this run (path_key) -> its number in the run
        self._scanned: dict[str, dict[tuple[str, ...], int]] = {}
        #: (section key, type) -> scans sent before that listing was read
        self._listed_after: dict[tuple[str, int], int] = {}
        self._refreshed: set[str] = set()  # ratingKeys refreshed this run
        #: (section key, type) -> rating key -> first file, of items Plex marked missing
        #: (at most TRASH_EXAMPLES each): named when a trash is left alone
        self._trash_seen: dict[tuple[str, int], dict[str, str]] = {}
        #: show rating key -> its episodes (allLeaves), once per run (per check in verify)
        self._leaves: dict[str, Listing] = {}
        #: show rating key -> scans sent before its episodes were read
        self._leaves_after: dict[str, int] = {}
        self._scans_sent = 0

    # -- plumbing ----------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.http.json("GET", path, params=params)

    def _send(self, method: str, path: str, params: dict[str, Any] | None = None) -> None:
        """A state-changing call: recorded, and under --dry-run not sent."""
        self.http.request(method, path, params=params, mutating=True)

    # -- discovery ---------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        result = ProbeResult()
        answer = self.http.request("GET", "/identity")
        identity = _container(parse_json(answer, self.http.base) if answer is not None
                              else None, f"{self.http.base}/identity")
        # The server's clock, for the index's updates (see "The index").
        self._clock_ahead = seconds_ahead(answer.headers.get("Date") if answer is not None
                                          else None)
        self.server_id = str(identity.get("machineIdentifier") or "")
        result.version = str(identity.get("version") or "")
        result.api_version = result.version
        result.steps.append(ProbeStep(
            "reachable", True, f"Plex Media Server {result.version or '(version unknown)'}"))
        sections = self.sections()
        result.steps.append(ProbeStep(
            "token", True, f"{len(sections)} librar{'y' if len(sections) == 1 else 'ies'}: "
            + ", ".join(f"{s.title} ({s.type})" for s in sections)))
        result.roots = [loc for s in sections for loc in s.locations]
        return result

    def sections(self) -> list[Section]:
        """The library sections and their folders, read once per run."""
        if self._sections is None:
            try:
                data = self._get("/library/sections")
            except AuthFailed:
                raise AuthFailed(f"Plex at {self.http.base} rejected the token (HTTP 401): "
                                 "set a valid X-Plex-Token for this player") from None
            container = _container(data, f"{self.http.base}/library/sections")
            found = []
            for raw in container.get("Directory") or []:
                locations = tuple(loc["path"] for loc in raw.get("Location") or []
                                  if isinstance(loc.get("path"), str) and loc["path"])
                found.append(Section(str(raw.get("key")), str(raw.get("type", "")),
                                     str(raw.get("title", "")), locations,
                                     str(raw.get("agent") or ""), str(raw.get("uuid") or "")))
            self._sections = found
        return self._sections

    def check_settings(self) -> list[ProbeStep]:
        """Movie and TV sections whose agent does not read Metarr's NFO files."""
        from metarr_sync.players.settings import plex_section_check

        checks = (plex_section_check(s.title, s.type, s.agent) for s in self.sections())
        return [step for step in checks if step is not None]

    def is_playing(self) -> bool:
        container = _container(self._get("/status/sessions"),
                               f"{self.http.base}/status/sessions")
        size = container.get("size")
        if isinstance(size, int):
            return size > 0
        return bool(container.get("Metadata"))

    def keep_index(self, state: IndexStore) -> None:
        """Keep the index in `state` (see "The index"); throw away the index of every
        section that was rebuilt (new key or uuid), moved to other folders, is on another
        server, or was listed whole too long ago."""
        if not self.server_id:
            return  # another server could not be told apart: no index
        self._store = state
        current = {s.index_id(t): s for s in self.sections() for t in INDEXED_TYPES}
        for library, indexed in state.indexed_libraries(self.name).items():
            section = current.get(library)
            reason = why_list_again(
                indexed, self.server_id, None if section is None else section.locations,
                path_key, other_server="Plex's machineIdentifier changed (another server)",
                gone="the library is gone or was rebuilt (new key or uuid)")
            if reason:
                log.info("%s: index of %s thrown away: %s", self.name, library, reason)
                state.drop_index(self.name, library)

    def listing(self, section: Section, plex_type: int) -> Listing | StoredListing:
        """Every item of one type in a section, with files and provider ids (once per run).

        Movies (the spec has no look-up of an item by its file) and shows (far fewer than
        episodes: a show is found by its folder here) come from the index in the state
        when it is kept (see "The index"): listed whole the first time, then brought up
        to date with what Plex updated since. A TV section's episodes are listed only by
        the trash guard (_whole_listing), which must see every missing item.
        """
        cache_key = (section.key, plex_type)
        if cache_key in self._listings:
            return self._listings[cache_key]
        store = self._store
        if store is None or plex_type not in INDEXED_TYPES:
            return self._list_whole(section, plex_type)
        library = section.index_id(plex_type)
        # The server's time before the listing: updates during it come again next time.
        since = stamp_ago(INDEX_MARGIN - self._clock_ahead)
        indexed = store.indexed_libraries(self.name).get(library)
        if indexed is None:
            store.drop_index(self.name, library)
            with self._storing(library, fresh=True) as sink:
                whole = self._list_whole(section, plex_type, sink)
            store.index_library(self.name, library, self.server_id, section.locations,
                                since, built=True)
            return whole
        after = int(parse_stamp(indexed.saved_since).timestamp())
        with self._storing(library) as sink:
            for meta in self._pages(f"/library/sections/{section.key}/all",
                                    {"type": plex_type, "includeGuids": 1,
                                     # on the wire `updatedAt>>=<epoch>`: updated after
                                     "updatedAt>>": after},
                                    f"the updates of Plex library {section.title!r}"):
                sink(meta)
        store.index_library(self.name, library, self.server_id, section.locations, since,
                            built=False)
        stored = self._listings[cache_key] = StoredListing(self, store, library)
        self._listed_after[cache_key] = self._scans_sent
        return stored

    def _list_whole(self, section: Section, plex_type: int,
                    sink: Callable[[Any], None] | None = None) -> Listing:
        """A section's whole listing of one type, paged; kept for the rest of the run
        (`sink`: also handed each item, for the index)."""
        cache_key = (section.key, plex_type)
        found = Listing()
        trash = self._trash_seen[cache_key] = {}
        for meta in self._pages(f"/library/sections/{section.key}/all",
                                {"type": plex_type, "includeGuids": 1},
                                f"the listing of Plex library {section.title!r}"):
            found.add(meta)
            if sink is not None:
                sink(meta)
            if isinstance(meta, dict) and meta.get("deletedAt") is not None \
                    and len(trash) < TRASH_EXAMPLES:
                trash[str(meta.get("ratingKey"))] = next(iter(_files(meta)), "")
        self._listings[cache_key] = self._whole[cache_key] = found
        self._listed_after[cache_key] = self._scans_sent
        return found

    def _whole_listing(self, section: Section, plex_type: int) -> Listing:
        """The whole listing of one type, read in this run if it was (the trash guard
        must see every item Plex marked missing: the index cannot tell)."""
        known = self._whole.get((section.key, plex_type))
        return known if known is not None else self._list_whole(section, plex_type)

    @contextmanager
    def _storing(self, library: str, *, fresh: bool = False
                 ) -> Iterator[Callable[[Any], None]]:
        """A sink for a listing's items: written to the index a few thousand at a time,
        and remembered as listed in this run (`fresh`: the index was just emptied)."""
        store = self._store
        assert store is not None
        rows: list[IndexRow] = []

        def flush() -> None:
            if not fresh:  # an item's old files and ids go with its old row
                # A file belongs to one Plex item: another indexed item at a file just
                # listed is a stale key (Plex re-added or re-matched the file).
                stale = {other for r in rows for key in r.providers
                         if key.startswith(_FILE_KEY)
                         for other in store.index_with_ids(self.name, [key],
                                                           library=library)
                         if other not in self._listed}
                store.forget_index_items(self.name, [r.item_id for r in rows] + sorted(stale))
            store.index_items(self.name, library, rows, fresh=True)
            rows.clear()

        def sink(meta: Any) -> None:
            row = _index_row(meta)
            if row is None:
                return
            rows.append(row)
            self._listed.add(row.item_id)
            if meta.get("deletedAt") is not None:
                self.marked_missing.add(row.item_id)
            else:
                self.marked_missing.discard(row.item_id)
            if len(rows) >= INDEX_FLUSH:
                flush()

        yield sink
        flush()

    def confirmed(self, keys: list[str], path: str | None) -> list[str]:
        """Those of `keys` Plex has (holding `path`, when given): keys it listed in this
        run are taken as they are, the others asked for (`/library/metadata/{k1,k2,...}`,
        a batch at a time); those it no longer has leave the index, those it has are
        indexed afresh from its answer."""
        doubtful = [k for k in keys if k not in self._listed]
        store = self._store
        if not doubtful or store is None:
            return keys
        answered: dict[str, Any] = {}
        batches = [doubtful[n:n + CONFIRM_BATCH]
                   for n in range(0, len(doubtful), CONFIRM_BATCH)]
        while batches:
            batch = batches.pop()
            try:
                data = self._get(f"/library/metadata/{','.join(batch)}")
            except Rejected as exc:
                if getattr(exc, "status", None) != 404:
                    raise
                if len(batch) > 1:
                    # Whether Plex answers 404 for a batch when only some keys are gone
                    # is not known: ask each alone rather than count the rest as gone.
                    batches += [[key] for key in batch]
                continue  # that key is not there any more
            container = _container(data, f"{self.http.base}/library/metadata")
            for meta in container.get("Metadata") or []:
                if isinstance(meta, dict) and str(meta.get("ratingKey")) in batch:
                    answered[str(meta["ratingKey"])] = meta
        gone = [k for k in doubtful if k not in answered]
        if gone:
            log.info("%s: %d indexed item(s) Plex no longer has: dropped from the index",
                     self.name, len(gone))
            store.forget_index_items(self.name, gone)
        for key, meta in answered.items():
            row = _index_row(meta)
            library = store.index_library_of(self.name, key)
            if row is not None and library is not None:
                store.forget_index_items(self.name, [key])
                store.index_items(self.name, library, [row], fresh=True)
            self._listed.add(key)
            if meta.get("deletedAt") is not None:
                self.marked_missing.add(key)
        wanted = None if path is None else file_key(path)
        return [k for k in keys if k in self._listed and (
            wanted is None or k not in answered
            or wanted in {file_key(f) for f in _files(answered[k])})]

    def _pages(self, path: str, params: dict[str, Any], what: str) -> Iterator[Any]:
        """The items of a paged Plex listing, page by page (X-Plex-Container-Start/Size);
        each parsed page is dropped before the next one is asked for."""
        start = 0
        while True:
            container = _container(
                self._get(path, {**params, "X-Plex-Container-Start": start,
                                 "X-Plex-Container-Size": PAGE_SIZE}), what)
            page = container.get("Metadata") or []
            count, total = len(page), container.get("totalSize")
            del container
            yield from page
            del page
            start += count
            if not count or count < PAGE_SIZE or (isinstance(total, int) and start >= total):
                return

    def _shows_holding(self, section: Section, path: str) -> list[str]:
        """Rating keys of the shows of `section` whose folder (Location) holds `path`.

        From the section's listing of shows (type 2), read once per run: a TV section
        holds a few thousand shows but hundreds of thousands of episodes, and the Plex
        spec has no filter of a section by folder. Looked up by the path's own folders,
        deepest first: a few dict look-ups per episode.
        """
        shows = self.listing(section, TYPE_SHOW)
        parts = path_key(path)
        for length in range(len(parts) - 1, 0, -1):
            found = shows.by_path("/" + "/".join(parts[:length]))
            if found:
                return found
        return []

    def _show_listing(self, show_key: str) -> Listing:
        """One show's episodes (`/library/metadata/{key}/allLeaves`), once per run."""
        if show_key not in self._leaves:
            found = Listing()
            try:
                for meta in self._pages(f"/library/metadata/{show_key}/allLeaves",
                                        {"includeGuids": 1},
                                        f"the episodes of Plex item {show_key}"):
                    found.add(meta)
            except Rejected as exc:
                if getattr(exc, "status", None) != 404 or self._store is None:
                    raise
                # A show the index kept that Plex no longer has: it has no episodes
                # here, and its folder is scanned like a new show's.
                log.info("%s: indexed show %s is gone from Plex: dropped from the index",
                         self.name, show_key)
                self._store.forget_index_items(self.name, [show_key])
            self._leaves[show_key] = found
            self._leaves_after[show_key] = self._scans_sent
        return self._leaves[show_key]

    def _episodes(self, section: Section, path: str) -> tuple[Listings, int]:
        """The episodes of the show(s) holding the episode file `path`, and how many scans
        had been sent when the oldest of those listings was read.

        Several changed episodes of one show cost one listing of that show. A show Plex
        does not have yet has no episodes here (its folder is scanned).
        """
        keys = self._shows_holding(section, path)
        listings = Listings([self._show_listing(key) for key in keys])
        after = min((self._leaves_after[key] for key in keys),
                    default=self._listed_after[(section.key, TYPE_SHOW)])
        return listings, after

    def _items_of(self, section: Section, target: Target) -> tuple[Listings, int]:
        """Where to look for `target` in `section`: its show's episodes for an episode,
        else the section's listing of its type; with the scans sent before it was read."""
        if target.item.kind == "episode":
            return self._episodes(section, target.path)
        plex_type = LISTING_TYPE[target.item.kind]
        listing = self.listing(section, plex_type)
        return Listings([listing]), self._listed_after[(section.key, plex_type)]

    def sample_paths(self, limit: int = 20) -> list[str]:
        """A few movies' and episodes' files of every video section (one page each).

        The first page of the listing the adapter pages anyway, without provider ids:
        read-only, and never the whole section.
        """
        paths: list[str] = []
        for section in self.sections():
            plex_type = {"movie": TYPE_MOVIE, "show": TYPE_EPISODE}.get(section.type)
            if plex_type is None:
                continue
            container = _container(
                self._get(f"/library/sections/{section.key}/all", {
                    "type": plex_type,
                    "X-Plex-Container-Start": 0, "X-Plex-Container-Size": limit}),
                f"the listing of Plex library {section.title!r}")
            for meta in (container.get("Metadata") or [])[:limit]:
                if isinstance(meta, dict) and meta.get("ratingKey") is not None:
                    paths.extend(_files(meta)[:1])
        return paths

    # -- delivery ----------------------------------------------------------------------

    def _where(self, target: Target) -> tuple[list[tuple[Section, str]], str | None]:
        """The sections (with the folder as each spells it) that should scan `target`,
        or a reason why no scan may be sent."""
        folder = target.folder
        if target.folder_is_root:
            return [], (f"refusing to scan {folder}: it is the library root itself, and "
                        "one item never justifies a whole-library scan")
        wanted = SECTION_TYPE[target.item.kind]
        places: list[tuple[Section, str]] = []
        other: list[tuple[Section, str]] = []
        for section in self.sections():
            try:
                spelled = section.place(folder)
            except MappingError as exc:  # a name a Windows server cannot hold
                return [], f"{folder} cannot be scanned on this Plex server: {exc}"
            if spelled is None:
                continue
            if section.is_location(folder):
                return [], (f"refusing to scan {folder}: it is the whole location of Plex "
                            f"library {section.title!r}, and one item never justifies a "
                            "whole-library scan")
            (places if section.type == wanted else other).append((section, spelled))
        if places:
            return places, None
        if other:
            names = ", ".join(f"{s.title!r} ({s.type})" for s, _ in other)
            return [], (f"{folder} is not in any Plex {wanted} library, only in {names}")
        locations = ", ".join(loc for s in self.sections() for loc in s.locations) or "none"
        return [], (f"{folder} is not in any Plex library (library folders: {locations}); "
                    "check the path mapping")

    def apply(self, batch: Sequence[Target]) -> list[Outcome]:
        failed: dict[str, str] = {}
        scans: dict[str, tuple[Section, list[str]]] = {}
        refreshes: dict[str, list[Target]] = {}  # rating key -> the targets it is for
        for target in batch:
            places, reason = self._where(target)
            if reason:
                failed[target.key] = reason
                continue
            for section, folder in places:
                if target.item.removed:
                    # Only the scan: Plex marks the item missing when the scan runs, in
                    # the background. The trash is emptied, if ever, by verify() on a
                    # later run (see _verify_removals), never here.
                    need_scan = True
                else:
                    need_scan = self._plan_update(target, section, folder, refreshes)
                    for old_folder in self._plan_replaced(target, section):
                        scans.setdefault(section.key, (section, []))[1].append(old_folder)
                if need_scan:
                    scans.setdefault(section.key, (section, []))[1].append(folder)
        # Scans first, strictly one at a time (Plex drops scans when flooded).
        for section, folders in scans.values():
            for folder in collapse_folders(folders):
                self._scan(section, folder)
        # Then refreshes of the items Plex already has: Plex queues them and answers at
        # once, so `concurrency` of them are sent at a time.
        keys = list(refreshes)
        vanished: dict[str, str] = {}
        stale: list[str] = []
        for rating_key, done in zip(keys, self.concurrently(self._refresh, keys), strict=True):
            if done:
                continue
            if self._store is not None and rating_key not in self._listed:
                stale.append(rating_key)  # the index's word only: Plex looks it up below
                continue
            for target in refreshes[rating_key]:
                vanished.setdefault(target.key, (
                    f"Plex no longer has item {rating_key} it listed for {target.path} "
                    "(HTTP 404 on its refresh): the next run looks for it again"))
        if stale:
            self._look_up_afresh(stale, refreshes)
        return [Outcome(t.key, Result.FAILED, failed[t.key]) if t.key in failed
                else Outcome(t.key, Result.RETRY, vanished[t.key]) if t.key in vanished
                else Outcome(t.key, Result.SYNCED) for t in batch]

    def _look_up_afresh(self, stale: Sequence[str], refreshes: dict[str, list[Target]]
                        ) -> None:
        """Rating keys from the index that Plex answered 404 to: dropped from the index,
        and the folder of each of their targets scanned, so that Plex finds the file
        itself (as a new item if it lost the old one); verify() then looks for it."""
        assert self._store is not None
        log.info("%s: %d indexed item(s) gone from Plex: dropped from the index; their "
                 "folders are scanned", self.name, len(stale))
        self._store.forget_index_items(self.name, list(stale))
        for rating_key in stale:
            for target in refreshes[rating_key]:
                for section, folder in self._where(target)[0]:
                    self._scan(section, folder)

    def _plan_update(self, target: Target, section: Section, folder: str,
                     refreshes: dict[str, list[Target]]) -> bool:
        """Queue refreshes of the items Plex has for `target`; True when a scan is needed."""
        listing, listed_after = self._items_of(section, target)
        scan = self._scan_number(section, folder)
        if scan is not None and scan < listed_after:
            # A scan of this run (a new show's folder) read this folder before the listing
            # was taken: what the listing has there, that scan just added, NFO and artwork
            # included. Refreshing it again would only cost a request per item.
            return False
        by_path = listing.by_path(target.path)
        found = by_path or listing.by_guid(target.item.ids)
        for rating_key in found:
            if rating_key not in self._refreshed:  # once per run
                self._refreshed.add(rating_key)
                refreshes[rating_key] = []
            if rating_key in refreshes:
                refreshes[rating_key].append(target)
        # Not there yet, or there under another path (Metarr renamed or moved the file):
        # a scan adds the file at its new place.
        return not by_path

    def _plan_replaced(self, target: Target, section: Section) -> list[str]:
        """For an upgraded or renamed item: the folders of its old files that lie apart
        from the new one (their scan marks the old file missing). The trash is never
        emptied for an upgrade (see the module's docstring)."""
        folders: list[str] = []
        for old in target.previous:
            verdict = old_file_gone(old.metarr, target.item.path)
            if verdict.gone is False:
                continue  # a copy kept beside the new file: Plex keeps it as well
            old_folder = parent(old.path, target.style)
            if old_folder != target.folder:
                spelled = section.place(old_folder)
                if spelled is not None and not section.is_location(old_folder):
                    folders.append(spelled)
        return folders

    def _scan_number(self, section: Section, folder: str) -> int | None:
        """The number of this run's scan of `folder`, or of a folder holding it, if any.

        Looked up by the folder's own components and those of its parents: a few dict
        look-ups, whatever the number of scans (a pairwise comparison would make a run
        of thousands of new folders quadratic).
        """
        done = self._scanned.get(section.key)
        if not done:
            return None
        key = path_key(folder)
        for length in range(len(key), 0, -1):
            number = done.get(key[:length])
            if number is not None:
                return number
        return None

    def _scan(self, section: Section, folder: str) -> None:
        if self._scan_number(section, folder) is not None:
            return  # this folder, or one holding it, was already scanned in this run
        if self._scans_sent and self.config.scan_delay and not self.dry_run:
            # Plex drops scans when flooded: space them out.
            self._sleep(self.config.scan_delay)
        self._send("GET", f"/library/sections/{section.key}/refresh", {"path": folder})
        self._scanned.setdefault(section.key, {})[path_key(folder)] = self._scans_sent
        self._scans_sent += 1

    def _refresh(self, rating_key: str) -> bool:
        """Refresh (and analyze) one item; False when Plex no longer has it (HTTP 404):
        removed since it was listed, which concerns that item only."""
        try:
            self._send("PUT", f"/library/metadata/{rating_key}/refresh")
            if self.config.analyze:
                self._send("PUT", f"/library/metadata/{rating_key}/analyze")
        except Rejected as exc:
            if getattr(exc, "status", None) != 404:
                raise
            log.info("%s: item %s vanished before its refresh", self.name, rating_key)
            return False
        return True

    # -- checking ----------------------------------------------------------------------

    def verify(self, targets: Sequence[Target]) -> list[Outcome]:
        """Is every delivered item now in Plex at its path (or by provider id), and is
        every removed one gone (see _verify_removals)?"""
        self._listings.clear()  # scans happened since any earlier listing: read afresh
        self._whole.clear()
        self._listed.clear()
        self.marked_missing.clear()
        self._leaves.clear()
        self._leaves_after.clear()
        removals = self._verify_removals([t for t in targets if t.item.removed])
        outcomes = []
        for target in targets:
            if target.item.removed:
                outcomes.append(removals[target.key])
                continue
            places, reason = self._where(target)
            if reason:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED,
                                        f"Plex ignored the scan: {reason}"))
                continue
            seen = False
            left: list[str] = []
            for section, _ in places:
                listing = self._items_of(section, target)[0]
                # What verify() counts as seen is Plex's word, not the index's.
                new = listing.by_path(target.path, sure=True)
                if target.previous:
                    # One entry, for the new file: found at its path, and no other item
                    # still holding an old file that is gone from disk.
                    left += [old.path for old in target.previous
                             if old_file_gone(old.metarr, target.item.path).gone is not False
                             and set(listing.by_path(old.path, sure=True)) - set(new)]
                    seen = seen or bool(new)
                elif new or listing.by_guid(target.item.ids, sure=True):
                    seen = True
                    break
            if seen and left:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, (
                    f"Plex still lists {', '.join(left)} beside the new file {target.path} "
                    "(shown as unavailable until the library's trash is emptied): Plex "
                    "empties it by itself after a scan when its 'Empty trash automatically "
                    "after every scan' is on; otherwise empty the trash in Plex. metarr-sync "
                    "does not, as the trash may hold other missing items")))
            elif seen:
                outcomes.append(Outcome(target.key, Result.SYNCED))
            else:
                scanned = ", ".join(f"{folder} in library {section.title!r}"
                                    for section, folder in places)
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, (
                    f"Plex has no item at {target.path} after the scan of {scanned}: "
                    "is the file readable by Plex and named the way Plex expects?")))
        return outcomes

    # -- removals and the trash --------------------------------------------------------

    def _verify_removals(self, removals: Sequence[Target]) -> dict[str, Outcome]:
        """Is every removed item gone from Plex? Empties a section's trash when, and only
        when, that is provably safe.

        A removal is only verified by looking: "synced" once Plex no longer lists the item
        in any section whose folders hold it. An item Plex lists marked missing leaves with
        the section's trash, and `emptyTrash` deletes EVERY item of the section Plex marked
        missing (a dropped mount marks everything on it missing). So the trash of a section
        is emptied only when:
        - `[sync] clean_deleted` is on;
        - every removal of this check that Plex lists in the section is marked missing
          (Plex's view of the share agrees with Metarr's);
        - every item the section has marked missing is one of those removals (matched by
          file or show folder, then by rating key; a removed show brings its episodes);
        - and they are at most `max_trash_items`.
        Then the section is listed again, and only what is gone counts as removed.
        Otherwise the trash is left alone and each removal stays unverified with the cause.
        """
        outcomes: dict[str, Outcome] = {}
        # (target, section, state): "gone", "missing" (listed, marked missing), "present"
        looks: list[tuple[Target, Section, str]] = []
        ours: dict[str, set[str]] = {}  # section key -> rating keys of our removals there
        present: dict[str, list[Target]] = {}  # section key -> removals Plex still has
        for target in removals:
            places, reason = self._where(target)
            if reason:
                outcomes[target.key] = Outcome(target.key, Result.UNVERIFIED,
                                               f"cannot check the removal in Plex: {reason}")
                continue
            for section, _ in places:
                state, keys = self._removal_state(section, target)
                looks.append((target, section, state))
                if state != "gone":
                    ours.setdefault(section.key, set()).update(keys)
                if state == "present":
                    present.setdefault(section.key, []).append(target)
        # Removals delivered more recently, not checked in this call: what Plex marked
        # missing for them is ours too (else two removals could block each other's trash).
        checked = {t.key for t in removals}
        for target in self.removing:
            if target.key in checked or self._where(target)[1]:
                continue
            for section, _ in self._where(target)[0]:
                state, keys = self._removal_state(section, target)
                if state != "gone":
                    ours.setdefault(section.key, set()).update(keys)
        refused: dict[str, str] = {}  # section key -> why its trash stays as it is
        emptied: set[str] = set()
        if self.sync.clean_deleted:
            for section in _distinct_sections(s for _, s, state in looks
                                              if state == "missing"):
                why = self._trash_verdict(section, ours[section.key],
                                          present.get(section.key, []))
                if why:
                    refused[section.key] = why
                    log.warning("%s: %s", self.name, why)
                else:
                    self._send("PUT", f"/library/sections/{section.key}/emptyTrash")
                    emptied.add(section.key)
        if emptied:  # what did emptying the trash really take away?
            for key in [k for k in self._listings if k[0] in emptied]:
                del self._listings[key]
                self._whole.pop(key, None)
            self._listed.clear()  # what was confirmed before the trash went is stale
            self.marked_missing.clear()
            self._leaves.clear()
            self._leaves_after.clear()
            looks = [(t, s, self._removal_state(s, t)[0] if s.key in emptied else state)
                     for t, s, state in looks]
        by_target: dict[str, list[tuple[Section, str]]] = {}
        for target, section, state in looks:
            by_target.setdefault(target.key, []).append((section, state))
        for target in removals:
            if target.key not in outcomes:
                outcomes[target.key] = self._removal_outcome(
                    target, by_target.get(target.key, []), refused, emptied)
        return outcomes

    def _removal_state(self, section: Section, target: Target) -> tuple[str, list[str]]:
        """("gone" | "missing" | "present", rating keys) of a removed item in a section.

        Matched by file (a show by its folder) only, never by provider id: another copy
        of the same movie (4K, another edition) must not count as the removed one.
        """
        listing = self._items_of(section, target)[0]
        keys = listing.by_path(target.path, sure=True)  # a removal is proven by Plex
        if not keys:
            return "gone", []
        marked = listing.missing()
        if target.item.kind == "series":
            # Plex marks a show's episodes missing, not the show: the show is missing
            # when it has episodes and every one of them is (a show without any is
            # nothing the trash would take).
            found = list(keys)
            missing = True
            for key in keys:
                if key in marked:
                    continue
                leaves = self._show_leaves(key)
                found += [leaf for leaf, _ in leaves]
                missing = missing and bool(leaves) and all(gone for _, gone in leaves)
            return ("missing" if missing else "present"), found
        return ("missing" if all(k in marked for k in keys) else "present"), keys

    def _show_leaves(self, show_key: str) -> list[tuple[str, bool]]:
        """(rating key, marked missing) of every episode of a show (once per check)."""
        leaves = self._show_listing(show_key)
        return [(leaves.keys[n], n in leaves.deleted) for n in range(len(leaves))]

    def _trash_verdict(self, section: Section, ours: set[str],
                       present: Sequence[Target]) -> str | None:
        """Why the trash of `section` must stay as it is, or None when it may be emptied
        (see _verify_removals)."""
        where = f"library {section.title!r}"
        if present:
            return (f"Plex marked it missing, but still lists {present[0].path} (also removed "
                    f"by metarr-sync) as present: the trash of {where} is not emptied until "
                    "Plex has marked every removed item missing; the next run checks again")
        types = (TYPE_MOVIE,) if section.type == "movie" else (TYPE_SHOW, TYPE_EPISODE)
        missing: set[str] = set()
        named: dict[str, str] = {}
        for plex_type in types:
            missing |= self._whole_listing(section, plex_type).missing()
            named.update(self._trash_seen.get((section.key, plex_type), {}))
        if not missing:  # allLeaves and the listing disagree: nothing would go
            return (f"Plex marked it missing, but lists nothing missing in {where} yet: "
                    "trash not emptied; the next run checks again")
        others = sorted(missing - ours, key=lambda k: named.get(k) or "\uffff")
        if others:
            examples = [named[k] for k in others if named.get(k)][:3]
            return (f"Plex marked it missing, but {where} also has {len(others)} "
                    f"other missing item{'s' if len(others) != 1 else ''}"
                    + (f" (e.g. {', '.join(examples)})" if examples else "")
                    + ": trash not emptied — check your mounts, then empty the trash in "
                    "Plex")
        limit = self.config.max_trash_items
        if len(missing) > limit:
            return (f"Plex marked it missing, but emptying the trash of {where} would delete "
                    f"{len(missing)} items, more than max_trash_items = {limit}: trash not "
                    "emptied — check them in Plex, then empty its trash yourself or raise "
                    "max_trash_items")
        return None

    def _removal_outcome(self, target: Target, looks: Sequence[tuple[Section, str]],
                         refused: dict[str, str], emptied: set[str]) -> Outcome:
        """What a removal came to, from its state in each section that holds its folder."""
        for section, state in looks:
            if state == "present":
                return Outcome(target.key, Result.UNVERIFIED, (
                    f"Plex still lists {target.path} in library {section.title!r} and has "
                    f"not marked it missing: Plex has not rescanned {target.folder} yet, or "
                    "the file still exists for Plex (is Plex's view of the share the same as "
                    "Metarr's?)"))
        for section, state in looks:
            if state != "missing":
                continue
            if not self.sync.clean_deleted:
                continue  # marked missing is all the user wants: the trash is theirs
            if section.key in refused:
                return Outcome(target.key, Result.UNVERIFIED, refused[section.key])
            if section.key in emptied:
                return Outcome(target.key, Result.UNVERIFIED, (
                    f"Plex still lists {target.path} in library {section.title!r} after its "
                    "trash was emptied: Plex may still be emptying it; the next run checks "
                    "again"))
        return Outcome(target.key, Result.SYNCED)

    def scan_all(self) -> None:
        """targeted_updates = false: scan every movie and TV library in full."""
        for section in self.sections():
            if section.type in ("movie", "show"):
                self._send("GET", f"/library/sections/{section.key}/refresh")

    def close(self) -> None:
        self.http.close()


__all__ = ["PlexPlayer", "Section", "client_identifier", "machine_id"]
