"""`status`: is sync healthy? One screen, the design's SyncMetrics, monitoring exit codes.

Reads only the config (secrets unresolved) and the state: it never opens Metarr's
database, never contacts a player and never imports the HTTP stack or an adapter, so
`ssh host metarr-sync status` is fast enough for a monitoring check every minute.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, NoReturn

import typer
from typer.core import TyperCommand

from metarr_sync.cli import common
from metarr_sync.cli.ops import JsonOpt

STATUS_EXIT_HELP = (
    "Exit codes (monitoring-plugin convention, for Nagios, Icinga, Uptime Kuma): 0 OK; "
    "1 WARNING (items waiting longer than --warn-age, deferred, failed or never seen on "
    "the player, or the last run partly failed); 2 CRITICAL (a player disabled after an "
    "authentication failure, or the last run failed); 3 UNKNOWN (no run yet, state or "
    "configuration unreadable, or a bad option)."
)
AGE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class StatusCommand(TyperCommand):
    """Bad options exit 3 (UNKNOWN), as monitoring plugins do, not 2 (CRITICAL)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as exc:
            # Click's UsageError (Typer may bundle its own Click, so matched by shape).
            if getattr(exc, "exit_code", None) == common.EXIT_USAGE and hasattr(exc, "show"):
                exc.exit_code = 3  # type: ignore[attr-defined]
            raise


def register(app: typer.Typer) -> None:
    app.command("status", cls=StatusCommand, epilog=STATUS_EXIT_HELP)(status_command)


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
    from metarr_sync import health, render
    from metarr_sync.config import ConfigError, load_config
    from metarr_sync.state import State, StateError, now_stamp

    match = AGE_RE.match(warn_age)
    if not match:
        _unknown(f"--warn-age {warn_age!r} is not a duration like 90s, 30m, 1h or 2d",
                 json_out)
    max_age = float(match.group(1)) * _UNITS[match.group(2)]
    try:
        config = load_config(common.config_path(ctx), secrets=False)
    except ConfigError as exc:
        for problem in exc.problems:
            common.err(f"metarr-sync: {problem}")
        more = len(exc.problems) - 1
        _unknown(f"configuration error: {exc.problems[0]}"
                 + (f" (and {more} more)" if more else ""), json_out)
    directory = common.state_dir(ctx)
    try:
        state = State.open_existing(directory)
    except StateError as exc:
        _unknown(str(exc), json_out)
    if state is None:
        _unknown(f"no sync has run yet (no state in {directory}): run `metarr-sync run`",
                 json_out)
    import sqlite3

    try:
        metrics = state.sync_metrics()
        queue = state.queue_summary()
        states = state.player_states()
        cutoff = now_stamp(datetime.now(UTC) - timedelta(seconds=max_age))
        overdue = state.waiting_since(cutoff)
        runs = state.run_history(10)
    except sqlite3.Error as exc:
        _unknown(f"state database {state.path} cannot be read: {exc}", json_out)
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
        for status, count in counts.items():
            totals[status] = totals.get(status, 0) + count
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
    if json_out:
        common.dump_json(render.status_json(metrics, verdict, players, totals, history))
    else:
        render.print_status(verdict, metrics, players, totals, history)
    raise typer.Exit(verdict.code)


def _unknown(reason: str, json_out: bool) -> NoReturn:
    """UNKNOWN (3): still one verdict line (or JSON document) for the monitoring system."""
    from metarr_sync import health, render
    from metarr_sync.state import SyncMetrics

    verdict = health.Health(health.UNKNOWN, [reason], f"UNKNOWN: {reason}")
    if json_out:
        common.dump_json(render.status_json(SyncMetrics(), verdict, [], {}, []))
    else:
        render.console().print(verdict.summary, markup=False)
    raise typer.Exit(health.UNKNOWN)
