"""Player groups: sequential with continue_on_error, parallel, shared libraries."""

from __future__ import annotations

import json

GROUPS = """
[metarr]
database = "{db}"

[groups.house]
sync_mode = "{mode}"
continue_on_error = {cont}
shared_library = {shared}

[players.first]
type = "recorder"
url = "http://127.0.0.1:9"
group = "house"
priority = 10

[players.second]
type = "recorder"
url = "http://127.0.0.1:9"
group = "house"
priority = 20

[players.loner]
type = "recorder"
url = "http://127.0.0.1:9"
"""


def rows(result):
    return {p["name"]: p for p in json.loads(result.stdout)["players"]}


def configure(cli, metarr, mode="sequential", cont="true", shared="false"):
    cli.write_config(GROUPS.format(db=metarr.path, mode=mode, cont=cont, shared=shared))


def test_sequential_group_stops_after_a_failure_without_continue_on_error(cli, metarr):
    configure(cli, metarr, cont="false")
    movie = metarr.add_movie("The Matrix", 1999)
    cli.behave("first", "fail", "offline")
    result = cli("run", "--json")
    assert result.returncode == 1
    got = rows(result)
    assert got["first"]["status"] == "failed"
    assert got["second"]["status"] == "skipped"
    assert got["second"]["error"] == "not tried: first failed earlier in group house"
    assert cli.calls("second") == []
    assert got["loner"]["status"] == "synced"  # other groups are not held up
    with cli.state() as state:
        waiting = state.execute("SELECT player FROM sync_queue ORDER BY player").fetchall()
    assert [r[0] for r in waiting] == ["first", "second"]
    cli.heal("first", "fail")
    assert cli("run").returncode == 0
    assert [t["key"] for t in cli.sent("second")] == [f"movie:{movie}"]


def test_sequential_group_goes_on_with_continue_on_error(cli, metarr):
    configure(cli, metarr, cont="true")
    metarr.add_movie("The Matrix", 1999)
    cli.behave("first", "fail", "timeout")
    got = rows(cli("run", "--json"))
    assert got["first"]["status"] == "failed" and got["second"]["status"] == "synced"


def test_sequential_group_runs_in_priority_order(cli, metarr):
    configure(cli, metarr)
    metarr.add_movie("The Matrix", 1999)
    cli.behave("first", "slow", "0.5")
    assert cli("run").returncode == 0
    first_done = (cli.recorder / "first.jsonl").stat().st_mtime
    second_started = (cli.recorder / "second.jsonl").stat().st_mtime
    assert first_done <= second_started


def test_shared_library_is_synced_through_the_first_reachable_member(cli, metarr):
    configure(cli, metarr, mode="parallel", shared="true")
    movie = metarr.add_movie("The Matrix", 1999)
    cli.behave("first", "fail", "offline")
    result = cli("run", "--json")
    got = rows(result)
    assert got["first"]["status"] == "failed"
    assert got["second"]["status"] == "synced" and got["second"]["synced"] == 1
    assert [t["key"] for t in cli.sent("second")] == [f"movie:{movie}"]
    # The offline member's share was delivered through the shared library too.
    with cli.state() as state:
        assert state.execute("SELECT count(*) FROM sync_queue").fetchone()[0] == 0
    cli.heal("first", "fail")
    cli.reset_log("second")
    again = rows(cli("run", "--json"))
    assert cli.sent("first") == [] and cli.sent("second") == []
    assert again["first"]["items"] == 0


def test_shared_library_skips_the_other_members_when_the_first_works(cli, metarr):
    configure(cli, metarr, mode="parallel", shared="true")
    metarr.add_movie("The Matrix", 1999)
    got = rows(cli("run", "--json"))
    assert got["first"]["status"] == "synced"
    assert got["second"]["status"] == "skipped"
    assert got["second"]["error"] == "shared library: synced through first"
    assert cli.calls("second") == []


def test_disabled_player_is_shown_and_keeps_its_work(cli, metarr):
    configure(cli, metarr, mode="parallel")
    cli.write_config(cli.config.read_text().replace(
        "priority = 20", "priority = 20\nenabled = false"))
    movie = metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--json")
    assert result.returncode == 0
    assert rows(result)["second"]["status"] == "disabled"
    assert cli.calls("second") == []
    cli.write_config(cli.config.read_text().replace("enabled = false", ""))
    assert cli("run").returncode == 0
    assert [t["key"] for t in cli.sent("second")] == [f"movie:{movie}"]


def test_group_filter_narrows_the_run(cli, metarr):
    configure(cli, metarr, mode="parallel")
    metarr.add_movie("The Matrix", 1999)
    got = rows(cli("run", "--json", "--group", "house"))
    assert set(got) == {"first", "second"}
    assert cli.calls("loner") == []
