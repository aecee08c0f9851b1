"""The benchmark's Metarr library: a big fixture database built fast, and change sets.

The database has Metarr's schema (tests/support/metarr_factory.py) and realistic rows:
movie files at `/data/media/movies/Title (Year)/Title (Year).mkv`, episodes at
`/data/media/tv/Show/Season 01/Show - S01E01.mkv`, both of Metarr's timestamp formats, and
published asset rows (NFO, poster, thumbnails) for a realistic share of the items. Rows are
written with executemany in one transaction, so 250,000 items take seconds.

`change()` then does what Metarr's publish step does to a set of items (published_at,
asset rows, updated_at), the way it spreads in real life: a few whole series republished,
many single movies, some single episodes.
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from support.metarr_factory import SCHEMA, iso_ts, sqlite_ts

MOVIES_ROOT = "/data/media/movies"
TV_ROOT = "/data/media/tv"

_ADJECTIVES = (
    "Silent", "Crimson", "Last", "Hidden", "Broken", "Golden", "Lost", "Frozen", "Wild",
    "Dark", "Bright", "Burning", "Quiet", "Distant", "Electric", "Savage", "Velvet", "Iron",
    "Hollow", "Endless", "Little", "Secret", "Northern", "Midnight", "Paper", "Glass",
    "Eternal", "Restless", "Sleeping", "Forgotten", "Bitter", "Sweet", "Rising", "Falling",
    "Lonely", "Brave", "Strange", "Perfect", "Hungry", "Winter's",
)
_NOUNS = (
    "River", "Empire", "Garden", "Horizon", "Station", "Harbor", "Kingdom", "Machine",
    "Summer", "Witness", "Frontier", "Mirror", "Orchard", "Signal", "Voyage", "Tide",
    "Citadel", "Canyon", "Lantern", "Promise", "Shadow", "Circus", "Engine", "Island",
    "Archive", "Season", "Crossing", "Protocol", "Heart", "Ghost", "Café", "Love & War",
    "Hunter", "Detective", "Orbit", "Comet", "Requiem", "Paradox", "Letter", "Gambit",
)
_SUFFIXES = ("", " II", ": Reckoning", ", Part One", " Returns", " (Director's Cut)")
_YEARS = range(1950, 2026)


@dataclass(frozen=True)
class Movie:
    id: int
    title: str
    year: int

    @property
    def folder(self) -> str:
        return f"{MOVIES_ROOT}/{self.title} ({self.year})"

    @property
    def file(self) -> str:
        return f"{self.folder}/{self.title} ({self.year}).mkv"


@dataclass(frozen=True)
class Episode:
    id: int
    series: int
    season_id: int
    season: int
    number: int
    file: str

    @property
    def folder(self) -> str:
        return self.file.rsplit("/", 1)[0]


@dataclass
class Series:
    id: int
    title: str
    seasons: list[tuple[int, int]] = field(default_factory=list)  # (season id, number)
    episodes: list[Episode] = field(default_factory=list)

    @property
    def folder(self) -> str:
        return f"{TV_ROOT}/{self.title}"


@dataclass
class Library:
    """What the fixture database holds (the benchmark's ground truth)."""

    path: Path
    movies: list[Movie]
    series: list[Series]

    @property
    def episodes(self) -> list[Episode]:
        return [e for s in self.series for e in s.episodes]

    @property
    def rows(self) -> int:
        return len(self.movies) + len(self.series) + sum(len(s.episodes) for s in self.series)


@dataclass
class Changes:
    """The items Metarr republished since the last sync, by kind."""

    movies: list[Movie]
    whole_series: list[Series]  # the series row and every episode
    single_episodes: list[Episode]  # one episode of another series each

    @property
    def count(self) -> int:
        return (len(self.movies) + sum(1 + len(s.episodes) for s in self.whole_series)
                + len(self.single_episodes))

    @property
    def episodes(self) -> list[Episode]:
        return [e for s in self.whole_series for e in s.episodes] + self.single_episodes

    def keys(self) -> set[str]:
        return ({f"movie:{m.id}" for m in self.movies}
                | {f"series:{s.id}" for s in self.whole_series}
                | {f"episode:{e.id}" for e in self.episodes})


def _titles(rng: random.Random, count: int, *, with_year: bool) -> list[tuple[str, int]]:
    """`count` distinct (title, year) pairs; distinct titles when there is no year."""
    years = _YEARS if with_year else range(1)
    space = len(_ADJECTIVES) * len(_NOUNS) * len(_SUFFIXES) * len(years)
    if count > space:
        raise ValueError(f"at most {space} distinct titles, not {count}")
    found = []
    for n in rng.sample(range(space), count):
        n, year = divmod(n, len(years))
        n, suffix = divmod(n, len(_SUFFIXES))
        adjective, noun = divmod(n, len(_NOUNS))
        title = f"The {_ADJECTIVES[adjective]} {_NOUNS[noun]}{_SUFFIXES[suffix]}"
        found.append((title, years[year] if with_year else 0))
    return found


def build(path: Path, *, movies: int, series: int, episodes_per_series: int = 100,
          seed: int = 9, when: datetime | None = None) -> Library:
    """Write a Metarr database with that many movies and series; return its contents.

    Every item was created and published long ago (`when`, default 400 days back), in
    both of Metarr's timestamp formats, with published NFO and artwork for most items.
    """
    rng = random.Random(seed)
    when = when or datetime.now(UTC) - timedelta(days=400)
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.executescript(SCHEMA)
    conn.execute("PRAGMA synchronous = OFF")
    old_sql, old_iso = sqlite_ts(when), iso_ts(when)
    library = Library(path, [], [])
    assets: dict[str, list[tuple[str, int, str, str]]] = {"image": [], "text": []}

    def asset(kind: str, entity: str, entity_id: int, file: str, iso: bool) -> None:
        assets[kind].append((entity, entity_id, file, old_iso if iso else old_sql))

    conn.execute("BEGIN")
    conn.execute("INSERT INTO libraries (id, name, path, type) VALUES (1, 'Movies', ?, "
                  "'movie'), (2, 'TV Shows', ?, 'tv')", (MOVIES_ROOT, TV_ROOT))
    rows = []
    for number, (title, year) in enumerate(_titles(rng, movies, with_year=True), start=1):
        movie = Movie(number, title, year)
        library.movies.append(movie)
        published = number % 10 != 0  # most movies were published by Metarr already
        rows.append((number, 1, movie.file, movie.file.rsplit("/", 1)[1], title, year,
                     100000 + number, f"tt{1000000 + number}",
                     "published" if published else "identified",
                     old_sql if published else None, old_sql, old_sql))
        if published:
            asset("text", "movie", number, f"{movie.folder}/movie.nfo", False)
            asset("image", "movie", number, f"{movie.folder}/poster.jpg", number % 3 == 0)
    conn.executemany(
        "INSERT INTO movies (id, library_id, file_path, file_name, title, year, tmdb_id, "
        "imdb_id, identification_status, published_at, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    series_rows, season_rows, episode_rows = [], [], []
    season_id = episode_id = 0
    layouts = ((2, 50), (4, 25), (5, 20), (10, 10))  # seasons x episodes per season
    for number, (title, _) in enumerate(_titles(rng, series, with_year=False), start=1):
        show = Series(number, title.removeprefix("The "))
        library.series.append(show)
        series_rows.append((number, 2, show.folder, show.title, 300000 + number, old_sql,
                            old_iso))
        asset("image", "series", number, f"{show.folder}/poster.jpg", False)
        seasons, per_season = layouts[number % len(layouts)]
        if seasons * per_season != episodes_per_series:
            seasons, per_season = 1, episodes_per_series
        for season in range(1, seasons + 1):
            season_id += 1
            show.seasons.append((season_id, season))
            season_rows.append((season_id, number, season, old_sql, old_sql))
            if season_id % 2:
                asset("image", "season", season_id,
                      f"{show.folder}/season{season:02d}-poster.jpg", True)
            for ep in range(1, per_season + 1):
                episode_id += 1
                name = f"{show.title} - S{season:02d}E{ep:02d}.mkv"
                file = f"{show.folder}/Season {season:02d}/{name}"
                show.episodes.append(Episode(episode_id, number, season_id, season, ep, file))
                episode_rows.append((episode_id, number, season_id, file, name, ep,
                                     f"Episode {ep}", old_iso, old_iso))
                if episode_id % 2:  # half the episodes have their NFO and thumb published
                    base = file.rsplit(".", 1)[0]
                    asset("text", "episode", episode_id, f"{base}.nfo", True)
                    asset("image", "episode", episode_id, f"{base}-thumb.jpg", False)
    conn.executemany("INSERT INTO series (id, library_id, directory_path, title, tvdb_id, "
                     "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)", series_rows)
    conn.executemany("INSERT INTO seasons (id, series_id, season_number, created_at, "
                     "updated_at) VALUES (?, ?, ?, ?, ?)", season_rows)
    conn.executemany("INSERT INTO episodes (id, series_id, season_id, file_path, file_name, "
                     "episode_number, title, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", episode_rows)
    for kind, entries in assets.items():
        _insert_assets(conn, kind, entries)
    conn.execute("COMMIT")
    conn.close()
    return library


def _insert_assets(conn: sqlite3.Connection, kind: str,
                   entries: list[tuple[str, int, str, str]]) -> None:
    """Cache rows and the library rows that point at them, ids assigned here."""
    start = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM cache_{kind}_files").fetchone()[0]
    conn.executemany(
        f"INSERT INTO cache_{kind}_files (id, entity_type, entity_id, file_path) "
        "VALUES (?, ?, ?, ?)",
        ((start + n, entity, entity_id, f"/data/cache/{entity}/{entity_id}/{n}")
         for n, (entity, entity_id, _, _) in enumerate(entries, start=1)))
    start_lib = conn.execute(f"SELECT COALESCE(MAX(id), 0) FROM library_{kind}_files"
                             ).fetchone()[0]
    conn.executemany(
        f"INSERT INTO library_{kind}_files (id, cache_file_id, file_path, published_at) "
        "VALUES (?, ?, ?, ?)",
        ((start_lib + n, start + n, file, stamp)
         for n, (_, _, file, stamp) in enumerate(entries, start=1)))


def merged(*sets: Changes) -> Changes:
    """Every item changed in any of the sets (for one library that serves them all)."""
    movies = {m.id: m for c in sets for m in c.movies}
    shows = {s.id: s for c in sets for s in c.whole_series}
    singles = {e.id: e for c in sets for e in c.single_episodes if e.series not in shows}
    return Changes(sorted(movies.values(), key=lambda m: m.id),
                   sorted(shows.values(), key=lambda s: s.id),
                   sorted(singles.values(), key=lambda e: e.id))


def pick(library: Library, count: int, *, seed: int, avoid: set[str] | None = None
         ) -> Changes:
    """`count` items to change: ~20 % in whole series, ~10 % single episodes, the rest
    single movies (at most 90 % of the movies; the series take up what is left)."""
    rng = random.Random(seed)
    avoid = avoid or set()
    per_series = 1 + (len(library.series[0].episodes) if library.series else 0)
    whole = max(1, round(count * 0.2 / per_series)) if count >= 2 * per_series else 0
    singles = round(count * 0.1)
    movies = count - whole * per_series - singles
    cap = int(len(library.movies) * 0.9)
    if movies > cap:
        # Not enough movies: republish more whole series instead.
        extra = movies - cap
        whole += extra // per_series
        singles += extra % per_series
        movies = cap
    if whole >= len(library.series) or movies < 0:
        raise ValueError(f"the library is too small for {count} changed items")
    shows = [s for s in library.series if f"series:{s.id}" not in avoid]
    rng.shuffle(shows)
    chosen_series = sorted(shows[:whole], key=lambda s: s.id)
    # Single episodes of the other shows: one per show while there are enough shows.
    others = shows[whole:]
    single_eps = [rng.choice(s.episodes) for s in others[:singles]]
    if singles > len(others):
        taken = {e.id for e in single_eps}
        rest = [e for s in others for e in s.episodes if e.id not in taken]
        single_eps += rng.sample(rest, singles - len(others))
    pool = [m for m in library.movies if f"movie:{m.id}" not in avoid]
    chosen_movies = sorted(rng.sample(pool, movies), key=lambda m: m.id)
    return Changes(chosen_movies, chosen_series, sorted(single_eps, key=lambda e: e.id))


def change(path: Path, changes: Changes, when: datetime | None = None) -> None:
    """Do to the database what Metarr's publish step does to these items."""
    when = when or datetime.now(UTC)
    stamp_sql, stamp_iso = sqlite_ts(when), iso_ts(when)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    # Movies: published_at and fresh artwork; Metarr leaves updated_at alone.
    conn.executemany("UPDATE movies SET published_at = ?, identification_status = "
                     "'published' WHERE id = ?", ((stamp_sql, m.id) for m in changes.movies))
    images: list[tuple[str, int, str, str]] = [
        ("movie", m.id, f"{m.folder}/fanart.jpg", stamp_iso) for m in changes.movies]
    texts: list[tuple[str, int, str, str]] = []
    # Whole series: the show row, its seasons, and every episode's NFO and thumbnail.
    conn.executemany("UPDATE series SET updated_at = ? WHERE id = ?",
                     ((stamp_iso, s.id) for s in changes.whole_series))
    conn.executemany("UPDATE seasons SET updated_at = ? WHERE id = ?",
                     ((stamp_sql, sid) for s in changes.whole_series for sid, _ in s.seasons))
    for show in changes.whole_series:
        images.append(("series", show.id, f"{show.folder}/fanart.jpg", stamp_sql))
        for episode in show.episodes:
            base = episode.file.rsplit(".", 1)[0]
            texts.append(("episode", episode.id, f"{base}.nfo", stamp_iso))
            images.append(("episode", episode.id, f"{base}-thumb.jpg", stamp_sql))
    # Single episodes: re-identified (updated_at), nothing else.
    conn.executemany("UPDATE episodes SET updated_at = ? WHERE id = ?",
                     ((stamp_iso, e.id) for e in changes.single_episodes))
    _insert_assets(conn, "image", [(e, i, f, s) for e, i, f, s in images])
    _insert_assets(conn, "text", texts)
    conn.execute("COMMIT")
    conn.close()
