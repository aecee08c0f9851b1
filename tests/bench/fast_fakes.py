"""The fake players of tests/support/fake_players.py, indexed for libraries of 250,000 items.

The fakes answer exactly as they do in the test suite; only their look-ups change. The
originals scan every file and item on each call (fine for the few dozen items of a test),
which at benchmark scale would make the fake, not metarr-sync, the thing measured. Here the
"disk" and the libraries keep indexes that are updated as items come and go: a folder's
contents are one bisect away, a show's episodes one dict look-up, and a listing is sorted
once per change of its library rather than once per page.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from support.fake_players import (
    FakeJellyfin,
    FakeKodi,
    FakePlex,
    JellyfinItem,
    KodiMeta,
    PlexItem,
    PlexSection,
    Recorded,
    Reply,
    _InvalidParams,
    is_video,
    item_folder,
    json_reply,
    kodi_image_url,
    sep_of,
    sql_like,
    trailing,
    under,
)


class IndexedDict(dict):
    """A dict that keeps, per named field of its values, the entries grouped by that field
    (in insertion order), and a change counter per group so that derived listings know
    when to rebuild."""

    def __init__(self, **fields: Callable[[Any], Hashable]):
        super().__init__()
        self.fields = fields
        self.by: dict[str, dict[Hashable, dict[Any, Any]]] = {n: {} for n in fields}
        self.changes: dict[tuple[str, Hashable], int] = {}

    def _index(self, key: Any, value: Any, add: bool) -> None:
        for name, field in self.fields.items():
            group = field(value)
            if group is None:
                continue
            self.changes[(name, group)] = self.changes.get((name, group), 0) + 1
            entries = self.by[name].setdefault(group, {})
            if add:
                entries[key] = value
            else:
                entries.pop(key, None)

    def __setitem__(self, key: Any, value: Any) -> None:
        if key in self:
            self._index(key, self[key], False)
        super().__setitem__(key, value)
        self._index(key, value, True)

    def __delitem__(self, key: Any) -> None:
        self._index(key, self[key], False)
        super().__delitem__(key)

    def pop(self, key: Any, *default: Any) -> Any:
        if key in self:
            self._index(key, self[key], False)
        return super().pop(key, *default)

    def group(self, name: str, value: Hashable) -> dict[Any, Any]:
        return self.by[name].get(value, {})

    def version(self, name: str, value: Hashable) -> int:
        return self.changes.get((name, value), 0)


class FolderIndexed(IndexedDict):
    """An IndexedDict that also answers Kodi's `path` filter (LIKE on the item's folder)
    from a sorted list of (folded folder, key): only the entries that share the pattern's
    literal start are matched, whatever the library's size. The list is built at the first
    look-up, then kept up to date entry by entry."""

    def __init__(self, file_of: Callable[[Any], str], **fields: Callable[[Any], Hashable]):
        super().__init__(**fields)
        self.file_of = file_of
        self._folders: list[tuple[str, Any]] | None = None

    def _entry(self, key: Any, value: Any) -> tuple[str, Any]:
        return _fold(item_folder(self.file_of(value))), key

    def _index(self, key: Any, value: Any, add: bool) -> None:
        super()._index(key, value, add)
        if self._folders is None:
            return
        entry = self._entry(key, value)
        at = bisect.bisect_left(self._folders, entry)
        if add:
            self._folders.insert(at, entry)
        elif at < len(self._folders) and self._folders[at] == entry:
            del self._folders[at]

    def like(self, pattern: str) -> list[Any]:
        """Keys (ascending) of the entries whose folder matches `pattern` as sql_like."""
        if self._folders is None:
            self._folders = sorted(self._entry(k, v) for k, v in self.items())
        literal = re.split(r"[%_]", _fold(pattern), maxsplit=1)[0]
        at = bisect.bisect_left(self._folders, (literal,))
        keys = []
        while at < len(self._folders) and self._folders[at][0].startswith(literal):
            key = self._folders[at][1]
            if sql_like(pattern, item_folder(self.file_of(self[key]))):
                keys.append(key)
            at += 1
        return sorted(keys)


def _fold(text: str) -> str:
    """What sql_like compares: ASCII letters in lower case, anything else as it is."""
    return "".join(c.lower() if c.isascii() else c for c in text)


class SortedPaths:
    """A sorted list of paths with folder look-ups by bisect."""

    def __init__(self, paths: Iterable[str] = ()):
        self.paths = sorted(set(paths))

    def add(self, path: str) -> None:
        i = bisect.bisect_left(self.paths, path)
        if i == len(self.paths) or self.paths[i] != path:
            self.paths.insert(i, path)

    def discard(self, path: str) -> None:
        i = bisect.bisect_left(self.paths, path)
        if i < len(self.paths) and self.paths[i] == path:
            del self.paths[i]

    def under(self, folder: str) -> Iterator[str]:
        """The paths at or below `folder`, by whole components."""
        base = folder.rstrip("/\\")
        prefix = base + sep_of(folder)
        i = bisect.bisect_left(self.paths, base)
        if i < len(self.paths) and self.paths[i] == base:
            yield base
        i = bisect.bisect_left(self.paths, prefix)
        while i < len(self.paths) and self.paths[i].startswith(prefix):
            yield self.paths[i]
            i += 1


class SortedDisk:
    """Mixin: the fake's disk (`files`) with `files_under` by bisect."""

    files: set[str]
    _disk: SortedPaths | None = None

    def add_file(self, *paths: str) -> None:
        super().add_file(*paths)  # type: ignore[misc]
        self._disk = None

    def remove_file(self, *paths: str) -> None:
        super().remove_file(*paths)  # type: ignore[misc]
        self._disk = None

    def files_under(self, folder: str) -> list[str]:
        if self._disk is None:
            self._disk = SortedPaths(self.files)
        return list(self._disk.under(folder))


# --- Kodi ---------------------------------------------------------------------------------

_EPISODE = re.compile(r"[Ss](\d+)[Ee](\d+)")


class BenchKodi(SortedDisk, FakeKodi):
    """What Kodi read for an item is derived from its path, as Metarr published it: the
    NFO titles the scenario's database holds (a movie's folder without its year, a show's
    folder, an episode's show, season and number), and the artwork the scenario publishes
    (a movie's poster and fanart, a show's poster and its seasons' posters, an episode's
    thumb). Every image of an item the fake holds is in its texture cache until
    Textures.RemoveTexture drops it (the run never displays anything again)."""

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.movies = FolderIndexed(lambda f: f, file=lambda f: f)
        self.shows = FolderIndexed(lambda f: f, file=lambda f: f)
        self.episodes = FolderIndexed(lambda e: e[1], file=lambda e: e[1],
                                      show=lambda e: e[0])
        self._texture_ids: dict[str, int] = {}  # only the art URLs asked about
        self._texture_urls: dict[int, str] = {}
        self._dropped: set[str] = set()

    def meta_of(self, path: str) -> KodiMeta | None:
        if path.endswith("/"):
            return KodiMeta(path.rstrip("/").rsplit("/", 1)[1],
                            {"poster": kodi_image_url(path + "poster.jpg")}, "show")
        folder, _, name = path.rpartition("/")
        stem = name.rsplit(".", 1)[0]
        match = _EPISODE.search(name)
        if match and self.episodes.group("file", path):
            show = folder.rsplit("/", 1)[0] + "/"
            return KodiMeta(stem, {"thumb": kodi_image_url(f"{folder}/{stem}-thumb.jpg")},
                            "episode", show, int(match.group(1)), int(match.group(2)))
        title = re.sub(r" \(\d{4}\)$", "", folder.rsplit("/", 1)[1])
        return KodiMeta(title, {"poster": kodi_image_url(f"{folder}/poster.jpg"),
                                "fanart": kodi_image_url(f"{folder}/fanart.jpg")}, "movie")

    def read(self, kind: str, path: str, *, cache: bool = False) -> KodiMeta:
        meta = self.meta_of(path)
        assert meta is not None
        return meta  # derived from the path: nothing to read or keep

    def rpc_VideoLibrary_GetSeasons(self, params: Any) -> dict[str, Any]:
        show_id = params.get("tvshowid")
        show = self.shows.get(show_id)
        numbers = sorted({int(m.group(1)) for _, file in
                          self.episodes.group("show", show_id).values()
                          if (m := _EPISODE.search(file))}) if show else []
        rows = [{"seasonid": show_id * 1000 + n, "label": f"Season {n}",
                 "art": {"poster": kodi_image_url(f"{show}season{n:02d}-poster.jpg"),
                         "tvshow.poster": kodi_image_url(f"{show}poster.jpg")}}
                for n in numbers]
        return {"limits": {"start": 0, "end": len(rows), "total": len(rows)}, "seasons": rows}

    def rpc_Textures_GetTextures(self, params: Any) -> dict[str, Any]:
        url = params["filter"]["value"]
        if url in self._dropped:
            return {"textures": []}
        if url not in self._texture_ids:
            texture = self._texture_ids[url] = len(self._texture_ids) + 1
            self._texture_urls[texture] = url
        return {"textures": [{"textureid": self._texture_ids[url], "url": url,
                              "imagehash": "d1s1"}]}

    def rpc_Textures_RemoveTexture(self, params: Any) -> str:
        url = self._texture_urls.get(params.get("textureid"))
        if url is None or url in self._dropped:
            raise _InvalidParams("textureid", "not a known texture")
        self._dropped.add(url)
        return "OK"

    def load(self, movies: Iterable[str], shows: dict[str, list[str]]) -> None:
        """Put items in the library as if scanned earlier (show folder → episode files)."""
        for file in movies:
            self.movies[self._id()] = file
        for folder, files in shows.items():
            show = self._id()
            self.shows[show] = trailing(folder)
            for file in files:
                self.episodes[self._id()] = (show, file)

    def _add(self, additions: Iterable[tuple[str, str]]) -> None:
        for kind, file in additions:
            if kind == "movie" and not self.movies.group("file", file):
                self.movies[self._id()] = file
            elif kind == "show" and not self.shows.group("file", file):
                self.shows[self._id()] = file
            elif kind == "episode" and not self.episodes.group("file", file):
                source = self._source_of(file)
                assert source is not None
                shows = self.shows.group("file", self._show_folder(source[0], file))
                if shows:
                    self.episodes[self._id()] = (next(iter(shows)), file)

    def _has_show(self, folder: str) -> bool:
        return bool(self.shows.group("file", folder))

    def _get(self, table: dict[int, Any], key: str, params: Any, name: str) -> dict:
        # Ids only grow and entries are added in id order: no sorting needed. Without a
        # filter only the asked page is built (a 50,000-movie library listed in pages).
        flt = params.get("filter")
        if flt is None:
            total = len(table)
            page, limits = self._page(range(total), params)
            entries = itertools.islice(table.items(), page.start, page.stop)
        elif isinstance(table, FolderIndexed) and isinstance(flt, dict) \
                and flt.get("field") == "path" and flt.get("operator") in ("is", "startswith"):
            # A look-up by folder: the index's candidates (matched as _listed matches them,
            # which then keeps them all), in id order as FakeKodi lists them.
            pattern = str(flt.get("value", "")) + ("%" if flt["operator"] == "startswith"
                                                   else "")
            entries = ((k, table[k]) for k in table.like(pattern))
        else:
            entries = iter(table.items())
        rows = [{key: i, "label": (f if isinstance(f, str) else f[1]).rstrip("/\\")
                 .rsplit("/", 1)[-1], "file": f if isinstance(f, str) else f[1]}
                for i, f in entries]
        if params.get("filter") is not None:
            rows = self._listed(rows, {k: v for k, v in params.items() if k != "limits"})
            rows, limits = self._page(rows, params)
        return {"limits": limits, name: rows}

    def rpc_VideoLibrary_GetEpisodes(self, params: Any) -> dict[str, Any]:
        show = params.get("tvshowid")
        if show is None:
            if params.get("filter") is not None:  # a look-up by folder: the index
                return self._get(self.episodes, "episodeid", params, "episodes")
            return super().rpc_VideoLibrary_GetEpisodes(params)
        return self._get(self.episodes.group("show", show), "episodeid", params, "episodes")


# --- Plex ---------------------------------------------------------------------------------

class BenchPlex(SortedDisk, FakePlex):
    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.items = IndexedDict(file=lambda i: (i.section, i.file),
                                 kind=lambda i: (i.section, i.type), show=lambda i: i.show)
        self._paths: dict[str, SortedPaths] = {}  # section key -> item files
        self._rows_cache: dict[tuple[str, str | None], tuple[int, list[PlexItem]]] = {}

    def _put(self, item: PlexItem) -> PlexItem:
        self.items[item.rating_key] = item
        self._paths.setdefault(item.section, SortedPaths()).add(item.file)
        return item

    def load(self, section: PlexSection, movies: Iterable[str],
             shows: dict[str, list[str]]) -> None:
        paths = self._paths.setdefault(section.key, SortedPaths())
        files = list(movies) + list(shows) + [f for fs in shows.values() for f in fs]
        paths.paths = sorted(set(paths.paths) | set(files))
        for file in movies:
            key = self._new_key()
            self.items[key] = PlexItem(key, "movie", section.key, file)
        for folder, episodes in shows.items():
            show = self._new_key()
            self.items[show] = PlexItem(show, "show", section.key, folder)
            for file in episodes:
                key = self._new_key()
                self.items[key] = PlexItem(key, "episode", section.key, file, show=show)

    def _scan_folder(self, section: PlexSection, folder: str) -> None:
        present = set(self.files_under(folder))
        for file in list(self._paths.get(section.key, SortedPaths()).under(folder)):
            for item in self.items.group("file", (section.key, file)).values():
                if item.type != "show":
                    item.deleted = item.file not in present
        location = next(loc for loc in section.locations if under(folder, loc))
        sep = sep_of(location)
        for file in sorted(present):
            if not is_video(file) or self.items.group("file", (section.key, file)):
                continue
            if section.type == "movie":
                self._put(PlexItem(self._new_key(), "movie", section.key, file))
                continue
            rest = file[len(trailing(location, sep)):]
            show_folder = trailing(location, sep) + rest.split(sep)[0]
            shows = [i for i in self.items.group("file", (section.key, show_folder)).values()
                     if i.type == "show"]
            show = shows[0] if shows else self._put(
                PlexItem(self._new_key(), "show", section.key, show_folder))
            self._put(PlexItem(self._new_key(), "episode", section.key, file,
                               show=show.rating_key))

    def _leaves(self, show_key: str) -> list[PlexItem]:
        # Rating keys only grow and items are added in key order.
        return list(self.items.group("show", show_key).values())

    def _rows(self, section: PlexSection, wanted: str | None) -> list[PlexItem]:
        if wanted is None:
            return super()._rows(section, wanted)
        version = self.items.version("kind", (section.key, wanted))
        cached = self._rows_cache.get((section.key, wanted))
        if cached is None or cached[0] != version:
            # Rating keys only grow and items are added in key order.
            rows = list(self.items.group("kind", (section.key, wanted)).values())
            self._rows_cache[(section.key, wanted)] = cached = (version, rows)
        return cached[1]


# --- Jellyfin -----------------------------------------------------------------------------

class BenchJellyfin(SortedDisk, FakeJellyfin):
    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.items = IndexedDict(path=lambda i: i.path, parent=lambda i: i.library,
                                 series=lambda i: i.series_id)
        self._paths = SortedPaths()
        self._rows: dict[tuple[Any, ...], tuple[int, list[JellyfinItem]]] = {}
        self._serial = 0
        # Saves after load(), in time order (times, ids): `minDateLastSaved` later than
        # the loaded items' save reads only these, not the whole library.
        self._loaded_saved = self.server_time() - timedelta(days=30)
        self._saved_at: list[datetime] = []
        self._saved_ids: list[str] = []

    def new_id(self) -> str:
        self._serial += 1
        return f"{self._serial:032x}"

    def _put(self, item: JellyfinItem) -> JellyfinItem:
        item.saved = self.server_time()  # a scan's first metadata save (FakeJellyfin._rescan)
        self.items[item.id] = item
        self._paths.add(item.path)
        self._saved(item)
        return item

    def _saved(self, item: JellyfinItem) -> None:
        if item.saved is not None:
            at = bisect.bisect_right(self._saved_at, item.saved)  # clocks may tie
            self._saved_at.insert(at, item.saved)
            self._saved_ids.insert(at, item.id)

    def handle(self, request: Recorded) -> Reply:
        reply = super().handle(request)
        match = re.fullmatch(r"/Items/([^/]+)/Refresh", request.path, flags=re.IGNORECASE)
        if match and request.method == "POST" and reply.status < 300:
            self._saved(self.items[match.group(1)])  # the refresh saved it
        return reply

    def load(self, library: Any, movies: Iterable[str], shows: dict[str, list[str]]) -> None:
        movies = list(movies)
        self._paths.paths = sorted(set(self._paths.paths) | set(movies) | set(shows)
                                   | {f for fs in shows.values() for f in fs})
        saved = self._loaded_saved  # scanned and saved long before the benchmark
        for file in movies:
            new = self.new_id()
            self.items[new] = JellyfinItem(new, "Movie", file, library.item_id, saved=saved)
        for folder, files in shows.items():
            series = self.new_id()
            self.items[series] = JellyfinItem(series, "Series", folder, library.item_id,
                                              saved=saved)
            for file in files:
                new = self.new_id()
                self.items[new] = JellyfinItem(new, "Episode", file, library.item_id,
                                               series_id=series, saved=saved)

    def _rescan(self, path: str) -> None:
        """What the library monitor does with a reported path (without its debounce)."""
        place = self._library_of(path)
        if place is None:
            return
        library, location = place
        present = set(self.files_under(path)) | ({path} if path in self.files else set())
        for old in list(self._paths.under(path)):
            for item in list(self.items.group("path", old).values()):
                if item.type != "Series" and item.path not in present:
                    del self.items[item.id]
                    if not self.items.group("path", old):
                        self._paths.discard(old)
        sep = sep_of(location)
        for file in sorted(present):
            if not is_video(file) or self.items.group("path", file):
                continue
            if library.collection_type == "movies":
                self._put(JellyfinItem(self.new_id(), "Movie", file, library.item_id))
                continue
            rest = file[len(trailing(location, sep)):]
            show_folder = trailing(location, sep) + rest.split(sep)[0]
            series = next((i for i in self.items.group("path", show_folder).values()
                           if i.type == "Series"), None)
            if series is None:
                series = self._put(JellyfinItem(self.new_id(), "Series", show_folder,
                                                library.item_id))
            self._put(JellyfinItem(self.new_id(), "Episode", file, library.item_id,
                                   series_id=series.id))

    def _items(self, request: Recorded, candidates: Iterable[JellyfinItem] | None = None
               ) -> Reply:
        parent = request.param("parentId") or request.param("ParentId")
        ids = request.values("ids")
        if ids:  # only those: a dict look-up each
            return super()._items(request, [self.items[i] for i in dict.fromkeys(ids)
                                            if i in self.items])
        saved_since = request.param("minDateLastSaved") or request.param("MinDateLastSaved")
        since = _since(saved_since)
        if since is not None and since > self._loaded_saved:
            # Only items saved after load() can pass: those in the log, each once, and
            # FakeJellyfin's own filters (its save time now, parent, types, sort, page).
            at = bisect.bisect_left(self._saved_at, since)
            recent = dict.fromkeys(self._saved_ids[at:])
            return super()._items(request, [self.items[i] for i in recent if i in self.items])
        if parent is None or saved_since or (self.emby and request.param("Path")):
            return super()._items(request)
        types = frozenset(request.values("includeItemTypes"))
        fields = request.values("fields")
        start = int(request.param("startIndex") or request.param("StartIndex") or 0)
        limit = request.param("limit") or request.param("Limit")
        sort = tuple(s.strip() for s in (request.param("sortBy") or request.param("SortBy")
                                         or "").split(",") if s.strip())
        if any(s not in _JELLYFIN_SORT for s in sort) or (
                not sort and (limit is not None or start > 0)):
            return super()._items(request)  # FakeJellyfin's answer to a page without order
        descending = (request.param("sortOrder") or "Ascending").split(",")[0] == "Descending"
        # The listing in FakeJellyfin's order, sorted once per change of the parent's items.
        version = (self.items.version("parent", parent), self.items.version("series", parent))
        cached = self._rows.get((parent, types, sort, descending))
        if cached is None or cached[0] != version:
            children = {**self.items.group("parent", parent), **self.items.group("series",
                                                                                 parent)}
            rows = sorted((i for i in children.values() if not types or i.type in types),
                          key=lambda i: tuple(_JELLYFIN_SORT[s](i) for s in sort) if sort
                          else (i.path,), reverse=descending)
            self._rows[(parent, types, sort, descending)] = cached = (version, rows)
        rows = cached[1]
        page = rows[start:None if limit is None else start + int(limit)]
        counted = (request.param("enableTotalRecordCount") or "true").lower() != "false"
        return json_reply({"Items": [self._dto(i, fields) for i in page],
                           "TotalRecordCount": len(rows) if counted else len(page),
                           "StartIndex": start})


#: FakeJellyfin's sort keys (its _items).
_JELLYFIN_SORT: dict[str, Callable[[JellyfinItem], Any]] = {
    "SortName": lambda i: i.name.casefold(), "Name": lambda i: i.name,
    "ProductionYear": lambda i: 0, "DateCreated": lambda i: i.created}

def _since(value: str | None) -> datetime | None:
    """A `minDateLastSaved` value as a time, None when absent or not one FakeJellyfin takes
    (it answers those itself)."""
    if not value:
        return None
    try:
        since = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return since if since.tzinfo is not None else None
