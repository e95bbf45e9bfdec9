"""The library-lookup entries of an ELF file's dynamic section (NEEDED, RPATH, RUNPATH), read
in Python so that checking a bundle needs no binutils."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

MAGIC = b"\x7fELF"
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NULL, _DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 0, 1, 5, 15, 29


class NotElf(ValueError):
    """Not an ELF file this reader understands (64- or 32-bit, either byte order)."""


@dataclasses.dataclass(frozen=True)
class Dynamic:
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()    # DT_RPATH entries, ':'-split
    runpath: tuple[str, ...] = ()  # DT_RUNPATH entries, ':'-split


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def read(path: Path) -> Dynamic:
    """The dynamic section's lookup entries; an empty Dynamic for a static file."""
    data = path.read_bytes()
    if data[:4] != MAGIC or len(data) < 64 or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise NotElf(f"{path} is not an ELF file")
    wide = data[4] == 2
    end = "<" if data[5] == 1 else ">"
    try:
        return _parse(data, wide, end)
    except (struct.error, IndexError, UnicodeDecodeError) as exc:
        raise NotElf(f"{path}: truncated or malformed ELF ({exc})") from exc


def _parse(data: bytes, wide: bool, end: str) -> Dynamic:
    if wide:
        phoff, = struct.unpack_from(end + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
        phdr = end + "IIQQQQQQ"   # type flags offset vaddr paddr filesz memsz align
        dyn, dyn_size = end + "qQ", 16
    else:
        phoff, = struct.unpack_from(end + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
        phdr = end + "IIIIIIII"   # type offset vaddr paddr filesz memsz flags align
        dyn, dyn_size = end + "iI", 8
    loads, dynamic = [], None
    for i in range(phnum):
        fields = struct.unpack_from(phdr, data, phoff + i * phentsize)
        if wide:
            ptype, _, offset, vaddr, _, filesz, _, _ = fields
        else:
            ptype, offset, vaddr, _, filesz, _, _, _ = fields
        if ptype == _PT_LOAD:
            loads.append((vaddr, offset, filesz))
        elif ptype == _PT_DYNAMIC:
            dynamic = (offset, filesz)
    if dynamic is None:
        return Dynamic()
    entries: list[tuple[int, int]] = []
    offset, size = dynamic
    for pos in range(offset, offset + size, dyn_size):
        tag, value = struct.unpack_from(dyn, data, pos)
        if tag == _DT_NULL:
            break
        entries.append((tag, value))
    strtab = next((v for t, v in entries if t == _DT_STRTAB), None)
    if strtab is None:
        return Dynamic()
    # DT_STRTAB is a virtual address: the file offset is found through the PT_LOAD holding it.
    base = next((off + strtab - va for va, off, sz in loads if va <= strtab < va + sz), None)
    if base is None:
        raise IndexError("DT_STRTAB outside every PT_LOAD segment")

    def text(value: int) -> str:
        return data[base + value:data.index(b"\0", base + value)].decode("utf-8")

    def split(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in text(v).split(":") if p)

    return Dynamic(needed=tuple(text(v) for t, v in entries if t == _DT_NEEDED),
                   rpath=split(_DT_RPATH), runpath=split(_DT_RUNPATH))
