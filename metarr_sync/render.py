"""Rich tables for people and JSON documents for scripts."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from metarr_sync.engine import PlayerResult, RunReport

STATUS_STYLE = {"synced": "green", "partial": "yellow", "failed": "red", "deferred": "cyan",
                "skipped": "dim", "disabled": "dim"}


def console() -> Console:
    """stdout console: colour only on a terminal, never with NO_COLOR (Rich honours it)."""
    if sys.stdout.isatty():
        return Console(highlight=False)
    width = int(os.environ.get("COLUMNS", "160") or 160)
    return Console(highlight=False, width=width, color_system=None, force_terminal=False)


def duration(ms: int) -> str:
    return f"{ms / 1000:.1f}s" if ms >= 100 else f"{ms}ms"


def run_table(report: RunReport) -> Table:
    title = f"metarr-sync {report.command}" + (" (dry run)" if report.dry_run else "")
    if report.run_id is not None:
        title += f" #{report.run_id}"
    table = Table(title=title, title_justify="left")
    for column in ("player", "type", "result", "items", "synced", "failed", "verified",
                   "requests", "time", "error"):
        table.add_column(column, justify="right" if column in (
            "items", "synced", "failed", "verified", "requests", "time") else "left")
    for p in report.players:
        style = STATUS_STYLE.get(p.status, "")
        table.add_row(p.name, p.type, f"[{style}]{p.status}[/]" if style else p.status,
                      str(p.items), str(p.synced), str(p.failed), str(p.verified),
                      str(p.requests), duration(p.duration_ms), p.error or "")
    return table


def player_json(p: PlayerResult, dry_run: bool) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": p.name, "type": p.type, "status": p.status, "items": p.items,
        "synced": p.synced, "failed": p.failed, "deferred": p.deferred,
        "verified": p.verified, "requests": p.requests, "duration_ms": p.duration_ms,
        "error": p.error, "error_kind": p.error_kind,
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
        out.print("No players selected: add one with `metarr-sync players add`.")
        return
    out.print(run_table(report))
