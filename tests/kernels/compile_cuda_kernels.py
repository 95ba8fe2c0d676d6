"""Compile every ``@cuda.jit`` kernel of ``kernels/`` to PTX with numba-cuda's
real compiler (NVVM), without a GPU or a driver. Run by
``tests/kernels/test_cuda_compile.py`` in a subprocess, because the test suite
switches Numba's CUDA simulator on and the simulator compiles nothing.

    NUMBA_ENABLE_CUDASIM=0 python tests/kernels/compile_cuda_kernels.py [--cc 9.0] [--module FILE ...] [--resources]

Prints one JSON line per kernel: ``{"kernel": "module:name", "ok": bool,
"error": str | None, "ptx_bytes": int}`` (with ``--resources``, also
``"resources": {"registers", "stack_bytes", "spill_store_bytes",
"spill_load_bytes"}`` from nvJitLink's log), and ``{"kernel": ..., "ok": false,
"error": "no launch arguments listed ..."}`` for a kernel that
:data:`LAUNCH_ARGS` does not list. ``--module FILE``: compile the kernels of
that file too (their arguments from its own ``LAUNCH_ARGS``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import pkgutil
import re
import sys
import types
from pathlib import Path
from typing import Any, Callable

os.environ["NUMBA_ENABLE_CUDASIM"] = "0"  # before numba is imported: the real compiler

import numba  # noqa: E402
import numpy as np  # noqa: E402
from numba import cuda  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

# Small shapes: the types, not the sizes, decide the code.
_B, _H, _W = 2, 16, 24


def _composite_args() -> tuple[Any, ...]:
    """As ``composite_batch_cuda`` launches ``_composite_cuda``."""
    from kernels import placement as P

    return (
        np.zeros((_B, _H, _W, 3), np.uint8), np.zeros((_B, _H, _W), np.uint16), np.zeros(64, np.uint8),
        np.zeros((_B, P.N_COLUMNS), np.int64), np.int32(128),
        np.zeros((_B, _H, _W, 3), np.uint8), np.zeros((_B, _H, _W), np.uint8), np.zeros((_B, _H, _W), np.uint16),
        np.zeros((_B, _H, _W), np.uint8), True, np.int32(0),
    )


def _composite_objects_args() -> tuple[Any, ...]:
    """As ``composite_objects_batch_cuda`` launches ``_composite_objects_cuda``."""
    from kernels import placement as P

    return (
        np.zeros((_B, _H, _W, 3), np.uint8), np.zeros((_B, _H, _W), np.uint16), np.zeros(64, np.uint8),
        np.zeros((3, P.N_OBJECT_COLUMNS), np.int64), np.zeros(_B + 1, np.int64), np.int32(128),
        np.zeros((_B, _H, _W, 3), np.uint8), np.zeros((_B, _H, _W), np.uint8), np.zeros((_B, _H, _W), np.uint16),
        np.zeros((_B, _H, _W), np.uint16), np.zeros((_B, _H, _W), np.uint8), True, np.int32(0),
    )


def _count_args() -> tuple[Any, ...]:
    """As ``channel_histogram_cuda`` launches ``_count_cuda`` (images viewed as ``(pixels, 3)``)."""
    return np.zeros((_B * _H * _W, 3), np.uint8), np.zeros((3, 256), np.int64)


def _code_args() -> tuple[Any, ...]:
    """As ``CudaJpegEncoder.encode`` launches ``_code_cuda``."""
    from kernels.jpeg import blocks_per_side, jpeg_tables, segment_capacity_words

    rows = blocks_per_side(_H)
    return (np.zeros((_B, _H, _W, 3), np.uint8), *jpeg_tables(_H, _W, 95).arrays(),
            np.zeros((_B * rows, segment_capacity_words(_W)), np.uint32), np.zeros((_B, rows), np.int64))


def _pack_args() -> tuple[Any, ...]:
    """As ``CudaJpegEncoder.encode`` launches ``_pack_cuda`` (the segments viewed as bytes)."""
    from kernels.jpeg import blocks_per_side, file_starts, jpeg_tables, segment_capacity_words
    from kernels.jpeg_cuda import segment_starts

    rows = blocks_per_side(_H)
    header = np.frombuffer(jpeg_tables(_H, _W, 95).header, np.uint8).copy()
    lengths = np.ones((_B, rows), np.int64)
    starts = file_starts(lengths, len(header))
    segments = np.zeros((_B * rows, segment_capacity_words(_W)), np.uint32).view(np.uint8)
    return (segments, lengths, header, starts, segment_starts(lengths, starts, len(header)),
            np.zeros(int(starts[-1]), np.uint8))


#: every kernel of ``kernels/`` → the arguments its launch site passes (their Numba types are the signature)
LAUNCH_ARGS: dict[str, Callable[[], tuple[Any, ...]]] = {
    "kernels.composite_cuda:_composite_cuda": _composite_args,
    "kernels.composite_cuda:_composite_objects_cuda": _composite_objects_args,
    "kernels.histogram_cuda:_count_cuda": _count_args,
    "kernels.jpeg_cuda:_code_cuda": _code_args,
    "kernels.jpeg_cuda:_pack_cuda": _pack_args,
    "kernels.probe_cuda:_double_index": lambda: (np.zeros(64, np.int32),),
}


def pretend_device(cc: tuple[int, int]) -> None:
    """A kernel that calls a device function asks the current device for its
    compute capability (numba-cuda 0.30, ``compile_device``); without a driver,
    answer ``cc``."""
    import numba.cuda.dispatcher as dispatcher

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)


def kernels_of(module: types.ModuleType) -> dict[str, Any]:
    """The ``@cuda.jit`` kernels (not device functions) defined in ``module``, by ``module:name``."""
    found = {}
    for name, value in vars(module).items():
        if isinstance(value, numba.cuda.dispatcher.CUDADispatcher) and not value.targetoptions.get("device"):
            if getattr(value.py_func, "__module__", None) == module.__name__:
                found[f"{module.__name__}:{name}"] = value
    return found


def project_kernels() -> dict[str, Any]:
    """Every kernel of the ``kernels`` package (each of its modules imported)."""
    import kernels

    found = {}
    for info in pkgutil.iter_modules(kernels.__path__):
        found.update(kernels_of(importlib.import_module(f"kernels.{info.name}")))
    return found


def load_file(path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def resources(ptx: str, cc: tuple[int, int]) -> dict[str, int]:
    """Registers, stack and spills of the kernel in ``ptx``, from nvJitLink's
    ``ptxas`` log when it links the PTX to SASS for ``cc`` (no GPU needed)."""
    from cuda.bindings import nvjitlink

    handle = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-verbose"])
    try:
        data = ptx.encode()
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel")
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
    finally:
        nvjitlink.destroy(handle)
    text = log.decode(errors="replace")
    found = {}
    for key, pattern in (("registers", r"Used (\d+) registers"), ("stack_bytes", r"(\d+) bytes stack frame"),
                         ("spill_store_bytes", r"(\d+) bytes spill stores"),
                         ("spill_load_bytes", r"(\d+) bytes spill loads")):
        match = re.search(pattern, text)
        if match:
            found[key] = int(match.group(1))
    return found


def compile_one(kernel: Any, args: tuple[Any, ...], cc: tuple[int, int], with_resources: bool = False,
                ) -> dict[str, Any]:
    signature = tuple(numba.typeof(a) for a in args)
    try:
        ptx, _ = cuda.compile_ptx(kernel.py_func, signature, cc=cc)
    except Exception as exc:  # noqa: BLE001 - the compiler's message is the result
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}", "ptx_bytes": 0}
    result: dict[str, Any] = {"ok": True, "error": None, "ptx_bytes": len(ptx)}
    if with_resources:
        result["resources"] = resources(ptx, cc)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cc", default="9.0", help="compute capability to compile for (default 9.0: H100/H200)")
    ap.add_argument("--module", type=Path, action="append", default=[], help="also compile this file's kernels")
    ap.add_argument("--only-modules", action="store_true", help="compile the --module files' kernels alone")
    ap.add_argument("--resources", action="store_true",
                    help="also link each kernel's PTX with nvJitLink: registers, stack and spills per kernel")
    args = ap.parse_args()
    cc = tuple(int(x) for x in args.cc.split("."))
    pretend_device(cc)
    todo: dict[str, tuple[Any, Callable[[], tuple[Any, ...]] | None]] = {}
    if not args.only_modules:
        todo.update({k: (v, LAUNCH_ARGS.get(k)) for k, v in project_kernels().items()})
    for path in args.module:
        module = load_file(path)
        listed = getattr(module, "LAUNCH_ARGS", {})
        todo.update({k: (v, listed.get(k.split(":")[1])) for k, v in kernels_of(module).items()})
    for name, (kernel, make_args) in sorted(todo.items()):
        if make_args is None:
            result = {"ok": False, "error": f"no launch arguments listed for {name}: add them to LAUNCH_ARGS",
                      "ptx_bytes": 0}
        else:
            result = compile_one(kernel, make_args(), cc, args.resources)
        print(json.dumps({"kernel": name, **result}), flush=True)


if __name__ == "__main__":
    main()
