"""-v/--verbose and --log-file through the installed command, against a fake Kodi over real
HTTP: nothing is logged without them, -v logs with timestamps to stderr, -vv adds every
request, --log-file writes a file (without touching stderr), and the password is in no
line, not even base64-encoded as in the Authorization header Kodi receives."""

from __future__ import annotations

import base64
import re

import pytest
from support.configs import config_with, env_secret
from support.fake_players import FakeKodi

PASSWORD = "Kodi-Pa55-[secret]"
STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) "
                   r"metarr_sync[\w.]*: ")


@pytest.fixture
def kodi_world(cli, metarr):
    kodi = FakeKodi(username="kodi", password=PASSWORD,
                    sources={"/mnt/movies/": "movies"}).start()
    try:
        movie = metarr.add_movie("Heat", 1995)
        kodi.add_file("/mnt/movies/Heat (1995)/Heat (1995).mkv")
        cli.write_config(config_with(metarr=metarr.path, players=[kodi.player(
            "lounge", [("/data/media/movies", "/mnt/movies")],
            password=env_secret("KODI_PASSWORD"))]))
        yield cli, metarr, kodi, movie
    finally:
        kodi.stop()


ENV = {"KODI_PASSWORD": PASSWORD}
FORBIDDEN = (PASSWORD, base64.b64encode(f"kodi:{PASSWORD}".encode()).decode())


def log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if STAMP.match(line)]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in FORBIDDEN:
            assert secret not in text


def test_without_v_nothing_is_logged(kodi_world):
    cli, _, kodi, _ = kodi_world
    result = cli("run", env=ENV)
    assert result.returncode == 0, result.stderr
    assert log_lines(result.stderr) == [] and result.stderr == ""
    assert kodi.count("VideoLibrary.Scan") == 1


def test_v_logs_with_timestamps_and_vv_adds_every_request(kodi_world):
    cli, metarr, kodi, movie = kodi_world
    once = cli("-v", "run", "--json", env=ENV)
    assert once.returncode == 0, once.stderr
    info = log_lines(once.stderr)
    assert info and all(" INFO " in line or " WARNING " in line for line in info)
    assert any("collected:" in line for line in info)
    # -v shows each command that changes something on a player, with its target.
    scans = [line for line in info if "metarr_sync.kodi: lounge: VideoLibrary.Scan" in line]
    assert len(scans) == 1 and "/mnt/movies/Heat (1995)/" in scans[0]
    assert not any(" DEBUG " in line for line in info)
    assert once.stdout.lstrip().startswith("{")  # the log never mixes into --json

    metarr.republish_movie(movie)
    before = kodi.count()
    twice = cli("-vv", "run", env=ENV)
    assert twice.returncode == 0, twice.stderr
    debug = [line for line in log_lines(twice.stderr) if " DEBUG " in line]
    # -vv: every HTTP request, and for Kodi every JSON-RPC call with its parameters.
    requests = [line for line in debug if "metarr_sync.http: lounge POST" in line]
    assert len(requests) == kodi.count() - before
    assert any("metarr_sync.kodi: lounge: VideoLibrary.GetMovies" in line for line in debug)
    assert any(" INFO metarr_sync.kodi: lounge: VideoLibrary.RefreshMovie" in line
               for line in log_lines(twice.stderr))  # Kodi has it: a refresh, no scan
    assert_no_secret(once.stdout, once.stderr, twice.stdout, twice.stderr)
    # The secret really crossed the wire: the fake checked it on every request.
    assert kodi.count("VideoLibrary.Scan") == 1 and kodi.count("VideoLibrary.RefreshMovie") == 1


def test_log_file_alone_writes_info_to_the_file_only(kodi_world, tmp_path):
    cli, _, _, _ = kodi_world
    log = tmp_path / "logs" / "sync.log"
    log.parent.mkdir()
    result = cli("--log-file", str(log), "run", env=ENV)
    assert result.returncode == 0, result.stderr
    assert log_lines(result.stderr) == []
    lines = log.read_text().splitlines()
    assert lines and all(STAMP.match(line) for line in lines)
    assert any("collected:" in line for line in lines)
    assert not any(" DEBUG " in line for line in lines)

    again = cli("-vv", "--log-file", str(log), "run", "--dry-run", env=ENV)
    assert again.returncode == 0
    assert len(log.read_text().splitlines()) > len(lines)  # appended, not replaced
    assert log_lines(again.stderr)
    assert_no_secret(log.read_text(), again.stderr)


def test_a_refused_password_is_not_in_the_error_or_the_log(kodi_world, tmp_path, metarr):
    cli, _, kodi, _ = kodi_world
    metarr.add_movie("Ronin", 1998)
    log = tmp_path / "sync.log"
    wrong = {"KODI_PASSWORD": PASSWORD + "-old"}
    result = cli("-vv", "--log-file", str(log), "run", env=wrong)
    assert result.returncode == 1
    assert "authentication" in result.stdout.lower() or "401" in result.stdout
    assert_no_secret(result.stdout, result.stderr, log.read_text())
    for text in (result.stdout, result.stderr, log.read_text()):
        assert PASSWORD + "-old" not in text


def test_an_unwritable_log_file_is_a_clear_error(kodi_world, tmp_path):
    cli, _, _, _ = kodi_world
    result = cli("--log-file", str(tmp_path / "missing" / "sync.log"), "run", env=ENV)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert result.stderr.strip() == (f"metarr-sync: --log-file {tmp_path}/missing/sync.log: "
                                     "cannot be written: No such file or directory")
