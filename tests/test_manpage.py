"""man/metarr-sync.1 renders without a single groff warning, and documents every command
and every option of the CLI in that command's own section: the command tree is walked,
so a new option without documentation fails here."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main

from metarr_sync import __version__
from metarr_sync.cli import app

MAN = Path(__file__).resolve().parents[1] / "man" / "metarr-sync.1"
SOURCE = MAN.read_text(encoding="utf-8")
needs_groff = pytest.mark.skipif(shutil.which("groff") is None,
                                 reason="groff is not installed (.ci/run installs it)")


def plain(roff: str) -> str:
    """roff source as words: font escapes dropped, \\- as -, \\e as backslash."""
    text = re.sub(r"\\f[BIRP]", "", roff)
    return text.replace("\\-", "-").replace("\\e", "\\").replace("\\&", "")


def sections(level: str) -> dict[str, str]:
    """`.SH` or `.SS` headings → their text up to the next heading of any level."""
    parts = re.split(r"(?m)^(\.S[HS] .*)$", SOURCE)
    found: dict[str, str] = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        if heading.startswith(level + " "):
            found[plain(heading[4:]).strip().strip('"')] = plain(body)
    return found


def walk(command, path=()):
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


def options_of(command) -> set[str]:
    return {opt for p in command.params if not getattr(p, "hidden", False)
            and p.param_type_name == "option" for opt in (*p.opts, *p.secondary_opts)}


def has_option(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


@needs_groff
def test_groff_renders_it_without_warnings():
    # Also at the widths of narrow and wide terminals (man sets the line length).
    for args in (["-man", "-ww", "-z"], ["-man", "-ww", "-Tutf8"],
                 ["-man", "-ww", "-Tutf8", "-rLL=60n"], ["-man", "-ww", "-Tutf8", "-rLL=120n"]):
        result = subprocess.run(["groff", *args, str(MAN)], capture_output=True,
                                timeout=60)
        assert result.returncode == 0
        assert result.stderr.decode() == "", result.stderr.decode()
    rendered = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", str(MAN)],
                              capture_output=True, text=True, timeout=60).stdout
    assert "metarr-sync - tell Kodi" in " ".join(rendered.split())
    assert "\\f" not in rendered and "\\-" not in rendered  # no escape left raw


@pytest.mark.skipif(shutil.which("man") is None, reason="man is not installed")
def test_man_displays_it():
    result = subprocess.run(["man", "-l", str(MAN)], capture_output=True, text=True,
                            env={"MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "100",
                                 "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "EXIT STATUS" in result.stdout and "metarr-sync" in result.stdout


def test_it_has_the_sections_a_man_page_needs():
    heads = list(sections(".SH"))
    for name in ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS",
                 "ENVIRONMENT", "FILES", "EXAMPLES"):
        assert name in heads
    assert heads[:3] == ["NAME", "SYNOPSIS", "DESCRIPTION"]
    assert f'"metarr\\-sync {__version__}"' in SOURCE.splitlines()[0]  # .TH has the version


def test_every_command_and_option_is_documented_in_its_own_section():
    root = typer.main.get_command(app)
    commands = sections(".SS")
    globals_text = sections(".SH")["GLOBAL OPTIONS"]
    missing = sorted(o for o in options_of(root) if not has_option(globals_text, o))
    assert missing == [], f"global options missing from GLOBAL OPTIONS: {missing}"
    checked = 0
    for path, command in walk(root):
        if not path or getattr(command, "commands", None):
            continue  # the root and the groups (players, mappings, ...) have no options
        name = " ".join(path)
        titles = [t for t in commands if t == name or t.startswith(name + " ")]
        assert titles, f"no .SS section for `{name}`"
        body = commands[titles[0]]
        missing = sorted(o for o in options_of(command) if not has_option(body, o))
        assert missing == [], f"`{name}`: options not documented in its section: {missing}"
        checked += 1
    assert checked >= 20
    for path, command in walk(root):
        if getattr(command, "commands", None) and path:
            assert re.search(rf"\b{path[-1]}\b", sections(".SH")["SYNOPSIS"]), path


def test_exit_status_for_runs_and_for_status():
    exits = sections(".SS")
    run = exits["run, sync and verify"]
    for code in ("0", "1", "2", "3", "4", "5", "70", "130"):
        assert re.search(rf"(?m)^\.B[R]? {code}\b", run), code
    assert '.BR 130 ", " 143' in run
    status = exits["status (monitoring-plugin convention)"]
    for code, word in (("0", "OK"), ("1", "WARNING"), ("2", "CRITICAL"), ("3", "UNKNOWN")):
        assert re.search(rf"(?ms)^\.B {code}\n{word}", status), word


def test_examples_cover_cron_systemd_hooks_and_monitoring():
    examples = sections(".SH")["EXAMPLES"]
    for needle in ("*/15 * * * * metarr-sync run --trigger scheduled --quiet",
                   "Type=oneshot", "OnCalendar=", "Persistent=true", "LoadCredential=",
                   "$CREDENTIALS_DIRECTORY", "sync --movie", "queue add",
                   "ssh media-host metarr-sync status"):
        assert needle in examples, needle
