"""The installed `metarr-sync run` against a real Kodi 20.1 (headless, under Xvfb).

Kodi is started once per test session (tests/support/kodi_server.py, ~7 s) with its own
HOME, a loopback web server with Basic auth and its network announcements off. Each test
writes the media files Metarr would have published into Kodi's source folders, builds the
matching Metarr database (whose paths differ from Kodi's: the config maps them), runs the
command as cron would, and then asks Kodi itself, over its own JSON-RPC, what it now holds.
Everything is asynchronous in Kodi, so assertions poll with a deadline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from support.kodi_server import KodiServer, RecordingProxy, missing

pytestmark = [pytest.mark.kodi,
              pytest.mark.skipif(missing() is not None, reason=str(missing()))]

CONFIG = """
[metarr]
database = "{db}"

[sync]
timeout = 15
retry_attempts = 1

[players.lounge]
type = "kodi"
url = "{url}"
username = "{user}"
password = {{ env = "KODI_TEST_PASSWORD" }}
mappings = [ {{ metarr = "/data/media/movies", player = "{movies}" }},
             {{ metarr = "/data/media/tv", player = "{tv}" }} ]
"""


@pytest.fixture(scope="session")
def kodi_server(tmp_path_factory: pytest.TempPathFactory):
    server = KodiServer(tmp_path_factory.mktemp("kodi"))
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
def setup(cli, metarr, kodi):
    cli.write_config(CONFIG.format(db=metarr.path, url=kodi.url, user=kodi.username,
                                   movies=kodi.movies, tv=kodi.tv))
    cli.env["KODI_TEST_PASSWORD"] = kodi.password
    return cli, metarr, kodi


def run(cli, log: Path | None = None) -> tuple[int, dict]:
    args = ["--log-file", str(log)] if log else []
    result = cli(*args, "run", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def explain(cli, report: dict) -> str:
    """The report and every queued item's error: what a failed assertion needs to show."""
    with cli.state() as state:
        queue = [dict(r) for r in state.execute(
            "SELECT item_key, status, last_error FROM sync_queue ORDER BY item_key")]
    return json.dumps({"report": report, "queue": queue}, indent=1, ensure_ascii=False)


def sent_methods(log: Path) -> list[tuple[str, dict]]:
    """The library-changing JSON-RPC calls the run logged (INFO lines of the adapter)."""
    calls = []
    for line in log.read_text(encoding="utf-8").splitlines():
        match = re.search(r"metarr_sync\.kodi: lounge: (\S+) (\{.*\})$", line)
        if match:
            calls.append((match.group(1), json.loads(match.group(2))))
    return calls


def publish_movie(kodi: KodiServer, title: str, year: int, nfo_title: str | None = None,
                  imdb: str = "tt0000001") -> str:
    """What Metarr's publish step leaves on disk; returns the file as Kodi sees it."""
    folder = kodi.movies / f"{title} ({year})"
    return str(kodi.write_movie(folder, f"{title} ({year}).mkv", nfo_title or title, year,
                                imdb))


def publish_episode(kodi: KodiServer, show: str, season: int, number: int, title: str) -> str:
    name = f"{show} - S{season:02d}E{number:02d}.mkv"
    return str(kodi.write_episode(kodi.tv / show / f"Season {season:02d}" / name, title,
                                  season, number))


def test_run_delivers_new_changed_and_deleted_items(setup, tmp_path):
    cli, db, kodi = setup
    odd = 'Ça, "Quoted" & [Cut]'
    matrix_file = publish_movie(kodi, "The Matrix", 1999, imdb="tt0133093")
    heat_file = publish_movie(kodi, "Heat", 1995, imdb="tt0113277")
    odd_file = publish_movie(kodi, odd, 2001, imdb="tt0000042")
    kodi.write_show(kodi.tv / "Severance", "Severance", "2022-02-18")
    ep1_file = publish_episode(kodi, "Severance", 1, 1, "Good News About Hell")
    matrix = db.add_movie("The Matrix", 1999)
    heat = db.add_movie("Heat", 1995)
    odd_movie = db.add_movie(odd, 2001)
    show = db.add_series("Severance")
    season = db.add_season(show, 1)
    db.add_episode(show, season, 1, 1)

    # --dry-run prints the scans it would send and changes nothing in Kodi.
    before = (kodi.movies_by_file(), kodi.shows_by_folder())
    dry = cli("run", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    commands = json.loads(dry.stdout)["players"][0]["commands"]
    scans = [json.loads(c.split(" ", 2)[2])["params"]["directory"] for c in commands]
    assert scans == [f"{kodi.movies}/Heat (1995)/", f"{kodi.movies}/The Matrix (1999)/",
                     f"{kodi.movies}/{odd} (2001)/", f"{kodi.tv}/Severance/"]
    assert (kodi.movies_by_file(), kodi.shows_by_folder()) == before

    code, report = run(cli)
    assert code == 0, explain(cli, report)
    (row,) = report["players"]
    assert (row["name"], row["status"], row["synced"], row["failed"]) == (
        "lounge", "synced", 5, 0)
    # The run itself looked each item up in Kodi after its scans: all five are there.
    assert row["verified"] == 5
    kodi.wait_until(lambda: {matrix_file, heat_file, odd_file} <= set(kodi.movies_by_file()),
                    "the three new movies")
    movies = kodi.movies_by_file()
    assert movies[matrix_file]["title"] == "The Matrix"
    assert movies[odd_file]["title"] == odd
    kodi.wait_until(lambda: ep1_file in kodi.episodes_by_file(), "the new show's episode")
    assert kodi.shows_by_folder()[f"{kodi.tv}/Severance/"]["title"] == "Severance"
    assert kodi.episodes_by_file()[ep1_file]["title"] == "Good News About Hell"

    # Metarr rewrites two movies' NFOs and republishes them, Heat goes to Metarr's recycle
    # bin (its files stay on disk: only a surgical removal gets it out of Kodi), and a new
    # episode of the known show arrives.
    ids = {file: kodi.movies_by_file()[file]["movieid"]
           for file in (matrix_file, heat_file, odd_file)}
    publish_movie(kodi, "The Matrix", 1999, nfo_title="The Matrix (Remastered)",
                  imdb="tt0133093")
    db.republish_movie(matrix)
    publish_movie(kodi, odd, 2001, nfo_title=f"{odd} (Director's Cut)", imdb="tt0000042")
    db.republish_movie(odd_movie)
    db.soft_delete("movies", heat)
    ep2_file = publish_episode(kodi, "Severance", 1, 2, "Half Loop")
    db.add_episode(show, season, 1, 2)
    # A movie folder created after Kodi listed the movies folder (someone browsed it in
    # Kodi): Kodi caches that listing and would skip the new folder as missing.
    kodi.rpc("Files.GetDirectory", {"directory": f"{kodi.movies}/"})
    alien_file = publish_movie(kodi, "Alien", 1979, imdb="tt0078748")
    db.add_movie("Alien", 1979)
    log = tmp_path / "second.log"
    # This run goes through a recording proxy: what metarr-sync put on the wire, per POST.
    with RecordingProxy(kodi.url) as proxy:
        cli.write_config(CONFIG.format(db=db.path, url=proxy.url, user=kodi.username,
                                       movies=kodi.movies, tv=kodi.tv))
        code, report = run(cli, log)
    cli.write_config(CONFIG.format(db=db.path, url=kodi.url, user=kodi.username,
                                   movies=kodi.movies, tv=kodi.tv))
    assert code == 0, explain(cli, report)
    # Removals are not verified by the run; the refreshed movies and new items are.
    assert (report["players"][0]["synced"], report["players"][0]["verified"]) == (5, 4)
    # The removal and both refreshes travelled in one POST, a JSON-RPC batch that Kodi
    # answered call by call: both new NFO titles show.
    (batch,) = proxy.posts_with("VideoLibrary.RefreshMovie")
    assert [(c["method"], c["params"]) for c in batch] == [
        ("VideoLibrary.RemoveMovie", {"movieid": ids[heat_file]}),
        ("VideoLibrary.RefreshMovie", {"movieid": ids[matrix_file], "ignorenfo": False}),
        ("VideoLibrary.RefreshMovie", {"movieid": ids[odd_file], "ignorenfo": False})]
    assert report["players"][0]["requests"] == len(proxy.bodies)
    kodi.wait_until(
        lambda: kodi.movies_by_file().get(matrix_file, {}).get("title")
        == "The Matrix (Remastered)", "The Matrix's new title")
    kodi.wait_until(
        lambda: kodi.movies_by_file().get(odd_file, {}).get("title")
        == f"{odd} (Director's Cut)", "the other refreshed movie's new title")
    assert heat_file not in kodi.movies_by_file()
    assert alien_file in kodi.movies_by_file()
    kodi.wait_until(lambda: ep2_file in kodi.episodes_by_file(), "the new episode")
    calls = sent_methods(log)
    assert sorted(m for m, _ in calls) == [
        "VideoLibrary.RefreshMovie", "VideoLibrary.RefreshMovie", "VideoLibrary.RemoveMovie",
        "VideoLibrary.Scan", "VideoLibrary.Scan"]
    # Scans went alone, each in a POST of its own.
    assert all(len(post) == 1 for post in proxy.posts_with("VideoLibrary.Scan"))
    assert [p for m, p in calls if m == "VideoLibrary.Scan"] == [
        {"directory": f"{kodi.movies}/Alien (1979)/", "showdialogs": False},
        {"directory": f"{kodi.tv}/Severance/Season 01/", "showdialogs": False}]

    # Nothing changed since: the third run sends nothing at all and Kodi keeps its ids.
    before = kodi.movies_by_file()
    log = tmp_path / "third.log"
    code, report = run(cli, log)
    assert code == 0, explain(cli, report)
    assert report["items"] == 0 and report["players"][0]["requests"] == 0
    assert sent_methods(log) == []
    assert kodi.movies_by_file() == before


def test_kodi_down_fails_the_run_and_the_rerun_delivers_everything(setup):
    cli, db, kodi = setup
    blade_file = publish_movie(kodi, "Blade Runner", 1982, imdb="tt0083658")
    kodi.write_show(kodi.tv / "Dark", "Dark", "2017-12-01")
    dark_file = publish_episode(kodi, "Dark", 1, 1, "Secrets")
    db.add_movie("Blade Runner", 1982)
    show = db.add_series("Dark")
    db.add_episode(show, db.add_season(show, 1), 1, 1)

    kodi.stop()
    try:
        code, report = run(cli)
        assert code == 1
        row = report["players"][0]
        assert (row["status"], row["error_kind"]) == ("failed", "offline")
        assert "refused the connection" in row["error"]
        assert kodi.password not in json.dumps(report)
        with cli.state() as state:
            queued = state.execute("SELECT status, count(*) FROM sync_queue "
                                   "WHERE player = 'lounge' GROUP BY status").fetchall()
        assert [tuple(r) for r in queued] == [("pending", 3)]
    finally:
        kodi.start()

    code, report = run(cli)
    assert code == 0, explain(cli, report)
    assert (report["players"][0]["synced"], report["players"][0]["verified"]) == (3, 3)
    kodi.wait_until(lambda: blade_file in kodi.movies_by_file(), "Blade Runner after the rerun")
    kodi.wait_until(lambda: dark_file in kodi.episodes_by_file(), "Dark after the rerun")
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0


def test_wrong_password_is_reported_as_authentication_failed(setup):
    cli, db, kodi = setup
    cli.env["KODI_TEST_PASSWORD"] = "not-the-password"
    publish_movie(kodi, "Ran", 1985, imdb="tt0089881")
    db.add_movie("Ran", 1985)
    code, report = run(cli)
    assert code == 1
    row = report["players"][0]
    assert (row["status"], row["error_kind"]) == ("failed", "auth_failed")
    assert "authentication failed" in row["error"] and "HTTP 401" in row["error"]
    assert "not-the-password" not in json.dumps(report)
    assert f"{kodi.movies}/Ran (1985)/Ran (1985).mkv" not in kodi.movies_by_file()


def test_paged_listings_and_a_batch_against_the_real_kodi(kodi, monkeypatch):
    """Kodi's own answers to what the adapter relies on (PLAYERS.md): `limits` give the
    rows [start, end) and their `total`, so a paged listing ends by itself; a JSON-RPC
    batch is answered call by call, and a stale id fails its own call only."""
    import time

    import metarr_sync.players.kodi as adapter
    import metarr_sync.players.kodi_rpc as kodi_rpc
    from metarr_sync.config import PlayerConfig, SyncConfig

    monkeypatch.setattr(kodi_rpc, "PAGE", 2)
    files = [publish_movie(kodi, f"Paged {n}", 2010 + n, imdb=f"tt100000{n}") for n in range(5)]
    kodi.rpc("Files.GetDirectory", {"directory": f"{kodi.movies}/"})
    for file in files:
        while kodi.scanning():
            time.sleep(0.05)
        kodi.rpc("VideoLibrary.Scan", {"directory": str(Path(file).parent) + "/",
                                       "showdialogs": False})
        # Each added before the next scan: a scan sent while another runs stops it.
        kodi.wait_until(lambda file=file: file in kodi.movies_by_file(), file)
    kodi.wait_until(lambda: set(files) <= set(kodi.movies_by_file()), "the five movies")
    while kodi.scanning():
        time.sleep(0.05)
    expected = {file: movie["movieid"] for file, movie in kodi.movies_by_file().items()}
    player = adapter.KodiPlayer(
        PlayerConfig(name="lounge", type="kodi", url=kodi.url, username=kodi.username,
                     password_value=kodi.password), SyncConfig(timeout=15, retry_attempts=0))
    try:
        assert player._movies() == expected
        assert player.requests == -(-len(expected) // 2)  # one request per page of two
        folders = player._listing(f"{kodi.movies}/")
        assert {str(Path(f).parent) for f in files} <= folders

        before = player.requests
        answers = player.kodi.call_many([
            ("VideoLibrary.RefreshMovie", {"movieid": expected[files[0]], "ignorenfo": False}),
            ("VideoLibrary.RefreshMovie", {"movieid": 987654, "ignorenfo": False})],
            mutating=True)
        assert player.requests == before + 1
        assert answers[0] == "OK"
        assert isinstance(answers[1], kodi_rpc.KodiRejected) and answers[1].code == -32602
        # The valid refresh ran: Kodi re-added the movie under a new id.
        kodi.wait_until(lambda: kodi.movies_by_file().get(files[0], {}).get("movieid")
                        not in (None, expected[files[0]]), "the refreshed movie's new id")
    finally:
        player.close()


def test_refreshes_of_many_movies_fit_a_small_timeout_and_each_goes_once(setup, tmp_path):
    """Kodi answers a batch of refreshes only after carrying them out. With a timeout a
    batch of 120 would outlast (measured on this Kodi first), the run sizes its batches
    from Kodi's answer times: it completes without a timeout, every movie is refreshed
    exactly once (what went over the wire, through a recording proxy), and Kodi shows
    every new title."""
    import time

    cli, db, kodi = setup
    count = 120
    shelf = kodi.movies / "Shelf"
    files = [str(kodi.write_movie(shelf / f"Shelf {n:03d} (2000)", f"Shelf {n:03d} (2000).mkv",
                                  f"Shelf {n:03d}", 2000, f"tt8{n:06d}")) for n in range(count)]
    # Kodi has them already: one scan of their common folder (set-up, not the tool).
    while kodi.scanning():
        time.sleep(0.05)
    kodi.rpc("Files.GetDirectory", {"directory": f"{kodi.movies}/"})
    kodi.rpc("VideoLibrary.Scan", {"directory": f"{shelf}/", "showdialogs": False})
    kodi.wait_until(lambda: set(files) <= set(kodi.movies_by_file()), "the 120 movies", 60)
    while kodi.scanning():
        time.sleep(0.05)

    def refresh_all(ids: list[int]) -> float:
        """Seconds Kodi takes to answer one batch refreshing these movies."""
        batch = [{"jsonrpc": "2.0", "id": n + 1, "method": "VideoLibrary.RefreshMovie",
                  "params": {"movieid": movie_id, "ignorenfo": False}}
                 for n, movie_id in enumerate(ids)]
        started = time.monotonic()
        answer = kodi.session.post(f"{kodi.url}/jsonrpc", json=batch, timeout=300)
        took = time.monotonic() - started
        assert [a.get("result") for a in answer.json()] == ["OK"] * len(ids)
        return took

    # This Kodi's pace, from a batch of 20: the timeout is a third of what 120 would take.
    for n in range(20):
        kodi.write_movie(shelf / f"Shelf {n:03d} (2000)", f"Shelf {n:03d} (2000).mkv",
                         f"Shelf {n:03d} (Timed)", 2000, f"tt8{n:06d}")
    movies = kodi.movies_by_file()
    per_call = refresh_all([movies[f]["movieid"] for f in files[:20]]) / 20
    timeout = max(1.0, round(per_call * count / 3, 1))
    # Kodi's refreshes run in its library queue and may finish after its answer (their
    # movies get new ids then): the run must list the library only once they have.
    kodi.wait_until(lambda: all(kodi.movies_by_file().get(f, {}).get("title", "")
                                .endswith("(Timed)") for f in files[:20]), "the 20 refreshed",
                    timeout=180)

    # Metarr republishes every movie with a new title.
    for n in range(count):
        kodi.write_movie(shelf / f"Shelf {n:03d} (2000)", f"Shelf {n:03d} (2000).mkv",
                         f"Shelf {n:03d} (Restored)", 2000, f"tt8{n:06d}")
        db.add_movie(f"Shelf {n:03d}", 2000, folder=f"{db.movies_root}/Shelf/Shelf {n:03d} (2000)")
    small = CONFIG.replace("timeout = 15", f"timeout = {timeout}")
    with RecordingProxy(kodi.url) as proxy:
        cli.write_config(small.format(db=db.path, url=proxy.url, user=kodi.username,
                                      movies=kodi.movies, tv=kodi.tv))
        code, report = run(cli)
    assert code == 0, explain(cli, report)
    (row,) = report["players"]
    assert (row["status"], row["synced"], row["verified"], row["error"]) == (
        "synced", count, count, None), explain(cli, report)
    # Over the wire: 120 refreshes, one per movie, none sent again, in batches sized to
    # Kodi's pace (a few calls first, never all 120 at once).
    posts = proxy.posts_with("VideoLibrary.RefreshMovie")
    refreshed = [c["params"]["movieid"] for post in posts for c in post
                 if c["method"] == "VideoLibrary.RefreshMovie"]
    assert len(refreshed) == len(set(refreshed)) == count
    assert len(posts[0]) == 5 and max(len(p) for p in posts) < count
    assert row["requests"] == len(proxy.bodies)
    def stale() -> list[str]:
        shown = kodi.movies_by_file()
        return [f"{f}: {shown.get(f, {}).get('title')!r}" for f in files
                if not shown.get(f, {}).get("title", "").endswith("(Restored)")]

    # Kodi's answer does not wait for the refreshes themselves: they run in its library
    # queue and, on a loaded machine, the last ones land a minute or more after the run.
    deadline = time.monotonic() + 180
    while stale() and time.monotonic() < deadline:
        time.sleep(1)
    assert not stale(), f"still old: {stale()}\n{explain(cli, report)}"

    # The premise: one batch of all 120, as every run sent before, outlasts that timeout.
    movies = kodi.movies_by_file()
    assert refresh_all([movies[f]["movieid"] for f in files]) > timeout
