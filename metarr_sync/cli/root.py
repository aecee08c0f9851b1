"""The Typer app: the global options and one module per command group.

Imported by cli/__init__.py's main() for every command line except the plain forms of
`status` (those run without Typer, see cli/status.py), and by whoever asks for
`metarr_sync.cli.app` (the completion and man page tests walk it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from metarr_sync.cli import (
    alerts,
    common,
    config_cmd,
    mappings,
    players,
    queue,
    run,
    status,
    watch,
)
from metarr_sync.version import __version__

app = typer.Typer(
    name="metarr-sync",
    help="Tell Kodi, Jellyfin/Emby and Plex exactly what Metarr changed.\n\n"
    + common.EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"metarr-sync {__version__}")
        raise typer.Exit(0)


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", envvar="METARR_SYNC_CONFIG",
        help="Configuration file [default: ~/.config/metarr-sync/config.toml]")] = None,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", envvar="METARR_SYNC_STATE_DIR",
        help="Directory of the state database and lock "
        "[default: ~/.local/state/metarr-sync]")] = None,
    verbose: Annotated[int, typer.Option(
        "--verbose", "-v", count=True, help="Log to stderr (-vv: every request)")] = 0,
    log_file: Annotated[Path | None, typer.Option(
        "--log-file", help="Also write the log to this file")] = None,
    version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True, help="Show the version and exit")] = False,
) -> None:
    obj = common.globals_of(ctx)
    obj.config_path, obj.state_dir, obj.verbose = config, state_dir, verbose
    from metarr_sync import logs

    # Always: without -v/--log-file this silences logging, else Python's last-resort
    # handler would print warnings and tracebacks (unredacted) to stderr.
    try:
        logs.setup(verbose, log_file)
    except OSError as exc:
        raise common.UsageError(
            f"--log-file {log_file}: cannot be written: {exc.strerror}") from None


run.register(app)
players.register(app)
mappings.register(app)
queue.register(app)
status.register(app)
watch.register(app)
config_cmd.register(app)
alerts.register(app)


def invoke() -> int:
    """Run the command line of sys.argv through Typer; its exit code.

    Commands raise; an error of the table in common._exit_codes is shown and ends the
    command with its code. Anything else is a bug, shown by main() as an internal error.
    """
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        # Click turns Ctrl-C into Abort: the same message and exit code as any interrupt.
        raise KeyboardInterrupt from None
    except typer.TyperException as exc:
        # Usage errors (exit 2) and other command-line errors: Click's own message. (The
        # ones raised are the ClickExceptions of the Click Typer bundles, which have show().)
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", common.EXIT_USAGE))
    except Exception as exc:  # noqa: BLE001 - looked up in the one table, else re-raised
        known = common.report_error(exc)
        if known is None:
            raise
        return known
    return code if isinstance(code, int) else 0
