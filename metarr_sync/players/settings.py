"""Player settings that silently defeat Metarr, judged for `players test`.

The adapters read the settings (only they speak HTTP); the functions here judge what was
read and say the fix in words. Each finding is a ProbeStep: a setting that defeats Metarr
is a *warning* (`warning=True`, `fix` says what to change): the player still works and
`players test` keeps its exit code, but the viewer would not see what Metarr wrote.

The facts, with their evidence:

Jellyfin (source read at jellyfin/jellyfin v10.11.11 and master; OpenAPI specs 10.11.11 and
12.0.0, which both define these fields):
- `GET /Library/VirtualFolders` lists every library as VirtualFolderInfo
  {Name, Locations, CollectionType, ItemId, LibraryOptions}; LibraryOptions has
  `MetadataSavers` (string[] or null), `SaveLocalMetadata`, `DisabledLocalMetadataReaders`,
  `LocalMetadataReaderOrder` and `TypeOptions` (per item type: metadata and image fetchers).
- The NFO saver and the NFO reader are both named "Nfo" (MediaBrowser.XbmcMetadata:
  `BaseNfoSaver.SaverName => "Nfo"`; `BaseNfoProvider.Name => BaseNfoSaver.SaverName`).
- A saver runs for a library when `MetadataSavers` contains its name (compared
  case-insensitively); when `MetadataSavers` is null (a library not saved since the option
  came), savers run when `SaveLocalMetadata` is on, unless the server-wide metadata options
  disable them (ProviderManager.IsSaverEnabledForItem). A running NFO saver writes
  Jellyfin's own NFO over Metarr's after each refresh. New libraries get it off
  (LibraryController.IsSaverEnabledByDefault returns false for a new library).
- `DisabledLocalMetadataReaders` is declared but never read by the server (no use in any
  Jellyfin release since the fork, nor on master): local readers such as "Nfo" always run.
  So no Jellyfin setting turns the NFO reader off, and none is reported.
Emby is closed source. Its library list (`GET /Library/VirtualFolders/Query`, `Items`)
carries the same LibraryOptions shape it shares with Jellyfin; its library editor lists
"Metadata readers" and "Metadata savers" by name ("Nfo"). That Emby honours
`DisabledLocalMetadataReaders` is taken from that editor, not measured on a server.

Plex (Plex support articles "Agents" and "Using NFO metadata files with Plex"; the Plex
OpenAPI spec's LibrarySection has `agent`):
- `GET /library/sections` gives each section's `agent`. Plex's default agents, Plex Movie
  (`tv.plex.agents.movie`) and Plex Series (`tv.plex.agents.series`), and the legacy ones
  (`com.plexapp.agents.imdb`, `.thetvdb`, `.themoviedb`) fetch titles and plots online and
  do not read NFO files; their "local media assets" source/setting reads local artwork only.
- Plex Media Server reads NFO files natively since 1.43.1, with its NFO agents: "Plex NFO
  Movie" (`tv.plex.agents.nfo.movie`) and "Plex NFO Series" (`tv.plex.agents.nfo.series`),
  chosen per library (Settings → Manage → Libraries → Edit → Advanced → Agent). Before
  1.43.1 only third-party plug-in agents read them (XBMCnfoMoviesImporter
  `com.plexapp.agents.xbmcnfo`, XBMCnfoTVImporter `com.plexapp.agents.xbmcnfotv`).
- Whether an agent's "use local assets" option is on lives in the section's preferences
  (`/library/sections/{key}/prefs`), whose setting ids the spec does not name: not checked.

Kodi (JSON-RPC, introspected on a real Kodi 20.1, API 13.0.0):
- A source's content type and scraper (Set content → "Local information only", i.e.
  `metadata.local`) live in the video database's `path` table; no JSON-RPC method reads
  them: `Files.GetSources` answers only `file` and `label`, and neither `Files.*`,
  `Settings.GetSettings` nor `VideoLibrary.*` expose a source's scraper. So that setting
  cannot be checked; `players test` says so and what to set.
- `Profiles.GetCurrentProfile` names the profile loaded now and `Profiles.GetProfiles`
  lists them all (label, lockmode, thumbnail). Library calls act on the loaded profile's
  library; whether the other profiles share it (the profile's "media info" setting) is
  not readable over JSON-RPC.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from metarr_sync.players.base import ProbeStep

NFO = "Nfo"
#: Jellyfin/Emby library types Metarr writes NFO files for (None: a mixed library).
VIDEO_COLLECTIONS = (None, "", "movies", "tvshows", "mixed", "homevideos")
#: Plex agents that read the NFO files Metarr writes.
PLEX_NFO_AGENTS = ("tv.plex.agents.nfo.movie", "tv.plex.agents.nfo.series",
                   "com.plexapp.agents.xbmcnfo", "com.plexapp.agents.xbmcnfotv")
PLEX_AGENT_NAMES = {
    "tv.plex.agents.movie": "Plex Movie",
    "tv.plex.agents.series": "Plex Series",
    "com.plexapp.agents.imdb": "Plex Movie (Legacy)",
    "com.plexapp.agents.thetvdb": "TheTVDB",
    "com.plexapp.agents.themoviedb": "The Movie Database",
    "tv.plex.agents.none": "Personal Media",
    "com.plexapp.agents.none": "Personal Media",
    "tv.plex.agents.nfo.movie": "Plex NFO Movie",
    "tv.plex.agents.nfo.series": "Plex NFO Series",
    "com.plexapp.agents.xbmcnfo": "XBMCnfoMoviesImporter",
    "com.plexapp.agents.xbmcnfotv": "XBMCnfoTVImporter",
}


def _names(value: Any) -> list[str] | None:
    if value is None:
        return None
    return [str(v) for v in value if v] if isinstance(value, list) else []


def _has(names: Sequence[str] | None, wanted: str) -> bool:
    return names is not None and any(n.casefold() == wanted.casefold() for n in names)


def jellyfin_library_checks(libraries: Sequence[Mapping[str, Any]], product: str,
                            *, readers_honoured: bool) -> list[ProbeStep]:
    """One step per video library: whether the server writes its own NFO files over
    Metarr's, and (Emby: `readers_honoured`) whether it reads them at all."""
    steps = []
    editor = ("Dashboard → Libraries" if product == "Jellyfin"
              else "Settings → Library")
    for entry in libraries:
        if entry.get("CollectionType") not in VIDEO_COLLECTIONS:
            continue
        name = str(entry.get("Name") or "?")
        options = entry.get("LibraryOptions")
        options = options if isinstance(options, Mapping) else {}
        savers = _names(options.get("MetadataSavers"))
        problems, fixes = [], []
        if _has(savers, NFO):
            problems.append(f"{product} writes its own NFO files over Metarr's "
                            "(metadata saver \"Nfo\" is on)")
            fixes.append("untick \"Nfo\" under Metadata savers")
        elif savers is None and options.get("SaveLocalMetadata") is True:
            problems.append(f"{product} may write its own NFO files over Metarr's (no "
                            "metadata savers chosen, and \"Save artwork into media "
                            "folders\" is on)")
            fixes.append("save the library's options once with \"Nfo\" unticked under "
                         "Metadata savers")
        if readers_honoured and _has(_names(options.get("DisabledLocalMetadataReaders")),
                                     NFO):
            problems.append(f"{product} does not read Metarr's NFO files (metadata reader "
                            "\"Nfo\" is off)")
            fixes.append("tick \"Nfo\" under Metadata readers")
        if problems:
            steps.append(ProbeStep(
                f"library {name}: NFO", True, "; ".join(problems), warning=True,
                fix=f"{editor} → {name} → Manage library: {'; '.join(fixes)}"))
        else:
            steps.append(ProbeStep(f"library {name}: NFO", True,
                                   f"{product} reads Metarr's NFO files and does not "
                                   "rewrite them"))
    return steps


def plex_section_check(title: str, section_type: str, agent: str) -> ProbeStep | None:
    """Whether a movie or TV section's agent reads Metarr's NFO files; None for others."""
    if section_type not in ("movie", "show"):
        return None
    shown = PLEX_AGENT_NAMES.get(agent, agent or "unknown")
    if agent in PLEX_NFO_AGENTS:
        return ProbeStep(f"library {title}: agent", True,
                         f"{shown} reads Metarr's NFO files")
    nfo_agent = "Plex NFO Movie" if section_type == "movie" else "Plex NFO Series"
    return ProbeStep(
        f"library {title}: agent", True,
        f"agent {shown} does not read NFO files: a refresh takes titles and plots from "
        "online sources instead of Metarr's NFO (local artwork is used only while its "
        "local assets option is on)", warning=True,
        fix=f"Plex Web → Settings → Manage → Libraries → {title} → Edit → Advanced → "
            f"Agent: {nfo_agent} (Plex Media Server 1.43.1 or newer)")


def kodi_profile_check(current: str, profiles: Sequence[str]) -> ProbeStep:
    """Which profile is loaded: only its library gets the updates."""
    current = current or "?"
    if len(profiles) <= 1:
        return ProbeStep("profile", True, f"{current} (the only profile)")
    others = ", ".join(p for p in profiles if p != current) or "?"
    return ProbeStep(
        "profile", True,
        f"{current} is loaded, one of {len(profiles)} profiles: only its library gets "
        f"Metarr's updates; {others} miss them unless they share its library",
        warning=True,
        fix="keep the profile whose library people watch loaded when metarr-sync runs, "
            "or set the other profiles' media info to be shared with it (Settings → "
            "Profiles → edit profile)")


KODI_SCRAPER_NOTE = ProbeStep(
    "source scrapers", True,
    "not readable over JSON-RPC: Kodi adds items only from sources whose content is set, "
    "and reads Metarr's NFO files through the scraper chosen there",
    fix="in Kodi, Videos → Files → each source → Set content: Movies or TV shows, "
        "information provider \"Local information only\" (reads the NFO files, takes "
        "nothing online)")
