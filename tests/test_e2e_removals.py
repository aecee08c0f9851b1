"""Removals that can never wipe a library, end to end through the installed command.

Metarr never deletes media: a soft delete, a deleted library or a fresh database only
drops rows. A player gets a removal only for media that is gone from disk, never more at
once than the guard allows, and nothing at all while an anchor file is missing. The
recording adapter (tests/support/recorder_player.py) shows what each player was sent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.configs import config_with, recorder
from support.metarr_factory import MetarrDB, ago


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def db(metarr: MetarrDB, media: Path) -> MetarrDB:
    metarr.use_disk(media)
    return metarr


def configure(cli, db: MetarrDB, media: Path, sync: dict | None = None,
              lounge: dict | None = None) -> None:
    cli.write_config(config_with(
        metarr=db.path, sync={"initial_lookback": "all", **(sync or {})},
        players=[recorder("lounge", mappings=[(media, "smb://nas/media")], **(lounge or {})),
                 recorder("bedroom")]))


def removals(cli, player: str) -> list[str]:
    return sorted(t["key"] for t in cli.sent(player) if t["removed"])


def library(db: MetarrDB, count: int) -> list[int]:
    return [db.add_movie(f"Film {n:02d}", 2000 + n % 20, when=ago(days=3)) for n in range(count)]


def first_run(cli) -> None:
    result = cli("run")
    assert result.returncode == 0, result.stdout + result.stderr
    for player in ("lounge", "bedroom"):
        cli.reset_log(player)


def test_a_library_deleted_in_metarr_keeps_its_files_and_removes_nothing(cli, db, media):
    movies = library(db, 5)
    show = db.add_series("Severance")
    season = db.add_season(show, 1)
    episode = db.add_episode(show, season, 1, 1)
    configure(cli, db, media)
    first_run(cli)

    # Metarr's "delete library": the rows cascade away, every file stays.
    for movie in movies:
        db.purge("movies", movie)
    db.purge("episodes", episode)
    db.purge("seasons", season)
    db.purge("series", show)
    result = cli("-v", "run", "--json")
    assert result.returncode == 0, result.stderr
    assert cli.sent("lounge") == [] and cli.sent("bedroom") == []
    report = json.loads(result.stdout)
    for player in report["players"]:
        assert player["status"] == "synced" and player["kept"] == 7 and player["held"] == 0
        assert any("still on disk" in note for note in player["notes"])
    # -v names each item and why it is no removal.
    assert f"movie:{movies[0]}" in result.stderr and "still exists" in result.stderr
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
    # Nothing lingers: the next run has nothing to do.
    again = cli("run", "--json")
    assert json.loads(again.stdout)["items"] == 0


def test_soft_delete_with_the_file_present_removes_nothing(cli, db, media):
    heat, alien = library(db, 2)
    configure(cli, db, media)
    first_run(cli)

    db.soft_delete("movies", heat)  # Metarr's recycle bin: no file touched
    result = cli("run")
    assert result.returncode == 0, result.stderr
    assert removals(cli, "lounge") == [] and removals(cli, "bedroom") == []

    # Restored from the recycle bin: a change like any other, sent as an update.
    db.restore("movies", heat)
    assert cli("run").returncode == 0
    assert [(t["key"], t["removed"]) for t in cli.sent("lounge")] == [(f"movie:{heat}", False)]


def test_a_deleted_file_is_removed_and_verified(cli, db, media):
    heat, alien = library(db, 2)
    configure(cli, db, media)
    first_run(cli)

    db.delete_media("movies", heat)  # Radarr deleted the file ...
    db.soft_delete("movies", heat)  # ... and Metarr's row went to the recycle bin
    result = cli("run", "--json")
    assert result.returncode == 0, result.stderr
    assert removals(cli, "lounge") == [f"movie:{heat}"]
    assert removals(cli, "bedroom") == [f"movie:{heat}"]
    # The removal was checked on the player too, not assumed.
    verified = [c for c in cli.calls("lounge") if c["op"] == "verify"]
    assert verified and f"movie:{heat}" in verified[-1]["keys"]
    lounge = next(p for p in json.loads(result.stdout)["players"] if p["name"] == "lounge")
    assert lounge["verified"] == 1
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0


def test_a_database_repointed_at_an_empty_metarr_removes_nothing(cli, db, media, tmp_path):
    library(db, 6)
    configure(cli, db, media)
    first_run(cli)

    empty = MetarrDB(tmp_path / "fresh.sqlite")  # a fresh Metarr: none of the rows
    empty.close()
    cli.write_config(cli.config.read_text().replace(str(db.path), str(empty.path)))
    result = cli("run", "--json")
    assert result.returncode == 0, result.stderr
    assert cli.sent("lounge") == [] and cli.sent("bedroom") == []
    assert all(p["kept"] == 6 for p in json.loads(result.stdout)["players"])


def test_more_removals_than_max_removals_are_held_until_released(cli, db, media):
    movies = library(db, 40)
    configure(cli, db, media, sync={"max_removals": 20, "max_removal_percent": 100})
    first_run(cli)

    gone = movies[:30]
    for movie in gone:
        db.delete_media("movies", movie)
        db.soft_delete("movies", movie)
    result = cli("run", "--json")
    assert result.returncode == 1, result.stderr
    assert removals(cli, "lounge") == [] and removals(cli, "bedroom") == []
    report = json.loads(result.stdout)
    assert report["status"] == "partial"
    for player in report["players"]:
        assert player["status"] == "held" and player["held"] == 30
        assert any("30 removal(s) held" in n and "--allow-removals 30" in n
                   for n in player["notes"])
    listed = cli("queue", "list", "--status", "held", "--json")
    entries = json.loads(listed.stdout)["entries"]
    assert len(entries) == 60
    assert all("more than max_removals = 20" in e["last_error"] for e in entries)

    status = cli("status")
    assert status.returncode == 1, status.stdout
    assert status.stdout.startswith("WARNING")
    assert "--allow-removals" in status.stdout

    # Still held by the next plain run (and still not sent) ...
    assert cli("run").returncode == 1
    assert removals(cli, "lounge") == []
    # ... until a person releases them.
    released = cli("run", "--allow-removals", "30", "--json")
    assert released.returncode == 0, released.stdout + released.stderr
    expected = sorted(f"movie:{m}" for m in gone)
    assert removals(cli, "lounge") == expected and removals(cli, "bedroom") == expected
    assert all(p["verified"] == 30 for p in json.loads(released.stdout)["players"])
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
    assert cli("status").stdout.startswith("OK")


def test_a_share_of_a_small_library_is_held_per_player(cli, db, media):
    movies = library(db, 10)
    # lounge: the default 5 % (of 10 items: one removal at most); bedroom: its own limit.
    configure(cli, db, media)
    cli.write_config(cli.config.read_text() + "max_removal_percent = 50\n")
    first_run(cli)

    for movie in movies[:3]:
        db.delete_media("movies", movie)
        db.purge("movies", movie)  # rows gone too: only the disk tells
    result = cli("run", "--json")
    assert result.returncode == 1
    report = {p["name"]: p for p in json.loads(result.stdout)["players"]}
    assert report["lounge"]["held"] == 3 and removals(cli, "lounge") == []
    assert "max_removal_percent = 5%" in report["lounge"]["notes"][0]
    assert report["bedroom"]["status"] == "synced"
    assert removals(cli, "bedroom") == sorted(f"movie:{m}" for m in movies[:3])


def test_dry_run_lists_every_removal_it_would_send_and_what_it_holds(cli, db, media):
    movies = library(db, 30)
    configure(cli, db, media, sync={"max_removal_percent": 100},
              lounge={"max_removals": 1})
    first_run(cli)
    for movie in movies[:2]:
        db.delete_media("movies", movie)
        db.soft_delete("movies", movie)

    result = cli("run", "--dry-run")
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    # bedroom would send both removals: each is listed ...
    for movie in movies[:2]:
        assert f"remove {db.movies_root}/Film {movies.index(movie):02d}" in out
    # ... lounge holds both, and says so.
    assert "lounge: 2 removal(s) held for lounge: more than max_removals = 1" in out
    assert cli.sent("lounge") == [] and cli.sent("bedroom") == []
    with cli.state() as state:  # a rehearsal changes nothing
        statuses = {r[0] for r in state.execute("SELECT status FROM sync_queue")}
    assert statuses <= {"pending"}


def test_an_unmounted_share_holds_removals_with_the_cause(cli, db, media):
    movies = library(db, 3)
    configure(cli, db, media)
    first_run(cli)
    for movie in movies:
        db.soft_delete("movies", movie)
    # The share is gone from this machine: its folder is an empty mount point.
    for child in Path(db.movies_root).iterdir():
        for f in child.iterdir():
            f.unlink()
        child.rmdir()
    result = cli("run", "--json")
    assert result.returncode == 1
    assert removals(cli, "lounge") == [] and removals(cli, "bedroom") == []
    listed = json.loads(cli("queue", "list", "--status", "held", "--json").stdout)["entries"]
    assert len(listed) == 6
    assert all("is empty: is the share mounted here?" in e["last_error"] for e in listed)


def test_a_missing_anchor_sends_nothing_and_keeps_everything_queued(cli, db, media, tmp_path):
    movies = library(db, 3)
    anchor = media / ".metarr-anchor"
    anchor.write_text("")
    lounge_anchor = tmp_path / "lounge-share-anchor"
    configure(cli, db, media, sync={"anchors": [str(anchor)]},
              lounge={"anchors": [str(lounge_anchor)]})
    lounge_anchor.write_text("")
    first_run(cli)

    db.delete_media("movies", movies[0])
    db.soft_delete("movies", movies[0])
    db.republish_movie(movies[1])
    lounge_anchor.unlink()  # lounge's own share is gone: only lounge stops
    result = cli("run", "--json")
    assert result.returncode == 1
    report = {p["name"]: p for p in json.loads(result.stdout)["players"]}
    assert report["lounge"]["error_kind"] == "anchor_missing"
    assert str(lounge_anchor) in report["lounge"]["error"]
    assert cli.calls("lounge") == []  # not a scan, not a removal, not even a probe
    assert sorted(t["key"] for t in cli.sent("bedroom")) == sorted(
        [f"movie:{movies[0]}", f"movie:{movies[1]}"])
    with cli.state() as state:
        queued = state.execute("SELECT item_key, status, attempts FROM sync_queue "
                               "WHERE player = 'lounge' ORDER BY 1").fetchall()
    assert [tuple(r) for r in queued] == sorted(
        [(f"movie:{movies[0]}", "pending", 0), (f"movie:{movies[1]}", "pending", 0)])

    anchor.unlink()  # the shared anchor: nobody gets anything
    cli.reset_log("bedroom")
    db.republish_movie(movies[2])
    plain = cli("run")
    assert plain.returncode == 1
    assert f"anchor file {anchor} is missing" in plain.stdout
    assert cli.calls("lounge") == [] and cli.calls("bedroom") == []

    anchor.write_text("")
    lounge_anchor.write_text("")
    assert cli("run").returncode == 0
    assert removals(cli, "lounge") == [f"movie:{movies[0]}"]
