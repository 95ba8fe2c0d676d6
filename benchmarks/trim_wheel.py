"""Rewrite a wheel without the files a Python 3.12 x86-64 machine never loads.

The GPU machine's carry limit is 64 MiB a call; nvCOMP and nvImageCodec ship
one extension per Python version, command-line tools and headers, which take
most of their size (DALI too, but its libraries alone are over 64 MiB: `make
gpu-wheels-dali` also splits it). Dropped files are removed from RECORD too, so pip installs
the rest as usual.

    python benchmarks/trim_wheel.py WHEEL [WHEEL ...]
"""

from __future__ import annotations

import fnmatch
import re
import sys
import zipfile
from pathlib import Path

#: files no Python 3.12 program of ours loads from these wheels
DROP = [
    "*/include/*", "*/bin/*", "*.a",
    "*/libopencv_ext.so*",  # nvImageCodec: OpenCV codecs (CPU), not the nvJPEG path
]
#: extension modules of every CPython but 3.12 (DALI ships 3.10 to 3.15t)
OTHER_PYTHONS = re.compile(r"\.cpython-3(?!12-)\d+t?-x86_64-linux-gnu\.so$")


def dropped(name: str) -> bool:
    return bool(OTHER_PYTHONS.search(name)) or any(fnmatch.fnmatch(name, p) for p in DROP)


def trim(path: Path) -> tuple[int, int]:
    """Rewrite ``path`` in place; returns (bytes before, bytes after)."""
    before = path.stat().st_size
    tmp = path.with_suffix(".trimmed")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if dropped(info.filename):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines()
                data = ("\n".join(line for line in lines if not dropped(line.split(",")[0])) + "\n").encode()
            dst.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(path)
    return before, path.stat().st_size


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        b, a = trim(Path(arg))
        print(f"{Path(arg).name}: {b / 2**20:.1f} -> {a / 2**20:.1f} MiB")
