"""What a person sees at a real terminal (a pseudo-terminal driven by pexpect) versus what
a pipe, cron or a script gets: tables with box characters and colour on the terminal,
progress bars during long runs there only, and never an escape code in a pipe."""

from __future__ import annotations

import json
import re
import subprocess

import pexpect
import pytest
from support.configs import config_with, recorder
from support.metarr_factory import ago

ESC = "\x1b"
PROGRESS = re.compile(r"(lounge|bedroom)\s.*?\b(\d)/6\b.*?items", re.S)
BOX = ("┏", "┃", "┡", "│", "└")


@pytest.fixture
def slow_run(cli, metarr):
    """Six recent films for two players, two per batch, each batch taking a while: a run
    long enough for the progress bars to be drawn several times."""
    for number in range(6):
        metarr.add_movie(f"Film [{number}]", 2000 + number, when=ago(hours=1))
    cli.write_config(config_with(metarr=metarr.path, sync={"batch_size": 2},
                                 players=[recorder("lounge"), recorder("bedroom")]))
    cli.behave("lounge", "slow", "0.4")
    cli.behave("bedroom", "slow", "0.3")
    return cli


def on_terminal(cli, *args: str, shell: str | None = None) -> tuple[int, str]:
    """Run the installed command in a pseudo-terminal (80x160); all it wrote, exit code."""
    env = {k: v for k, v in cli.env.items() if k not in ("NO_COLOR", "COLUMNS")}
    env["TERM"] = "xterm-256color"
    if shell:
        child = pexpect.spawn("/bin/sh", ["-c", shell], env=env, dimensions=(50, 160),
                              encoding="utf-8", timeout=90)
    else:
        child = pexpect.spawn(cli.exe, list(args), env=env, dimensions=(50, 160),
                              encoding="utf-8", timeout=90)
    output = child.read()
    child.close()
    return child.exitstatus, output


def plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "")


def test_run_on_a_terminal_shows_progress_then_the_table(slow_run):
    code, output = on_terminal(slow_run, "run")
    assert code == 0, output
    assert ESC in output  # colour and cursor control: this really was a terminal
    text = plain(output)
    # Per player bars with items done of total, redrawn as batches complete.
    seen = {(m.group(1), int(m.group(2))) for m in PROGRESS.finditer(text)}
    assert ("lounge", 2) in seen and ("lounge", 6) in seen, text[:2000]
    assert ("bedroom", 4) in seen and ("bedroom", 6) in seen
    # Then the result table, drawn with box characters.
    table = text[text.index("metarr-sync run #1"):]
    assert all(ch in table for ch in BOX)
    header = next(line for line in table.splitlines() if "┃" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "player", "type", "result", "items", "synced", "failed", "verified", "requests",
        "time", "error"]
    row = next(line for line in table.splitlines() if "lounge" in line and "│" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][:5] == [
        "lounge", "recorder", "synced", "6", "6"]
    assert len(slow_run.sent("lounge")) == 6


def test_run_through_a_pipe_has_no_progress_and_no_escape_codes(slow_run):
    result = slow_run("run")
    assert result.returncode == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert ESC not in stream
        assert not PROGRESS.search(stream)
    assert "┃ player" in result.stdout and "│ lounge" in result.stdout


def test_no_progress_when_only_stdout_is_piped(slow_run):
    """stderr is still the terminal, but stdout goes to a pipe (`run | tee log`)."""
    code, output = on_terminal(slow_run, shell=f"'{slow_run.exe}' run | cat")
    assert code == 0, output
    assert not PROGRESS.search(plain(output))
    assert "│ lounge" in output and ESC not in output


def test_no_progress_with_json_on_a_terminal(slow_run):
    code, output = on_terminal(slow_run, "run", "--json")
    assert code == 0, output
    assert ESC not in output
    report = json.loads(output.replace("\r", ""))
    assert {p["name"]: p["synced"] for p in report["players"]} == {"lounge": 6, "bedroom": 6}


def test_quiet_run_on_a_terminal_prints_nothing_at_all(slow_run):
    code, output = on_terminal(slow_run, "run", "--quiet")
    assert code == 0
    assert output == ""
    assert len(slow_run.sent("bedroom")) == 6  # it did run


def test_quiet_run_that_fails_prints_the_table_but_no_progress(slow_run):
    slow_run.behave("bedroom", "fail", "offline")
    code, output = on_terminal(slow_run, "run", "--quiet")
    assert code == 1
    text = plain(output)
    assert not PROGRESS.search(text)
    assert "recorder told to fail: offline" in text and "┃ player" in text


def test_status_on_a_terminal_and_through_a_pipe(slow_run):
    assert slow_run("run").returncode == 0
    code, output = on_terminal(slow_run, "status")
    assert code == 0, output
    assert ESC in output
    text = plain(output)
    assert text.startswith("OK")
    assert all(ch in text for ch in BOX)
    for column in ("player", "state", "last sync", "result", "success", "avg response",
                   "pending", "failed", "deferred", "unverified", "last error"):
        assert f" {column} " in text
    assert "recent runs" in text

    piped = slow_run("status")
    assert piped.returncode == 0
    assert ESC not in piped.stdout and ESC not in piped.stderr
    first, terminal_first = piped.stdout.splitlines()[0], text.splitlines()[0]
    assert first.startswith("OK: 2 player(s) in sync; last run #1 synced")
    assert terminal_first.startswith("OK: 2 player(s) in sync; last run #1 synced")
    # Captured (a monitoring check, a pipe): the same tables as plain columns, no boxes.
    assert not any(ch in piped.stdout for ch in BOX)
    lines = piped.stdout.splitlines()
    assert lines[1:3] == ["players", (
        "player   state    last sync  result  success  avg response  pending  failed  "
        "deferred  unverified  last error")]
    assert re.match(r"lounge   enabled  \d+ s ago +synced +100% +\S+ +0 +0 +0 +0$",
                    lines[3]), lines[3]
    assert lines[lines.index("recent runs") + 1].split() == [
        "run", "command", "trigger", "started", "result", "items", "synced", "failed",
        "time"]


def test_no_color_keeps_the_table_but_drops_colour(slow_run):
    assert slow_run("run").returncode == 0
    env = {k: v for k, v in slow_run.env.items() if k != "COLUMNS"}
    env.update(TERM="xterm-256color", NO_COLOR="1")
    child = pexpect.spawn(slow_run.exe, ["status"], env=env, dimensions=(50, 160),
                          encoding="utf-8", timeout=60)
    output = child.read()
    child.close()
    assert "┃ player" in plain(output) and "│ lounge" in plain(output)
    styles = [m.split(";") for m in re.findall(r"\x1b\[([0-9;]*)m", output)]
    assert styles  # bold headers and the like stay
    colours = [s for s in styles if any(code.isdigit() and (30 <= int(code) <= 49 or
                                                            90 <= int(code) <= 107)
                                        for code in s)]
    assert colours == []


def test_help_through_a_pipe_is_plain(cli):
    result = subprocess.run([cli.exe, "--help"], capture_output=True, text=True,
                            env=cli.env, timeout=60)
    assert result.returncode == 0
    assert ESC not in result.stdout
    assert "Exit codes: 0 all synced" in " ".join(result.stdout.split())
