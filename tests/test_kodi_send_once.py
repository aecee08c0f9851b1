"""Kodi's library-changing calls reach Kodi at most once, over real sockets.

Against the fake Kodi of tests/support/fake_players.py (a real HTTP server, so urllib3's
own retries run, not an emulation of them): a scan, refresh, clean or removal that was
sent is never sent again — a second scan stops the first one and drops itself, a second
refresh fails on the id the first one invalidated (../shared/PLAYERS.md) — while one that
never got a connection is retried, and read-only calls keep every retry.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from support.fake_players import FakeKodi

from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.metarr import Item
from metarr_sync.plan import build_plan
from metarr_sync.players.base import PlayerError, PlayerTimeout
from metarr_sync.players.kodi import KodiPlayer

MAPPINGS = [Mapping("/data/media", "/mnt")]
RETRIES = 2
TIMEOUT = 0.5
HEAT = "/mnt/movies/Heat (1995)/Heat (1995).mkv"
ALIEN = "/mnt/movies/Alien (1979)/Alien (1979).mkv"


@pytest.fixture
def fake() -> Iterator[FakeKodi]:
    with FakeKodi(sources={"/mnt/movies/": "movies"}) as server:
        server.add_file(HEAT, ALIEN)
        yield server


def player_for(fake: FakeKodi) -> KodiPlayer:
    config = PlayerConfig(name="lounge", type="kodi", url=fake.url, mappings=MAPPINGS)
    return KodiPlayer(config, SyncConfig(timeout=TIMEOUT, retry_attempts=RETRIES))


def batch_of(*files: str):
    items = [Item("movie", n, file.replace("/mnt", "/data/media", 1), title=file)
             for n, file in enumerate(files, 1)]
    plan = build_plan(items, MAPPINGS, batch_size=100)
    assert not plan.errors, plan.errors
    return plan.targets


def test_a_scan_whose_answer_times_out_is_sent_once_and_its_item_is_sent(fake):
    fake.misbehave("hang", match="VideoLibrary.Scan")
    player = player_for(fake)
    with pytest.raises(PlayerTimeout) as caught:
        player.apply(batch_of(HEAT))
    assert fake.count("VideoLibrary.Scan") == 1
    assert caught.value.message == (
        f"Kodi at {fake.url} did not answer VideoLibrary.Scan within {TIMEOUT:g} s; Kodi "
        "may have received it and may be carrying it out, so it was not sent again (Kodi "
        "must not get it twice); its items are looked up in Kodi before anything is sent "
        "for them again")
    # Kodi may be scanning the folder: the item is sent (to be verified), not pending.
    assert [(o.item_key, o.result) for o in caught.value.settled] == [("movie:1", "sent")]
    assert player.requests == fake.count()
    player.close()


def test_a_refresh_batch_answered_503_is_sent_once(fake):
    fake.movies.update({1: HEAT, 2: ALIEN})
    fake.misbehave("503", match="VideoLibrary.RefreshMovie", retry_after=1)
    player = player_for(fake)
    with pytest.raises(PlayerError) as caught:
        player.apply(batch_of(HEAT, ALIEN))
    assert "503 Service Unavailable" in caught.value.message
    assert fake.count("VideoLibrary.RefreshMovie") == 1
    assert fake.calls("VideoLibrary.RefreshMovie") == 2  # the two refreshes, one batch
    player.close()


def test_a_refresh_batch_that_timed_out_is_not_sent_again_to_fail_on_stale_ids(fake):
    fake.movies.update({1: HEAT, 2: ALIEN})
    fake.misbehave("hang", match="VideoLibrary.RefreshMovie")
    player = player_for(fake)
    with pytest.raises(PlayerTimeout) as caught:
        player.apply(batch_of(HEAT, ALIEN))
    assert "did not answer a batch of 2 calls (VideoLibrary.RefreshMovie)" \
        in caught.value.message
    assert fake.count("VideoLibrary.RefreshMovie") == 1
    assert sorted((o.item_key, o.result) for o in caught.value.settled) == [
        ("movie:1", "sent"), ("movie:2", "sent")]
    player.close()


def test_a_scan_whose_connection_is_refused_is_retried_once_kodi_is_back(fake):
    player = player_for(fake)
    wait_idle = player.kodi.wait_idle
    timers: list[threading.Timer] = []

    def kodi_goes_away_before_the_scan() -> None:
        wait_idle()
        # Kodi stops listening right before the scan, and is back 0.3 s later: within
        # urllib3's retries (at once, then after 1 s) of a connection that was refused.
        fake.misbehave("refused")
        timers.append(threading.Timer(0.3, fake.heal))
        timers[-1].start()

    player.kodi.wait_idle = kodi_goes_away_before_the_scan  # type: ignore[method-assign]
    outcomes = player.apply(batch_of(HEAT))
    for timer in timers:
        timer.join()
    assert [o.result for o in outcomes] == ["synced"]
    assert fake.scans == ["/mnt/movies/Heat (1995)/"]  # exactly once, when it was back
    assert fake.library_files() == {HEAT}
    player.close()


def test_a_listing_that_times_out_once_is_still_retried(fake):
    fake.movies[1] = HEAT
    fake.misbehave("hang", times=1, match="VideoLibrary.GetMovies")
    player = player_for(fake)
    outcomes = player.apply(batch_of(HEAT))
    assert [o.result for o in outcomes] == ["synced"]
    assert fake.count("VideoLibrary.GetMovies") == 2
    assert fake.count("VideoLibrary.RefreshMovie") == 1
    player.close()
