"""Crash safety and concurrency of `metarr-sync run`, through the installed command.

- SIGKILL during collection, between batches and mid-request: a rerun delivers every item
  to every player, and the state database passes `PRAGMA integrity_check`.
- SIGINT/SIGTERM stop cleanly: the batch or request under way finishes (or, past a short
  grace, is abandoned), everything confirmed is committed, the run is recorded as
  interrupted, exit 130/143, and the rest is sent by the next run, nothing twice.
- Two runs started together: one works, the other exits 5 or waits (--wait); no item is
  sent twice.
- Metarr's database locked or from another schema: exit 4 with a clear message, and
  Metarr's files are byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest
from support.configs import config_with, recorder
from support.fake_players import FakeKodi
from support.metarr_factory import ago, sqlite_ts
from support.waiting import wait_for


def recorders(db: object, batch: int, timeout: float) -> str:
    """Two recording players, a and b, every item from the start, two retries a request."""
    return config_with(metarr=str(db), players=[recorder("a"), recorder("b")], sync={
        "batch_size": batch, "initial_lookback": "all", "timeout": timeout,
        "retry_attempts": 2})


def applies(cli, player: str) -> int:
    return sum(1 for c in cli.calls(player) if c["op"] == "apply")


def assert_state_sound(cli) -> None:
    with cli.state() as state:
        assert state.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert state.execute("PRAGMA foreign_key_check").fetchall() == []


def bulk_movies(db, count: int) -> None:
    """Many published movies at once (one transaction): a collection that takes a while."""
    when = sqlite_ts(ago(hours=1))
    db.conn.execute("BEGIN")
    db.conn.executemany(
        "INSERT INTO movies (library_id, file_path, file_name, title, year, "
        "identification_status, published_at) VALUES (?, ?, ?, ?, 2000, 'published', ?)",
        ((db.movie_lib, f"/data/media/movies/Film {n} (2000)/Film {n} (2000).mkv",
          f"Film {n} (2000).mkv", f"Film {n}", when) for n in range(count)))
    db.conn.execute("COMMIT")


def lock_taken(cli) -> bool:
    lock = cli.state_dir / "run.lock"
    return lock.exists() and lock.read_text().strip() != ""


# --- SIGKILL ------------------------------------------------------------------------------

def test_sigkill_during_collection_then_rerun_delivers_everything(cli, metarr):
    bulk_movies(metarr, 20000)
    cli.write_config(recorders(metarr.path, batch=5000, timeout=5))
    proc = cli.popen("run", "--no-verify")
    wait_for(lambda: lock_taken(cli), what="the run to take its lock")
    time.sleep(0.2)  # inside the collection: reading 20,000 items takes seconds
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert cli.calls("a") == [] and cli.calls("b") == [], "killed too late: not in collection"
    assert_state_sound(cli)
    rerun = cli("run", "--no-verify", "--json")
    assert rerun.returncode == 0, rerun.stderr
    for player in ("a", "b"):
        sent = Counter(t["key"] for t in cli.sent(player))
        assert len(sent) == 20000 and set(sent.values()) == {1}, player
    assert_state_sound(cli)
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0


@pytest.mark.parametrize("after_batches", [1, 2])
def test_sigkill_between_batches_then_rerun_delivers_everything(cli, metarr, after_batches):
    movies = {f"movie:{metarr.add_movie(f'Movie {n}', 2000 + n)}" for n in range(8)}
    cli.write_config(recorders(metarr.path, batch=2, timeout=5))
    cli.behave("a", "slow", "0.3")
    proc = cli.popen("run")
    wait_for(lambda: applies(cli, "a") >= after_batches, what="batches")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    cli.heal("a", "slow")
    assert_state_sound(cli)
    rerun = cli("run", "--json")
    assert rerun.returncode == 0, rerun.stderr
    for player in ("a", "b"):
        # At least once: a batch delivered but not yet recorded when the process died
        # is sent again (players take a repeated refresh without harm).
        assert {t["key"] for t in cli.sent(player)} == movies
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
        done = state.execute("SELECT count(*) FROM player_sync_status WHERE verified_at "
                             "IS NOT NULL").fetchone()[0]
    assert done == 16
    assert_state_sound(cli)


def kodi_setup(cli, metarr, kodi: FakeKodi, count: int = 3, timeout: float = 1) -> set[str]:
    files = set()
    for n in range(count):
        metarr.add_movie(f"Movie {n}", 2000 + n)
        files.add(f"/mnt/movies/Movie {n} ({2000 + n})/Movie {n} ({2000 + n}).mkv")
    kodi.add_file(*files)
    cli.write_config(config_with(
        metarr=metarr.path,
        sync={"timeout": timeout, "retry_attempts": 2, "initial_lookback": "all"},
        players=[kodi.player("kodi", [("/data/media/movies", "/mnt/movies")]),
                 recorder("b")]))
    return files


def test_sigkill_mid_request_then_rerun_delivers_everything(cli, metarr):
    with FakeKodi(sources={"/mnt/movies/": "movies"}) as kodi:
        files = kodi_setup(cli, metarr, kodi, timeout=5)
        kodi.misbehave("hang", match="VideoLibrary.Scan")
        proc = cli.popen("run")
        wait_for(lambda: kodi.count("VideoLibrary.Scan") >= 1, what="the first scan")
        proc.send_signal(signal.SIGKILL)  # while Kodi holds the request unanswered
        proc.wait(timeout=10)
        kodi.heal()
        assert_state_sound(cli)
        rerun = cli("run", "--json")
        assert rerun.returncode == 0, rerun.stderr
        assert kodi.library_files() == files
        rows = {p["name"]: p for p in json.loads(rerun.stdout)["players"]}
        assert rows["kodi"]["synced"] == 3 and rows["kodi"]["verified"] == 3
        with cli.state() as state:
            assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
        assert_state_sound(cli)


# --- SIGINT / SIGTERM ---------------------------------------------------------------------

@pytest.mark.parametrize(("signum", "code", "name"), [
    (signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")])
def test_signal_between_batches_stops_cleanly_and_loses_nothing(cli, metarr, signum, code,
                                                                name):
    movies = {f"movie:{metarr.add_movie(f'Movie {n}', 2000 + n)}" for n in range(8)}
    cli.write_config(recorders(metarr.path, batch=2, timeout=5))
    for player in ("a", "b"):
        cli.behave(player, "slow", "0.4")
    proc = cli.popen("run", "--json")
    wait_for(lambda: applies(cli, "a") >= 1, what="the first batch")
    started = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert time.monotonic() - started < 5  # the batch under way, not the whole queue
    assert "Traceback" not in err
    assert f"stopped by {name}" in err and "stays queued for the next run" in err
    report = json.loads(out)
    assert report["status"] == "interrupted" and report["exit_code"] == code
    assert {p["status"] for p in report["players"]} == {"interrupted"}
    first = {p: [t["key"] for t in cli.sent(p)] for p in ("a", "b")}
    assert all(0 < len(keys) < 8 for keys in first.values()), first
    with cli.state() as state:
        run = state.execute("SELECT status, exit_code, finished_at FROM runs").fetchone()
        assert (run["status"], run["exit_code"]) == ("interrupted", code) and run[2]
        players = state.execute("SELECT player, status, error FROM run_players").fetchall()
        assert {r["status"] for r in players} == {"interrupted"}
        left = state.execute("SELECT status, attempts, count(*) FROM sync_queue "
                             "WHERE status = 'pending' GROUP BY 1, 2").fetchall()
    # What was not sent is pending as before: an interruption is not a failed attempt.
    assert [(r[0], r[1]) for r in left] == [("pending", 0)]
    assert left[0][2] == 16 - len(first["a"]) - len(first["b"])
    assert_state_sound(cli)

    for player in ("a", "b"):
        cli.heal(player, "slow")
    rerun = cli("run", "--json")
    assert rerun.returncode == 0, rerun.stderr
    for player in ("a", "b"):
        # A clean stop records the batch it let finish: nothing is sent twice.
        sent = Counter(t["key"] for t in cli.sent(player))
        assert set(sent) == movies and set(sent.values()) == {1}, (player, sent)


def test_sigterm_mid_request_abandons_it_after_a_short_grace(cli, metarr):
    with FakeKodi(sources={"/mnt/movies/": "movies"}) as kodi:
        files = kodi_setup(cli, metarr, kodi, timeout=1)
        # The idle check before the first scan: a read, retried (a scan is sent only once,
        # so its 1 s timeout would end it within the grace, as a failure of the player).
        kodi.misbehave("hang", match="XBMC.GetInfoBooleans")
        proc = cli.popen("run", "--json")
        wait_for(lambda: kodi.count("XBMC.GetInfoBooleans") >= 1, what="the idle check")
        wait_for(lambda: len(cli.sent("b")) == 3, what="the healthy player")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - started
        assert proc.returncode == 143, err
        # grace = min(timeout, 5 s) = 1 s; the request's own retries are not waited for.
        assert elapsed < 3.5, elapsed
        rows = {p["name"]: p for p in json.loads(out)["players"]}
        assert rows["b"]["status"] == "synced" and rows["b"]["synced"] == 3
        assert rows["kodi"]["status"] == "interrupted"
        assert "SIGTERM" in rows["kodi"]["error"] and "stays queued" in rows["kodi"]["error"]
        with cli.state() as state:
            queue = state.execute("SELECT status, attempts FROM sync_queue "
                                  "WHERE player = 'kodi'").fetchall()
        assert [tuple(r) for r in queue] == [("pending", 0)] * 3
        assert_state_sound(cli)
        # The lock was released: a rerun starts at once and delivers the rest.
        kodi.heal()
        rerun = cli("run", "--json")
        assert rerun.returncode == 0, rerun.stderr
        assert kodi.library_files() == files
        assert len(cli.sent("b")) == 3  # b got nothing twice


def test_a_second_sigterm_quits_at_once(cli, metarr):
    with FakeKodi(sources={"/mnt/movies/": "movies"}) as kodi:
        kodi_setup(cli, metarr, kodi, timeout=20)  # a grace of 5 s
        kodi.misbehave("hang", match="VideoLibrary.Scan")
        proc = cli.popen("run")
        wait_for(lambda: kodi.count("VideoLibrary.Scan") >= 1, what="the first scan")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 143
        assert time.monotonic() - started < 3
        assert "send it again to quit at once" in err and "Traceback" not in err
        assert_state_sound(cli)
        with cli.state() as state:
            attempts = state.execute("SELECT DISTINCT status, attempts FROM sync_queue "
                                     "WHERE player = 'kodi'").fetchall()
        assert [tuple(r) for r in attempts] == [("pending", 0)]


def test_sigterm_during_collection_exits_143_and_leaves_no_half_collection(cli, metarr):
    bulk_movies(metarr, 20000)
    cli.write_config(recorders(metarr.path, batch=5000, timeout=5))
    proc = cli.popen("run")
    wait_for(lambda: lock_taken(cli), what="the run to take its lock")
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated" in err
    assert cli.calls("a") == []
    assert_state_sound(cli)
    with cli.state() as state:
        # Collection is one transaction: nothing of it was kept, so nothing is skipped.
        assert state.execute("SELECT count(*) FROM items").fetchone()[0] == 0
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
    # The lock is free again.
    assert cli("run", "--player", "nobody").returncode == 2


# --- concurrent runs ----------------------------------------------------------------------

def test_two_runs_started_together_one_works_the_other_exits_5(cli, metarr):
    movies = {f"movie:{metarr.add_movie(f'Movie {n}', 2000 + n)}" for n in range(4)}
    cli.write_config(recorders(metarr.path, batch=2, timeout=5))
    cli.behave("a", "slow", "0.5")
    first, second = cli.popen("run"), cli.popen("run")
    codes = sorted([first.wait(timeout=60), second.wait(timeout=60)])
    assert codes == [0, 5]
    loser = first if first.returncode == 5 else second
    assert "another metarr-sync run holds" in loser.stderr.read()
    for player in ("a", "b"):
        sent = Counter(t["key"] for t in cli.sent(player))
        assert set(sent) == movies and set(sent.values()) == {1}


def test_two_runs_with_wait_run_one_after_the_other_sending_nothing_twice(cli, metarr):
    movies = {f"movie:{metarr.add_movie(f'Movie {n}', 2000 + n)}" for n in range(4)}
    cli.write_config(recorders(metarr.path, batch=2, timeout=5))
    cli.behave("a", "slow", "0.5")
    first, second = cli.popen("run", "--wait", "30"), cli.popen("run", "--wait", "30")
    assert first.wait(timeout=60) == 0 and second.wait(timeout=60) == 0
    for player in ("a", "b"):
        sent = Counter(t["key"] for t in cli.sent(player))
        assert set(sent) == movies and set(sent.values()) == {1}
    with cli.state() as state:
        runs = state.execute("SELECT status, items FROM runs ORDER BY id").fetchall()
    assert sorted(tuple(r) for r in runs) == [("synced", 0), ("synced", 4)]


def test_wait_gives_up_after_its_seconds_with_exit_5(cli, metarr):
    metarr.add_movie("The Matrix", 1999)
    cli.write_config(recorders(metarr.path, batch=2, timeout=5))
    cli.behave("a", "slow", "6")
    first = cli.popen("run")
    wait_for(lambda: cli.calls("a") != [], what="the first run to reach the players")
    started = time.monotonic()
    second = cli("run", "--wait", "1")
    waited = time.monotonic() - started
    assert second.returncode == 5 and 1 <= waited < 4
    assert first.wait(timeout=60) == 0
    assert len(cli.sent("a")) == 1


# --- Metarr's database --------------------------------------------------------------------

def fingerprint(path: Path) -> dict[str, str | None]:
    """Hashes of the database and its -wal (None: absent)."""
    found: dict[str, str | None] = {}
    for suffix in ("", "-wal"):
        file = Path(f"{path}{suffix}")
        found[suffix or "db"] = hashlib.sha256(file.read_bytes()).hexdigest() \
            if file.exists() else None
    return found


def one_recorder(db: object) -> str:
    return config_with(metarr=str(db), sync={"timeout": 1, "initial_lookback": "all"},
                       players=[recorder("a")])


class Writer:
    """Another program holding a write transaction on Metarr's database, in its own
    process: POSIX locks belong to a process, and closing any handle of the file in the
    test process (to hash it) would silently drop a lock held here."""

    SCRIPT = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
for statement in sys.argv[2:]:
    conn.execute(statement)
print("holding", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""

    def __init__(self, path: Path, *statements: str):
        import subprocess
        import sys

        self.proc = subprocess.Popen([sys.executable, "-c", self.SCRIPT, str(path),
                                      *statements], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "holding"

    def release(self) -> None:
        self.proc.communicate("\n", timeout=10)
        assert self.proc.returncode == 0


def test_an_open_write_transaction_in_wal_mode_does_not_block_the_run(cli, metarr):
    """Metarr runs SQLite in WAL mode: its writers never block a reader, which sees the
    last committed state. The realistic case is then: sync what was committed."""
    committed = metarr.add_movie("The Matrix", 1999)
    metarr.close()
    cli.write_config(one_recorder(metarr.path))
    stamp = sqlite_ts(ago(seconds=1))
    writer = Writer(metarr.path, "BEGIN IMMEDIATE",
                    f"UPDATE movies SET published_at = '{stamp}' WHERE id = {committed}",
                    "INSERT INTO movies (library_id, file_path, title, published_at) VALUES "
                    f"(1, '/data/media/movies/Uncommitted/U.mkv', 'U', '{stamp}')")
    try:
        before = fingerprint(metarr.path)
        assert before["-wal"] is not None  # Metarr has it open: its -wal exists
        result = cli("run", "--json")
        assert result.returncode == 0, result.stderr
        assert [t["key"] for t in cli.sent("a")] == [f"movie:{committed}"]
        assert fingerprint(metarr.path) == before
    finally:
        writer.release()


@pytest.mark.parametrize("how", ["rollback-journal", "wal-exclusive"])
def test_a_writer_holding_an_exclusive_lock_makes_the_run_exit_4(cli, metarr, how):
    """What really blocks a reader: an EXCLUSIVE lock of a rollback-journal database
    (e.g. a backup or maintenance tool), or a WAL database opened in exclusive locking
    mode. The run waits its busy timeout ([sync] timeout) and exits 4, writing nothing."""
    metarr.add_movie("The Matrix", 1999)
    metarr.close()
    if how == "rollback-journal":
        sqlite3.connect(metarr.path).execute("PRAGMA journal_mode = DELETE").connection.close()
        statements = ["BEGIN EXCLUSIVE"]
    else:
        statements = ["PRAGMA locking_mode = EXCLUSIVE", "BEGIN IMMEDIATE"]
    cli.write_config(one_recorder(metarr.path))
    writer = Writer(metarr.path, *statements, "UPDATE movies SET title = 'changing'")
    try:
        before = fingerprint(metarr.path)
        started = time.monotonic()
        result = cli("run")
        assert result.returncode == 4, (result.stdout, result.stderr)
        assert time.monotonic() - started >= 1.0  # it waited for the busy timeout
        assert "is locked by another program" in result.stderr
        assert str(metarr.path) in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert fingerprint(metarr.path) == before
        assert cli.calls("a") == []
    finally:
        writer.release()


@pytest.mark.parametrize(("change", "message"), [
    ("ALTER TABLE movies DROP COLUMN published_at",
     "table movies lacks column(s) published_at"),
    ("DROP TABLE episodes", "table episodes is missing"),
    ("ALTER TABLE library_image_files DROP COLUMN published_at",
     "table library_image_files lacks column(s) published_at"),
])
def test_a_metarr_database_of_another_schema_exits_4_naming_what_is_missing(
        cli, metarr, change, message):
    metarr.add_movie("The Matrix", 1999)
    metarr.conn.execute(change)
    before = fingerprint(metarr.path)
    cli.write_config(one_recorder(metarr.path))
    result = cli("run")
    assert result.returncode == 4, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert "not a Metarr database this version understands" in result.stderr
    assert fingerprint(metarr.path) == before
    assert cli.calls("a") == []


def test_a_newer_schema_with_extra_tables_and_columns_still_works(cli, metarr):
    movie = metarr.add_movie("The Matrix", 1999)
    metarr.conn.execute("ALTER TABLE movies ADD COLUMN edition TEXT")
    metarr.conn.execute("CREATE TABLE collections (id INTEGER PRIMARY KEY, name TEXT)")
    cli.write_config(one_recorder(metarr.path))
    result = cli("run")
    assert result.returncode == 0, result.stderr
    assert [t["key"] for t in cli.sent("a")] == [f"movie:{movie}"]
