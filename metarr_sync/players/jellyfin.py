"""Jellyfin (and Emby) over REST: targeted refreshes of changed items, one media report per batch.

What the servers really do (from Jellyfin's OpenAPI specs 10.11 and 12.0 and its source,
and the code of tools that talk to it: Radarr/Sonarr Connect, autoscan):
- Jellyfin 12 accepts only `Authorization: MediaBrowser ..., Token="..."`; the legacy
  X-Emby-Token is rejected with a 401 that looks exactly like a revoked key. Emby still
  wants X-Emby-Token.
- `POST /Library/Media/Updated` takes a list: all new/removed paths of a batch go in one
  request. Jellyfin stores movies by *file* path; movie folders are no items.
- Items it already has are refreshed with `POST /Items/{id}/Refresh`, whose parameters are
  query-string only and default to None/None (a bare call does almost nothing).
- Jellyfin cannot search by path or provider id: we list each library once per run
  (paged) and match ourselves. Emby can (`/Items?Path=`, `AnyProviderIdEquals=`).

Upgrades and renames (a file replaced under another name; Metarr rewrites the item's path
in place). Read in Jellyfin's source (Emby.Server.Implementations/IO/LibraryMonitor.cs,
FileRefresher.cs; MediaBrowser.Controller/Entities/Folder.cs; MediaBrowser.Providers/
Manager/ProviderManager.cs; LibraryManager.GetNewItemId), not measured on a server:
- `/Library/Media/Updated` ignores UpdateType: each reported path goes to the library
  monitor, which merges paths reported together (siblings into their parent folder) and,
  after `LibraryMonitorDelay` (~60 s), walks every path up to the nearest item the server
  knows (`FindByPath`); an item whose file is gone is replaced by its parent. That item is
  refreshed, and a folder is validated (`Folder.ValidateChildren`, recursive).
- An item's id is derived from its path, so the new file is a new item: validating the
  folder above it (a movie's library folder, an episode's season folder) deletes the old
  item, whose file no longer resolves, and creates the new one. One entry remains, under a
  new id (watched state follows the provider ids). A copy kept beside the new file stays,
  grouped as another version of the movie when the names allow it.
So the adapter reports the new file as Created and every old file that is not on disk any
more as Deleted, in one request: both lead to the folder that holds them. It does not
refresh the old item it may find by provider ids (it is about to go), and verify() counts
the item only when the new file is listed at its exact path and no old file that is gone
from disk is still listed.

Reports that rescan a whole library folder. Read in Jellyfin's source at commit
c3ed1407ca698b0905de99da87b67415e6a62dbd (2026-08-22), not measured on a server:
- Jellyfin.Api/Controllers/LibraryController.cs, PostUpdatedMedia: each reported Path
  goes to `ILibraryMonitor.ReportFileSystemChanged`, UpdateType unread.
- Emby.Server.Implementations/IO/LibraryMonitor.cs, CreateRefresher: a path joins a
  pending FileRefresher when it is that refresher's path, inside it, its parent, or a
  sibling (same parent folder: the refresher moves up to that parent). Files in two
  different movie folders are none of these: each gets a FileRefresher of its own.
- IO/FileRefresher.cs: a refresher waits `LibraryMonitorDelay` (ServerConfiguration,
  default 60 s; every added path restarts the wait), then GetAffectedBaseItem walks each
  path up until `LibraryManager.FindByPath` knows an item there; an item whose file or
  folder is gone is replaced by its owner or parent. The items found (distinct within one
  refresher only) get `ChangedExternally()`, skipping the AggregateFolder.
- MediaBrowser.Controller/Entities/BaseItem.cs ChangedExternally queues a refresh
  (ProviderManager.QueueRefresh: a priority queue, no de-duplication);
  MediaBrowser.Providers/Manager/ProviderManager.cs RefreshItem validates a Folder's
  children (`Folder.ValidateChildren`, recursive = true by default).
- The library folder (a location of a library, a child of the root AggregateFolder:
  CollectionFolder.GetPhysicalFolders) is such a Folder item.
What a report therefore does:
- a new movie: its file is no item, its movie folder neither, so it lands on the library
  folder, which is validated whole (every folder listed, every new item read);
- a removed movie: its item's file is gone, so its parent, the library folder, likewise;
- a renamed/upgraded movie: both paths share a folder, one refresher, one validation of
  the library folder;
- a new episode of a known show: lands on its season or show folder: only that show;
- a new show: its folder is no item yet: the library folder, whole.
Three new movies reported in one request were three queued validations of the library
folder. So apply() sends every path that lands on a library folder (landing_root) at most
once per folder and run: as it is when they share one folder (the server merges them),
else the library folder itself (`Modified`; it is the item those paths would reach, and
paths reported within the next 60 s join its refresher). Paths landing on a show stay
targeted. A folder reported by an earlier run less than `verify_after` ago
(Player.roots_in_flight, kept in the state) is not reported again while none of the items
reported with it has been seen (one seen: the validation has run, and a later new file
needs a report of its own): its items count as delivered, are looked for after
verify_after, and are sent again (rescanning the folder once more) if still not listed.
Emby is closed source; it shares this code's ancestry and is treated the same.

The index (Jellyfin; issue 19: a small run costs what it changes, not what the library
holds). Jellyfin cannot look an item up by path, so the first run that needs a library
lists it whole (movies and shows; a show's episodes when one of them is first needed) and
keeps what matching reads (path -> id, type, show, provider ids) in the state (schema 4).
Later runs bring it up to date with `GET /Items?parentId=<library>&minDateLastSaved=<t>`:
the items the server saved since the last update, minus INDEX_MARGIN. The stamp is the
server's time: ours moved by what its HTTP `Date` header (ASP.NET Core's Kestrel sends
one on every answer; /System/Info carries no clock) said at discovery; the margin covers
the header's whole seconds and the time between that answer and the listing. What
sets DateLastSaved, read in Jellyfin's source at commit c3ed1407 (not measured on a
server):
- both specs (10.11.11, 12.0.0): `minDateLastSaved` on GET /Items, "The minimum last saved
  date. Format = ISO."; `DateLastSaved` is an ItemFields value;
- Jellyfin.Server.Implementations/Item/BaseItemRepository.TranslateQuery.cs: the filter
  is `DateLastSaved != null && DateLastSaved >= minDateLastSaved`;
- Emby.Server.Implementations/Library/LibraryManager.cs UpdateItemsAsync sets
  `DateLastSaved = DateTime.UtcNow` on every save of an item (metadata refresh, image
  update, edit); CreateItems does not, so a new item is found by its first metadata save:
  MediaBrowser.Providers/Manager/MetadataService.cs RefreshMetadata saves an item on its
  first refresh (`isFirstRefresh` → SaveItemAsync → UpdateToRepositoryAsync), which the
  scan that adds it runs. A later refresh saves only when something changed (updateType
  above None): a refreshed item may keep its old DateLastSaved;
- a moved or renamed file is a new item (its id comes from its path, GetNewItemId): it
  is created and saved like any new one; the old item is deleted;
- a deleted item is in no answer: the index may keep ids the server no longer has.
So whatever the index says is checked where it decides something: an item to refresh is
refreshed (a 404 drops it from the index, and its path is reported to the server, which
looks it up itself); an item whose presence alone decides (a removal still listed, an
old file of an upgrade, a known show, anything verify() counts as seen) is confirmed with
`GET /Items?ids=...` unless the server listed it in this run. The index of a library is
thrown away and the library listed whole again when the server's Id changed, when the
library's ItemId or folders changed (a rebuilt library), or when it was listed whole
more than 7 days ago (index.INDEX_MAX_AGE). Emby keeps no index: it looks each item up by path
(`/Items?Path=`, then `AnyProviderIdEquals`), one or two requests per item whatever the
library's size.

Not modelled: a folder between the library folder and the movie folders (`Movies/Marvel/
Iron Man (2008)/...`) is a plain Folder item in Jellyfin (MovieResolver.FindMovie finds
no single movie in it), where a new movie's walk would stop; the adapter lists only
movies and shows, so it takes such paths for library-folder ones (it may send the
library folder where Jellyfin would have validated that sub-folder only).
"""

from __future__ import annotations

import hashlib
import logging
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.disk import old_file_gone
from metarr_sync.paths import (
    PLATFORM,
    ancestor,
    collapse_folders,
    is_under,
    match_key,
    strip_trailing,
)
from metarr_sync.plan import OldFile, Target
from metarr_sync.player_types import SETTINGS
from metarr_sync.players.base import (
    AuthFailed,
    Outcome,
    Player,
    PlayerError,
    ProbeResult,
    ProbeStep,
    ProtocolError,
    Rejected,
    Result,
)
from metarr_sync.players.compact import CompactIndex, IdSet, ItemIds
from metarr_sync.players.http import HttpClient, parse_json
from metarr_sync.players.index import IndexRow, IndexStore, why_list_again
from metarr_sync.stamps import seconds_ahead, stamp_ago
from metarr_sync.version import __version__

log = logging.getLogger("metarr_sync.jellyfin")

CLIENT = "metarr-sync"
PAGE_SIZE = 500
#: The order every listing asks for (see JellyfinPlayer._listing): no sort option of
#: Jellyfin's is unique, these leave the fewest ties. `enableTotalRecordCount=false`: no
#: count of the whole library on every page.
LISTING_ORDER = {"sortBy": ["SortName", "Name", "ProductionYear", "DateCreated"],
                 "sortOrder": "Ascending", "enableTotalRecordCount": "false"}
#: Items each page repeats of the one before (see JellyfinPlayer._listing).
LISTING_OVERLAP = 20
#: Shows whose episode listings are kept at a time (see series_index).
SHOWS_KEPT = 8
MESSAGE_MS = 5000
#: A library's index is listed whole again after this long (see "The index"): deletions
#: never come with the updates, so ids the server dropped pile up, each costing a
#: confirmation when it matters; a week bounds that, and whatever drift no save records,
#: at one full listing a week instead of one per run.
#: Each update asks for saves from this long before the last one began: the stamp is
#: this host's clock, the saves the server's.
INDEX_MARGIN = 15 * 60
#: Index rows written to the state at a time while a library is listed.
INDEX_FLUSH = 5000
#: Jellyfin item type for each Metarr item kind.
ITEM_TYPE = {"movie": "Movie", "series": "Series", "episode": "Episode"}
#: Metarr's provider id names → Jellyfin's ProviderIds keys.
PROVIDERS = {"tmdb": "Tmdb", "imdb": "Imdb", "tvdb": "Tvdb"}


def machine_id() -> str:
    """An id of this machine that survives restarts (systemd/dbus), else the host name."""
    for candidate in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            text = Path(candidate).read_text(encoding="ascii").strip()
        except OSError:
            continue
        if text:
            return text
    node = uuid.getnode()
    if not node & (1 << 40):  # bit 40 set: a random stand-in, different on every start
        return f"{node:012x}"
    return socket.gethostname()


def device_id(player_name: str) -> str:
    """A DeviceId stable across runs, distinct per player, revealing nothing.

    Jellyfin keys sessions and device entries by it: a new id every run would pile up
    devices in the dashboard.
    """
    digest = hashlib.sha256(f"{CLIENT}\0{machine_id()}\0{player_name}".encode())
    return digest.hexdigest()[:32]


def authorization(token: str, player_name: str) -> str:
    """The `Authorization: MediaBrowser ...` value; Jellyfin URL-decodes every value."""
    fields = {
        "Client": CLIENT,
        "Device": socket.gethostname() or "metarr-sync",
        "DeviceId": device_id(player_name),
        "Version": __version__,
        "Token": token,
    }
    return "MediaBrowser " + ", ".join(f'{k}="{quote(v, safe="")}"' for k, v in fields.items())


@dataclass
class Library:
    """One Jellyfin library (a "virtual folder") as the server lists it."""

    name: str
    locations: list[str]
    item_id: str | None
    collection_type: str | None

    def holds(self, path: str) -> bool:
        return any(is_under(path, loc, PLATFORM) for loc in self.locations)

    def describe(self) -> str:
        return f"{self.name!r} ({', '.join(self.locations) or 'no folders'})"

    @property
    def item_types(self) -> list[str]:
        kind = (self.collection_type or "").lower()
        if kind == "movies":
            return ["Movie"]
        if kind == "tvshows":
            return ["Series", "Episode"]
        return ["Movie", "Series", "Episode"]


#: The item types an Index tells apart, one byte each; 0: the server sent none.
_TYPE_CODES = {"Movie": 1, "Series": 2, "Episode": 3}
_OTHER_TYPE = 4


class Index:
    """A library's (or one show's) items, for matching by exact path or by provider id.

    Only what matching and refreshing read is kept, compactly (see compact.py): each
    item's id and type, found by its path and its provider ids. A library of 50,000
    movies kept as DTOs (names, server ids, ...) would cost the run tens of MB.
    """

    def __init__(self) -> None:
        self.ids = ItemIds()  # record number -> Id
        self.types = bytearray()  # record number -> type code
        self._paths = CompactIndex()
        self._providers = CompactIndex()
        self._ids = CompactIndex()  # Id -> record number: a paged listing's repeats

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, item: dict[str, Any]) -> None:
        if item.get("Id") is None:
            return  # nothing to refresh by
        number = self.ids.add(str(item["Id"]))
        self._ids.add(str(item["Id"]), number)
        kind = str(item.get("Type") or "")
        self.types.append(_TYPE_CODES.get(kind, _OTHER_TYPE if kind else 0))
        path = item.get("Path")
        if isinstance(path, str) and path:
            self._paths.add(match_key(path), number)
        providers = item.get("ProviderIds")
        for key, value in (providers.items() if isinstance(providers, dict) else ()):
            if value:
                self._providers.add(_provider_key(kind, key, value), number)

    def has(self, item_id: str) -> bool:
        return bool(self._ids.get(item_id))

    def at_path(self, path: str, kind: str, *, sure: bool = False) -> list[str]:
        """Ids of the items of `kind` whose Path is `path` (listed this run: `sure`
        changes nothing), compared as its file system
        does (paths.match_key: a Windows or SMB server ignores case; NFC everywhere); an
        item the server sent without a Type matches any kind."""
        wanted = (_TYPE_CODES.get(kind, _OTHER_TYPE), 0)
        return _unique(self.ids[n] for n in self._paths.get(match_key(path))
                       if self.types[n] in wanted)

    def with_ids(self, ids: dict[str, str], kind: str, *, sure: bool = False) -> list[str]:
        """Ids of the items of `kind` sharing any tmdb/imdb/tvdb id with Metarr's item."""
        return _unique(self.ids[n] for provider, value in ids.items()
                       if provider.lower() in PROVIDERS and value
                       for n in self._providers.get(_provider_key(kind, provider, value)))


def _provider_key(kind: str, provider: str, value: object) -> str:
    return f"{kind}\x1f{provider.lower()}\x1f{str(value).strip()}"


def _index_row(item: dict[str, Any]) -> IndexRow | None:
    """What the state's index keeps of an item of a listing (as Index.add reads it)."""

    if item.get("Id") is None:
        return None
    kind = str(item.get("Type") or "")
    path = item.get("Path")
    providers = item.get("ProviderIds")
    return IndexRow(str(item["Id"]), match_key(path) if isinstance(path, str) else "",
                    kind, str(item["SeriesId"]) if item.get("SeriesId") else None,
                    tuple(_provider_key(kind, k, v) for k, v in (
                        providers.items() if isinstance(providers, dict) else ()) if v))


class StoredIndex:
    """A library's (or one show's) part of the index kept in the state: the same
    questions as Index, answered by the state; `sure`: ids the server did not list in
    this run are confirmed with it first (JellyfinPlayer.confirmed)."""

    def __init__(self, player: JellyfinPlayer, state: IndexStore, *, library: str | None = None,
                 series: str | None = None):
        self.player, self.state, self.library, self.series = player, state, library, series

    def at_path(self, path: str, kind: str, *, sure: bool = False) -> list[str]:
        found = _unique(i for i, t in self.state.index_at_path(
            self.player.name, match_key(path), library=self.library, series_id=self.series)
            if t in (kind, ""))
        return self.player.confirmed(found, path) if sure else found

    def with_ids(self, ids: dict[str, str], kind: str, *, sure: bool = False) -> list[str]:
        keys = [_provider_key(kind, p, v) for p, v in ids.items()
                if p.lower() in PROVIDERS and v]
        found = _unique(self.state.index_with_ids(self.player.name, keys, library=self.library,
                                                  series_id=self.series)) if keys else []
        return self.player.confirmed(found, None) if sure else found


class JellyfinPlayer(Player):
    type_name: ClassVar[str] = "jellyfin"
    product: ClassVar[str] = "Jellyfin"
    #: Jellyfin reports debounce media paths (~60 s) and scans in the background:
    #: deliveries are checked on a later run, once this many seconds have passed (the
    #: player's `verify_after`; this is its default, see player_types.SETTINGS).
    verify_after = float(SETTINGS["verify_after"].default)

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False):
        super().__init__(config, sync, dry_run=dry_run)
        self.verify_after = config.verify_after
        self.http = HttpClient(config, sync, dry_run=dry_run, headers=self.auth_headers())
        self.use_client(self.http)
        self._libraries: list[Library] | None = None
        self._indexes: dict[str, Index | StoredIndex] = {}
        #: The state, when the index is kept there (keep_index), and the server's Id.
        self._store: IndexStore | None = None
        self.server_id = ""
        #: Ids the server listed in this run: no confirmation needed.
        self._listed = IdSet()  # ids listed in this run (compact: 250,000 of them)
        #: Ids whose refresh found them gone (refreshes run in threads: noted, then
        #: dropped from the index by apply()).
        self._gone: list[str] = []
        self._verifying = False
        #: Seconds the server's clock is ahead of ours (its HTTP Date header), 0 unknown.
        self._clock_ahead = 0.0
        self._recent_shows: list[str] = []  # series ids whose episode index is kept
        self.device = device_id(config.name)

    # --- plumbing -------------------------------------------------------------------------

    def auth_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.config.token_value:
            headers["Authorization"] = authorization(self.config.token_value, self.config.name)
        return headers

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.http.json("GET", path, params=params)

    # --- discovery ------------------------------------------------------------------------

    def probe(self) -> ProbeResult:
        result = ProbeResult()
        answer = self.http.request("GET", "/System/Info/Public")
        public = parse_json(answer, self.http.base) if answer is not None else None
        self._clock_ahead = seconds_ahead(answer.headers.get("Date") if answer is not None
                                          else None)
        if not isinstance(public, dict):
            raise ProtocolError(f"{self.http.base} does not answer like a {self.product} "
                                "server (/System/Info/Public is not a JSON object)")
        self._check_product(str(public.get("ProductName") or ""))
        self.server_id = str(public.get("Id") or "")
        result.version = str(public.get("Version") or "")
        result.steps.append(ProbeStep("reachable", True, " ".join(filter(None, (
            str(public.get("ProductName") or self.product), result.version,
            f"({public['ServerName']})" if public.get("ServerName") else None)))))
        if not self.config.token_value:
            raise AuthFailed(f"no API key configured for {self.name}: create one in "
                             f"{self.product}'s dashboard (API Keys) and set `token`")
        try:
            self._get("/System/Info")
        except AuthFailed:
            raise AuthFailed(self._auth_help()) from None
        result.steps.append(ProbeStep("credentials", True, "API key accepted"))
        libraries = self.libraries(refresh=True)
        result.roots = [loc for lib in libraries for loc in lib.locations]
        result.steps.append(ProbeStep("libraries", True, ", ".join(
            lib.describe() for lib in libraries) or "none"))
        return result

    def _check_product(self, product: str) -> None:
        if product and "emby" in product.lower():
            raise Rejected(f"{self.http.base} is {product}: set type = \"emby\" for "
                           f"{self.name}")

    def _auth_help(self) -> str:
        return (f"{self.product} at {self.http.base} rejected the API key (HTTP 401): create "
                "one in Dashboard → API Keys and set it as this player's token")

    def libraries(self, *, refresh: bool = False) -> list[Library]:
        """The server's libraries and their folders (admin rights needed)."""
        if self._libraries is not None and not refresh:
            return self._libraries
        try:
            raw = self._list_libraries()
        except Rejected as exc:
            if getattr(exc, "status", None) == 403:
                raise Rejected(f"{self.product} at {self.http.base}: the token lacks admin "
                               "rights (HTTP 403 listing libraries); use an API key from "
                               "Dashboard → API Keys") from None
            raise
        if not isinstance(raw, list):
            raise ProtocolError(f"{self.http.base} sent an unexpected library list")
        found = []
        for entry in raw:
            if not isinstance(entry, dict):
                continue
            locations = [str(p) for p in entry.get("Locations") or [] if p]
            found.append(Library(str(entry.get("Name") or "?"), locations,
                                 entry.get("ItemId") or entry.get("Id"),
                                 entry.get("CollectionType")))
        self._libraries = found
        self._indexes = {}
        return found

    def _list_libraries(self) -> Any:
        return self._get("/Library/VirtualFolders")

    def check_settings(self) -> list[ProbeStep]:
        """Libraries whose NFO saver rewrites Metarr's NFO files (Emby: or whose NFO
        reader is off), from their LibraryOptions (players/settings.py)."""
        from metarr_sync.players.settings import jellyfin_library_checks

        raw = self._list_libraries()
        if not isinstance(raw, list):
            raise ProtocolError(f"{self.http.base} sent an unexpected library list")
        return jellyfin_library_checks([e for e in raw if isinstance(e, dict)], self.product,
                                       readers_honoured=self.type_name == "emby")

    def libraries_of(self, path: str) -> list[Library]:
        return [lib for lib in self.libraries() if lib.holds(path)]

    def _outside(self, path: str) -> str:
        known = "; ".join(lib.describe() for lib in self.libraries()) or "none"
        return f"not in any {self.product} library: {path} (libraries: {known})"

    # --- finding items --------------------------------------------------------------------

    def keep_index(self, state: IndexStore) -> None:
        """Keep the index in `state` (see "The index"); throw away the index of every
        library that was rebuilt, moved to other folders, is on another server, or is too
        old."""
        if not self.server_id:
            return  # a rebuilt server could not be told apart: no index
        self._store = state
        current = {lib.item_id: lib for lib in self.libraries() if lib.item_id}
        for library_id, indexed in state.indexed_libraries(self.name).items():
            library = current.get(library_id)
            reason = why_list_again(
                indexed, self.server_id, None if library is None else library.locations,
                match_key, other_server=f"{self.product}'s server Id changed",
                gone="the library is gone or was rebuilt (new id)")
            if reason:
                log.info("%s: index of library %s thrown away: %s", self.name, library_id,
                         reason)
                state.drop_index(self.name, library_id)

    def index(self, library: Library) -> Index | StoredIndex:
        """A library's movies and shows: listed once per run (paged), or the index in the
        state brought up to date (see "The index").

        Episodes are not listed here: a TV library holds tens of thousands of them, and an
        episode is looked for only among the episodes of its own show (`series_index`).
        """
        if not library.item_id:
            raise ProtocolError(f"{self.product} did not send the id of library "
                                f"{library.name!r}; cannot list its items")
        types = [t for t in library.item_types if t != "Episode"]
        store = self._store
        if store is None:
            return self._listing(library.item_id, types)
        if library.item_id in self._indexes:
            return self._indexes[library.item_id]
        # The server's time, before the listing: saves during it come again.
        since = stamp_ago(INDEX_MARGIN - self._clock_ahead)
        indexed = store.indexed_libraries(self.name).get(library.item_id)
        if indexed is None:
            store.drop_index(self.name, library.item_id)
            with self._storing(library.item_id, fresh=True) as sink:
                listed = self._listing(library.item_id, types, sink=sink)
            store.index_library(self.name, library.item_id, self.server_id,
                                library.locations, since, built=True)
            return listed
        # Every type, episodes too: a show's episodes in the index stay complete.
        with self._storing(library.item_id, listed=True) as sink:
            self._listing(library.item_id, library.item_types, sink=sink, cache=False,
                          extra={"minDateLastSaved": indexed.saved_since})
        store.index_library(self.name, library.item_id, self.server_id, library.locations,
                            since, built=False)
        view = self._indexes[library.item_id] = StoredIndex(self, store,
                                                            library=library.item_id)
        return view

    @contextmanager
    def _storing(self, library_id: str, *, listed: bool = False, fresh: bool = False
                 ) -> Iterator[Callable[[dict[str, Any]], None]]:
        """A sink for a listing's items, written to the index a few thousand at a time
        (`listed`: also remembered as listed this run; `fresh`: the library's index was
        just emptied)."""
        store = self._store
        assert store is not None
        rows: list[IndexRow] = []

        def sink(item: dict[str, Any]) -> None:
            row = _index_row(item)
            if row is None:
                return
            rows.append(row)
            if listed:
                self._listed.add(row.item_id)
            if len(rows) >= INDEX_FLUSH:
                store.index_items(self.name, library_id, rows, fresh=fresh)
                rows.clear()

        yield sink
        store.index_items(self.name, library_id, rows, fresh=fresh)

    def confirmed(self, ids: list[str], path: str | None) -> list[str]:
        """Those of `ids` the server has (at `path`, when given): ids it listed in this
        run are taken as they are, the others asked for in one request; those it does
        not have there leave the index."""
        doubtful = [i for i in ids if i not in self._listed]
        if not doubtful or self._store is None:
            return ids
        page = self._get("/Items", {"ids": doubtful, "fields": ["Path"],
                                    "enableImages": "false", "enableUserData": "false"})
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise ProtocolError(f"{self.http.base} sent an unexpected item list")
        there = {str(i.get("Id")) for i in page["Items"] if isinstance(i, dict)
                 and (path is None or match_key(str(i.get("Path") or "")) == match_key(path))}
        gone = [i for i in doubtful if i not in there]
        if gone:
            log.info("%s: %d indexed item(s) no longer listed by %s: dropped from the index",
                     self.name, len(gone), self.product)
            self._store.forget_index_items(self.name, gone)
        self._listed |= there  # asked once per run
        return [i for i in ids if i in self._listed]

    def series_index(self, series_id: str) -> Index | StoredIndex:
        """The episodes of one show, listed once per run.

        Only the last few shows' listings are kept: a run goes through its episodes show
        by show (they are ordered by path), and a thousand shows' episodes kept until the
        end would only cost memory.
        """
        store = self._store
        if store is not None and store.index_show_is_complete(self.name, series_id):
            return StoredIndex(self, store, series=series_id)
        index: Index | StoredIndex
        if store is not None and series_id not in self._indexes:
            # Listed whole once; later episodes come with the library's updates.
            with self._storing(store.index_library_of(self.name, series_id) or "") as sink:
                index = self._listing(series_id, ["Episode"], sink=sink)
            store.index_show_complete(self.name, series_id)
        else:
            index = self._listing(series_id, ["Episode"])
        if series_id in self._recent_shows:
            self._recent_shows.remove(series_id)
        self._recent_shows.append(series_id)
        while len(self._recent_shows) > SHOWS_KEPT:
            self._indexes.pop(self._recent_shows.pop(0), None)
        return index

    def _listing(self, parent_id: str, types: list[str], *,
                 sink: Callable[[dict[str, Any]], None] | None = None, cache: bool = True,
                 extra: dict[str, str] | None = None) -> Index:
        """Every item of `types` below `parent_id`, paged so that a library changing while
        it is listed (a scan running, Sonarr importing) loses no item and repeats none.

        Jellyfin pages by offset (`startIndex`) in the order asked for. Unsorted, the order
        is only SortName's, and items sharing a SortName may come in any order from one
        page to the next. Its sort options (`ItemSortBy`, the same in the 10.11 and 12.0
        specs) have no unique key — an `Id` in `sortBy` is dropped without a word by
        Jellyfin's CommaDelimitedCollectionModelBinder — so the order asked for is
        LISTING_SORT (SortName, then Jellyfin's own Name, then year and date added), which
        leaves only copies of one film added in the same second tied. And an offset moves
        when items before it are added or removed between two pages; so each page starts
        LISTING_OVERLAP items before the end of the last one, items already indexed (by
        Id) are skipped, and a page holding none of them (items before it were removed: it
        starts past the last one read) is read again one page further back. The listing
        ends on a short page. `enableTotalRecordCount=false` spares the server a count of
        the whole library on every page; Jellyfin then sends the page's own size as
        TotalRecordCount (QueryResult), which is therefore never read.

        `sink` is handed each item once (the index kept in the state), `extra` narrows
        the listing (minDateLastSaved), `cache`: kept for the rest of the run.
        """
        if cache and isinstance(known := self._indexes.get(parent_id), Index):
            return known
        index = Index()
        start = 0
        while True:
            page = self._get("/Items", {
                "parentId": parent_id,
                "recursive": "true",
                "includeItemTypes": types,
                "fields": ["Path", "ProviderIds"],
                "enableImages": "false",
                "enableUserData": "false",
                **LISTING_ORDER,
                **(extra or {}),
                "startIndex": start,
                "limit": PAGE_SIZE,
            })
            if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
                raise ProtocolError(f"{self.http.base} sent an unexpected item list")
            items = [i for i in page["Items"] if isinstance(i, dict)]
            count = len(page["Items"])
            del page  # only the index is kept, not the parsed page
            if start and not any(index.has(str(i.get("Id"))) for i in items):
                # Items before `start` went away since the last page: this page may begin
                # after items not read yet. Step back (what was read is skipped).
                start = max(0, start - PAGE_SIZE)
                continue
            for item in items:
                if not index.has(str(item.get("Id"))):
                    index.add(item)
                    if sink is not None:
                        sink(item)
            if count < PAGE_SIZE:
                break
            start += count - LISTING_OVERLAP
        if cache:
            self._indexes[parent_id] = index
        return index

    def sample_paths(self, limit: int = 20) -> list[str]:
        """A few movies' and episodes' files of every library (one page each), read-only.

        Per library rather than server-wide: a server-wide first page could come from one
        library only, and every library needs its own mapping.
        """
        paths: list[str] = []
        for library in self.libraries():
            types = [t for t in library.item_types if t != "Series"]
            if not library.item_id or not types:
                continue
            page = self._get("/Items", {
                "parentId": library.item_id,
                "recursive": "true",
                "includeItemTypes": types,
                "fields": ["Path"],
                "enableImages": "false",
                "enableUserData": "false",
                # One page, in a stated order, without counting the library (one sort
                # value: Emby, which also samples here, reads it the same way)
                "sortBy": "SortName",
                "enableTotalRecordCount": "false",
                "startIndex": 0,
                "limit": limit,
            })
            if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
                raise ProtocolError(f"{self.http.base} sent an unexpected item list")
            paths.extend(str(i["Path"]) for i in page["Items"][:limit]
                         if isinstance(i, dict) and isinstance(i.get("Path"), str)
                         and i["Path"])
        return paths

    def find(self, target: Target, libraries: Sequence[Library]) -> tuple[list[str], bool]:
        """The ids of the server's items for a target, and whether they were found at its
        exact path.

        Provider ids are only the fallback: two copies of a film (4K and HD) share them.
        """
        kind = ITEM_TYPE[target.item.kind]
        indexes = self._indexes_for(target, libraries)
        # A removal still there, or an item counted as seen, must be the server's word,
        # not the kept index's (an item to refresh is checked by its refresh).
        sure = target.item.removed or self._verifying
        at = _unique(i for index in indexes for i in index.at_path(target.path, kind,
                                                                   sure=sure))
        if at:
            return at, True
        return _unique(i for index in indexes for i in index.with_ids(target.item.ids, kind,
                                                                      sure=sure)), False

    def _indexes_for(self, target: Target, libraries: Sequence[Library]
                     ) -> list[Index | StoredIndex]:
        """Where the target's item is listed: its show's episodes, or the libraries."""
        kind = ITEM_TYPE[target.item.kind]
        if kind == "Episode":
            return [self.series_index(s) for s in self.series_at(
                target.series_folder, libraries)] if target.series_folder else []
        return [self.index(lib) for lib in libraries if kind in lib.item_types]

    def items_at(self, target: Target, path: str, libraries: Sequence[Library]) -> list[str]:
        """The ids of the server's items of the target's kind at exactly `path` (an old
        file of an upgraded item), looked for where the target itself is listed."""
        kind = ITEM_TYPE[target.item.kind]
        return _unique(i for index in self._indexes_for(target, libraries)
                       for i in index.at_path(path, kind, sure=True))

    def _replaced(self, target: Target) -> list[OldFile]:
        """The target's old files that are no longer on disk (or cannot be checked: the
        server looks at its own disk before it drops anything)."""
        return [old for old in target.previous
                if old_file_gone(old.metarr, target.item.path).gone is not False]

    def series_at(self, folder: str, libraries: Sequence[Library], *, sure: bool = False
                  ) -> list[str]:
        """The ids of the shows at `folder` (`sure`: confirmed by the server)."""
        return _unique(s for lib in libraries if "Series" in lib.item_types
                       for s in self.index(lib).at_path(folder, "Series", sure=sure))

    def has_series(self, folder: str, libraries: Sequence[Library]) -> bool:
        return bool(self.series_at(folder, libraries, sure=True))

    # --- delivering -----------------------------------------------------------------------

    def apply(self, batch: Sequence[Target]) -> list[Outcome]:
        outcomes: dict[str, Outcome] = {}
        updates: dict[str, tuple[str, list[str]]] = {}  # path -> (UpdateType, item keys)
        # Paths that land on a library folder, which the server then validates whole:
        # library folder -> {path: UpdateType}, item keys (reported once, see module doc).
        roots: dict[str, tuple[dict[str, str], list[str]]] = {}

        def report(path: str, kind: str, key: str, target: Target,
                   libraries: Sequence[Library]) -> None:
            root = self.landing_root(path, target, libraries, gone=kind == "Deleted")
            if root is None:
                updates.setdefault(path, (kind, []))[1].append(key)
            else:
                paths, keys = roots.setdefault(root, ({}, []))
                paths.setdefault(path, kind)
                keys.append(key)

        # What the server has for each target: (target, its libraries, item ids, found at
        # its exact path, where its refreshes start in `refreshes`).
        found: list[tuple[Target, list[Library], list[str], bool, int]] = []
        refreshes: list[str] = []  # item ids, in target order
        for target in batch:
            libraries = self.libraries_of(target.path)
            if not libraries:
                outcomes[target.key] = Outcome(target.key, Result.FAILED,
                                               self._outside(target.path))
                continue
            items, exact = self.find(target, libraries)
            if target.previous and not exact:
                # Found by its provider ids at an old file: that item is about to go.
                stale = {i for old in target.previous
                         for i in self.items_at(target, old.path, libraries)}
                items = [i for i in items if i not in stale]
            found.append((target, libraries, items, exact, len(refreshes)))
            if not target.item.removed:
                refreshes += items
        # The server queues a refresh and answers at once: `concurrency` are sent at a time.
        refreshed_all = self.concurrently(self.refresh, refreshes)
        if self._gone and self._store is not None:
            # Stale ids: out of the index; their paths are reported below, and the server
            # looks them up itself.
            self._store.forget_index_items(self.name, self._gone)
            self._gone = []

        for target, libraries, items, exact, first in found:
            if target.item.removed:
                if exact:
                    report(target.path, "Deleted", target.key, target, libraries)
                else:  # the server never had it there: reporting it would only cost a scan
                    outcomes[target.key] = Outcome(target.key, Result.SYNCED)
                continue
            refreshed = refreshed_all[first:first + len(items)]
            if exact and all(refreshed):
                outcomes[target.key] = Outcome(target.key, Result.SYNCED)
            elif items:
                # Gone since we listed it, or known only by its ids at another path (a
                # renamed or upgraded file): let the server look at the file itself too.
                report(target.path, "Modified", target.key, target, libraries)
            elif target.item.kind == "episode" and target.series_folder and \
                    not self.has_series(target.series_folder, libraries):
                # A new show: reporting the show folder adds the show with its episodes.
                report(target.series_folder, "Created", target.key, target,
                       libraries)
            else:
                report(target.path, "Created", target.key, target, libraries)
            for old in self._replaced(target):
                if self.libraries_of(old.path):
                    # Walks up to the folder that held it: its item goes.
                    report(old.path, "Deleted", target.key, target, libraries)

        sends = _collapse(updates) if updates else []
        fresh = [root for root in roots if root not in self.roots_reported
                 and root not in self.roots_in_flight]
        for root in roots:
            if root in self.roots_in_flight:
                log.info("%s: %s not reported again: reported %s, %s is still to validate "
                         "it whole", self.name, root, self.roots_in_flight[root],
                         self.product)
        for root in fresh:
            paths = roots[root][0]
            if len({ancestor(p, 1) for p in paths}) == 1:
                # One path, or files of one folder (an upgrade's new and old file): the
                # server merges those into one validation itself; sent as they are, its
                # log names them.
                sends += paths.items()
            else:
                # Each would be a validation of the whole folder of its own.
                sends.append((root, "Modified"))
        if sends:
            self.media_updated(sends)
        for root, (_, keys) in roots.items():
            if root in fresh or root in self.roots_reported:  # this run's rescan of it
                self.roots_reported.setdefault(root, []).extend(keys)
        # Delivered all the same when their library folder is already being validated:
        # verify() looks for them after verify_after, and they are sent again if unseen.
        for keys in [k for _, k in updates.values()] + [k for _, k in roots.values()]:
            for key in keys:
                outcomes[key] = Outcome(key, Result.SYNCED)
        return [outcomes[t.key] for t in batch]

    def landing_root(self, path: str, target: Target, libraries: Sequence[Library], *,
                     gone: bool = False) -> str | None:
        """The library folder the server validates whole for a report of `path` (`gone`:
        no longer on disk), or None when the report lands on an item below it (a show
        the server knows).

        The server walks a reported path up to the nearest item it knows, and from an
        item whose file or folder is gone to its parent. Movies are their files and movie
        folders are no items: a new, moved or removed movie file lands on its library
        folder. An episode's path lands on its season or show when the show is known; a
        new show, and a removed one, land on the library folder.
        """
        show = target.series_folder if target.item.kind in ("episode", "series") else None
        if show and is_under(path, show, PLATFORM) \
                and not (gone and is_under(show, path, PLATFORM)) \
                and self.has_series(show, libraries):
            return None
        for library in libraries:
            for location in library.locations:
                if is_under(path, location, PLATFORM):
                    return location
        return None

    def refresh(self, item_id: str) -> bool:
        """Queue a metadata/image refresh; False when the item no longer exists."""
        try:
            self.http.request("POST", f"/Items/{quote(item_id, safe='')}/Refresh",
                              params=self.refresh_params(), mutating=True)
        except Rejected as exc:
            if getattr(exc, "status", None) == 404:
                log.info("%s: item %s vanished before its refresh", self.name, item_id)
                self._gone.append(item_id)
                return False
            raise self._rights(exc) from None
        return True

    def refresh_params(self) -> dict[str, str]:
        # Explicit: the server defaults are None/None, which re-reads nothing.
        mode = "FullRefresh" if self.config.refresh_mode == "full" else "Default"
        return {"metadataRefreshMode": mode, "imageRefreshMode": mode,
                "replaceAllMetadata": "false", "replaceAllImages": "false"}

    def media_updated(self, updates: Sequence[tuple[str, str]]) -> None:
        """One report carrying every new/changed/removed path of a batch."""
        body = {"Updates": [{"Path": path, "UpdateType": kind} for path, kind in updates]}
        try:
            self.http.request("POST", "/Library/Media/Updated", json_body=body, mutating=True)
        except Rejected as exc:
            raise self._rights(exc) from None

    def _rights(self, exc: Rejected) -> PlayerError:
        if getattr(exc, "status", None) == 403:
            return Rejected(f"{self.product} at {self.http.base} refused the update "
                            "(HTTP 403): the token lacks admin rights")
        return exc

    # --- checking -------------------------------------------------------------------------

    def verify(self, targets: Sequence[Target]) -> list[Outcome]:
        """Did delivered items land? New ones must now be listed at their path (or ids).

        Jellyfin's item DTO has no DateLastSaved/DateLastRefreshed (the ItemFields enum
        names them, BaseItemDto in both specs does not carry them), so a refreshed item
        is judged by presence too.
        """
        self._verifying = True
        try:
            return self._verify(targets)
        finally:
            self._verifying = False

    def _verify(self, targets: Sequence[Target]) -> list[Outcome]:
        outcomes = []
        self._indexes = {}  # a fresh look: the server may have scanned since we listed
        for target in targets:
            libraries = self.libraries_of(target.path)
            if not libraries:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, self._outside(target.path)))
                continue
            items, exact = self.find(target, libraries)
            if target.item.removed:
                outcomes.append(Outcome(target.key, Result.SYNCED) if not exact else Outcome(
                    target.key, Result.UNVERIFIED,
                    f"{self.product} still lists {target.path}: the removal was not picked up "
                    f"(library {libraries[0].describe()})"))
            elif target.previous and (left := [
                    old for old in self._replaced(target)
                    if self.items_at(target, old.path, libraries)]):
                olds = ", ".join(old.path for old in left)
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, (
                    f"{self.product} still lists {olds}, replaced by {target.path}: its "
                    "scan of that folder has not run yet, or the file is still there as "
                    f"{self.product} sees it")))
            elif items and (exact or not target.previous):
                outcomes.append(Outcome(target.key, Result.SYNCED))
            else:
                outcomes.append(Outcome(target.key, Result.UNVERIFIED, self._missing(target,
                                                                                libraries)))
        return outcomes

    def _missing(self, target: Target, libraries: Sequence[Library]) -> str:
        what = {"movie": "movie", "series": "show", "episode": "episode"}[target.item.kind]
        thing = "folder" if target.item.kind == "series" else "file"
        where = " or ".join(lib.describe() for lib in libraries)
        return (f"{self.product} has no {what} at {target.path} — is the {thing} really "
                f"there as {self.product} sees it, inside library {where}, and named so "
                f"{self.product} recognises it? (or its scan is still running)")

    # --- sessions -------------------------------------------------------------------------

    def sessions(self, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        found = self._get("/Sessions", params)
        if not isinstance(found, list):
            raise ProtocolError(f"{self.http.base} sent an unexpected session list")
        return [s for s in found if isinstance(s, dict)]

    def is_playing(self) -> bool:
        # Paused counts as watching: the viewer is still in front of the film.
        return any(s.get("NowPlayingItem") for s in self.sessions())

    def notify(self, title: str, message: str) -> None:
        targets = [s for s in self.sessions({"activeWithinSeconds": 960})
                   if s.get("Id") and s.get("DeviceId") != self.device
                   and s.get("SupportsRemoteControl") is not False]
        for session in targets:
            try:
                self.send_message(str(session["Id"]), title, message or title)
            except Rejected as exc:  # the session ended meanwhile: tell the others anyway
                log.info("%s: no message to session %s: %s", self.name, session["Id"],
                         exc.message)

    def send_message(self, session_id: str, title: str, text: str) -> None:
        self.http.request("POST", f"/Sessions/{quote(session_id, safe='')}/Message",
                          json_body={"Header": title, "Text": text, "TimeoutMs": MESSAGE_MS},
                          mutating=True)


class EmbyPlayer(JellyfinPlayer):
    """Emby, Jellyfin's closed-source ancestor: same shape, a few different calls."""

    type_name: ClassVar[str] = "emby"
    product: ClassVar[str] = "Emby"

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False):
        super().__init__(config, sync, dry_run=dry_run)
        self._found: dict[tuple[str, str], tuple[list[str], bool]] = {}

    def keep_index(self, state: IndexStore) -> None:
        """No index: Emby looks each item up by its path (see "The index")."""

    def auth_headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        if self.config.token_value:
            headers["X-Emby-Token"] = self.config.token_value
        return headers

    def _check_product(self, product: str) -> None:
        if product and "jellyfin" in product.lower():
            raise Rejected(f"{self.http.base} is {product}: set type = \"jellyfin\" for "
                           f"{self.name}")

    def _auth_help(self) -> str:
        return (f"Emby at {self.http.base} rejected the API key (HTTP 401): create one in "
                "Settings → Advanced → API Keys and set it as this player's token")

    def _list_libraries(self) -> Any:
        raw = self._get("/Library/VirtualFolders/Query")
        return raw.get("Items") if isinstance(raw, dict) else raw

    def find(self, target: Target, libraries: Sequence[Library]) -> tuple[list[str], bool]:
        """Emby searches server-side: by path, then by any provider id."""
        return self._lookup(ITEM_TYPE[target.item.kind], target.path, target.item.ids)

    def has_series(self, folder: str, libraries: Sequence[Library]) -> bool:
        return bool(self._lookup("Series", folder, {})[0])

    def items_at(self, target: Target, path: str, libraries: Sequence[Library]) -> list[str]:
        ids, exact = self._lookup(ITEM_TYPE[target.item.kind], path, {})
        return ids if exact else []

    def _lookup(self, kind: str, path: str, ids: dict[str, str]) -> tuple[list[str], bool]:
        """The ids of the items of `kind` at `path` (or sharing a provider id), and
        whether they were found at the path; asked once per run."""
        if (kind, path) in self._found:
            return self._found[(kind, path)]
        base = {"Recursive": "true", "IncludeItemTypes": kind, "Fields": "Path,ProviderIds"}
        found = [i for i in self._items({**base, "Path": path})
                 if match_key(str(i.get("Path") or "")) == match_key(path)]
        exact = bool(found)
        wanted = [f"{p}.{v}" for p, v in sorted(ids.items()) if p.lower() in PROVIDERS and v]
        if not found and wanted:
            found = self._items({**base, "AnyProviderIdEquals": ",".join(wanted)})
        ids_found = _unique(str(i["Id"]) for i in found if i.get("Id") is not None)
        self._found[(kind, path)] = (ids_found, exact)
        return ids_found, exact

    def _items(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        page = self._get("/Items", params)
        if not isinstance(page, dict) or not isinstance(page.get("Items"), list):
            raise ProtocolError(f"{self.http.base} sent an unexpected item list")
        return [i for i in page["Items"] if isinstance(i, dict)]

    def refresh_params(self) -> dict[str, str]:
        # Emby has no None mode, and takes Recursive (a show refresh reaches its seasons,
        # as Jellyfin's does on its own).
        mode = "FullRefresh" if self.config.refresh_mode == "full" else "Default"
        return {"Recursive": "true", "MetadataRefreshMode": mode, "ImageRefreshMode": mode,
                "ReplaceAllMetadata": "false", "ReplaceAllImages": "false"}

    def send_message(self, session_id: str, title: str, text: str) -> None:
        # Emby reads the message from the query string, not a JSON body.
        self.http.request("POST", f"/Sessions/{quote(session_id, safe='')}/Message",
                          params={"Header": title, "Text": text, "TimeoutMs": MESSAGE_MS},
                          mutating=True)

    def verify(self, targets: Sequence[Target]) -> list[Outcome]:
        self._found = {}
        return super().verify(targets)


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _collapse(updates: dict[str, tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """(path, UpdateType) to report, leaving out new/changed paths inside another reported
    new/changed folder (a new show's folder already brings its episodes); removals are
    kept as they are. One sorted pass (paths.collapse_folders), not a pairwise check."""
    outermost = set(collapse_folders(p for p, (kind, _) in updates.items() if kind != "Deleted"))
    return [(path, kind) for path, (kind, _) in updates.items()
            if kind == "Deleted" or strip_trailing(path) in outermost]
