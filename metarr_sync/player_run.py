"""One player's pass over its work: the steps between the engine handing a player its
queue and the outcomes being committed.

probe → verify earlier deliveries → defer while someone watches → guard removals → apply
the batches → finish → verify what landed → notify. Every outcome is counted into the
player's PlayerResult and committed as it comes (not under --dry-run), so that a player
error keeps only what was not answered queued.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from metarr_sync.config import Config, PlayerConfig
from metarr_sync.disk import Presence, Verdict, media_presence, missing_anchors
from metarr_sync.libraries import Served
from metarr_sync.logs import redact
from metarr_sync.metarr import Item
from metarr_sync.plan import PlayerPlan, Target, build_plan
from metarr_sync.players.base import (
    STOP,
    AuthFailed,
    Interrupted,
    Outcome,
    Player,
    PlayerError,
    Result,
    signal_name,
)
from metarr_sync.stamps import parse_stamp, spoken
from metarr_sync.state import QueueStatus, State

# The engine's logger: log lines read as before the pass had a module of its own.
log = logging.getLogger("metarr_sync.engine")


#: progress(player, done, total), called from the player threads.
Progress = Callable[[str, int, int], None]


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
    #: `watch`: a player with nothing to send and no delivery due for verification is
    #: not contacted, and a run in which no player is is not recorded.
    skip_idle: bool = False


@dataclass
class ItemFailure:
    """An item a run left undone on a player, as the queue now holds it, and why."""

    item: str  # the item's key, e.g. movie:12
    title: str
    #: The item's queue status now: failed (needs a person), unverified (sent, not seen on
    #: the player), held (a removal not sent) or pending (tried, sent again next run).
    result: QueueStatus
    cause: str


@dataclass
class SentWhileWatching:
    """An update sent although someone was watching: it had waited longer than max_defer."""

    item: str
    title: str
    deferred_seconds: float
    max_defer: str  # as the config writes it

    @property
    def cause(self) -> str:
        return (f"sent while someone was watching: deferred for "
                f"{spoken(self.deferred_seconds)} (max_defer {self.max_defer})")


#: Outcomes a run lists below its table, and the queue status each leaves an item in.
UNDONE = {Result.FAILED: QueueStatus.FAILED, Result.UNVERIFIED: QueueStatus.UNVERIFIED,
          Result.HELD: QueueStatus.HELD, Result.RETRY: QueueStatus.PENDING}


class PlayerStatus(StrEnum):
    """What one player's pass came to, as the run's table, --json and history say it."""

    SYNCED = "synced"
    PARTIAL = "partial"  # some items failed on a player that works
    HELD = "held"  # removals held for a person
    FAILED = "failed"  # the player as a whole (offline, auth, ...)
    DEFERRED = "deferred"  # someone was watching
    SKIPPED = "skipped"  # a shared library synced through another member
    DISABLED = "disabled"
    INTERRUPTED = "interrupted"


@dataclass
class PlayerResult:
    """What one player's pass came to: its row in the run's table, --json and history."""

    name: str
    type: str
    status: PlayerStatus = PlayerStatus.SYNCED
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
    #: Updates that waited longer than max_defer for a viewer, sent while they watched.
    sent_while_watching: list[SentWhileWatching] = field(default_factory=list)

    @property
    def is_failure(self) -> bool:
        # Held removals wait for a person: the run says so with exit 1.
        return self.status in (PlayerStatus.FAILED, PlayerStatus.PARTIAL, PlayerStatus.HELD) or (
            self.status == PlayerStatus.DISABLED and self.error_kind == "auth_failed")


class Context:
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
        #: The libraries of the players that limit theirs; one whose `libraries` cannot
        #: be used (served.errors) is not run.
        self.served = Served()

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


def verify_after_of(player: PlayerConfig) -> float:
    """Seconds after a delivery before `player` is asked whether it landed: its own
    `verify_after` (Jellyfin, Emby), else its adapter's (Plex 120 s; Kodi 0: the same run)."""
    from metarr_sync import player_types as kinds

    kind = kinds.get(player.type)
    if kind is not None and "verify_after" in kind.settings:
        return float(player.verify_after)
    from metarr_sync.players import adapter_class

    return float(getattr(adapter_class(player.type), "verify_after", 0.0))


def verification_due(state: State, player: PlayerConfig, request: Request) -> bool:
    """Whether earlier deliveries to `player` are due to be looked up on it now."""
    return (player.verify and request.verify and not request.dry_run
            and bool(state.awaiting_verification(player.name, verify_after_of(player))))


def run_player(ctx: Context, player: PlayerConfig, items: list[Item],
               also_record: Sequence[str] = ()) -> PlayerResult:
    """Sync one player; whatever goes wrong stays with this player."""
    try:
        return _sync_player(ctx, player, items, also_record)
    except Exception as exc:  # noqa: BLE001 - a bug in one adapter must not stop others
        log.exception("unexpected error while syncing %s", player.name)
        return PlayerResult(player.name, player.type, PlayerStatus.FAILED, items=len(items),
                            failed=len(items), error=f"internal error: {redact(str(exc))}",
                            error_kind="internal")


def _sync_player(ctx: Context, player: PlayerConfig, items: list[Item],
                 also_record: Sequence[str]) -> PlayerResult:
    """One player's pass, timed; its state connection and adapter are always closed."""
    result = PlayerResult(player.name, player.type, items=len(items))
    if not player.enabled:
        result.status = PlayerStatus.DISABLED
        return result
    dry_run = ctx.request.dry_run
    state = State(ctx.state_dir)
    started = time.monotonic()
    adapter = None
    try:
        verifying = player.verify and ctx.request.verify and not dry_run
        if not _ready(ctx, player, items, state, verifying, result):
            return result
        from metarr_sync.players import adapter_class

        adapter = adapter_class(player.type)(player, ctx.config.sync, dry_run=dry_run)
        _Pass(ctx, player, items, state, adapter, result, also_record, verifying).run()
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


def _ready(ctx: Context, player: PlayerConfig, items: list[Item], state: State,
           verifying: bool, result: PlayerResult) -> bool:
    """Whether to contact the player at all: its shares mounted, its credentials not known
    to be bad, something to do, no stop requested. When not, `result` says why."""
    wrong = ctx.served.errors.get(player.name)
    if wrong:  # which items are its work is unknown: nothing is sent, all stays queued
        result.status, result.error_kind, result.error = PlayerStatus.FAILED, "config", wrong
        return False
    missing = missing_anchors(ctx.config.sync.anchors + player.anchors)
    if missing:
        # A share is not mounted: a scan would make the player drop what is on it,
        # and no removal can be trusted. Nothing is sent; nothing counts as tried.
        result.status, result.error_kind = PlayerStatus.FAILED, "anchor_missing"
        result.error = (f"anchor file {missing[0]} is missing"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                        + ": is its share mounted? Nothing was sent to this player; "
                        "its work stays queued")
        return False
    reason = state.disabled_reason(player.name)
    if reason:
        result.status, result.error, result.error_kind = PlayerStatus.DISABLED, (
            f"{reason}; fix the credentials, then run `metarr-sync players test "
            f"{player.name}`"), "auth_failed"
        return False
    if not items and not (verifying and state.awaiting_verification(player.name)):
        return False
    if STOP.is_set():
        result.status, result.error_kind = PlayerStatus.INTERRUPTED, "interrupted"
        result.error = (f"not tried: stopped by {signal_name(STOP.signal)}; "
                        "its work stays queued")
        return False
    return True


class _Pass:
    """One player's pass over its queue, in named steps; `run` calls them in order."""

    def __init__(self, ctx: Context, player: PlayerConfig, items: list[Item], state: State,
                 adapter: Player, result: PlayerResult, also_record: Sequence[str],
                 verifying: bool):
        self.ctx, self.player, self.items, self.state = ctx, player, items, state
        self.adapter, self.result = adapter, result
        self.sync = ctx.config.sync
        self.dry_run = ctx.request.dry_run
        #: Verifying, what the player took waits in the queue as `sent` until it is seen.
        self.verifying = verifying
        self.recorder = _Recorder(state, player.name, also_record, ctx.run_id, self.dry_run,
                                  result, self.sync.max_attempts)
        #: Items not yet judged: if the player fails, those it did not answer are retried.
        self.pending = list(items)
        self.answered: set[str] = set()  # keys of targets whose batch the adapter answered
        self.delivered: list[Item] = []  # taken by the player this run, to be verified
        #: Updates that waited longer than max_defer: sent although someone watches.
        self.overdue: dict[str, SentWhileWatching] = {}
        self.done = 0  # items judged so far, for the progress bar

    def run(self) -> None:
        """probe → verify earlier deliveries → defer while watched → guard removals → apply
        → finish → verify → notify; a player error ends the pass, keeping the rest queued."""
        adapter = self.adapter
        try:
            adapter.probe()
            if not self.dry_run:  # a rehearsal keeps nothing it learnt
                adapter.keep_index(self.state)
            if self.verifying:
                self.verify_earlier()
            if self.player.skips_active(self.sync) and adapter.is_playing():
                self.defer_updates()
            self.pending = self.guard_removals(self.pending)
            plan = self.plan()
            if not self.sync.targeted_updates and plan.targets:
                self.scan_all(plan.targets)
            else:
                self.share_roots()
                try:
                    self.apply(plan.batches)
                finally:
                    self.record_roots()
                self.finish()
                if self.verifying and adapter.verify_after == 0 and self.delivered:
                    self.verify(self.delivered)
            self.pending = []
            self.notify()
        except Interrupted as exc:
            # Not a failure of the player: what was not confirmed stays queued untouched
            # (no attempt counted), and is sent again by the next run.
            self.result.error, self.result.error_kind = exc.message, exc.kind
        except PlayerError as exc:
            self.keep_unanswered(exc)
        self.tell_sent_while_watching()
        self.result.status = _status_of(self.result)

    def verify_earlier(self) -> None:
        """Look up earlier runs' deliveries, which the player scans in the background."""
        name = self.player.name
        wait = 0.0 if self.ctx.request.verify_only else self.adapter.verify_after
        delivered_before = self.state.awaiting_verification(name)
        # Only removals that passed the disk check and the guard: delivered ones.
        removing = [i for i in delivered_before if i.removed]
        self.adapter.removing = build_plan(removing, self.player.mappings,
                                           max(1, len(removing))).targets
        self.verify(delivered_before if not wait else
                    self.state.awaiting_verification(name, wait))

    def share_roots(self) -> None:
        """Tell the adapter which library folders earlier runs made the player rescan
        whole within its verify_after, that rescan not seen yet: their new items are
        delivered without another rescan, and verified (then retried) like the rest. Only
        when verifying: nobody would look for them otherwise."""
        if self.verifying and not self.dry_run:
            self.adapter.roots_in_flight = self.state.roots_in_flight(
                self.player.name, self.adapter.verify_after)

    def record_roots(self) -> None:
        """Remember the library folders this run made the player rescan whole (also
        when a later batch failed: those reports went)."""
        if self.adapter.roots_reported and not self.dry_run:
            self.state.record_roots(self.player.name, self.adapter.roots_reported)

    def defer_updates(self) -> None:
        """Someone is watching: updates wait for the next run, never dropped, but no longer
        than max_defer since they were first deferred: on a busy server someone nearly
        always is. One that has waited longer is sent now, and the result says so.
        Removals touch nothing on screen and may proceed."""
        limit_text, limit = self.player.max_defer_in(self.sync)
        since = {} if limit is None else self.state.deferred_since(self.player.name)
        now = datetime.now(UTC)
        later: list[Item] = []
        overdue: list[SentWhileWatching] = []
        for item in self.pending:
            if item.removed:
                continue
            waited = _seconds_since(since.get(item.key), now)
            if limit is not None and waited > limit:
                overdue.append(SentWhileWatching(item.key, item.label(), waited, limit_text))
            else:
                later.append(item)
        self.recorder.save(later, [Outcome(i.key, Result.DEFERRED, "player busy: someone "
                                           "is watching") for i in later])
        deferred = {i.key for i in later}
        self.pending = [i for i in self.pending if i.key not in deferred]
        self.overdue = {s.item: s for s in overdue}

    def _with_causes(self, outcomes: list[Outcome]) -> list[Outcome]:
        """An update sent while someone watched keeps why as its cause (queue list)."""
        if not self.overdue:
            return outcomes
        return [Outcome(o.item_key, o.result, self.overdue[o.item_key].cause)
                if o.item_key in self.overdue and not o.error
                and o.result in (Result.SYNCED, Result.SENT) else o for o in outcomes]

    def tell_sent_while_watching(self) -> None:
        """The overdue updates the player took (not those it failed or never got): -v, a
        note below the run's table, and --json."""
        taken = (Result.SYNCED, Result.SENT)
        sent = [s for s in self.overdue.values() if self.recorder.seen.get(s.item) in taken]
        for one in sent:
            log.info("%s: %s (%s) %s", self.player.name, one.item, one.title, one.cause)
        self.result.sent_while_watching = sent
        if not sent:
            return
        longest = max(sent, key=lambda s: s.deferred_seconds)
        self.result.notes.append(
            f"1 update {longest.cause}" if len(sent) == 1 else
            f"{len(sent)} updates sent while someone was watching: deferred for up to "
            f"{spoken(longest.deferred_seconds)} (max_defer {longest.max_defer}); -v names them")

    def guard_removals(self, items: list[Item]) -> list[Item]:
        """`items` less the removals that must not be sent (recorded with the reason).

        A removed row in Metarr is only a candidate: its media must be gone from disk (see
        disk.py). And however sure each one is, more removals in one run than max_removals
        or max_removal_percent of the library are held for a person: that is what an
        unmounted share or a wrong database looks like.
        """
        player, recorder = self.player, self.recorder
        removals = [i for i in items if i.removed]
        if not removals:
            return items
        outcomes: list[Outcome] = []
        gone: list[Item] = []
        for item in removals:
            verdict = self.ctx.presence(item)
            if verdict.presence is Presence.GONE:
                gone.append(item)
                continue
            if verdict.presence is Presence.PRESENT:
                log.info("%s: %s (%s) is no removal: %s", player.name, item.key,
                         item.label(), verdict.why)
                outcomes.append(Outcome(item.key, Result.DROPPED, verdict.why))
            else:
                log.warning("%s: %s (%s) not removed: %s", player.name, item.key,
                            item.label(), verdict.why)
                outcomes.append(Outcome(item.key, Result.HELD, verdict.why))
        waiting = [o for o in outcomes if o.result == Result.HELD]
        if waiting:
            recorder.result.notes.append(
                f"{len(waiting)} removal(s) not sent, the disk cannot tell whether the media "
                f"is gone: {waiting[0].error}")
        if len(outcomes) > len(waiting):
            recorder.result.notes.append(
                f"{len(outcomes) - len(waiting)} item(s) gone from Metarr's catalogue are "
                "still on disk: not removed from the player (-v names them)")
        why = self.too_many_removals(len(gone))
        if why:
            log.warning("%s: %s", player.name, why)
            recorder.result.notes.append(why)
            outcomes += [Outcome(i.key, Result.HELD, why) for i in gone]
            gone = []
        recorder.save(removals, outcomes)
        kept = {o.item_key for o in outcomes}
        return [i for i in items if not i.removed or i.key not in kept]

    def too_many_removals(self, count: int) -> str | None:
        """Why `count` proven removals are too many to send to this player in this run."""
        sync, player = self.sync, self.player
        limit = sync.max_removals if player.max_removals is None else player.max_removals
        percent = (sync.max_removal_percent if player.max_removal_percent is None
                   else player.max_removal_percent)
        library = self.state.library_size() + count
        # A single removal is never held for being a share of a small library.
        share = max(1, int(library * percent / 100))
        allowed = self.ctx.request.allow_removals
        if count <= max(limit, allowed) and (count <= share or count <= allowed):
            return None
        over = (f"more than max_removals = {limit}" if count > limit else
                f"more than max_removal_percent = {percent:g}% of the {library} items Metarr "
                "lists")
        return (f"{count} removal(s) held for {player.name}: {over}. Their media is gone "
                "from disk; if that is right, send them with `metarr-sync run "
                f"--allow-removals {count}`, or forget them with `metarr-sync queue clear "
                f"--held --player {player.name}`")

    def plan(self) -> PlayerPlan:
        """Map and batch what is left; an item no mapping covers fails, for a person."""
        plan = build_plan(self.pending, self.player.mappings, self.sync.batch_size)
        self.recorder.save([i for i, _ in plan.errors],
                           [Outcome(i.key, Result.FAILED, why) for i, why in plan.errors])
        self.done = len(plan.errors)
        self.ctx.tick(self.player.name, self.done, len(self.items))
        return plan

    def scan_all(self, targets: list[Target]) -> None:
        """targeted_updates off: one full library scan stands for every mapped item."""
        self.adapter.scan_all()
        mapped = [t.item for t in targets]
        self.recorder.save(mapped, [Outcome(i.key, Result.SYNCED) for i in mapped])

    def apply(self, batches: list[list[Target]]) -> None:
        """Send the batches, committing each one's outcomes before the next is sent."""
        for batch in batches:
            STOP.check()  # between batches: everything before is committed
            batch_items = [t.item for t in batch]
            try:
                outcomes = self._with_causes(
                    _judged(batch, self.adapter.apply(batch), self.verifying))
            except PlayerError as exc:
                # What the player settled before failing is recorded as such (sent
                # without an answer: verified before it is sent again).
                settled = self._with_causes(_judged(batch, exc.settled, self.verifying))
                keys = {o.item_key for o in settled}
                self.recorder.save([i for i in batch_items if i.key in keys], settled)
                self.answered.update(keys)
                raise
            if self.verifying:
                sent = {o.item_key for o in outcomes if o.result == Result.SENT}
                self.delivered += [i for i in batch_items if i.key in sent]
            self.recorder.save(batch_items, outcomes)
            # Only remembered here; `pending` is narrowed down once, if a player error
            # stops the run: filtering it after every batch is quadratic.
            self.answered.update(t.key for t in batch)
            self.done += len(batch)
            self.ctx.tick(self.player.name, self.done, len(self.items))

    def finish(self) -> None:
        """The adapter's work after all batches (Plex: guarded trash emptying), which may
        take back items it synced: those are not verified."""
        STOP.check()
        finished = self.adapter.finish()
        self.recorder.save(self.items, finished)
        taken_back = {o.item_key for o in finished if o.result != Result.SYNCED}
        self.delivered = [i for i in self.delivered if i.key not in taken_back]

    def verify(self, items: list[Item]) -> None:
        """Ask the player whether delivered items landed; record verified / unverified."""
        if not items:
            return
        plan = build_plan(items, self.player.mappings, max(len(items), 1))
        outcomes = [Outcome(i.key, Result.UNVERIFIED, f"cannot verify: {why}")
                    for i, why in plan.errors]
        for outcome in self.adapter.verify(plan.targets):
            if outcome.result == Result.SYNCED:
                outcomes.append(Outcome(outcome.item_key, Result.VERIFIED))
            else:
                outcomes.append(Outcome(outcome.item_key, Result.UNVERIFIED, outcome.error))
        self.recorder.save(items, outcomes)

    def notify(self) -> None:
        """send_notifications: a message on the player when it took updates; a failed
        message fails nothing."""
        if self.sync.send_notifications and self.result.synced and not self.dry_run:
            try:
                self.adapter.notify("Metarr", f"{self.result.synced} item(s) updated")
            except PlayerError as exc:
                log.warning("%s: notification failed: %s", self.player.name, exc.message)

    def keep_unanswered(self, exc: PlayerError) -> None:
        """The player failed as a whole: what it did not answer is tried again next run;
        credentials it refused disable it until a person fixes them."""
        result = self.result
        # A server may echo a token in its error text: never show or store it.
        result.error, result.error_kind = redact(exc.message), exc.kind
        pending = [i for i in self.pending if i.key not in self.answered]
        self.recorder.save(pending, [Outcome(i.key, Result.RETRY, result.error)
                                     for i in pending])
        if isinstance(exc, AuthFailed) and not self.dry_run:
            self.state.disable_player(self.player.name,
                                      f"authentication failed: {result.error}")


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
        if outcome.result == Result.SYNCED and verifying:
            outcome = Outcome(outcome.item_key, Result.SENT)
        elif outcome.result == Result.SENT and not verifying:
            outcome = Outcome(outcome.item_key, Result.RETRY, outcome.error)
        judged.append(outcome)
    return judged


def _seconds_since(stamp: str | None, now: datetime) -> float:
    """Seconds from a state stamp to `now`; 0 for none (deferred for the first time now)."""
    if not stamp:
        return 0.0
    try:
        return max(0.0, (now - parse_stamp(stamp)).total_seconds())
    except ValueError:
        return 0.0


def _status_of(result: PlayerResult) -> PlayerStatus:
    if result.error_kind == "interrupted":
        return PlayerStatus.INTERRUPTED
    if result.error_kind:
        return PlayerStatus.FAILED
    if result.failed:
        return PlayerStatus.PARTIAL
    if result.held:
        return PlayerStatus.HELD
    if result.deferred:
        return PlayerStatus.DEFERRED
    return PlayerStatus.SYNCED


class _Recorder:
    """Counts outcomes into the player's result and commits them (not under --dry-run)."""

    def __init__(self, state: State, player: str, also: Sequence[str], run_id: int | None,
                 dry_run: bool, result: PlayerResult, max_attempts: int | None = None):
        self.state, self.player, self.also = state, player, also
        self.run_id, self.dry_run, self.result = run_id, dry_run, result
        self.max_attempts = max_attempts
        self.seen: dict[str, Result] = {}

    def save(self, items: Sequence[Item], outcomes: Sequence[Outcome]) -> None:
        if not outcomes:
            return
        # Errors come from players' answers, which may echo a token: mask known secrets.
        outcomes = [Outcome(o.item_key, o.result, redact(o.error)) if o.error else o
                    for o in outcomes]
        by_key = {i.key: i for i in items}
        for outcome in outcomes:
            self._note(by_key.get(outcome.item_key), outcome)
            if outcome.result == Result.VERIFIED:
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
                failure.result, failure.cause = QueueStatus.FAILED, cause
        # Members of a shared library got the update through this player: for them it is
        # delivered (verification stays with the member that did the work).
        delivered = (Result.SYNCED, Result.SENT, Result.VERIFIED)
        shared = [Outcome(o.item_key, Result.SYNCED) if o.result in delivered else o
                  for o in outcomes if o.result in (*delivered, Result.DROPPED, Result.HELD)]
        for other in self.also:
            self.state.record(other, items, shared, self.run_id)

    def _note(self, item: Item | None, outcome: Outcome) -> None:
        """Keep the item's latest judgement in the result's list of undone items."""
        self.result.failures.pop(outcome.item_key, None)  # re-judged: listed as of now
        status = UNDONE.get(outcome.result)
        if status is not None and item is not None:
            self.result.failures[item.key] = ItemFailure(item.key, item.label(), status,
                                                         outcome.error or "no cause given")

    def _count(self, result: Result, delta: int) -> None:
        if result in (Result.SYNCED, Result.SENT):
            self.result.synced += delta
        elif result == Result.DEFERRED:
            self.result.deferred += delta
        elif result == Result.HELD:
            self.result.held += delta
        elif result == Result.DROPPED:
            self.result.kept += delta
        elif result in (Result.FAILED, Result.RETRY, Result.UNVERIFIED):
            self.result.failed += delta
