"""Upgrades and renames end to end: the installed `metarr-sync run` against the fake Kodi,
Jellyfin and Plex (tests/support/fake_players.py), with Metarr's media on this machine's
disk (metarr-sync looks there before it removes an old file's entry).

Radarr/Sonarr replace a file under a new name (720p → 1080p) and Metarr rewrites the
movie's or episode's file_path in place, same row, no timestamp touched. Every player must
end with exactly one entry, for the new file; an old file still on disk (a copy kept beside
the new one) keeps its entry, and the run says why.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.configs import config_with
from support.fake_players import FakeJellyfin, FakeKodi, FakePlayer, FakePlex
from support.metarr_factory import MetarrDB

SYNC = {"timeout": 5, "retry_attempts": 1, "initial_lookback": "all"}


@dataclass
class Media:
    """Metarr's library folder on disk, and the same files on the fake players' "disks"
    (each player sees Metarr's root as its own `player_root`)."""

    root: Path
    fakes: list[FakePlayer]
    player_root: str

    def player_path(self, path: str) -> str:
        return self.player_root + path[len(str(self.root)):]

    def publish(self, path: str) -> str:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).touch()
        for fake in self.fakes:
            fake.add_file(self.player_path(path))
        return self.player_path(path)

    def replace(self, old: str, new: str, *, keep_old: bool = False) -> str:
        """Radarr/Sonarr import a better file under a new name (and delete the old one,
        unless it is kept)."""
        if keep_old:
            shutil.copy(old, new)
        else:
            Path(old).rename(new)
        for fake in self.fakes:
            if not keep_old:
                fake.remove_file(self.player_path(old))
            fake.add_file(self.player_path(new))
        return self.player_path(new)

    def delete(self, path: str) -> None:
        Path(path).unlink()
        for fake in self.fakes:
            fake.remove_file(self.player_path(path))


def renamed(path: str, suffix: str) -> str:
    stem, dot, ext = path.rpartition(".")
    return f"{stem} - {suffix}{dot}{ext}"


def run(cli) -> tuple[int, dict]:
    result = cli("run", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def queue(cli) -> dict[str, tuple[str, str | None]]:
    with cli.state() as state:
        return {r[0]: (r[1], r[2]) for r in state.execute(
            "SELECT item_key, status, last_error FROM sync_queue ORDER BY item_key")}


@pytest.fixture
def kodi_world(cli, metarr: MetarrDB, tmp_path: Path):
    root = tmp_path / "media"
    metarr.use_disk(Path(root), make_files=False)
    with FakeKodi(sources={"/mnt/movies/": "movies", "/mnt/tv/": "tvshows"}) as kodi:
        media = Media(root, [kodi], "/mnt")
        cli.write_config(config_with(metarr=metarr.path, sync=SYNC,
                                     players=[kodi.player("lounge", [(str(root), "/mnt")])]))
        yield cli, metarr, kodi, media


def add_heat_and_dark(metarr: MetarrDB, media: Media) -> tuple[int, int]:
    heat = metarr.add_movie("Heat", 1995)
    show = metarr.add_series("Dark")
    episode = metarr.add_episode(show, metarr.add_season(show, 1), 1, 1)
    media.publish(metarr.file_of("movies", heat))
    media.publish(metarr.file_of("episodes", episode))
    return heat, episode


def test_kodi_upgrade_rename_of_a_movie_and_an_episode_leaves_one_entry_each(kodi_world):
    cli, metarr, kodi, media = kodi_world
    heat, episode = add_heat_and_dark(metarr, media)
    code, report = run(cli)
    assert code == 0, report
    old_movie = media.player_path(metarr.file_of("movies", heat))
    old_episode = media.player_path(metarr.file_of("episodes", episode))
    assert {old_movie, old_episode} <= kodi.library_files()

    for table, row in (("movies", heat), ("episodes", episode)):
        old = metarr.file_of(table, row)
        new = renamed(old, "1080p")
        media.replace(old, new)
        metarr.replace_file(table, row, new)
    new_movie = media.player_path(metarr.file_of("movies", heat))
    new_episode = media.player_path(metarr.file_of("episodes", episode))
    code, report = run(cli)
    assert code == 0, json.dumps(report)
    (row,) = report["players"]
    assert (row["items"], row["synced"], row["verified"], row["failed"]) == (2, 2, 2, 0)
    assert kodi.library_files() == {new_movie, "/mnt/tv/Dark/", new_episode}
    assert sorted(kodi.removed) == sorted([old_movie, old_episode])
    assert (kodi.calls("VideoLibrary.RemoveMovie"), kodi.calls("VideoLibrary.RemoveEpisode")
            ) == (1, 1)
    assert queue(cli) == {}
    # Nothing changed since: nothing is sent.
    kodi.reset_log()
    code, report = run(cli)
    assert (code, report["items"], kodi.count()) == (0, 0, 0)


def test_kodi_keeps_the_old_entry_of_a_copy_kept_on_disk_and_says_why(kodi_world):
    cli, metarr, kodi, media = kodi_world
    heat, _ = add_heat_and_dark(metarr, media)
    assert run(cli)[0] == 0
    old = metarr.file_of("movies", heat)
    new = renamed(old, "1080p")
    media.replace(old, new, keep_old=True)
    metarr.replace_file("movies", heat, new)

    code, report = run(cli)
    assert code == 1, json.dumps(report)
    (row,) = report["players"]
    # Sent, then judged by the run's own verification: not one entry, so not verified.
    assert (row["status"], row["synced"], row["failed"], row["verified"]) == (
        "partial", 0, 1, 0)
    assert kodi.calls("VideoLibrary.RemoveMovie") == 0
    assert {media.player_path(old), media.player_path(new)} <= kodi.library_files()
    status, why = queue(cli)[f"movie:{heat}"]
    assert status == "unverified"
    assert why == (f"Kodi lists {media.player_path(old)} beside the new file "
                   f"{media.player_path(new)}: {old} is still on disk (a copy kept beside "
                   "the new file?), so its entry was kept: delete that file if it is not "
                   "wanted, and the next run removes the entry")
    listed = cli("queue", "list", "--json")
    (entry,) = json.loads(listed.stdout)["entries"]
    assert (entry["last_error"], entry["path"], entry["previous_paths"]) == (why, new, [old])

    # The person deletes the copy: the next run finishes the job.
    media.delete(old)
    code, report = run(cli)
    assert code == 0, json.dumps(report)
    assert kodi.removed == [media.player_path(old)]
    assert media.player_path(new) in kodi.library_files()
    assert media.player_path(old) not in kodi.library_files()
    assert queue(cli) == {}


# --- Jellyfin and Plex ------------------------------------------------------------------

@pytest.fixture(params=["same item", "new item"])
def servers(request, cli, metarr: MetarrDB, tmp_path: Path):
    """A fake Jellyfin and a fake Plex seeing Metarr's media as /media. Plex is run both
    ways users report it: the new file joining the item as a new version, or becoming an
    item of its own beside the old one (marked missing)."""
    root = tmp_path / "media"
    metarr.use_disk(Path(root), make_files=False)
    with FakeJellyfin() as jelly, FakePlex() as plex:
        plex.upgrades_as_new_items = request.param == "new item"
        cli.write_config(config_with(metarr=metarr.path, sync=SYNC, players=[
            jelly.player("jelly", [(str(root), "/media")]),
            plex.player("plex", [(str(root), "/media")])]))
        yield cli, metarr, jelly, plex, Media(root, [jelly, plex], "/media")


def verify(cli) -> dict[str, dict]:
    result = cli("verify", "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["players"]}


def test_jellyfin_and_plex_upgrade_rename_leaves_one_entry_each(servers):
    cli, metarr, jelly, plex, media = servers
    heat, episode = add_heat_and_dark(metarr, media)
    assert run(cli)[0] == 0
    assert {p: r["verified"] for p, r in verify(cli).items()} == {"jelly": 3, "plex": 3}
    olds = [media.player_path(metarr.file_of(t, r))
            for t, r in (("movies", heat), ("episodes", episode))]

    for table, row in (("movies", heat), ("episodes", episode)):
        old = metarr.file_of(table, row)
        new = renamed(old, "Bluray-1080p")
        media.replace(old, new)
        metarr.replace_file(table, row, new)
    news = [media.player_path(metarr.file_of(t, r))
            for t, r in (("movies", heat), ("episodes", episode))]
    code, report = run(cli)
    assert code == 0, json.dumps(report)
    assert {p["name"]: p["synced"] for p in report["players"]} == {"jelly": 2, "plex": 2}

    # Jellyfin was told about both files in one report; it validates the folder above
    # them: the old items go, the new files are the movie's and the episode's entries.
    (report_sent,) = [r.json["Updates"] for r in jelly.received("/Library/Media/Updated")][-1:]
    assert sorted((u["Path"], u["UpdateType"]) for u in report_sent) == sorted(
        [(n, "Created") for n in news] + [(o, "Deleted") for o in olds])
    assert jelly.library_files() == {news[0], "/media/tv/Dark", news[1]}
    # Plex scanned the folders (the old files are marked missing). metarr-sync never
    # empties its trash for an upgrade: the trash may hold other missing items.
    assert plex.emptied == []
    checked = verify(cli)
    if plex.upgrades_as_new_items:
        # Two entries each until the trash is emptied: said, with what to do.
        assert {p: (r["verified"], r["failed"]) for p, r in checked.items()} == {
            "jelly": (2, 0), "plex": (0, 2)}
        for key in (f"movie:{heat}", f"episode:{episode}"):
            status, why = queue(cli)[key]
            assert status == "unverified" and "otherwise empty the trash in Plex" in why
        # Plex's own "Empty trash automatically after every scan" (its default) does it.
        for section in plex.sections:
            plex._empty_trash(section)
        # The next run delivers them again (unverified items are resent), and they check.
        assert run(cli)[0] == 0
        checked = verify(cli)
        assert (checked["plex"]["verified"], checked["plex"]["failed"]) == (2, 0)
    else:
        # The new file joined the item: one entry each (the old version unavailable).
        assert {p: (r["verified"], r["failed"]) for p, r in checked.items()} == {
            "jelly": (2, 0), "plex": (2, 0)}
    assert sorted(v[0] for v in plex.entries().values()) == sorted(news)
    assert queue(cli) == {}


def test_plex_without_clean_deleted_keeps_the_old_entry_and_says_why(servers):
    cli, metarr, jelly, plex, media = servers
    cli.write_config(cli.config.read_text().replace(
        'initial_lookback = "all"', 'initial_lookback = "all"\nclean_deleted = false'))
    heat, _ = add_heat_and_dark(metarr, media)
    assert run(cli)[0] == 0
    assert verify(cli)["plex"]["verified"] == 3
    old = metarr.file_of("movies", heat)
    new = renamed(old, "Bluray-1080p")
    media.replace(old, new)
    metarr.replace_file("movies", heat, new)
    assert run(cli)[0] == 0
    assert plex.emptied == []
    checked = verify(cli)
    if plex.upgrades_as_new_items:
        # Two entries: the old one shown as unavailable until the trash is emptied.
        assert (checked["plex"]["verified"], checked["plex"]["failed"]) == (0, 1)
        status, why = queue(cli)[f"movie:{heat}"]
        assert status == "unverified"
        assert why.startswith(f"Plex still lists {media.player_path(old)} beside the new "
                              f"file {media.player_path(new)}")
        assert "otherwise empty the trash in Plex" in why
    else:
        # One entry with an unavailable version: the viewer sees one Heat.
        assert (checked["plex"]["verified"], checked["plex"]["failed"]) == (1, 0)
        assert [media.player_path(new), media.player_path(old)] in plex.entries().values()
