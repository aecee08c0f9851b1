"""Logging to stderr or a file, with every known secret redacted before it is written."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from pathlib import Path

_SECRETS: set[str] = set()


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """`text` with every known secret (and `extra` ones) masked, and key=value tokens."""
    known = _SECRETS.union(s for s in extra if s and len(s) >= 3)
    for secret in sorted(known, key=len, reverse=True):
        text = text.replace(secret, "••••")
    return re.sub(r"(?i)(x-plex-token|api_key|token|password)=[^&\s\"']+", r"\1=••••", text)


def add_secrets(values: Iterable[str]) -> None:
    _SECRETS.update(v for v in values if v and len(v) >= 3)


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def setup(verbose: int, log_file: Path | None = None) -> None:
    """-v: info, -vv: debug (each HTTP request). Nothing is logged without either flag."""
    root = logging.getLogger("metarr_sync")
    root.handlers.clear()
    root.propagate = False
    if not verbose and not log_file:
        root.addHandler(logging.NullHandler())
        root.setLevel(logging.CRITICAL + 1)
        return
    level = logging.DEBUG if verbose >= 2 else logging.INFO
    root.setLevel(level)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = []
    if verbose:
        handlers.append(logging.StreamHandler())
    if log_file:
        handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
    for handler in handlers:
        handler.setFormatter(fmt)
        handler.addFilter(_Redacting())
        root.addHandler(handler)
