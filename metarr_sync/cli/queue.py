"""`queue`: what waits for which player and why; add, retry and clear work."""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from metarr_sync.cli import common, complete, options
from metarr_sync.cli.options import (
    EpisodeOpt,
    ItemPathsArg,
    JsonOpt,
    MovieOpt,
    PlayerOpt,
    SeriesOpt,
)

if TYPE_CHECKING:  # the state is imported when a command runs, not when the app is built
    from metarr_sync.state import QueueStatus

QUEUE_EXIT_HELP = (
    "Exit codes: 0 done (or nothing to do); 1 queue clear was not confirmed; 2 bad command "
    "line (unknown player, unknown item id, relative path, no terminal to confirm on); "
    "3 configuration or state unreadable; 4 Metarr's database unreadable."
)

app = options.command_group("The work waiting for each player: list, add, retry, clear.")

ITEM_RE = re.compile(r"^(movie|series|episode):(\d+)$")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="queue")


def _statuses() -> tuple[QueueStatus, ...]:
    from metarr_sync.state import QUEUE_STATUSES

    return QUEUE_STATUSES


@app.command("list", epilog=QUEUE_EXIT_HELP)
def list_command(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(
        "--status", metavar="STATUS",
        help="Only entries in this state: pending, deferred (someone was "
        "watching), failed (needs a person), unverified (sent, not seen on the player), "
        "sent (waiting to be verified) or held (a removal not sent: see its cause)",
        autocompletion=complete.queue_statuses)] = None,
    player: PlayerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """What waits for each player, why (the last error) and tries so far."""
    from metarr_sync import render
    from metarr_sync.state import QueueStatus

    if status is not None and status not in _statuses():
        raise common.UsageError(f"--status must be one of {', '.join(_statuses())}, not {status!r}")
    config = common.load(ctx, secrets=False)
    names = [p.name for p in common.selected(config, player)]
    state = common.open_state(ctx)
    entries = []
    if state is not None:
        try:
            entries = [e for e in state.queue(status=QueueStatus(status) if status else None)
                       if e.player in names]
        finally:
            state.close()
    if json_out:
        counts: dict[str, dict[str, int]] = {name: {} for name in names}
        for entry in entries:
            counts[entry.player][entry.status] = counts[entry.player].get(entry.status, 0) + 1
        common.dump_json({"entries": [render.queue_entry_json(e) for e in entries],
                          "counts": counts})
        return
    if not entries:
        common.say("Nothing is queued" + (f" with status {status}" if status else "")
                + (f" for {', '.join(names)}" if player else "") + ".")
        return
    render.console().print(render.queue_table(entries))
    if any(e.status == QueueStatus.FAILED for e in entries):
        # Everything else goes at the next run; a failed item waits for a person.
        common.say("Failed items are sent again only after `metarr-sync queue retry`.")


@app.command("add", epilog=QUEUE_EXIT_HELP)
def add_command(
    ctx: typer.Context,
    paths: ItemPathsArg = None,
    movie: MovieOpt = None,
    episode: EpisodeOpt = None,
    series: SeriesOpt = None,
    player: PlayerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Queue items for the next `run`, without contacting any player (fast, for scripts)."""
    from metarr_sync.libraries import served_by

    if not (paths or movie or episode or series):
        raise common.UsageError(
            "name what to queue: --movie ID, --episode ID, --series ID or a path")
    config = common.load(ctx, secrets=False)
    targets = [p.name for p in common.selected(config, player)]
    if not targets:
        raise common.UsageError(f"no players configured in {config.path}: nothing to queue for")
    if config.metarr.password:  # PostgreSQL: the only secret queueing needs
        try:
            config.metarr.password_value = config.metarr.password.resolve()
        except ValueError as exc:
            raise common.ConfigError.one(f"{config.path}: metarr.password: {exc}") from None
    source = common.open_metarr(config)
    try:
        items = source.named_items(paths or [], movie or [], episode or [], series or [])
        served = served_by(config, source)
    finally:
        source.close()
    state = common.create_state(ctx)
    try:
        # A player is queued only the items of the libraries it serves.
        queued = state.enqueue(items, targets, source="queue", served=served.ids)
    finally:
        state.close()
    if json_out:
        common.dump_json({"players": targets, "entries": queued, "items": [
            {"item": i.key, "title": i.label(), "path": i.path, "removed": i.removed}
            for i in items]})
        return
    common.say(f"Queued {len(items)} item(s) for {', '.join(targets)}: the next "
            "`metarr-sync run` delivers them.")


@app.command("retry", epilog=QUEUE_EXIT_HELP)
def retry_command(
    ctx: typer.Context,
    items: Annotated[list[str] | None, typer.Argument(
        metavar="ITEM", help="Items as queue list shows them (movie:42, episode:7); "
        "default: every failed item")] = None,
    player: PlayerOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Send failed items (and unverified ones given up on) again at the next run."""
    from metarr_sync.state import QueueStatus

    for item in items or []:
        if not ITEM_RE.match(item):
            raise common.UsageError(f"{item!r} is not an item like movie:42, series:3 or episode:7 "
                        "(see `metarr-sync queue list`)")
    config = common.load(ctx, secrets=False)
    names = [p.name for p in common.selected(config, player)] if player else None
    state = common.open_state(ctx)
    if state is None:
        if items:
            raise common.UsageError(f"{items[0]} is not in the queue (no run has happened yet)")
        moved = 0
    else:
        try:
            retryable = [e for e in state.queue()
                         if e.status in (QueueStatus.FAILED, QueueStatus.UNVERIFIED)
                         and (names is None or e.player in names)]
            keys = {e.item.key for e in retryable}
            for item in items or []:
                if item not in keys:
                    raise common.UsageError(f"{item} is not failed or unverified in the queue"
                                + (f" of {', '.join(names)}" if names else "")
                                + " (see `metarr-sync queue list`)")
            moved = 0
            for name in names if names else [None]:  # None: every player
                moved += state.retry_failed(name, items or None)
        finally:
            state.close()
    if json_out:
        common.dump_json({"retried": moved})
        return
    common.say(f"{moved} item(s) will be sent again at the next run." if moved
            else "Nothing to retry: no failed or unverified items.")


@app.command("clear", epilog=QUEUE_EXIT_HELP)
def clear_command(
    ctx: typer.Context,
    player: PlayerOpt = None,
    failed: Annotated[bool, typer.Option(
        "--failed", help="Only failed entries")] = False,
    held: Annotated[bool, typer.Option(
        "--held", help="Only held removals (the player keeps those items)")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")
                   ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Drop queued work. Cleared items are not sent unless they change again in Metarr or
    are named with `sync` / `queue add`. Asks first unless --yes."""
    from metarr_sync.state import QueueStatus

    if failed and held:
        raise common.UsageError("--failed and --held exclude each other: clear one kind at a time")
    config = common.load(ctx, secrets=False)
    names = [p.name for p in common.selected(config, player)] if player else None
    status = QueueStatus.FAILED if failed else QueueStatus.HELD if held else None
    state = common.open_state(ctx)
    if state is None:
        count = 0
    else:
        try:
            entries = [e for e in state.queue(status=status)
                       if names is None or e.player in names]
            count = len(entries)
            if count and not yes:
                _confirm(count, status, names)
            removed = 0
            for name in names if names else [None]:  # None: every player
                removed += state.clear_queue(name, status)
            count = removed
        finally:
            state.close()
    if json_out:
        common.dump_json({"cleared": count})
        return
    common.say(f"Cleared {count} queued item(s)." if count else "Nothing to clear.")


def _confirm(count: int, status: str | None, names: list[str] | None) -> None:
    what = f"{count} {status + ' ' if status else ''}queue entr{'y' if count == 1 else 'ies'}"
    who = f" of {', '.join(names)}" if names else " of every player"
    if not sys.stdin.isatty():
        raise common.UsageError(
            f"queue clear would drop {what}{who}; there is no terminal to confirm "
            "on: add --yes")
    if not typer.confirm(f"Drop {what}{who}?", default=False, err=True):
        common.err("metarr-sync: nothing was cleared")
        raise typer.Exit(common.EXIT_FAILED)
