"""A real, throw-away PostgreSQL server for tests, from Debian's `postgresql` package.

One server per test session: initdb into a temp folder, started with pg_ctl, listening only
on 127.0.0.1 (a free port) and on a unix socket inside that folder, password (SCRAM) auth
everywhere so wrong credentials really fail. PostgreSQL refuses to run as root, so under
root the server runs as the `postgres` user the package creates (via runuser).

The server is deliberately configured with a non-UTC TimeZone and a non-ISO DateStyle:
metarr-sync must produce the same stamps whatever the server's defaults are.

Tests are skipped, with the reason shown by `-ra`, only when the server binaries or the
psycopg driver are missing, and not even then under CI (CI=true: .ci/run installs them),
where they fail with the reason; a server that is installed but fails to start is an
error.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from support.ci import under_ci

SUPERUSER = "postgres"
SUPERUSER_PASSWORD = "pg-admin-secret-1"
OWNER = "metarr"  # the role Metarr itself would use (owns the tables)
OWNER_PASSWORD = "metarr-owner-S3cret!"  # deliberately has URL-special characters

SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",  # a throw-away server: speed over durability
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "max_connections": "40",
    "shared_buffers": "16MB",
    # Not UTC and not ISO on purpose: the tool must set its own session up.
    "timezone": "'Pacific/Auckland'",
    "datestyle": "'SQL, DMY'",
}


def find_bindir() -> Path | None:
    """Newest /usr/lib/postgresql/<version>/bin holding initdb, pg_ctl and postgres."""
    candidates = []
    for initdb in glob.glob("/usr/lib/postgresql/*/bin/initdb"):
        bindir = Path(initdb).parent
        if (bindir / "pg_ctl").exists() and (bindir / "postgres").exists():
            with contextlib.suppress(ValueError):
                candidates.append((float(bindir.parent.name), bindir))
    return max(candidates)[1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """A running server; `url()` names a database on it, `admin()` connects as superuser."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="metarr-sync-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.run_as: str | None = None
        self._names = itertools.count(1)
        if os.geteuid() == 0:
            # PostgreSQL will not run as root: hand the folder to the package's user.
            try:
                account = pwd.getpwnam("postgres")
            except KeyError:
                account = pwd.getpwnam("nobody")
            self.run_as = account.pw_name
            os.chown(self.root, account.pw_uid, account.pw_gid)
        self.root.chmod(0o700)

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(a) for a in args]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "LC_ALL": "C", "TZ": "UTC"})

    def start(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(SUPERUSER_PASSWORD + "\n")
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            os.chown(pwfile, account.pw_uid, account.pw_gid)
        pwfile.chmod(0o600)
        done = self._run(self.bindir / "initdb", "-D", self.data, "-U", SUPERUSER,
                         "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                         "--no-locale", "--no-sync")
        pwfile.unlink()
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}\n{done.stderr}")
        with (self.data / "postgresql.conf").open("a") as conf:
            for key, value in SERVER_SETTINGS.items():
                conf.write(f"{key} = {value}\n")
            conf.write(f"unix_socket_directories = '{self.root}'\n")
        for _attempt in range(5):  # a free port can be taken between probe and bind
            self.port = _free_port()
            started = self._run(self.bindir / "pg_ctl", "-D", self.data, "-l", self.log,
                                "-w", "-t", "60", "-o", f"-p {self.port}", "start")
            if started.returncode == 0:
                break
        else:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {started.stderr}\n{log}")
        self._watch()
        with self.admin() as conn:
            conn.execute(f"CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}'")

    def _watch(self) -> None:
        """Stop the server and remove its folder even if pytest is killed (SIGKILL, the
        SIGTERM of `timeout`): pg_ctl daemonizes it, so nothing else would."""
        stop = [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
        if self.run_as:
            stop = ["runuser", "-u", self.run_as, "--", *stop]
        script = (f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
                  f"{shlex.join(stop)} >/dev/null 2>&1; rm -rf {shlex.quote(str(self.root))}")
        self._watchdog = subprocess.Popen(["sh", "-c", script], start_new_session=True,
                                          stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        watchdog = getattr(self, "_watchdog", None)
        if watchdog is not None:
            watchdog.kill()  # our own child, by its handle
            watchdog.wait()
        if self.data.exists():
            self._run(self.bindir / "pg_ctl", "-D", self.data, "-m", "immediate", "-w",
                      "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- connecting ---------------------------------------------------------------------
    def url(self, dbname: str, user: str = OWNER, password: str | None = None) -> str:
        """A postgresql:// URL; the password is only in it when asked for."""
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def admin(self, dbname: str = "postgres"):  # -> psycopg.Connection
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, dbname=dbname, user=SUPERUSER,
                               password=SUPERUSER_PASSWORD, autocommit=True,
                               connect_timeout=10)

    def create_database(self, owner: str = OWNER) -> str:
        name = f"metarr_{os.getpid()}_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {name} OWNER {owner}")
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _skip_reason() -> str | None:
    if find_bindir() is None:
        return ("PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/initdb): "
                "install Debian's postgresql package (.ci/run does)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed: pip install -e '.[test]'"
    return None


_SERVER: PostgresServer | None = None


@pytest.fixture(scope="session")
def postgres_server(request: pytest.FixtureRequest) -> PostgresServer:
    """The session's PostgreSQL server, started once however many modules ask for it."""
    global _SERVER
    reason = _skip_reason()
    if reason:
        if under_ci():
            pytest.fail(f"PostgreSQL cannot run under CI: {reason}", pytrace=False)
        pytest.skip(reason)
    if _SERVER is None:
        bindir = find_bindir()
        assert bindir is not None
        server = PostgresServer(bindir)
        try:
            server.start()
        except BaseException:
            server.stop()
            raise
        _SERVER = server
        # Stopped once at the very end of the session, not per importing module.
        request.config.add_cleanup(server.stop)
    return _SERVER


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database owned by the Metarr role, dropped after the test."""
    name = postgres_server.create_database()
    yield name
    postgres_server.drop_database(name)
