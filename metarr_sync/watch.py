"""`metarr-sync watch`: run the player sync whenever Metarr commits, for as long as it runs.

The same engine, state, lock and output as `run`; what it adds is *when*:

- Notice Metarr's commits cheaply, once per `[watch] poll_interval`. SQLite: `PRAGMA
  data_version` on one read-only connection, read to its end each time so that no read
  transaction stays open between polls (one would stop Metarr's WAL checkpoints and grow
  its -wal file). PostgreSQL: the server's insert/update/delete counters of the tables a
  collection reads (pg_stat_user_tables), one catalog query in a transaction of its own;
  the server publishes a connection's counters at most once a second, so a change may be
  noticed a few seconds late, never missed (see Probe).
- Debounce: a run starts after `debounce` of quiet, or `max_delay` after the first commit
  of a burst, so that a bulk publish is one run. Changes during a run call for another.
- Retry: a player left with work (offline, someone watching, unverified) is tried again
  on its own schedule, `retry_delay` (30 s) after the run, then doubling up to
  `retry_max_delay` (15 min); deliveries to Plex and Jellyfin are verified once their
  `verify_after` has passed.
- Between runs nothing is sent to any player: a run contacts only players with work or a
  verification due (engine Request.skip_idle), and one with neither is not recorded.
- Each run takes the run lock for itself only: a `run`, `sync` or `queue` from a terminal
  or a timer interleaves; when one holds the lock the watcher tries again a few seconds
  later and never fails for it.
- systemd: READY=1 once it watches, STATUS= with the last result, WATCHDOG=1 while its loop
  (or a run) goes on, RELOADING=1 / STOPPING=1 (sdnotify.py). SIGHUP reloads the config
  (a broken one is refused, its problems said, the old one stays); SIGTERM and SIGINT
  let each player finish the batch in flight (at most `stop_timeout`, then only the
  requests on the wire), keep what they confirmed, and end with exit 0 (a second one
  quits at once).
- A heartbeat in the state (pid, last heartbeat, last run, status line) for `status`.

Alerts: each run goes through engine.run like `run`'s, so the engine sends the alerts it
calls for (alerts.after_run, once per recorded run; none for a run with nothing to do,
which is not recorded, or one a signal stopped). A failed alert is a warning on stderr
and in `status`, never the watcher's end.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from metarr_sync import engine, sdnotify
from metarr_sync.config import Config, ConfigError, metarr_database
from metarr_sync.metarr import REQUIRED_COLUMNS, MetarrError, MetarrSource, PostgresSource
from metarr_sync.player_run import verify_after_of
from metarr_sync.players.base import STOP, signal_name
from metarr_sync.stamps import parse_stamp
from metarr_sync.state import State, StateError

log = logging.getLogger("metarr_sync.watch")

#: Seconds to wait before trying again when another run holds the lock, or Metarr's
#: database or the state could not be used.
LOCK_RETRY = 5.0
BUSY_RETRY = 30.0
#: Seconds between heartbeats written to the state (`status` judges by them).
HEARTBEAT = 5.0


class Probe:
    """Asks Metarr's database whether something was committed since the last question:
    token() changes when it was. Opened once; its source is only used for this."""

    def __init__(self, source: MetarrSource):
        self.source = source
        self.postgres = isinstance(source, PostgresSource)
        self._warned = False

    def token(self) -> object:
        if not self.postgres:
            conn = self.source.conn
            try:
                # fetchall() steps the statement to its end: no read transaction (and no
                # snapshot of the WAL) is held until the next poll.
                rows = conn.execute("PRAGMA data_version").fetchall()
            except sqlite3.Error as exc:
                raise MetarrError(f"Metarr database {self.source.description} cannot be "
                                  f"polled: {exc}") from None
            return rows[0][0]
        # The counters of every table a collection reads; each query() is a transaction
        # of its own, ended at once (so the statistics snapshot is fresh each time).
        rows = list(self.source.query(
            "SELECT COALESCE(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint, "
            "current_setting('track_counts') FROM pg_stat_user_tables WHERE relid IN "
            "(SELECT to_regclass(t) FROM unnest(?::text[]) AS t)",
            (list(REQUIRED_COLUMNS),)))
        total, tracking = rows[0]
        if tracking != "on":
            if not self._warned:
                self._warned = True
                log.warning("track_counts is off on Metarr's PostgreSQL server: changes "
                            "cannot be noticed; a run starts every minute instead")
            return ("minute", int(time.time() // 60))
        return int(total)

    def close(self) -> None:
        self.source.close()


class Watcher:
    """The watch loop; see the module docstring. `load()` reads the configuration again
    (SIGHUP); `show(report)` prints a run's result; `say(line)` a message on stderr."""

    def __init__(self, config: Config, state_dir: Path, *, load: Callable[[], Config],
                 open_source: Callable[[Config], MetarrSource],
                 show: Callable[[engine.RunReport], None], say: Callable[[str], None]):
        self.config = config
        self.state_dir = state_dir
        self.load = load
        self.open_source = open_source
        self.show = show
        self.say = say
        self.pid = os.getpid()
        self.probe: Probe | None = None
        self.token: object = None
        # A change calls for a run: when its burst began and when it was last seen.
        self.first_change: float | None = None
        self.last_change = 0.0
        #: Per player: when it is due again (retries, verifications); its retry delay and
        #: when a run last tried it.
        self.due: dict[str, float] = {}
        self.backoff: dict[str, float] = {}
        self.tried_at: dict[str, float] = {}
        self.blocked_until = 0.0  # no run before this (lock held, database unreadable)
        self.probe_retry_at = 0.0  # when to open Metarr's database again after losing it
        self.lock_said = False
        self.stop_signal: int | None = None
        self.reload_wanted = False
        self.in_run = False
        self.tick = time.monotonic()  # the loop's last turn (the watchdog looks at it)
        self.last_run_id: int | None = None
        self.status_line = "starting"
        self._wake_r, self._wake_w = socket.socketpair()
        self._beat_stop = threading.Event()

    # -- settings -------------------------------------------------------------------------
    @property
    def debounce(self) -> float:
        return self.config.watch.seconds("debounce")

    @property
    def max_delay(self) -> float:
        return self.config.watch.seconds("max_delay")

    @property
    def poll(self) -> float:
        return self.config.watch.seconds("poll_interval")

    # -- the loop -------------------------------------------------------------------------
    def serve(self) -> int:
        """Watch until SIGTERM/SIGINT; 0 then. Metarr's database that cannot be opened at
        the start raises MetarrError (exit 4), an unusable state StateError (exit 3)."""
        self.probe = Probe(self.open_source(self.config))
        self.token = self.probe.token()
        state = State(self.state_dir)
        try:
            state.watcher_started(self.pid, HEARTBEAT)
        finally:
            state.close()
        previous = self._install_signals()
        beat = threading.Thread(target=self._heartbeat, name="watch-heartbeat", daemon=True)
        beat.start()
        self.status_line = f"watching {self._database()}; first run"
        sdnotify.notify("READY=1", f"STATUS={self.status_line}")
        # A first run at once: whatever Metarr changed while nobody watched.
        self.first_change, self.last_change = time.monotonic(), -math.inf
        why = "stopped"
        try:
            while self.stop_signal is None:
                self.tick = now = time.monotonic()
                if self.reload_wanted:
                    self._reload()
                self._poll(now)
                players = self._due(now)
                if players is not None:
                    self._run(players)
                    continue
                self._sleep(self._next_wake(now) - now)
            why = f"stopped by {signal_name(self.stop_signal)}"
        finally:
            self._beat_stop.set()
            beat.join(timeout=HEARTBEAT + 1)
            self._restore_signals(previous)
            sdnotify.notify("STOPPING=1", f"STATUS={why}")
            with contextlib.suppress(StateError, sqlite3.Error):
                state = State(self.state_dir)
                try:
                    state.watcher_stopped(self.pid, why)
                finally:
                    state.close()
            if self.probe is not None:
                self.probe.close()
            self._wake_r.close()
            self._wake_w.close()
        self.say(f"metarr-sync: watch: {why}; everything confirmed is saved")
        return 0

    def _database(self) -> str:
        return self.probe.source.description if self.probe else "Metarr's database"

    def _poll(self, now: float) -> None:
        """Ask Metarr's database whether it changed. A lost connection is said once and
        opened again every BUSY_RETRY seconds; once back, a run catches up."""
        if self.probe is None:
            if now < self.probe_retry_at:
                return
            try:
                self.probe = Probe(self.open_source(self.config))
                self.token = self.probe.token()
            except MetarrError as exc:
                self.probe = None
                self.probe_retry_at = now + BUSY_RETRY
                log.info("Metarr's database still cannot be read: %s", exc)
                return
            self.say(f"metarr-sync: watch: {self._database()} can be read again")
            self.first_change, self.last_change = now, -math.inf
            return
        try:
            token = self.probe.token()
        except MetarrError as exc:
            self.say(f"metarr-sync: watch: {exc}; trying again every {BUSY_RETRY:g} s")
            self.probe.close()
            self.probe = None
            self.probe_retry_at = now + BUSY_RETRY
            return
        if token != self.token:
            self.token = token
            if self.first_change is None:
                self.first_change = now
                log.info("Metarr committed: a run in %g s (debounce), at most %g s",
                         self.debounce, self.max_delay)
            self.last_change = now

    def _due(self, now: float) -> Sequence[str] | None:
        """The players a run is due for now (() for all of them: Metarr changed), or None
        when none is."""
        if now < self.blocked_until:
            return None
        if self.first_change is not None and (
                now - self.last_change >= self.debounce
                or now - self.first_change >= self.max_delay):
            return ()
        due = [name for name, at in self.due.items() if at <= now]
        return due or None

    def _next_wake(self, now: float) -> float:
        """When the loop must look again: the next poll, the end of the debounce, or the
        next player due (not before a block ends; polls go on meanwhile)."""
        wake = now + self.poll
        if self.first_change is not None:
            wake = min(wake, self.last_change + self.debounce,
                       self.first_change + self.max_delay)
        wake = min([wake, *self.due.values()])
        if self.blocked_until > wake:
            wake = min(self.blocked_until, now + self.poll)
        return wake

    def _sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`; a signal (SIGHUP, SIGTERM) ends it at once."""
        import select

        if seconds > 0:
            ready, _, _ = select.select([self._wake_r], [], [], seconds)
            if ready:
                with contextlib.suppress(BlockingIOError, OSError):
                    self._wake_r.recv(4096)

    # -- a run ----------------------------------------------------------------------------
    def _run(self, players: Sequence[str]) -> None:
        """One run: every player after a change (those with nothing to do are left
        alone), else the players due."""
        now = time.monotonic()
        change = (self.first_change, self.last_change)
        self.first_change = None
        for name in players:
            self.due.pop(name, None)
        # Commits from here on call for another run.
        if self.probe is not None:
            with contextlib.suppress(MetarrError):
                self.token = self.probe.token()
        request = engine.Request(trigger=engine.WATCH, command=engine.WATCH,
                                 players=tuple(players), skip_idle=True)
        report: engine.RunReport | None = None
        try:
            source = self.open_source(self.config)
            try:
                if self.stop_signal is not None:
                    return
                self.in_run = True
                report = engine.run(self.config, source, self.state_dir, request)
            finally:
                self.in_run = False
                source.close()
        except engine.LockHeld as exc:
            if not self.lock_said:
                self.say(f"metarr-sync: watch: {exc.args[0].split(';')[0]}; trying again "
                         f"every {LOCK_RETRY:g} s")
                self.lock_said = True
            self._again(players, change, now + LOCK_RETRY)
            return
        except (MetarrError, StateError, ConfigError) as exc:
            for line in (exc.problems if isinstance(exc, ConfigError) else [str(exc)]):
                self.say(f"metarr-sync: watch: {line}")
            self.say(f"metarr-sync: watch: trying again in {BUSY_RETRY:g} s")
            self._again(players, change, now + BUSY_RETRY)
            return
        self.lock_said = False
        assert report is not None
        self._finished(report)

    def _again(self, players: Sequence[str], change: tuple[float | None, float],
               at: float) -> None:
        """A run that could not start is wanted again at `at`."""
        self.blocked_until = at
        if not players:
            first, last = change
            self.first_change = first if first is not None else time.monotonic()
            self.last_change = last
        for name in players:
            self.due[name] = at

    def _finished(self, report: engine.RunReport) -> None:
        now = time.monotonic()
        recorded = report.run_id is not None or report.message not in (None, "nothing to do")
        if recorded:
            self.show(report)
        if report.alerts is not None:  # sent by the engine; a failure is only said
            for failure in report.alerts.failures:
                self.say(f"metarr-sync: watch: warning: {failure}; the watcher goes on "
                         "(`metarr-sync status` shows the last alert error)")
        for result in report.players:
            self.tried_at[result.name] = now
        self._reschedule(report, now)
        if report.run_id is not None:
            self.last_run_id = report.run_id
            synced = sum(p.synced for p in report.players)
            failed = sum(p.failed for p in report.players)
            self.status_line = (f"watching {self._database()}; last run #{report.run_id} "
                                f"{report.status} at {report.finished_at}: {report.items} "
                                f"item(s), {synced} synced, {failed} failed")
            sdnotify.notify(f"STATUS={self.status_line}")
            self._beat()
        elif self.last_run_id is None:
            self.status_line = f"watching {self._database()}; nothing to do yet"
            sdnotify.notify(f"STATUS={self.status_line}")
            self._beat()

    def _reschedule(self, report: engine.RunReport, now: float) -> None:
        """When each player is due again: a retry of what the run left it (backing off),
        or the verification of its deliveries once their verify_after has passed."""
        try:
            state = State(self.state_dir)
            try:
                waiting = state.watch_schedule()
            finally:
                state.close()
        except (StateError, sqlite3.Error) as exc:
            self.say(f"metarr-sync: watch: {exc}")
            return
        tried = {p.name for p in report.players}
        wall = time.time()
        for name in list(self.due):
            if name not in waiting:
                del self.due[name]
        for name in list(self.backoff):
            if name not in waiting or not waiting[name][0]:
                del self.backoff[name]
        for name, (retry, oldest_sent) in waiting.items():
            player = self.config.players.get(name)
            if player is None or not player.enabled:
                self.due.pop(name, None)
                continue
            due = math.inf
            first = self.config.watch.seconds("retry_delay")
            if retry and name in tried:
                self.backoff[name] = (first if name not in self.backoff else min(
                    self.backoff[name] * 2, self.config.watch.seconds("retry_max_delay")))
            if retry:
                delay = self.backoff.setdefault(name, first)
                due = self.tried_at.get(name, now) + delay
            if oldest_sent and player.verify:
                try:
                    age = wall - parse_stamp(oldest_sent).timestamp()
                except ValueError:
                    age = 0.0
                at = now + max(0.0, verify_after_of(player) - age) + 1.0
                if name in self.backoff:  # failing: verification waits for the retry
                    at = max(at, self.tried_at.get(name, now) + self.backoff[name])
                elif name in tried and at <= now + 1.0:
                    # Asked just now and still not judged (the adapter waits longer than
                    # verify_after_of says): not again at once.
                    at = now + first
                due = min(due, at)
            if due < math.inf:
                # A player due but left alone by this run is not asked at once again.
                self.due[name] = max(due, now + 1.0)
            else:
                self.due.pop(name, None)

    # -- configuration ------------------------------------------------------------------
    def _reload(self) -> None:
        """SIGHUP: the new configuration, if it loads and its database opens; else the
        old one stays in force, and the problems are said."""
        self.reload_wanted = False
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        sdnotify.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")
        try:
            try:
                config = self.load()
                metarr_database(config)
            except ConfigError as exc:
                for problem in exc.problems:
                    self.say(f"metarr-sync: watch: configuration not reloaded: {problem}")
                self.say("metarr-sync: watch: the configuration in force stays")
                return
            if metarr_database(config) != metarr_database(self.config) or \
                    config.metarr.password_value != self.config.metarr.password_value:
                try:
                    probe = Probe(self.open_source(config))
                    token = probe.token()
                except MetarrError as exc:
                    self.say(f"metarr-sync: watch: configuration not reloaded: {exc}")
                    self.say("metarr-sync: watch: the configuration in force stays")
                    return
                if self.probe is not None:
                    self.probe.close()
                self.probe, self.token = probe, token
                self.first_change, self.last_change = time.monotonic(), -math.inf
            self.config = config
            self.due = {name: at for name, at in self.due.items() if name in config.players}
            self.say(f"metarr-sync: watch: configuration reloaded from {config.path}")
        finally:
            sdnotify.notify("READY=1", f"STATUS={self.status_line}")

    # -- heartbeat and watchdog -----------------------------------------------------------
    def _beat(self) -> None:
        try:
            state = State(self.state_dir)
            try:
                state.watcher_beat(self.pid, self.status_line, self.last_run_id)
            finally:
                state.close()
        except (StateError, sqlite3.Error) as exc:
            log.warning("heartbeat not written: %s", exc)

    def _heartbeat(self) -> None:
        """A thread: the heartbeat in the state every HEARTBEAT seconds, and WATCHDOG=1
        while the loop turns (or a run goes on; its requests are bounded by timeouts)."""
        watchdog = sdnotify.watchdog_interval()
        step = min(HEARTBEAT, watchdog) if watchdog else HEARTBEAT
        next_beat = 0.0
        while not self._beat_stop.is_set():
            now = time.monotonic()
            if watchdog and (self.in_run or now - self.tick < max(3 * self.poll,
                                                                   2 * watchdog)):
                sdnotify.notify("WATCHDOG=1")
            if now >= next_beat:
                self._beat()
                next_beat = now + HEARTBEAT
            self._beat_stop.wait(step)

    # -- signals --------------------------------------------------------------------------
    def _install_signals(self) -> tuple[int, dict[int, Any]]:
        """Signals wake the loop at once: their number is written to the wake-up socket
        (signal.set_wakeup_fd), which _sleep waits on."""
        self._wake_w.setblocking(False)
        self._wake_r.setblocking(False)
        wakeup = signal.set_wakeup_fd(self._wake_w.fileno())
        handlers: dict[int, Any] = {}
        for signum, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                                (signal.SIGHUP, self._on_hup)):
            handlers[signum] = signal.signal(signum, handler)
        return wakeup, handlers

    def _restore_signals(self, previous: tuple[int, dict[int, Any]]) -> None:
        wakeup, handlers = previous
        signal.set_wakeup_fd(wakeup)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_wanted = True

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is not None:
            self.stop_signal = signum
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(128 + signum)  # a second signal: out now (the state is transactional)
        self.stop_signal = signum
        if self.in_run:
            if STOP.request(signum, soft=True):
                # Each player finishes the batch in flight; past stop_timeout the
                # requests not yet sent are given up (they stay queued).
                limit = self.config.watch.seconds("stop_timeout")
                timer = threading.Timer(limit, STOP.harden)
                timer.daemon = True
                timer.start()
                self.say(f"metarr-sync: watch: {signal_name(signum)}: finishing the batch "
                         f"under way (at most {limit:g} s), then stopping; send it again to "
                         "quit at once")
            else:
                STOP.preset(signum)  # still collecting: no player is contacted
                self.say(f"metarr-sync: watch: {signal_name(signum)}: stopping before any "
                         "player is contacted; send it again to quit at once")


def dump_json_line(report: engine.RunReport) -> None:
    """One run as one line of JSON (JSON Lines): what `run --json` prints, compacted."""
    from metarr_sync import render

    sys.stdout.write(json.dumps(render.run_json(report), ensure_ascii=False) + "\n")
    sys.stdout.flush()

