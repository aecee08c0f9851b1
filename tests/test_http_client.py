"""HttpClient, the one HTTP client of the adapters: what it sends is what requests would
send, its request count is exact when several threads share it, its connection pool has
room for every refresh in flight, it spends no CPU on debug text nobody reads, and a
request that must not run twice (resend=False) is sent again only when it cannot have
reached the player."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses
from support.fake_players import FakeJellyfin

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.players.base import PlayerError, PlayerOffline, PlayerTimeout, ProtocolError
from metarr_sync.players.http import HttpClient, MaybeReceived

HEADERS = {"X-Plex-Token": "t0ken-x", "Accept": "application/json"}

# (method, path, params, JSON body, auth): every shape of call the adapters make.
CALLS = [
    ("GET", "/library/sections/1/refresh", {"path": "/data/Movies/Heat (1995) é&x=1+2"},
     None, None),
    ("GET", "/Items", {"parentId": "abc", "includeItemTypes": ["Movie", "Series"],
                       "fields": ["Path", "ProviderIds"], "startIndex": 0, "limit": 500,
                       "dropped": None, "flag": True}, None, None),
    ("POST", "/Items/ab%2Fc/Refresh", {"metadataRefreshMode": "Default"}, None, None),
    ("POST", "/Library/Media/Updated", None,
     {"Updates": [{"Path": "/média/x y", "UpdateType": "Created"}]}, None),
    ("POST", "/jsonrpc", None, {"jsonrpc": "2.0", "method": "JSONRPC.Ping", "id": 1},
     ("kodi", "pässword")),
    ("PUT", "/library/metadata/10/refresh", None, None, None),
    ("GET", "/path with space/ü", {}, None, None),
    ("GET", "/all-none", {"x": None}, None, None),
]


@pytest.mark.parametrize("base", ["http://127.0.0.1:8096", "http://host:8096/jellyfin/",
                                  "https://médias.example:8920/base path"])
@pytest.mark.parametrize("call", CALLS, ids=lambda c: f"{c[0]} {c[1]}")
def test_a_request_is_prepared_exactly_as_requests_prepares_it(base, call):
    """The client prepares requests itself (Session.request costs a third more CPU per
    request); the URL, headers and body must not differ by one byte."""
    method, path, params, body, auth = call
    client = HttpClient(PlayerConfig(name="p", type="jellyfin", url=base), SyncConfig(),
                        headers=HEADERS)
    mine = client._prepare(method, path, params, body, auth)
    theirs = client.session.prepare_request(requests.Request(
        method, client.base + path, params=params, json=body, auth=auth))
    assert (mine.method, mine.url, mine.body) == (theirs.method, theirs.url, theirs.body)
    assert dict(mine.headers) == dict(theirs.headers)
    client.close()


def test_cookies_a_player_set_are_sent_back(fake):
    client = HttpClient(PlayerConfig(name="p", type="jellyfin", url=fake.url), SyncConfig())
    client.session.cookies.set("session", "abc", domain="127.0.0.1", path="/")
    client.request("GET", "/System/Info/Public")
    assert fake.received()[-1].header("Cookie") == "session=abc"
    client.close()


@pytest.fixture
def fake() -> Iterator[FakeJellyfin]:
    with FakeJellyfin(latency=0.005) as server:
        yield server


def client_for(fake: FakeJellyfin, **settings: Any) -> HttpClient:
    config = PlayerConfig(name="lounge", type="jellyfin", url=fake.url, **settings)
    return HttpClient(config, SyncConfig(timeout=5, retry_attempts=0))


def test_the_request_count_is_exact_with_eight_threads_sharing_the_client(fake):
    client = client_for(fake, concurrency=8)

    def send() -> None:
        for _ in range(40):
            client.request("GET", "/System/Info/Public")

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.requests == fake.count() == 320
    client.close()


@pytest.mark.parametrize("concurrency", [4, 16])
def test_the_pool_keeps_a_connection_for_every_refresh_in_flight(fake, caplog, concurrency):
    client = client_for(fake, concurrency=concurrency)
    barrier = threading.Barrier(concurrency)

    def send() -> None:
        barrier.wait(timeout=5)  # all at once: `concurrency` connections open together
        for _ in range(3):
            client.request("GET", "/System/Info/Public")

    with caplog.at_level(logging.WARNING, logger="urllib3.connectionpool"):
        threads = [threading.Thread(target=send) for _ in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # urllib3 warns "Connection pool is full, discarding connection" when a connection
    # has no place to go back to: it would be opened again for the next refresh.
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []
    assert client.requests == 3 * concurrency
    client.close()


def test_debug_text_is_only_made_when_debug_logging_is_on(fake, monkeypatch):
    client = client_for(fake)
    made: list[str] = []
    describe = client.describe
    monkeypatch.setattr(client, "describe", lambda *a: made.append(a[1]) or describe(*a))
    logger = logging.getLogger("metarr_sync.http")
    original = logger.level
    try:
        logger.setLevel(logging.INFO)  # setLevel: the logger caches isEnabledFor's answers
        client.request("GET", "/System/Info/Public")
        assert made == []  # nobody reads it: not made
        client.dry_run = True
        client.request("POST", "/Items/1/Refresh", mutating=True)
        client.dry_run = False
        assert made == ["/Items/1/Refresh"]  # commands are always recorded
        logger.setLevel(logging.DEBUG)
        client.request("GET", "/System/Info/Public")
        assert made == ["/Items/1/Refresh", "/System/Info/Public"]
    finally:
        logger.setLevel(original)
        client.close()


# --- requests that must not run twice -------------------------------------------------

def once_client(url: str, *, retries: int = 2, timeout: float = 5) -> HttpClient:
    config = PlayerConfig(name="lounge", type="kodi", url=url)
    return HttpClient(config, SyncConfig(timeout=timeout, retry_attempts=retries))


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (502, None), (503, "1"),
                                                     (504, None), (429, "1")])
def test_an_answer_of_5xx_or_429_is_sent_again_only_when_resending_is_harmless(
        status, retry_after):
    url = "http://127.0.0.1:8080"
    headers = {"Retry-After": retry_after} if retry_after else {}
    client = once_client(url)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, f"{url}/jsonrpc", status=status, headers=headers, body="")
        with pytest.raises(PlayerError) as once:
            client.request("POST", "/jsonrpc", json_body={"method": "Scan"}, resend=False)
        assert len(rsps.calls) == 1
        assert str(status) in once.value.message
        with pytest.raises(PlayerError):
            client.request("POST", "/jsonrpc", json_body={"method": "Ping"})
        assert len(rsps.calls) == 1 + 3  # the usual way: retried retry_attempts times
    client.close()


def test_a_request_that_timed_out_after_it_was_sent_is_not_sent_again():
    with FakeJellyfin() as fake:
        fake.misbehave("hang", match="POST /Library/Media/Updated")
        client = once_client(fake.url, timeout=0.5)
        with pytest.raises(MaybeReceived) as caught:
            client.request("POST", "/Library/Media/Updated", json_body={}, resend=False)
        assert isinstance(caught.value, PlayerTimeout)  # same kind, same handling
        assert "did not answer within 0.5 s" in caught.value.message
        assert fake.count("POST /Library/Media/Updated") == 1
        assert client.requests == 1
        client.close()


def test_an_answer_that_broke_off_is_not_sent_again():
    with FakeJellyfin() as fake:
        fake.misbehave("reset", match="GET /System/Info/Public")
        client = once_client(fake.url)
        with pytest.raises(ProtocolError) as caught:
            client.request("GET", "/System/Info/Public", resend=False)
        assert "mid-answer" in caught.value.message
        assert fake.count() == 1
        client.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_refused_connection_is_retried_and_reaches_the_player_once_it_is_back():
    port = free_port()
    fake = FakeJellyfin(port=port)
    # urllib3 retries a refused connection at once, then after 1 s: the player is back
    # by then, and gets the request exactly once (the refusals carried nothing).
    timer = threading.Timer(0.3, fake.start)
    client = once_client(f"http://127.0.0.1:{port}", timeout=3)
    started = time.monotonic()
    timer.start()
    try:
        response = client.request("GET", "/System/Info/Public", resend=False)
        assert response is not None and response.status_code == 200
        assert time.monotonic() - started >= 0.3
        assert fake.count() == 1
    finally:
        timer.join()
        fake.stop()
        client.close()


def test_a_player_that_stays_down_is_offline_after_the_retries():
    client = once_client(f"http://127.0.0.1:{free_port()}", retries=1)
    with pytest.raises(PlayerOffline) as caught:
        client.request("POST", "/jsonrpc", json_body={}, resend=False)
    assert "refused the connection" in caught.value.message
    client.close()


def test_the_second_session_sends_the_same_headers_and_cookies():
    with FakeJellyfin() as fake:
        config = PlayerConfig(name="p", type="jellyfin", url=fake.url)
        client = HttpClient(config, SyncConfig(), headers=HEADERS)
        client.session.cookies.set("session", "abc", domain="127.0.0.1", path="/")
        client.request("GET", "/System/Info/Public")
        client.request("GET", "/System/Info/Public", resend=False)
        usual, once = fake.received()
        for name in ("X-Plex-Token", "Accept", "User-Agent", "Cookie"):
            assert once.header(name) == usual.header(name), name
        client.close()
