from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

from support.metarr_factory import MetarrDB  # noqa: E402


class Cli:
    """The installed `metarr-sync` run as a subprocess, as cron would run it."""

    def __init__(self, root: Path):
        exe = shutil.which("metarr-sync")
        assert exe, "metarr-sync is not installed: pip install -e '.[test]'"
        self.exe = exe
        self.root = root
        self.config = root / "config.toml"
        self.state_dir = root / "state"
        self.recorder = root / "recorder"
        self.recorder.mkdir(exist_ok=True)
        self.env = {
            k: v for k, v in os.environ.items()
            if not k.startswith(("METARR_", "DATABASE_URL", "DB_TYPE"))
        }
        self.env.update({
            "METARR_SYNC_CONFIG": str(self.config),
            "METARR_SYNC_STATE_DIR": str(self.state_dir),
            "RECORDER_DIR": str(self.recorder),
            "METARR_SYNC_PLUGINS": "recorder=support.recorder_player:RecorderPlayer",
            "PYTHONPATH": str(TESTS),
            "HOME": str(root / "home"),
            "COLUMNS": "200",
        })

    def __call__(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120,
                 input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.exe, *args], capture_output=True, text=True,
                              env={**self.env, **(env or {})}, timeout=timeout, input=input)

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen([self.exe, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                env={**self.env, **(env or {})})

    def write_config(self, text: str) -> None:
        self.config.write_text(text)
        self.config.chmod(0o600)

    def calls(self, player: str) -> list[dict]:
        log = self.recorder / f"{player}.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def sent(self, player: str) -> list[dict]:
        """Every target the player received, in order, across runs so far."""
        return [t for c in self.calls(player) if c["op"] == "apply" for t in c["targets"]]

    def reset_log(self, player: str) -> None:
        (self.recorder / f"{player}.jsonl").unlink(missing_ok=True)

    def behave(self, player: str, what: str, value: str = "") -> None:
        (self.recorder / f"{player}.{what}").write_text(value)

    def heal(self, player: str, what: str) -> None:
        (self.recorder / f"{player}.{what}").unlink(missing_ok=True)

    def state(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.state_dir / "state.sqlite")
        conn.row_factory = sqlite3.Row
        return conn


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def metarr(tmp_path: Path) -> MetarrDB:
    db = MetarrDB(tmp_path / "metarr.sqlite")
    yield db
    db.close()
