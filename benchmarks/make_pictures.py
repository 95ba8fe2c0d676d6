"""Regenerate the depth-source pictures in docs/ (shown in docs/generating.md) (``make pictures``).

Small stores from 20 built-in backgrounds and cars, one per depth source, and
a 4-sample contact sheet of each at 112-pixel tiles; and one of several
objects per image (``docs/objects.png``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from bench_depth import SCRATCH, export_photos

from common import ROOT
from engine.compose.generate import generate
from engine.config import GenerateConfig, RunOptions
from engine.store.preview import contact_sheet

DOCS = ROOT / "docs"


def main() -> None:
    SCRATCH.mkdir(parents=True, exist_ok=True)
    teacher = SCRATCH / "teacher.pt"
    if not teacher.exists():
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_teacher.py"), "--out", str(teacher)], check=True)
    small = dict(builtin_backgrounds=20, builtin_foregrounds=20, limit=2000, seed=7)
    photos = SCRATCH / "photos-small"
    export_photos(GenerateConfig(**small), photos)
    configs = {
        "ground-plane": GenerateConfig(**small),
        "bg-maps": GenerateConfig(limit=2000, seed=7, bg_dir=str(photos / "bg"), fg_dir=str(photos / "fg"),
                                  depth_source="bg-maps", depth_maps_dir=str(photos / "depth"),
                                  occlusion="background"),
        "teacher-bg": GenerateConfig(**small, depth_source="teacher-bg", teacher=str(teacher), teacher_size=(112, 112)),
        "teacher-composite": GenerateConfig(**small, depth_source="teacher-composite", teacher=str(teacher),
                                            teacher_size=(112, 112)),
    }
    DOCS.mkdir(exist_ok=True)
    for name, config in configs.items():
        out = SCRATCH / f"pictures-{name}.zarr"
        generate(config, out, RunOptions(overwrite=True))
        path = DOCS / f"depth-{name}.png"
        contact_sheet(out, n=4, tile=112).save(path, optimize=True)
        shutil.rmtree(out)
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
    # several objects per image: image | mask | depth | instances
    out = SCRATCH / "pictures-objects.zarr"
    generate(GenerateConfig(**small, objects_min=2, objects_max=3, scale_min=0.1, scale_max=0.35,
                            occlusion="background"), out, RunOptions(overwrite=True))
    path = DOCS / "objects.png"
    contact_sheet(out, n=4, tile=112).save(path, optimize=True)
    shutil.rmtree(out)
    print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()
