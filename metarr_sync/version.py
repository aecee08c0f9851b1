"""The version, in a module of its own: the package's entry point, the CLI and the HTTP
clients (User-Agent, Plex and Jellyfin client headers) all read it, and none of them needs
to import another for it (metarr_sync/__init__.py imports the CLI, so the CLI reading the
version from there was an import cycle). pyproject.toml reads it too (setuptools `attr:`,
parsed without importing the package)."""

__version__ = "0.1.0"
