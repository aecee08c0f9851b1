"""Rich tables for people and JSON documents for scripts."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Rich when something is printed (`status --json` never imports it); the engine never:
    # `status` renders too, and must not pay for importing it.
    from rich.console import Console

    from metarr_sync.engine import RunReport
    from metarr_sync.player_run import PlayerResult

from metarr_sync.layout import Grid
from metarr_sync.stamps import spoken

STATUS_STYLE = {"synced": "green", "partial": "yellow", "held": "yellow", "failed": "red",
                "deferred": "cyan", "skipped": "dim", "disabled": "dim"}


def console() -> Console:
    """stdout console: colour only on a terminal, never with NO_COLOR (Rich honours it).
    No emoji codes: a path or message holding `:name:` is printed as it is (and Rich's
    table of emoji names is never loaded)."""
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(highlight=False, emoji=False)
    return Console(highlight=False, width=captured_width(), color_system=None,
                   force_terminal=False, emoji=False)


def captured_width() -> int:
    """The width of output that is not a terminal: $COLUMNS, else 160."""
    try:
        return int(os.environ.get("COLUMNS", "160") or 160)
    except ValueError:
        return 160


def _table(title: str) -> Grid:
    """A table with its title on the left, laid out for the width it is printed at
    (layout.py: on a narrow terminal low-value columns go, or rows become blocks)."""
    return Grid(title)


def duration(ms: int) -> str:
    return f"{ms / 1000:.1f}s" if ms >= 100 else f"{ms}ms"


#: Per column: how it gives way on a narrow terminal (layout.Column).
_RUN_FIT: dict[str, dict[str, Any]] = {
    "type": {"drop": 3}, "items": {"label": True}, "synced": {"label": True},
    "failed": {"label": True}, "verified": {"drop": 4, "label": True},
    "requests": {"drop": 1, "label": True}, "time": {"drop": 2, "label": True},
    "error": {"long": True}}


def run_table(report: RunReport) -> Grid:
    title = f"metarr-sync {report.command}" + (" (dry run)" if report.dry_run else "")
    if report.run_id is not None:
        title += f" #{report.run_id}"
    table = _table(title)
    for column in ("player", "type", "result", "items", "synced", "failed", "verified",
                   "requests", "time", "error"):
        table.add_column(column, justify="right" if column in (
            "items", "synced", "failed", "verified", "requests", "time") else "left",
            **_RUN_FIT.get(column, {}))
    for p in report.players:
        # Text cells, never markup: an error or a player name may hold [brackets].
        table.add_row(_cell(p.name), _cell(p.type),
                      _cell(p.status, STATUS_STYLE.get(p.status, "")),
                      _cell(p.items), _cell(p.synced), _cell(p.failed), _cell(p.verified),
                      _cell(p.requests), _cell(duration(p.duration_ms)), _cell(p.error or ""))
    return table


def player_json(p: PlayerResult, dry_run: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": p.name, "type": p.type, "status": p.status, "items": p.items,
        "synced": p.synced, "failed": p.failed, "deferred": p.deferred,
        "verified": p.verified, "held": p.held, "kept": p.kept, "requests": p.requests,
        "duration_ms": p.duration_ms, "error": p.error, "error_kind": p.error_kind,
        "notes": p.notes,
        "failures": [{"item": f.item, "title": f.title, "result": f.result, "cause": f.cause}
                     for f in p.failures.values()],
        # Updates that waited longer than max_defer for a viewer, sent while they watched.
        "sent_while_watching": [
            {"item": w.item, "title": w.title, "deferred_seconds": int(w.deferred_seconds),
             "deferred_for": spoken(w.deferred_seconds), "max_defer": w.max_defer,
             "cause": w.cause} for w in p.sent_while_watching],
    }
    if dry_run:
        doc["commands"] = p.commands
    return doc


def run_json(report: RunReport) -> dict[str, Any]:
    return {
        "run_id": report.run_id,
        "command": report.command,
        "trigger": report.trigger,
        "started_at": report.started_at,
        "finished_at": report.finished_at,
        "dry_run": report.dry_run,
        "status": report.status,
        "exit_code": report.exit_code,
        "items": report.items,
        "changed": report.changed,
        "message": report.message,
        "players": [player_json(p, report.dry_run) for p in report.players],
    }


class RunProgress:
    """Per-player progress bars (items done of total) on stderr while a run works: the
    engine's `progress(player, done, total)` callback, called from the player threads."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        # transient: the bars make way for the result table once the run is over.
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TextColumn("items"), TimeElapsedColumn(),
                             console=Console(stderr=True, highlight=False), transient=True)
        self.tasks: dict[str, Any] = {}
        self.started = False

    def __call__(self, player: str, done: int, total: int) -> None:
        if not self.started:
            self.bars.start()
            self.started = True
        task = self.tasks.get(player)
        if task is None:
            self.tasks[player] = self.bars.add_task(player, total=total, completed=done)
        else:
            self.bars.update(task, total=total, completed=done)

    def close(self) -> None:
        if self.started:
            self.bars.stop()
            self.started = False


def run_progress() -> RunProgress | None:
    """A progress display only for a person at a terminal: never when stdout or stderr is
    a pipe or a file (cron, scripts, `| less`), so no escape codes end up there."""
    if not (sys.stdout.isatty() and sys.stderr.isatty()):
        return None
    return RunProgress()


def print_run(report: RunReport) -> None:
    out = console()
    if report.message:
        out.print(report.message, markup=False)
        return
    if report.dry_run:
        for p in report.players:
            out.print(f"{p.name} ({p.type}): {len(p.commands)} command(s)"
                      + (f" - {p.error}" if p.error else ""), markup=False)
            for command in p.commands:
                out.print(f"  {command}", markup=False)
    if not report.players:
        out.print("No players configured: add one with `metarr-sync players add TYPE NAME "
                  "--url URL`, or import those set up in Metarr with `metarr-sync players "
                  "import`.", markup=False)
        return
    out.print(run_table(report))
    for p in report.players:
        for note in p.notes:
            # Not wrapped: a note ends with a command to copy.
            out.print(f"{p.name}: {note}", markup=False, soft_wrap=True)
    for line in undone_lines(report, out.width):
        out.print(line, markup=False, soft_wrap=True)


#: How many undone items a run lists below its table; `queue list` has the rest.
UNDONE_SHOWN = 10
_UNDONE_WORDS = {"pending": "failed, tried again next run"}


def undone_lines(report: RunReport, width: int) -> list[str]:
    """The items the run left failed, unverified, held or to retry, with their causes:
    the first ten, grouped by player and cause (each cause said once), then how many
    more and the command that lists them. Wrapped to `width` here, so that a long
    cause (a path, a URL) stays whole and no line is wider than the terminal."""
    import textwrap

    undone = [(p, f) for p in report.players for f in p.failures.values()]
    if not undone:
        return []
    width = max(width, 40)

    def wrap(text: str, indent: str, more: str) -> list[str]:
        return textwrap.wrap(text, width, initial_indent=indent, subsequent_indent=more,
                             break_on_hyphens=False) or [indent.rstrip()]

    lines = [f"Not done ({len(undone)} item{'s' if len(undone) != 1 else ''}), and why:"]
    groups: dict[tuple[str, str, str], list[str]] = {}
    for p, f in undone[:UNDONE_SHOWN]:
        # A cause the notes above already give (a guard holding removals) is not repeated.
        cause = "see above" if f.cause in p.notes else f.cause
        groups.setdefault((p.name, f.result, cause), []).append(f"{f.item}  {f.title}")
    for (name, result, cause), items in groups.items():
        lines += wrap(f"{name}, {_UNDONE_WORDS.get(result, result)}: {cause}", "", "    ")
        for item in items:
            lines += wrap(item, "  - ", "    ")
    rest = undone[UNDONE_SHOWN:]
    if rest:
        statuses: dict[str, int] = {}
        for _, f in rest:
            statuses[f.result] = statuses.get(f.result, 0) + 1
        command = "metarr-sync queue list"
        if len(statuses) == 1:
            command += f" --status {next(iter(statuses))}"
        players = {p.name for p, _ in rest}
        if len(players) == 1 and len(report.players) > 1:
            command += f" --player {next(iter(players))}"
        counts = "" if len(statuses) == 1 else " (" + ", ".join(
            f"{count} {status}" for status, count in statuses.items()) + ")"
        lines.append(f"and {len(rest)} more{counts}: "
                     + ("a dry run queues nothing" if report.dry_run else f"`{command}`"))
    return lines


# --- operator commands: players, mappings, queue, status ----------------------------------
# Every cell is a Text, never markup: paths and errors may hold [brackets].

def _cell(value: object, style: str = "") -> Any:
    from rich.text import Text

    return Text("" if value is None else str(value), style=style)


def _ago(stamp: str | None) -> str:
    from metarr_sync.stamps import ago

    return ago(stamp)


_PLAYERS_FIT: dict[str, dict[str, Any]] = {
    "url": {"long": True}, "group": {"drop": 2, "label": True},
    "priority": {"drop": 1, "label": True}, "enabled": {"label": True},
    "mappings": {"drop": 3, "label": True}, "credentials": {"drop": 4},
    "last result": {"long": True}}


def players_table(rows: list[dict[str, Any]]) -> Grid:
    table = _table("metarr-sync players")
    for column in ("player", "type", "url", "group", "priority", "enabled", "mappings",
                   "credentials", "last result"):
        table.add_column(column, justify="right" if column in ("priority", "mappings")
                         else "left", **_PLAYERS_FIT.get(column, {}))
    for row in rows:
        enabled = "yes" if row["enabled"] else "no"
        if row.get("disabled_reason"):
            enabled = f"no: {row['disabled_reason']}"
        last = row.get("last_result")
        if last is None:
            result, style = "never synced", "dim"
        else:
            result = f"{last['status']} {_ago(last['finished_at'])}".strip()
            if last.get("error"):
                result += f": {last['error']}"
            style = STATUS_STYLE.get(last["status"], "")
        table.add_row(_cell(row["name"]), _cell(row["type"]), _cell(row["url"]),
                      _cell(row["group"] or ""), _cell(row["priority"]),
                      _cell(enabled, "" if row["enabled"] and not row.get("disabled_reason")
                            else "red" if row.get("disabled_reason") else "dim"),
                      _cell(row["mappings"]), _cell(row["credentials_text"]),
                      _cell(result, style))
    return table


def player_test_json(result: Any, reenabled: bool = False) -> dict[str, Any]:
    return {
        "name": result.name, "type": result.type, "ok": result.ok,
        "version": result.version, "api_version": result.api_version,
        "steps": [{"name": s.name, "ok": s.ok, "detail": s.detail, "warning": s.warning,
                   "fix": s.fix or None} for s in result.steps],
        "warnings": len(result.warnings),
        "roots": result.roots, "error": result.error, "error_kind": result.error_kind,
        "reenabled": reenabled,
    }


def player_test_table(results: list[Any]) -> Grid:
    table = _table("metarr-sync players test")
    for column in ("player", "step", "result", "detail"):
        table.add_column(column, long=column == "detail")
    for result in results:
        for index, step in enumerate(result.steps):
            verdict = ("FAILED", "red") if not step.ok else (
                ("WARNING", "yellow") if step.warning else ("ok", "green"))
            detail = f"{step.detail}; fix: {step.fix}" if step.fix else step.detail
            table.add_row(_cell(result.name if index == 0 else ""), _cell(step.name),
                          _cell(*verdict), _cell(detail))
    return table


def mappings_table(players: list[Any]) -> Grid:
    table = _table("metarr-sync mappings")
    for column in ("player", "metarr path", "player path"):
        table.add_column(column, long=column != "player")
    for player in players:
        if not player.mappings:
            table.add_row(_cell(player.name), _cell("(none: Metarr's own paths are sent)",
                                                    "dim"), _cell(""))
        for mapping in player.mappings:
            table.add_row(_cell(player.name), _cell(mapping.metarr), _cell(mapping.player))
    return table


def mapping_test_table(path: str, rows: list[dict[str, Any]]) -> Grid:
    table = _table(f"metarr-sync mappings test {path}")
    for column in ("player", "mapping", "player path"):
        table.add_column(column, long=column != "player")
    for row in rows:
        mapping = row["mapping"]
        used = (f"{mapping['metarr']} → {mapping['player']}" if mapping
                else "(none)" if row["error"] else "(no mappings: Metarr's own path)")
        if row["error"]:
            table.add_row(_cell(row["name"]), _cell(used), _cell(row["error"], "red"))
        else:
            table.add_row(_cell(row["name"]), _cell(used), _cell(row["player_path"], "green"))
    return table


DETECT_STYLE = {"new": "green", "configured": "", "conflict": "red", "ambiguous": "yellow",
                "unmatched": "yellow", "error": "red", "applied": "green"}


def detect_table(rows: list[dict[str, Any]]) -> Grid:
    table = _table("metarr-sync mappings detect")
    for column in ("player", "library", "status", "mapping", "detail"):
        table.add_column(column, long=column in ("library", "mapping", "detail"))
    for row in rows:
        mapping = row.get("mapping")
        table.add_row(_cell(row["player"]), _cell(row.get("library_path") or ""),
                      _cell(row["status"], DETECT_STYLE.get(row["status"], "")),
                      _cell(f"{mapping['metarr']} → {mapping['player']}" if mapping else ""),
                      _cell(row.get("detail") or ""))
    return table


QUEUE_STYLE = {"pending": "", "deferred": "cyan", "failed": "red", "unverified": "yellow",
               "sent": "dim"}


def queue_entry_json(entry: Any) -> dict[str, Any]:
    item = entry.item
    return {
        "player": entry.player, "item": item.key, "kind": item.kind, "id": item.id,
        "title": item.label(), "path": item.path, "removed": item.removed,
        # An upgraded or renamed item: the earlier files the player may still list.
        "previous_paths": list(item.previous_paths),
        "status": entry.status, "attempts": entry.attempts, "last_error": entry.last_error,
        "enqueued_at": entry.enqueued_at,
        "updated_at": entry.updated_at, "source": entry.source,
    }


_QUEUE_FIT: dict[str, dict[str, Any]] = {
    "tries": {"drop": 3, "label": True}, "queued": {"drop": 2, "label": True},
    "why": {"long": True}}


def queue_table(entries: list[Any]) -> Grid:
    table = _table("metarr-sync queue")
    for column in ("player", "item", "title", "status", "tries", "queued", "why"):
        table.add_column(column, justify="right" if column == "tries" else "left",
                         **_QUEUE_FIT.get(column, {}))
    for entry in entries:
        title = entry.item.label() + (" (removed)" if entry.item.removed else "")
        table.add_row(_cell(entry.player), _cell(entry.item.key), _cell(title),
                      _cell(entry.status, QUEUE_STYLE.get(entry.status, "")),
                      _cell(entry.attempts), _cell(_ago(entry.enqueued_at)),
                      _cell(entry.last_error or ""))
    return table


HEALTH_STYLE = {0: "green", 1: "yellow", 2: "red", 3: "magenta"}


def status_json(metrics: Any, health: Any, players: list[dict[str, Any]],
                queue: dict[str, int], runs: list[dict[str, Any]],
                watcher: dict[str, Any] | None = None) -> dict[str, Any]:
    """The design's SyncMetrics fields first; health, players, queue and runs apart."""
    return {
        "total_syncs": metrics.total_syncs,
        "successful_syncs": metrics.successful_syncs,
        "failed_syncs": metrics.failed_syncs,
        "average_sync_time": metrics.average_sync_time,
        "last_sync_timestamp": metrics.last_sync_timestamp,
        "items_per_second": metrics.items_per_second,
        "by_player": {
            name: {"success_rate": m.success_rate,
                   "average_response_time": m.average_response_time,
                   "last_error": m.last_error}
            for name, m in metrics.by_player.items()
        },
        "health": {"status": health.label, "exit_code": health.code,
                   "summary": health.summary, "reasons": health.reasons},
        "players": players,
        "queue": queue,
        "runs": {"unfinished": metrics.unfinished, "by_trigger": metrics.by_trigger,
                 "recent": runs},
        "watcher": watcher,
    }


def print_verdict(health: Any) -> None:
    """The verdict line and any further reasons: plain text when captured (a monitoring
    system reads the first line whole, never wrapped), coloured on a terminal."""
    lines = [(health.summary, HEALTH_STYLE.get(health.code, ""))]
    lines += [(f"  also: {reason}", "") for reason in health.reasons[1:]]
    if not sys.stdout.isatty():
        sys.stdout.write("".join(f"{line}\n" for line, _ in lines))
        return
    from rich.text import Text

    out = console()
    for line, style in lines:
        out.print(Text(line, style=style))


def print_status(health: Any, metrics: Any, players: list[dict[str, Any]],
                 queue: dict[str, int], runs: list[dict[str, Any]],
                 watcher: dict[str, Any] | None = None,
                 alerts: dict[str, Any] | None = None) -> None:
    """Rich tables on a terminal; captured (a monitoring check, `ssh host metarr-sync
    status`, a pipe) the same lines and columns as plain text: what monitoring systems
    show best, and Rich is then never imported."""
    print_verdict(health)
    after = [_runs_line(metrics)]
    if watcher is not None:
        after.append(_watcher_line(watcher))
    if metrics.by_trigger:
        after.append("runs by trigger: " + ", ".join(
            f"{trigger} {count}" for trigger, count in metrics.by_trigger.items()))
    if alerts:
        after += _alerts_lines(alerts)
    tables = [_status_players(players)] + ([_status_runs(runs)] if runs else [])
    if not sys.stdout.isatty():
        import textwrap

        width = captured_width()
        after = [part for line in after for part in textwrap.wrap(
            line, max(width, 40), subsequent_indent="  ", break_on_hyphens=False)]
        text = _plain_table(*tables[0], width=width) + after + \
            [row for table in tables[1:] for row in _plain_table(*table, width=width)]
        sys.stdout.write("\n".join(text) + "\n")
        return
    from rich.text import Text

    out = console()
    out.print(_rich_table(*tables[0]))
    for line in after:
        out.print(Text(line))
    for table in tables[1:]:
        out.print(_rich_table(*table))


def _watcher_line(watcher: dict[str, Any]) -> str:
    """`metarr-sync watch`: alive or not, and its last run."""
    from metarr_sync.stamps import ago

    if watcher["alive"]:
        line = (f"watcher: alive (pid {watcher['pid']}, heartbeat "
                f"{ago(watcher['heartbeat_at'])}, since {watcher['started_at']})")
    elif watcher["stopped_at"]:
        line = (f"watcher: not running (pid {watcher['pid']} stopped "
                f"{ago(watcher['stopped_at'])}: {watcher['status']})")
    else:
        line = (f"watcher: not running (pid {watcher['pid']}: no heartbeat since "
                f"{ago(watcher['heartbeat_at'])}; it ended without stopping)")
    if watcher["last_run_id"] is not None:
        line += (f"; its last run #{watcher['last_run_id']} {watcher['last_run_status']} "
                 f"{ago(watcher['last_run_finished_at'])}".rstrip())
    return line


def _alerts_lines(alerts: dict[str, Any]) -> list[str]:
    """`status`'s lines about alerts: how many URLs, when one last went out, and the
    last alert that could not be sent (secret-free, as the state keeps it)."""
    sent = _ago(alerts["last_sent_at"]) or "never"
    lines = [f"alerts: {alerts['urls']} URL(s); last sent: {sent}"]
    if alerts["last_error"]:
        lines.append(f"last alert error ({_ago(alerts['last_error_at'])}): "
                     f"{alerts['last_error']}")
    return lines


#: A status table: title, (column, right-aligned) pairs, rows of (text, style) cells.
_StatusTable = tuple[str, list[tuple[str, bool]], list[list[tuple[str, str]]]]


def _status_players(players: list[dict[str, Any]]) -> _StatusTable:
    numeric = ("success", "avg response", "pending", "failed", "deferred", "unverified")
    columns = [(c, c in numeric) for c in (
        "player", "state", "last sync", "result", "success", "avg response", "pending",
        "failed", "deferred", "unverified", "last error")]
    rows = []
    for p in players:
        state = "enabled" if p["enabled"] else "disabled"
        if p["disabled_reason"]:
            state = "disabled: auth failed"
        rate = p["success_rate"]
        response = p["average_response_time"]
        counts = p["queue"]
        rows.append([
            (p["name"], ""),
            (state, "red" if p["disabled_reason"] else "" if p["enabled"] else "dim"),
            (_ago(p["last_sync_at"]) or "never", ""),
            (p["last_result"] or "", STATUS_STYLE.get(p["last_result"] or "", "")),
            ("" if rate is None else f"{rate:.0%}", ""),
            ("" if response is None else duration(int(response * 1000)), ""),
            *((str(counts.get(k, 0)), "") for k in ("pending", "failed", "deferred",
                                                   "unverified")),
            (p["last_error"] or "", "")])
    return "players", columns, rows


def _status_runs(runs: list[dict[str, Any]]) -> _StatusTable:
    numeric = ("run", "items", "synced", "failed", "time")
    columns = [(c, c in numeric) for c in (
        "run", "command", "trigger", "started", "result", "items", "synced", "failed",
        "time")]
    rows = []
    for run in runs:
        seconds = run["duration"]
        rows.append([
            (f"#{run['id']}", ""), (run["command"], ""), (run["trigger"], ""),
            (_ago(run["started_at"]), ""),
            (run["status"] or "unfinished", STATUS_STYLE.get(run["status"] or "", "yellow")),
            (str(run["items"]), ""), (str(run["synced"]), ""), (str(run["failed"]), ""),
            ("" if seconds is None else duration(int(seconds * 1000)), "")])
    return "recent runs", columns, rows


def _runs_line(metrics: Any) -> str:
    line = (f"runs: {metrics.total_syncs} finished ({metrics.successful_syncs} synced, "
            f"{metrics.failed_syncs} failed or partial)")
    if metrics.average_sync_time is not None:
        line += f", {metrics.average_sync_time:.1f}s on average"
    if metrics.items_per_second is not None:
        line += f", {metrics.items_per_second:g} items/s"
    if metrics.unfinished:
        line += f"; {metrics.unfinished} interrupted or still running"
    return line


#: How the status tables give way on a narrow terminal (layout.Column), by column name.
_STATUS_FIT: dict[str, dict[str, Any]] = {
    "avg response": {"drop": 1}, "success": {"drop": 2}, "deferred": {"drop": 3},
    "last sync": {"drop": 4}, "trigger": {"drop": 1}, "command": {"drop": 2},
    "time": {"drop": 3}, "last error": {"long": True}}
_STATUS_LABELS = ("success", "avg response", "pending", "failed", "deferred", "unverified",
                  "items", "synced", "time", "last sync")


def _status_grid(title: str, columns: list[tuple[str, bool]],
                 rows: list[list[tuple[str, str]]]) -> Grid:
    table = _table(title)
    for name, right in columns:
        table.add_column(name, justify="right" if right else "left",
                         label=name in _STATUS_LABELS, **_STATUS_FIT.get(name, {}))
    for row in rows:
        table.add_row(*row)
    return table


def _rich_table(title: str, columns: list[tuple[str, bool]],
                rows: list[list[tuple[str, str]]]) -> Grid:
    return _status_grid(title, columns, rows)


def _plain_table(title: str, columns: list[tuple[str, bool]],
                 rows: list[list[tuple[str, str]]], width: int) -> list[str]:
    """The title, then the header and rows in columns two spaces apart (or, narrower
    than they need, one block per row)."""
    return _status_grid(title, columns, rows).plain(width)
