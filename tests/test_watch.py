"""`metarr-sync watch`, driven as installed, as systemd or a container runs it.

- A burst of commits to Metarr's database (SQLite and PostgreSQL) is one run, one batch
  to the player; between bursts nothing is sent (the fake's requests are counted).
- SIGHUP: a good configuration takes effect; a broken one is refused with its problems on
  stderr, the old one stays in force and the watcher goes on.
- SIGTERM in the middle of a batch: what the player confirmed is committed, the rest stays
  queued, exit 0.
- sd_notify: READY=1, STATUS=, WATCHDOG=1 (with WATCHDOG_USEC), STOPPING=1 on an AF_UNIX
  datagram socket, also in the abstract namespace.
- SQLite in WAL mode: while watch polls beside a writer, Metarr's -wal file stays bounded
  (checkpoints happen); a reader holding a transaction open would grow it (shown first).
- `status` shows the watcher alive while it runs and not after it stopped.
- Retries and verification on the watcher's own schedule; the run lock shared with `run`.
- Alerts: its runs send them as `run`'s do, once per change of a player's condition.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support.configs import config_with, recorder
from support.fake_players import FakeJellyfin, FakeKodi
from support.waiting import wait_for
from support.webhook import Webhook

from metarr_sync.config import ConfigError, parse_config

#: Fast settings for tests: runs 0.3 s after the last commit, polls every 50 ms.
FAST = {"debounce": "0.3s", "max_delay": "20s", "poll_interval": "0.05s"}


class Notifications:
    """A systemd stand-in: the AF_UNIX datagram socket of $NOTIFY_SOCKET, every field
    received kept in order."""

    def __init__(self, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + name[1:] if name.startswith("@") else name)
        self.sock.settimeout(0.05)
        self.fields: list[str] = []
        self.lock = threading.Lock()
        self.closed = False
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        while not self.closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self.lock:
                self.fields.extend(data.decode().split("\n"))

    def all(self) -> list[str]:
        with self.lock:
            return list(self.fields)

    def statuses(self) -> list[str]:
        return [f[len("STATUS="):] for f in self.all() if f.startswith("STATUS=")]

    def close(self) -> None:
        self.closed = True
        self.thread.join(timeout=1)
        self.sock.close()


class Watch:
    """`metarr-sync watch` running in the background: stdout and stderr to files,
    notifications to a test socket."""

    def __init__(self, cli, root: Path, *args: str, env: dict[str, str] | None = None,
                 notify: str | None = None):
        self.root = root
        self.notify = Notifications(notify or str(root / "notify.sock"))
        self.out_path, self.err_path = root / "watch.out", root / "watch.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.proc = subprocess.Popen(
                [cli.exe, "watch", *args], stdout=out, stderr=err, text=True,
                env={**cli.env, "NOTIFY_SOCKET": self.notify.name, **(env or {})})

    def stderr(self) -> str:
        return self.err_path.read_text()

    def stdout(self) -> str:
        return self.out_path.read_text()

    def ready(self) -> None:
        """READY=1 and the first run done (it may have had nothing to do)."""
        wait_for(lambda: "READY=1" in self.notify.all(), what="READY=1")
        wait_for(lambda: any("nothing to do yet" in s or "last run #" in s
                             for s in self.notify.statuses()), what="the first run")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.notify.close()


@pytest.fixture
def watch(cli, tmp_path: Path) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*args: str, env: dict[str, str] | None = None,
              notify: str | None = None) -> Watch:
        one = Watch(cli, tmp_path, *args, env=env, notify=notify)
        started.append(one)
        return one

    try:
        yield start
    finally:
        for one in started:
            one.close()


def watch_runs(cli) -> list[sqlite3.Row]:
    if not (cli.state_dir / "state.sqlite").exists():
        return []
    with contextlib.closing(cli.state()) as state:
        return state.execute("SELECT * FROM runs WHERE trigger = 'watch' ORDER BY id"
                             ).fetchall()


def sent_keys(cli, player: str) -> list[str]:
    return [t["key"] for t in cli.sent(player)]


def applies(cli, player: str) -> int:
    return sum(1 for c in cli.calls(player) if c["op"] == "apply")


# --- a burst is one run; idle sends nothing ------------------------------------------------

def test_a_burst_of_commits_is_one_run_and_idle_sends_nothing(cli, metarr_db, watch):
    with FakeJellyfin() as jelly:
        # verify off: each run reports its new items (no rescan in flight to share).
        cli.write_config(config_with(
            metarr=metarr_db.config_table, players=[jelly.player("den", verify=False)],
            mappings=[("/data/media", "/media")],
            watch={**FAST, "debounce": "2s"}))  # PostgreSQL's counters: see watch.py
        w = watch()
        w.ready()
        # Idle: an empty Metarr, nothing to do; the fake counts every request it gets.
        time.sleep(1.5)
        assert jelly.count() == 0, jelly.call_counts()
        assert watch_runs(cli) == []

        movies = [metarr_db.add_movie(f"Burst {n}", 2000 + n) for n in range(20)]
        wait_for(lambda: jelly.count("POST /Library/Media/Updated") >= 1, what="the run")
        wait_for(lambda: len(watch_runs(cli)) == 1 and watch_runs(cli)[0]["finished_at"],
                 what="the run to finish")
        # One run, one batch: a single report for the 20 new movies (their library
        # folder, which Jellyfin validates whole for each of them anyway).
        assert jelly.count("POST /Library/Media/Updated") == 1
        assert jelly.updates == [{"Path": "/media/movies", "UpdateType": "Modified"}]
        run = watch_runs(cli)[0]
        assert (run["status"], run["items"], run["synced"]) == ("synced", 20, 20)
        assert len(movies) == 20

        # Idle again: nothing more is sent, and no further run is recorded (on PostgreSQL
        # the server's counters of the last commits may show late: a run finds nothing).
        before = jelly.count()
        time.sleep(1.5)
        assert jelly.count() == before, jelly.call_counts()
        assert len(watch_runs(cli)) == 1
        assert w.stop() == 0, w.stderr()
        assert "Traceback" not in w.stderr()
    # The run's result was printed as `run` prints it.
    assert "den" in w.stdout() and "synced" in w.stdout()


def test_json_prints_one_document_a_line_per_run(cli, metarr, watch):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST,
                                 sync={"initial_lookback": "all"}))
    metarr.add_movie("First", 2001)
    w = watch("--json")
    w.ready()
    wait_for(lambda: len(sent_keys(cli, "a")) == 1, what="the first run")
    metarr.add_movie("Second", 2002)
    wait_for(lambda: len(sent_keys(cli, "a")) == 2, what="the second run")
    wait_for(lambda: len(w.stdout().splitlines()) == 2, what="two lines")
    assert w.stop() == 0
    docs = [json.loads(line) for line in w.stdout().splitlines()]
    assert [(d["trigger"], d["status"], d["items"]) for d in docs] == [
        ("watch", "synced", 1), ("watch", "synced", 1)]


# --- SIGHUP -----------------------------------------------------------------------------------

def test_sighup_reloads_a_good_config_and_refuses_a_broken_one(cli, metarr, watch):
    def config(*players: str) -> str:
        return config_with(metarr=metarr.path, players=[recorder(p) for p in players],
                           watch=FAST, sync={"initial_lookback": "all"})

    cli.write_config(config("a"))
    w = watch()
    w.ready()
    cli.write_config(config("a", "b"))
    w.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in w.stderr(), what="the reload")
    first = f"movie:{metarr.add_movie('After reload', 2001)}"
    # The new setting is in force: player b exists now.
    wait_for(lambda: first in sent_keys(cli, "b") and first in sent_keys(cli, "a"),
             what="a and b to get the movie")
    assert sent_keys(cli, "a") == [first]

    # A broken file: refused, its problem said, the configuration in force stays.
    cli.config.write_text("[sync]\nbatch_size = 'many'\n[players.c]\ntype = 'nothing'\n")
    w.proc.send_signal(signal.SIGHUP)
    # Each problem is a line of its own, then the verdict: wait for the last line.
    wait_for(lambda: "the configuration in force stays" in w.stderr(), what="the refusal")
    err = w.stderr()
    assert "sync.batch_size" in err and "unknown player type 'nothing'" in err
    assert "the configuration in force stays" in err
    second = f"movie:{metarr.add_movie('After a broken reload', 2002)}"
    # a and b are synced side by side: either may record its delivery first.
    wait_for(lambda: second in sent_keys(cli, "b") and second in sent_keys(cli, "a"),
             what="a and b to get the second movie")
    assert sent_keys(cli, "a") == [first, second]
    assert w.proc.poll() is None  # still watching
    assert w.stop() == 0
    assert "Traceback" not in w.stderr()


# --- SIGTERM ----------------------------------------------------------------------------------

def test_sigterm_mid_batch_commits_what_was_confirmed_and_exits_0(cli, metarr, watch):
    movies = {f"movie:{metarr.add_movie(f'Movie {n}', 2000 + n)}" for n in range(8)}
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST,
                                 sync={"initial_lookback": "all", "batch_size": 2,
                                       "timeout": 5}))
    cli.behave("a", "slow", "0.5")
    w = watch()
    wait_for(lambda: applies(cli, "a") >= 1, what="the first batch")
    started = time.monotonic()
    assert w.stop(signal.SIGTERM) == 0, w.stderr()
    assert time.monotonic() - started < 5  # the batch under way, not the whole queue
    err = w.stderr()
    assert "Traceback" not in err and "SIGTERM" in err
    sent = sent_keys(cli, "a")
    assert 0 < len(sent) < 8
    with contextlib.closing(cli.state()) as state:
        run = state.execute("SELECT status, finished_at FROM runs").fetchone()
        assert run["status"] == "interrupted" and run["finished_at"]
        delivered = {r[0] for r in state.execute(
            "SELECT item_key FROM player_sync_status WHERE player = 'a'")}
        left = state.execute("SELECT item_key, status, attempts FROM sync_queue").fetchall()
        watcher = state.execute("SELECT stopped_at, status FROM watcher").fetchone()
    # What the player confirmed is committed (delivered, waiting to be verified); the
    # rest is queued as it was, no attempt counted.
    assert delivered == set(sent)
    queue = {r["item_key"]: (r["status"], r["attempts"]) for r in left}
    assert {k for k, (status, _) in queue.items() if status == "sent"} == set(sent)
    untouched = {k: v for k, v in queue.items() if k not in sent}
    assert set(untouched) == movies - set(sent)
    assert set(untouched.values()) == {("pending", 0)}
    assert watcher["stopped_at"] and "SIGTERM" in watcher["status"]
    # A run afterwards sends the rest, nothing twice.
    cli.heal("a", "slow")
    assert cli("run").returncode == 0
    assert sorted(sent_keys(cli, "a")) == sorted(movies)


def _jellyfin_holding(metarr, jelly: FakeJellyfin, count: int) -> list[int]:
    movies = []
    for n in range(count):
        movies.append(metarr.add_movie(f"Movie {n}", 2000 + n))
        jelly.put("Movie", f"/media/movies/Movie {n} ({2000 + n})/Movie {n} ({2000 + n}).mkv")
    return movies


def _queue(cli) -> dict[str, tuple[str, int]]:
    with contextlib.closing(cli.state()) as state:
        return {r[0]: (r[1], r[2]) for r in state.execute(
            "SELECT item_key, status, attempts FROM sync_queue")}


def test_sigterm_lets_a_player_finish_the_batch_in_flight(cli, metarr, watch):
    """A batch of three refreshes, one request each, 0.3 s apiece: SIGTERM after the
    first one arrived lets the other two go, and no fourth."""
    with FakeJellyfin(latency=0.3) as jelly:
        movies = _jellyfin_holding(metarr, jelly, 9)
        cli.write_config(config_with(
            metarr=metarr.path, players=[jelly.player("den", concurrency=1)],
            mappings=[("/data/media", "/media")], watch=FAST,
            sync={"initial_lookback": "all", "batch_size": 3, "timeout": 5}))
        w = watch()
        wait_for(lambda: jelly.count("POST /Items/{id}/Refresh") >= 1, what="a refresh")
        assert w.stop(signal.SIGTERM) == 0, w.stderr()
        assert jelly.count("POST /Items/{id}/Refresh") == 3
        assert "finishing the batch under way" in w.stderr()
        queue = _queue(cli)
        assert sorted(queue.values()) == [("pending", 0)] * 6 + [("sent", 1)] * 3
        assert set(queue) == {f"movie:{m}" for m in movies}


def test_a_batch_slower_than_stop_timeout_is_cut_after_it(cli, metarr, watch):
    with FakeJellyfin(latency=1.0) as jelly:
        _jellyfin_holding(metarr, jelly, 3)
        cli.write_config(config_with(
            metarr=metarr.path, players=[jelly.player("den", concurrency=1)],
            mappings=[("/data/media", "/media")], watch={**FAST, "stop_timeout": "0.5s"},
            sync={"initial_lookback": "all", "batch_size": 3, "timeout": 5}))
        w = watch()
        wait_for(lambda: jelly.count("POST /Items/{id}/Refresh") >= 1, what="a refresh")
        started = time.monotonic()
        assert w.stop(signal.SIGTERM) == 0, w.stderr()
        assert time.monotonic() - started < 4  # not the 3 s the whole batch would take
        assert jelly.count("POST /Items/{id}/Refresh") < 3
        assert "(at most 0.5 s)" in w.stderr()
        # Nothing lost: what was not confirmed is still queued.
        assert len(_queue(cli)) == 3


# --- systemd notifications -----------------------------------------------------------------

@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_ready_status_watchdog_stopping(cli, metarr, watch, tmp_path, abstract):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST,
                                 sync={"initial_lookback": "all"}))
    name = f"@metarr-sync-test-{os.getpid()}-{time.monotonic_ns()}" if abstract else None
    w = watch(env={"WATCHDOG_USEC": "200000"}, notify=name)  # a ping every 0.1 s
    w.ready()
    metarr.add_movie("Heat", 1995)
    wait_for(lambda: any("last run #" in s for s in w.notify.statuses()), what="STATUS")
    wait_for(lambda: w.notify.all().count("WATCHDOG=1") >= 3, what="watchdog pings")
    assert w.stop() == 0
    wait_for(lambda: "STOPPING=1" in w.notify.all(), what="STOPPING=1", timeout=5)
    fields = w.notify.all()
    assert fields.index("READY=1") < fields.index("STOPPING=1")
    status = next(s for s in w.notify.statuses() if "last run #" in s)
    assert "synced" in status and "1 item(s), 1 synced, 0 failed" in status


def test_no_watchdog_pings_without_watchdog_usec(cli, metarr, watch):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST))
    w = watch()
    w.ready()
    time.sleep(0.5)
    assert w.stop() == 0
    assert "WATCHDOG=1" not in w.notify.all()
    assert "READY=1" in w.notify.all()


# --- Metarr's WAL ------------------------------------------------------------------------------

def write_jobs(path: Path, commits: int) -> int:
    """Metarr's own bookkeeping: `commits` commits of 16 KiB each (what its job queue
    writes); the size of the -wal file afterwards."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint = 100")
        conn.execute("CREATE TABLE IF NOT EXISTS jobs (id INTEGER PRIMARY KEY, payload BLOB)")
        for _ in range(commits):
            conn.execute("INSERT INTO jobs (payload) VALUES (?)", (os.urandom(16384),))
            time.sleep(0.002)  # let the watcher poll in between
    finally:
        conn.close()
    return Path(f"{path}-wal").stat().st_size


def test_metarr_wal_stays_bounded_while_watch_polls(cli, metarr, watch):
    path = metarr.path
    assert metarr.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # The control: a reader that keeps a transaction open stops the checkpoints.
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM movies").fetchone()
    grown = write_jobs(path, 300)
    reader.execute("COMMIT")
    reader.close()
    assert grown > 4_000_000
    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0

    cli.write_config(config_with(metarr=path, players=[recorder("a")], sync={
        "initial_lookback": "all"}, watch={**FAST, "debounce": "0.5s"}))
    w = watch()
    w.ready()
    size = write_jobs(path, 300)
    assert size < 1_500_000, size  # 100-page checkpoints: ~0.4 MB, not 5 MB
    # And it was polling all along: the commit after the burst is delivered.
    movie = f"movie:{metarr.add_movie('Heat', 1995)}"
    wait_for(lambda: sent_keys(cli, "a") == [movie], what="the movie")
    assert w.stop() == 0


# --- status ----------------------------------------------------------------------------------

def test_status_shows_the_watcher_alive_then_stopped(cli, metarr, watch):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST,
                                 sync={"initial_lookback": "all"}))
    metarr.add_movie("Heat", 1995)
    w = watch()
    w.ready()
    wait_for(lambda: watch_runs(cli) and watch_runs(cli)[-1]["finished_at"], what="run")
    run_id = watch_runs(cli)[-1]["id"]
    wait_for(lambda: json.loads(cli("status", "--json").stdout)["watcher"]["last_run_id"]
             == run_id, what="the heartbeat with the run")
    doc = json.loads(cli("status", "--json").stdout)["watcher"]
    assert doc["alive"] is True and doc["pid"] == w.proc.pid
    assert doc["last_run_status"] == "synced" and doc["stopped_at"] is None
    plain = cli("status").stdout
    assert f"watcher: alive (pid {w.proc.pid}" in plain
    assert f"its last run #{run_id} synced" in plain

    assert w.stop() == 0
    doc = json.loads(cli("status", "--json").stdout)["watcher"]
    assert doc["alive"] is False and doc["stopped_at"] and "SIGTERM" in doc["status"]
    assert f"watcher: not running (pid {w.proc.pid} stopped" in cli("status").stdout


def test_status_without_a_watcher_says_nothing_of_one(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")]))
    assert cli("run").returncode == 0
    assert json.loads(cli("status", "--json").stdout)["watcher"] is None
    assert "watcher" not in cli("status").stdout


def test_a_killed_watcher_is_not_alive(cli, metarr, watch):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST))
    w = watch()
    w.ready()
    w.proc.kill()
    w.proc.wait(timeout=10)
    doc = json.loads(cli("status", "--json").stdout)["watcher"]
    assert doc["alive"] is False and doc["stopped_at"] is None
    assert "it ended without stopping" in cli("status").stdout


# --- retries, verification, the lock -------------------------------------------------------

def test_a_player_left_with_work_is_retried_on_its_own_schedule(cli, metarr, watch):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a"), recorder("b")],
                                 sync={"initial_lookback": "all"},
                                 watch={**FAST, "retry_delay": "0.5s",
                                        "retry_max_delay": "1s"}))
    cli.behave("a", "fail", "offline")
    movie = f"movie:{metarr.add_movie('Heat', 1995)}"
    w = watch()
    wait_for(lambda: sum(1 for c in cli.calls("a") if c.get("failed")) >= 3,
             what="three tries of the offline player")
    assert sent_keys(cli, "b") == [movie]
    cli.heal("a", "fail")
    wait_for(lambda: sent_keys(cli, "a") == [movie], what="the retry to deliver")
    probes_b = sum(1 for c in cli.calls("b") if c["op"] == "probe")
    time.sleep(1.5)
    # Once delivered, nobody is contacted again: the retries were a's alone.
    assert sum(1 for c in cli.calls("b") if c["op"] == "probe") == probes_b == 1
    calls_a = len(cli.calls("a"))
    time.sleep(1.0)
    assert len(cli.calls("a")) == calls_a
    assert w.stop() == 0


def test_jellyfin_deliveries_are_verified_once_verify_after_has_passed(cli, metarr, watch):
    with FakeJellyfin() as jelly:
        cli.write_config(config_with(
            metarr=metarr.path, players=[jelly.player("den", verify_after=2)],
            mappings=[("/data/media", "/media")], watch=FAST,
            sync={"initial_lookback": "all"}))
        jelly.add_file("/media/movies/Heat (1995)/Heat (1995).mkv")  # what Radarr put there
        w = watch()
        w.ready()
        metarr.add_movie("Heat", 1995)
        wait_for(lambda: jelly.count("POST /Library/Media/Updated") == 1, what="delivery")

        def queue() -> list[tuple[str, str]]:
            with contextlib.closing(cli.state()) as state:
                return [tuple(r) for r in state.execute(
                    "SELECT item_key, status FROM sync_queue")]

        wait_for(lambda: queue() and queue()[0][1] == "sent", what="the delivery recorded")
        sent_at = time.monotonic()
        # No commit to Metarr from here on: the watcher comes back for the verification.
        wait_for(lambda: queue() == [], what="the verification", timeout=15)
        assert time.monotonic() - sent_at >= 1.0  # not before verify_after
        with contextlib.closing(cli.state()) as state:
            verified = state.execute("SELECT verified_at FROM player_sync_status").fetchone()
        assert verified[0]
        assert len(watch_runs(cli)) == 2  # the delivery, then the verification
        assert w.stop() == 0


def test_a_held_lock_delays_the_run_and_never_fails_the_watcher(cli, metarr, watch):
    from metarr_sync.state import RunLock

    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")], watch=FAST,
                                 sync={"initial_lookback": "all"}))
    w = watch()
    w.ready()
    lock = RunLock(cli.state_dir)
    assert lock.acquire()
    try:
        movie = f"movie:{metarr.add_movie('Heat', 1995)}"
        wait_for(lambda: "holds" in w.stderr(), what="the lock to be noticed")
        assert sent_keys(cli, "a") == []
        assert w.proc.poll() is None
    finally:
        lock.release()
    wait_for(lambda: sent_keys(cli, "a") == [movie], what="the run after the lock")
    assert w.stop() == 0
    assert w.stderr().count("holds") == 1  # said once, not every 5 s


# --- the [watch] settings ------------------------------------------------------------------

def test_watch_settings_are_validated(tmp_path):
    path = tmp_path / "config.toml"
    config = parse_config({"watch": {"debounce": "0.5s", "max_delay": "2m"}}, path)
    assert config.watch.seconds("debounce") == 0.5 and config.watch.seconds("max_delay") == 120
    assert config.watch.poll_interval == "1s"
    with pytest.raises(ConfigError) as bad:
        parse_config({"watch": {"debounce": "soon", "poll_interval": 1, "max_dealy": "1m",
                                "retry_delay": "0s"}}, path)
    problems = "\n".join(bad.value.problems)
    assert "watch.debounce: 'soon' is not a duration" in problems
    assert "watch.poll_interval: must be a string" in problems
    assert "watch.max_dealy: unknown key (did you mean 'max_delay'?)" in problems
    assert "watch.retry_delay: '0s' must be between" in problems
    with pytest.raises(ConfigError) as bad:
        parse_config({"watch": {"debounce": "2m", "max_delay": "1m"}}, path)
    assert "shorter than watch.debounce" in bad.value.problems[0]


def test_config_show_prints_the_watch_settings(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, players=[recorder("a")],
                                 watch={"debounce": "5s"}))
    doc = json.loads(cli("config", "show", "--json").stdout)
    assert doc["watch"] == {"debounce": "5s", "max_delay": "60s", "poll_interval": "1s",
                            "retry_delay": "30s", "retry_max_delay": "15m",
                            "stop_timeout": "30s"}
    assert "[watch]" in cli("config", "show").stdout


def test_watch_without_a_database_or_with_a_bad_config_exits_3(cli, tmp_path):
    cli.write_config(config_with(players=[recorder("a")]))
    result = cli("watch", timeout=30)
    assert result.returncode == 3 and "[metarr] database is not set" in result.stderr
    cli.write_config(config_with(metarr=tmp_path / "nothing.sqlite", players=[recorder("a")],
                                 watch={"debounce": "fast"}))
    result = cli("watch", timeout=30)
    assert result.returncode == 3 and "watch.debounce" in result.stderr
    assert "Traceback" not in result.stderr


def test_watch_with_an_unreadable_metarr_exits_4(cli, tmp_path):
    cli.write_config(config_with(metarr=tmp_path / "nothing.sqlite", players=[recorder("a")]))
    result = cli("watch", timeout=30)
    assert result.returncode == 4 and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


# --- the schedule, in-process ----------------------------------------------------------------

def schedule_watcher(tmp_path: Path, **player: object):
    from metarr_sync.watch import Watcher

    config = parse_config({"metarr": {"database": str(tmp_path / "metarr.sqlite")},
                           "players": {"den": {"type": "jellyfin", "url": "http://127.0.0.1:9",
                                               "token": "t", **player}}},
                          tmp_path / "config.toml")
    return Watcher(config, tmp_path / "state", load=lambda: config, open_source=None,
                   show=lambda report: None, say=lambda line: None)


def failed_run(*players: str):
    from metarr_sync.engine import RunReport
    from metarr_sync.player_run import PlayerResult, PlayerStatus

    report = RunReport("watch", "watch", False, "2026-12-04T10:00:00.000Z", run_id=1)
    report.players = [PlayerResult(p, "jellyfin", PlayerStatus.FAILED) for p in players]
    return report


def test_retries_back_off_doubling_up_to_the_cap_and_stop_once_done(tmp_path):
    from metarr_sync.metarr import Item
    from metarr_sync.state import State

    w = schedule_watcher(tmp_path)
    item = Item("movie", 1, "/data/media/movies/Heat (1995)/Heat (1995).mkv",
                stamp="2026-12-04T10:00:00.000Z")
    state = State(w.state_dir)
    state.enqueue([item], ["den"], "run")
    state.close()
    delays = []
    for tick in range(7):
        now = 1000.0 + tick
        w.tried_at["den"] = now
        w._reschedule(failed_run("den"), now)
        delays.append(w.due["den"] - now)
    assert delays == [30, 60, 120, 240, 480, 900, 900]
    # A run that left nothing: no retry, the backoff starts afresh next time.
    state = State(w.state_dir)
    state.clear_queue()
    state.close()
    w._reschedule(failed_run("den"), 2000.0)
    assert w.due == {} and w.backoff == {}


def test_a_delivery_is_scheduled_for_verification_after_verify_after(tmp_path):
    from metarr_sync.metarr import Item
    from metarr_sync.players.base import Outcome, Result
    from metarr_sync.state import State

    w = schedule_watcher(tmp_path, verify_after=600)
    item = Item("movie", 1, "/data/media/movies/Heat (1995)/Heat (1995).mkv",
                stamp="2026-12-04T10:00:00.000Z")
    state = State(w.state_dir)
    state.enqueue([item], ["den"], "run")
    state.record("den", [item], [Outcome(item.key, Result.SENT)], None)
    state.close()
    report = failed_run()
    report.players = []
    w._reschedule(report, 5000.0)
    assert 5600.0 <= w.due["den"] <= 5602.0  # verify_after from the delivery, plus 1 s
    # verify = false: nobody comes back for it.
    w = schedule_watcher(tmp_path, verify_after=600, verify=False)
    w._reschedule(report, 5000.0)
    assert w.due == {}


# --- alerts -------------------------------------------------------------------------------

def test_a_player_that_fails_under_watch_is_alerted_once_over_two_bursts(cli, metarr, watch):
    """The watcher's runs go through the engine, which sends the alerts: one message when
    the player becomes failed, none when the next burst's run finds it failed again (not
    one per run, and not two for one run), and no secret in it or in the output."""
    alert_password, kodi_password = "SECRETPASS-watch-alert-5c2e", "KODI-PW-watch-8a41"
    kodi = FakeKodi(sources={"/mnt/movies/": "movies"}, username="kodi",
                    password=kodi_password).start()
    hook = Webhook().start()
    try:
        cli.write_config(config_with(
            metarr=metarr.path,
            sync={"initial_lookback": "all", "timeout": 5, "retry_attempts": 0},
            # No retry between the bursts: every run here is one burst's.
            watch={**FAST, "retry_delay": "1h", "retry_max_delay": "1h"},
            players=[kodi.player("lounge", [("/data/media/movies", "/mnt/movies")])],
            alerts={"urls": [hook.apprise_url(user="alerts", password=alert_password)]}))
        kodi.misbehave("refused")
        w = watch()
        w.ready()  # an empty Metarr: nothing to do, nobody contacted, nothing to say
        assert watch_runs(cli) == [] and hook.messages == []

        def burst(*titles: str) -> list[sqlite3.Row]:
            """Commit `titles` to Metarr; the watch runs once they are all done (the
            watcher's status line comes after the run's alerts)."""
            done = {r["id"] for r in watch_runs(cli)}
            for n, title in enumerate(titles):
                metarr.add_movie(title, 2001 + n)

            def finished() -> bool:
                new = [r for r in watch_runs(cli) if r["id"] not in done]
                return bool(new) and all(r["finished_at"] for r in new) and any(
                    f"last run #{new[-1]['id']} " in line for line in w.notify.statuses())

            wait_for(finished, what=f"the run of {', '.join(titles)}")
            return [r for r in watch_runs(cli) if r["id"] not in done]

        first = burst("Heat", "Ronin")
        [alert] = hook.messages
        assert alert["title"] == "metarr-sync: lounge: player failed"
        assert alert["type"] == "failure"
        assert "lounge failed: " in alert["message"] and "refused" in alert["message"]

        second = burst("Collateral")
        assert [r["status"] for r in first + second] == ["failed"] * len(first + second)
        assert len(hook.messages) == 1  # the same condition: nothing new to say
        assert w.stop() == 0, w.stderr()
        status = cli("status", "--json")
    finally:
        hook.stop()
        kodi.stop()
    assert "Traceback" not in w.stderr() and "alert not sent" not in w.stderr()
    with contextlib.closing(cli.state()) as state:
        assert [tuple(r) for r in state.execute(
            "SELECT player, condition FROM player_alerts")] == [("lounge", "down")]
    assert json.loads(status.stdout)["alerts"]["last_error"] is None
    for text in (json.dumps(hook.messages), w.stdout(), w.stderr(), status.stdout,
                 status.stderr):
        assert alert_password not in text and kodi_password not in text
