"""Before/after snapshots for "a refused command changed nothing" checks, and a directory
that cannot be written (even by root, through the immutable attribute)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def state_rows(state_dir: Path) -> dict[str, list[tuple]] | None:
    """Every row of every table of the state database (None: there is none)."""
    path = state_dir / "state.sqlite"
    if not path.exists():
        return None
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr)
                for t in tables}
    finally:
        conn.close()


def snapshot(config: Path, state_dir: Path) -> tuple[bytes | None, object]:
    """The config file's bytes (None: missing) and the state's rows."""
    return (config.read_bytes() if config.exists() else None, state_rows(state_dir))


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """`directory` refuses new files for the duration (chmod, or chattr +i as root)."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(0o755)
        return
    chattr = shutil.which("chattr")
    done = subprocess.run([chattr, "+i", str(directory)], capture_output=True) if chattr \
        else None
    if done is None or done.returncode != 0:
        why = done.stderr.decode().strip() if done else "no chattr command"
        pytest.skip("running as root and `chattr +i` is not available here, so no "
                    f"directory can be made unwritable: {why}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(directory)], check=True)
