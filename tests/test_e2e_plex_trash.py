"""Plex's trash through the installed command: a removal only scans its folder; the trash
of a section is emptied on a later run, and only when everything in it is metarr-sync's
own removals, which Plex has marked missing.

The fake Plex (tests/support/fake_players.py) runs scans in the background: with
`scan_lag=None` nothing a scan finds shows until the test calls `finish_scans()`, and its
emptyTrash deletes EVERY item of the section marked missing, as Plex does. Plex's deliveries
are verified after `verify_after` (120 s): the tests move the queue's times back instead of
waiting. The removed movie's file is deleted on Metarr's side as well as its row
soft-deleted: a removal is only for media that is gone.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.configs import config_with
from support.fake_players import FakePlex

HEAT = "/media/movies/Heat (1995)/Heat (1995).mkv"
ALIEN = "/media/movies/Alien (1979)/Alien (1979).mkv"
UP = "/media/movies/Up (2009)/Up (2009).mkv"


class World:
    """A Metarr database whose movies are real files under `media`, and a fake Plex that
    already has them (scanned long ago)."""

    def __init__(self, cli, metarr, root: Path, clean: bool = True):
        self.cli, self.metarr = cli, metarr
        self.media = root / "media" / "movies"
        self.plex = FakePlex(scan_lag=None).start()
        self.ids: dict[str, int] = {}
        for title, year, path in (("Heat", 1995, HEAT), ("Alien", 1979, ALIEN),
                                  ("Up", 2009, UP)):
            folder = self.media / f"{title} ({year})"
            folder.mkdir(parents=True)
            (folder / f"{title} ({year}).mkv").write_bytes(b"")
            self.ids[title] = metarr.add_movie(title, year, folder=str(folder))
            self.plex.put_item(path)
            self.plex.add_file(path)
        cli.write_config(config_with(metarr=metarr.path, sync={"clean_deleted": clean},
                                     players=[self.plex.player(
                                         "den", [(str(self.media), "/media/movies")])]))

    def run(self, *args: str) -> dict:
        result = self.cli("run", "--json", *args)
        assert result.returncode in (0, 1), result.stderr
        report = json.loads(result.stdout)
        report["exit"] = result.returncode
        return report

    def delete(self, title: str, year: int, plex_path: str) -> None:
        """The movie's file is deleted, and Metarr moves it to its recycle bin."""
        (self.media / f"{title} ({year})" / f"{title} ({year}).mkv").unlink()
        self.metarr.soft_delete("movies", self.ids[title])
        self.plex.remove_file(plex_path)

    def later(self) -> None:
        """Plex's verify_after has passed since the last delivery."""
        with self.cli.state() as state:
            state.execute("UPDATE sync_queue SET updated_at = '2000-01-01T00:00:00.000Z'")

    def queue(self) -> list[dict]:
        listed = self.cli("queue", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        return [{k: e[k] for k in ("item", "status", "removed", "last_error")}
                for e in json.loads(listed.stdout)["entries"]]

    def sent(self, endpoint: str) -> list[str]:
        return [f"{r.method} {r.path}" + (f"?path={r.param('path')}" if r.param("path") else "")
                for r in self.plex.received(endpoint)]

    def stop(self) -> None:
        self.plex.stop()


@pytest.fixture
def world(cli, metarr, tmp_path):
    built = World(cli, metarr, tmp_path)
    yield built
    built.stop()


def baseline(world: World) -> None:
    """The first run delivers the three movies (Plex has them: refreshes), the second,
    after verify_after, sees them there: nothing is queued any more."""
    assert world.run()["exit"] == 0
    world.plex.finish_scans()
    world.later()
    assert world.run()["exit"] == 0
    assert world.queue() == []
    world.plex.reset_log()


def test_a_trash_holding_an_unrelated_missing_item_is_never_emptied(world, cli):
    baseline(world)
    world.delete("Heat", 1995, HEAT)
    first = world.run()
    assert first["exit"] == 0
    # The removal is the scan of its folder, nothing more.
    assert world.sent("GET /library/sections/{key}/refresh") == [
        "GET /library/sections/1/refresh?path=/media/movies/Heat (1995)"]
    assert world.sent("emptyTrash") == []
    # Plex's scanner runs; meanwhile Alien's share dropped out during a scan of Plex's own,
    # so Plex marked Alien missing too (Metarr still has it, its file is there).
    world.plex.finish_scans()
    with world.plex.lock:
        next(i for i in world.plex.items.values() if i.file == ALIEN).deleted = True
    assert world.plex.trash("1") == [ALIEN, HEAT]

    world.later()
    second = world.run()
    assert world.sent("emptyTrash") == []
    [den] = second["players"]
    assert (den["verified"], den["failed"], second["exit"]) == (0, 1, 1)
    cause = ("Plex marked it missing, but library 'Movies' also has 1 other missing item "
             f"(e.g. {ALIEN}): trash not emptied — check your mounts, then empty the trash "
             "in Plex")
    assert world.queue() == [{"item": f"movie:{world.ids['Heat']}", "status": "unverified",
                              "removed": True, "last_error": cause}]
    shown = cli("queue", "list", env={"COLUMNS": "1000"})
    assert shown.returncode == 0 and cause in shown.stdout, shown.stdout
    # Alien, with its watch history, is still in Plex.
    assert world.plex.purged == [] and ALIEN in {i.file for i in world.plex.items.values()}

    # The next runs send the scan again (an unverified item is delivered up to 3 times)
    # and check again: the trash stays as it is as long as Alien is in it.
    for _ in range(4):
        world.later()
        world.run()
    assert world.sent("emptyTrash") == []
    assert world.plex.purged == []


def test_our_removal_alone_in_the_trash_is_emptied_on_a_later_run_and_verified_gone(world):
    baseline(world)
    world.delete("Heat", 1995, HEAT)
    first = world.run()
    assert first["exit"] == 0
    assert world.sent("GET /library/sections/{key}/refresh") == [
        "GET /library/sections/1/refresh?path=/media/movies/Heat (1995)"]
    assert world.sent("emptyTrash") == []
    assert world.queue()[0]["status"] == "sent"

    # Too early (Plex may still be scanning): nothing is checked, nothing is emptied.
    world.plex.finish_scans()
    early = world.run()
    assert early["players"][0]["verified"] == 0 and world.sent("emptyTrash") == []

    world.later()
    second = world.run()
    [den] = second["players"]
    assert (den["verified"], den["failed"], second["exit"]) == (1, 0, 0)
    assert world.sent("emptyTrash") == ["PUT /library/sections/1/emptyTrash"]
    assert world.plex.purged == [HEAT]
    assert {i.file for i in world.plex.items.values()} == {ALIEN, UP}
    assert world.queue() == []
    with world.cli.state() as state:
        assert tuple(state.execute(
            "SELECT removed, verified_at IS NOT NULL FROM player_sync_status "
            "WHERE item_key = ?", (f"movie:{world.ids['Heat']}",)).fetchone()) == (1, 1)


def test_a_check_before_plex_rescanned_leaves_the_trash_and_says_so(world):
    baseline(world)
    world.delete("Heat", 1995, HEAT)
    world.run()
    world.later()  # ... but Plex's scanner has not got to the folder yet
    world.run()
    assert world.sent("emptyTrash") == []
    [entry] = world.queue()
    assert entry["status"] == "unverified"
    assert entry["last_error"].startswith(f"Plex still lists {HEAT} in library 'Movies' and "
                                          "has not marked it missing")
    # The next run scans the folder again; once Plex has, a later check empties the trash.
    world.run()
    assert world.sent("GET /library/sections/{key}/refresh") == [
        "GET /library/sections/1/refresh?path=/media/movies/Heat (1995)"] * 2
    world.plex.finish_scans()
    world.later()
    assert world.run()["players"][0]["verified"] == 1
    assert world.sent("emptyTrash") == ["PUT /library/sections/1/emptyTrash"]
    assert world.queue() == []


def test_clean_deleted_false_never_empties_the_trash(cli, metarr, tmp_path):
    world = World(cli, metarr, tmp_path, clean=False)
    try:
        baseline(world)
        world.delete("Heat", 1995, HEAT)
        world.run()
        world.plex.finish_scans()
        world.later()
        second = world.run()
        # Plex marked it missing: that is all the removal the user wants.
        assert second["players"][0]["verified"] == 1 and second["exit"] == 0
        assert world.sent("emptyTrash") == []
        assert world.plex.trash("1") == [HEAT] and world.plex.purged == []
        assert world.queue() == []
    finally:
        world.stop()
