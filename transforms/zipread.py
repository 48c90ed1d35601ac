"""Reading PAI chunk zips defensively: salvage after truncation, refuse unsafe names, verify CRCs.

A chunk zip is a GB-sized download; a partial copy has lost its central directory (it lives at
the end of the file) but still holds complete members up to the cut. `ZipMembers` reads a
healthy zip with `zipfile` and, failing that, walks the local file headers to recover every
complete member, so one bad download costs the clips past the cut, not the whole chunk.
Members are only ever read into memory: a name like `../x` is reported, never extracted.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

# Members read into memory are parquet files (~0.4 MB of egomotion per real clip) or, when a zip
# compresses its videos, an mp4 (~20 MB): a member that declares more is damage or a zip bomb.
MAX_MEMBER_BYTES = 256 * 2**20
# What one chunk zip may declare in all (a real front-camera zip holds ~2 GB for 100 clips).
MAX_ZIP_BYTES = 64 * 2**30
_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_LOCAL_SIG = 0x04034B50


class ChunkUnreadableError(RuntimeError):
    """A whole chunk file cannot be read: the run must fail and name it."""


class MemberError(Exception):
    """One member is missing, truncated or corrupt: its clip is quarantined, the chunk goes on."""


def is_unsafe_member_name(name: str) -> bool:
    p = PurePosixPath(name)
    return p.is_absolute() or ".." in p.parts or "\\" in name or ":" in name


class ZipMembers:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.notes: list[str] = []  # chunk-level observations for the log and the metadata
        self._zf: zipfile.ZipFile | None = None
        self._salvaged: dict[str, tuple[int, int, int, int, int] | None] = {}
        try:
            self._zf = zipfile.ZipFile(self.path)
            self.names = self._zf.namelist()
            declared = sum(i.file_size for i in self._zf.infolist())
        except (zipfile.BadZipFile, OSError) as exc:
            self._salvaged = _scan_local_headers(self.path)
            if not self._salvaged:
                raise ChunkUnreadableError(
                    f"{self.path}: not a readable zip ({exc}) and no member could be salvaged; delete it and "
                    "fetch the chunk again") from exc
            complete = sum(v is not None for v in self._salvaged.values())
            self.notes.append(f"{self.path.name}: central directory unreadable ({exc}); salvaged {complete} complete "
                              f"members of {len(self._salvaged)} from local headers")
            self.names = list(self._salvaged)
            declared = sum(v[2] for v in self._salvaged.values() if v is not None)
        if declared > MAX_ZIP_BYTES:
            self.close()
            raise ChunkUnreadableError(f"{self.path}: members declare {declared / 2**30:.1f} GiB inflated, more than "
                                       f"the {MAX_ZIP_BYTES / 2**30:.0f} GiB a chunk zip may hold: damaged or a zip "
                                       "bomb; delete it and fetch the chunk again")

    def __contains__(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str) -> bytes:
        if name not in self.names:
            raise MemberError(f"member {name} missing from {self.path.name}")
        if self._zf is not None:
            _check_size(name, self._zf.getinfo(name).file_size, self.path)
            try:
                return self._zf.read(name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise MemberError(f"member {name} of {self.path.name} is corrupt ({exc})") from exc
        entry = self._salvaged[name]
        if entry is None:
            raise MemberError(f"member {name} of {self.path.name} is truncated (partial download)")
        offset, csize, usize, method, crc = entry
        _check_size(name, usize, self.path)
        with open(self.path, "rb") as f:
            f.seek(offset)
            raw = f.read(csize)
        try:  # never inflate past the declared size: a lying header cannot grow memory
            data = raw if method == 0 else zlib.decompressobj(-15).decompress(raw, usize + 1)
        except zlib.error as exc:
            raise MemberError(f"member {name} of {self.path.name} is corrupt ({exc})") from exc
        if len(data) != usize or zlib.crc32(data) != crc:
            raise MemberError(f"member {name} of {self.path.name} fails its CRC check (corrupt)")
        return data

    def open(self, name: str) -> BinaryIO:
        """A seekable stream of a member; for stored members of a healthy zip, without copying.

        A stored member is read through its own file handle over its byte range, not through
        `ZipFile.open`: PyAV seeks back and forth (the moov box sits at the end of an mp4), and
        ZipExtFile streams sharing one handle across threads failed with EOFError mid-read.
        """
        if self._zf is not None and name in self.names:
            info = self._zf.getinfo(name)
            if info.compress_type == zipfile.ZIP_STORED:
                return MemberSlice(self.path, _data_offset(self.path, info), info.file_size)
        return io.BytesIO(self.read(name))

    def close(self) -> None:
        if self._zf is not None:
            self._zf.close()


def _check_size(name: str, size: int, path: Path) -> None:
    if size > MAX_MEMBER_BYTES:
        raise MemberError(f"member {name} of {path.name} declares {size / 2**20:.0f} MiB inflated, more than the "
                          f"{MAX_MEMBER_BYTES / 2**20:.0f} MiB a clip's member may hold: not read")


def _data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a member's data starts: after its local header (whose name/extra lengths may differ
    from the central directory's)."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        head = f.read(_LOCAL_HEADER.size)
    if len(head) < _LOCAL_HEADER.size or _LOCAL_HEADER.unpack(head)[0] != _LOCAL_SIG:
        raise MemberError(f"member {info.filename} of {Path(path).name}: bad local header (corrupt)")
    nlen, xlen = _LOCAL_HEADER.unpack(head)[9:11]
    return info.header_offset + _LOCAL_HEADER.size + nlen + xlen


class MemberSlice(io.RawIOBase):
    """A read-only, seekable view of bytes [offset, offset + size) of a file, with its own handle."""

    def __init__(self, path: Path, offset: int, size: int) -> None:
        self._f = open(path, "rb")
        self._offset, self._size, self._pos = offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = min(max(0, base + pos), self._size)
        return self._pos

    def readinto(self, buf: bytearray | memoryview) -> int:
        n = min(len(buf), self._size - self._pos)
        if n <= 0:
            return 0
        self._f.seek(self._offset + self._pos)
        got = self._f.readinto(memoryview(buf)[:n])
        self._pos += got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()


def _scan_local_headers(path: Path) -> dict[str, tuple[int, int, int, int, int] | None]:
    """name -> (data offset, compressed size, size, method, crc), or None when cut off."""
    data = Path(path).read_bytes()
    found: dict[str, tuple[int, int, int, int, int] | None] = {}
    pos = data.find(b"PK\x03\x04")
    while 0 <= pos and pos + _LOCAL_HEADER.size <= len(data):
        sig, _ver, flags, method, _t, _d, crc, csize, usize, nlen, xlen = _LOCAL_HEADER.unpack_from(data, pos)
        if sig != _LOCAL_SIG or method not in (0, 8) or flags & 0x08:
            # data descriptors carry the sizes after the data: no safe way to find the end
            pos = data.find(b"PK\x03\x04", pos + 4)
            continue
        name = data[pos + 30: pos + 30 + nlen].decode("utf-8", "replace")
        start = pos + 30 + nlen + xlen
        if start + csize > len(data):
            found[name] = None
            break
        found[name] = (start, csize, usize, method, crc)
        pos = start + csize
        if data[pos: pos + 4] != b"PK\x03\x04":
            pos = data.find(b"PK\x03\x04", pos)
    return found
