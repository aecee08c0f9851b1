"""The `metarr-sync` command: a Typer app with one module per command group."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from metarr_sync import __version__
from metarr_sync.cli import common, config_cmd, mappings, players, queue, run, status

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
        common.fail(f"--log-file {log_file}: cannot be written: {exc.strerror}",
                    common.EXIT_USAGE)


run.register(app)
players.register(app)
mappings.register(app)
queue.register(app)
status.register(app)
config_cmd.register(app)


class _Terminated(SystemExit):
    """SIGTERM outside the player phase (or a second one): stop now."""


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT/SIGTERM: while players are synced, ask them to stop (the run then ends with
    its results recorded, exit 130/143); otherwise, or on a second signal, stop now."""
    from metarr_sync.players.base import STOP, signal_name

    if STOP.request(signum):
        common.err(f"metarr-sync: {signal_name(signum)}: stopping after the requests under "
                   "way; send it again to quit at once")
        return
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise _Terminated(common.EXIT_SIGTERM)


def _exit(code: int) -> NoReturn:
    """Exit with `code`, also when player threads abandoned by a stop still wait for an
    answer: their work is queued already, and a stop must not wait for their timeouts."""
    import threading

    others = [t for t in threading.enumerate()
              if t is not threading.main_thread() and t.is_alive() and not t.daemon]
    if others:
        import logging

        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main() -> None:
    """Entry point: no traceback ever reaches the user."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        code = app(standalone_mode=False)
    except (typer.Abort, KeyboardInterrupt):
        common.err("metarr-sync: interrupted; everything confirmed so far is saved")
        _exit(common.EXIT_SIGINT)
    except _Terminated:
        common.err("metarr-sync: terminated; everything confirmed so far is saved")
        _exit(common.EXIT_SIGTERM)
    except typer.TyperException as exc:
        # Usage errors (exit 2) and other command-line errors: Click's own message.
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", common.EXIT_USAGE))
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        from metarr_sync.logs import redact

        common.err(f"metarr-sync: internal error: {redact(repr(exc))} "
                   "(this is a bug; please report it with the output of -vv)")
        _exit(common.EXIT_INTERNAL)
    _exit(code if isinstance(code, int) else 0)
