"""Compact look-up tables for the listings Plex and Jellyfin are matched against.

A run lists whole libraries (a Plex TV section: every episode, 200,000 of them) and looks
up a few thousand changed items in them. Kept as parsed JSON, or even as one small object
and one path string per item, such a listing costs the run 100 MB and more; and objects
kept from each parsed page leave the allocator's pools of all the freed ones half used,
so the process never gives that memory back. Here an item costs a few dozen bytes in a
handful of byte arrays, and a parsed page is dropped as soon as it is indexed.

Keys (paths, provider ids) are kept as their 16-byte BLAKE2b digest: two different keys
of one library sharing a digest is a chance of about n²/2¹²⁹ (10⁻²⁸ for 250,000 paths),
far below that of a memory error, so a digest match is taken as the key's match.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b

_DIGEST = 16
_NUMBER = 4  # the record number stored with each digest: up to 4 billion items


def digest(key: str) -> bytes:
    # surrogatepass: a path the server sent with an unpaired surrogate still gets a digest
    return blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST).digest()


class CompactIndex:
    """A multimap from strings to record numbers (ints), in byte arrays only.

    The digests are spread over 2^bits buckets by their first bytes; a bucket holds at
    most about 64 entries (digest + number, 20 bytes each) and is searched with
    bytearray.find, so a look-up costs one digest and a short scan in C.
    """

    _ENTRY = _DIGEST + _NUMBER
    _PER_BUCKET = 64

    def __init__(self) -> None:
        self._bits = 4
        self._buckets = [bytearray() for _ in range(1 << self._bits)]
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _bucket(self, key_digest: bytes | bytearray, bits: int) -> int:
        return int.from_bytes(key_digest[:4], "big") >> (32 - bits)

    def add(self, key: str, number: int) -> None:
        key_digest = digest(key)
        self._buckets[self._bucket(key_digest, self._bits)] += \
            key_digest + number.to_bytes(_NUMBER, "big")
        self._count += 1
        if self._count > self._PER_BUCKET << self._bits:
            self._grow()

    def _grow(self) -> None:
        """Four times the buckets: every entry moves to one of the four its bucket splits
        into (growing by four, the entries are moved about n/3 times in all)."""
        bits = self._bits + 2
        buckets = [bytearray() for _ in range(1 << bits)]
        size = self._ENTRY
        for bucket in self._buckets:
            for at in range(0, len(bucket), size):
                entry = bucket[at:at + size]
                buckets[self._bucket(entry, bits)] += entry
        self._bits, self._buckets = bits, buckets

    def get(self, key: str) -> list[int]:
        """The numbers added under `key`, in the order they were added."""
        key_digest = digest(key)
        bucket = self._buckets[self._bucket(key_digest, self._bits)]
        found: list[int] = []
        size = self._ENTRY
        at = bucket.find(key_digest)
        while at >= 0:
            if at % size:  # a match straddling two entries: not a key
                at = bucket.find(key_digest, at + 1)
                continue
            found.append(int.from_bytes(bucket[at + _DIGEST:at + size], "big"))
            at = bucket.find(key_digest, at + size)
        return found


class IdSet:
    """A set of strings (item ids) as CompactIndex digests: about 20 bytes each where a
    Python set of str costs over 100 (250,000 Jellyfin ids: 5 MB, not 28 MB)."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._index = CompactIndex()
        self |= keys

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and bool(self._index.get(key))

    def add(self, key: str) -> None:
        if key not in self:
            self._index.add(key, 0)

    def __ior__(self, keys: Iterable[str]) -> IdSet:
        for key in keys:
            self.add(key)
        return self

    def clear(self) -> None:
        self._index = CompactIndex()


class ItemIds:
    """Item ids (Plex rating keys, Jellyfin item ids) by record number, 17 bytes each.

    Plex's rating keys are decimal numbers, Jellyfin's ids 32 lowercase hex digits: both
    fit in 16 bytes. Anything else (never seen, but a server may) is kept as it is.
    """

    _DECIMAL, _HEX, _OTHER = 0, 1, 2
    _SIZE = 17

    def __init__(self) -> None:
        self._data = bytearray()
        self._other: list[str] = []

    def __len__(self) -> int:
        return len(self._data) // self._SIZE

    def add(self, item_id: str) -> int:
        """Store `item_id`; its record number."""
        number = len(self)
        raw = _compact(item_id)
        if raw is None:
            self._data += bytes((self._OTHER,)) + len(self._other).to_bytes(16, "big")
            self._other.append(item_id)
        else:
            self._data += raw
        return number

    def __getitem__(self, number: int) -> str:
        at = number * self._SIZE
        form, value = self._data[at], self._data[at + 1:at + self._SIZE]
        if form == self._DECIMAL:
            return str(int.from_bytes(value, "big"))
        if form == self._HEX:
            return value.hex()
        return self._other[int.from_bytes(value, "big")]


def _compact(item_id: str) -> bytes | None:
    """`item_id` as a form byte and 16 bytes, when it reads back exactly; else None."""
    if len(item_id) == 32:
        try:
            raw = bytes.fromhex(item_id)
        except ValueError:
            raw = b""
        if len(raw) == 16 and raw.hex() == item_id:  # lowercase, no spaces
            return bytes((ItemIds._HEX,)) + raw
    if len(item_id) <= 38:
        try:
            number = int(item_id)
        except ValueError:
            return None
        if 0 <= number < 1 << 128 and str(number) == item_id:  # no sign, no leading 0
            return bytes((ItemIds._DECIMAL,)) + number.to_bytes(16, "big")
    return None
