"""Benchmark of `metarr-sync watch` against a real Kodi: how soon a publish shows, and what
the watcher costs while nothing happens. Not a test: run it yourself (about 2 minutes).

    python tests/bench/bench_watch.py                       # Kodi 20.1, default settings
    python tests/bench/bench_watch.py --kodi-version 21.2 --out watch-figures.json

The scenario: a real Kodi (tests/support/kodi_server.py: headless under Xvfb, its own
profile, every network announcement off; 20.1 by default) and a Metarr database of
--publishes movies that the watcher's first run delivers to it. The installed
`metarr-sync watch` runs with the default [watch] settings (debounce 2 s, Metarr polled
every second), its requests to Kodi going through a RecordingProxy.

1. Latency: one publish after another, each a new title for one of the movies (its NFO
   rewritten, then the row's title, publish stamp and a new asset committed to Metarr in
   one transaction, as Metarr's publish step does). For each: seconds from Metarr's commit
   to Kodi's own VideoLibrary.GetMovies answer showing the new title, Kodi polled every
   --kodi-poll seconds (50 ms). The next publish waits until the run has finished.
2. Idle: --idle seconds (60) without a commit. The watcher's CPU time over the window
   (utime + stime from /proc/PID/stat) as a share of one core, and the requests it sent
   to Kodi meanwhile (the proxy counts them).
3. SIGTERM: the watcher's exit status.

Figures are printed as a table and written as JSON (--out). Budgets: median latency
< 5 s, idle CPU < 1 % of a core, no request to Kodi while idle, exit status 0 on SIGTERM;
the exit status is 1 when one fails (0 with --no-budgets).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from bench_sync import machine, metarr_sync_exe, run_benchmark  # noqa: E402
from support import configs  # noqa: E402
from support.kodi_server import VERSIONS, KodiServer, RecordingProxy, missing  # noqa: E402
from support.metarr_factory import MetarrDB  # noqa: E402

from metarr_sync.config import WatchConfig  # noqa: E402

BUDGET_MEDIAN_S = 5.0  # median seconds from Metarr's commit to Kodi showing the title
BUDGET_IDLE_CPU_PCT = 1.0  # the watcher's CPU while idle, % of one core
BUDGET_IDLE_REQUESTS = 0  # requests to Kodi while idle
PASSWORD_ENV = "KODI_BENCH_PASSWORD"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process so far (/proc/PID/stat, fields 14 and 15)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # after the command name: field 3 on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(predicate: Callable[[], object], what: str, timeout: float,
             step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(step)


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.exe = metarr_sync_exe()
        self.state_dir = work / "state"
        self.db = MetarrDB(work / "metarr.sqlite")
        self.kodi = KodiServer(work / "kodi", args.kodi_version)
        self.movies: list[tuple[int, str, str, int]] = []  # (Metarr id, file, title, year)

    # -- plumbing -----------------------------------------------------------------------

    def finished_runs(self) -> list[dict[str, Any]]:
        path = self.state_dir / "state.sqlite"
        if not path.exists():
            return []
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in conn.execute(
                    "SELECT id, status, items, started_at, finished_at FROM runs "
                    "WHERE trigger = 'watch' AND finished_at IS NOT NULL ORDER BY id")]
            except sqlite3.OperationalError:  # the watcher is still creating its state
                return []

    def queued(self) -> int:
        with contextlib.closing(sqlite3.connect(self.state_dir / "state.sqlite",
                                                timeout=10)) as conn:
            return int(conn.execute("SELECT count(*) FROM sync_queue").fetchone()[0])

    def titles(self) -> dict[str, str]:
        """Kodi's own answer: each movie's file and title."""
        return {file: movie["title"] for file, movie in self.kodi.movies_by_file().items()}

    def write_config(self, url: str) -> Path:
        path = self.work / "config.toml"
        path.write_text(configs.config_with(
            metarr=self.db.path,
            sync={"timeout": 15, "initial_lookback": "all"},
            players=[configs.kodi("lounge", url=url, username=self.kodi.username,
                                  password=configs.env_secret(PASSWORD_ENV),
                                  mappings=[("/data/media/movies", str(self.kodi.movies))])]))
        path.chmod(0o600)
        return path

    # -- the steps ----------------------------------------------------------------------

    def everything(self) -> dict[str, Any]:
        started = time.perf_counter()
        found: dict[str, Any] = {"machine": machine()}
        log(f"starting Kodi {self.args.kodi_version}")
        t0 = time.perf_counter()
        self.kodi.start()
        found["kodi"] = {"version": self.args.kodi_version,
                         "start_s": round(time.perf_counter() - t0, 2)}
        log(f"Kodi {self.args.kodi_version} answers after {found['kodi']['start_s']} s")
        try:
            for n in range(self.args.publishes):
                title, year = f"Watched Movie {n + 1}", 1990 + n
                file = self.kodi.write_movie(self.kodi.movies / f"{title} ({year})",
                                             f"{title} ({year}).mkv", title, year,
                                             f"tt{9000000 + n}")
                self.movies.append((self.db.add_movie(title, year), str(file), title, year))
            with RecordingProxy(self.kodi.url) as proxy:
                found.update(self.watch(proxy))
        finally:
            self.kodi.close()
            self.db.close()
        found["machine"]["load_after"] = machine()["load_before"]
        found["total_s"] = round(time.perf_counter() - started, 1)
        found["budgets"] = budgets(found)
        return found

    def watch(self, proxy: RecordingProxy) -> dict[str, Any]:
        config = self.write_config(proxy.url)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("METARR_", "DATABASE_URL", "DB_TYPE"))}
        env.update({"METARR_SYNC_CONFIG": str(config),
                    "METARR_SYNC_STATE_DIR": str(self.state_dir),
                    "HOME": str(self.work / "home"), "COLUMNS": "200",
                    PASSWORD_ENV: self.kodi.password})
        out, err = self.work / "watch.out", self.work / "watch.err"
        with out.open("w") as stdout, err.open("w") as stderr:
            proc = subprocess.Popen([self.exe, "watch"], stdout=stdout, stderr=stderr,
                                    env=env)
        try:
            return self.measure(proc, proxy)
        except Exception:
            log(f"watch's stderr:\n{err.read_text()[-3000:]}")
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)

    def measure(self, proc: subprocess.Popen[bytes], proxy: RecordingProxy
                ) -> dict[str, Any]:
        args = self.args
        files = {file for _, file, _, _ in self.movies}
        t0 = time.perf_counter()
        wait_for(lambda: self.finished_runs(), "the watcher's first run", 300, 0.2)
        wait_for(lambda: files <= set(self.titles()), "Kodi to list the movies", 60, 0.2)
        first = self.finished_runs()[0]
        warm_up = {"s": round(time.perf_counter() - t0, 2), "status": first["status"],
                   "items": first["items"], "requests": len(proxy.bodies)}
        log(f"first run: {first['status']}, {first['items']} movies in Kodi after "
            f"{warm_up['s']} s")
        if first["status"] != "synced" or self.queued():
            raise RuntimeError(f"the first run left work: {first}")

        publishes = []
        for n, (movie, file, title, year) in enumerate(self.movies):
            new_title = f"{title} (Take {n + 2})"
            runs, requests = len(self.finished_runs()), len(proxy.bodies)
            # Metarr's publish: the files first, then one commit.
            self.kodi.write_movie(Path(file).parent, Path(file).name, new_title, year,
                                  f"tt{9000000 + n}")
            conn = self.db.conn
            conn.execute("BEGIN")
            self.db.retitle("movies", movie, new_title)
            self.db.republish_movie(movie)
            conn.execute("COMMIT")
            committed = time.perf_counter()
            tick = committed
            while self.titles().get(file) != new_title:
                if time.perf_counter() - committed > args.timeout:
                    raise RuntimeError(f"Kodi did not show {new_title!r} within "
                                       f"{args.timeout:g} s")
                tick += args.kodi_poll
                time.sleep(max(0.0, tick - time.perf_counter()))
            latency = time.perf_counter() - committed
            wait_for(lambda runs=runs: len(self.finished_runs()) > runs, "the run to end",
                     args.timeout)
            done = self.finished_runs()[runs:]
            publishes.append({"title": new_title, "latency_s": round(latency, 3),
                              "runs": [r["status"] for r in done],
                              "requests": len(proxy.bodies) - requests,
                              "left_queued": self.queued()})
            log(f"publish {n + 1}: Kodi showed {new_title!r} after {latency:.2f} s; "
                f"run {', '.join(r['status'] for r in done)}, "
                f"{publishes[-1]['requests']} requests")
        latencies = [p["latency_s"] for p in publishes]

        # Idle: the runs over, nothing committed; measure the window.
        time.sleep(0.5)
        requests, runs = len(proxy.bodies), len(self.finished_runs())
        cpu, started = cpu_seconds(proc.pid), time.perf_counter()
        log(f"idle for {args.idle:g} s")
        time.sleep(args.idle)
        cpu_s = cpu_seconds(proc.pid) - cpu
        window = time.perf_counter() - started
        idle_requests = proxy.bodies[requests:]
        idle = {"window_s": round(window, 2), "cpu_s": round(cpu_s, 3),
                "cpu_pct": round(100 * cpu_s / window, 3),
                "requests": len(idle_requests),
                "methods": sorted({c.get("method", "?") for b in idle_requests
                                   for c in (b if isinstance(b, list) else [b])
                                   if isinstance(c, dict)}),
                "runs": len(self.finished_runs()) - runs}

        proc.send_signal(signal.SIGTERM)
        t0 = time.perf_counter()
        code = proc.wait(timeout=60)
        stop = {"exit_code": code, "s": round(time.perf_counter() - t0, 2)}
        defaults = WatchConfig()
        return {"settings": {"debounce": defaults.debounce,
                             "poll_interval": defaults.poll_interval,
                             "max_delay": defaults.max_delay, "kodi_poll_s": args.kodi_poll,
                             "publishes": args.publishes, "idle_s": args.idle},
                "warm_up": warm_up, "publishes": publishes,
                "latency": {"median_s": round(statistics.median(latencies), 3),
                            "max_s": max(latencies), "min_s": min(latencies)},
                "idle": idle, "sigterm": stop}


def budgets(found: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, limit: float, ok: bool) -> None:
        checks.append({"name": name, "value": value, "limit": limit, "ok": ok})

    median = found["latency"]["median_s"]
    check("median commit -> Kodi shows it (s) <", median, BUDGET_MEDIAN_S,
          median < BUDGET_MEDIAN_S)
    cpu = found["idle"]["cpu_pct"]
    check("idle CPU (% of one core) <", cpu, BUDGET_IDLE_CPU_PCT, cpu < BUDGET_IDLE_CPU_PCT)
    requests = found["idle"]["requests"]
    check("requests to Kodi while idle <=", requests, BUDGET_IDLE_REQUESTS,
          requests <= BUDGET_IDLE_REQUESTS)
    code = found["sigterm"]["exit_code"]
    check("exit status on SIGTERM ==", code, 0, code == 0)
    return checks


def table(found: dict[str, Any]) -> str:
    m, s = found["machine"], found["settings"]
    lines = [f"metarr-sync watch against Kodi {found['kodi']['version']}: "
             f"{s['publishes']} publishes, idle {s['idle_s']:g} s; debounce {s['debounce']}, "
             f"Metarr polled every {s['poll_interval']}, Kodi every {s['kodi_poll_s']:g} s",
             f"machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, load "
             f"{m['load_before']} -> {m['load_after']}",
             f"Kodi answered after {found['kodi']['start_s']:g} s; the first run delivered "
             f"{found['warm_up']['items']} movies in {found['warm_up']['s']:g} s", "",
             f"{'publish':<10}{'shown after s':>14}{'run':>10}{'requests':>10}  title"]
    for n, p in enumerate(found["publishes"], 1):
        lines.append(f"{n:<10}{p['latency_s']:>14.2f}{','.join(p['runs']):>10}"
                     f"{p['requests']:>10}  {p['title']}")
    lat, idle = found["latency"], found["idle"]
    lines += ["",
              f"commit -> Kodi shows the title: median {lat['median_s']:.2f} s, max "
              f"{lat['max_s']:.2f} s, min {lat['min_s']:.2f} s",
              f"idle {idle['window_s']:g} s: CPU {idle['cpu_s']:.2f} s = "
              f"{idle['cpu_pct']:.2f} % of one core; {idle['requests']} requests to Kodi"
              + (f" ({', '.join(idle['methods'])})" if idle["methods"] else "")
              + f", {idle['runs']} runs",
              f"SIGTERM: exit {found['sigterm']['exit_code']} after "
              f"{found['sigterm']['s']:g} s", "", "budgets:"]
    for b in found["budgets"]:
        lines.append(f"  {'ok  ' if b['ok'] else 'FAIL'} {b['name']} {b['limit']:g}: "
                     f"{b['value']:g}")
    lines.append(f"whole benchmark: {found['total_s']:.0f} s")
    return "\n".join(lines)


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kodi-version", choices=VERSIONS, default="20.1")
    parser.add_argument("--publishes", type=int, default=10,
                        help="publishes measured one after another")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="seconds of the idle window")
    parser.add_argument("--kodi-poll", type=float, default=0.05,
                        help="seconds between questions to Kodi while waiting for a title")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="longest wait for one publish to show (then the benchmark "
                        "fails)")
    parser.add_argument("--out", type=Path, default=Path("bench-watch-results.json"),
                        help="where to write the figures as JSON")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep Kodi's profile, the databases and logs here (default: "
                        "a temporary directory, removed afterwards)")
    parser.add_argument("--no-budgets", action="store_true",
                        help="exit 0 even when a budget does not hold")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    if args.publishes < 1:
        sys.exit("--publishes must be at least 1")
    reason = missing(args.kodi_version)
    if reason is not None:
        sys.exit(f"Kodi {args.kodi_version} cannot run here: {reason}")
    return run_benchmark(args, lambda work: Bench(args, work).everything(), table,
                         "metarr-bench-watch-")


if __name__ == "__main__":
    sys.exit(main())
