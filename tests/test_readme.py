"""README.md stays true to the code: every configuration key config.py accepts is in the
reference tables (and nothing else is), with the defaults the code really has; the
example configuration loads; the two set-up commands are the ones .ci/run relies on; the
command overview names every command."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import typer.main

from metarr_sync import config as cfg
from metarr_sync import player_types as kinds
from metarr_sync.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    """The text under a `##`/`###` heading, up to the next heading of that level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    start = README.index(heading + "\n") + len(heading) + 1
    stop = re.compile(rf"(?m)^#{{1,{level}}} ")
    match = stop.search(README, start)
    return README[start:match.start() if match else len(README)]


def table(text: str) -> list[dict[str, str]]:
    """The rows of the first Markdown table in `text`, by header."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith("|"):
            lines.append(line)
        elif lines:
            break  # the end of the first table
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def key_of(cell: str) -> str:
    match = re.fullmatch(r"`([a-z_]+)`", cell)
    assert match, f"not a `key` cell: {cell!r}"
    return match.group(1)


def literal(cell: str) -> object:
    """A default cell such as `100`, `"24h"` or `true` as the TOML value it shows."""
    match = re.match(r"`([^`]+)`", cell)  # a note may follow the value
    assert match, cell
    return tomllib.loads(f"value = {match.group(1)}")["value"]


TABLES = {
    "### `[metarr]`": (cfg._METARR_KEYS, cfg.MetarrConfig()),
    "### `[sync]`": (tuple(cfg._SYNC_FIELDS), cfg.SyncConfig()),
    "### `[watch]`": (tuple(cfg._WATCH_FIELDS), cfg.WatchConfig()),
    "### `[groups.NAME]`": (tuple(cfg._GROUP_FIELDS), cfg.GroupConfig(name="")),
    "### `[players.NAME]`": (
        cfg._PLAYER_COMMON + tuple(kinds.SETTINGS),
        cfg.PlayerConfig(name="", type="", url="")),
    "### `[alerts]`": (cfg._ALERTS_KEYS, cfg.AlertsConfig()),
}


@pytest.mark.parametrize("heading", TABLES)
def test_every_config_key_is_documented_with_its_real_default(heading):
    accepted, defaults = TABLES[heading]
    rows = table(section(heading))
    documented = [key_of(row["key"]) for row in rows]
    assert sorted(documented) == sorted(set(accepted)), heading
    assert len(documented) == len(set(documented))
    for row in rows:
        key = key_of(row["key"])
        if row["default"].startswith("`") and hasattr(defaults, key):
            expected = getattr(defaults, key)
            if isinstance(expected, list):
                expected = [dict(vars(m)) for m in expected]
            assert literal(row["default"]) == expected, (heading, key)
        if row["example"].startswith("`"):
            # Each example is a value the loader accepts for that key.
            value = row["example"].split("`")[1]
            tomllib.loads(f"value = {value}")


def test_player_keys_name_the_player_types_they_apply_to():
    rows = {key_of(r["key"]): r["players"] for r in table(section("### `[players.NAME]`"))}
    credentials = {k for kind in kinds.TYPES.values() for k in kind.credentials.keys}
    assert credentials == {"username", "password", "token"}
    for key in cfg._PLAYER_COMMON:
        if key in credentials:
            types = [t.name for t in kinds.TYPES.values() if key in t.credentials.keys]
            assert rows[key] == ", ".join(types), key
        else:
            assert rows[key] == "all", key
    for key in kinds.SETTINGS:
        types = [t.name for t in kinds.TYPES.values() if key in t.settings]
        assert rows[key] == ", ".join(types), key


def test_the_complete_example_loads(tmp_path):
    blocks = re.findall(r"```toml\n(.*?)```", section("## Configuration"), re.S)
    [example] = [b for b in blocks if "[players." in b]
    problems: list[str] = []
    try:
        cfg.parse_config(tomllib.loads(example), tmp_path / "config.toml")
    except cfg.ConfigError as exc:
        problems = exc.problems
    # Only the CA file of the example does not exist on this machine.
    assert [p for p in problems if "ca_bundle" not in p] == []
    assert len(problems) == 1


def test_the_two_set_up_commands_are_unchanged_and_ci_runs_the_second():
    setup = section("## Set-up")
    commands = re.findall(r"```sh\n(.*?)\n```", setup)
    assert commands == ["pip install . && metarr-sync run",
                        "pip install -e '.[test]' && python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "\npip install -q -e '.[test]' && python -m pytest\n" in ci or \
        f"\n{commands[1]}\n" in ci


def test_the_command_overview_names_every_command():
    overview = section("## Commands")
    root = typer.main.get_command(app)
    for name, command in root.commands.items():
        assert f"`{name}" in overview, name
        for sub in getattr(command, "commands", {}):
            assert re.search(rf"\b{sub}\b", overview), f"{name} {sub}"


def test_exit_code_tables_match_the_code():
    from metarr_sync import health
    from metarr_sync.cli import common

    runs = {row["code"] for row in table(section("## Exit codes"))}
    assert runs == {"0", "1", "2", "3", "4", "5", str(common.EXIT_INTERNAL),
                    f"{common.EXIT_SIGINT} / {common.EXIT_SIGTERM}"}
    status_table = section("## Exit codes").split("`status` follows")[1]
    rows = table(status_table)
    assert [r["code"] for r in rows] == [str(c) for c in (0, 1, 2, 3)]
    assert [r["`status`"].split(":")[0] for r in rows] == ["OK", "WARNING", "CRITICAL",
                                                          "UNKNOWN"]
    assert health.UNKNOWN == 3
