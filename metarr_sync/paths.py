"""Paths as Metarr and the players spell them: splitting, comparing, joining. Pure.

Every path here is text in somebody else's spelling: Metarr's (POSIX, or Windows), a
player's (POSIX, a Windows drive `S:\\Movies`, a UNC share `\\\\nas\\share`, or a URL such
as Kodi's `smb://nas/share`). None of it goes through os.path, which knows only the rules
of the machine metarr-sync runs on. Tested table by table in tests/test_paths.py.

The rules every function here follows:

- Separators: `/` and `\\` both separate components in every path, whichever one the path
  mostly uses. Empty components do not count, so doubled, leading and trailing
  separators change nothing when comparing: `/a//b/` has the components `a`, `b`.
- Whole components: a path is under a folder when the folder's components are the first
  components of the path. `/media/movies2` is not under `/media/movies`.
- Windows: a path is Windows-spelled when it holds a `\\` or starts with a drive letter
  (`C:`). A drive `C:` is a component like any other; `C:\\` is a root that keeps its
  separator. A UNC path `\\\\nas\\share\\x` has the components `nas`, `share`, `x`: the
  same as `/nas/share/x`, which comparing does not tell apart.
- URLs (`scheme://host/...`): in `components`, `is_under` and everything built on them
  (mapping, batching, collapsing folders) the scheme is one component compared without
  regard to case (`SMB://` is `smb://`); host and path are components like any other, with
  their %-escapes compared as they are. `split`, `compare_key` and `components_below`
  know no URLs: they cut one at its separators (`smb:`, `host`, ...), which is all Plex
  needs, its paths being local.
- Case: which paths compare without regard to case is a *case rule*, chosen by the
  caller in one of the named rules below. `PLATFORM` compares as the file system holding
  the path does, and is the rule of every comparison of a player's path with the one
  expected (Kodi's, Jellyfin's and Plex's matching and verification, the choice of a
  mapping): a Windows drive path (`D:\\Movies`) and a UNC path (`\\\\nas\\share`) ignore
  case (NTFS, SMB servers), as does an `smb://` URL (Kodi's own SMB client: the server
  decides, and SMB servers ignore case); a POSIX path (`/mnt/movies`) and any other URL
  (`nfs://`: the server's POSIX file system) compare exactly, but for a URL's scheme.
  The others: `EXACT` (case matters; batching and collapsing folders, which compare
  Metarr's own spellings), `WINDOWS` (Windows-spelled paths only), `WINDOWS_OR_URL`
  (`players test` and `mappings detect`, which guess and so also ignore the case of every
  URL); `common_tail` (pairing library folders by name) always ignores case. Case is
  folded with str.casefold.
- Unicode: every comparison normalises names to NFC first, whatever the case rule: macOS
  writes names decomposed (NFD: `e` + U+0301), Metarr and most Linux tools hold them
  composed (NFC: U+00E9), and a player lists them as the file system has them. Only
  comparisons: a path sent to a player or read from the disk is never normalised (on
  Linux the NFC and NFD spellings name two different files). A mapped path sent to a
  player is the mapping's player side as configured + the names below the Metarr side as
  Metarr holds them (plan.map_path); where the player gave its own spelling (an item's
  id, Kodi's sources and its listing of a folder), that is what is sent back.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote

# DOTALL: a file name may hold a newline, and must not turn a URL into a plain path.
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)(.*)$", re.DOTALL)
_DRIVE_RE = re.compile(r"^[A-Za-z]:[\\/]?$")
_DRIVE_START = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[\\/]")
_WINDOWS_BAD = re.compile(r'[<>:"|?*\x00-\x1f]')
_PERCENT_RE = re.compile(r"%[0-9A-Fa-f]{2}")
_SEP_TO_NUL = str.maketrans({"/": "\0", "\\": "\0"})


class MappingError(ValueError):
    """An item path that cannot be turned into a path the player understands."""


# --- what kind of path ----------------------------------------------------------------

def is_url(path: str) -> bool:
    """`scheme://...` (Kodi's `smb://`, `nfs://`, ...)."""
    return bool(_URL_RE.match(path))


def is_windows(path: str) -> bool:
    """Windows-spelled: a `\\` anywhere (UNC included) or a leading drive letter."""
    return "\\" in path or bool(_DRIVE_START.match(path))


def is_local_absolute(path: str) -> bool:
    """An absolute path as Metarr writes them: `/...`, a drive `C:\\...`, `C:/...`, or a
    UNC share `\\\\nas\\share\\...` (a Metarr on Windows reading a NAS)."""
    return path.startswith(("/", "\\\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", path))


def is_absolute_any(path: str) -> bool:
    """Absolute in any of the players' path styles: POSIX, Windows drive, UNC or URL."""
    return (
        path.startswith("/")
        or bool(re.match(r"^[A-Za-z]:[\\/]", path))
        or path.startswith("\\\\")
        or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path))
    )


# --- case rules ------------------------------------------------------------------------
#: Whether a path compares without regard to case (see the module docstring).
CaseRule = Callable[[str], bool]


def _never(path: str) -> bool:
    return False


def _always(path: str) -> bool:
    return True


EXACT: CaseRule = _never
WINDOWS: CaseRule = is_windows


def _windows_or_url(path: str) -> bool:
    return is_windows(path) or is_url(path)


WINDOWS_OR_URL: CaseRule = _windows_or_url


def is_smb(path: str) -> bool:
    """An `smb://` URL (any case of the scheme)."""
    return path[:6].lower() == "smb://"


def _platform(path: str) -> bool:
    return is_windows(path) or is_smb(path)


PLATFORM: CaseRule = _platform


def nfc(text: str) -> str:
    """`text` in Unicode's composed form (NFC), for comparing only; ASCII as it is."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def folded(path: str, case: CaseRule) -> str:
    """`path` as compared: NFC, and case-folded when `case` says it ignores case."""
    path = nfc(path)
    # Folding can decompose (`İ`): composed again, so both sides end in the same form.
    return nfc(path.casefold()) if case(path) else path


def match_key(path: str, case: CaseRule = PLATFORM) -> str:
    """One string per place, for indexing a player's listing by path: `folded`, without
    trailing separator, a Windows path's `/` turned into `\\` (both separate there) and a
    URL's scheme in lower case. Two spellings of one file get the same key; the key is a
    path in the original's style, so `parent` still walks it up."""
    key = folded(strip_trailing(path), case)
    match = _URL_RE.match(key)
    if match:
        return match.group(1).lower() + match.group(2)
    return key.replace("/", "\\") if is_windows(key) else key


# --- splitting and comparing ------------------------------------------------------------

def split(path: str) -> list[str]:
    """The names in `path`, cut at both separators, empty ones left out."""
    return [part for part in _SEPARATORS.split(path) if part]


def components(path: str) -> list[str]:
    """What `is_under` compares: the names in `path`, a URL's scheme (lower case, with its
    `://`) as the first one (`SMB://nas/x` → `smb://`, `nas`, `x`)."""
    match = _URL_RE.match(path)
    if match:
        return [match.group(1).lower(), *split(match.group(2))]
    return split(path)


def compare_key(path: str, case: CaseRule = EXACT) -> tuple[str, ...]:
    """A path's identity for equality: its names (`split`) in NFC, case-folded by `case`."""
    return tuple(split(folded(path, case)))


def _starts_with(parts: Sequence[str], head: Sequence[str]) -> bool:
    return parts[: len(head)] == head


def is_under(path: str, root: str, case: CaseRule = EXACT) -> bool:
    """True when `path` is `root` or inside it, by whole components.

    `/data/movies` is not under `/data/movie`, and `/Movies4K` not under `/Movies`. With a
    case rule, also true when it holds once each side is folded as the rule says for it.
    """
    if _starts_with(components(path), components(root)):
        return True
    if path.isascii() and root.isascii() and not (case(path) or case(root)):
        return False  # nothing to fold or compose: the comparison above was the one
    a, b = folded(path, case), folded(root, case)
    return (a, b) != (path, root) and _starts_with(components(a), components(b))


def same_place(a: str, b: str, case: CaseRule = EXACT) -> bool:
    """`a` and `b` name the same folder: each is under the other."""
    return is_under(a, b, case) and is_under(b, a, case)


def components_below(path: str, root: str, case: CaseRule = EXACT) -> list[str] | None:
    """The names of `path` below `root` (as `path` spells them), or None when it is not
    inside it. Both sides fold case when `case` says so for `root` (`S:\\Movies` holds
    `s:/movies/x`), and compare in NFC."""
    fold = case(root)
    head, names = split(folded(root, case)), split(path)
    here = [folded(n, _always) if fold else nfc(n) for n in names]
    if not _starts_with(here, head):
        return None
    return names[len(head):]


def common_tail(a: str, b: str) -> int:
    """How many trailing names two paths share, without regard to case (and in NFC)."""
    pa, pb = split(folded(a, _always)), split(folded(b, _always))
    count = 0
    while count < min(len(pa), len(pb)) and pa[-1 - count] == pb[-1 - count]:
        count += 1
    return count


def order_key(path: str) -> str:
    """Sorts paths component by component (`/a/x` before `/a b/x`): separators sort below
    every character once they are NUL; one string, not a list of components."""
    return path.translate(_SEP_TO_NUL)


def collapse_folders(folders: Iterable[str]) -> list[str]:
    """The distinct folders, leaving out any folder inside another one of the set (EXACT).

    Sorting by components puts every folder right before its descendants, so one pass
    suffices: O(n log n), with no pairwise comparison.
    """
    unique = {strip_trailing(f): components(f) for f in folders}
    kept: list[str] = []
    last: list[str] | None = None
    for folder, parts in sorted(unique.items(), key=lambda kv: kv[1]):
        if last is not None and parts[: len(last)] == last:
            continue
        kept.append(folder)
        last = parts
    return kept


# --- spelling paths ----------------------------------------------------------------------

@dataclass(frozen=True)
class PathStyle:
    """How a player spells paths: its separator and whether names are percent-encoded."""

    sep: str = "/"
    url: bool = False
    encoded: bool = False

    @classmethod
    def of(cls, root: str) -> PathStyle:
        return _style_of(root)


@lru_cache(maxsize=256)
def _style_of(root: str) -> PathStyle:
    """One PathStyle per player root, shared by all the run's targets under it."""
    if _URL_RE.match(root):
        return PathStyle("/", url=True, encoded=bool(_PERCENT_RE.search(root)))
    if is_windows(root):
        return PathStyle("\\")
    return PathStyle("/")


def strip_trailing(path: str) -> str:
    """`path` without trailing separators, keeping roots (`/`, `C:\\`, `smb://host`) whole."""
    match = _URL_RE.match(path)
    if match:
        rest = match.group(2).rstrip("/")
        return match.group(1) + rest
    if _DRIVE_RE.match(path):
        return path[:2] + "\\"
    stripped = path.rstrip("/\\")
    return stripped or path[:1]


def with_trailing(path: str, style: PathStyle | None = None) -> str:
    """`path` ending in exactly one separator of its style (Kodi needs it on folders)."""
    style = style or PathStyle.of(path)
    path = strip_trailing(path)
    return path if path.endswith(style.sep) else path + style.sep


def join(root: str, parts: Sequence[str], style: PathStyle | None = None) -> str:
    """Append names to a player-side root in that root's style (percent-encoded when the
    root is); MappingError for a name a Windows player cannot hold."""
    style = style or PathStyle.of(root)
    base = strip_trailing(root)
    if not parts:
        return base
    names = []
    for part in parts:
        if style.sep == "\\" and _WINDOWS_BAD.search(part):
            raise MappingError(f"the name {part!r} cannot exist on a Windows player")
        names.append(quote(part, safe="!$&'()+,;=@[]~") if style.encoded else part)
    if base.endswith(("/", "\\")):
        return base + style.sep.join(names)
    return base + style.sep + style.sep.join(names)


def parent(path: str, style: PathStyle) -> str:
    """The folder holding `path`, cut at `style`'s separator; a root is its own parent
    (`/`, `C:\\`, `smb://host`)."""
    base = strip_trailing(path)
    cut = base.rfind(style.sep)
    match = _URL_RE.match(base)
    if match and cut < len(match.group(1)):
        return base
    if cut <= 0:
        return base[:1] if cut == 0 else base
    head = base[:cut]
    return head + style.sep if _DRIVE_RE.match(head + style.sep) else head


def ancestor(path: str, levels: int) -> str | None:
    """`path` without its last `levels` names (None when it has not that many)."""
    style = PathStyle.of(path)
    for _ in range(levels):
        up = parent(path, style)
        if up == strip_trailing(path):
            return None
        path = up
    return path


def folder_of(path: str) -> str:
    """The folder holding a Metarr-side path, cut at either separator, without trailing
    separator (`C:\\x` → `C:`; `/x` → `/`)."""
    trimmed = path.rstrip("/\\")
    cut = max(trimmed.rfind("/"), trimmed.rfind("\\"))
    if cut < 0:
        return trimmed
    return trimmed[:cut] or trimmed[:1]
