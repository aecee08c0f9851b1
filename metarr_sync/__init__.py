"""metarr-sync: tell media players exactly what Metarr changed."""

from metarr_sync.version import __version__

__all__ = ["__version__", "main"]


def main() -> None:
    """Console entry point. `--version` answers before the CLI (Typer, Rich) is imported,
    so scripts and package managers that probe the version pay no start-up cost."""
    import sys

    if sys.argv[1:] == ["--version"]:
        print(f"metarr-sync {__version__}")
        return
    from metarr_sync.cli import main as cli_main

    cli_main()
