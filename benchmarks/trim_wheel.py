"""Rewrite a wheel without the files a Python 3.12 x86-64 machine never loads.

What reaches a GPU machine travels in transfers of at most 60 MiB (`make
gpu-wheels`); nvCOMP, nvImageCodec and DALI ship one extension per Python
version, command-line tools, headers and CUDA code for every GPU generation,
which take most of their size. Dropped files are removed from RECORD (changed
ones get new hashes), so pip installs the rest as usual.

    python benchmarks/trim_wheel.py WHEEL [WHEEL ...]
    python benchmarks/trim_wheel.py --keep-sm 90 --xz WHEEL   # DALI for an H100/H200, as WHEEL.xz

``--keep-sm 90``: blank the CUDA code of every other GPU architecture in the
wheel's shared libraries (DALI's fat binaries carry SASS for sm_75 to sm_120
and PTX for sm_120: ~60% of libdali_operators.so's device code is for GPUs
the machine does not have). The entries stay where they are, with their
headers, so every offset in the library holds; only the payloads of other
architectures become zeros, which compress to nothing. The CUDA driver loads
the entry of the device's own architecture (sm_90 SASS on an H100/H200) and
never reads the others. A library with no entry for that architecture is left
as it is.
``--xz``: write ``WHEEL.xz`` of the wheel stored uncompressed (xz finds the
repetition deflate cannot), which ``benchmarks/gpu_setup.sh`` unpacks with
Python's ``lzma`` before installing.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import lzma
import re
import struct
import zipfile
from pathlib import Path

#: files no Python 3.12 program of ours loads from these wheels
DROP = [
    "*/include/*", "*/bin/*", "*.a",
    "*/libopencv_ext.so*",  # nvImageCodec: OpenCV codecs (CPU), not the nvJPEG path
]


def other_pythons(version: str = "312") -> re.Pattern[str]:
    """Extension modules of every CPython but ``version`` (DALI ships 3.10 to 3.15t)."""
    return re.compile(rf"\.cpython-3(?!{version[1:]}-)\d+t?-x86_64-linux-gnu\.so$")


#: extension modules of every CPython but 3.12, the GPU machine's
OTHER_PYTHONS = other_pythons("312")


def dropped(name: str) -> bool:
    return bool(OTHER_PYTHONS.search(name)) or any(fnmatch.fnmatch(name, p) for p in DROP)


FATBIN_MAGIC = 0xBA55ED50
#: entry kinds of a CUDA fat binary
PTX, ELF = 1, 2


def fatbin_entries(blob: bytes | bytearray, start: int = 0, end: int | None = None):
    """``(offset, header_bytes, payload_bytes, kind, sm)`` of each entry of the
    fat binaries in ``blob[start:end]`` (e.g. an ELF's ``.nv_fatbin`` section).

    Layout (as ``cuobjdump`` reads it): a 16-byte header (magic, version,
    header size, size of the entries), then entries whose header holds kind
    (u16 at 0), header size (u32 at 4), payload size (u64 at 8) and the
    architecture (u32 at 28, e.g. 90 for sm_90).
    """
    end = len(blob) if end is None else end
    p = start
    while p + 16 <= end:
        magic, _, header, size = struct.unpack_from("<IHHQ", blob, p)
        if magic != FATBIN_MAGIC:
            p += 8  # fat binaries are 8-byte aligned in the section
            continue
        q, stop = p + header, p + header + size
        while q + 32 <= stop:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", blob, q)
            sm = struct.unpack_from("<I", blob, q + 28)[0]
            yield q, entry_header, payload, kind, sm
            q += entry_header + payload
        p = stop


def nv_fatbin_section(elf: bytes | bytearray) -> tuple[int, int] | None:
    """``(offset, size)`` of a 64-bit little-endian ELF's ``.nv_fatbin`` section, or ``None``."""
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        return None
    shoff, = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)
    names_off = struct.unpack_from("<Q", elf, shoff + shstrndx * shentsize + 0x18)[0]
    for i in range(shnum):
        h = shoff + i * shentsize
        name_at = struct.unpack_from("<I", elf, h)[0]
        name = elf[names_off + name_at: elf.index(b"\0", names_off + name_at)]
        if name == b".nv_fatbin":
            return struct.unpack_from("<Q", elf, h + 0x18)[0], struct.unpack_from("<Q", elf, h + 0x20)[0]
    return None


def keep_one_sm(elf: bytes, sm: int) -> tuple[bytes, int]:
    """``elf`` with the payloads of every fat-binary entry for another architecture
    zeroed; returns (the library, bytes zeroed). Unchanged when ``sm`` has no SASS entry."""
    section = nv_fatbin_section(elf)
    if section is None:
        return elf, 0
    start, size = section
    entries = list(fatbin_entries(elf, start, start + size))
    if not any(kind == ELF and arch == sm for *_, kind, arch in entries):
        return elf, 0
    out = bytearray(elf)
    zeroed = 0
    for q, header, payload, kind, arch in entries:
        if arch != sm:
            out[q + header: q + header + payload] = bytes(payload)
            zeroed += payload
    return bytes(out), zeroed


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def trim(path: Path, keep_sm: int | None = None, xz: bool = False) -> tuple[int, int]:
    """Rewrite ``path`` in place (or write ``path.xz`` with ``xz``); returns (bytes before, bytes after)."""
    before = path.stat().st_size
    tmp = path.with_suffix(".trimmed")
    compression = zipfile.ZIP_STORED if xz else zipfile.ZIP_DEFLATED
    changed: dict[str, bytes] = {}
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", compression) as dst:
        record = None
        for info in src.infolist():
            if dropped(info.filename):
                continue
            if info.filename.endswith(".dist-info/RECORD"):
                record = info
                continue
            data = src.read(info)
            if keep_sm is not None and (info.filename.endswith(".so") or ".so." in info.filename):
                data, zeroed = keep_one_sm(data, keep_sm)
                if zeroed:
                    changed[info.filename] = data
            dst.writestr(info, data, compress_type=compression)
        if record is not None:  # the files left, with new hashes for the libraries changed
            lines = [line for line in src.read(record).decode().splitlines() if not dropped(line.split(",")[0])]
            lines = [record_line(line.split(",")[0], changed[line.split(",")[0]])
                     if line.split(",")[0] in changed else line for line in lines]
            dst.writestr(record, ("\n".join(lines) + "\n").encode(), compress_type=compression)
    if xz:
        target = path.with_name(path.name + ".xz")
        with open(tmp, "rb") as f, lzma.open(target, "wb", preset=9) as out:
            while chunk := f.read(1 << 24):
                out.write(chunk)
        tmp.unlink()
        path.unlink()
        return before, target.stat().st_size
    tmp.replace(path)
    return before, path.stat().st_size


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheels", nargs="+", type=Path)
    ap.add_argument("--keep-sm", type=int, default=None, help="keep only this GPU architecture's CUDA code (e.g. 90)")
    ap.add_argument("--xz", action="store_true", help="write WHEEL.xz (the wheel stored, then xz -9)")
    ap.add_argument("--python", default="312", help="keep this CPython's extensions (default 312, the GPU machine's)")
    args = ap.parse_args()
    OTHER_PYTHONS = other_pythons(args.python)
    for wheel in args.wheels:
        b, a = trim(wheel, args.keep_sm, args.xz)
        print(f"{wheel.name}: {b / 2**20:.1f} -> {a / 2**20:.1f} MiB{' (.xz)' if args.xz else ''}")
