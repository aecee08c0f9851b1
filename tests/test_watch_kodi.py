"""The installed `metarr-sync watch` against a real Kodi, 20.1 and 21.2 (headless).

One scenario per Kodi version, on the session's Kodi (tests/conftest.py), every request
to it through a RecordingProxy (tests/support/kodi_server.py):

- the watcher's first run delivers a movie Metarr published (Kodi scans it in);
- Metarr republishes it with a new title (the NFO rewritten, then the row's publish stamp
  and a new asset committed): Kodi's own VideoLibrary answer shows the new title within
  a bound that is generous on purpose (a test, not a timing: tests/bench/bench_watch.py
  measures);
- idle afterwards (no commit to Metarr), the watcher sends Kodi nothing at all;
- SIGTERM ends it with exit 0.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from support import configs
from support.configs import config_with, env_secret
from support.kodi_server import KodiServer, RecordingProxy
from support.waiting import wait_for

pytestmark = pytest.mark.kodi

#: Quick settings: a run 0.5 s after the last commit, Metarr polled every 0.1 s.
QUICK = {"debounce": "0.5s", "max_delay": "20s", "poll_interval": "0.1s"}
#: The bound on Kodi showing the new title after Metarr's commit.
SHOWN_WITHIN = 60.0
#: How long the watcher is watched doing nothing.
IDLE = 10.0


def finished_watch_runs(cli) -> list[tuple[int, str]]:
    """(id, status) of the watcher's finished runs, in order."""
    if not (cli.state_dir / "state.sqlite").exists():
        return []
    with contextlib.closing(cli.state()) as state:
        try:
            return [(r["id"], r["status"]) for r in state.execute(
                "SELECT id, status FROM runs WHERE trigger = 'watch' "
                "AND finished_at IS NOT NULL ORDER BY id")]
        except sqlite3.OperationalError:  # the watcher is still creating its state
            return []


def queue(cli) -> list[tuple[str, str]]:
    with contextlib.closing(cli.state()) as state:
        return [(r["item_key"], r["status"]) for r in state.execute(
            "SELECT item_key, status FROM sync_queue ORDER BY item_key")]


def test_watch_refreshes_a_republished_movie_in_kodi_and_sends_nothing_while_idle(
        cli, metarr, kodi: KodiServer, tmp_path: Path):
    # A title of its own in the session's shared library (other tests add theirs).
    title, year = "Watched Over", 1984
    folder = kodi.movies / f"{title} ({year})"
    file = str(kodi.write_movie(folder, f"{title} ({year}).mkv", title, year, "tt0087363"))
    movie = metarr.add_movie(title, year)

    with RecordingProxy(kodi.url) as proxy:
        cli.write_config(config_with(
            metarr=metarr.path, sync={"timeout": 15, "retry_attempts": 1,
                                      "initial_lookback": "all"},
            watch=QUICK,
            players=[configs.kodi(
                "lounge", url=proxy.url, username=kodi.username,
                password=env_secret("KODI_TEST_PASSWORD"),
                mappings=[("/data/media/movies", str(kodi.movies)),
                          ("/data/media/tv", str(kodi.tv))])]))
        cli.env["KODI_TEST_PASSWORD"] = kodi.password
        err_path = tmp_path / "watch.err"
        with (tmp_path / "watch.out").open("w") as out, err_path.open("w") as err:
            proc = subprocess.Popen([cli.exe, "watch"], stdout=out, stderr=err, text=True,
                                    env=cli.env)

        def explain() -> str:
            return (f"watch's stderr:\n{err_path.read_text()}\nqueue: {queue(cli)}\n"
                    f"Kodi's log ends with:\n{kodi.log_tail(20)}")

        try:
            # The first run delivers the movie: Kodi scans it in, and the run sees it.
            wait_for(lambda: finished_watch_runs(cli), "the first run", 120, explain)
            assert finished_watch_runs(cli)[0][1] == "synced", explain()
            kodi.wait_until(lambda: file in kodi.movies_by_file(), "the new movie")
            assert kodi.movies_by_file()[file]["title"] == title
            scans = len(proxy.posts_with("VideoLibrary.Scan"))
            assert scans >= 1

            # Metarr republishes it under a new title: the NFO first, then its commit.
            new_title = f"{title} (Director's Cut)"
            kodi.write_movie(folder, f"{title} ({year}).mkv", new_title, year, "tt0087363")
            runs = len(finished_watch_runs(cli))
            kodi_id = kodi.movies_by_file()[file]["movieid"]
            metarr.conn.execute("BEGIN")  # one commit, as Metarr's publish step makes it
            metarr.retitle("movies", movie, new_title)
            metarr.republish_movie(movie)
            metarr.conn.execute("COMMIT")
            committed = time.monotonic()
            kodi.wait_until(lambda: kodi.movies_by_file().get(file, {}).get("title")
                            == new_title, "the new title", timeout=SHOWN_WITHIN)
            shown = time.monotonic() - committed
            # The run that did it ends, its delivery verified on Kodi: nothing left.
            wait_for(lambda: len(finished_watch_runs(cli)) > runs, "the second run", 60,
                     explain)
            assert [s for _, s in finished_watch_runs(cli)[runs:]] == ["synced"], explain()
            assert queue(cli) == [], explain()
            # Kodi was told with one refresh of its entry (no scan: Kodi has the movie).
            (post,) = proxy.posts_with("VideoLibrary.RefreshMovie")
            assert [(c["method"], c["params"]) for c in post] == [
                ("VideoLibrary.RefreshMovie", {"movieid": kodi_id, "ignorenfo": False})]
            assert len(proxy.posts_with("VideoLibrary.Scan")) == scans

            # Idle: no commit to Metarr, and not a single request to Kodi.
            before = len(proxy.bodies)
            time.sleep(IDLE)
            assert proxy.bodies[before:] == []
            assert len(finished_watch_runs(cli)) == runs + 1
            assert proc.poll() is None, explain()

            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, explain()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    stderr = err_path.read_text()
    assert "Traceback" not in stderr, stderr
    assert "stopped by SIGTERM" in stderr
    print(f"Kodi {kodi.version} showed the new title {shown:.2f} s after Metarr's commit")
