"""Readable over SSH at 80 columns: `run`, `queue list`, `status`, `players test` and
`mappings list` on an 80-column terminal (a pseudo-terminal driven by pexpect) and
captured with COLUMNS=80 leave out their low-value columns first, or print one block per
row, so that no line is wider than 80 and each cause and item is there whole (not cut to
"http://…"). Wide, the same commands keep their full tables."""

from __future__ import annotations

import json
import re

import pexpect
import pytest
from support.configs import config_with
from support.fake_players import FakeKodi

BOX = ("┏", "┃", "│", "└")
LONG_SHARE = "smb://living-room-nas.home.arpa/Multimedia/Filme und Serien/Spielfilme"


@pytest.fixture
def world(cli, metarr):
    """lounge: a Kodi with the movies source only, which lacks Heat and any mapping for
    the show; bedroom: a Kodi that refuses connections (its error names its URL)."""
    lounge = FakeKodi(sources={"/mnt/movies/": "movies"}).start()
    bedroom = FakeKodi(sources={f"{LONG_SHARE}/": "movies"}).start()
    for n in range(3):
        metarr.add_movie(f"Seen {n}", 2000 + n)
        lounge.add_file(f"/mnt/movies/Seen {n} ({2000 + n})/Seen {n} ({2000 + n}).mkv")
    metarr.add_movie("Heat", 1995)
    show = metarr.add_series("Severance")
    metarr.add_episode(show, metarr.add_season(show, 1), 1, 1)
    cli.write_config(config_with(
        metarr=metarr.path, sync={"initial_lookback": "all", "timeout": 2, "retry_attempts": 1},
        players=[lounge.player("lounge", [("/data/media/movies", "/mnt/movies")]),
                 bedroom.player("bedroom", [("/data/media/movies", LONG_SHARE)])]))
    bedroom.misbehave("refused")
    yield cli, lounge, bedroom
    lounge.stop()
    bedroom.stop()


def on_terminal(cli, *args: str, columns: int = 80) -> tuple[int, str]:
    """The installed command in a pseudo-terminal `columns` wide: exit code, its lines
    (escape codes and the progress display's carriage returns removed)."""
    env = {k: v for k, v in cli.env.items() if k not in ("NO_COLOR", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    child = pexpect.spawn(cli.exe, list(args), env=env, dimensions=(50, columns),
                          encoding="utf-8", timeout=90)
    output = child.read()
    child.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output)
    lines = [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    return child.exitstatus, "\n".join(lines)


def captured(cli, *args: str) -> tuple[int, str]:
    result = cli(*args, env={"COLUMNS": "80"})
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout


def flat(text: str) -> str:
    """Text with every run of white space (a wrapped line's break and indent) as one
    space: what a reader sees."""
    return " ".join(text.split())


def table_cells(text: str) -> list[str]:
    """Every cell of the boxed tables in `text`, its lines (a wrapped cell continues on
    the next table lines, below an empty first cell) joined, white space removed."""
    cells: list[str] = []
    row: list[str] | None = None
    for line in text.splitlines():
        if not line.startswith("│"):
            cells += row or []
            row = None
            continue
        parts = [part.strip() for part in line.strip().strip("│").split("│")]
        if row is None or parts[0]:
            cells += row or []
            row = parts
        else:
            row = [a + b for a, b in zip(row, parts, strict=True)]
    cells += row or []
    return ["".join(cell.split()) for cell in cells]


def assert_narrow(text: str, *whole: str) -> None:
    """No line over 80 columns, nothing cut to "…", and each of `whole` there in full:
    in a block (wrapped at spaces) or in one table cell (wrapped or folded)."""
    too_wide = [line for line in text.splitlines() if len(line.rstrip()) > 80]
    assert too_wide == [], text
    assert "…" not in text, text
    cells = table_cells(text)
    for part in whole:
        assert flat(part) in flat(text) or "".join(part.split()) in cells, (
            f"{part!r} not whole in:\n{text}")


def causes(cli) -> dict[tuple[str, str], str]:
    with cli.state() as state:
        return {(r[0], r[1]): r[2] for r in state.execute(
            "SELECT player, item_key, last_error FROM sync_queue")}


@pytest.mark.parametrize("show", [on_terminal, captured], ids=["terminal", "captured"])
def test_run_and_queue_list_at_80_columns_keep_items_and_causes_whole(world, show):
    cli, _, _ = world
    code, text = show(cli, "run")
    assert code == 1
    # The table gave way: the bedroom's error, which names its URL, is a block below it.
    error = json.loads(cli("status", "--json").stdout)["players"]
    bedroom_error = next(p["last_error"] for p in error if p["name"] == "bedroom")
    assert "http://127.0.0.1:" in bedroom_error
    stored = causes(cli)
    assert {key for _, key in stored} == {"episode:1", "series:1", "movie:4", "movie:1",
                                          "movie:2", "movie:3"}
    lounge = {key: why for (player, key), why in stored.items() if player == "lounge"}
    assert_narrow(text, bedroom_error, *lounge.values(), "movie:4  Heat",
                  "episode:1  Severance S01E01")
    assert "error: " + flat(bedroom_error) in flat(text)

    code, text = show(cli, "queue", "list")
    assert code == 0
    # One block per entry: player, item, title and status, then its cause below.
    assert not any(ch in text for ch in BOX), text
    assert_narrow(text, *stored.values())
    assert re.search(r"^lounge  movie:4  Heat  unverified$", text, re.M), text
    assert f"why: {flat(lounge['movie:4'])}" in flat(text)
    # Each entry's cause is in its own block: from its first line to the next entry's.
    lines = text.splitlines()
    for (player, key), why in stored.items():
        start = next(i for i, line in enumerate(lines) if line.startswith(f"{player}  {key}  "))
        end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")),
                   len(lines))
        assert flat("\n".join(lines[start + 1:end])) == f"why: {flat(why)}", lines[start:end]


@pytest.mark.parametrize("show", [on_terminal, captured], ids=["terminal", "captured"])
def test_status_players_test_and_mappings_at_80_columns(world, show):
    cli, _, _ = world
    assert cli("run").returncode == 1
    status = json.loads(cli("status", "--json").stdout)
    bedroom_error = next(p["last_error"] for p in status["players"]
                         if p["name"] == "bedroom")

    code, text = show(cli, "status")
    assert code == 1
    # The verdict and its further reasons are lines of their own (a monitoring check
    # reads the first whole); the tables below them fit.
    table = text[text.index("players\n"):]
    assert_narrow(table, bedroom_error)
    assert "last error: " + flat(bedroom_error) in flat(table)
    assert "recent runs" in table

    steps = [step for player in json.loads(cli("players", "test", "--json").stdout)["players"]
             for step in player["steps"]]
    code, text = show(cli, "players", "test")
    assert code == 1
    # Each step's detail whole, the bedroom's naming its URL.
    assert_narrow(text, *(step["detail"] for step in steps))
    assert any("http://127.0.0.1:" in step["detail"] and not step["ok"] for step in steps)
    failed = [line for line in text.splitlines() if "FAILED" in line]
    assert failed and all(line.startswith(("bedroom", "  ")) for line in failed), text

    code, text = show(cli, "mappings", "list")
    assert code == 0
    assert_narrow(text, LONG_SHARE, "/data/media/movies", "/mnt/movies")


def test_wide_terminals_keep_the_full_tables(world):
    cli, _, _ = world
    code, text = on_terminal(cli, "run", columns=200)
    assert code == 1
    header = next(line for line in text.splitlines() if "┃ player" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "player", "type", "result", "items", "synced", "failed", "verified", "requests",
        "time", "error"]
    code, text = on_terminal(cli, "queue", "list", columns=200)
    header = next(line for line in text.splitlines() if "┃ player" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "player", "item", "title", "status", "tries", "queued", "why"]
    row = next(line for line in text.splitlines()
               if line.startswith("│ lounge ") and "│ movie:4" in line)
    assert "sent a scan of /mnt/movies/Heat (1995)/, but Kodi" in row
