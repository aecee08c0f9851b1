"""The run says why: below its table, `run` lists the items it left failed, unverified or
to retry, each with its cause (the first ten, then how many more and the `queue list`
command that shows them), and `--json` gives every player a `failures` list. The
installed command against a fake Kodi (tests/support/fake_players.py)."""

from __future__ import annotations

import json

import pytest
from support.configs import config_with
from support.fake_players import FakeKodi

SEEN = [f"/mnt/movies/Seen {n} ({2000 + n})/Seen {n} ({2000 + n}).mkv" for n in range(3)]
UNMAPPED_SHOW = ("no path mapping covers /data/media/tv/Severance (mapped: "
                 "/data/media/movies)")
UNMAPPED_EPISODE = ("no path mapping covers /data/media/tv/Severance/Season 01/"
                    "Severance - S01E{:02d}.mkv (mapped: /data/media/movies)")
NOT_SEEN = ("sent a scan of /mnt/movies/Heat (1995)/, but Kodi does not see that folder in "
            "/mnt/movies/: check the mapping for /data/media/movies")


def one_kodi(db: object, kodi: FakeKodi, mappings: list[tuple[str, str]], **sync: object
             ) -> str:
    """lounge, every item from the start; `sync`: more [sync] keys."""
    return config_with(metarr=str(db), sync={"initial_lookback": "all", **sync},
                       players=[kodi.player("lounge", mappings)])


@pytest.fixture
def kodi():
    """A Kodi with a movies source only, which has three of the movies on its disk."""
    fake = FakeKodi(sources={"/mnt/movies/": "movies"}).start()
    fake.add_file(*SEEN)
    yield fake
    fake.stop()


def setup(cli, metarr, kodi, episodes: int = 1, **sync: object) -> None:
    """Three movies Kodi has, Heat which it does not, and a show with `episodes` episodes
    that no mapping covers (only the movies are mapped)."""
    for n in range(3):
        metarr.add_movie(f"Seen {n}", 2000 + n)
    metarr.add_movie("Heat", 1995)
    show = metarr.add_series("Severance")
    season = metarr.add_season(show, 1)
    for number in range(1, episodes + 1):
        metarr.add_episode(show, season, 1, number)
    cli.write_config(one_kodi(metarr.path, kodi, [("/data/media/movies", "/mnt/movies")],
                              **sync))


def below_table(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    end = max(i for i, line in enumerate(lines) if line.startswith("└"))
    return [line.rstrip() for line in lines[end + 1:] if line.strip()]


def queue_causes(cli) -> dict[str, tuple[str, str]]:
    with cli.state() as state:
        return {r["item_key"]: (r["status"], r["last_error"]) for r in state.execute(
            "SELECT item_key, status, last_error FROM sync_queue")}


def test_failed_and_unverified_items_are_listed_with_their_causes(cli, metarr, kodi):
    setup(cli, metarr, kodi)
    result = cli("run")
    assert result.returncode == 1, result.stderr
    row = next(line for line in result.stdout.splitlines() if "│ lounge" in line)
    assert "partial" in row
    # Grouped by cause, each cause said once, its items below it; in the run's order.
    assert below_table(result.stdout) == [
        "Not done (3 items), and why:",
        f"lounge, failed: {UNMAPPED_EPISODE.format(1)}",
        "  - episode:1  Severance S01E01",
        f"lounge, failed: {UNMAPPED_SHOW}",
        "  - series:1  Severance",
        f"lounge, unverified: {NOT_SEEN}",
        "  - movie:4  Heat",
    ]
    # What the run said is what the queue holds.
    assert queue_causes(cli) == {"episode:1": ("failed", UNMAPPED_EPISODE.format(1)),
                                 "series:1": ("failed", UNMAPPED_SHOW),
                                 "movie:4": ("unverified", NOT_SEEN)}


def test_json_gives_each_player_its_failures(cli, metarr, kodi):
    setup(cli, metarr, kodi)
    result = cli("run", "--json")
    assert result.returncode == 1, result.stderr
    (player,) = json.loads(result.stdout)["players"]
    assert (player["failed"], player["synced"], player["verified"]) == (3, 3, 3)
    assert player["failures"] == [
        {"item": "episode:1", "title": "Severance S01E01", "result": "failed",
         "cause": UNMAPPED_EPISODE.format(1)},
        {"item": "series:1", "title": "Severance", "result": "failed",
         "cause": UNMAPPED_SHOW},
        {"item": "movie:4", "title": "Heat", "result": "unverified", "cause": NOT_SEEN},
    ]
    # The next run resends Heat only; the failed items wait for a person.
    again = json.loads(cli("run", "--json").stdout)["players"][0]
    assert [f["item"] for f in again["failures"]] == ["movie:4"]


def test_a_clean_run_lists_nothing_and_its_json_has_an_empty_list(cli, metarr, kodi):
    for n in range(3):
        metarr.add_movie(f"Seen {n}", 2000 + n)
    cli.write_config(one_kodi(metarr.path, kodi, [("/data/media/movies", "/mnt/movies")]))
    result = cli("run")
    assert result.returncode == 0, result.stderr
    assert below_table(result.stdout) == []
    assert "Not done" not in result.stdout
    kodi.add_file("/mnt/movies/Seen 9 (2009)/Seen 9 (2009).mkv")
    metarr.add_movie("Seen 9", 2009)
    doc = json.loads(cli("run", "--json").stdout)
    assert doc["players"][0]["synced"] == 1 and doc["players"][0]["failures"] == []


def test_twelve_failures_list_ten_and_the_command_for_the_rest(cli, metarr, kodi):
    setup(cli, metarr, kodi, episodes=11)
    # Heat is on Kodi too: the show and its eleven episodes are the twelve failures.
    kodi.add_file("/mnt/movies/Heat (1995)/Heat (1995).mkv")
    result = cli("run")
    assert result.returncode == 1, result.stderr
    lines = below_table(result.stdout)
    assert lines[0] == "Not done (12 items), and why:"
    listed = [line for line in lines if line.startswith("  - ")]
    assert listed == [f"  - episode:{n}  Severance S01E{n:02d}" for n in range(1, 11)]
    assert lines[-1] == "and 2 more: `metarr-sync queue list --status failed`"
    # The command named shows all twelve, the two cut ones among them.
    shown = json.loads(cli("queue", "list", "--status", "failed", "--json").stdout)
    assert sorted(e["item"] for e in shown["entries"]) == sorted(
        [f"episode:{n}" for n in range(1, 12)] + ["series:1"])


def test_a_player_that_is_down_lists_its_items_under_its_one_cause(cli, metarr, kodi):
    setup(cli, metarr, kodi, max_attempts=2)
    kodi.misbehave("refused")
    first = cli("run")
    assert first.returncode == 1
    lines = below_table(first.stdout)
    header = [line for line in lines if line.startswith("lounge, ")]
    # Nothing was tried item by item: one cause (the player's), every item under it.
    assert len(header) == 1 and "refused the connection" in header[0]
    assert header[0].startswith("lounge, failed, tried again next run: ")
    assert len([line for line in lines if line.startswith("  - ")]) == 6
    assert lines[0] == "Not done (6 items), and why:"
    doc = json.loads(cli("run", "--json").stdout)
    failures = doc["players"][0]["failures"]
    # The second run in a row was the last allowed: failed, for a person, and said so.
    assert {f["result"] for f in failures} == {"failed"}
    assert all("failed 2 runs in a row" in f["cause"] for f in failures)
    assert {f["item"]: ("failed", f["cause"]) for f in failures} == queue_causes(cli)


def test_removals_the_guard_holds_are_named_under_its_note(cli, metarr, kodi, tmp_path):
    media = tmp_path / "media"
    metarr.use_disk(media)
    films = [metarr.add_movie(f"Film {n}", 2000 + n) for n in range(4)]
    kodi.add_file(*(f"/mnt/movies/Film {n} ({2000 + n})/Film {n} ({2000 + n}).mkv"
                    for n in range(4)))
    cli.write_config(one_kodi(metarr.path, kodi, [(str(media / "movies"), "/mnt/movies")],
                              max_removals=1, max_removal_percent=100))
    assert cli("run").returncode == 0
    for film in films[:2]:
        metarr.delete_media("movies", film)
        metarr.soft_delete("movies", film)
    result = cli("run")
    assert result.returncode == 1
    lines = below_table(result.stdout)
    note = ("lounge: 2 removal(s) held for lounge: more than max_removals = 1. Their media "
            "is gone from disk; if that is right, send them with `metarr-sync run "
            "--allow-removals 2`, or forget them with `metarr-sync queue clear --held "
            "--player lounge`")
    # The guard's words once (its note), then which items it held: what a person needs
    # to decide whether to send them.
    assert lines == [note, "Not done (2 items), and why:", "lounge, held: see above",
                     f"  - movie:{films[0]}  Film 0", f"  - movie:{films[1]}  Film 1"]
    assert kodi.removed == []
    doc = json.loads(cli("run", "--json").stdout)
    assert [(f["item"], f["result"]) for f in doc["players"][0]["failures"]] == [
        (f"movie:{films[0]}", "held"), (f"movie:{films[1]}", "held")]
    assert doc["players"][0]["failures"][0]["cause"] == note[len("lounge: "):]
