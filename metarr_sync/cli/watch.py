"""`watch`: sync whenever Metarr commits, as a long-running service (see metarr_sync/watch.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from metarr_sync.cli import common
from metarr_sync.cli.options import JsonOpt

if TYPE_CHECKING:
    from metarr_sync.config import Config
    from metarr_sync.engine import RunReport

WATCH_EXIT_HELP = (
    "Exit codes: 0 stopped by SIGTERM or SIGINT (what was confirmed is saved); 2 usage "
    "error; 3 configuration error at the start (a broken configuration sent with SIGHUP is "
    "refused and the old one stays); 4 Metarr's database unreadable at the start; 130/143 "
    "a second SIGINT/SIGTERM quit at once."
)


def register(app: typer.Typer) -> None:
    app.command("watch", epilog=WATCH_EXIT_HELP)(watch_command)


def watch_command(
    ctx: typer.Context,
    json_out: JsonOpt = False,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Print a run's result only when something failed")] = False,
) -> None:
    """Watch Metarr's database and sync the players whenever Metarr commits, until
    stopped (a systemd service or a container).

    Waits for [watch] debounce of quiet after a commit (at most max_delay), then runs
    like `run`, printing each run's result (--json: one JSON document a line). Retries
    what players were left with, and verifies Plex and Jellyfin deliveries once their
    verify_after has passed. Takes the run lock for each run only. SIGHUP reloads the
    configuration; SIGTERM/SIGINT finish the requests under way and exit 0. Under
    systemd (Type=notify) it reports READY, STATUS and WATCHDOG.
    """
    from metarr_sync import render
    from metarr_sync.alerts import require_apprise
    from metarr_sync.config import metarr_database
    from metarr_sync.watch import Watcher, dump_json_line

    def load() -> Config:
        """The config, with secrets; [alerts] without apprise is a configuration error
        (exit 3 at the start; a configuration sent with SIGHUP is refused)."""
        config = common.load(ctx)
        require_apprise(config)
        return config

    config = load()
    metarr_database(config)  # exit 3 now when it is not set

    def show(report: RunReport) -> None:
        if json_out:
            dump_json_line(report)
        elif not quiet or report.exit_code != 0:
            import sys

            render.print_run(report)
            sys.stdout.flush()

    watcher = Watcher(config, common.state_dir(ctx), load=load,
                      open_source=common.open_metarr, show=show, say=common.err)
    raise typer.Exit(watcher.serve())
