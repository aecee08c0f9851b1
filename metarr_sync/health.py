"""Is sync healthy? The verdict of `metarr-sync status`, as a monitoring plugin gives it.

Pure: it judges metrics and queue figures read from the state, so every rule is tested
without a database. Codes follow the Nagios/Icinga plugin convention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from metarr_sync.stamps import ago
from metarr_sync.state import QueueStatus, QueueSummary, SyncMetrics

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
LABELS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}


@dataclass
class Health:
    code: int
    reasons: list[str] = field(default_factory=list)  # worst first
    summary: str = ""

    @property
    def label(self) -> str:
        return LABELS[self.code]


def evaluate(metrics: SyncMetrics, queue: Mapping[str, QueueSummary],
             players: Sequence[str], auth_disabled: Mapping[str, str],
             overdue: Mapping[str, int], warn_age: str,
             now: datetime | None = None) -> Health:
    """The verdict for the enabled `players`.

    CRITICAL: a player disabled after an authentication failure, or the last run failed.
    WARNING: the last run partly failed; items deferred, failed, unverified (sent but not
    seen on the player), removals held, or waiting longer than `warn_age` (`overdue`
    counts those).
    UNKNOWN: no sync run has finished yet.
    """
    critical: list[str] = []
    warning: list[str] = []
    for name in players:
        if name in auth_disabled:
            critical.append(f"{name} is disabled after an authentication failure: fix its "
                            f"credentials, then run `metarr-sync players test {name}`")
    if metrics.last_status == "failed":
        critical.append(f"the last run (#{metrics.last_run_id}) failed for every player")
    elif metrics.last_status == "partial":
        warning.append(f"the last run (#{metrics.last_run_id}) failed for some players")
    for name in players:
        summary = queue.get(name)
        if summary is None:
            continue
        if overdue.get(name):
            warning.append(f"{overdue[name]} item(s) for {name} waiting longer than {warn_age}")
        if summary.counts.get(QueueStatus.FAILED):
            warning.append(f"{summary.counts[QueueStatus.FAILED]} item(s) failed on {name} "
                           "and need a person (`metarr-sync queue list --status failed`)")
        unverified = summary.counts.get(QueueStatus.UNVERIFIED, 0)
        if summary.stuck:
            warning.append(f"{summary.stuck} item(s) delivered to {name} but never seen there "
                           "(`metarr-sync queue list --status unverified`)")
        elif unverified:
            warning.append(f"{unverified} item(s) sent to {name} but not seen there yet; "
                           "they are sent again on the next runs "
                           "(`metarr-sync queue list --status unverified`)")
        if summary.counts.get(QueueStatus.HELD):
            held = summary.counts[QueueStatus.HELD]
            warning.append(f"{held} removal(s) held for {name}, not sent "
                           f"(`metarr-sync queue list --status held --player {name}` says why;"
                           " if their media really is gone, `metarr-sync run "
                           "--allow-removals N` sends them)")
        if summary.counts.get(QueueStatus.DEFERRED):
            warning.append(f"{summary.counts[QueueStatus.DEFERRED]} item(s) deferred on {name}: "
                           "someone was watching")
    if critical:
        health = Health(CRITICAL, critical + warning)
    elif metrics.total_syncs == 0:
        health = Health(UNKNOWN, ["no sync run has finished yet: run `metarr-sync run`"]
                        + warning)
    elif warning:
        health = Health(WARNING, warning)
    else:
        health = Health(OK)
    if health.code == OK:
        last = ago(metrics.last_sync_timestamp, now)
        health.summary = (f"OK: {len(players)} player(s) in sync; last run #{metrics.last_run_id}"
                          f" {metrics.last_status} {last}".rstrip())
    else:
        more = len(health.reasons) - 1
        health.summary = f"{health.label}: {health.reasons[0]}" + (
            f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    return health
