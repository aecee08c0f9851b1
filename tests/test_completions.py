"""Shell completion: the committed scripts in completions/ are what the generator makes
today (so packagers never ship stale ones), and they complete real things: bash is driven
for real; zsh and fish are driven through the exact protocol their scripts speak."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import typer.main
from support.configs import config_with, kodi, plex

from metarr_sync.cli import app
from metarr_sync.cli import completions as gen

ROOT = Path(__file__).resolve().parents[1]
COMPLETIONS = ROOT / "completions"

CONFIG = config_with(
    groups={"living-room": {"sync_mode": "sequential"}},
    players=[kodi("lounge", url="http://192.168.1.10:8080", group="living-room"),
             plex("den", url="http://plex:32400", token="abc", enabled=False)])


def test_committed_scripts_are_up_to_date():
    problems = gen.stale(COMPLETIONS)
    assert problems == [], ("completions/ is stale; regenerate with "
                            "`python -m metarr_sync.cli.completions`: " + "; ".join(problems))
    assert sorted(p.name for p in COMPLETIONS.iterdir()) == sorted(gen.FILES.values())


def test_the_generator_writes_what_the_check_accepts(tmp_path):
    assert gen.main([str(tmp_path), "--check"]) == 1  # nothing there yet
    assert gen.main([str(tmp_path)]) == 0
    assert gen.main([str(tmp_path), "--check"]) == 0
    (tmp_path / "metarr-sync.fish").write_text("# hand-edited\n")
    assert gen.stale(tmp_path) == [f"{tmp_path / 'metarr-sync.fish'}: stale"]
    zsh = (tmp_path / "_metarr-sync").read_text()
    assert zsh.startswith("#compdef metarr-sync\n")  # zsh only reads the first line


def bash_complete(cli, words: list[str]) -> list[str]:
    """Source the committed bash script in a real bash and press TAB after `words`."""
    quoted = " ".join(f"'{w}'" for w in words)
    script = (f"source '{COMPLETIONS / 'metarr-sync'}'\n"
              f"COMP_WORDS=({quoted})\nCOMP_CWORD={len(words) - 1}\n"
              "_metarr_sync_completion metarr-sync\n"
              "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
    result = subprocess.run(["bash", "--norc", "--noprofile", "-c", script],
                            capture_output=True, text=True, env=cli.env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return [line for line in result.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completes_commands_options_and_configured_names(cli):
    cli.write_config(CONFIG)
    assert bash_complete(cli, ["metarr-sync", "pl"]) == ["players"]
    assert set(bash_complete(cli, ["metarr-sync", ""])) >= {
        "run", "sync", "verify", "status", "watch", "players", "mappings", "queue", "config",
        "alerts"}
    assert bash_complete(cli, ["metarr-sync", "config", ""]) == ["path", "show", "init"]
    assert bash_complete(cli, ["metarr-sync", "alerts", ""]) == ["test"]
    assert set(bash_complete(cli, ["metarr-sync", "alerts", "test", "--"])) >= {"--json"}
    assert set(bash_complete(cli, ["metarr-sync", "watch", "--"])) >= {"--json", "--quiet"}
    assert set(bash_complete(cli, ["metarr-sync", "run", "--"])) >= {
        "--dry-run", "--player", "--group", "--json", "--quiet", "--wait", "--trigger",
        "--no-verify"}
    # Names come from the user's configuration, values from the CLI's fixed choices.
    assert bash_complete(cli, ["metarr-sync", "players", "test", ""]) == ["lounge", "den"]
    assert bash_complete(cli, ["metarr-sync", "sync", "--player", "l"]) == ["lounge"]
    assert bash_complete(cli, ["metarr-sync", "run", "--group", ""]) == ["living-room"]
    assert bash_complete(cli, ["metarr-sync", "run", "--trigger", "s"]) == ["scheduled"]
    assert bash_complete(cli, ["metarr-sync", "players", "add", ""]) == [
        "kodi", "jellyfin", "emby", "plex"]
    assert bash_complete(cli, ["metarr-sync", "queue", "list", "--status", "un"]) == [
        "unverified"]
    # --config on the line is the configuration the names come from.
    other = cli.root / "other.toml"
    other.write_text(config_with(players=[kodi("attic", url="http://attic:8080")]))
    assert bash_complete(cli, ["metarr-sync", "--config", str(other), "players", "remove",
                               ""]) == ["attic"]


def test_a_broken_or_missing_config_completes_no_names_and_shows_no_error(cli):
    cli.write_config("[players.x\n")
    assert bash_complete(cli, ["metarr-sync", "players", "test", ""]) == []
    cli.config.unlink()
    assert bash_complete(cli, ["metarr-sync", "run", "--player", ""]) == []
    assert bash_complete(cli, ["metarr-sync", "st"]) == ["status"]


def test_zsh_protocol_gives_names_with_descriptions(cli):
    """What completions/_metarr-sync evaluates: `_arguments` with value:description."""
    cli.write_config(CONFIG)
    script = (COMPLETIONS / "_metarr-sync").read_text()
    assert '_TYPER_COMPLETE_ARGS="${words[1,$CURRENT]}"' in script
    assert "_METARR_SYNC_COMPLETE=complete_zsh" in script
    result = cli(env={"_TYPER_COMPLETE_ARGS": "metarr-sync players test ",
                      "_METARR_SYNC_COMPLETE": "complete_zsh"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("_arguments")
    # Colons escaped for _arguments, and once more for the script's eval.
    assert r'"lounge":"kodi http\\://192.168.1.10\\:8080"' in result.stdout
    assert r'"den":"plex http\\://plex\\:32400 (disabled)"' in result.stdout


def test_fish_protocol_gives_names_with_descriptions(cli):
    cli.write_config(CONFIG)
    script = (COMPLETIONS / "metarr-sync.fish").read_text()
    assert "_TYPER_COMPLETE_FISH_ACTION=get-args" in script
    env = {"_TYPER_COMPLETE_ARGS": "metarr-sync run --player ",
           "_METARR_SYNC_COMPLETE": "complete_fish"}
    names = cli(env={**env, "_TYPER_COMPLETE_FISH_ACTION": "get-args"})
    assert names.returncode == 0, names.stderr
    assert names.stdout.splitlines() == ["lounge\tkodi http://192.168.1.10:8080",
                                         "den\tplex http://plex:32400 (disabled)"]
    assert cli(env={**env, "_TYPER_COMPLETE_FISH_ACTION": "is-args"}).returncode == 0


def walk(command, path=()):
    """Every command of the CLI with its path of names (the Click tree Typer builds)."""
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from walk(sub, (*path, name))


def test_every_command_and_option_of_the_cli_completes(cli):
    """Walks the real command tree: each group lists all its subcommands and each command
    all its long options, through the same bash script a user installs."""
    root = typer.main.get_command(app)
    checked = 0
    for path, command in walk(root):
        words = ["metarr-sync", *path]
        subcommands = getattr(command, "commands", None)
        if subcommands:
            assert set(bash_complete(cli, [*words, ""])) >= set(subcommands), path
        options = {opt for p in command.params if not getattr(p, "hidden", False)
                   for opt in p.opts if opt.startswith("--")}
        got = set(bash_complete(cli, [*words, "--"]))
        assert options - {"--help"} <= got, (path, options - got)
        checked += 1
    assert checked >= 25
