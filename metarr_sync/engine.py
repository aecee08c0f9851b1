"""The player-sync phase: collect → discover → execute → record → notify.

- collect: compare Metarr's items with the last collection; queue what changed for every
  configured player (or queue the items named by `sync`).
- discover: probe each player (reachable, credentials) and ask whether someone watches.
- execute: plan each player's queue (mapping, batching) and hand batches to its adapter.
  Groups run in parallel; inside a group members run sequentially or in parallel; a
  shared-library group is served by its first reachable member, and every other member
  then drops its own cached copies of the refreshed items' artwork.
- record: every batch's outcomes are committed in one transaction.
- notify: an optional message on players that received updates.

A failing player never blocks another: each runs in its own thread with its own state
connection, and its failure only keeps its own items pending.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from metarr_sync.config import Config, PlayerConfig
from metarr_sync.disk import Presence, Verdict, media_presence, missing_anchors
from metarr_sync.logs import redact
from metarr_sync.metarr import Item, MetarrSource
from metarr_sync.plan import Target, build_plan
from metarr_sync.players.base import (
    STOP,
    AuthFailed,
    Interrupted,
    Outcome,
    Player,
    PlayerError,
    signal_name,
)
from metarr_sync.state import RunLock, State, now_stamp

log = logging.getLogger("metarr_sync.engine")

TRIGGERS = ("manual", "scheduled", "post-publish", "bulk")
Progress = Callable[[str, int, int], None]


class LockHeld(Exception):
    """Another run holds the lock in the state directory."""


@dataclass
class ItemFailure:
    """An item a run left undone on a player, as the queue now holds it, and why."""

    item: str  # the item's key, e.g. movie:12
    title: str
    #: The item's queue status now: failed (needs a person), unverified (sent, not seen on
    #: the player), held (a removal not sent) or pending (tried, sent again next run).
    result: str
    cause: str


#: Outcomes a run lists below its table, and the queue status each leaves an item in.
UNDONE = {"failed": "failed", "unverified": "unverified", "held": "held", "retry": "pending"}


@dataclass
class PlayerResult:
    name: str
    type: str
    # synced|partial|held|failed|deferred|skipped|disabled|interrupted
    status: str = "synced"
    items: int = 0
    synced: int = 0
    failed: int = 0
    deferred: int = 0
    verified: int = 0
    held: int = 0  # removals not sent: the guard held them, or the disk could not tell
    kept: int = 0  # removal candidates whose media is still on disk: nothing sent
    requests: int = 0
    duration_ms: int = 0
    error: str | None = None
    error_kind: str | None = None
    commands: list[str] = field(default_factory=list)
    #: Item key -> art URLs of the items this player refreshed (Player.cached_art): what
    #: the other members of a shared library must drop from their own image caches.
    cached_art: dict[str, list[str]] = field(default_factory=dict, repr=False)

    #: What a person should read below the table (held removals, kept items...).
    notes: list[str] = field(default_factory=list)
    #: Item key -> the items this run left failed, unverified, held or to retry, with
    #: their causes (the last judgement of each), in the order they were judged.
    failures: dict[str, ItemFailure] = field(default_factory=dict)

    @property
    def is_failure(self) -> bool:
        # Held removals wait for a person: the run says so with exit 1.
        return self.status in ("failed", "partial", "held") or (
            self.status == "disabled" and self.error_kind == "auth_failed")


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

    @property
    def exit_code(self) -> int:
        if self.interrupted is not None:
            return 128 + self.interrupted  # 130 for SIGINT, 143 for SIGTERM, as shells do
        return 1 if any(p.is_failure for p in self.players) else 0

    @property
    def status(self) -> str:
        if self.interrupted is not None:
            return "interrupted"
        if any(p.is_failure for p in self.players):
            # "failed": every player failed as a whole (offline, auth, ...); items that
            # failed on a player that works make the run "partial".
            return "failed" if all(p.is_failure and p.status not in ("partial", "held")
                                   for p in self.players) else "partial"
        return "synced"


@dataclass
class Request:
    """What to run: the whole queue (`run`) or named items only (`sync`)."""

    trigger: str = "manual"
    command: str = "run"
    dry_run: bool = False
    players: Sequence[str] = ()
    groups: Sequence[str] = ()
    only: Sequence[Item] | None = None  # sync: exactly these items
    wait: float = 0.0
    verify: bool = True  # False: --no-verify, fire-and-forget
    verify_only: bool = False  # `metarr-sync verify`: only check earlier deliveries
    #: Removals per player this run may send beyond max_removals/max_removal_percent.
    allow_removals: int = 0


def parse_since(text: str, now: datetime | None = None) -> str:
    """A --since value (2026-11-01, 2026-11-01T10:00[Z], or 36h / 7d ago) as a stamp."""
    now = now or datetime.now(UTC)
    match = re.fullmatch(r"\s*(\d+)\s*([mhdw])\s*", text)
    if match:
        unit = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
        return now_stamp(now - timedelta(seconds=int(match.group(1)) * unit))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since takes a date (2026-11-01), a time (2026-11-01T10:00Z) "
                         f"or an age (36h, 7d), not {text!r}") from None
    return now_stamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def bulk_items(source: MetarrSource, library_ids: Sequence[int] | None,
               since: str | None) -> list[Item]:
    """Present items of the given libraries (None: all) changed at or after `since`."""
    wanted = None if library_ids is None else set(library_ids)
    return [i for i in source.items()
            if not i.removed and (wanted is None or i.library_id in wanted)
            and (since is None or i.stamp >= since)]


def queue_only(config: Config, state_dir: Path, items: Sequence[Item], source: str) -> int:
    """Queue items for every configured player without contacting any (auto_sync off)."""
    state = State(state_dir)
    try:
        return state.enqueue(items, list(config.players), source=source)
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


def run(config: Config, source: MetarrSource, state_dir: Path, request: Request,
        progress: Progress | None = None) -> RunReport:
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
        if request.verify_only:
            for player in chosen:
                work[player.name] = []
            report.run_id = state.start_run(request.trigger, request.command)
        elif request.dry_run:
            with state.rehearsal():
                report.changed = _collect(config, source, state, everyone, request)
                for player in chosen:
                    work[player.name] = state.work(player.name, keys, shared)
        else:
            state.forget_players(everyone)
            report.changed = _collect(config, source, state, everyone, request)
            for player in chosen:
                work[player.name] = state.work(player.name, keys, shared)
            report.run_id = state.start_run(request.trigger, request.command)
        shared.clear()
        report.items = len({i.key for items in work.values() for i in items})
        # From here on SIGINT/SIGTERM only ask the players to stop (see StopFlag), so
        # that the run ends with its results recorded and the lock released.
        STOP.armed = True
        report.players = _execute(config, state_dir, chosen, work, request, report.run_id,
                                  progress)
        if STOP.is_set():
            report.interrupted = STOP.signal
        report.finished_at = now_stamp()
        if report.run_id is not None:
            for result in report.players:
                state.finish_player(report.run_id, result)
            state.finish_run(report.run_id, report.status, report.exit_code, report.items,
                             sum(p.synced for p in report.players),
                             sum(p.failed for p in report.players))
        return report
    finally:
        STOP.armed = False
        state.close()


def _collect(config: Config, source: MetarrSource, state: State, players: list[str],
             request: Request) -> int:
    if request.only is not None:
        state.enqueue(request.only, players, source=request.command)
        return len(request.only)
    result = state.collect(source.items(), players, config.sync.lookback_seconds())
    log.info("collected: %d changed, %d vanished, baselines for %s", result.changed,
             result.vanished, ", ".join(result.baselined) or "nobody")
    return result.changed + result.vanished


# --- execution --------------------------------------------------------------------------

class _Context:
    """What every player thread shares: config, state location, run, progress."""

    def __init__(self, config: Config, state_dir: Path, request: Request, run_id: int | None,
                 progress: Progress | None):
        self.config = config
        self.state_dir = state_dir
        self.request = request
        self.run_id = run_id
        self.progress = progress
        self.progress_lock = threading.Lock()
        self._presence: dict[str, Verdict] = {}  # one disk check per item and run

    def presence(self, item: Item) -> Verdict:
        """Is a removed item's media gone from disk? Asked once per run, for all players
        (threads may ask twice at worst: the answer is the same)."""
        verdict = self._presence.get(item.key)
        if verdict is None:
            verdict = self._presence[item.key] = media_presence(item)
        return verdict

    def tick(self, player: str, done: int, total: int) -> None:
        if self.progress:
            with self.progress_lock:
                self.progress(player, done, total)


def _execute(config: Config, state_dir: Path, chosen: list[PlayerConfig],
             work: dict[str, list[Item]], request: Request, run_id: int | None,
             progress: Progress | None) -> list[PlayerResult]:
    ctx = _Context(config, state_dir, request, run_id, progress)
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
            if running and STOP.is_set() and STOP.waited() >= grace:
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
    return PlayerResult(player.name, player.type, "interrupted", items=len(items), error=why,
                        error_kind="interrupted")


def _run_group(ctx: _Context, name: str, members: list[PlayerConfig],
               work: dict[str, list[Item]]) -> list[PlayerResult]:
    members = sorted(members, key=lambda p: (p.priority, p.name))
    group = ctx.config.groups.get(name)
    if group is not None and group.shared_library:
        return _run_shared(ctx, members, work)
    if group is None or group.sync_mode == "parallel":
        if len(members) == 1:
            return [_guarded(ctx, members[0], work[members[0].name])]
        with ThreadPoolExecutor(max_workers=len(members), thread_name_prefix="player") as pool:
            return list(pool.map(lambda p: _guarded(ctx, p, work[p.name]), members))
    results: list[PlayerResult] = []
    stop_reason: str | None = None
    for player in members:
        if stop_reason:
            results.append(PlayerResult(player.name, player.type, "skipped",
                                        items=len(work[player.name]), error=stop_reason))
            continue
        if STOP.is_set():
            results.append(_interrupted(player, work[player.name], (
                f"not tried: stopped by {signal_name(STOP.signal)}; its work stays queued")))
            continue
        result = _guarded(ctx, player, work[player.name])
        results.append(result)
        if result.is_failure and not group.continue_on_error:
            stop_reason = f"not tried: {player.name} failed earlier in group {name}"
    return results


#: Error kinds of a player that could not be reached (or let in) at all.
# A member that could not be used at all: the next one in priority order is tried. A
# missing anchor of its own counts too: another member may see its shares.
UNREACHABLE = ("offline", "timeout", "auth_failed", "anchor_missing")


def _run_shared(ctx: _Context, members: list[PlayerConfig],
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
        result = _guarded(ctx, player, items, also_record=others)
        results.append(result)
        if result.error_kind == "interrupted":
            break
        if result.error_kind in UNREACHABLE and result.synced == 0:
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
            results.append(PlayerResult(player.name, player.type, "disabled",
                                        items=len(work[player.name])))
        elif worker is not None and art:
            results.append(_drop_art(ctx, player, worker, art, union,
                                     len(work[player.name])))
        elif worker is not None:
            results.append(PlayerResult(
                player.name, player.type, "skipped", items=len(work[player.name]),
                error=f"shared library: synced through {worker.name}"))
        else:  # the run was stopped before this member's turn
            results.append(_interrupted(player, work[player.name], (
                f"not tried: stopped by {signal_name(STOP.signal)}; its work stays queued")))
    return results


def _drop_art(ctx: _Context, player: PlayerConfig, worker: PlayerResult,
              art: dict[str, list[str]], union: dict[str, Item], queued: int
              ) -> PlayerResult:
    """Have one more member of a shared library drop its cached copies of the artwork of
    the items `worker` refreshed. Whatever goes wrong stays with this member: its result
    says so (not as a failure of the group) and the items stay queued for it."""
    result = PlayerResult(player.name, player.type, "skipped", items=queued,
                          error=f"shared library: synced through {worker.name}")
    if STOP.is_set():
        why = f"stopped by {signal_name(STOP.signal)}"
        result.status, result.error_kind = "interrupted", "interrupted"
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
    left = [o for o in outcomes if o.result != "synced"]
    result.status = "partial" if left else "synced"
    result.synced, result.failed = len(outcomes) - len(left), len(left)
    if left:
        _requeue(ctx, player, union, [Outcome(o.item_key, "retry", redact(o.error))
                                      for o in left])
        result.error = (f"shared library: synced through {worker.name}, but the cached "
                        f"artwork of {len(left)} item(s) could not be dropped here (first: "
                        f"{redact(left[0].error)}); they stay queued for {player.name}")
    else:
        result.error = None
    return result


def _stale_art(ctx: _Context, player: PlayerConfig, art: dict[str, list[str]],
               union: dict[str, Item], worker: PlayerResult | None, why: str) -> str:
    """Keep the items whose artwork a member could not drop queued for it; the words
    that say so."""
    cause = (f"its own cached artwork of this item was not dropped ({why}): it may show "
             "the old images until a run reaches it")
    _requeue(ctx, player, union, [Outcome(key, "retry", cause) for key in art])
    through = f" through {worker.name}" if worker is not None else ""
    return (f"its own cached artwork of {len(art)} item(s) refreshed{through} was not "
            "dropped: it may show the old images, and they stay queued for it")


def _requeue(ctx: _Context, player: PlayerConfig, union: dict[str, Item],
             outcomes: list[Outcome]) -> None:
    if ctx.request.dry_run or not outcomes:
        return
    state = State(ctx.state_dir)
    try:
        state.record(player.name, [union[o.item_key] for o in outcomes if o.item_key in union],
                     outcomes, ctx.run_id)
    finally:
        state.close()


def _guarded(ctx: _Context, player: PlayerConfig, items: list[Item],
             also_record: Sequence[str] = ()) -> PlayerResult:
    """Sync one player; whatever goes wrong stays with this player."""
    try:
        return _sync_player(ctx, player, items, also_record)
    except Exception as exc:  # noqa: BLE001 - a bug in one adapter must not stop others
        log.exception("unexpected error while syncing %s", player.name)
        return PlayerResult(player.name, player.type, "failed", items=len(items),
                            failed=len(items), error=f"internal error: {redact(str(exc))}",
                            error_kind="internal")


def _sync_player(ctx: _Context, player: PlayerConfig, items: list[Item],
                 also_record: Sequence[str]) -> PlayerResult:
    result = PlayerResult(player.name, player.type, items=len(items))
    if not player.enabled:
        result.status = "disabled"
        return result
    dry_run = ctx.request.dry_run
    state = State(ctx.state_dir)
    started = time.monotonic()
    adapter = None
    try:
        missing = missing_anchors(ctx.config.sync.anchors + player.anchors)
        if missing:
            # A share is not mounted: a scan would make the player drop what is on it,
            # and no removal can be trusted. Nothing is sent; nothing counts as tried.
            result.status, result.error_kind = "failed", "anchor_missing"
            result.error = (f"anchor file {missing[0]} is missing"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                            + ": is its share mounted? Nothing was sent to this player; "
                            "its work stays queued")
            return result
        reason = state.disabled_reason(player.name)
        if reason:
            result.status, result.error, result.error_kind = "disabled", (
                f"{reason}; fix the credentials, then run `metarr-sync players test "
                f"{player.name}`"), "auth_failed"
            return result
        verifying = player.verify and ctx.request.verify and not dry_run
        if not items and not (verifying and state.awaiting_verification(player.name)):
            return result
        if STOP.is_set():
            result.status, result.error_kind = "interrupted", "interrupted"
            result.error = (f"not tried: stopped by {signal_name(STOP.signal)}; "
                            "its work stays queued")
            return result
        from metarr_sync.players import adapter_class

        adapter = adapter_class(player.type)(player, ctx.config.sync, dry_run=dry_run)
        recorder = _Recorder(state, player.name, also_record, ctx.run_id, dry_run, result,
                             ctx.config.sync.max_attempts)
        pending = list(items)
        answered: set[str] = set()  # keys of targets whose batch the adapter answered
        try:
            adapter.probe()
            if verifying:
                # Deliveries of earlier runs that the player scans in the background.
                wait = 0.0 if ctx.request.verify_only else adapter.verify_after
                delivered_before = state.awaiting_verification(player.name)
                # Only removals that passed the disk check and the guard: delivered ones.
                removing = [i for i in delivered_before if i.removed]
                adapter.removing = build_plan(removing, player.mappings,
                                              max(1, len(removing))).targets
                _verify(adapter, player, delivered_before if not wait else
                        state.awaiting_verification(player.name, wait), recorder)
            if ctx.config.sync.skip_active and adapter.is_playing():
                # Someone is watching: defer updates to the next run, never drop them.
                # Removals touch nothing on screen and may proceed.
                later = [i for i in pending if not i.removed]
                recorder.save(later, [Outcome(i.key, "deferred", "player busy: someone is "
                                              "watching") for i in later])
                pending = [i for i in pending if i.removed]
            pending = _proven_removals(ctx, player, state, pending, recorder)
            plan = build_plan(pending, player.mappings, ctx.config.sync.batch_size)
            recorder.save([i for i, _ in plan.errors],
                          [Outcome(i.key, "failed", why) for i, why in plan.errors])
            done = len(plan.errors)
            ctx.tick(player.name, done, len(items))
            if not ctx.config.sync.targeted_updates and plan.targets:
                adapter.scan_all()
                mapped = [t.item for t in plan.targets]
                recorder.save(mapped, [Outcome(i.key, "synced") for i in mapped])
            else:
                delivered: list[Item] = []
                for batch in plan.batches:
                    STOP.check()  # between batches: everything before is committed
                    batch_items = [t.item for t in batch]
                    try:
                        outcomes = _judged(batch, adapter.apply(batch), verifying)
                    except PlayerError as exc:
                        # What the player settled before failing is recorded as such
                        # (sent without an answer: verified before it is sent again).
                        settled = _judged(batch, exc.settled, verifying)
                        keys = {o.item_key for o in settled}
                        recorder.save([i for i in batch_items if i.key in keys], settled)
                        answered.update(keys)
                        raise
                    if verifying:
                        sent = {o.item_key for o in outcomes if o.result == "sent"}
                        delivered += [i for i in batch_items if i.key in sent]
                    recorder.save(batch_items, outcomes)
                    # Only remembered here; `pending` is narrowed down once, if a player
                    # error stops the run: filtering it after every batch is quadratic.
                    answered.update(t.key for t in batch)
                    done += len(batch)
                    ctx.tick(player.name, done, len(items))
                STOP.check()
                finished = adapter.finish()
                recorder.save(items, finished)
                taken_back = {o.item_key for o in finished if o.result != "synced"}
                delivered = [i for i in delivered if i.key not in taken_back]
                if verifying and adapter.verify_after == 0 and delivered:
                    _verify(adapter, player, delivered, recorder)
            pending = []
            if ctx.config.sync.send_notifications and result.synced and not dry_run:
                try:
                    adapter.notify("Metarr", f"{result.synced} item(s) updated")
                except PlayerError as exc:
                    log.warning("%s: notification failed: %s", player.name, exc.message)
        except Interrupted as exc:
            # Not a failure of the player: what was not confirmed stays queued untouched
            # (no attempt counted), and is sent again by the next run.
            result.error, result.error_kind = exc.message, exc.kind
        except PlayerError as exc:
            # A server may echo a token in its error text: never show or store it.
            result.error, result.error_kind = redact(exc.message), exc.kind
            pending = [i for i in pending if i.key not in answered]
            recorder.save(pending, [Outcome(i.key, "retry", result.error) for i in pending])
            if isinstance(exc, AuthFailed) and not dry_run:
                state.disable_player(player.name, f"authentication failed: {result.error}")
        result.status = _status_of(result)
        return result
    finally:
        if adapter is not None:
            result.requests = adapter.requests
            result.commands = list(adapter.commands)
            if also_record:  # only a shared library's other members need them
                result.cached_art = dict(adapter.cached_art)
            adapter.close()
        result.duration_ms = int((time.monotonic() - started) * 1000)
        state.close()


def _judged(batch: Sequence[Target], outcomes: Sequence[Outcome], verifying: bool
            ) -> list[Outcome]:
    """An adapter's outcomes as the queue keeps them.

    Verifying, a 200/"OK" does not prove the player took an update (or let go of a
    removed item): it stays queued as `sent` until verify() has looked; an item sent
    without an answer (`sent` from the adapter: the player may have carried it out) is
    likewise looked up before it is sent again. Not verifying (`verify = false`,
    --no-verify), nobody would look: such an item is tried again (`retry`).
    """
    judged = []
    for outcome in outcomes:
        if outcome.result == "synced" and verifying:
            outcome = Outcome(outcome.item_key, "sent")
        elif outcome.result == "sent" and not verifying:
            outcome = Outcome(outcome.item_key, "retry", outcome.error)
        judged.append(outcome)
    return judged


def _verify(adapter: Player, player: PlayerConfig, items: list[Item],
            recorder: _Recorder) -> None:
    """Ask the player whether delivered items landed; record verified / unverified."""
    if not items:
        return
    plan = build_plan(items, player.mappings, max(len(items), 1))
    outcomes = [Outcome(i.key, "unverified", f"cannot verify: {why}") for i, why in plan.errors]
    for outcome in adapter.verify(plan.targets):
        if outcome.result == "synced":
            outcomes.append(Outcome(outcome.item_key, "verified"))
        else:
            outcomes.append(Outcome(outcome.item_key, "unverified", outcome.error))
    recorder.save(items, outcomes)


def _proven_removals(ctx: _Context, player: PlayerConfig, state: State, items: list[Item],
                     recorder: _Recorder) -> list[Item]:
    """`items` less the removals that must not be sent (recorded with the reason).

    A removed row in Metarr is only a candidate: its media must be gone from disk (see
    disk.py). And however sure each one is, more removals in one run than max_removals or
    max_removal_percent of the library are held for a person: that is what an unmounted
    share or a wrong database looks like.
    """
    removals = [i for i in items if i.removed]
    if not removals:
        return items
    outcomes: list[Outcome] = []
    gone: list[Item] = []
    for item in removals:
        verdict = ctx.presence(item)
        if verdict.presence is Presence.GONE:
            gone.append(item)
            continue
        if verdict.presence is Presence.PRESENT:
            log.info("%s: %s (%s) is no removal: %s", player.name, item.key, item.label(),
                     verdict.why)
            outcomes.append(Outcome(item.key, "dropped", verdict.why))
        else:
            log.warning("%s: %s (%s) not removed: %s", player.name, item.key, item.label(),
                        verdict.why)
            outcomes.append(Outcome(item.key, "held", verdict.why))
    waiting = [o for o in outcomes if o.result == "held"]
    if waiting:
        recorder.result.notes.append(
            f"{len(waiting)} removal(s) not sent, the disk cannot tell whether the media is "
            f"gone: {waiting[0].error}")
    if len(outcomes) > len(waiting):
        recorder.result.notes.append(
            f"{len(outcomes) - len(waiting)} item(s) gone from Metarr's catalogue are still "
            "on disk: not removed from the player (-v names them)")
    why = _too_many_removals(ctx, player, state, len(gone))
    if why:
        log.warning("%s: %s", player.name, why)
        recorder.result.notes.append(why)
        outcomes += [Outcome(i.key, "held", why) for i in gone]
        gone = []
    recorder.save(removals, outcomes)
    kept = {o.item_key for o in outcomes}
    return [i for i in items if not i.removed or i.key not in kept]


def _too_many_removals(ctx: _Context, player: PlayerConfig, state: State, count: int
                       ) -> str | None:
    """Why `count` proven removals are too many to send to `player` in this run."""
    sync = ctx.config.sync
    limit = sync.max_removals if player.max_removals is None else player.max_removals
    percent = (sync.max_removal_percent if player.max_removal_percent is None
               else player.max_removal_percent)
    library = state.library_size() + count
    # A single removal is never held for being a share of a small library.
    share = max(1, int(library * percent / 100))
    allowed = ctx.request.allow_removals
    if count <= max(limit, allowed) and (count <= share or count <= allowed):
        return None
    over = (f"more than max_removals = {limit}" if count > limit else
            f"more than max_removal_percent = {percent:g}% of the {library} items Metarr "
            "lists")
    return (f"{count} removal(s) held for {player.name}: {over}. Their media is gone from "
            "disk; if that is right, send them with `metarr-sync run --allow-removals "
            f"{count}`, or forget them with `metarr-sync queue clear --held "
            f"--player {player.name}`")


def _status_of(result: PlayerResult) -> str:
    if result.error_kind == "interrupted":
        return "interrupted"
    if result.error_kind:
        return "failed"
    if result.failed:
        return "partial"
    if result.held:
        return "held"
    if result.deferred:
        return "deferred"
    return "synced"


class _Recorder:
    """Counts outcomes into the player's result and commits them (not under --dry-run)."""

    def __init__(self, state: State, player: str, also: Sequence[str], run_id: int | None,
                 dry_run: bool, result: PlayerResult, max_attempts: int | None = None):
        self.state, self.player, self.also = state, player, also
        self.run_id, self.dry_run, self.result = run_id, dry_run, result
        self.max_attempts = max_attempts
        self.seen: dict[str, str] = {}

    def save(self, items: Sequence[Item], outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        # Errors come from players' answers, which may echo a token: mask known secrets.
        outcomes = [Outcome(o.item_key, o.result, redact(o.error)) if o.error else o
                    for o in outcomes]
        by_key = {i.key: i for i in items}
        for outcome in outcomes:
            self._note(by_key.get(outcome.item_key), outcome)
            if outcome.result == "verified":
                self.result.verified += 1
                continue
            previous = self.seen.get(outcome.item_key)
            if previous is not None:
                self._count(previous, -1)  # finish() or verify() may re-judge an item
            self.seen[outcome.item_key] = outcome.result
            self._count(outcome.result, 1)
        if self.dry_run:
            return
        given_up = self.state.record(self.player, items, outcomes, self.run_id,
                                     self.max_attempts)
        for key, cause in given_up.items():
            failure = self.result.failures.get(key)
            if failure is not None:  # its last try: now failed, for a person
                failure.result, failure.cause = "failed", cause
        # Members of a shared library got the update through this player: for them it is
        # delivered (verification stays with the member that did the work).
        shared = [Outcome(o.item_key, "synced") if o.result in ("synced", "sent", "verified")
                  else o for o in outcomes if o.result in ("synced", "sent", "verified",
                                                           "dropped", "held")]
        for other in self.also:
            self.state.record(other, items, shared, self.run_id)

    def _note(self, item: Item | None, outcome: Outcome) -> None:
        """Keep the item's latest judgement in the result's list of undone items."""
        self.result.failures.pop(outcome.item_key, None)  # re-judged: listed as of now
        status = UNDONE.get(outcome.result)
        if status is not None and item is not None:
            self.result.failures[item.key] = ItemFailure(item.key, item.label(), status,
                                                         outcome.error or "no cause given")

    def _count(self, result: str, delta: int) -> None:
        if result in ("synced", "sent"):
            self.result.synced += delta
        elif result == "deferred":
            self.result.deferred += delta
        elif result == "held":
            self.result.held += delta
        elif result == "dropped":
            self.result.kept += delta
        elif result in ("failed", "retry", "unverified"):
            self.result.failed += delta
