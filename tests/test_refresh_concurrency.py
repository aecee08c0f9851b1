"""Item refreshes a few at a time (`concurrency`): Plex and Jellyfin against the threaded
fake servers of tests/support/fake_players.py, which count the refreshes under way.

Plex and Jellyfin queue an item refresh and answer at once, so a few in flight only save
round trips; scans stay one at a time. Whatever the concurrency, the outcomes are those
of one refresh after the other: per item, in item order, and a failure of the player
(401, a stop request) starts no new request.
"""

from __future__ import annotations

import gc
import json
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.configs import config_with
from support.fake_players import FakeJellyfin, FakePlex, PlexItem, Recorded, Reply

from metarr_sync.config import ConfigError, Mapping, PlayerConfig, SyncConfig, parse_config
from metarr_sync.metarr import Item
from metarr_sync.plan import Target, target_for
from metarr_sync.players import base
from metarr_sync.players.base import STOP, AuthFailed, Interrupted, bounded_map
from metarr_sync.players.compact import CompactIndex, IdSet, ItemIds
from metarr_sync.players.jellyfin import JellyfinPlayer
from metarr_sync.players.plex import TYPE_MOVIE, PlexPlayer

MAPPINGS = [Mapping("/data/media/movies", "/media/movies")]


class Counting:
    """Mixin for a fake: counts the refreshes (POST/PUT .../Refresh, .../refresh,
    .../analyze) under way, and can answer 401 to every refresh after the first few."""

    def __init__(self, *args: Any, unauthorized_after: int | None = None,
                 stop_after: int | None = None, **kw: Any):
        super().__init__(*args, **kw)
        self.flight = threading.Lock()
        self.now = 0
        self.most = 0
        self.unauthorized_after = unauthorized_after
        self.stop_after = stop_after  # ask the run to stop when this refresh arrives
        self.arrived: list[str] = []  # refresh paths, in the order they arrived
        self._local = threading.local()

    @staticmethod
    def is_refresh(method: str, path: str) -> bool:
        return method in ("POST", "PUT") and path.lower().endswith(("/refresh", "/analyze"))

    def _serve(self, handler: Any) -> None:
        counted = self.is_refresh(handler.command, handler.path.split("?")[0])
        if counted:
            with self.flight:
                self.now += 1
                self.most = max(self.most, self.now)
                self.arrived.append(handler.path.split("?")[0])
                number = len(self.arrived)
            if number == self.stop_after:
                STOP.request(signal.SIGTERM)
        self._local.counted = counted
        try:
            super()._serve(handler)  # type: ignore[misc]
        finally:
            self._landed()

    def _write(self, handler: Any, reply: Reply) -> None:
        # Counted out before the answer leaves: the client can only start its next request
        # once it has the answer, so the count never shows one too many.
        self._landed()
        super()._write(handler, reply)  # type: ignore[misc]

    def _landed(self) -> None:
        if getattr(self._local, "counted", False):
            self._local.counted = False
            with self.flight:
                self.now -= 1

    def handle(self, request: Recorded) -> Reply:
        if self.unauthorized_after is not None and self.is_refresh(request.method,
                                                                   request.path):
            seen = sum(1 for r in self.requests if self.is_refresh(r.method, r.path))
            if seen > self.unauthorized_after:
                return self.unauthorized()
        return super().handle(request)  # type: ignore[misc]


class CountingPlex(Counting, FakePlex):
    pass


class CountingJellyfin(Counting, FakeJellyfin):
    pass


def film(n: int) -> str:
    return f"Film {n:02d} ({2000 + n})"


def movie_targets(count: int) -> list[Target]:
    return [target_for(Item("movie", n, f"/data/media/movies/{film(n)}/{film(n)}.mkv",
                            title=film(n)), MAPPINGS) for n in range(1, count + 1)]


def player_path(n: int) -> str:
    return f"/media/movies/{film(n)}/{film(n)}.mkv"


@pytest.fixture
def fakes() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for fake in started:
        fake.stop()


@pytest.fixture
def stop_flag() -> Iterator[None]:
    STOP.clear()
    STOP.armed = True
    yield
    STOP.clear()


def plex_world(fakes: list[Any], count: int, *, latency: float = 0.05, concurrency: int = 4,
               dry_run: bool = False, analyze: bool = False, **fake_kw: Any
               ) -> tuple[CountingPlex, PlexPlayer, dict[str, int]]:
    """A fake Plex holding `count` movies, and an adapter for it; rating key -> movie."""
    fake = CountingPlex(latency=latency, **fake_kw)
    numbers = {}
    for n in range(1, count + 1):
        key = str(500 + n)
        fake.items[key] = PlexItem(key, "movie", "1", player_path(n))
        numbers[key] = n
    fake.add_file(*(player_path(n) for n in range(1, count + 1)))
    fakes.append(fake.start())
    config = PlayerConfig(name="den", type="plex", url=fake.url, token_value=fake.token,
                          mappings=MAPPINGS, concurrency=concurrency, analyze=analyze)
    player = PlexPlayer(config, SyncConfig(timeout=5, retry_attempts=0), dry_run=dry_run)
    return fake, player, numbers


def jellyfin_world(fakes: list[Any], count: int, *, latency: float = 0.05,
                   concurrency: int = 4, dry_run: bool = False, **fake_kw: Any
                   ) -> tuple[CountingJellyfin, JellyfinPlayer, dict[str, int]]:
    """A fake Jellyfin holding `count` movies, and an adapter for it; item id -> movie."""
    from support.fake_players import JellyfinItem

    fake = CountingJellyfin(latency=latency, **fake_kw)
    movies = fake.libraries[0]
    numbers = {}
    for n in range(1, count + 1):
        item_id = f"{n:032x}"
        fake.items[item_id] = JellyfinItem(item_id, "Movie", player_path(n), movies.item_id)
        numbers[item_id] = n
    fake.add_file(*(player_path(n) for n in range(1, count + 1)))
    fakes.append(fake.start())
    config = PlayerConfig(name="lounge", type="jellyfin", url=fake.url, token_value=fake.token,
                          mappings=MAPPINGS, concurrency=concurrency)
    player = JellyfinPlayer(config, SyncConfig(timeout=5, retry_attempts=0), dry_run=dry_run)
    return fake, player, numbers


WORLDS = {"plex": plex_world, "jellyfin": jellyfin_world}


def refreshed_movies(fake: Any, numbers: dict[str, int]) -> list[int]:
    """The movies whose refresh reached the fake, in the order they arrived."""
    return [numbers[path.split("/")[-2]] for path in fake.arrived]


# --- in flight at once ------------------------------------------------------------------

@pytest.mark.parametrize("kind", WORLDS)
@pytest.mark.parametrize("concurrency", [1, 3])
def test_at_most_concurrency_refreshes_are_in_flight_and_outcomes_keep_item_order(
        fakes, kind, concurrency):
    fake, player, numbers = WORLDS[kind](fakes, 9, concurrency=concurrency)
    batch = movie_targets(9)
    player.probe()
    outcomes = player.apply(batch)
    player.close()
    assert [(o.item_key, o.result) for o in outcomes] == [(t.key, "synced") for t in batch]
    # Each request takes 50 ms at the fake: with several allowed, that many overlap.
    assert fake.most == concurrency
    assert sorted(refreshed_movies(fake, numbers)) == list(range(1, 10))
    if concurrency == 1:
        assert refreshed_movies(fake, numbers) == list(range(1, 10))  # strictly in order
    assert player.requests == fake.count()  # counted once each, from every thread


def test_plex_analyze_follows_each_refresh_and_counts_as_in_flight(fakes):
    fake, player, numbers = plex_world(fakes, 6, concurrency=2, analyze=True)
    player.apply(movie_targets(6))
    player.close()
    assert fake.most == 2
    for key in numbers:
        assert fake.arrived.index(f"/library/metadata/{key}/analyze") > \
            fake.arrived.index(f"/library/metadata/{key}/refresh")
    assert sorted(fake.analyzed) == sorted(numbers)


def test_scans_stay_one_at_a_time_whatever_the_concurrency(fakes):
    fake, player, _ = plex_world(fakes, 0, concurrency=8, latency=0.02)
    fake.add_file(*(player_path(n) for n in range(1, 7)))  # on disk, new to Plex
    outcomes = player.apply(movie_targets(6))
    player.close()
    assert [o.result for o in outcomes] == ["synced"] * 6
    scans = fake.received("GET /library/sections/{key}/refresh")
    assert len(scans) == 6
    # Each scan arrived only after the previous one was answered (20 ms each).
    gaps = [b.at - a.at for a, b in zip(scans, scans[1:], strict=False)]
    assert min(gaps) >= 0.02


# --- per-item outcomes ------------------------------------------------------------------

def test_plex_a_404_among_parallel_refreshes_keeps_only_that_item_pending(fakes):
    fake, player, numbers = plex_world(fakes, 8, concurrency=3)
    section = player.sections()[0]
    player.listing(section, TYPE_MOVIE)
    with fake.lock:
        del fake.items["505"]  # Plex dropped movie 5 after it was listed
    batch = movie_targets(8)
    outcomes = player.apply(batch)
    player.close()
    assert [o.result for o in outcomes] == ["synced"] * 4 + ["retry"] + ["synced"] * 3
    assert outcomes[4].item_key == batch[4].key
    assert "Plex no longer has item 505" in (outcomes[4].error or "")
    assert sorted(refreshed_movies(fake, numbers)) == list(range(1, 9))  # 5 tried too


def test_jellyfin_a_404_among_parallel_refreshes_reports_only_that_item(fakes):
    fake, player, numbers = jellyfin_world(fakes, 8, concurrency=3)
    player.index(player.libraries()[0])
    with fake.lock:
        del fake.items[f"{5:032x}"]  # removed since it was listed
    batch = movie_targets(8)
    outcomes = player.apply(batch)
    player.close()
    assert [(o.item_key, o.result) for o in outcomes] == [(t.key, "synced") for t in batch]
    # Only the vanished item is reported, so that the server looks at its file again.
    assert fake.updates == [{"Path": player_path(5), "UpdateType": "Modified"}]
    assert sorted(refreshed_movies(fake, numbers)) == list(range(1, 9))


@pytest.mark.parametrize("kind", WORLDS)
def test_a_401_midway_stops_the_player_and_starts_no_new_refresh(fakes, kind):
    fake, player, _ = WORLDS[kind](fakes, 12, concurrency=3, latency=0.02,
                                   unauthorized_after=4)
    player.probe()
    with pytest.raises(AuthFailed):  # the engine then keeps the whole batch pending
        player.apply(movie_targets(12))
    player.close()
    # The fifth refresh got the 401; those already under way finished (each of the other
    # two workers ends at its first 401 too); none was started after.
    assert 4 < len(fake.arrived) <= 4 + 3


@pytest.mark.parametrize("kind", WORLDS)
def test_a_stop_request_midway_starts_no_new_refresh(fakes, stop_flag, kind):
    fake, player, _ = WORLDS[kind](fakes, 12, concurrency=3, latency=0.02, stop_after=4)
    player.probe()
    with pytest.raises(Interrupted):
        player.apply(movie_targets(12))
    player.close()
    # Asked to stop while the fourth refresh was at the server: at most the two others
    # under way then arrive after it.
    assert 4 <= len(fake.arrived) <= 4 + 2


@pytest.mark.parametrize("kind", WORLDS)
def test_dry_run_records_every_refresh_in_item_order_and_sends_none(fakes, kind):
    fake, player, numbers = WORLDS[kind](fakes, 10, concurrency=8, latency=0.0,
                                         dry_run=True)
    player.apply(movie_targets(10))
    player.close()
    assert fake.arrived == []
    keys = sorted(numbers, key=numbers.get)
    assert [c.split("?")[0] for c in player.commands] == [
        f"PUT /library/metadata/{k}/refresh" if kind == "plex" else f"POST /Items/{k}/Refresh"
        for k in keys]


def test_a_run_whose_refreshes_meet_a_401_midway_keeps_the_whole_batch_queued(cli, metarr,
                                                                                fakes):
    """End to end: the installed command, 12 changed movies, the fifth refresh and all
    after it refused: the player stops, nothing of the batch counts as delivered."""
    fake, _, _ = jellyfin_world(fakes, 12, latency=0.01, unauthorized_after=4)  # has all
    keys = [f"movie:{metarr.add_movie(f'Film {n:02d}', 2000 + n)}" for n in range(1, 13)]
    cli.write_config(config_with(
        metarr=metarr.path,
        sync={"initial_lookback": "all", "retry_attempts": 0, "timeout": 5},
        players=[fake.player("jelly", [("/data/media/movies", "/media/movies")],
                             concurrency=3)]))
    result = cli("run", "--json")
    assert result.returncode == 1, result.stderr
    [row] = json.loads(result.stdout)["players"]
    assert (row["status"], row["error_kind"], row["synced"]) == ("failed", "auth_failed", 0)
    assert 4 < len(fake.arrived) <= 4 + 3 and fake.updates == []
    with cli.state() as state:
        queue = state.execute("SELECT item_key, status FROM sync_queue WHERE player = "
                              "'jelly' ORDER BY item_key").fetchall()
    assert [tuple(r) for r in queue] == sorted((key, "pending") for key in keys)


# --- the helper -------------------------------------------------------------------------

def test_bounded_map_returns_results_in_item_order_with_at_most_limit_running():
    running, most, lock = 0, 0, threading.Lock()
    release = threading.Barrier(3)

    def call(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        if n < 3:
            release.wait(timeout=5)  # the first three meet: three ran at once
        with lock:
            running -= 1
        return n * n

    assert bounded_map(call, list(range(10)), 3) == [n * n for n in range(10)]
    assert most == 3


def test_bounded_map_with_limit_one_runs_in_the_calling_thread_in_order():
    seen: list[tuple[int, str]] = []
    assert bounded_map(lambda n: seen.append((n, threading.current_thread().name)) or n,
                       [3, 1, 2], 1) == [3, 1, 2]
    assert seen == [(3, threading.current_thread().name), (1, threading.current_thread().name),
                    (2, threading.current_thread().name)]


def test_bounded_map_raises_the_first_failure_in_item_order_and_starts_nothing_after():
    started: list[int] = []
    failed = threading.Event()

    def call(n: int) -> int:
        started.append(n)
        if n == 0:
            failed.wait(timeout=5)
            time.sleep(0.2)  # long after item 1's failure was seen
            raise base.PlayerOffline("item 0")  # last in time, first in item order
        if n == 1:
            failed.set()
            raise base.PlayerTimeout("item 1")
        return n

    with pytest.raises(base.PlayerOffline, match="item 0"):
        bounded_map(call, list(range(20)), 2)
    assert sorted(started) == [0, 1]  # both workers stopped at their failure


# --- memory: what a listing keeps -------------------------------------------------------

def kept(root: Any) -> list[Any]:
    """Every object `root` keeps alive (what its references reach), leaving out classes
    and the attribute dicts of the objects themselves."""
    seen: dict[int, Any] = {}
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen[id(obj)] = obj
        todo.extend(gc.get_referents(obj))
    attributes = {id(vars(o)) for o in seen.values() if hasattr(o, "__dict__")}
    return [o for o in seen.values() if id(o) not in attributes]


#: What a listing may be made of: a few objects holding byte arrays, and small numbers.
COMPACT = {"Listing", "Index", "ItemIds", "CompactIndex", "IdSet", "bytearray", "list", "set",
           "int", "str"}


def test_a_plex_listing_keeps_rating_keys_in_byte_arrays_not_the_answers(fakes):
    fake, player, numbers = plex_world(fakes, 40, latency=0.0)
    with fake.lock:
        fake.items["510"].guids = ["imdb://tt0000010", "tmdb://10"]
        fake.items["520"].deleted = True
    listing = player.listing(player.sections()[0], TYPE_MOVIE)
    player.close()
    objects = kept(listing)
    assert {type(o).__name__ for o in objects} <= COMPACT  # no dict, no answer
    assert [o for o in objects if isinstance(o, str)] == []  # not even a path
    assert sum(len(o) for o in objects if isinstance(o, bytearray)) < 40 * 64
    assert len(listing) == 40
    # and it still answers everything matching asks
    assert listing.by_path(player_path(7)) == ["507"]
    assert listing.by_path("/media/movies/Film 07 (2007)/other.mkv") == []
    assert listing.by_guid({"imdb": "tt0000010"}) == listing.by_guid({"tmdb": "10"}) == ["510"]
    assert listing.missing() == {"520"}


def test_a_jellyfin_index_keeps_ids_in_byte_arrays_not_the_answers(fakes):
    fake, player, _ = jellyfin_world(fakes, 30, latency=0.0)
    with fake.lock:
        fake.items[f"{9:032x}"].provider_ids = {"Tmdb": "9009", "Imdb": "tt9"}
    index = player.index(player.libraries()[0])
    player.close()
    objects = kept(index)
    assert {type(o).__name__ for o in objects} <= COMPACT  # no dict, no answer
    assert [o for o in objects if isinstance(o, str)] == []  # not even a path or an id
    assert sum(len(o) for o in objects if isinstance(o, bytearray)) < 30 * 80
    assert len(index) == 30
    assert index.at_path(player_path(9), "Movie") == [f"{9:032x}"]
    assert index.at_path(player_path(9), "Series") == []
    assert index.with_ids({"tmdb": "9009"}, "Movie") == [f"{9:032x}"]
    assert index.with_ids({"tvdb": "9009"}, "Movie") == []


def test_compact_index_is_a_multimap_that_grows_without_losing_entries():
    index = CompactIndex()
    for n in range(20_000):
        index.add(f"/media/tv/Show {n % 997}/e{n}.mkv", n)
    index.add("/media/tv/Show 1/e1.mkv", 123_456)  # a second item at one path
    assert len(index) == 20_001
    assert all(index.get(f"/media/tv/Show {n % 997}/e{n}.mkv") == [n]
               for n in range(0, 20_000, 7) if n != 1)
    assert index.get("/media/tv/Show 1/e1.mkv") == [1, 123_456]
    assert index.get("/media/tv/Show 1/e20000.mkv") == []


def test_the_ids_a_run_listed_are_kept_as_digests_not_strings():
    """A run remembers every id a listing returned (Jellyfin, Plex: to confirm nothing
    twice): 250,000 of them as a set of str cost 28 MB; as digests a fifth of that."""
    ids = IdSet(f"{n:032x}" for n in range(50_000))
    ids |= ["510", "510", f"{7:032x}"]
    ids.add("510")
    assert len(ids) == 50_001
    assert f"{49_999:032x}" in ids and "510" in ids
    assert f"{50_000:032x}" not in ids and 510 not in ids and "" not in ids
    objects = kept(ids)
    assert [o for o in objects if isinstance(o, str)] == []
    assert sum(len(o) for o in objects if isinstance(o, bytearray)) < 50_001 * 24
    ids.clear()
    assert len(ids) == 0 and "510" not in ids


@pytest.mark.parametrize("item_id", [
    "0", "7", "123456789", "1" * 38, "0012", "-5", "+5", " 5", "5 ",
    "f137a2dd21bbc1b99aa5c0f6bf02a805", "F137A2DD21BBC1B99AA5C0F6BF02A805",
    "f137a2dd-21bb-c1b9-9aa5-c0f6bf02a805", "abc", "", "ünïcode", "1" * 50])
def test_item_ids_read_back_exactly_as_the_server_sent_them(item_id):
    ids = ItemIds()
    first = ids.add("42")
    number = ids.add(item_id)
    assert (ids[first], ids[number]) == ("42", item_id)


# --- the configuration key --------------------------------------------------------------

def parsed(tmp_path, **player: Any) -> PlayerConfig:
    doc = {"players": {"p": {"type": "plex", "url": "http://127.0.0.1:32400",
                             "token": "t0ken-x", **player}}}
    return parse_config(doc, tmp_path / "config.toml").players["p"]


def test_concurrency_defaults_to_four_and_takes_one_to_sixteen(tmp_path):
    assert parsed(tmp_path).concurrency == 4
    assert parsed(tmp_path, concurrency=1).concurrency == 1
    assert parsed(tmp_path, concurrency=16).concurrency == 16
    with pytest.raises(ConfigError) as caught:
        parsed(tmp_path, concurrency=17)
    assert caught.value.problems == [
        f"{tmp_path / 'config.toml'}: players.p.concurrency: must be between 1 and 16 "
        "(refresh requests in flight at once), not 17"]


@pytest.mark.parametrize("line, fragments", [
    ("concurrency = 0", ["players.p.concurrency", "between 1 and 16", "not 0"]),
    ("concurrency = 17", ["players.p.concurrency", "between 1 and 16", "not 17"]),
    ("concurrency = -2", ["players.p.concurrency", "between 1 and 16", "not -2"]),
    ('concurrency = "4"', ["players.p.concurrency", "must be an integer", "'4'"]),
    ("concurrency = true", ["players.p.concurrency", "must be an integer", "boolean"]),
    ("concurrency = 2.5", ["players.p.concurrency", "must be an integer"]),
])
def test_a_bad_concurrency_exits_3_naming_the_file_and_the_key(cli, line, fragments):
    cli.write_config('[metarr]\ndatabase = "/nonexistent/metarr.sqlite"\n\n[players.p]\n'
                     'type = "plex"\nurl = "http://127.0.0.1:9"\ntoken = "t0ken-x"\n'
                     f"{line}\n")
    result = cli("run")
    assert result.returncode == 3
    [message] = result.stderr.strip().splitlines()
    assert str(cli.config) in message
    for fragment in fragments:
        assert fragment in message
    assert "Traceback" not in result.stderr


def test_concurrency_is_not_a_setting_of_kodi_players(cli):
    cli.write_config('[metarr]\ndatabase = "/nonexistent/metarr.sqlite"\n\n[players.tv]\n'
                     'type = "kodi"\nurl = "http://127.0.0.1:9"\nconcurrency = 2\n')
    result = cli("run")
    assert result.returncode == 3
    assert "players.tv.concurrency: not a setting of kodi players" in result.stderr


def test_a_run_bounds_glibcs_heaps_before_its_threads_start(monkeypatch):
    """Two heaps, and blocks of 256 KB or more mapped apart (see engine._bound_the_heap:
    the 10,000-change benchmark's peak RSS 153 -> 145 MB); on Linux only."""
    import ctypes
    import sys

    from metarr_sync import engine

    calls: list[tuple[int, int]] = []

    class Libc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(ctypes, "CDLL", lambda name: Libc())
    engine._bound_the_heap()
    assert calls == ([(-8, 2), (-3, 256 * 1024)] if sys.platform.startswith("linux") else [])
    calls.clear()
    monkeypatch.setattr(sys, "platform", "darwin")
    engine._bound_the_heap()
    assert calls == []
