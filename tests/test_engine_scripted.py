"""The engine in process, as a table: a scripted adapter (tests/support/scripted_player.py)
answers probe, apply and verify; each row runs the engine once or more over a small
Metarr library and states the player's result counts and the queue rows left after
every run.

Library: three movies on a real disk, Alien, Heat and Up (in this order in a batch).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.configs import config_with, player
from support.metarr_factory import MetarrDB
from support.scripted_player import PLUGIN, SCRIPTS, Script, counts

from metarr_sync import engine
from metarr_sync.config import load_config
from metarr_sync.metarr import open_sqlite
from metarr_sync.players.base import AuthFailed, Outcome, PlayerOffline, PlayerTimeout
from metarr_sync.state import State, gave_up

ALIEN, HEAT, UP = "movie:1", "movie:2", "movie:3"
TITLES = {ALIEN: ("Alien", 1979), HEAT: ("Heat", 1995), UP: ("Up", 2009)}


def result(status: str, *, synced: int = 0, failed: int = 0, deferred: int = 0,
           verified: int = 0, held: int = 0, kept: int = 0,
           error_kind: str | None = None) -> dict[str, Any]:
    return {"status": status, "synced": synced, "failed": failed, "deferred": deferred,
            "verified": verified, "held": held, "kept": kept, "error_kind": error_kind}


def timed_out() -> PlayerTimeout:
    """The second batch's request got no answer; Heat's command was on the wire."""
    error = PlayerTimeout("lounge did not answer within 1 s")
    error.settled = [Outcome(HEAT, "sent", "no answer in time: looked up before resending")]
    return error


@dataclass
class Case:
    runs: list[Script]  # one engine run each, in order
    results: list[dict[str, Any]]  # the player's result after each run
    #: Queue rows after each run: key -> (status, attempts) or (status, attempts, cause).
    queues: list[dict[str, tuple[Any, ...]]]
    #: The adapter calls of each run, in order.
    calls: list[list[str]] | None = None
    sync: dict[str, Any] = field(default_factory=dict)
    #: Before the runs, after a first run that delivered everything: these movies' files
    #: are deleted and Metarr drops their rows (removals) ...
    removed: tuple[str, ...] = ()
    #: ... Metarr drops these rows while their files stay (no removal) ...
    dropped: tuple[str, ...] = ()
    #: ... and these are republished (updates).
    changed: tuple[str, ...] = ()


CASES: dict[str, Case] = {
    "every item delivered and verified in the run": Case(
        [Script()], [result("synced", synced=3, verified=3)], [{}],
        calls=[["probe", "apply", "verify"]]),
    "unreachable player keeps everything pending, one attempt counted": Case(
        [Script(probe=PlayerOffline("lounge refused the connection"))],
        [result("failed", failed=3, error_kind="offline")],
        [{key: ("pending", 1, "lounge refused the connection") for key in TITLES}],
        calls=[["probe"]]),
    "partial failure: one item rejected, the others verified": Case(
        [Script(batches=[{HEAT: ("failed", "rejected by the player")}])],
        [result("partial", synced=2, failed=1, verified=2)],
        [{HEAT: ("failed", 1, "rejected by the player")}]),
    "retry, then success on the next run": Case(
        [Script(batches=[{HEAT: ("retry", "player busy")}]), Script()],
        [result("partial", synced=2, failed=1, verified=2),
         result("synced", synced=1, verified=1)],
        [{HEAT: ("pending", 1, "player busy")}, {}],
        calls=[["probe", "apply", "verify"], ["probe", "apply", "verify"]]),
    "retries up to max_attempts, then failed for a person": Case(
        [Script(batches=[{HEAT: ("retry", "player busy")}])] * 2,
        [result("partial", synced=2, failed=1, verified=2),
         result("partial", failed=1)],
        [{HEAT: ("pending", 1)}, {HEAT: ("failed", 2, gave_up("player busy", 2))}],
        sync={"max_attempts": 2}),
    "player error mid-run: what it delivered and settled is sent, the rest pending": Case(
        [Script(batches=[{}, timed_out()]), Script()],
        [result("failed", synced=2, failed=1, error_kind="timeout"),
         result("synced", synced=1, verified=3)],
        [{ALIEN: ("sent", 1, None),
          HEAT: ("sent", 1, "no answer in time: looked up before resending"),
          UP: ("pending", 1, "lounge did not answer within 1 s")}, {}],
        # The failed run verifies nothing; the next looks at its deliveries first.
        calls=[["probe", "apply", "apply"], ["probe", "verify", "apply", "verify"]],
        sync={"batch_size": 1}),
    "not seen on the player: unverified with the cause": Case(
        [Script(verify={HEAT: ("unverified", "lounge lists no item at its path")})],
        [result("partial", synced=2, failed=1, verified=2)],
        [{HEAT: ("unverified", 1, "lounge lists no item at its path")}]),
    "a player that scans in the background is verified on a later run": Case(
        [Script(verify_after=3600)],
        [result("synced", synced=3)],
        [{key: ("sent", 1) for key in TITLES}],
        calls=[["probe", "apply"]]),
    "someone watching: updates deferred untried, removals proceed": Case(
        [Script(playing=True)],
        [result("deferred", synced=1, deferred=1, verified=1)],
        [{UP: ("deferred", 0, "player busy: someone is watching")}],
        removed=(HEAT,), changed=(UP,)),
    "more removals than max_removals are held, untried": Case(
        [Script()],
        [result("held", held=2)],
        [{ALIEN: ("held", 0), HEAT: ("held", 0)}],
        calls=[["probe"]], sync={"max_removals": 1}, removed=(ALIEN, HEAT)),
    "a removal whose media is still on disk is dropped, nothing sent": Case(
        [Script()],
        [result("synced", kept=1)],
        [{}],
        calls=[["probe"]], dropped=(HEAT,)),
    "auth failure disables the player: the next run does not contact it": Case(
        [Script(probe=AuthFailed("lounge: authentication failed (HTTP 401)")), Script()],
        [result("failed", failed=3, error_kind="auth_failed"),
         result("disabled", error_kind="auth_failed")],
        [{key: ("pending", 1) for key in TITLES}] * 2,
        calls=[["probe"], []]),
}


@dataclass
class World:
    db: MetarrDB
    config_path: Path
    state_dir: Path

    def run(self) -> Any:
        source = open_sqlite(self.db.path)
        try:
            report = engine.run(load_config(self.config_path), source, self.state_dir,
                                engine.Request())
        finally:
            source.close()
        (only,) = report.players
        return only

    def queue(self) -> dict[str, tuple[str, int, str | None]]:
        state = State(self.state_dir)
        try:
            return {e.item.key: (e.status, e.attempts, e.last_error)
                    for e in state.queue("lounge")}
        finally:
            state.close()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("METARR_SYNC_PLUGINS", PLUGIN)
    db = MetarrDB(tmp_path / "metarr.sqlite")
    db.use_disk(tmp_path / "media")
    for key, (title, year) in TITLES.items():
        assert f"movie:{db.add_movie(title, year)}" == key
    SCRIPTS.clear()
    yield World(db, tmp_path / "config.toml", tmp_path / "state")
    SCRIPTS.clear()
    db.close()


def configure(world: World, sync: dict[str, Any]) -> None:
    world.config_path.write_text(config_with(
        metarr=world.db.path,
        sync={"initial_lookback": "all", "max_removal_percent": 100, **sync},
        players=[player("scripted", "lounge", url="http://127.0.0.1:9",
                        mappings=[(str(world.db.media_root), "/mnt")])]))
    world.config_path.chmod(0o600)


def row_id(key: str) -> int:
    return int(key.split(":")[1])


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_engine(world: World, case: Case) -> None:
    configure(world, case.sync)
    if case.removed or case.dropped or case.changed:
        SCRIPTS["lounge"] = Script()
        assert world.run().status == "synced" and world.queue() == {}
        for key in case.removed:
            world.db.delete_media("movies", row_id(key))
            world.db.soft_delete("movies", row_id(key))
        for key in case.dropped:
            world.db.soft_delete("movies", row_id(key))
        for key in case.changed:
            world.db.republish_movie(row_id(key))
    for number, script in enumerate(case.runs):
        script = SCRIPTS["lounge"] = Script(**{**script.__dict__, "calls": []})
        got = world.run()
        assert counts(got) == case.results[number], (number, got.error)
        queue = world.queue()
        expected = case.queues[number]
        assert {k: v[:len(expected[k])] if k in expected else v for k, v in queue.items()} \
            == expected, number
        if case.calls is not None:
            assert [call for call, _ in script.calls] == case.calls[number], number


def test_the_adapter_is_sent_exactly_the_changed_items_in_batches(world: World) -> None:
    configure(world, {"batch_size": 2})
    script = SCRIPTS["lounge"] = Script()
    world.run()
    assert script.calls == [("probe", []), ("apply", [ALIEN, HEAT]), ("apply", [UP]),
                            ("verify", [ALIEN, HEAT, UP])]
    world.db.republish_movie(row_id(UP))
    script = SCRIPTS["lounge"] = Script()
    got = world.run()
    assert script.calls == [("probe", []), ("apply", [UP]), ("verify", [UP])]
    assert counts(got) == result("synced", synced=1, verified=1)
