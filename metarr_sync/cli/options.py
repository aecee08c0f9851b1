"""Typer option types the commands share, defined once.

Apart from cli/common.py because that module must stay free of Typer: the plain forms of
`status` import it and run without Typer (see cli/__init__.py).
"""

from __future__ import annotations

from typing import Annotated

import typer

JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout")]
