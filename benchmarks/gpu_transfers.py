"""Lay out what ``bash benchmarks/gpu_check.sh`` needs as two transfers of at most 60 MiB.

    python benchmarks/gpu_transfers.py WHEEL_DIR     # (make gpu-wheels runs it)

``WHEEL_DIR`` holds the trimmed wheels and one ``*.whl.xz`` (NVIDIA DALI).
Transfer 1 is the checkout plus ``.whl/transfer1/``: every wheel, the xz
file's SHA-256, and as much of the xz file as fills the transfer; transfer 2
is ``.whl/transfer2/``: the rest of it. ``benchmarks/gpu_setup.sh`` joins the
parts (by name: ``.part-1``, ``.part-2``), checks the SHA-256, unpacks and
installs. Exits non-zero when the two do not fit.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
#: the most one transfer may carry (the checkout included in the first)
TRANSFER_MIB = 60
#: slack for the file listing and what the checkout gains before the copy
MARGIN_MIB = 1


def checkout_bytes() -> int:
    """Bytes of the files that travel with the checkout (tracked, and untracked but not ignored)."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.split(b"\0")
    return sum((ROOT / n.decode()).stat().st_size for n in names if n and (ROOT / n.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("wheels", type=Path, help="folder of the trimmed wheels and the DALI .whl.xz")
    ap.add_argument("--out", type=Path, default=ROOT / ".whl", help="where transfer1/ and transfer2/ go")
    args = ap.parse_args()
    first, second = args.out / "transfer1", args.out / "transfer2"
    for folder in (first, second):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for wheel in sorted(args.wheels.glob("*.whl")):
        shutil.copy2(wheel, first / wheel.name)
    packed = sorted(args.wheels.glob("*.whl.xz"))
    for xz in packed:
        data = xz.read_bytes()
        (first / f"{xz.name}.sha256").write_text(f"{hashlib.sha256(data).hexdigest()}  {xz.name}\n")
        room = (TRANSFER_MIB - MARGIN_MIB) * MIB - checkout_bytes() - folder_bytes(first)
        if room <= 0:
            print(f"transfer 1 is full before {xz.name}", file=sys.stderr)
            return 1
        (first / f"{xz.name}.part-1").write_bytes(data[:room])
        if len(data) > room:
            (second / f"{xz.name}.part-2").write_bytes(data[room:])
    sizes = {"checkout": checkout_bytes(), "transfer1": folder_bytes(first), "transfer2": folder_bytes(second)}
    def shown(folder: Path) -> Path:
        return folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder

    print(f"transfer 1: the checkout ({sizes['checkout'] / MIB:.1f} MiB) + {shown(first)} "
          f"({sizes['transfer1'] / MIB:.1f} MiB) = {(sizes['checkout'] + sizes['transfer1']) / MIB:.1f} MiB")
    for p in sorted(first.iterdir()):
        print(f"    {p.stat().st_size / MIB:6.1f} MiB  {p.name}")
    print(f"transfer 2: {shown(second)} ({sizes['transfer2'] / MIB:.1f} MiB)")
    for p in sorted(second.iterdir()):
        print(f"    {p.stat().st_size / MIB:6.1f} MiB  {p.name}")
    if sizes["checkout"] + sizes["transfer1"] > TRANSFER_MIB * MIB or sizes["transfer2"] > TRANSFER_MIB * MIB:
        print(f"over {TRANSFER_MIB} MiB a transfer", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
