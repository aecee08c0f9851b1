"""`run` (everything Metarr changed) and `sync` (named items, now)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metarr_sync.cli import common, complete
from metarr_sync.cli.options import (
    EpisodeOpt,
    ItemPathsArg,
    JsonOpt,
    MovieOpt,
    PlayerOpt,
    SeriesOpt,
)

if TYPE_CHECKING:
    from metarr_sync.config import Config
    from metarr_sync.engine import Request
    from metarr_sync.metarr import Item, MetarrSource

QuietOpt = Annotated[bool, typer.Option(
    "--quiet", "-q", help="Print nothing unless something failed (for cron)")]
DryRunOpt = Annotated[bool, typer.Option(
    "--dry-run", "-n", help="Print the exact commands each player would get; change nothing")]
GroupOpt = Annotated[list[str] | None, typer.Option(
    "--group", "-g", help="Only the players of this group (repeatable)",
    autocompletion=complete.group_names)]
WaitOpt = Annotated[float, typer.Option(
    "--wait", min=0, help="Seconds to wait for another run to finish (default: exit 5)")]
TriggerOpt = Annotated[str | None, typer.Option(
    "--trigger", help="What started this run: manual, scheduled, post-publish or bulk "
    "[default: manual for run; post-publish for sync, bulk with --library/--since/--all]",
    autocompletion=complete.triggers)]
BULK_CONFIRM = 1000  # bulk syncs above this many items ask first


NoVerifyOpt = Annotated[bool, typer.Option(
    "--no-verify", help="Do not check on the players that deliveries landed")]
AllowRemovalsOpt = Annotated[int, typer.Option(
    "--allow-removals", min=0, metavar="N",
    help="Send up to N removals per player that max_removals / max_removal_percent would "
    "hold (only media gone from disk is ever removed)")]


def register(app: typer.Typer) -> None:
    app.command("run", epilog=common.EXIT_CODES_HELP)(run_command)
    app.command("sync", epilog=common.EXIT_CODES_HELP)(sync_command)
    app.command("verify", epilog=common.EXIT_CODES_HELP)(verify_command)


def run_command(
    ctx: typer.Context,
    dry_run: DryRunOpt = False,
    player: PlayerOpt = None,
    group: GroupOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = 0.0,
    trigger: TriggerOpt = None,
    no_verify: NoVerifyOpt = False,
    allow_removals: AllowRemovalsOpt = 0,
) -> None:
    """Sync everything Metarr changed since the last run to every enabled player."""
    from metarr_sync import engine

    trigger = _check_trigger(trigger or "manual")
    config = _load(ctx)
    _check_names(config, player, group)
    request = engine.Request(trigger=trigger, command="run", dry_run=dry_run,
                             players=player or (), groups=group or (), wait=wait,
                             verify=not no_verify, allow_removals=allow_removals)
    _execute(ctx, config, request, json_out, quiet)


def verify_command(
    ctx: typer.Context,
    player: PlayerOpt = None,
    group: GroupOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = 0.0,
) -> None:
    """Check on the players that earlier deliveries really landed (sends no updates)."""
    from metarr_sync import engine

    config = _load(ctx)
    _check_names(config, player, group)
    request = engine.Request(trigger="manual", command="verify", players=player or (),
                             groups=group or (), wait=wait, verify_only=True)
    _execute(ctx, config, request, json_out, quiet)


def sync_command(
    ctx: typer.Context,
    paths: ItemPathsArg = None,
    movie: MovieOpt = None,
    episode: EpisodeOpt = None,
    series: SeriesOpt = None,
    library: Annotated[list[str] | None, typer.Option(
        "--library", help="Bulk: every item of this Metarr library (repeatable)")] = None,
    since: Annotated[str | None, typer.Option(
        "--since", help="Bulk: items changed since a date (2026-11-01) or age (7d, 36h)")
    ] = None,
    all_items: Annotated[bool, typer.Option(
        "--all", help="Bulk: every item Metarr has")] = False,
    yes: Annotated[bool, typer.Option(
        "--yes", "-y", help=f"Do not ask before a bulk sync of over {BULK_CONFIRM} items")
    ] = False,
    dry_run: DryRunOpt = False,
    player: PlayerOpt = None,
    group: GroupOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    wait: WaitOpt = 0.0,
    trigger: TriggerOpt = None,
    no_verify: NoVerifyOpt = False,
) -> None:
    """Sync the named items now, whatever was delivered before (from your own scripts).

    With [sync] auto_sync = false the items are only queued for the next run.
    """
    from metarr_sync import engine, stamps
    from metarr_sync.libraries import served_by

    bulk = bool(library or since or all_items)
    trigger = _check_trigger(trigger or ("bulk" if bulk else "post-publish"))
    if not (paths or movie or episode or series or bulk):
        raise common.UsageError("name what to sync: --movie ID, --episode ID, --series ID, a path, "
                    "or --library NAME / --since DATE / --all")
    try:
        since_stamp = stamps.parse_since(since) if since else None
    except ValueError as exc:
        raise common.UsageError(str(exc)) from None
    config = _load(ctx)
    _check_names(config, player, group)
    source = common.open_metarr(config)
    try:
        items = source.named_items(paths or [], movie or [], episode or [], series or [])
        if bulk:
            items += _bulk(source, library or [], since_stamp)
        served = served_by(config, source)
    finally:
        source.close()
    if bulk and len(items) > BULK_CONFIRM and not yes and not dry_run:
        _confirm_bulk(len(items))
    if not config.sync.auto_sync and not dry_run:
        count = engine.queue_only(config, common.state_dir(ctx), items, source="sync",
                                  served=served)
        message = (f"auto_sync is off ([sync] auto_sync = false): queued {len(items)} "
                   f"item(s) for the next `metarr-sync run`, no player contacted")
        if json_out:
            common.dump_json({"command": "sync", "trigger": trigger, "queued": len(items),
                              "queue_entries": count, "message": message})
        elif not quiet:
            print(message)
        raise typer.Exit(common.EXIT_OK)
    request = engine.Request(trigger=trigger, command="sync", dry_run=dry_run,
                             players=player or (), groups=group or (), only=items, wait=wait,
                             verify=not no_verify)
    _execute(ctx, config, request, json_out, quiet)


def _load(ctx: typer.Context) -> Config:
    """The config, with secrets; exit 3 when [alerts] needs apprise and it is missing."""
    from metarr_sync.alerts import require_apprise

    config = common.load(ctx)
    require_apprise(config)
    return config


def _check_trigger(trigger: str) -> str:
    from metarr_sync.engine import TRIGGERS

    if trigger not in TRIGGERS:
        raise common.UsageError(f"--trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}")
    return trigger


def _bulk(source: MetarrSource, libraries: list[str], since: str | None) -> list[Item]:
    from metarr_sync import engine

    ids = None
    if libraries:
        known = {lib.name: lib.id for lib in source.libraries()}
        for name in libraries:
            if name not in known:
                raise common.UsageError(f"no Metarr library named {name!r} (libraries: "
                                        f"{', '.join(known) or 'none'})")
        ids = [known[name] for name in libraries]
    return engine.bulk_items(source, ids, since)


def _confirm_bulk(count: int) -> None:
    import sys

    if not sys.stdin.isatty():
        raise common.UsageError(
            f"this would sync {count} items to every player; add --yes to confirm "
            "(no terminal to ask on)")
    if not typer.confirm(f"Sync {count} items to every player?", default=False, err=True):
        raise common.UsageError("nothing was synced")


def _check_names(config: Config, players: list[str] | None, groups: list[str] | None) -> None:
    common.selected(config, players)
    for name in groups or []:
        if name not in config.groups:
            known = ", ".join(config.groups) or "none configured"
            raise common.UsageError(f"unknown group {name!r} (groups: {known})")


def _execute(ctx: typer.Context, config: Config, request: Request, json_out: bool,
             quiet: bool) -> None:
    from metarr_sync import engine, render

    source = common.open_metarr(config)
    # Progress bars for a person at a terminal; never with --json, --quiet (cron) or -v
    # (log lines on stderr would tear through the bars).
    progress = (None if json_out or quiet or common.globals_of(ctx).verbose
                else render.run_progress())
    try:
        report = engine.run(config, source, common.state_dir(ctx), request,
                            progress=progress)
    finally:
        if progress is not None:
            progress.close()
        source.close()
    if json_out:
        common.dump_json(render.run_json(report))
    elif not quiet or report.exit_code != 0:
        render.print_run(report)
    if report.alerts is not None:
        for failure in report.alerts.failures:
            common.err(f"metarr-sync: warning: {failure}; the run's result is unchanged "
                       "(`metarr-sync status` shows the last alert error)")
    if report.interrupted is not None:
        from metarr_sync.players.base import signal_name

        common.err(f"metarr-sync: stopped by {signal_name(report.interrupted)}; everything "
                   "confirmed so far is saved, the rest stays queued for the next run")
    raise typer.Exit(report.exit_code)
