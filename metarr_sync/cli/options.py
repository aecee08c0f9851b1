"""The Typer pieces the commands share, each defined once: option and argument types, and
the app of a command group.

Apart from cli/common.py because that module must stay free of Typer: the plain forms of
`status` import it and run without Typer (see cli/__init__.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

from metarr_sync.cli import complete

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")]
PlayerOpt = Annotated[list[str] | None, typer.Option(
    "--player", "-p", metavar="NAME", help="Only this player (repeatable)",
    autocompletion=complete.player_names)]
PlayerArg = Annotated[str, typer.Argument(help="The player",
                                          autocompletion=complete.player_names)]

# What `sync` and `queue add` name: Metarr's items by id or by path.
ItemPathsArg = Annotated[list[str] | None, typer.Argument(
    metavar="PATH", help="Metarr-side paths: items at or below each path")]
MovieOpt = Annotated[list[int] | None, typer.Option(
    "--movie", metavar="ID", help="Movie id (repeatable)")]
EpisodeOpt = Annotated[list[int] | None, typer.Option(
    "--episode", metavar="ID", help="Episode id (repeatable)")]
SeriesOpt = Annotated[list[int] | None, typer.Option(
    "--series", metavar="ID", help="Series id, with its episodes (repeatable)")]


def command_group(help: str) -> typer.Typer:
    """The app of a command group (`players`, `queue`, …): bare, it shows its help."""
    return typer.Typer(help=help, no_args_is_help=True, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})
