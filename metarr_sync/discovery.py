"""Player discovery for `players test` and `mappings detect`.

`probe_player` probes one player through its adapter and turns what it learns into rows a
person can act on; `check_mapping` tells whether a mapping's player side exists among the
player's library roots; `propose_mappings` pairs Metarr's library roots with the player's
by their trailing path components. Wrong path mappings are the most common reason a sync
"succeeds" while nothing shows up on the player, so these say exactly what does not match.

Adapters are imported only inside probe_player: `status` and friends never load them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from metarr_sync.config import Mapping, PlayerConfig, SyncConfig
from metarr_sync.metarr import Library
from metarr_sync.plan import PathStyle, best_mapping, is_under, map_path, strip_trailing
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

    @property
    def ok(self) -> bool:
        return self.probed and all(step.ok for step in self.steps)


def resolve_secrets(player: PlayerConfig) -> list[str]:
    """Resolve this player's env/file secrets only; the reasons for those that fail."""
    problems = []
    for key in ("password", "token"):
        secret = getattr(player, key)
        if secret is None:
            continue
        try:
            value = secret.resolve()
        except ValueError as exc:
            problems.append(f"players.{player.name}.{key}: {exc}")
            continue
        if not value:
            problems.append(f"players.{player.name}.{key}: is empty")
        setattr(player, f"{key}_value", value)
    from metarr_sync.logs import add_secrets

    add_secrets(player.secrets())  # before any request: a -vv log must never show them
    return problems


def probe_player(player: PlayerConfig, sync: SyncConfig) -> PlayerTest:
    """Probe one player and check its mappings; never raises for the player's faults."""
    from metarr_sync.players import adapter_class
    from metarr_sync.players.base import PlayerError

    result = PlayerTest(player.name, player.type)
    problems = resolve_secrets(player)
    if problems:
        result.steps.append(ProbeStep("credentials available", False, "; ".join(problems)))
        result.error, result.error_kind = "; ".join(problems), "config"
        return result
    adapter = None
    try:
        adapter = adapter_class(player.type)(player, sync, dry_run=True)
        probe = adapter.probe()
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

def _parts(path: str) -> list[str]:
    """Path components, URL scheme and host included (`smb://nas/x` → smb:, nas, x)."""
    return [p for p in re.split(r"[\\/]", path) if p]


def _fold(path: str) -> str:
    """Windows and SMB paths compare case-insensitively; POSIX ones exactly."""
    style = PathStyle.of(path)
    return path.casefold() if style.sep == "\\" or style.url else path


def _under(path: str, root: str) -> bool:
    return is_under(path, root) or is_under(_fold(path), _fold(root))


def check_mapping(player_path: str, roots: Sequence[str]) -> tuple[bool, str]:
    """Whether a mapping's player side exists among the player's library roots."""
    if not roots:
        return False, "the player reported no library roots"
    for root in roots:
        if _under(player_path, root) and _under(root, player_path):
            return True, "a library root on the player"
    for root in roots:
        if _under(player_path, root):
            return True, f"inside the player's library root {root}"
    inside = [root for root in roots if _under(root, player_path)]
    if inside:
        return True, f"holds the player's library root(s) {', '.join(inside)}"
    return False, ("not a library root on the player, nor inside one; its roots: "
                   + ", ".join(roots))


def _common_tail(a: str, b: str) -> int:
    """How many trailing path components two paths share (case-insensitively)."""
    pa, pb = [p.casefold() for p in _parts(a)], [p.casefold() for p in _parts(b)]
    count = 0
    while count < min(len(pa), len(pb)) and pa[-1 - count] == pb[-1 - count]:
        count += 1
    return count


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


def propose_mappings(libraries: Sequence[Library], roots: Sequence[str],
                     existing: Sequence[Mapping]) -> list[Proposal]:
    proposals = []
    for library in libraries:
        if library.type.lower() not in VIDEO_LIBRARIES or not library.path:
            continue
        scored = sorted(((_common_tail(library.path, root), root) for root in roots),
                        key=lambda pair: -pair[0])
        best = scored[0][0] if scored else 0
        if best == 0:
            tail = _parts(library.path)[-1] if _parts(library.path) else library.path
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
        if current is not None and _same(current, root):
            proposals.append(Proposal(library, "configured", mapping,
                                      f"already maps to {strip_trailing(root)}"))
        elif current is not None and existing and best_mapping(library.path, existing):
            proposals.append(Proposal(library, "conflict", mapping, (
                f"the mapping in place sends it to {current}, but the player's library "
                f"root is {strip_trailing(root)}; `mappings remove` it first")))
        else:
            proposals.append(Proposal(library, "new", mapping,
                                      f"{best} trailing path component(s) match"))
    return proposals


def _current_target(path: str, mappings: Sequence[Mapping]) -> str | None:
    """Where the mappings in place send a Metarr path (None: nowhere)."""
    from metarr_sync.plan import MappingError

    try:
        return map_path(path, mappings)[0]
    except MappingError:
        return None


def _same(a: str, b: str) -> bool:
    return _under(a, b) and _under(b, a)


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
