"""Tiny images for artwork tests, without an imaging library.

`png()` writes a solid-colour PNG of any size (zlib only). Kodi re-encodes what it caches
(a served copy is a JPEG whatever the source was), so a served image is never compared
byte for byte with the file: `dimensions()` reads the size from a PNG's IHDR or a JPEG's
SOF header, and artwork tests republish an image of a different size.
"""

from __future__ import annotations

import struct
import zlib


def png(width: int, height: int, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A solid-colour 8-bit RGB PNG."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG or JPEG image; ValueError for anything else."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return struct.unpack(">II", data[16:24])
    if data.startswith(b"\xff\xd8"):
        at = 2
        while at + 4 <= len(data):
            if data[at] != 0xFF:
                raise ValueError("broken JPEG: no marker where one belongs")
            marker = data[at + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                at += 2  # markers without a length
                continue
            length = struct.unpack(">H", data[at + 2:at + 4])[0]
            # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height, width = struct.unpack(">HH", data[at + 5:at + 9])
                return width, height
            at += 2 + length
        raise ValueError("JPEG without a frame header")
    raise ValueError(f"neither PNG nor JPEG: {data[:8]!r}")
