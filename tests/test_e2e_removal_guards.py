"""The removal guards for every player type: the installed `metarr-sync run` against a fake
Kodi, Jellyfin and Plex at once (tests/support/fake_players.py), with Metarr's library in
real folders, so that only the disk can say what is gone.

What counts as a destructive request, per player:
- Kodi: VideoLibrary.Remove* and VideoLibrary.Clean (and Scan, under a missing anchor);
- Jellyfin: a /Library/Media/Updated report (a "Deleted" one removes; any one rescans);
- Plex: a partial scan of a folder (it marks what is missing) and emptyTrash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Cli
from support.configs import config_with
from support.fake_players import FakeJellyfin, FakeKodi, FakePlayer, FakePlex
from support.metarr_factory import MetarrDB, ago

SYNC = {"timeout": 5, "retry_attempts": 1, "initial_lookback": "all"}
ROOTS = {"kodi": "/mnt", "jelly": "/media", "plex": "/media"}


@dataclass
class World:
    cli: Cli
    db: MetarrDB
    media: Path
    fakes: dict[str, FakePlayer]
    movies: list[int]

    def configure(self, db: Path | None = None, **sync: object) -> None:
        """Every fake as a player of its name; `sync`: [sync] keys beside SYNC's."""
        self.cli.write_config(config_with(
            metarr=db or self.db.path, sync={**SYNC, **sync},
            players=[fake.player(name, [(str(self.media), ROOTS[name])])
                     for name, fake in self.fakes.items()]))

    def run(self, *args: str):
        result = self.cli("run", "--json", *args)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def player_file(self, name: str, movie: int) -> str:
        return ROOTS[name] + self.db_path(movie)[len(str(self.media)):]

    def db_path(self, movie: int) -> str:
        return self.db._one("SELECT file_path FROM movies WHERE id = ?", movie)[0]

    def delete(self, movie: int) -> None:
        """Radarr deleted the file, Metarr moved the row to its recycle bin."""
        for name, fake in self.fakes.items():
            fake.remove_file(self.player_file(name, movie))
        self.db.delete_media("movies", movie)
        self.db.soft_delete("movies", movie)

    def destructive(self) -> dict[str, list[str]]:
        """Every destructive request each fake received since the last reset."""
        kodi, jelly, plex = self.fakes["kodi"], self.fakes["jelly"], self.fakes["plex"]
        found: dict[str, list[str]] = {"kodi": [], "jelly": [], "plex": []}
        for request in kodi.received():
            body = request.json
            for call in body if isinstance(body, list) else [body]:
                if call["method"].startswith(("VideoLibrary.Remove", "VideoLibrary.Clean",
                                              "VideoLibrary.Scan")):
                    found["kodi"].append(call["method"])
        found["jelly"] = [f"{u['UpdateType']} {u['Path']}" for r in jelly.received(
            "POST /Library/Media/Updated") for u in r.json["Updates"]]
        found["plex"] = [f"{r.method} {r.path}" for r in plex.received()
                         if r.path.endswith(("/refresh", "/emptyTrash"))
                         and r.path.startswith("/library/sections/")]
        return found

    def reset(self) -> None:
        for fake in self.fakes.values():
            fake.reset_log()


@pytest.fixture
def world(tmp_path: Path):
    cli = Cli(tmp_path)
    db = MetarrDB(tmp_path / "metarr.sqlite")
    media = tmp_path / "media"
    db.use_disk(media)
    fakes: dict[str, FakePlayer] = {
        "kodi": FakeKodi(sources={"/mnt/movies/": "movies", "/mnt/tv/": "tvshows"}).start(),
        "jelly": FakeJellyfin().start(),
        "plex": FakePlex().start()}
    movies = [db.add_movie(f"Film {n:02d}", 2000 + n % 20, when=ago(days=2))
              for n in range(40)]
    built = World(cli, db, media, fakes, movies)
    for name, fake in fakes.items():
        fake.add_file(*(built.player_file(name, m) for m in movies))
    try:
        yield built
    finally:
        for fake in fakes.values():
            fake.stop()
        db.close()


def deliver_everything(world: World) -> None:
    world.configure()
    first = world.run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert len(world.fakes["kodi"].movies) == 40
    world.reset()


def test_an_empty_metarr_database_removes_nothing_anywhere(world, tmp_path):
    deliver_everything(world)
    fresh = MetarrDB(tmp_path / "fresh.sqlite")
    fresh.close()
    world.configure(db=fresh.path)
    result = world.run()
    assert result.returncode == 0, result.stdout
    assert world.destructive() == {"kodi": [], "jelly": [], "plex": []}
    assert len(world.fakes["kodi"].movies) == 40
    report = {p["name"]: p for p in json.loads(result.stdout)["players"]}
    assert all(report[name]["kept"] == 40 for name in ROOTS)


def test_thirty_removals_are_held_on_every_player_until_released(world):
    deliver_everything(world)
    # Jellyfin's and Plex's scans of that delivery are seen: the next reports are due.
    assert world.cli("verify").returncode == 0
    world.reset()
    world.configure(max_removals=20, max_removal_percent=100)
    gone = world.movies[:30]
    for movie in gone:
        world.delete(movie)

    held = world.run()
    assert held.returncode == 1, held.stdout
    assert world.destructive() == {"kodi": [], "jelly": [], "plex": []}
    report = {p["name"]: p for p in json.loads(held.stdout)["players"]}
    assert {name: (p["status"], p["held"]) for name, p in report.items()} == {
        name: ("held", 30) for name in ROOTS}
    status = world.cli("status")
    assert status.returncode == 1 and status.stdout.startswith("WARNING")

    released = world.run("--allow-removals", "30")
    assert released.returncode == 0, released.stdout
    sent = world.destructive()
    # Kodi: one RemoveMovie per movie (by id), verified gone in the same run.
    assert sent["kodi"] == ["VideoLibrary.RemoveMovie"] * 30
    kodi_files = set(world.fakes["kodi"].movies.values())
    assert not kodi_files & {world.player_file("kodi", m) for m in gone}
    assert len(kodi_files) == 10
    report = {p["name"]: p for p in json.loads(released.stdout)["players"]}
    assert report["kodi"]["verified"] == 30
    # Jellyfin: each removed file walks up to the library folder, which is validated whole;
    # thirty such reports would be thirty validations: the folder is reported once. Plex:
    # each folder rescanned, no trash emptied in the run that sent them (Plex marks them
    # missing in the background).
    assert sent["jelly"] == ["Modified /media/movies"]
    assert world.fakes["jelly"].library_files() == {
        world.player_file("jelly", m) for m in world.movies[30:]}
    assert world.fakes["jelly"].root_validations == ["/media/movies"]
    assert len([s for s in sent["plex"] if s.endswith("/refresh")]) == 30
    assert not [s for s in sent["plex"] if s.endswith("/emptyTrash")]


def test_a_missing_anchor_sends_nothing_destructive_to_any_player(world, tmp_path):
    anchor = world.media / ".metarr-anchor"
    anchor.write_text("")
    deliver_everything(world)
    world.configure(anchors=[str(anchor)])
    world.delete(world.movies[0])
    new = world.db.add_movie("Brand New", 2026)
    for name, fake in world.fakes.items():
        fake.add_file(world.player_file(name, new))
    world.db.republish_movie(world.movies[1])
    anchor.unlink()  # the share's anchor is gone: the share is not mounted

    result = world.run()
    assert result.returncode == 1
    assert world.destructive() == {"kodi": [], "jelly": [], "plex": []}
    assert all(fake.count() == 0 for fake in world.fakes.values())  # not even a probe
    report = {p["name"]: p for p in json.loads(result.stdout)["players"]}
    for name in ROOTS:
        assert report[name]["error_kind"] == "anchor_missing"
        assert str(anchor) in report[name]["error"]
    with world.cli.state() as state:
        rows = state.execute("SELECT status, attempts, count(*) FROM sync_queue "
                             "WHERE status != 'sent' GROUP BY status, attempts").fetchall()
    # The three changes for each of the three players, untried (Plex's and Jellyfin's
    # first deliveries still wait, as `sent`, for their verification).
    assert [tuple(r) for r in rows] == [("pending", 0, 9)]

    anchor.write_text("")  # mounted again: everything goes
    again = world.run()
    assert again.returncode == 0, again.stdout
    assert world.destructive()["kodi"].count("VideoLibrary.RemoveMovie") == 1


def test_a_jellyfin_removal_is_reported_again_at_most_once(tmp_path):
    """Each report of a removed movie can make Jellyfin rescan a library root, so one the
    server has not picked up is reported once more, then only looked at; once the server
    drops the item, no warning stays behind."""
    cli, db = Cli(tmp_path), MetarrDB(tmp_path / "metarr.sqlite")
    media = tmp_path / "media"
    db.use_disk(media)
    jelly = FakeJellyfin().start()
    try:
        movies = [db.add_movie(f"Film {n}", 2001 + n, when=ago(days=2)) for n in range(3)]
        files = {m: "/media" + db._one("SELECT file_path FROM movies WHERE id = ?", m)[0][
            len(str(media)):] for m in movies}
        jelly.add_file(*files.values())
        cli.write_config(config_with(metarr=db.path, sync=SYNC, players=[jelly.player(
            "jelly", [(str(media), "/media")])]))
        assert cli("run").returncode == 0
        assert cli("verify").returncode == 0
        assert len(jelly.library_files()) == 3

        gone = movies[0]
        db.delete_media("movies", gone)
        db.soft_delete("movies", gone)
        # Jellyfin still sees the file (its own mount lags behind): the report does nothing.
        deleted = []
        for _ in range(4):
            assert cli("run").returncode in (0, 1)
            deleted = [u for u in jelly.updates if u["UpdateType"] == "Deleted"]
            verify = cli("verify", "--json")
            assert verify.returncode == 1, verify.stdout
        assert deleted == [{"Path": files[gone], "UpdateType": "Deleted"}] * 2
        with cli.state() as state:
            row = state.execute("SELECT status, attempts, last_error FROM sync_queue "
                                "WHERE item_key = ?", (f"movie:{gone}",)).fetchone()
        assert (row[0], row[1]) == ("unverified", 2)
        assert "still lists" in row[2]
        assert cli("status").stdout.startswith("WARNING")

        # The server's own scan drops the item later: the next look clears the warning.
        jelly.remove_file(files[gone])
        jelly._rescan(files[gone])
        verify = cli("verify", "--json")
        assert verify.returncode == 0, verify.stdout
        with cli.state() as state:
            assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
        assert cli("status").stdout.startswith("OK")
        assert len([u for u in jelly.updates if u["UpdateType"] == "Deleted"]) == 2
    finally:
        jelly.stop()
        db.close()
