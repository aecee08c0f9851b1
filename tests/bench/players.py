"""The three players of the benchmark: which items each already has, the fakes holding
them, and the lower bound of requests each needs for a set of changes.

Every player sees the library under its own root (Kodi over SMB, Jellyfin and Plex on
their own mounts), holds every item except a few of the changed ones (so that both
refreshes and scans happen), and lacks some republished series entirely (a new show: one
scan of its folder).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fast_fakes import BenchJellyfin, BenchKodi, BenchPlex
from scenario import MOVIES_ROOT, TV_ROOT, Changes, Library
from support.fake_players import FakePlayer, JellyfinLibrary, PlexSection

from metarr_sync.players.kodi import SMALL_RUN as KODI_SMALL_RUN

NAMES = ("kodi", "jellyfin", "plex")
METARR_ROOT = "/data/media"
ROOTS = {"kodi": "smb://nas/media", "jellyfin": "/media", "plex": "/share/media"}
# Page sizes of the adapters' paged listings (metarr_sync/players/jellyfin.py, plex.py,
# kodi.py: Kodi pages its whole-library listings of movies and shows).
JELLYFIN_PAGE = 500
#: Items each Jellyfin page repeats of the one before (jellyfin.LISTING_OVERLAP).
JELLYFIN_OVERLAP = 20
PLEX_PAGE = 1000
KODI_PAGE = 5000


def player_path(name: str, path: str) -> str:
    return ROOTS[name] + path[len(METARR_ROOT):]


@dataclass
class Presence:
    """Which changed items each player lacks; it has every other item."""

    series: dict[str, set[int]] = field(default_factory=dict)  # shows it lacks entirely
    movies: dict[str, set[int]] = field(default_factory=dict)
    episodes: dict[str, set[int]] = field(default_factory=dict)  # of shows it has

    @classmethod
    def of(cls, changes: Changes) -> Presence:
        found = cls()
        for k, name in enumerate(NAMES):
            # One republished series in eight is new to each player, a different one each.
            found.series[name] = {s.id for j, s in enumerate(changes.whole_series)
                                  if j % 8 == k}
            found.movies[name] = {m.id for m in changes.movies if (m.id * 7 + k) % 20 == 0}
            found.episodes[name] = {e.id for e in changes.episodes
                                    if (e.id + 3 * k) % 40 == 0
                                    and e.series not in found.series[name]}
        return found

    def has_series(self, name: str, series_id: int) -> bool:
        return series_id not in self.series[name]

    def has_movie(self, name: str, movie_id: int) -> bool:
        return movie_id not in self.movies[name]

    def has_episode(self, name: str, episode_id: int, series_id: int) -> bool:
        return series_id not in self.series[name] and episode_id not in self.episodes[name]


def start_fakes(library: Library, presence: Presence, latency: float,
                names: Sequence[str] = NAMES) -> dict[str, FakePlayer]:
    """The fakes on 127.0.0.1, each holding the library as `presence` says."""
    fakes: dict[str, FakePlayer] = {}
    for name in names:
        movie_files = [player_path(name, m.file) for m in library.movies]
        have_movies = [player_path(name, m.file) for m in library.movies
                       if presence.has_movie(name, m.id)]
        shows = {player_path(name, s.folder): [player_path(name, e.file) for e in s.episodes
                                               if presence.has_episode(name, e.id, s.id)]
                 for s in library.series if presence.has_series(name, s.id)}
        episode_files = [player_path(name, e.file) for s in library.series
                         for e in s.episodes]
        movies_root, tv_root = player_path(name, MOVIES_ROOT), player_path(name, TV_ROOT)
        fake: Any
        if name == "kodi":
            fake = BenchKodi(sources={movies_root + "/": "movies", tv_root + "/": "tvshows"},
                             latency=latency)
            fake.load(have_movies, shows)
        elif name == "jellyfin":
            movies_lib = JellyfinLibrary("Movies", "movies", [movies_root])
            tv_lib = JellyfinLibrary("Shows", "tvshows", [tv_root])
            fake = BenchJellyfin(libraries=[movies_lib, tv_lib], latency=latency)
            fake.load(movies_lib, have_movies, {})
            fake.load(tv_lib, [], shows)
        else:
            movies_section = PlexSection("1", "movie", "Movies", [movies_root])
            tv_section = PlexSection("2", "show", "TV Shows", [tv_root])
            fake = BenchPlex(sections=[movies_section, tv_section], latency=latency)
            fake.load(movies_section, have_movies, {})
            fake.load(tv_section, [], shows)
        fake.add_file(*movie_files, *episode_files)
        fakes[name] = fake.start()
    return fakes


def player_toml(name: str, fake: FakePlayer) -> str:
    return fake.toml(name, [(METARR_ROOT, ROOTS[name])])  # type: ignore[attr-defined]


# --- the lower bound ---------------------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """One changed item as the bound sees it (Metarr-side paths)."""

    key: str
    kind: str  # movie | series | episode
    path: str  # video file, or show folder
    folder: str  # movie folder, season folder, or show folder
    show: str | None  # show folder (series and episodes)
    series_id: int | None
    present: bool  # the player has the item already
    show_present: bool  # the player has the item's show (series and episodes)


def targets(library: Library, changes: Changes, presence: Presence, name: str
            ) -> list[Target]:
    found = [Target(f"movie:{m.id}", "movie", m.file, m.folder, None, None,
                    presence.has_movie(name, m.id), True) for m in changes.movies]
    titles = {s.id: s for s in library.series}
    for show in changes.whole_series:
        have = presence.has_series(name, show.id)
        found.append(Target(f"series:{show.id}", "series", show.folder, show.folder,
                            show.folder, show.id, have, have))
    for episode in changes.episodes:
        show = titles[episode.series]
        found.append(Target(f"episode:{episode.id}", "episode", episode.file, episode.folder,
                            show.folder, show.id,
                            presence.has_episode(name, episode.id, show.id),
                            presence.has_series(name, show.id)))
    return found


def collapse(folders: Iterable[str]) -> list[str]:
    """Distinct folders without those inside another one of the set (whole components).

    Written here rather than taken from metarr_sync.plan, so that the bound does not
    share a bug with the code it checks.
    """
    kept: list[tuple[str, ...]] = []
    for parts in sorted({tuple(p for p in f.split("/") if p) for f in folders}):
        if kept and parts[:len(kept[-1])] == kept[-1]:
            continue
        kept.append(parts)
    return ["/" + "/".join(parts) for parts in kept]


def batches(found: list[Target], batch_size: int) -> list[list[Target]]:
    """The batches metarr-sync forms: movies, shows, episodes, each by path."""
    order = {"movie": 0, "series": 1, "episode": 2}
    ordered = sorted(found, key=lambda t: (order[t.kind], [p for p in t.path.split("/") if p]))
    return [ordered[i:i + batch_size] for i in range(0, len(ordered), batch_size)]


def _pages(count: int, size: int) -> int:
    """Requests for a paged listing of `count` items (an empty one still takes one)."""
    return max(1, math.ceil(count / size))


def _jellyfin_pages(count: int) -> int:
    """Requests for a Jellyfin listing of `count` items: each page after the first starts
    JELLYFIN_OVERLAP items before the end of the one before, and a short page ends it."""
    if count < JELLYFIN_PAGE:
        return 1
    return 2 + (count - JELLYFIN_PAGE) // (JELLYFIN_PAGE - JELLYFIN_OVERLAP)


def holdings(name: str, library: Library, presence: Presence) -> dict[str, Any]:
    """How many movies, shows and episodes the player holds before the run."""
    shows = [s for s in library.series if presence.has_series(name, s.id)]
    episodes_of = {s.id: sum(1 for e in s.episodes if presence.has_episode(name, e.id, s.id))
                   for s in library.series}
    return {"movies": len(library.movies) - len(presence.movies[name]),
            "shows": len(shows), "episodes": sum(episodes_of.values()),
            "episodes_of": episodes_of}


def images(name: str, library: Library, presence: Presence, target: Target) -> int:
    """How many images of its own a changed item has on Kodi (the art the scenario
    publishes, as the benchmark's Kodi lists it): a movie's poster and fanart, an
    episode's thumb, a show's poster and each of its seasons' posters (the seasons Kodi
    knows: those of the episodes it holds)."""
    if target.kind == "movie":
        return 2
    if target.kind == "episode":
        return 1
    show = next(s for s in library.series if s.id == target.series_id)
    return 1 + len({e.season for e in show.episodes
                    if presence.has_episode(name, e.id, show.id)})


def lower_bound(name: str, library: Library, changes: Changes, presence: Presence,
                batch_size: int, *, dry_run: bool = False) -> dict[str, int]:
    """The fewest requests `name` needs for these changes, by what they are for (for Kodi:
    JSON-RPC calls, several of which travel in one HTTP request as a batch).

    - discovery: reachable, credentials, its libraries, and (Kodi only: skip_active is on
      by default for Kodi alone) whether someone is watching;
    - listings: each library listed once per run (in pages of the adapter's page size),
      and, for a changed show's episodes, that show's episodes once (a TV library's
      episodes are never listed as a whole where the player can list one show's);
    - refreshes: one per changed item the player already has;
    - scans: one per distinct folder after collapsing (Kodi: each only once its library
      is idle, after listing the folder's parent once, PLAYERS.md); for Jellyfin one
      /Library/Media/Updated per batch that holds an item it lacks, except a batch whose
      new items all land on a library folder an earlier batch reported;
    - artwork (Kodi only: Jellyfin and Plex re-read an item's images with its refresh):
      Kodi shows images from its own texture cache, which a refresh does not renew; per
      refreshed item its art is read before the refresh (its details, and a show's
      seasons), then each of its own images is looked up in the cache and its cached copy
      removed (in the benchmark every image is cached);
    - verification in the same run (Kodi only; Jellyfin and Plex verify on a later run):
      its libraries listed once more, and what Kodi shows of each delivered item read
      (its details, a show's seasons) to compare with what Metarr published. A cached
      image is checked against its file only where metarr-sync can read the file: the
      benchmark's Metarr paths are not on disk, so it sends no such look-up.

    With `dry_run` (metarr-sync run --dry-run: refreshes and scans are planned and
    recorded, not sent; nothing is verified), Kodi needs no idle checks and no
    verification; the counts are otherwise the same.
    """
    found = targets(library, changes, presence, name)
    have = [t for t in found if t.present]
    lack = [t for t in found if not t.present]
    movies = [t for t in found if t.kind == "movie"]
    tv = [t for t in found if t.kind != "movie"]
    bound: dict[str, int] = {}
    if name == "kodi":
        # Calls, not HTTP requests: look-ups, refreshes and removals of a batch travel in
        # one POST (a JSON-RPC batch), so Kodi's requests fall well below this; scans and
        # the idle checks before them go one by one.
        bound["discovery"] = 5  # Ping, Version, GetProperties, GetSources, GetActivePlayers
        held = holdings(name, library, presence)
        shows_listed = {t.series_id for t in tv if t.kind == "episode" and t.show_present}
        # A small run (one batch of at most kodi.SMALL_RUN targets) looks each movie folder,
        # show folder and season folder up once (GetMovies/GetTVShows/GetEpisodes with a
        # path filter) instead of listing; the verification looks them up once more.
        small = len(found) <= min(KODI_SMALL_RUN, batch_size)
        look_ups = (len({t.folder for t in movies}) + len({t.show for t in tv})
                    + len({t.folder for t in tv if t.kind == "episode"}))
        bound["listings"] = look_ups if small else (
            (_pages(held["movies"], KODI_PAGE) if movies else 0)
            + (_pages(held["shows"], KODI_PAGE) if tv else 0) + len(shows_listed))
        bound["refreshes"] = len(have)
        # Read before the refresh, looked up and removed after it: see the docstring.
        bound["artwork"] = (len(have) + sum(1 for t in have if t.kind == "series")
                            + 2 * sum(images(name, library, presence, t) for t in have))
        # A new show is added by scanning its folder; a season of a known show by its own.
        folders = collapse(t.show if not t.show_present else t.folder for t in lack)
        parents = {f.rsplit("/", 1)[0] for f in folders}
        # each scan after an idle check (not under --dry-run), each parent listed once
        bound["scans"] = (1 if dry_run else 2) * len(folders) + len(parents)
        # After the run Kodi holds every movie and show (the scans added those it lacked).
        delivered_shows = {t.series_id for t in tv if t.kind == "episode"}
        listed = look_ups if small else (
            (_pages(len(library.movies), KODI_PAGE) if movies else 0)
            + (_pages(len(library.series), KODI_PAGE) if tv else 0) + len(delivered_shows))
        bound["verification"] = (1 + listed + _shown(found) if found and not dry_run else 0)
    elif name == "jellyfin":
        bound["discovery"] = 3  # /System/Info/Public, /System/Info, VirtualFolders
        held = holdings(name, library, presence)
        # The benchmark's run is the player's first: no index kept yet (players/
        # jellyfin.py "The index"), each library needed is listed whole and indexed.
        pages = 0
        if movies:
            pages += _jellyfin_pages(held["movies"])
        if tv:
            pages += _jellyfin_pages(held["shows"])
        shows = {t.series_id for t in tv if t.kind == "episode" and t.show_present}
        pages += sum(_jellyfin_pages(held["episodes_of"][s]) for s in shows)
        bound["listings"] = pages
        bound["refreshes"] = len(have)
        lacking = {t.key for t in lack}
        # A batch sends one /Library/Media/Updated when it holds a new item of a show the
        # player has (reported as it is) or one landing on a library folder (a movie, a
        # new show) not reported by an earlier batch of the run (each goes once a run).
        scans, reported = 0, set[str]()
        for batch in batches(found, batch_size):
            new = [t for t in batch if t.key in lacking]
            folders = {"movies" if t.kind == "movie" else "tv" for t in new
                       if t.kind == "movie" or not t.show_present}
            if folders - reported or any(t.kind != "movie" and t.show_present for t in new):
                scans += 1
            reported |= folders
        bound["scans"] = scans
        bound["verification"] = 0
    else:
        bound["discovery"] = 2  # /identity, /library/sections
        held = holdings(name, library, presence)
        # The measured run is the first that needs the sections: it lists them whole and
        # keeps the index (plex.py, "The index"); later runs would ask for updates only.
        pages = 0
        if movies:
            pages += _pages(held["movies"], PLEX_PAGE)
        if tv:  # a show by its folder; an episode's show too, to find its episodes
            pages += _pages(held["shows"], PLEX_PAGE)
        shows = {t.series_id for t in tv if t.kind == "episode" and t.show_present}
        pages += sum(_pages(held["episodes_of"][s], PLEX_PAGE) for s in shows)
        bound["listings"] = pages
        bound["refreshes"] = len(have)
        bound["scans"] = len(collapse(t.folder for t in lack))
        bound["verification"] = 0
    bound["total"] = sum(bound.values())
    return bound


def _shown(found: Sequence[Target]) -> int:
    """Kodi's verification of what it shows: each delivered item's details (and a show's
    seasons, for their artwork)."""
    return len(found) + sum(1 for t in found if t.kind == "series")


def strict_lower_bound(name: str, library: Library, changes: Changes, presence: Presence,
                       batch_size: int) -> int:
    """The lower bound read literally as "one listing per library per run": a TV library's
    episodes listed as a whole (Kodi: GetEpisodes of all shows, in pages like its other
    whole-library listings; Jellyfin: the library's episodes in pages) instead of per
    changed show, for listing and for verification.

    With many shows touched (1,000 single episodes in 1,000 shows) that is fewer requests
    than listing each show's episodes, but every episode of the library is held in
    memory; the adapters list per show. Reported next to the bound, not budgeted.
    """
    bound = lower_bound(name, library, changes, presence, batch_size)
    found = targets(library, changes, presence, name)
    movies = any(t.kind == "movie" for t in found)
    tv = any(t.kind != "movie" for t in found)
    episodes = any(t.kind == "episode" and t.show_present for t in found)
    if name == "kodi":
        held = holdings(name, library, presence)
        bound["listings"] = ((_pages(held["movies"], KODI_PAGE) if movies else 0)
                             + (_pages(held["shows"], KODI_PAGE) if tv else 0)
                             + (_pages(held["episodes"], KODI_PAGE) if tv and episodes else 0))
        if bound["verification"]:
            bound["verification"] = (
                1 + (_pages(len(library.movies), KODI_PAGE) if movies else 0)
                + (_pages(len(library.series), KODI_PAGE)
                   + _pages(sum(len(x.episodes) for x in library.series), KODI_PAGE)
                   if tv else 0) + _shown(found))
    elif name == "jellyfin":
        held = holdings(name, library, presence)
        bound["listings"] = ((_jellyfin_pages(held["movies"]) if movies else 0)
                             + (_jellyfin_pages(held["shows"]) if tv else 0)
                             + (_jellyfin_pages(held["episodes"]) if episodes else 0))
    else:
        held = holdings(name, library, presence)
        bound["listings"] = ((_pages(held["movies"], PLEX_PAGE) if movies else 0)
                             + (_pages(held["shows"], PLEX_PAGE) if tv else 0)
                             + (_pages(held["episodes"], PLEX_PAGE) if episodes else 0))
    return sum(v for k, v in bound.items() if k != "total")


# --- the naive reference ----------------------------------------------------------------

def naive(name: str, fake: Any, sample: Sequence[Target]) -> float:
    """Deliver `sample` as the original design sketched it: one request per item (Kodi: a
    scan of the item's folder; Jellyfin: a media report of its folder; Plex: a partial
    scan of its folder in the first section of its type), one item after another.
    Returns the wall time in seconds."""
    import time

    import requests

    session = requests.Session()
    session.trust_env = False
    started = time.perf_counter()
    for n, target in enumerate(sample):
        folder = player_path(name, target.folder)
        if name == "kodi":
            body = {"jsonrpc": "2.0", "id": n, "method": "VideoLibrary.Scan",
                    "params": {"directory": folder + "/", "showdialogs": False}}
            answer = session.post(f"{fake.url}/jsonrpc", json=body, timeout=30)
        elif name == "jellyfin":
            answer = session.post(
                f"{fake.url}/Library/Media/Updated", timeout=30,
                json={"Updates": [{"Path": folder, "UpdateType": "Modified"}]},
                headers={"Authorization": f'MediaBrowser Client="naive", Token="{fake.token}"'})
        else:
            section = "1" if target.kind == "movie" else "2"
            answer = session.get(f"{fake.url}/library/sections/{section}/refresh",
                                 params={"path": folder}, timeout=30,
                                 headers={"X-Plex-Token": fake.token})
        answer.raise_for_status()
    session.close()
    return time.perf_counter() - started
