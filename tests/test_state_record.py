"""State.record as a table: the queue row an item had × what became of it on the player →
what the queue and the delivery baseline hold afterwards.

Outcomes are given as their string values (an Outcome StrEnum keeps the same values).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from metarr_sync.metarr import Item
from metarr_sync.players.base import Outcome
from metarr_sync.state import QueueStatus, State, gave_up

PLAYER = "lounge"
STAMP = "2026-11-01T10:00:00.000Z"
NEWER = "2026-11-02T10:00:00.000Z"
MAX_ATTEMPTS = 3
GONE = None  # no queue row afterwards


def heat(stamp: str = STAMP) -> Item:
    return Item("movie", 7, "/data/movies/Heat (1995)/Heat (1995).mkv", title="Heat",
                library_id=1, stamp=stamp)


@dataclass(frozen=True)
class Row:
    """A queue row before or after: status, attempts, last error."""

    status: str
    attempts: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Case:
    before: Row | None  # None: no queue row (finish() re-judging a delivered item)
    outcome: str
    error: str | None
    after: Row | None  # GONE: the row left the queue
    delivered: bool = False  # player_sync_status holds this version afterwards
    verified: bool = False  # ... with verified_at set
    stamp: str = STAMP  # the version the queue row holds (NEWER: changed meanwhile)


CASES: dict[str, Case] = {
    # synced / sent: a delivery; synced leaves the queue, sent waits to be verified.
    "pending + synced -> gone, delivered": Case(
        Row("pending"), "synced", None, GONE, delivered=True),
    "retried twice + synced -> gone": Case(
        Row("pending", 2, "timeout"), "synced", None, GONE, delivered=True),
    "pending + sent -> sent, one delivery counted": Case(
        Row("pending"), "sent", None, Row("sent", 1), delivered=True),
    "pending + sent without answer -> sent with its cause": Case(
        Row("pending", 1, "x"), "sent", "no answer in time", Row("sent", 2, "no answer in time"),
        delivered=True),
    "no row + sent -> no row, still delivered": Case(
        None, "sent", None, GONE, delivered=True),
    "newer version queued + synced -> newer row stays": Case(
        Row("pending", 1, "x"), "synced", None, Row("pending", 1, "x"), delivered=True,
        stamp=NEWER),
    # verify's verdicts on a delivery.
    "sent + verified -> gone, verified": Case(
        Row("sent", 1), "verified", None, GONE, delivered=True, verified=True),
    "sent + unverified -> unverified, delivery not counted again": Case(
        Row("sent", 1), "unverified", "not listed by the player",
        Row("unverified", 1, "not listed by the player")),
    "unverified + unverified -> unchanged count": Case(
        Row("unverified", 2, "old"), "unverified", "still not listed",
        Row("unverified", 2, "still not listed")),
    # retry: pending with one more attempt, failed for a person at max_attempts.
    "pending + retry -> pending, attempt counted": Case(
        Row("pending"), "retry", "offline", Row("pending", 1, "offline")),
    "one below the limit + retry -> failed, given up": Case(
        Row("pending", MAX_ATTEMPTS - 1, "offline"), "retry", "offline",
        Row("failed", MAX_ATTEMPTS, gave_up("offline", MAX_ATTEMPTS))),
    "retry without a cause at the limit -> failed, 'not delivered'": Case(
        Row("pending", MAX_ATTEMPTS - 1), "retry", None,
        Row("failed", MAX_ATTEMPTS, gave_up(None, MAX_ATTEMPTS))),
    "deferred + retry -> pending, counted": Case(
        Row("deferred", 0, "player busy"), "retry", "timeout", Row("pending", 1, "timeout")),
    "no row + retry -> inserted pending": Case(
        None, "retry", "re-judged", Row("pending", 1, "re-judged")),
    # failed: for a person at once.
    "pending + failed -> failed, counted": Case(
        Row("pending"), "failed", "outside every library",
        Row("failed", 1, "outside every library")),
    # not tried: no attempt counted.
    "pending + deferred -> deferred, not counted": Case(
        Row("pending", 1, "x"), "deferred", "someone is watching",
        Row("deferred", 1, "someone is watching")),
    "at the limit + deferred -> deferred, never given up": Case(
        Row("pending", MAX_ATTEMPTS - 1, "x"), "deferred", "someone is watching",
        Row("deferred", MAX_ATTEMPTS - 1, "someone is watching")),
    "pending + held -> held, not counted": Case(
        Row("pending"), "held", "more removals than max_removals",
        Row("held", 0, "more removals than max_removals")),
    "held + held -> held, still not counted": Case(
        Row("held", 0, "x"), "held", "still too many", Row("held", 0, "still too many")),
    # dropped: a removal whose media is still on disk leaves the queue, undelivered.
    "pending + dropped -> gone, not delivered": Case(
        Row("pending"), "dropped", "media still on disk", GONE),
}


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    opened = State(tmp_path)
    yield opened
    opened.close()


def queue_row(state: State) -> Row | None:
    row = state.conn.execute(
        "SELECT status, attempts, last_error FROM sync_queue WHERE player = ?",
        (PLAYER,)).fetchone()
    return None if row is None else Row(row[0], row[1], row[2])


def baseline(state: State) -> tuple[str, bool] | None:
    row = state.conn.execute(
        "SELECT stamp, verified_at FROM player_sync_status WHERE player = ? AND item_key = ?",
        (PLAYER, "movie:7")).fetchone()
    return None if row is None else (row[0], row[1] is not None)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_record(state: State, case: Case) -> None:
    if case.outcome == "verified":  # verified follows a delivery recorded as sent
        state.record(PLAYER, [heat()], [Outcome("movie:7", "sent")], run_id=1)
    if case.before is not None:
        state.enqueue([heat(case.stamp)], [PLAYER], source="run")
        with state.transaction():
            state.conn.execute(
                "UPDATE sync_queue SET status = ?, attempts = ?, last_error = ? "
                "WHERE player = ?", (case.before.status, case.before.attempts,
                                     case.before.error, PLAYER))
    else:
        state.conn.execute("DELETE FROM sync_queue")

    state.record(PLAYER, [heat()], [Outcome("movie:7", case.outcome, case.error)],
                 run_id=2, max_attempts=MAX_ATTEMPTS)

    assert queue_row(state) == case.after
    assert baseline(state) == ((STAMP, case.verified) if case.delivered else None)


def test_outcomes_for_items_not_in_the_batch_are_ignored(state: State) -> None:
    state.enqueue([heat()], [PLAYER], source="run")
    state.record(PLAYER, [heat()], [Outcome("movie:8", "synced")], run_id=1)
    assert queue_row(state) == Row("pending")
    assert baseline(state) is None


def test_without_a_limit_retries_keep_the_item_pending(state: State) -> None:
    state.enqueue([heat()], [PLAYER], source="run")
    for _ in range(MAX_ATTEMPTS + 2):
        state.record(PLAYER, [heat()], [Outcome("movie:7", "retry", "offline")], run_id=1)
    assert queue_row(state) == Row("pending", MAX_ATTEMPTS + 2, "offline")


def test_statuses_are_stored_as_their_words_and_read_back_as_the_type(state: State) -> None:
    state.enqueue([heat()], [PLAYER], source="run")
    state.record(PLAYER, [heat()], [Outcome("movie:7", "failed", "rejected")], run_id=1)
    # The column holds the plain word (older versions and `sqlite3` read it as such).
    assert tuple(state.conn.execute("SELECT typeof(status), status FROM sync_queue").fetchone()) \
        == ("text", "failed")
    (entry,) = state.queue(status=QueueStatus.FAILED)
    assert entry.status is QueueStatus.FAILED
    assert (str(entry.status), f"{entry.status}", json.dumps(entry.status)) == \
        ("failed", "failed", '"failed"')
    assert state.queue(status=QueueStatus.PENDING) == []
    assert state.queue_summary()[PLAYER].counts == {QueueStatus.FAILED: 1}
