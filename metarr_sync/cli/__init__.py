"""The `metarr-sync` command: a Typer app (cli/root.py) with one module per command group.

This package's own import stays light (no Typer, no Rich): main() runs the plain forms of
`status`, which monitoring systems run every minute, without building the Typer app, and
hands every other command line to Typer (cli/root.py), so help, completion, usage errors
and their exit codes come from one place.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any, NoReturn

from metarr_sync.cli import common, status


def __getattr__(name: str) -> Any:
    """`from metarr_sync.cli import app`: the Typer app, built on first use."""
    if name == "app":
        from metarr_sync.cli import root

        return root.app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _dispatch(args: list[str]) -> int:
    """The exit code of the command line `args`: the plain forms of `status` (see
    status.plain_args) call the same function as its Typer command, without Typer;
    anything else goes to Typer untouched."""
    plain = status.plain_args(args, os.environ)
    if plain is not None:
        return status.status(*plain)
    from metarr_sync.cli.root import invoke

    return invoke()


def main() -> None:
    """Entry point: no traceback ever reaches the user."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        code = _dispatch(sys.argv[1:])
    except KeyboardInterrupt:
        common.err("metarr-sync: interrupted; everything confirmed so far is saved")
        _exit(common.EXIT_SIGINT)
    except _Terminated:
        common.err("metarr-sync: terminated; everything confirmed so far is saved")
        _exit(common.EXIT_SIGTERM)
    except SystemExit:
        raise
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        from metarr_sync.logs import redact

        common.err(f"metarr-sync: internal error: {redact(repr(exc))} "
                   "(this is a bug; please report it with the output of -vv)")
        _exit(common.EXIT_INTERNAL)
    _exit(code)
