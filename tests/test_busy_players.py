"""Busy players, through the installed command against the fake players: who is left alone
while someone watches (skip_active: per player, by default on for Kodi only), and how long
an update waits for the viewers before it goes all the same (max_defer).

Someone watching is the fakes' own model of each API: Plex's /status/sessions lists a
stream per viewer, Jellyfin's /Sessions has a NowPlayingItem, Kodi's
Player.GetActivePlayers names a player. "Waited longer" is made by moving the stored time
of the first deferral back, not by sleeping.
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import Cli
from support.configs import config_with, jellyfin, kodi, plex
from support.fake_players import FakeJellyfin, FakeKodi, FakePlayer, FakePlex
from support.metarr_factory import MetarrDB

from metarr_sync import state as state_module
from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.metarr import Item
from metarr_sync.players.base import Outcome, Result
from metarr_sync.stamps import max_defer_seconds, now_stamp, spoken
from metarr_sync.state import MIGRATIONS, SCHEMA_VERSION, State

SYNC = {"timeout": 10, "retry_attempts": 0}
ROOT = {"plex": "/media/movies", "jellyfin": "/media/movies", "kodi": "/mnt/movies"}


def start(kind: str) -> FakePlayer:
    if kind == "plex":
        return FakePlex().start()
    if kind == "jellyfin":
        return FakeJellyfin().start()
    return FakeKodi().start()


def watching(fake: FakePlayer) -> None:
    """Someone starts watching, as each player's API shows it."""
    if isinstance(fake, FakePlex):
        fake.playing = 1
    elif isinstance(fake, FakeJellyfin):
        fake.sessions = [{"Id": "s1", "DeviceId": "tv", "NowPlayingItem": {"Name": "Heat"},
                          "PlayState": {"IsPaused": False}}]
    else:
        assert isinstance(fake, FakeKodi)
        fake.playing = True


def table(kind: str, fake: FakePlayer, metarr: MetarrDB, **keys: Any) -> dict[str, Any]:
    build = {"plex": plex, "jellyfin": jellyfin, "kodi": kodi}[kind]
    token = {"token": fake.token} if kind != "kodi" else {}  # type: ignore[attr-defined]
    return build("busy", url=fake.url, mappings=[(metarr.movies_root, ROOT[kind])],
                 **token, **keys)


def configure(cli: Cli, metarr: MetarrDB, player: dict[str, Any], **sync: Any) -> None:
    cli.write_config(config_with(metarr=metarr.path, players=[player],
                                 sync={**SYNC, **sync}))


def new_movie(metarr: MetarrDB, fake: FakePlayer, kind: str) -> tuple[str, str]:
    """A movie Metarr just published, whose file the player can find: (key, folder)."""
    movie = metarr.add_movie("Heat", 1995)
    file = ROOT[kind] + metarr.file_of("movies", movie)[len(metarr.movies_root):]
    fake.add_file(file)
    return f"movie:{movie}", file.rsplit("/", 1)[0]


def run(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli("run", "--json", *args)
    assert result.returncode == 0, result.stdout + result.stderr
    (player,) = json.loads(result.stdout)["players"]
    return player


def sent_to(fake: FakePlayer) -> list[str]:
    """What the player was asked to do about the library: scans and refreshes."""
    if isinstance(fake, FakePlex):
        return [f"scan {folder}" for _, folder in fake.scans] + [
            f"refresh {key}" for key in fake.refreshed]
    if isinstance(fake, FakeJellyfin):
        return [f"{r.method} {r.path}" for r in fake.received()
                if r.method == "POST" and "/Sessions/" not in r.path]
    assert isinstance(fake, FakeKodi)
    return [f"scan {folder}" for folder in fake.scans] + [
        f"refresh {file}" for file in fake.refreshed]


def queue(cli: Cli) -> list[dict[str, Any]]:
    with cli.state() as state:
        return [dict(r) for r in state.execute(
            "SELECT item_key, status, last_error, deferred_since FROM sync_queue")]


def backdate(cli: Cli, seconds: float) -> None:
    """The updates waiting were first deferred `seconds` ago."""
    with cli.state() as state:
        state.execute("UPDATE sync_queue SET deferred_since = ?",
                      (now_stamp(datetime.now(UTC) - timedelta(seconds=seconds)),))


@pytest.fixture
def fakes():
    started: list[FakePlayer] = []

    def make(kind: str) -> FakePlayer:
        started.append(start(kind))
        return started[-1]

    yield make
    for fake in started:
        fake.stop()


# --- who waits for the viewers --------------------------------------------------------------

@pytest.mark.parametrize("kind", ["plex", "jellyfin"])
def test_a_server_with_someone_streaming_gets_its_update_at_once_by_default(
        cli, metarr, fakes, kind):
    fake = fakes(kind)
    configure(cli, metarr, table(kind, fake, metarr))
    key, folder = new_movie(metarr, fake, kind)
    watching(fake)
    player = run(cli)
    assert (player["status"], player["synced"], player["deferred"]) == ("synced", 1, 0)
    assert player["sent_while_watching"] == [] and player["notes"] == []
    assert sent_to(fake), "nothing was sent"
    if kind == "plex":
        assert sent_to(fake)[0] == f"scan {folder}"
    assert [r["status"] for r in queue(cli)] in ([], ["sent"])  # Plex verifies later


def test_kodi_with_playback_is_deferred_by_default(cli, metarr, fakes):
    fake = fakes("kodi")
    configure(cli, metarr, table("kodi", fake, metarr))
    key, _ = new_movie(metarr, fake, "kodi")
    watching(fake)
    player = run(cli)
    assert (player["status"], player["synced"], player["deferred"]) == ("deferred", 0, 1)
    assert sent_to(fake) == []
    (row,) = queue(cli)
    assert (row["item_key"], row["status"], row["last_error"]) == (
        key, "deferred", "player busy: someone is watching")
    assert row["deferred_since"] is not None


def test_sync_skip_active_false_overrides_kodis_default(cli, metarr, fakes):
    fake = fakes("kodi")
    configure(cli, metarr, table("kodi", fake, metarr), skip_active=False)
    _, folder = new_movie(metarr, fake, "kodi")
    watching(fake)
    player = run(cli)
    assert (player["status"], player["synced"], player["deferred"]) == ("synced", 1, 0)
    assert f"scan {folder}/" in sent_to(fake)
    # ... and a player's own key overrides [sync]'s.
    configure(cli, metarr, table("kodi", fake, metarr, skip_active=True), skip_active=False)
    metarr.republish_movie(metarr.add_movie("Ronin", 1998))
    assert run(cli)["status"] == "deferred"


def test_sync_skip_active_true_makes_a_plex_wait(cli, metarr, fakes):
    fake = fakes("plex")
    configure(cli, metarr, table("plex", fake, metarr), skip_active=True)
    new_movie(metarr, fake, "plex")
    watching(fake)
    assert run(cli)["deferred"] == 1
    assert sent_to(fake) == []


# --- max_defer ------------------------------------------------------------------------------

def test_plex_update_waits_up_to_max_defer_then_goes_while_someone_streams(
        cli, metarr, fakes):
    fake = fakes("plex")
    configure(cli, metarr, table("plex", fake, metarr, skip_active=True))
    key, folder = new_movie(metarr, fake, "plex")
    watching(fake)

    first = run(cli)
    assert (first["status"], first["deferred"], first["synced"]) == ("deferred", 1, 0)
    (row,) = queue(cli)
    since = row["deferred_since"]
    # Still streaming at the next run, 5 hours after the first deferral: still waits,
    # and the first deferral's time is kept.
    backdate(cli, 5 * 3600)
    kept = queue(cli)[0]["deferred_since"]
    assert kept < since
    assert run(cli)["deferred"] == 1
    assert queue(cli)[0]["deferred_since"] == kept
    assert sent_to(fake) == []

    # Past max_defer (6 h by default): it goes although someone is still streaming.
    backdate(cli, 6 * 3600 + 2 * 60 + 5)
    result = cli("-v", "run")
    assert result.returncode == 0, result.stdout + result.stderr
    cause = "sent while someone was watching: deferred for 6h 2m (max_defer 6h)"
    assert f"busy: 1 update {cause}" in result.stdout.splitlines()
    assert f"busy: {key} (Heat) {cause}" in result.stderr
    assert sent_to(fake)[0] == f"scan {folder}"
    (row,) = queue(cli)  # delivered; Plex is verified by a later run
    assert (row["status"], row["last_error"], row["deferred_since"]) == ("sent", cause, None)
    listed = cli("queue", "list", "--json")
    assert [e["last_error"] for e in json.loads(listed.stdout)["entries"]] == [cause]


def test_the_json_says_which_update_went_while_someone_watched(cli, metarr, fakes):
    fake = fakes("plex")
    configure(cli, metarr, table("plex", fake, metarr, skip_active=True, max_defer="2h"))
    key, _ = new_movie(metarr, fake, "plex")
    other = metarr.add_movie("Ronin", 1998)
    fake.add_file(ROOT["plex"] + metarr.file_of("movies", other)[len(metarr.movies_root):])
    watching(fake)
    assert run(cli)["deferred"] == 2
    # Only Heat waited long enough (its deferral moved back); Ronin keeps waiting.
    with cli.state() as state:
        state.execute("UPDATE sync_queue SET deferred_since = ? WHERE item_key = ?",
                      (now_stamp(datetime.now(UTC) - timedelta(hours=2, seconds=30)), key))
    player = run(cli)
    assert (player["status"], player["synced"], player["deferred"]) == ("deferred", 1, 1)
    cause = "sent while someone was watching: deferred for 2h (max_defer 2h)"
    (sent,) = player["sent_while_watching"]
    # The run itself takes a moment: the wait is 2 h 30 s and a few seconds.
    assert 7230 <= sent.pop("deferred_seconds") < 7290
    assert sent == {"item": key, "title": "Heat", "deferred_for": "2h", "max_defer": "2h",
                    "cause": cause}
    assert player["notes"] == [f"1 update {cause}"]
    assert {r["item_key"]: r["status"] for r in queue(cli)} == {
        key: "sent", f"movie:{other}": "deferred"}


def test_an_overdue_update_the_player_fails_is_not_said_to_be_sent(cli, metarr, fakes):
    fake = fakes("plex")
    configure(cli, metarr, table("plex", fake, metarr, skip_active=True))
    key, _ = new_movie(metarr, fake, "plex")
    watching(fake)
    assert run(cli)["deferred"] == 1
    backdate(cli, 7 * 3600)
    fake.misbehave(500, match="refresh")
    result = cli("run", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    (player,) = json.loads(result.stdout)["players"]
    assert player["sent_while_watching"] == []
    assert not any("watching" in note for note in player["notes"])
    assert [f["item"] for f in player["failures"]] == [key]
    assert [r["status"] for r in queue(cli)] == ["pending"]


def test_a_short_max_defer_and_never(cli, metarr, fakes):
    fake = fakes("plex")
    configure(cli, metarr, table("plex", fake, metarr, skip_active=True), max_defer="never")
    new_movie(metarr, fake, "plex")
    watching(fake)
    assert run(cli)["deferred"] == 1
    backdate(cli, 400 * 86400)  # "never": however long it waited
    assert run(cli)["deferred"] == 1
    assert sent_to(fake) == []
    # The player's own max_defer wins over [sync]'s.
    configure(cli, metarr, table("plex", fake, metarr, skip_active=True, max_defer="2s"),
              max_defer="never")
    backdate(cli, 3)
    player = run(cli)
    assert (player["synced"], player["deferred"]) == (1, 0)
    (sent,) = player["sent_while_watching"]
    assert 3 <= sent["deferred_seconds"] < 60  # 3 s and the run's own few seconds
    assert sent["cause"] == ("sent while someone was watching: deferred for "
                             f"{sent['deferred_seconds']}s (max_defer 2s)")


def test_removals_still_go_while_someone_watches(cli, metarr, fakes, tmp_path):
    """Removals keep today's rule: they never wait for the viewers."""
    fake = fakes("kodi")
    metarr.use_disk(tmp_path / "media")
    configure(cli, metarr, table("kodi", fake, metarr), initial_lookback="all")
    new_movie(metarr, fake, "kodi")
    gone = metarr.add_movie("Ronin", 1998)
    gone_file = ROOT["kodi"] + metarr.file_of("movies", gone)[len(metarr.movies_root):]
    fake.add_file(gone_file)
    assert run(cli)["synced"] == 2
    metarr.republish_movie(metarr.add_movie("Alien", 1979))
    metarr.delete_media("movies", gone)
    metarr.soft_delete("movies", gone)
    fake.remove_file(gone_file)
    fake.reset_log()
    watching(fake)
    player = run(cli)
    assert (player["status"], player["deferred"], player["synced"]) == ("deferred", 1, 1)
    assert fake.removed and all("Ronin" in path for path in fake.removed)


# --- configuration -------------------------------------------------------------------------

@pytest.mark.parametrize(("where", "value", "message"), [
    ("sync", "soon", "sync.max_defer: 'soon' is not a duration like \"6h\", \"30m\" or "
                     "\"2d\", nor \"never\""),
    ("sync", "0s", "sync.max_defer: '0s' is no wait at all: to send updates at once while "
                   "someone watches, set skip_active = false; to wait for as long as someone "
                   "watches, write \"never\""),
    ("player", "6", "players.busy.max_defer: '6' needs a unit: \"6h\", \"6m\" or \"6s\""),
    ("player", 6, "players.busy.max_defer: must be a string, not an integer 6"),
])
def test_a_bad_max_defer_is_a_config_error(cli, metarr, where, value, message):
    keys = {"max_defer": value}
    player = plex("busy", url="http://127.0.0.1:9", token="t",
                  **(keys if where == "player" else {}))
    configure(cli, metarr, player, **(keys if where == "sync" else {}))
    result = cli("run")
    assert result.returncode == 3
    assert result.stderr.strip() == f"metarr-sync: {cli.config}: {message}"
    assert "Traceback" not in result.stderr


def test_skip_active_must_be_a_boolean(cli, metarr):
    configure(cli, metarr, plex("busy", url="http://127.0.0.1:9", token="t",
                                skip_active="yes"))
    result = cli("run")
    assert result.returncode == 3
    assert ("players.busy.skip_active: must be a boolean, not a string 'yes'"
            in result.stderr)


# --- the state: when an update was first deferred ------------------------------------------

def columns(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {r[1] for r in conn.execute("PRAGMA table_info(sync_queue)")}


def test_first_deferral_is_kept_until_delivery_in_a_file_migrated_from_schema_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A state file as the version before this one wrote it (schema 2): no deferred_since.
    monkeypatch.setattr(state_module, "MIGRATIONS", MIGRATIONS[:2])
    State(tmp_path).close()
    monkeypatch.undo()
    path = tmp_path / "state.sqlite"
    assert "deferred_since" not in columns(path)

    state = State(tmp_path)
    try:
        assert "deferred_since" in columns(path)
        version = state.conn.execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION == len(MIGRATIONS) == 5
        item = Item(kind="movie", id=1, path="/data/movies/M1/M1.mkv", title="M1",
                    stamp="2026-11-01T10:00:00.000Z")
        state.enqueue([item], ["plex"], "run")
        assert state.deferred_since("plex") == {}
        busy = Outcome(item.key, Result.DEFERRED, "player busy: someone is watching")
        state.record("plex", [item], [busy], None)
        first = state.deferred_since("plex")[item.key]
        time.sleep(0.01)  # a later stamp, were it rewritten
        state.record("plex", [item], [busy], None)
        state.record("plex", [item], [Outcome(item.key, Result.RETRY, "timed out")], None)
        assert state.deferred_since("plex") == {item.key: first}
        state.record("plex", [item], [Outcome(item.key, Result.SENT)], None)
        assert state.deferred_since("plex") == {}
    finally:
        state.close()
    State(tmp_path).close()  # opened again: nothing to migrate twice


@pytest.mark.parametrize(("seconds", "said"), [
    (0, "0s"), (45, "45s"), (61, "1m 1s"), (3600, "1h"), (3605, "1h"), (21733, "6h 2m"),
    (183605, "2d 3h")])
def test_waits_are_said_in_their_two_largest_units(seconds: int, said: str) -> None:
    assert spoken(seconds) == said


@pytest.mark.parametrize(("text", "seconds"), [
    ("6h", 21600.0), ("1.5h", 5400.0), (" 90 S ", 90.0), ("never", None), ("Never", None)])
def test_max_defer_takes_a_duration_or_never(text: str, seconds: float | None) -> None:
    assert max_defer_seconds(text) == seconds


def test_config_show_says_which_players_wait_for_their_viewers(cli, metarr):
    cli.write_config(config_with(metarr=metarr.path, sync={"max_defer": "3h"}, players=[
        kodi("lounge", url="http://127.0.0.1:9"),
        plex("den", url="http://127.0.0.1:9", token="t"),
        jellyfin("jelly", url="http://127.0.0.1:9", token="t", skip_active=True,
                 max_defer="never")]))
    shown = cli("config", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert doc["sync"]["skip_active"] is None  # left to each player type
    assert {name: (p["skip_active"], p["max_defer"]) for name, p in doc["players"].items()
            } == {"lounge": (True, "3h"), "den": (False, "3h"), "jelly": (True, "never")}


def test_skip_active_comes_from_the_player_then_sync_then_its_type(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A plugin type (METARR_SYNC_PLUGINS) is not known: its viewers are left alone.
    monkeypatch.setenv("METARR_SYNC_PLUGINS", "other=somewhere:Player")
    unset, on, off = SyncConfig(), SyncConfig(skip_active=True), SyncConfig(skip_active=False)
    defaults = {t: PlayerConfig("p", t, "http://x").skips_active(unset)
                for t in ("kodi", "jellyfin", "emby", "plex", "other")}
    assert defaults == {"kodi": True, "jellyfin": False, "emby": False, "plex": False,
                        "other": True}
    assert PlayerConfig("p", "plex", "http://x").skips_active(on) is True
    assert PlayerConfig("p", "kodi", "http://x").skips_active(off) is False
    assert PlayerConfig("p", "kodi", "http://x", skip_active=True).skips_active(off) is True
    assert PlayerConfig("p", "plex", "http://x", skip_active=False).skips_active(on) is False
