"""Player discovery for `players test` and `mappings detect`.

`probe_player` probes one player through its adapter and turns what it learns into rows a
person can act on; `check_mapping` tells whether a mapping's player side exists among the
player's library roots; `propose_mappings` pairs Metarr's library roots with the player's
by their trailing path components, and (`match_items`) a few of Metarr's items with the
player's own item paths. Wrong path mappings are the most common reason a sync
"succeeds" while nothing shows up on the player, so these say exactly what does not match.

Adapters are imported only inside probe_player: `status` and friends never load them.
"""

from __future__ import annotations

from collections import abc  # abc.Mapping: `Mapping` is a path mapping here
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from itertools import islice

from metarr_sync.config import Mapping, PlayerConfig, SyncConfig, resolve_player_secrets
from metarr_sync.metarr import Item, Library, MetarrSource
from metarr_sync.paths import (
    WINDOWS_OR_URL,
    ancestor,
    common_tail,
    is_under,
    nfc,
    same_place,
    split,
    strip_trailing,
)
from metarr_sync.plan import best_mapping, map_path
from metarr_sync.players.base import ProbeStep

# Which discovery step a failed probe stopped at, by error kind.
STEP_OF_KIND = {
    "offline": "reachable",
    "timeout": "reachable",
    "protocol_error": "API answers",
    "auth_failed": "credentials valid",
    "rejected": "rights sufficient",
}
VIDEO_LIBRARIES = ("movie", "movies", "tv", "tvshows", "show", "shows", "series")


@dataclass
class PlayerTest:
    name: str
    type: str
    steps: list[ProbeStep] = field(default_factory=list)
    version: str = ""
    api_version: str = ""
    roots: list[str] = field(default_factory=list)
    error: str | None = None
    error_kind: str | None = None
    probed: bool = False  # the probe succeeded: the credentials work
    #: A few of the player's own item paths (asked for by `mappings detect`), and why
    #: they could not be listed (the probe itself still counts as a success).
    samples: list[str] = field(default_factory=list)
    samples_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.probed and all(step.ok for step in self.steps)

    @property
    def warnings(self) -> list[ProbeStep]:
        """Player settings that defeat Metarr: shown with their fix; not failures."""
        return [step for step in self.steps if step.warning]


def resolve_secrets(player: PlayerConfig) -> list[str]:
    """Resolve this player's env/file secrets only; the reasons for those that fail."""
    problems = resolve_player_secrets(player)
    from metarr_sync.logs import add_secrets

    add_secrets(player.secrets())  # before any request: a -vv log must never show them
    return problems


def probe_player(player: PlayerConfig, sync: SyncConfig, samples: int = 0,
                 settings: bool = False) -> PlayerTest:
    """Probe one player and check its mappings; never raises for the player's faults.

    samples: also list up to this many of the player's items per library (their paths
    go to result.samples); a failure there is noted, not fatal.
    settings: also check the player's own settings that defeat Metarr (warnings; one that
    cannot be read is a warning too, never a failure of the player).
    """
    from metarr_sync.players import adapter_class
    from metarr_sync.players.base import PlayerError

    result = PlayerTest(player.name, player.type)
    problems = resolve_secrets(player)
    if problems:
        result.steps.append(ProbeStep("credentials available", False, "; ".join(problems)))
        result.error, result.error_kind = "; ".join(problems), "config"
        return result
    adapter = None
    checks: list[ProbeStep] = []
    try:
        adapter = adapter_class(player.type)(player, sync, dry_run=True)
        probe = adapter.probe()
        if settings:
            try:
                checks = adapter.check_settings()
            except PlayerError as exc:
                checks = [ProbeStep("player settings", True, f"could not be read: "
                                    f"{exc.message}", warning=True,
                                    fix="run `metarr-sync players test` again, or check "
                                        "them by hand (README: Player settings that "
                                        "defeat Metarr)")]
        if samples:
            try:
                result.samples = list(adapter.sample_paths(samples))
            except PlayerError as exc:
                result.samples_error = exc.message
    except PlayerError as exc:
        result.error, result.error_kind = exc.message, exc.kind
        result.steps.append(ProbeStep(STEP_OF_KIND.get(exc.kind, "probe"), False, exc.message))
        return result
    except Exception as exc:  # noqa: BLE001 - a bug in one adapter must not hide the others
        result.error, result.error_kind = f"internal error: {exc!r}", "internal"
        result.steps.append(ProbeStep("probe", False, result.error))
        return result
    finally:
        if adapter is not None:
            adapter.close()
    result.probed = True
    result.version, result.api_version = probe.version, probe.api_version
    result.roots = list(probe.roots)
    result.steps.extend(probe.steps)
    if not probe.steps:
        version = " ".join(v for v in (probe.version and f"version {probe.version}",
                                       probe.api_version and f"(API {probe.api_version})")
                           if v)
        result.steps.append(ProbeStep("reachable", True, version or "answered"))
    if settings:
        result.steps.extend(checks)
    if player.mappings:
        for mapping in player.mappings:
            ok, detail = check_mapping(mapping.player, result.roots)
            result.steps.append(ProbeStep(f"mapping {mapping.metarr}", ok,
                                          f"→ {mapping.player}: {detail}"))
    else:
        result.steps.append(ProbeStep("path mappings", True,
                                      "none: the player is sent Metarr's own paths"))
    return result


# --- comparing paths -----------------------------------------------------------------
#: Windows and SMB paths compare case-insensitively here, POSIX ones exactly.
CASE = WINDOWS_OR_URL


def check_mapping(player_path: str, roots: Sequence[str]) -> tuple[bool, str]:
    """Whether a mapping's player side exists among the player's library roots."""
    if not roots:
        return False, "the player reported no library roots"
    for root in roots:
        if same_place(player_path, root, CASE):
            return True, "a library root on the player"
    for root in roots:
        if is_under(player_path, root, CASE):
            return True, f"inside the player's library root {root}"
    inside = [root for root in roots if is_under(root, player_path, CASE)]
    if inside:
        return True, f"holds the player's library root(s) {', '.join(inside)}"
    return False, ("not a library root on the player, nor inside one; its roots: "
                   + ", ".join(roots))


@dataclass
class Proposal:
    """What `mappings detect` found for one of Metarr's libraries on one player.

    status: new (proposed; --apply writes it) | configured (the mapping in place already
    leads there) | conflict (a mapping in place leads elsewhere) | ambiguous (several
    roots match equally well) | unmatched (no root ends like the library).
    """

    library: Library
    status: str
    mapping: Mapping | None = None
    detail: str = ""
    #: How sure the proposal is: "high" (the library roots and the player's own items
    #: agree), "medium" (items only), "low" (roots only: a folder's name matched).
    confidence: str = ""
    #: The items that led to it, as "Metarr path ↔ player path" (a few).
    evidence: list[str] = field(default_factory=list)


def propose_mappings(libraries: Sequence[Library], roots: Sequence[str],
                     existing: Sequence[Mapping],
                     items: abc.Mapping[int, Sequence[str]] | None = None,
                     samples: Sequence[str] = ()) -> list[Proposal]:
    """Proposals by library roots, merged with those the items give (see match_items).

    `items`: a few Metarr item paths per library id; `samples`: the player's own item
    paths (Player.sample_paths). An item match that agrees with the roots raises the
    confidence; one that disagrees makes the library ambiguous (nothing is written);
    one where the roots found nothing proposes the mapping on its own.
    """
    by_roots = _propose_by_roots(libraries, roots, existing)
    if not items or not samples:
        return by_roots
    merged = []
    for proposal in by_roots:
        found = match_items(proposal.library, items.get(proposal.library.id, ()), samples)
        merged.append(_merge(proposal, found, existing))
    return merged


def _propose_by_roots(libraries: Sequence[Library], roots: Sequence[str],
                      existing: Sequence[Mapping]) -> list[Proposal]:
    proposals = []
    for library in libraries:
        if library.type.lower() not in VIDEO_LIBRARIES or not library.path:
            continue
        scored = sorted(((common_tail(library.path, root), root) for root in roots),
                        key=lambda pair: -pair[0])
        best = scored[0][0] if scored else 0
        if best == 0:
            tail = split(library.path)[-1] if split(library.path) else library.path
            proposals.append(Proposal(library, "unmatched", detail=(
                f"no library root on the player ends in {tail!r}"
                + (f" (its roots: {', '.join(roots)})" if roots else
                   " (the player reported no library roots)"))))
            continue
        tied = [root for score, root in scored if score == best]
        if len(tied) > 1:
            proposals.append(Proposal(library, "ambiguous", detail=(
                "several player roots match equally: " + ", ".join(tied))))
            continue
        root = tied[0]
        mapping = Mapping(strip_trailing(library.path), strip_trailing(root))
        current = _current_target(library.path, existing)
        if current is not None and same_place(current, root, CASE):
            proposals.append(Proposal(library, "configured", mapping,
                                      f"already maps to {strip_trailing(root)}",
                                      confidence="low"))
        elif current is not None and existing and best_mapping(library.path, existing):
            proposals.append(Proposal(library, "conflict", mapping, (
                f"the mapping in place sends it to {current}, but the player's library "
                f"root is {strip_trailing(root)}; `mappings remove` it first"),
                confidence="low"))
        else:
            proposals.append(Proposal(library, "new", mapping,
                                      f"{best} trailing path component(s) match",
                                      confidence="low"))
    return proposals


# --- matching items ---------------------------------------------------------------------

def library_item_paths(source: MetarrSource, libraries: Sequence[Library],
                       per_library: int = 20, samples: Sequence[str] = ()
                       ) -> dict[int, list[str]]:
    """The file paths of some movies and episodes of each video library (not removed).

    The first few of each library, plus those whose file name is one of the player's
    sample paths': both sides listing "a few" items would rarely pick the same ones in
    a big library, while a file name is looked up directly.
    """
    wanted = {lib.id for lib in libraries if lib.type.lower() in VIDEO_LIBRARIES}
    found: dict[int, list[str]] = {lib_id: [] for lib_id in wanted}

    def take(rows: Generator[Item, None, None], count: int) -> None:
        # islice stops reading after a few rows: the library is never listed whole.
        for item in islice(rows, count):
            if item.library_id in found and item.path and item.path not in \
                    found[item.library_id]:
                found[item.library_id].append(item.path)
        rows.close()

    for library_id in sorted(wanted):
        for kind in ("movie", "episode"):
            take(source.present_items(kind, library_id=library_id), per_library)
    # Both Unicode spellings: the player lists a name as its disk has it (NFD when macOS
    # wrote it), Metarr may hold the other.
    names = dict.fromkeys(v for p in (split(s)[-1] for s in samples if split(s)) if p
                          for v in (p, nfc(p)))
    for name in names:
        for kind in ("movie", "episode"):
            for sep in ("/", "\\"):
                take(source.present_items(kind, path_ending=sep + name), 5)
    return found


@dataclass
class ItemMatch:
    """What a library's items say about its mapping.

    mapping: the one most matched items agree on (None when they split evenly between
    several); votes: how many items agree; others: the other mappings items suggested.
    """

    mapping: Mapping | None
    votes: int
    evidence: list[str]
    others: list[Mapping] = field(default_factory=list)


def match_items(library: Library, metarr_paths: Sequence[str], player_paths: Sequence[str],
                evidence_kept: int = 3) -> ItemMatch | None:
    """The library's mapping, from Metarr items found among the player's own items.

    A Metarr item and a player item are the same file when everything below the library
    folder (at least the file name and its folder: `The Matrix (1999)/The Matrix
    (1999).mkv`) matches component by component; the player's library folder is then
    what precedes those components in its path. A mapping can only work when the whole
    relative path matches, so shorter matches prove nothing. An item matching several
    player items that disagree is left out; None when no item matched.
    """
    votes: dict[Mapping, list[str]] = {}
    base = strip_trailing(library.path)
    for path in metarr_paths:
        if not is_under(path, base, CASE):
            continue
        below = len(split(path)) - len(split(base))
        if below < 2:
            continue
        heads = set()
        for candidate in player_paths:
            if common_tail(path, candidate) >= below:
                head = ancestor(candidate, below)
                if head is not None:
                    heads.add((strip_trailing(head), candidate))
        if len({h for h, _ in heads}) != 1:
            continue  # no match, or several player folders hold this file
        head, candidate = sorted(heads)[0]
        votes.setdefault(Mapping(base, head), []).append(f"{path} ↔ {candidate}")
    if not votes:
        return None
    ranked = sorted(votes.items(), key=lambda pair: -len(pair[1]))
    best, seen = ranked[0]
    others = [m for m, _ in ranked[1:]]
    tied = len(ranked) > 1 and len(ranked[1][1]) == len(seen)
    return ItemMatch(None if tied else best, len(seen), seen[:evidence_kept],
                     [m for m, _ in ranked] if tied else others)


def _merge(proposal: Proposal, found: ItemMatch | None,
           existing: Sequence[Mapping]) -> Proposal:
    """One library's root-based proposal, judged again with what its items say."""
    if found is None:
        return proposal
    library = proposal.library
    if found.mapping is None:
        return Proposal(library, "ambiguous", None, (
            "its items are found under several player folders: "
            + ", ".join(m.player for m in found.others)), confidence="medium",
            evidence=found.evidence)
    items = f"{found.votes} item(s) found on the player, e.g. {found.evidence[0]}"
    target = found.mapping.player
    if proposal.mapping is not None and proposal.status in ("new", "configured", "conflict"):
        if same_place(proposal.mapping.player, target, CASE):
            return Proposal(library, proposal.status, proposal.mapping,
                            f"{proposal.detail}; confirmed by {items}", confidence="high",
                            evidence=found.evidence)
        return Proposal(library, "ambiguous", None, (
            f"the player's library root {proposal.mapping.player} matches its name, but "
            f"its items are under {target} ({items})"), confidence="low",
            evidence=found.evidence)
    current = _current_target(library.path, existing)
    if current is not None and same_place(current, target, CASE):
        status, detail = "configured", f"already maps to {target}; {items}"
    elif current is not None and existing and best_mapping(library.path, existing):
        status, detail = "conflict", (
            f"the mapping in place sends it to {current}, but the player has its items "
            f"under {target} ({items}); `mappings remove` it first")
    else:
        status, detail = "new", items
    return Proposal(library, status, found.mapping, detail, confidence="medium",
                    evidence=found.evidence)


def _current_target(path: str, mappings: Sequence[Mapping]) -> str | None:
    """Where the mappings in place send a Metarr path (None: nowhere)."""
    from metarr_sync.plan import MappingError

    try:
        return map_path(path, mappings)[0]
    except MappingError:
        return None


def mappings_to_apply(proposals: Sequence[Proposal], existing: Sequence[Mapping]
                      ) -> list[Mapping]:
    """The mappings `--apply` adds.

    With no mappings in place a player is sent Metarr's own paths; once one is added,
    every other library needs one too, so libraries that worked unmapped get an identity
    mapping alongside the new ones.
    """
    new = [p.mapping for p in proposals if p.status == "new" and p.mapping]
    if new and not existing:
        new += [p.mapping for p in proposals if p.status == "configured" and p.mapping]
    return new
