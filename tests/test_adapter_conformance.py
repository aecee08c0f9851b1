"""One conformance suite that every adapter runs against its fake player.

As restic runs one test suite on every storage backend, each player adapter (Kodi,
Jellyfin, Emby, Plex) is driven here through the same Player contract of
metarr_sync/players/base.py against its fake of tests/support/fake_players.py, a real HTTP
server on 127.0.0.1: probe, apply (a new item, a changed item, a removal whose media is
gone from disk), finish, verify, and every failure mapped to one kind of the error
taxonomy. What is particular to one player type stays in its own test file
(test_kodi.py, test_jellyfin.py, test_plex.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
from support.fake_players import FakeJellyfin, FakeKodi, FakePlayer, FakePlex

from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.metarr import Item
from metarr_sync.plan import Target, build_plan
from metarr_sync.players import adapter_class
from metarr_sync.players.base import (
    AuthFailed,
    Outcome,
    Player,
    PlayerError,
    PlayerOffline,
    PlayerTimeout,
    ProtocolError,
    Rejected,
)

SECRET = "conformance-Secret-41c7"
RETRIES = 1
TIMEOUT = 0.5
HEAT = "/data/media/movies/Heat (1995)/Heat (1995).mkv"


@dataclass
class Rig:
    """One adapter type, its fake, and how to read what the fake did."""

    type: str
    fake: FakePlayer
    root: str  # where the fake player sees Metarr's /data/media
    credentials: dict[str, str]
    #: Files (or Kodi's show folders) the player was asked to re-read, in order.
    refreshed: Callable[[], list[str]]
    #: Folders the player was asked to scan (Jellyfin: paths reported as changed).
    scanned: Callable[[], list[str]]
    #: Whole-library scans and cleans: never sent for one item.
    wholesale: Callable[[], int]
    #: What the player deleted from its library for good (Kodi's Remove*, Plex's trash).
    deleted: Callable[[], list[str]]
    made: list[Player] = field(default_factory=list)

    def player(self, url: str | None = None, **sync: object) -> Player:
        config = PlayerConfig(name="den", type=self.type, url=url or self.fake.url,
                              mappings=[Mapping("/data/media", self.root)],
                              **self.credentials)
        settings = SyncConfig(**{"timeout": TIMEOUT, "retry_attempts": RETRIES, **sync})
        player = adapter_class(self.type)(config, settings)
        self.made.append(player)
        return player

    def on_disk(self, metarr_path: str) -> str:
        """Put the file on the player's disk; its path as the player spells it."""
        path = self.root + metarr_path.removeprefix("/data/media")
        self.fake.add_file(path)
        return path

    def library(self) -> set[str]:
        """What the player lists now (Plex: once its background scans have run)."""
        return self.fake.library_files()


def _plex_refreshed(fake: FakePlex) -> list[str]:
    return [fake.items[key].file for key in fake.refreshed if key in fake.items]


def _jellyfin_refreshed(fake: FakeJellyfin) -> list[str]:
    return [fake.items[item].path for item, _ in fake.refreshed if item in fake.items]


def make_rig(kind: str) -> Rig:
    if kind == "kodi":
        kodi = FakeKodi(username="kodi", password=SECRET)
        return Rig("kodi", kodi, "/mnt", {"username": "kodi", "password_value": SECRET},
                   lambda: list(kodi.refreshed), lambda: list(kodi.scans),
                   lambda: kodi.full_scans + kodi.full_cleans, lambda: list(kodi.removed))
    if kind == "plex":
        plex = FakePlex(token=SECRET)
        return Rig("plex", plex, "/media", {"token_value": SECRET},
                   lambda: _plex_refreshed(plex), lambda: [p for _, p in plex.scans],
                   lambda: plex.full_scans, lambda: list(plex.purged))
    jelly = FakeJellyfin(token=SECRET, emby=kind == "emby")
    return Rig(kind, jelly, "/media", {"token_value": SECRET},
               lambda: _jellyfin_refreshed(jelly),
               lambda: [u["Path"] for u in jelly.updates],
               lambda: jelly.count("POST /Library/Refresh"), list)


KINDS = ["kodi", "jellyfin", "emby", "plex"]


@pytest.fixture(params=KINDS)
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    made = make_rig(request.param)
    made.fake.start()
    try:
        yield made
    finally:
        for player in made.made:
            player.close()
        made.fake.stop()


def heat(*, removed: bool = False) -> Item:
    return Item("movie", 1, HEAT, title="Heat", removed=removed)


def targets_of(rig: Rig, *items: Item) -> list[Target]:
    plan = build_plan(items, [Mapping("/data/media", rig.root)], batch_size=100)
    assert not plan.errors, plan.errors
    return plan.targets


def results(outcomes: list[Outcome]) -> list[tuple[str, str]]:
    return [(o.item_key, o.result) for o in outcomes]


def delivered(rig: Rig, player: Player, items: list[Item]) -> list[Outcome]:
    """apply + finish + verify, as one run (and, for background scanners, the next)."""
    batch = targets_of(rig, *items)
    outcomes = player.apply(batch)
    assert results(outcomes) == [(i.key, "synced") for i in items], outcomes
    assert player.finish() == []
    player.removing = [t for t in batch if t.item.removed]
    return player.verify(batch)


# --- probe ---------------------------------------------------------------------------------


def test_probe_reports_the_version_and_the_library_roots_and_changes_nothing(rig):
    result = rig.player().probe()
    assert result.version
    assert result.steps and all(step.ok for step in result.steps), result.steps
    assert any(root.startswith(rig.root + "/") or root == rig.root for root in result.roots)
    assert rig.player().commands == []
    assert rig.scanned() == [] and rig.refreshed() == [] and rig.wholesale() == 0
    assert SECRET not in " ".join(r.path + str(r.query) for r in rig.fake.received())


# --- apply, finish, verify -----------------------------------------------------------------


def test_a_new_item_is_scanned_in_its_folder_and_verified(rig):
    file = rig.on_disk(HEAT)
    player = rig.player()
    player.probe()
    verified = delivered(rig, player, [heat()])
    assert results(verified) == [("movie:1", "synced")]
    assert file in rig.library()
    folder = file.rsplit("/", 1)[0]
    assert rig.scanned() and all(s.rstrip("/") in (folder, file) for s in rig.scanned()), \
        rig.scanned()
    assert rig.wholesale() == 0 and rig.deleted() == []
    assert player.commands and player.requests == rig.fake.count()


def test_a_changed_item_the_player_has_is_refreshed_not_scanned(rig):
    file = rig.on_disk(HEAT)
    delivered(rig, rig.player(), [heat()])  # the player has it now
    scans = len(rig.scanned())
    player = rig.player()
    player.probe()
    verified = delivered(rig, player, [heat()])
    assert results(verified) == [("movie:1", "synced")]
    assert rig.refreshed() == [file]
    assert len(rig.scanned()) == scans  # no new scan for an item the player knows
    assert rig.wholesale() == 0


def test_a_removal_whose_media_is_gone_leaves_the_library_and_is_verified(rig):
    file = rig.on_disk(HEAT)
    delivered(rig, rig.player(), [heat()])
    assert file in rig.library()
    rig.fake.remove_file(file)
    player = rig.player()
    player.probe()
    verified = delivered(rig, player, [heat(removed=True)])
    assert results(verified) == [("movie:1", "synced")]
    assert file not in rig.library()
    assert rig.wholesale() == 0  # never a full scan or clean for one item
    assert set(rig.deleted()) <= {file}  # nothing else left the library for good


def test_an_item_the_player_does_not_show_is_unverified_with_a_cause(rig):
    player = rig.player()
    player.probe()
    # Not on the player's disk: the scan finds nothing, the player never lists it.
    batch = targets_of(rig, heat())
    player.apply(batch)
    player.finish()
    (outcome,) = player.verify(batch)
    assert (outcome.item_key, outcome.result) == ("movie:1", "unverified")
    assert outcome.error


def test_an_empty_batch_changes_nothing(rig):
    player = rig.player()
    assert player.verify([]) == []
    assert player.apply([]) == []
    assert player.commands == [] and rig.scanned() == [] and rig.refreshed() == []


# --- errors mapped to the taxonomy ---------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def caught(call: Callable[[], object], kind: type[PlayerError]) -> PlayerError:
    with pytest.raises(PlayerError) as info:
        call()
    error = info.value
    assert type(error) is kind or (kind is PlayerError and type(error) is PlayerError), \
        f"{type(error).__name__}: {error.message}"
    assert SECRET not in error.message
    return error


def test_a_refused_connection_is_offline(rig):
    rig.fake.misbehave("refused")
    player = rig.player()
    error = caught(player.probe, PlayerOffline)
    assert error.kind == "offline" and error.transient
    assert "refused the connection" in error.message
    assert player.requests == 1  # urllib3's connection retries are not counted again


def test_a_closed_port_is_offline_in_apply_too(rig):
    player = rig.player(url=f"http://127.0.0.1:{_closed_port()}")
    assert caught(lambda: player.apply(targets_of(rig, heat())), PlayerOffline).transient


def test_401_is_auth_failed_and_not_retried(rig):
    rig.fake.misbehave(401)
    error = caught(rig.player().probe, AuthFailed)
    assert error.kind == "auth_failed" and not error.transient
    assert "(HTTP 401)" in error.message
    assert rig.fake.count() == 1


def test_403_is_rejected_and_not_retried(rig):
    rig.fake.misbehave(403)
    error = caught(rig.player().probe, Rejected)
    assert error.kind == "rejected" and not error.transient
    assert "403" in error.message
    assert rig.fake.count() == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_server_error_that_lasts_is_retried_then_transient(rig, status):
    rig.fake.misbehave(status, retry_after=0)
    error = caught(rig.player().probe, PlayerError)
    assert error.kind == "error" and error.transient
    assert str(status) in error.message
    assert rig.fake.count() == 1 + RETRIES  # every read is retried


def test_a_server_error_once_is_retried_and_the_probe_succeeds(rig):
    rig.fake.misbehave(503, times=1, retry_after=0)
    assert rig.player().probe().version
    assert rig.fake.fault_hits() == 1


def test_no_answer_in_time_is_a_timeout(rig):
    rig.fake.misbehave("hang")
    error = caught(rig.player().probe, PlayerTimeout)
    assert error.kind == "timeout" and error.transient
    assert f"did not answer within {TIMEOUT:g} s" in error.message


@pytest.mark.parametrize(("fault", "words"), [
    ("truncated", "sent malformed or truncated JSON"),
    ("html", "answered with an HTML page instead of JSON"),
    ("redirect", "wrong URL or base path"),
])
def test_an_answer_that_is_not_the_api_is_a_protocol_error(rig, fault, words):
    rig.fake.misbehave(fault)
    error = caught(rig.player().probe, ProtocolError)
    assert error.kind == "protocol_error" and words in error.message
    assert rig.fake.count() == 1  # not the API: neither asked again nor followed


def test_a_failure_in_apply_is_raised_for_the_whole_player(rig):
    rig.on_disk(HEAT)
    player = rig.player()
    player.probe()
    rig.fake.misbehave(401)
    error = caught(lambda: player.apply(targets_of(rig, heat())), AuthFailed)
    assert error.settled == []  # nothing of the batch was sent
    assert rig.scanned() == [] and rig.refreshed() == []
