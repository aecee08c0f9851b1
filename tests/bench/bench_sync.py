"""Benchmark of `metarr-sync run`: requests against their lower bound, parallel players,
memory, start-up, and how cost grows. Not a test: run it yourself.

    python tests/bench/bench_sync.py                  # the full scenario (a few minutes)
    python tests/bench/bench_sync.py --scale 0.01     # a tiny one (seconds)
    python tests/bench/bench_sync.py --small-only     # only the small runs (issue 19)

The scenario (issue 9): a Metarr database of 50,000 movies and 200,000 episodes in 2,000
series, of which 10,000 items changed since the last sync (a few whole series
republished, many single movies, some single episodes). Three fake players on 127.0.0.1
(Kodi, Jellyfin, Plex; tests/support/fake_players.py) answer like the real servers, count
requests and add a per-request latency (10 ms). They already hold most items, so most
changes are refreshes; the few they lack need scans.

Small runs (issue 19: a small run costs what it changes, not what the library holds): at
each of --small-sizes (25,000 and 250,000 items; a fifth movies) a library the players
hold whole. A first run with a change fills what adapters keep (Jellyfin's index); then
a run with nothing changed (no request to any player), one with a changed movie and one
with a changed episode (at most 10 HTTP requests per player, the same at both sizes,
under 1 s), each followed by `metarr-sync verify` standing for the later run that looks
for the delivery after the player's verify_after. `--small-only` runs only this section.

The installed `metarr-sync run --json` is measured as a subprocess: wall time, CPU, peak
RSS. Figures are printed as a table and written as JSON (--out). Each budget is checked;
the exit status is 1 when one fails (0 with --no-budgets).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import players  # noqa: E402
import scenario  # noqa: E402
from support import configs  # noqa: E402

BATCH_SIZE = 100  # [sync] batch_size default
BUDGET_REQUESTS = 1.05  # × the lower bound
BUDGET_PARALLEL = 1.25  # three players against the slowest alone
BUDGET_RSS_MB = 150.0
BUDGET_STARTUP = 1.5  # × `python -c "import typer"`
BUDGET_GROWTH = 1.15  # time per item at a bigger size against the next smaller one
BUDGET_TOTAL_S = 300.0
BUDGET_SMALL_REQUESTS = 10  # per player, for one changed item (Kodi: calls and POSTs)
BUDGET_SMALL_WALL_S = 1.0  # a run with one changed item, start-up included


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def metarr_sync_exe() -> str:
    """The installed command, next to this interpreter (not a pyenv shim: a shim adds
    its own start-up time to every measurement)."""
    beside = Path(sys.executable).parent / "metarr-sync"
    found = str(beside) if beside.exists() else shutil.which("metarr-sync")
    if not found:
        sys.exit("metarr-sync is not installed: pip install -e '.[test]'")
    return found


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}",
            "load_before": _load()}


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


class Bench:
    def __init__(self, args: argparse.Namespace, work: Path):
        self.args = args
        self.work = work
        self.exe = metarr_sync_exe()
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("METARR_", "DATABASE_URL", "DB_TYPE"))}
        self.env["HOME"] = str(work / "home")
        self.env["COLUMNS"] = "200"

    # -- plumbing -----------------------------------------------------------------------

    def config(self, name: str, database: Path, fakes: dict[str, Any] | None) -> Path:
        """A config for the three players (at the fakes' ports; not contacted without)."""
        tokens = {"jellyfin": "jellyfin-api-key-fake", "plex": "plex-token-fake"}
        tables = [configs.player(kind, kind,
                                 url=fakes[kind].url if fakes and kind in fakes
                                 else "http://127.0.0.1:9", token=tokens.get(kind),
                                 mappings=[(players.METARR_ROOT, players.ROOTS[kind])])
                  for kind in players.NAMES]
        path = self.work / f"{name}.toml"
        path.write_text(configs.config_with(
            metarr=database, players=tables,
            sync={"initial_lookback": "none", "batch_size": self.args.batch_size}))
        path.chmod(0o600)
        return path

    def measured(self, label: str, command: Sequence[str], config: Path, state: Path
                 ) -> tuple[dict[str, Any], str]:
        """Run a command through measure.py: (wall/CPU/RSS figures, its stdout)."""
        result = self.work / f"{label}.measure.json"
        out = self.work / f"{label}.stdout"
        env = {**self.env, "METARR_SYNC_CONFIG": str(config),
               "METARR_SYNC_STATE_DIR": str(state)}
        with out.open("w") as stdout:
            done = subprocess.run([sys.executable, str(HERE / "measure.py"), str(result), "--",
                                   *command], stdout=stdout, stderr=subprocess.PIPE,
                                  env=env, text=True, check=False)
        figures = json.loads(result.read_text())
        if done.returncode not in (0, 1):
            raise RuntimeError(f"{label}: {' '.join(command)} exited {done.returncode}: "
                               f"{done.stderr.strip()[-2000:]}")
        return figures, out.read_text()

    def run(self, label: str, config: Path, state: Path, *extra: str
            ) -> tuple[dict[str, Any], dict[str, Any]]:
        figures, stdout = self.measured(label, [self.exe, "run", "--json", *extra], config,
                                        state)
        report = json.loads(stdout)
        return figures, report

    # -- the steps ----------------------------------------------------------------------

    def build(self) -> None:
        args = self.args
        started = time.perf_counter()
        self.pristine = self.work / "metarr-pristine.sqlite"
        self.library = scenario.build(self.pristine, movies=max(50, round(50000 * args.scale)),
                                      series=max(4, round(2000 * args.scale)))
        self.build_s = time.perf_counter() - started
        log(f"Metarr database: {self.library.rows} items in {self.build_s:.1f} s")
        # The last sync: every item delivered (initial_lookback = "none" baselines them).
        self.baseline = self.work / "state-baseline"
        shutil.rmtree(self.baseline, ignore_errors=True)
        config = self.config("baseline", self.pristine, None)
        figures, report = self.run("baseline", config, self.baseline)
        if report.get("items"):
            raise RuntimeError(f"the baseline run queued {report['items']} items")
        self.baseline_figures = figures
        log(f"baseline run (collect only): {figures['wall_s']:.1f} s, "
            f"{figures['peak_rss_mb']:.0f} MB")

    def scenario(self, label: str, changed: int, seed: int
                 ) -> tuple[Path, Path, scenario.Changes, players.Presence]:
        """A copy of the database with `changed` items republished, and a copy of the
        baseline state: a run on them sees exactly those changes."""
        database = self.work / f"metarr-{label}.sqlite"
        shutil.copyfile(self.pristine, database)
        state = self.work / f"state-{label}"
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(self.baseline, state)
        changes = scenario.pick(self.library, changed, seed=seed)
        scenario.change(database, changes)
        return database, state, changes, players.Presence.of(changes)

    def requests(self, fakes: dict[str, Any], changes: scenario.Changes,
                 presence: players.Presence) -> dict[str, Any]:
        found = {}
        for name, fake in fakes.items():
            bound = players.lower_bound(name, self.library, changes, presence,
                                        self.args.batch_size)
            sent = fake.calls()  # Kodi: JSON-RPC calls (several per HTTP request)
            strict = players.strict_lower_bound(name, self.library, changes, presence,
                                                self.args.batch_size)
            found[name] = {"sent": sent, "http_requests": fake.count(),
                           "lower_bound": bound["total"],
                           "ratio": round(sent / bound["total"], 4),
                           "strict_lower_bound": strict,
                           "strict_ratio": round(sent / strict, 4),
                           "bound_detail": bound,
                           "by_endpoint": dict(fake.call_counts().most_common())}
        return found

    def collect_plan(self, label: str, database: Path, state: Path, *, record: bool = False
                     ) -> dict[str, Any]:
        """The core's share, in a process of its own: collect, plan (and record)."""
        copy = self.work / "state-probe"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(state, copy)
        roots = [f"{name}={players.ROOTS[name]}" for name in players.NAMES]
        figures, stdout = self.measured(
            label, [sys.executable, str(HERE / "collect_probe.py"),
                    *(["--record"] if record else []), str(database), str(copy),
                    str(self.args.batch_size), *roots], self.work / "x", copy)
        probe = json.loads(stdout)
        shutil.rmtree(copy, ignore_errors=True)
        found = {"cpu_s": round(probe["collect_cpu_s"] + probe["plan_cpu_s"], 3),
                 "collect_cpu_s": round(probe["collect_cpu_s"], 3),
                 "plan_cpu_s": round(probe["plan_cpu_s"], 3),
                 "process_cpu_s": round(figures["cpu_s"], 3),
                 "peak_rss_mb": round(figures["peak_rss_mb"], 1),
                 "rows": self.library.rows, "changed": probe["changed"],
                 "plans": probe["plans"]}
        if record:
            found["record_cpu_s"] = round(probe["record_cpu_s"], 3)
            found["cpu_s"] = round(found["cpu_s"] + probe["record_cpu_s"], 3)
        return found

    def main_scenario(self) -> dict[str, Any]:
        args = self.args
        database, state, changes, presence = self.scenario("main", self.changed, seed=1)
        result: dict[str, Any] = {"changed": changes.count,
                                  "mix": {"movies": len(changes.movies),
                                          "whole_series": len(changes.whole_series),
                                          "episodes_in_whole_series": sum(
                                              len(s.episodes) for s in changes.whole_series),
                                          "single_episodes": len(changes.single_episodes)}}
        log(f"collect and plan {changes.count} changes out of {self.library.rows} rows")
        result["collect_plan"] = self.collect_plan("collect-plan", database, state)
        alone_state = self.work / "state-alone"
        shutil.rmtree(alone_state, ignore_errors=True)
        shutil.copytree(state, alone_state)

        fakes = players.start_fakes(self.library, presence, args.latency)
        try:
            config = self.config("main", database, fakes)
            log(f"run: {changes.count} changes, three players, {args.latency * 1000:g} ms "
                "per request")
            figures, report = self.run("main", config, state)
            result["run"] = _run_figures(figures, report)
            result["requests"] = self.requests(fakes, changes, presence)
            self.main_config, self.main_state = config, state
            log(f"run: {figures['wall_s']:.1f} s, {figures['cpu_s']:.1f} CPU s, "
                f"{figures['peak_rss_mb']:.0f} MB")
            # The naive reference: one request per item, players one after another.
            naive_s = 0.0
            sample_size = min(args.naive_sample, changes.count)
            for name in players.NAMES:
                every = players.targets(self.library, changes, presence, name)
                step = max(1, len(every) // sample_size)
                sample = every[::step][:sample_size]
                log(f"naive: {name}, {len(sample)} items")
                naive_s += players.naive(name, fakes[name], sample) / len(sample) * len(every)
        finally:
            for fake in fakes.values():
                fake.stop()

        # The slowest player alone, on the same state and a fresh library.
        slowest = max(result["run"]["players"].items(), key=lambda kv: kv[1]["duration_s"])[0]
        fakes = players.start_fakes(self.library, presence, args.latency, names=[slowest])
        try:
            config = self.config("alone", database, fakes)
            log(f"run: {slowest} alone")
            figures, report = self.run("alone", config, alone_state, "--player", slowest)
        finally:
            for fake in fakes.values():
                fake.stop()
        result["alone"] = {"player": slowest, "wall_s": round(figures["wall_s"], 2),
                           "ratio": round(result["run"]["wall_s"] / figures["wall_s"], 3),
                           "peak_rss_mb": round(figures["peak_rss_mb"], 1)}
        sent = sum(r["sent"] for r in result["requests"].values())
        naive_requests = len(players.NAMES) * changes.count
        result["naive"] = {
            "requests": naive_requests, "wall_s": round(naive_s, 2),
            "sample_per_player": sample_size, "extrapolated": sample_size < changes.count,
            "requests_ratio": round(naive_requests / sent, 3),
            # Kodi's calls travel in JSON-RPC batches: fewer HTTP requests than calls.
            "http_requests_ratio": round(naive_requests / sum(
                r["http_requests"] for r in result["requests"].values()), 3),
            "wall_ratio": round(naive_s / result["run"]["wall_s"], 3)}
        return result

    def startup(self, config: Path, state: Path) -> dict[str, Any]:
        """Start-up of `--version` and `status` against `python -c "import typer"`, with
        bytecode as a user's `pip install` leaves it: metarr_sync's modules are compiled
        first and PYTHONDONTWRITEBYTECODE is dropped (where it is set, as on the machine
        of issue 9, they have no bytecode and are compiled at every start: ~20 ms)."""
        import importlib.util

        env = {k: v for k, v in self.env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env |= {"METARR_SYNC_CONFIG": str(config), "METARR_SYNC_STATE_DIR": str(state)}
        spec = importlib.util.find_spec("metarr_sync")
        package = Path(next(iter(spec.submodule_search_locations)))  # type: ignore[union-attr]
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], env=env,
                       capture_output=True, check=True)
        commands = {"typer": [sys.executable, "-c", "import typer"],
                    "version": [self.exe, "--version"],
                    "status": [self.exe, "status"]}
        times: dict[str, list[float]] = {k: [] for k in [*commands, "status_terminal"]}
        for _ in range(self.args.startup_repeats):
            for key, command in commands.items():
                started = time.perf_counter()
                subprocess.run(command, env=env, capture_output=True, check=False)
                times[key].append(time.perf_counter() - started)
            times["status_terminal"].append(_on_terminal([self.exe, "status"], env))
        found: dict[str, Any] = {f"{k}_s": round(statistics.median(v), 4)
                                 for k, v in times.items()}
        found["version_ratio"] = round(found["version_s"] / found["typer_s"], 3)
        # Budgeted: status as monitoring runs it (output captured: plain columns). On a
        # terminal it draws Rich tables: reported beside it, not budgeted.
        found["status_ratio"] = round(found["status_s"] / found["typer_s"], 3)
        found["status_terminal_ratio"] = round(found["status_terminal_s"] / found["typer_s"],
                                               3)
        found["repeats"] = self.args.startup_repeats
        found["bytecode"] = (f"compiled (python -m compileall {package}), "
                             "PYTHONDONTWRITEBYTECODE unset: as after pip install")
        log(f"start-up: bytecode {found['bytecode']}")
        # What `metarr-sync status` imports (through the console entry point, as the
        # command runs it): never the HTTP stack, an adapter, nor Typer.
        probe = self.work / "status-modules.json"
        code = ("import json, sys\nsys.argv = ['metarr-sync', 'status']\n"
                "from metarr_sync import main\ntry:\n    main()\nexcept SystemExit:\n"
                "    pass\nmods = sorted(sys.modules)\n"
                f"open({str(probe)!r}, 'w').write(json.dumps(mods))\n")
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       check=False)
        modules = json.loads(probe.read_text()) if probe.exists() else []
        found["status_imports_requests"] = "requests" in modules
        found["status_imports_adapters"] = [m for m in modules if m in (
            "metarr_sync.players.kodi", "metarr_sync.players.jellyfin",
            "metarr_sync.players.plex", "metarr_sync.players.http")]
        found["status_imports_typer"] = "typer" in modules
        return found

    def growth(self) -> list[dict[str, Any]]:
        """The same run at several sizes, as `run --dry-run` against the fakes (every
        refresh and scan planned, collapsed and recorded, only the listings sent), and
        the core's state updates measured apart (collect_probe.py --record): metarr-sync's
        own cost per item, without 300,000 round trips to the players."""
        sets = [scenario.pick(self.library, size, seed=100 + n)
                for n, size in enumerate(self.growth_sizes)]
        presence = players.Presence.of(scenario.merged(*sets))
        fakes = players.start_fakes(self.library, presence, self.args.growth_latency)
        points = []
        try:
            for changes in sets:
                size = changes.count
                database = self.work / f"metarr-growth-{size}.sqlite"
                shutil.copyfile(self.pristine, database)
                state = self.work / f"state-growth-{size}"
                shutil.rmtree(state, ignore_errors=True)
                shutil.copytree(self.baseline, state)
                scenario.change(database, changes)
                config = self.config(f"growth-{size}", database, fakes)
                for fake in fakes.values():
                    fake.reset_log()
                log(f"growth: {size} changes, dry run")
                figures, report = self.run(f"growth-{size}", config, state, "--dry-run")
                requests = {}
                for name, fake in fakes.items():
                    row = next(p for p in report["players"] if p["name"] == name)
                    planned = fake.calls() + len(row.get("commands") or [])
                    bound = players.lower_bound(name, self.library, changes, presence,
                                                self.args.batch_size, dry_run=True)
                    requests[name] = {"sent": fake.calls(), "http_requests": fake.count(),
                                      "planned": planned,
                                      "lower_bound": bound["total"],
                                      "ratio": round(planned / bound["total"], 4)}
                log(f"growth: {size} changes, collect, plan and record")
                core = self.collect_plan(f"growth-core-{size}", database, state, record=True)
                points.append({
                    "changed": size, **_run_figures(figures, report),
                    "wall_per_item_ms": round(figures["wall_s"] / size * 1000, 4),
                    "cpu_per_item_ms": round(figures["cpu_s"] / size * 1000, 4),
                    "core": core,
                    "core_cpu_per_item_ms": round(core["cpu_s"] / size * 1000, 4),
                    "requests": requests})
                database.unlink(missing_ok=True)
                shutil.rmtree(state, ignore_errors=True)
        finally:
            for fake in fakes.values():
                fake.stop()
        return points

    def small_runs(self) -> dict[str, Any]:
        """Issue 19: a small run costs what it changes, not what the library holds. At
        each size a library the players already hold whole; a first run with a change
        fills what the players' adapters keep (Jellyfin's index); then, one after another
        on the same library and state: a run with nothing changed, one changed movie, one
        changed episode."""
        started = time.perf_counter()
        points = [self.small_runs_at(size) for size in self.small_sizes]
        return {"sizes": [p["rows"] for p in points], "points": points,
                "players": small_run_summary(points),
                "total_s": round(time.perf_counter() - started, 1)}

    def small_runs_at(self, size: int) -> dict[str, Any]:
        args = self.args
        label = f"small-{size}"
        # The main scenario's mix: a fifth movies, the rest episodes (100 per show).
        database = self.work / f"metarr-{label}.sqlite"
        library = scenario.build(database, movies=max(4, round(size / 5)),
                                 series=max(4, round(size * 4 / 5 / 100)))
        state = self.work / f"state-{label}"
        shutil.rmtree(state, ignore_errors=True)
        figures, report = self.run(f"{label}-baseline", self.config(f"{label}-baseline",
                                                                   database, None), state)
        if report.get("items"):
            raise RuntimeError(f"{label}: the baseline run queued {report['items']} items")
        log(f"small runs: {library.rows} items, baseline {figures['wall_s']:.1f} s")
        # Players that hold every item: Presence of no change lacks nothing.
        presence = players.Presence.of(scenario.Changes([], [], []))
        rng = random.Random(size)
        movies = rng.sample(library.movies, 2)
        shows = rng.sample(library.series, 2)
        nothing = scenario.Changes([], [], [])
        # (step, republished items, command). Jellyfin and Plex look for a delivery only
        # after their verify_after (minutes): `verify` stands for the later run that does,
        # so that each measured run starts with nothing awaiting verification.
        steps: list[tuple[str, scenario.Changes, str]] = [
            # The first run: a movie and an episode, so both libraries are read once.
            ("first_run", scenario.Changes([movies[0]], [], [rng.choice(shows[0].episodes)]),
             "run"),
            ("first_run_verify", nothing, "verify"),
            ("nothing_changed", nothing, "run"),
            ("one_movie", scenario.Changes([movies[1]], [], []), "run"),
            # What a run costs while a delivery waits for its verify_after.
            ("nothing_changed_awaiting_verify", nothing, "run"),
            ("one_movie_verify", nothing, "verify"),
            # An episode of a show no run has touched yet.
            ("one_episode", scenario.Changes([], [], [rng.choice(shows[1].episodes)]), "run"),
            ("one_episode_verify", nothing, "verify"),
        ]
        found: dict[str, Any] = {"size": size, "rows": library.rows,
                                 "movies": len(library.movies),
                                 "episodes": sum(len(s.episodes) for s in library.series)}
        fakes = players.start_fakes(library, presence, args.latency)
        try:
            config = self.config(label, database, fakes)
            for step, changes, command in steps:
                if changes.count:
                    scenario.change(database, changes)
                for fake in fakes.values():
                    fake.reset_log()
                figures, stdout = self.measured(f"{label}-{step}",
                                                [self.exe, command, "--json"], config, state)
                report = json.loads(stdout)
                if command == "run" and report.get("items", 0) != changes.count:
                    raise RuntimeError(f"{label} {step}: the run queued "
                                       f"{report.get('items')} items, not {changes.count}")
                found[step] = {
                    "changed": changes.count, **_run_figures(figures, report),
                    "requests": {name: {"sent": fake.calls(), "http_requests": fake.count(),
                                        "by_endpoint": dict(fake.call_counts().most_common())}
                                 for name, fake in fakes.items()}}
                sent = ", ".join(f"{n} {r['sent']}" for n, r in found[step]["requests"].items())
                log(f"small runs at {library.rows}: {step}: {figures['wall_s']:.2f} s, "
                    f"requests {sent}")
        finally:
            for fake in fakes.values():
                fake.stop()
        database.unlink(missing_ok=True)
        shutil.rmtree(state, ignore_errors=True)
        return found

    def everything(self) -> dict[str, Any]:
        args = self.args
        started = time.perf_counter()
        found: dict[str, Any] = {"machine": machine()}
        self.changed = max(300, round(args.changed * args.scale))
        self.growth_sizes = sorted({max(300, round(g * args.scale)) for g in args.growth})
        found["settings"] = {"scale": args.scale, "changed": self.changed,
                             "latency_ms": args.latency * 1000,
                             "growth_latency_ms": args.growth_latency * 1000,
                             "growth_sizes": self.growth_sizes,
                             "batch_size": args.batch_size,
                             "naive_sample": args.naive_sample,
                             "metarr_sync": self.exe}
        self.small_sizes = [max(20, round(n * args.scale)) for n in args.small_sizes]
        found["settings"]["small_sizes"] = self.small_sizes
        found["settings"]["small_only"] = args.small_only
        if not args.small_only:
            self.build()
            found["library"] = {"rows": self.library.rows,
                                "movies": len(self.library.movies),
                                "series": len(self.library.series),
                                "episodes": len(self.library.episodes),
                                "build_s": round(self.build_s, 2),
                                "baseline_run": _rounded(self.baseline_figures)}
            found["main"] = self.main_scenario()
            log("start-up")
            found["startup"] = self.startup(self.main_config, self.main_state)
            found["growth"] = self.growth() if self.growth_sizes else []
        if self.small_sizes:
            found["small_runs"] = self.small_runs()
        found["machine"]["load_after"] = _load()
        found["total_s"] = round(time.perf_counter() - started, 1)
        found["budgets"] = budgets(found)
        return found


def _on_terminal(command: Sequence[str], env: dict[str, str]) -> float:
    """Seconds `command` takes with a terminal (a pseudo-terminal) as its stdout."""
    import pty

    leader, follower = pty.openpty()
    try:
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL,
                                 stdout=follower, stderr=follower)
        os.close(follower)
        follower = -1
        while True:  # drain the terminal, or a full one would block the command
            try:
                if not os.read(leader, 65536):
                    break
            except OSError:  # EIO: the command closed its side
                break
        child.wait()
        return time.perf_counter() - started
    finally:
        os.close(leader)
        if follower >= 0:
            os.close(follower)


def _rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def _run_figures(figures: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
    return {**_rounded(figures), "status": report.get("status"),
            "players": {p["name"]: {"status": p["status"], "items": p["items"],
                                    "synced": p["synced"], "failed": p["failed"],
                                    "requests": p.get("requests"),
                                    "duration_s": (p.get("duration_ms") or 0) / 1000}
                        for p in report.get("players", [])}}


SMALL_STEPS = ("one_movie", "one_episode")  # the measured one-change runs
#: Every step of the small runs, in order (see Bench.small_runs_at).
SMALL_ALL = ("first_run", "first_run_verify", "nothing_changed", "one_movie",
             "nothing_changed_awaiting_verify", "one_movie_verify", "one_episode",
             "one_episode_verify")


def small_run_summary(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Per player: what each small-run step cost at each size, and whether that is a
    small run's cost: nothing changed, no request; one change, at most
    BUDGET_SMALL_REQUESTS HTTP requests; and the same count at every size, for the change
    and for its verification. Said of each player as measured, not assumed (issue 19:
    Plex lists whole sections until its index lands)."""
    found: dict[str, Any] = {}
    for name in players.NAMES:
        sent = {step: [p[step]["requests"][name]["sent"] for p in points] for step in SMALL_ALL}
        http = {step: [p[step]["requests"][name]["http_requests"] for p in points]
                for step in SMALL_ALL}
        same = [s for step in SMALL_STEPS for s in (step, f"{step}_verify")]
        capable = (not any(sent["nothing_changed"]) and not any(http["nothing_changed"])
                   and all(max(http[s]) <= BUDGET_SMALL_REQUESTS for s in SMALL_STEPS)
                   and all(len(set(sent[s])) == 1 and len(set(http[s])) == 1 for s in same))
        found[name] = {"small_run_capable": capable, "sent": sent, "http_requests": http}
    return found


def budgets(found: dict[str, Any]) -> list[dict[str, Any]]:
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float, limit: float, note: str = "") -> None:
        checks.append({"name": name, "value": value, "limit": limit, "ok": value <= limit,
                       "note": note})

    if "main" in found:
        main = found["main"]
        for name, figures in main["requests"].items():
            check(f"requests {name} / lower bound", figures["ratio"], BUDGET_REQUESTS)
        for point in found["growth"]:
            for name, figures in point["requests"].items():
                check(f"planned requests {name} / lower bound at {point['changed']} (dry run)",
                      figures["ratio"], BUDGET_REQUESTS)
        check(f"wall three players / {main['alone']['player']} alone", main["alone"]["ratio"],
              BUDGET_PARALLEL)
        check("peak RSS of the run (MB)", main["run"]["peak_rss_mb"], BUDGET_RSS_MB)
        startup = found["startup"]
        check("start-up --version / import typer", startup["version_ratio"], BUDGET_STARTUP)
        check("start-up status / import typer", startup["status_ratio"], BUDGET_STARTUP)
        check("status imports requests or adapters",
              float(bool(startup["status_imports_requests"] or startup["status_imports_adapters"])),
              0.0)
        points = found["growth"]
        for smaller, bigger in zip(points, points[1:], strict=False):
            check(f"dry-run wall per item {bigger['changed']} / {smaller['changed']}",
                  round(bigger["wall_per_item_ms"] / smaller["wall_per_item_ms"], 3),
                  BUDGET_GROWTH)
            check(f"collect+plan+record CPU per item {bigger['changed']} / {smaller['changed']}",
                  round(bigger["core_cpu_per_item_ms"] / smaller["core_cpu_per_item_ms"], 3),
                  BUDGET_GROWTH)
        small_s = found.get("small_runs", {}).get("total_s", 0.0)
        check("whole benchmark (s)", round(found["total_s"] - small_s, 1), BUDGET_TOTAL_S,
              "without the small runs (they build libraries of their own)")
    if "small_runs" in found:
        small = found["small_runs"]
        for point in small["points"]:
            for name in players.NAMES:
                got = point["nothing_changed"]["requests"][name]
                check(f"small runs at {point['rows']}: {name} requests, nothing changed",
                      max(got["sent"], got["http_requests"]), 0)
                for step in SMALL_STEPS:
                    check(f"small runs at {point['rows']}: {name} requests, {step}",
                          point[step]["requests"][name]["http_requests"],
                          BUDGET_SMALL_REQUESTS, "HTTP requests (Kodi's JSON-RPC calls in "
                          "the table, not budgeted)")
            for step in SMALL_STEPS:
                check(f"small runs at {point['rows']}: wall of {step} (s)",
                      point[step]["wall_s"], BUDGET_SMALL_WALL_S)
        for name, summary in small["players"].items():
            for step in (s for one in SMALL_STEPS for s in (one, f"{one}_verify")):
                check(f"small runs: {name} requests for {step} at "
                      f"{'/'.join(map(str, small['sizes']))}: spread",
                      float(max(summary["sent"][step]) - min(summary["sent"][step])
                            + max(summary["http_requests"][step])
                            - min(summary["http_requests"][step])), 0.0,
                      f"calls {summary['sent'][step]}, HTTP "
                      f"{summary['http_requests'][step]}: the same at every size")
    return checks


def table(found: dict[str, Any]) -> str:
    """The figures as a small plain-text table."""
    m = found["machine"]
    lines = [f"machine: {m['nproc']} cores, {m['cpu']}, Python {m['python']}, load "
             f"{m['load_before']} -> {m['load_after']}"]
    if "main" in found:
        lines += _main_table(found)
    if "small_runs" in found:
        lines += _small_table(found)
    lines += ["", "budgets:"]
    for b in found["budgets"]:
        lines.append(f"  {'ok  ' if b['ok'] else 'FAIL'} {b['name']}: {b['value']:g} "
                     f"(limit {b['limit']:g})")
    lines.append(f"whole benchmark: {found['total_s']:.0f} s")
    return "\n".join(lines)


def _main_table(found: dict[str, Any]) -> list[str]:
    main = found["main"]
    lines = ["", f"metarr-sync benchmark: {found['library']['rows']:,} Metarr items, "
             f"{main['changed']:,} changed, {found['settings']['latency_ms']:g} ms per request",
             ""]
    lines.append(f"{'player':<10}{'requests':>10}{'lower bound':>13}{'ratio':>8}"
                 f"{'time s':>9}{'status':>9}{'strict bound':>14}{'ratio':>8}{'HTTP':>8}")
    for name, figures in main["requests"].items():
        player = main["run"]["players"].get(name, {})
        lines.append(f"{name:<10}{figures['sent']:>10,}{figures['lower_bound']:>13,}"
                     f"{figures['ratio']:>8.3f}{player.get('duration_s', 0):>9.1f}"
                     f"{player.get('status', '?'):>9}{figures['strict_lower_bound']:>14,}"
                     f"{figures['strict_ratio']:>8.3f}{figures['http_requests']:>8,}")
    lines.append("(strict bound: a TV library's episodes listed whole, not per changed show; "
                 "not budgeted. Kodi's requests are JSON-RPC calls, HTTP the POSTs that "
                 "carried them)")
    run, alone, naive = main["run"], main["alone"], main["naive"]
    cp, st = main["collect_plan"], found["startup"]
    lines += [
        "",
        f"run, three players:   {run['wall_s']:8.1f} s wall, {run['cpu_s']:.1f} CPU s, "
        f"peak RSS {run['peak_rss_mb']:.0f} MB",
        f"{alone['player']} alone:{'':<{11 - len(alone['player'])}}{alone['wall_s']:8.1f} s "
        f"wall; three players / alone = {alone['ratio']:.2f}",
        f"naive reference:      {naive['wall_s']:8.1f} s wall, {naive['requests']:,} requests "
        f"(naive / metarr-sync: {naive['requests_ratio']:.2f}x calls, "
        f"{naive['http_requests_ratio']:.2f}x HTTP requests, "
        f"{naive['wall_ratio']:.2f}x time"
        + (f"; extrapolated from {naive['sample_per_player']} items per player)"
           if naive["extrapolated"] else ")"),
        f"collect + plan:       {cp['cpu_s']:8.2f} CPU s (collect {cp['collect_cpu_s']:.2f}, "
        f"plan {cp['plan_cpu_s']:.2f}) for {cp['changed']:,} of {cp['rows']:,} rows, "
        f"peak RSS {cp['peak_rss_mb']:.0f} MB",
        f"start-up (median of {st['repeats']}): import typer {st['typer_s']:.3f} s, "
        f"--version {st['version_s']:.3f} s ({st['version_ratio']:.2f}x), "
        f"status {st['status_s']:.3f} s ({st['status_ratio']:.2f}x; on a terminal "
        f"{st['status_terminal_s']:.3f} s, {st['status_terminal_ratio']:.2f}x, not "
        "budgeted); bytecode compiled, as after pip install",
    ]
    if found["growth"]:
        lines += ["", "growth (run --dry-run against the fakes, and collect + plan + record "
                  "in a process of its own):",
                  f"{'changed':>10}{'wall s':>8}{'CPU s':>7}{'RSS MB':>8}{'ms/item':>9}"
                  f"{'core CPU s':>12}{'ms/item':>9}{'record s':>10}"
                  "  planned requests / bound (kodi, jellyfin, plex)"]
        for p in found["growth"]:
            ratios = ", ".join(f"{v['ratio']:.3f}" for v in p["requests"].values())
            core = p["core"]
            lines.append(f"{p['changed']:>10,}{p['wall_s']:>8.1f}{p['cpu_s']:>7.1f}"
                         f"{p['peak_rss_mb']:>8.0f}{p['wall_per_item_ms']:>9.3f}"
                         f"{core['cpu_s']:>12.2f}{p['core_cpu_per_item_ms']:>9.3f}"
                         f"{core['record_cpu_s']:>10.2f}  {ratios}")
    return lines


def _small_table(found: dict[str, Any]) -> list[str]:
    small = found["small_runs"]
    lines = ["", f"small runs (issue 19): players holding the whole library, "
             f"{found['settings']['latency_ms']:g} ms per request; per player: calls/HTTP "
             "requests (Kodi: JSON-RPC calls / POSTs) and its own seconds (the run's wall "
             "adds start-up and collecting Metarr's changes)",
             f"{'items':>9}  {'run':<32}{'wall s':>7}  "
             + "".join(f"{name:>20}" for name in players.NAMES)]
    for point in small["points"]:
        for step in SMALL_ALL:
            got = point[step]
            cells = "".join(
                f"{r['sent']:>9,}/{r['http_requests']:<4,}"
                f"{got['players'].get(name, {}).get('duration_s', 0):>5.2f}s "
                for name, r in got["requests"].items())
            lines.append(f"{point['rows']:>9,}  {step.replace('_', ' '):<32}"
                         f"{got['wall_s']:>7.2f}  {cells}")
    lines.append("small-run capable (nothing changed: 0; one change: <= "
                 f"{BUDGET_SMALL_REQUESTS}, the same at every size): " + ", ".join(
                     f"{n} {'yes' if p['small_run_capable'] else 'NO'}"
                     for n, p in small["players"].items()))
    return lines


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="size of library and change sets (1.0: the issue's scenario)")
    parser.add_argument("--changed", type=int, default=10000,
                        help="changed items in the main scenario, before --scale")
    parser.add_argument("--latency", type=float, default=0.010,
                        help="seconds each fake player adds to every request")
    parser.add_argument("--growth", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[1000, 10000, 100000],
                        help="changed items of the growth runs, before --scale "
                        "(empty: none)")
    parser.add_argument("--growth-latency", type=float, default=0.0,
                        help="per-request latency of the fakes in the growth runs (dry "
                        "runs: only listings are sent)")
    parser.add_argument("--naive-sample", type=int, default=300,
                        help="items per player sent the naive way (then extrapolated)")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    parser.add_argument("--startup-repeats", type=int, default=15,
                        help="runs of each start-up command (their median counts)")
    parser.add_argument("--small-sizes", type=lambda s: [int(x) for x in s.split(",") if x],
                        default=[25000, 250000],
                        help="library sizes of the small runs (issue 19), before --scale "
                        "(empty: none)")
    parser.add_argument("--small-only", action="store_true",
                        help="only the small runs: no main scenario, start-up or growth")
    parser.add_argument("--out", type=Path, default=Path("bench-results.json"),
                        help="where to write the figures as JSON")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the databases and logs here (default: a temporary "
                        "directory, removed afterwards)")
    parser.add_argument("--no-budgets", action="store_true",
                        help="exit 0 even when a budget does not hold")
    return parser.parse_args(argv)


def run_benchmark(args: argparse.Namespace, measure: Callable[[Path], dict[str, Any]],
                  render: Callable[[dict[str, Any]], str], prefix: str) -> int:
    """What every benchmark script's main does around its measurements: a work folder
    (`--workdir`, or a temporary one removed afterwards), the figures as JSON in
    `--out`, the table printed, exit 1 when a budget fails (unless `--no-budgets`)."""
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        work_ctx: Any = None
        work = args.workdir.resolve()
    else:
        work_ctx = tempfile.TemporaryDirectory(prefix=prefix)
        work = Path(work_ctx.name)
    try:
        (work / "home").mkdir(exist_ok=True)
        found = measure(work)
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    args.out.write_text(json.dumps(found, indent=2) + "\n")
    print(render(found))
    print(f"\nfigures written to {args.out}")
    failed = [b for b in found["budgets"] if not b["ok"]]
    return 1 if failed and not args.no_budgets else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    return run_benchmark(args, lambda work: Bench(args, work).everything(), table,
                         "metarr-bench-")


if __name__ == "__main__":
    sys.exit(main())
