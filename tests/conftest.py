from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))

from support.ci import under_ci  # noqa: E402
from support.kodi_server import VERSIONS, KodiServer, missing  # noqa: E402
from support.metarr_factory import MetarrDB  # noqa: E402
from support.metarr_pg_factory import PASSWORD_ENV as PG_PASSWORD_ENV  # noqa: E402
from support.metarr_pg_factory import PgMetarrDB  # noqa: E402
from support.postgres import (  # noqa: E402, F401 - the fixtures are used by name
    OWNER_PASSWORD,
    pg_database,
    postgres_server,
)


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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def metarr_db(request: pytest.FixtureRequest, cli: Cli, tmp_path: Path) -> Iterator[MetarrDB]:
    """Metarr's database on each backend Metarr uses, for the end-to-end scenarios that
    must behave the same on both: SQLite, then PostgreSQL (the session's real server,
    tests/support/postgres.py; skipped with the reason when it is not installed, failed
    under CI). `metarr_db.config_table` is the [metarr] config table that reads it.

    On PostgreSQL nothing of the developer's own libpq set-up may help or hurt the `cli`:
    no PG* variables, no ~/.pgpass; the password comes from the config (an env secret).
    """
    if request.param == "sqlite":
        db = MetarrDB(tmp_path / "metarr.sqlite")
        yield db
        db.close()
        return
    server = request.getfixturevalue("postgres_server")
    name = request.getfixturevalue("pg_database")
    for variable in [k for k in cli.env if k.startswith("PG")]:
        del cli.env[variable]
    cli.env["PGPASSFILE"] = str(tmp_path / "no-pgpass")
    cli.env[PG_PASSWORD_ENV] = OWNER_PASSWORD
    db = PgMetarrDB(server, name)
    yield db
    db.close()


# --- real Kodi (tests/support/kodi_server.py) ----------------------------------------------


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Whatever file a real-Kodi test is in, `-m kodi` / `-m "not kodi"` selects it."""
    for item in items:
        if "kodi_version" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kodi)


@pytest.fixture(scope="session", params=VERSIONS, ids=[f"kodi{v}" for v in VERSIONS])
def kodi_version(request: pytest.FixtureRequest) -> str:
    """Every test using a real Kodi runs once per version: 20.1 (Debian bookworm's package
    on the host) and 21.2 (Debian trixie's, chrooted). A version that cannot run here is
    skipped with the reason; under CI (CI=true) it fails with it: .ci/run prepares both."""
    reason = missing(request.param)
    if reason is not None:
        if under_ci():
            pytest.fail(f"Kodi {request.param} cannot run under CI: {reason}", pytrace=False)
        pytest.skip(f"Kodi {request.param}: {reason}")
    return request.param


@pytest.fixture(scope="session")
def kodi_server(kodi_version: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[KodiServer]:
    """One Kodi per version for the whole session (~8 s to start); tests share its library."""
    server = KodiServer(tmp_path_factory.mktemp(f"kodi{kodi_version}"), kodi_version)
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def kodi(kodi_server: KodiServer) -> KodiServer:
    if not kodi_server.running:  # a test that stopped it and failed before restarting
        kodi_server.start()
    return kodi_server


@pytest.fixture
def kodi_factory(kodi_version: str, tmp_path: Path) -> Iterator[Callable[..., KodiServer]]:
    """Start more Kodis of this test's version, each with its own profile and display; all
    are stopped when the test ends. `kodi_factory(media=...)` gives several Kodis the same
    movies/ and tv/ folders (two boxes over one library):

        first = kodi_factory()
        second = kodi_factory(media=first.media)
    """
    started: list[KodiServer] = []

    def start(media: Path | None = None) -> KodiServer:
        server = KodiServer(tmp_path / f"kodi{kodi_version}-{len(started) + 1}",
                            kodi_version, media=media)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()
