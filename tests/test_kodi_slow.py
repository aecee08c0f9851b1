"""Slow Kodi boxes, with the installed `metarr-sync run` against the fake Kodi.

Kodi answers a JSON-RPC batch of refreshes only after working through it (measured: 120
RefreshMovie calls answered after 7.3-10 s on tiny local files). The fake does the same
(`refresh_seconds` per refresh): a hundred movies at 50 ms a refresh is 5 s of work, five
times the 1 s timeout of these tests, so a batch of 100 — what every run sent before —
times out, and a run that resent it would refresh movies twice. The run now sizes its
batches from the answer times, completes without a timeout, and refreshes each movie
exactly once. A Kodi that never answers ends with its items failed after max_attempts
runs, not pending for ever.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import pytest
from support.configs import config_with
from support.fake_players import FakeKodi

from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.metarr import Item
from metarr_sync.plan import build_plan
from metarr_sync.players.base import PlayerTimeout
from metarr_sync.players.batching import BatchSizer
from metarr_sync.players.kodi import KodiPlayer

MOVIES = 100
REFRESH_SECONDS = 0.05
TIMEOUT = 1

def one_kodi(db: object, kodi: FakeKodi, timeout: float) -> str:
    """lounge maps Metarr's library to /mnt; no retries, every item from the start."""
    return config_with(
        metarr=str(db), sync={"timeout": timeout, "retry_attempts": 0, "initial_lookback": "all"},
        players=[kodi.player("lounge", [("/data/media", "/mnt")])])


def movie_file(n: int) -> str:
    return f"/mnt/movies/Movie {n:03d} (2000)/Movie {n:03d} (2000).mkv"


@pytest.fixture
def slow_kodi():
    """A fake Kodi that already has the hundred movies, and works 50 ms on each refresh."""
    with FakeKodi(sources={"/mnt/movies/": "movies"}, refresh_seconds=REFRESH_SECONDS) as kodi:
        for n in range(MOVIES):
            kodi.add_file(movie_file(n))
            kodi.movies[n + 1] = movie_file(n)
        kodi._next = MOVIES
        yield kodi


def refresh_posts(kodi: FakeKodi) -> list[list[dict]]:
    """The calls of each POST that carried refreshes, as the fake received them."""
    posts = []
    for request in kodi.received("VideoLibrary.Refresh"):
        body = request.json
        posts.append(body if isinstance(body, list) else [body])
    return posts


def test_a_hundred_refreshes_that_would_outlast_the_timeout_go_through_each_once(
        cli, metarr, slow_kodi):
    for n in range(MOVIES):
        metarr.add_movie(f"Movie {n:03d}", 2000)
    cli.write_config(one_kodi(metarr.path, slow_kodi, TIMEOUT))
    result = cli("run", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    (row,) = json.loads(result.stdout)["players"]
    assert (row["status"], row["synced"], row["verified"], row["error"]) == (
        "synced", MOVIES, MOVIES, None)
    # Each movie refreshed exactly once: nothing was sent again.
    assert Counter(slow_kodi.refreshed) == Counter(movie_file(n) for n in range(MOVIES))
    posts = refresh_posts(slow_kodi)
    assert sum(len(p) for p in posts) == MOVIES
    # Each batch was planned to take a quarter of the timeout (5 refreshes here), so
    # none came near it; the first was small.
    assert len(posts[0]) == 5
    assert max(len(p) for p in posts) * REFRESH_SECONDS <= TIMEOUT / 2
    assert row["requests"] == slow_kodi.count()
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0


def test_a_fixed_batch_of_a_hundred_as_before_times_out_against_the_same_kodi(slow_kodi):
    """What every run did before batches were sized: the same hundred refreshes in one
    POST do not fit in the timeout; its items are `sent`, none is sent twice."""
    mappings = [Mapping("/data/media", "/mnt")]
    player = KodiPlayer(PlayerConfig(name="lounge", type="kodi", url=slow_kodi.url,
                                     mappings=mappings),
                        SyncConfig(timeout=TIMEOUT, retry_attempts=0))
    player.sizer = BatchSizer(TIMEOUT, 100, start=100)  # today's fixed batch of 100
    items = [Item("movie", n, movie_file(n).replace("/mnt", "/data/media", 1))
             for n in range(MOVIES)]
    plan = build_plan(items, mappings, batch_size=100)
    try:
        with pytest.raises(PlayerTimeout) as caught:
            player.apply(plan.targets)
    finally:
        player.close()
    assert "did not answer a batch of 100 calls (VideoLibrary.RefreshMovie) within 1 s" \
        in caught.value.message
    assert Counter(o.result for o in caught.value.settled) == {"sent": MOVIES}
    assert [len(p) for p in refresh_posts(slow_kodi)] == [100]


def test_a_kodi_that_never_answers_ends_with_its_items_failed_after_max_attempts(
        cli, metarr):
    with FakeKodi(sources={"/mnt/movies/": "movies"}) as kodi:
        kodi.add_file(movie_file(1), movie_file(2))
        kodi.misbehave("hang")  # takes every request, never answers
        for n in (1, 2):
            metarr.add_movie(f"Movie {n:03d}", 2000)
        cli.write_config(one_kodi(metarr.path, kodi, 0.5))
        cause = f"{kodi.url} did not answer within 0.5 s"

        def queue() -> list[tuple[str, int, str]]:
            listed = cli("queue", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            return [(e["status"], e["attempts"], e["last_error"])
                    for e in json.loads(listed.stdout)["entries"]]

        for run in range(1, 6):  # max_attempts is 5 by default
            result = cli("run", "--json")
            assert result.returncode == 1, result.stdout + result.stderr
            (row,) = json.loads(result.stdout)["players"]
            assert (row["status"], row["error_kind"], row["error"]) == (
                "failed", "timeout", cause)
            if run < 5:
                assert queue() == [("pending", run, cause)] * 2
        gave_up = (f"{cause} (failed 5 runs in a row: given up until a person runs "
                   "`metarr-sync queue retry`)")
        assert queue() == [("failed", 5, gave_up)] * 2
        table = cli("queue", "list")
        assert table.returncode == 0
        assert table.stdout.count("failed 5 runs in a row") == 2
        assert kodi.calls("VideoLibrary.") == 0  # it never got as far as the library


class StallingKodi(FakeKodi):
    """Works through the second request of refreshes for two seconds (a NAS spinning up),
    longer than the client waits; carries it out all the same, as Kodi does."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.refresh_requests = 0
        self.stalled_done = threading.Event()  # the stalled request was carried out

    def work(self, request) -> None:
        super().work(request)
        if "VideoLibrary.Refresh" in request.endpoint:
            self.refresh_requests += 1
            if self.refresh_requests == 2:
                time.sleep(2)
                request.stalled = True

    def handle(self, request):
        reply = super().handle(request)
        if getattr(request, "stalled", False):
            self.stalled_done.set()
        return reply


@pytest.mark.parametrize("verify", [True, False], ids=["verified", "no-verify"])
def test_a_batch_that_times_out_is_looked_up_next_run_not_sent_again(cli, metarr, verify):
    with StallingKodi(sources={"/mnt/movies/": "movies"}) as kodi:
        for n in range(20):
            kodi.add_file(movie_file(n))
            kodi.movies[n + 1] = movie_file(n)
            metarr.add_movie(f"Movie {n:03d}", 2000)
        kodi._next = 20
        cli.write_config(one_kodi(metarr.path, kodi, TIMEOUT))
        flags = () if verify else ("--no-verify",)

        def queue() -> Counter:
            with cli.state() as state:
                return Counter(r[0] for r in state.execute("SELECT status FROM sync_queue"))

        first = cli("run", "--json", *flags)
        assert first.returncode == 1, first.stdout + first.stderr
        (row,) = json.loads(first.stdout)["players"]
        assert row["error_kind"] == "timeout"
        assert "did not answer a batch of 10 calls (VideoLibrary.RefreshMovie)" in row["error"]
        # The five answered and the ten Kodi may be carrying out are delivered (sent, to
        # be verified); the last five were not tried. Without verification the five
        # answered are done, and nobody would look for the ten: they are tried again.
        assert queue() == ({"sent": 15, "pending": 5} if verify else {"pending": 15})
        # Kodi finishes that batch before the next run (runs are minutes apart).
        assert kodi.stalled_done.wait(10)
        second = cli("run", "--json", *flags)
        assert second.returncode == 0, second.stdout + second.stderr
        assert queue() == Counter()
        refreshed = Counter(kodi.refreshed)
        if verify:
            # Looked up first (all there), never sent again: each refreshed exactly once.
            assert refreshed == Counter(movie_file(n) for n in range(20))
        else:
            # The ten of the batch that timed out went again: twice each, the rest once.
            assert sorted(refreshed.values()) == [1] * 10 + [2] * 10
