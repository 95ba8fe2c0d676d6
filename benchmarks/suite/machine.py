"""What a run ran on: CPU, GPU, driver, library versions, the git commit."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: distributions whose versions go into every record (those installed)
LIBRARIES = ("numpy", "numba", "numba-cuda", "torch", "torchvision", "zarr", "numcodecs", "pillow",
             "nvidia-dali-cuda130", "nvidia-nvcomp-cu13", "nvidia-nvimgcodec-cu13", "cupy-cuda13x")


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIBRARIES` (absent ones left out)."""
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def gpu_facts() -> dict[str, str] | None:
    """GPU name, driver and CUDA runtime through torch, or ``None`` without a usable GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        facts = {"name": torch.cuda.get_device_name(0), "cuda": str(torch.version.cuda)}
    except Exception:  # noqa: BLE001 - any failure means no GPU to report
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        facts["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        facts["driver"] = "unknown"
    return facts


def git_state(root: Path = ROOT) -> dict[str, Any]:
    """``{"commit": sha or "unknown", "dirty": bool}`` of the checkout the suite runs from."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": False}
    return {"commit": sha, "dirty": bool(status.strip())}


def load_average() -> float | None:
    """The 1-minute load average (other work competing for the cores), or ``None`` where unknown."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def machine_facts() -> dict[str, Any]:
    """Hardware and software of this run, for the record's ``machine`` field."""
    return {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "gpu": gpu_facts(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": library_versions(),
        "load_average_start": load_average(),
    }
