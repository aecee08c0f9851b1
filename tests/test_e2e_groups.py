"""Player groups: sequential with continue_on_error, parallel, shared libraries."""

from __future__ import annotations

import json

from support.configs import config_with, recorder


def rows(result):
    return {p["name"]: p for p in json.loads(result.stdout)["players"]}


def configure(cli, metarr, mode="sequential", cont=True, shared=False):
    cli.write_config(config_with(
        metarr=metarr.path,
        groups={"house": {"sync_mode": mode, "continue_on_error": cont,
                          "shared_library": shared}},
        players=[recorder("first", group="house", priority=10),
                 recorder("second", group="house", priority=20), recorder("loner")]))


def test_sequential_group_stops_after_a_failure_without_continue_on_error(cli, metarr):
    configure(cli, metarr, cont=False)
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
    configure(cli, metarr, cont=True)
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
    configure(cli, metarr, mode="parallel", shared=True)
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
    configure(cli, metarr, mode="parallel", shared=True)
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


# --- shared library: every box has its own image cache ------------------------------------


def queued(cli) -> list[tuple]:
    with cli.state() as state:
        return [tuple(r) for r in state.execute(
            "SELECT player, item_key, status, attempts, last_error FROM sync_queue "
            "ORDER BY player, item_key")]


def test_every_reachable_member_drops_its_own_cached_artwork_of_refreshed_items(cli, metarr):
    configure(cli, metarr, mode="parallel", shared=True)
    cli.behave("first", "art")
    cli.behave("second", "art")
    movie = metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--json")
    assert result.returncode == 0, result.stderr
    got = rows(result)
    assert (got["first"]["status"], got["first"]["synced"]) == ("synced", 1)
    # The second box did none of the library work, only dropped its own image cache.
    assert (got["second"]["status"], got["second"]["synced"], got["second"]["error"]) == (
        "synced", 1, None)
    path = "/data/media/movies/The Matrix (1999)/The Matrix (1999).mkv"
    assert [c["op"] for c in cli.calls("second")] == ["drop_art"]
    assert cli.calls("second")[0]["art"] == {f"movie:{movie}": [f"art:{path}"]}
    assert queued(cli) == []


def test_an_unreachable_member_does_not_fail_the_group_and_keeps_its_stale_art_queued(
        cli, metarr):
    configure(cli, metarr, mode="parallel", shared=True)
    cli.behave("first", "art")
    cli.behave("second", "fail", "offline")
    movie = metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "synced"
    second = rows(result)["second"]
    assert (second["status"], second["error_kind"]) == ("skipped", "offline")
    assert second["error"] == (
        "shared library: synced through first; its own cached artwork of 1 item(s) "
        "refreshed through first was not dropped: it may show the old images, and they "
        "stay queued for it")
    assert queued(cli) == [(
        "second", f"movie:{movie}", "pending", 1,
        "its own cached artwork of this item was not dropped (recorder told to fail: "
        "offline): it may show the old images until a run reaches it")]
    # The table says it too, for whoever reads the run's output.
    table = cli("queue", "list")
    assert "second" in table.stdout and "not dropped" in table.stdout
    # Back online: the next run refreshes it again through the first member (a shared
    # library has one refresh for all) and the second drops its cached copies.
    cli.heal("second", "fail")
    cli.behave("second", "art")
    again = rows(cli("run", "--json"))
    assert again["second"]["status"] == "synced" and again["second"]["synced"] == 1
    assert [c["op"] for c in cli.calls("second")][-1] == "drop_art"
    assert queued(cli) == []


def test_a_member_found_unreachable_first_keeps_its_stale_art_queued_too(cli, metarr):
    configure(cli, metarr, mode="parallel", shared=True)
    cli.behave("first", "fail", "offline")
    cli.behave("second", "art")
    movie = metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--json")
    got = rows(result)
    assert got["second"]["status"] == "synced"
    assert got["first"]["status"] == "failed"  # unreachable, as before
    assert got["first"]["error"].endswith(
        "its own cached artwork of 1 item(s) refreshed through second was not dropped: it "
        "may show the old images, and they stay queued for it")
    assert [r[:3] for r in queued(cli)] == [("first", f"movie:{movie}", "pending")]


def test_a_member_that_keeps_some_cached_art_is_partial_with_the_cause(cli, metarr):
    configure(cli, metarr, mode="parallel", shared=True)
    cli.behave("first", "art")
    cli.behave("second", "art_reject", "Matrix")
    metarr.add_movie("The Matrix", 1999)
    metarr.add_movie("Heat", 1995)
    result = cli("run", "--json")
    assert result.returncode == 1
    second = rows(result)["second"]
    assert (second["status"], second["synced"], second["failed"]) == ("partial", 1, 1)
    assert "could not be dropped here (first: recorder kept its cached art)" in \
        second["error"]
    assert [r[0] for r in queued(cli)] == ["second"]


def test_a_member_that_keeps_cached_art_without_saying_why_is_partial_not_a_crash(cli,
                                                                                  metarr):
    configure(cli, metarr, mode="parallel", shared=True)
    cli.behave("first", "art")
    cli.behave("second", "art_reject_quietly", "Matrix")
    movie = metarr.add_movie("The Matrix", 1999)
    metarr.add_movie("Heat", 1995)
    result = cli("run", "--json")
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr
    second = rows(result)["second"]
    assert (second["status"], second["synced"], second["failed"]) == ("partial", 1, 1)
    assert "could not be dropped here (first: no cause given)" in second["error"]
    assert queued(cli) == [("second", f"movie:{movie}", "pending", 1, "no cause given")]


def test_dry_run_shows_each_members_texture_drops_and_records_nothing(cli, metarr):
    configure(cli, metarr, mode="parallel", shared=True)
    cli.behave("first", "art")
    cli.behave("second", "art")
    metarr.add_movie("The Matrix", 1999)
    result = cli("run", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    second = rows(result)["second"]
    assert second["commands"] == [
        "drop art:/data/media/movies/The Matrix (1999)/The Matrix (1999).mkv"]
    assert cli.calls("second") == []
