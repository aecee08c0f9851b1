"""`status`: is sync healthy? One screen, the design's SyncMetrics, monitoring exit codes.

Reads only the config (secrets unresolved) and the state: it never opens Metarr's
database, never contacts a player and never imports the HTTP stack or an adapter, so
`ssh host metarr-sync status` is fast enough for a monitoring check every minute.

For the same reason its plain forms (see plain_args) run without Typer: cli/__init__.py's
main() calls status() directly, the same function the Typer command calls. This module
therefore imports neither Typer nor Rich at module level; register() builds the Typer
command when the app is built, and status() imports what it needs when it runs.
(No `from __future__ import annotations` here: the command defined inside register()
needs its annotations evaluated there, where Typer's names are.)
"""

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

if TYPE_CHECKING:  # the Click Typer bundles (its commands' hooks take its Context)
    from typer._click import Context as ClickContext

STATUS_EXIT_HELP = (
    "Exit codes (monitoring-plugin convention, for Nagios, Icinga, Uptime Kuma): 0 OK; "
    "1 WARNING (items waiting longer than --warn-age, deferred, failed or never seen on "
    "the player, or the last run partly failed); 2 CRITICAL (a player disabled after an "
    "authentication failure, or the last run failed); 3 UNKNOWN (no run yet, state or "
    "configuration unreadable, or a bad option)."
)


def register(app: Any) -> None:
    """Add the `status` command to the Typer `app`."""
    import typer
    from typer.core import TyperCommand

    from metarr_sync.cli import common
    from metarr_sync.cli.options import JsonOpt

    class StatusCommand(TyperCommand):
        """Bad options exit 3 (UNKNOWN), as monitoring plugins do, not 2 (CRITICAL)."""

        def parse_args(self, ctx: "ClickContext", args: list[str]) -> list[str]:
            try:
                return super().parse_args(ctx, args)
            except Exception as exc:
                # Click's UsageError (Typer may bundle its own Click, so matched by shape).
                if (getattr(exc, "exit_code", None) == common.EXIT_USAGE
                        and hasattr(exc, "show")):
                    exc.exit_code = 3  # type: ignore[attr-defined]  # matched by shape
                raise

    def status_command(
        ctx: typer.Context,
        warn_age: Annotated[str, typer.Option(
            "--warn-age", metavar="AGE",
            help="Warn about items waiting longer than this: 90s, 30m, 1h, 2d")] = "1h",
        json_out: JsonOpt = False,
    ) -> None:
        """Is sync healthy? Per player: state, last sync and result, success rate, average
        response time, queued work, last error; plus the run history. The first line is a
        one-sentence verdict (OK / WARNING / CRITICAL / UNKNOWN).

        In --json: total_syncs, successful_syncs, failed_syncs, average_sync_time (seconds),
        last_sync_timestamp, items_per_second, by_player {success_rate,
        average_response_time (seconds per request), last_error}; then health, players,
        queue and runs.
        """
        raise typer.Exit(status(common.config_path(ctx), common.state_dir(ctx), warn_age,
                                json_out))

    app.command("status", cls=StatusCommand, epilog=STATUS_EXIT_HELP)(status_command)


def plain_args(args: Sequence[str], environ: Mapping[str, str]
               ) -> tuple[Path, Path, str, bool] | None:
    """status()'s arguments for the plain forms of a `status` command line:

        metarr-sync [-c FILE | --config FILE | --config=FILE]
                    [--state-dir DIR | --state-dir=DIR]
                    status [--json] [--warn-age AGE | --warn-age=AGE]

    each option at most once, in any order on its side of `status`. None for anything
    else (-v, --log-file, -h/--help, an unknown or repeated option, an empty value or one
    starting with '-', an extra argument, shell completion): Typer handles those, so help,
    usage errors and their exit codes come from one place.

    The config file and state directory are resolved as the Typer command does: the
    option, else METARR_SYNC_CONFIG / METARR_SYNC_STATE_DIR unless empty (Click's rule
    for envvar=; both used as given, like Typer's Path), else the default location.
    """
    if "status" not in args or "_METARR_SYNC_COMPLETE" in environ:  # shell completion
        return None
    where = args.index("status")
    found = _options(args[:where], {"-c": "config", "--config": "config",
                                    "--state-dir": "state_dir"})
    after = _options(args[where + 1:], {"--json": "", "--warn-age": "warn_age"})
    if found is None or after is None:
        return None
    from metarr_sync.config import default_config_path, default_state_dir

    config = found.get("config") or environ.get("METARR_SYNC_CONFIG")
    state_dir = found.get("state_dir") or environ.get("METARR_SYNC_STATE_DIR")
    return (Path(config) if config else default_config_path(),
            Path(state_dir) if state_dir else default_state_dir(),
            after.get("warn_age", "1h"), "--json" in after)


def _options(words: Sequence[str], known: dict[str, str]) -> dict[str, str] | None:
    """`words` as {name: value} ({flag: ""} for an option named "" in `known`, a flag);
    None unless every word is one of `known`, given once, with a plain value."""
    found: dict[str, str] = {}
    rest = list(words)
    while rest:
        word = rest.pop(0)
        option, equals, value = word.partition("=")
        if not option.startswith("--"):
            option, equals, value = word, "", ""  # short options take no `=`
        name = known.get(option)
        if name is None or (name or option) in found:
            return None
        if not name:  # a flag
            if equals:
                return None
            found[option] = ""
            continue
        if not equals:
            if not rest:
                return None
            value = rest.pop(0)
        if not value or value.startswith("-"):
            return None
        found[name] = value
    return found


def status(config_path: Path, state_dir: Path, warn_age: str, json_out: bool) -> int:
    """Print the verdict, the players and the run history (or one JSON document); the
    monitoring exit code (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN)."""
    try:
        return _status(config_path, state_dir, warn_age, json_out)
    except _Unknown as unknown:
        return _print_unknown(str(unknown), json_out)


class _Unknown(Exception):
    """Status cannot be judged: the reason, for the verdict line."""


def _unknown(reason: str) -> NoReturn:
    raise _Unknown(reason)


def _status(config_path: Path, state_dir: Path, warn_age: str, json_out: bool) -> int:
    import sqlite3

    from metarr_sync import health, render
    from metarr_sync.cli import common
    from metarr_sync.config import ConfigError, load_config
    from metarr_sync.stamps import parse_duration, stamp_ago
    from metarr_sync.state import State, StateError

    max_age = parse_duration(warn_age, bare_unit="s")  # a bare number: seconds, as ever
    if max_age is None:
        _unknown(f"--warn-age {warn_age!r} is not a duration like 90s, 30m, 1h or 2d")
    try:
        config = load_config(config_path, secrets=False)
    except ConfigError as exc:
        for problem in exc.problems:
            common.err(f"metarr-sync: {problem}")
        more = len(exc.problems) - 1
        _unknown(f"configuration error: {exc.problems[0]}"
                 + (f" (and {more} more)" if more else ""))
    try:
        state = State.open_existing(state_dir)
    except StateError as exc:
        _unknown(str(exc))
    if state is None:
        _unknown(f"no sync has run yet (no state in {state_dir}): run `metarr-sync run`")
    try:
        metrics = state.sync_metrics()
        queue = state.queue_summary()
        states = state.player_states()
        cutoff = stamp_ago(max_age)
        overdue = state.waiting_since(cutoff)
        runs = state.run_history(10)
        watcher = watcher_view(state.watcher())
        alert_log = state.alert_log()
    except sqlite3.Error as exc:
        _unknown(f"state database {state.path} cannot be read: {exc}")
    finally:
        state.close()
    enabled = [p.name for p in config.players.values() if p.enabled]
    auth_disabled = {name: row["disabled_reason"] for name, row in states.items()
                     if row.get("disabled_reason") and name in enabled}
    verdict = health.evaluate(metrics, queue, enabled, auth_disabled, overdue,
                              warn_age.strip())
    players = []
    totals: dict[str, int] = {}
    for p in config.players.values():
        m = metrics.by_player.get(p.name)
        summary = queue.get(p.name)
        counts = dict(summary.counts) if summary else {}
        for name, count in counts.items():
            totals[name] = totals.get(name, 0) + count
        players.append({
            "name": p.name, "type": p.type, "enabled": p.enabled,
            "disabled_reason": (states.get(p.name) or {}).get("disabled_reason"),
            "last_sync_at": m.last_sync_at if m else None,
            "last_result": m.last_result if m else None,
            "syncs": m.syncs if m else 0,
            "success_rate": m.success_rate if m else None,
            "average_response_time": m.average_response_time if m else None,
            "last_error": m.last_error if m else None,
            "last_error_at": m.last_error_at if m else None,
            "queue": counts,
            "oldest_waiting": summary.oldest_waiting if summary else None,
            "overdue": overdue.get(p.name, 0),
        })
    history = [{k: run[k] for k in ("id", "command", "trigger", "started_at", "finished_at",
                                    "status", "exit_code", "items", "synced", "failed")}
               | {"duration": None if run["duration"] is None else round(run["duration"], 3)}
               for run in runs]
    alerts: dict[str, Any] | None = None
    if config.alerts.urls or alert_log:
        alerts = {"urls": len(config.alerts.urls), "last_sent_at": None, "last_error": None,
                  "last_error_at": None} | (alert_log or {})
    if json_out:
        common.dump_json(render.status_json(metrics, verdict, players, totals, history,
                                            watcher)
                         | ({"alerts": alerts} if alerts else {}))
    else:
        render.print_status(verdict, metrics, players, totals, history, watcher, alerts)
    return verdict.code


def watcher_view(row: dict[str, Any] | None, now: float | None = None
                 ) -> dict[str, Any] | None:
    """What `status` says of `metarr-sync watch` (None: none ever ran with this state):
    alive while it has not stopped, its process exists and its last heartbeat is recent
    (three heartbeat intervals, at least 30 s: a heartbeat may wait for a busy state)."""
    if row is None:
        return None
    import time

    from metarr_sync.stamps import parse_stamp

    try:
        age: float | None = (now or time.time()) - parse_stamp(row["heartbeat_at"]).timestamp()
    except ValueError:
        age = None
    alive = (row["stopped_at"] is None and age is not None
             and age <= max(3 * float(row["interval"]), 30.0) and _process_exists(row["pid"]))
    return {"alive": alive, "pid": row["pid"], "started_at": row["started_at"],
            "heartbeat_at": row["heartbeat_at"], "stopped_at": row["stopped_at"],
            "status": row["status"], "last_run_id": row["last_run_id"],
            "last_run_status": row["last_run_status"],
            "last_run_finished_at": row["last_run_finished_at"]}


def _process_exists(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    except OSError:
        return False
    return True


def _print_unknown(reason: str, json_out: bool) -> int:
    """UNKNOWN (3): still one verdict line (or JSON document) for the monitoring system."""
    from metarr_sync import health, render
    from metarr_sync.cli import common
    from metarr_sync.state import SyncMetrics

    verdict = health.Health(health.UNKNOWN, [reason], f"UNKNOWN: {reason}")
    if json_out:
        common.dump_json(render.status_json(SyncMetrics(), verdict, [], {}, []))
    else:
        render.print_verdict(verdict)
    return health.UNKNOWN
