"""The player-sync phase: collect → discover → execute → record → notify.

- collect: compare Metarr's items with the last collection; queue what changed for every
  configured player (or queue the items named by `sync`).
- discover: probe each player (reachable, credentials) and ask whether someone watches.
- execute: plan each player's queue (mapping, batching) and hand batches to its adapter
  (one player's pass: player_run.py). Groups run in parallel; inside a group members run
  sequentially or in parallel; a shared-library group is served by its first reachable
  member, and every other member then drops its own cached copies of the refreshed items'
  artwork.
- record: every batch's outcomes are committed in one transaction.
- notify: an optional message on players that received updates; then, once the run is
  recorded, an alert to the [alerts] URLs for each player whose condition changed
  (alerts.after_run).

A failing player never blocks another: each runs in its own thread with its own state
connection, and its failure only keeps its own items pending.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from metarr_sync import collect
from metarr_sync.config import Config, PlayerConfig
from metarr_sync.libraries import Served, served_by
from metarr_sync.logs import redact
from metarr_sync.metarr import Item, MetarrSource
from metarr_sync.player_run import (
    Context,
    PlayerResult,
    PlayerStatus,
    run_player,
    verification_due,
)
from metarr_sync.player_run import Progress as Progress  # re-exported: the CLI's words
from metarr_sync.player_run import Request as Request  # re-exported: the CLI's words
from metarr_sync.players.base import STOP, Outcome, Player, PlayerError, Result, signal_name
from metarr_sync.stamps import now_stamp
from metarr_sync.state import RunLock, State

if TYPE_CHECKING:
    from metarr_sync.alerts import AlertsOutcome

log = logging.getLogger("metarr_sync.engine")

TRIGGERS = ("manual", "scheduled", "post-publish", "bulk")
#: The trigger (and command) of the runs `metarr-sync watch` starts.
WATCH = "watch"


class LockHeld(Exception):
    """Another run holds the lock in the state directory."""


@dataclass
class RunReport:
    trigger: str
    command: str
    dry_run: bool
    started_at: str
    finished_at: str = ""
    run_id: int | None = None
    items: int = 0
    changed: int = 0
    players: list[PlayerResult] = field(default_factory=list)
    message: str | None = None
    #: The signal that stopped the run (SIGINT/SIGTERM), if one did.
    interrupted: int | None = None
    #: The alerts the recorded run called for and how they went (None: not judged).
    alerts: AlertsOutcome | None = None

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted  # 130 for SIGINT, 143 for SIGTERM, as shells do
        return 1 if any(p.is_failure for p in self.players) else 0

    @property
    def status(self) -> PlayerStatus:
        """The run's result, in the words of the players' results."""
        if self.interrupted is not None:
            return PlayerStatus.INTERRUPTED
        if any(p.is_failure for p in self.players):
            # "failed": every player failed as a whole (offline, auth, ...); items that
            # failed on a player that works make the run "partial".
            return PlayerStatus.FAILED if all(
                p.is_failure and p.status not in (PlayerStatus.PARTIAL, PlayerStatus.HELD)
                for p in self.players) else PlayerStatus.PARTIAL
        return PlayerStatus.SYNCED


def bulk_items(source: MetarrSource, library_ids: Sequence[int] | None,
               since: str | None) -> list[Item]:
    """Present items of the given libraries (None: all) changed at or after `since`."""
    wanted = None if library_ids is None else set(library_ids)
    return [i for i in source.items()
            if not i.removed and (wanted is None or i.library_id in wanted)
            and (since is None or i.stamp >= since)]


def queue_only(config: Config, state_dir: Path, items: Sequence[Item], source: str,
               served: Served | None = None) -> int:
    """Queue items for every configured player without contacting any (auto_sync off);
    a player that limits its `libraries` (`served`) only those of its libraries."""
    state = State(state_dir)
    try:
        return state.enqueue(items, list(config.players), source=source,
                             served=served.ids if served else None)
    finally:
        state.close()


def selected_players(config: Config, names: Sequence[str], groups: Sequence[str]
                     ) -> list[PlayerConfig]:
    chosen = list(config.players.values())
    if names:
        chosen = [p for p in chosen if p.name in names]
    if groups:
        chosen = [p for p in chosen if p.group in groups]
    return chosen


def _bound_the_heap() -> None:
    """glibc's malloc, tuned for a run's threads (players, their refresh pools).

    By default each thread may get a heap of its own (up to 8 per core), and after a
    large block is freed glibc raises the size from which it maps blocks separately (up
    to 32 MB), so the players' JSON pages (about 0.5 MB each) end up in those heaps,
    which never shrink: the 10,000-change benchmark peaked at 153 MB. With two heaps and
    blocks of 256 KB or more mapped (and unmapped when freed) it peaks at 145 MB in the
    same time. Elsewhere (musl, macOS) there is no mallopt: nothing to do."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-8, 2)  # M_ARENA_MAX
    mallopt(-3, 256 * 1024)  # M_MMAP_THRESHOLD (fixing it also ends its growth)


def run(config: Config, source: MetarrSource, state_dir: Path, request: Request,
        progress: Progress | None = None) -> RunReport:
    _bound_the_heap()
    report = RunReport(request.trigger, request.command, request.dry_run, now_stamp())
    if not config.sync.enabled:
        report.message = "sync is disabled ([sync] enabled = false): nothing was sent"
        report.finished_at = now_stamp()
        return report
    STOP.clear()
    lock = RunLock(state_dir)
    if not lock.acquire(request.wait):
        holder = lock.holder()
        raise LockHeld(f"another metarr-sync run holds {lock.path}"
                       + (f" (pid {holder})" if holder else "")
                       + "; use --wait SECONDS to wait for it")
    try:
        return _run_locked(config, source, state_dir, request, report, progress)
    finally:
        lock.release()


def _run_locked(config: Config, source: MetarrSource, state_dir: Path, request: Request,
                report: RunReport, progress: Progress | None) -> RunReport:
    state = State(state_dir)
    try:
        everyone = list(config.players)
        chosen = selected_players(config, request.players, request.groups)
        keys = None if request.only is None else [i.key for i in request.only]
        work: dict[str, list[Item]] = {}
        shared: dict[tuple[object, ...], Item] = {}  # one Item per queue row, not per player
        served = served_by(config, source)
        if request.verify_only:
            for player in chosen:
                work[player.name] = []
            report.run_id = state.start_run(request.trigger, request.command)
        elif request.dry_run:
            with state.rehearsal():
                report.changed = _collect(config, source, state, everyone, request, served)
                for player in chosen:
                    _drop_unserved(state, player.name, served, dry_run=True)
                    work[player.name] = state.work(player.name, keys, shared)
        else:
            state.forget_players(everyone)
            report.changed = _collect(config, source, state, everyone, request, served)
            for player in chosen:
                _drop_unserved(state, player.name, served)
                work[player.name] = state.work(player.name, keys, shared)
            if request.skip_idle:
                busy = {p.name for p in chosen if p.enabled and (
                    work[p.name] or verification_due(state, p, request))}
                # A group's members go together (a shared library's work is shared).
                groups = {p.group for p in chosen if p.name in busy and p.group}
                chosen = [p for p in chosen if p.name in busy or p.group in groups]
                if not chosen:
                    report.message = "nothing to do"
                    report.finished_at = now_stamp()
                    return report
            report.run_id = state.start_run(request.trigger, request.command)
        shared.clear()
        report.items = len({i.key for items in work.values() for i in items})
        # From here on SIGINT/SIGTERM only ask the players to stop (see StopFlag), so
        # that the run ends with its results recorded and the lock released.
        STOP.armed = True
        report.players = _execute(config, state_dir, chosen, work, request, report.run_id,
                                  progress, served)
        if STOP.is_set():
            report.interrupted = STOP.signal
        report.finished_at = now_stamp()
        if report.run_id is not None:
            for result in report.players:
                state.finish_player(report.run_id, result)
            state.finish_run(report.run_id, report.status, report.exit_code, report.items,
                             sum(p.synced for p in report.players),
                             sum(p.failed for p in report.players))
            if report.interrupted is None:  # a stopped run ends now, without alerts
                from metarr_sync import alerts

                report.alerts = alerts.after_run(config, state, report)
        return report
    finally:
        STOP.armed = False
        state.close()


def _drop_unserved(state: State, player: str, served: Served, dry_run: bool = False
                   ) -> None:
    """Entries queued for `player` before its `libraries` left them out are not its work
    (in a dry run the state is rolled back afterwards, so they only would leave)."""
    ids = served.ids.get(player)
    if ids is None:
        return
    verb = "would leave" if dry_run else "left"
    for item in state.drop_unserved(player, ids):
        log.info("%s: %s (%s) %s its queue: library %s is not among its libraries",
                 player, item.key, item.label(), verb,
                 served.names.get(item.library_id or 0, f"id {item.library_id}"))


def _collect(config: Config, source: MetarrSource, state: State, players: list[str],
             request: Request, served: Served) -> int:
    if request.only is not None:
        state.enqueue(request.only, players, source=request.command, served=served.ids)
        return len(request.only)
    # Read only what changed since the last collection (collect.py), all of it when a
    # player's baseline needs every item.
    now = datetime.now(UTC)
    marks = state.collect_marks()
    began = source.clock()  # before the checks: what changes after is read next time
    new = sorted(set(players) - state.baselined_players())
    whole = f"first run of {', '.join(new)}" if new else ""
    checks, changed = source.survey(None if whole else collect.since(marks))
    todo = collect.plan(marks, checks, now, whole=whole)
    log.info("reading Metarr: %s", "; ".join(r.describe() for r in todo.readings.values()))
    result = state.collect(source.items_for(todo.readings.values(), changed), players,
                           config.sync.lookback_seconds(), served=served.ids,
                           scope=todo.scope())
    state.save_marks(collect.next_marks(marks, checks, todo, began, now))
    log.info("collected: read %s; %d changed, %d vanished, baselines for %s",
             ", ".join(f"{result.read.get(k, 0)} {k}" for k in collect.KINDS),
             result.changed, result.vanished, ", ".join(result.baselined) or "nobody")
    return result.changed + result.vanished


# --- execution --------------------------------------------------------------------------


def _execute(config: Config, state_dir: Path, chosen: list[PlayerConfig],
             work: dict[str, list[Item]], request: Request, run_id: int | None,
             progress: Progress | None, served: Served | None = None) -> list[PlayerResult]:
    ctx = Context(config, state_dir, request, run_id, progress)
    if served is not None:
        ctx.served = served
    groups: dict[str, list[PlayerConfig]] = {}
    for player in chosen:
        groups.setdefault(player.group or f"\0{player.name}", []).append(player)
    results: dict[str, PlayerResult] = {}
    pool = ThreadPoolExecutor(max_workers=max(1, len(groups)), thread_name_prefix="group")
    futures: dict[Future[list[PlayerResult]], list[PlayerConfig]] = {
        pool.submit(_run_group, ctx, name, members, work): members
        for name, members in groups.items()}
    running = set(futures)
    # After a stop request, the requests on the wire get this long to finish; then their
    # players are abandoned (their work stays queued) so that the run ends promptly.
    grace = min(config.sync.timeout, STOP_GRACE)
    try:
        while running:
            _, running = wait(running, timeout=0.1)
            if running and STOP.halts_requests() and STOP.waited() >= grace:
                break
    finally:
        pool.shutdown(wait=not running, cancel_futures=True)
    for future, members in futures.items():
        if future in running:
            for player in members:
                results[player.name] = _interrupted(player, work[player.name], (
                    f"stopped by {signal_name(STOP.signal)} while a request to the player "
                    "was still running; its work stays queued for the next run"))
            continue
        for result in future.result():
            results[result.name] = result
    return [results[p.name] for p in chosen]


#: Seconds a stop request waits for requests already sent (at most the request timeout).
STOP_GRACE = 5.0


def _interrupted(player: PlayerConfig, items: Sequence[Item], why: str) -> PlayerResult:
    return PlayerResult(player.name, player.type, PlayerStatus.INTERRUPTED, items=len(items),
                        error=why, error_kind="interrupted")


def _run_group(ctx: Context, name: str, members: list[PlayerConfig],
               work: dict[str, list[Item]]) -> list[PlayerResult]:
    members = sorted(members, key=lambda p: (p.priority, p.name))
    group = ctx.config.groups.get(name)
    if group is not None and group.shared_library:
        return _run_shared(ctx, members, work)
    if group is None or group.sync_mode == "parallel":
        if len(members) == 1:
            return [run_player(ctx, members[0], work[members[0].name])]
        with ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="player") as pool:
            return list(pool.map(lambda p: run_player(ctx, p, work[p.name]), members))
    results: list[PlayerResult] = []
    stop_reason: str | None = None
    for player in members:
        if stop_reason:
            results.append(PlayerResult(player.name, player.type, PlayerStatus.SKIPPED,
                                        items=len(work[player.name]), error=stop_reason))
            continue
        if STOP.is_set():
            results.append(_interrupted(player, work[player.name], (
                f"not tried: stopped by {signal_name(STOP.signal)}; its work stays queued")))
            continue
        result = run_player(ctx, player, work[player.name])
        results.append(result)
        if result.is_failure and not group.continue_on_error:
            stop_reason = f"not tried: {player.name} failed earlier in group {name}"
    return results


#: Error kinds of a player that could not be reached (or let in) at all.
# A member that could not be used at all: the next one in priority order is tried. A
# missing anchor of its own counts too: another member may see its shares.
UNREACHABLE = ("offline", "timeout", "auth_failed", "anchor_missing")
#: A member whose own `libraries` names a library Metarr lacks is not used either.
UNUSABLE = (*UNREACHABLE, "config")


def _run_shared(ctx: Context, members: list[PlayerConfig],
                work: dict[str, list[Item]]) -> list[PlayerResult]:
    """Several Kodis on one shared library: the first reachable member syncs for all.

    Each box keeps its own cache of the images it shows, which a refresh through another
    member does not renew: every other enabled member is then asked to drop its cached
    copies of the refreshed items' artwork. A member that cannot be reached for that does
    not fail the group; its result says what it may show stale, and those items stay
    queued for it, so that a later run drops them there.
    """
    union: dict[str, Item] = {}
    for player in members:
        for item in work[player.name]:
            union.setdefault(item.key, item)
    items = list(union.values())
    results: list[PlayerResult] = []
    worker: PlayerResult | None = None
    enabled = [p for p in members if p.enabled]
    for player in members:
        if worker is not None or not player.enabled:
            continue
        others = [p.name for p in enabled if p.name != player.name]
        # Only what this member serves: another member's may be unfiltered (its own
        # `libraries` could not be resolved).
        own = [i for i in items if ctx.served.serves(player.name, i.library_id)]
        result = run_player(ctx, player, own, also_record=others)
        results.append(result)
        if result.error_kind == "interrupted":
            break
        if result.error_kind in UNUSABLE and result.synced == 0:
            continue  # unreachable: let the next member in priority order try
        worker = result
    art = worker.cached_art if worker is not None else {}
    for player in members:
        tried = next((r for r in results if r.name == player.name), None)
        if tried is not None:
            if tried is not worker and art:  # unreachable before the worker was found
                why = tried.error or "not reached"
                tried.error = f"{why}; {_stale_art(ctx, player, art, union, worker, why)}"
            continue
        if not player.enabled:
            results.append(PlayerResult(player.name, player.type, PlayerStatus.DISABLED,
                                        items=len(work[player.name])))
        elif worker is not None and art:
            results.append(_drop_art(ctx, player, worker, art, union,
                                     len(work[player.name])))
        elif worker is not None:
            results.append(PlayerResult(
                player.name, player.type, PlayerStatus.SKIPPED, items=len(work[player.name]),
                error=f"shared library: synced through {worker.name}"))
        else:  # the run was stopped before this member's turn
            results.append(_interrupted(player, work[player.name], (
                f"not tried: stopped by {signal_name(STOP.signal)}; its work stays queued")))
    return results


def _drop_art(ctx: Context, player: PlayerConfig, worker: PlayerResult,
              art: dict[str, list[str]], union: dict[str, Item], queued: int
              ) -> PlayerResult:
    """Have one more member of a shared library drop its cached copies of the artwork of
    the items `worker` refreshed. Whatever goes wrong stays with this member: its result
    says so (not as a failure of the group) and the items stay queued for it."""
    result = PlayerResult(player.name, player.type, PlayerStatus.SKIPPED, items=queued,
                          error=f"shared library: synced through {worker.name}")
    if STOP.is_set():
        why = f"stopped by {signal_name(STOP.signal)}"
        result.status, result.error_kind = PlayerStatus.INTERRUPTED, "interrupted"
        result.error = f"{result.error}; {_stale_art(ctx, player, art, union, worker, why)}"
        return result
    from metarr_sync.players import adapter_class

    started = time.monotonic()
    adapter: Player | None = None
    outcomes: list[Outcome] | None = None
    why = ""
    try:
        adapter = adapter_class(player.type)(player, ctx.config.sync,
                                             dry_run=ctx.request.dry_run)
        outcomes = adapter.drop_cached_art(art)
    except PlayerError as exc:
        why, result.error_kind = redact(exc.message), exc.kind
    except Exception as exc:  # noqa: BLE001 - a bug in one adapter must not stop others
        log.exception("unexpected error while dropping cached artwork on %s", player.name)
        why, result.error_kind = f"internal error: {redact(str(exc))}", "internal"
    finally:
        if adapter is not None:
            result.requests = adapter.requests
            result.commands = list(adapter.commands)
            adapter.close()
        result.duration_ms = int((time.monotonic() - started) * 1000)
    if outcomes is None:
        result.error = f"{result.error}; {_stale_art(ctx, player, art, union, worker, why)}"
        return result
    left = [o for o in outcomes if o.result != Result.SYNCED]
    result.status = PlayerStatus.PARTIAL if left else PlayerStatus.SYNCED
    result.synced, result.failed = len(outcomes) - len(left), len(left)
    if left:
        # An adapter may leave the cause out: say so rather than fail the whole run.
        causes = [redact(o.error) if o.error else "no cause given" for o in left]
        _requeue(ctx, player, union, [Outcome(o.item_key, Result.RETRY, cause)
                                      for o, cause in zip(left, causes, strict=True)])
        result.error = (f"shared library: synced through {worker.name}, but the cached "
                        f"artwork of {len(left)} item(s) could not be dropped here (first: "
                        f"{causes[0]}); they stay queued for {player.name}")
    else:
        result.error = None
    return result


def _stale_art(ctx: Context, player: PlayerConfig, art: dict[str, list[str]],
               union: dict[str, Item], worker: PlayerResult | None, why: str) -> str:
    """Keep the items whose artwork a member could not drop queued for it; the words
    that say so."""
    cause = (f"its own cached artwork of this item was not dropped ({why}): it may show "
             "the old images until a run reaches it")
    _requeue(ctx, player, union, [Outcome(key, Result.RETRY, cause) for key in art])
    through = f" through {worker.name}" if worker is not None else ""
    return (f"its own cached artwork of {len(art)} item(s) refreshed{through} was not "
            "dropped: it may show the old images, and they stay queued for it")


def _requeue(ctx: Context, player: PlayerConfig, union: dict[str, Item],
             outcomes: list[Outcome]) -> None:
    if ctx.request.dry_run or not outcomes:
        return
    state = State(ctx.state_dir)
    try:
        state.record(player.name, [union[o.item_key] for o in outcomes if o.item_key in union],
                     outcomes, ctx.run_id)
    finally:
        state.close()
