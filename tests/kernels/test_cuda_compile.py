"""Every CUDA kernel of ``kernels/`` compiled to PTX for compute capability 9.0
(H100/H200) by numba-cuda's real compiler, on a machine without a GPU.

The rest of the suite runs the kernels under Numba's CUDA simulator, which
executes them with Python semantics: a kernel the compiler rejects passes
there. Here the compiler runs (NVVM from ``cuda-toolkit[nvvm]``, the test
extras), in a subprocess because the simulator is on in this one, then linked
to SASS by nvJitLink (registers, stack, spills per kernel); the broken
copies in ``broken_cuda_kernels.py`` show that it catches what the simulator
lets through.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
BROKEN = HERE / "broken_cuda_kernels.py"


@pytest.fixture(scope="module")
def compiled() -> dict[str, dict]:
    """``module:kernel`` → its compile result, for the project's kernels and the broken copies (one subprocess)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    run = subprocess.run(
        [sys.executable, str(HERE / "compile_cuda_kernels.py"), "--cc", "9.0", "--resources", "--module", str(BROKEN)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert run.returncode == 0, f"the compile check crashed (pip install -e '.[test]'?):\n{run.stderr[-3000:]}"
    lines = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    return {r["kernel"]: r for r in lines}


def test_every_project_kernel_compiles_for_sm90(compiled: dict[str, dict]) -> None:
    ours = {k: r for k, r in compiled.items() if k.startswith("kernels.")}
    # the six kernels of today, found by looking, not by a list: a new one joins by itself
    assert {"kernels.jpeg_cuda:_code_cuda", "kernels.composite_cuda:_composite_cuda"} <= set(ours)
    assert len(ours) >= 6
    failed = {k: r["error"] for k, r in ours.items() if not r["ok"]}
    assert not failed, "\n\n".join(f"{k}:\n{e}" for k, e in failed.items())
    assert all(r["ptx_bytes"] > 1000 for r in ours.values())
    # linked to sm_90 SASS by nvJitLink too: what each kernel costs in registers, stack and spills
    used = {k: r["resources"] for k, r in ours.items()}
    assert all(0 < r["registers"] <= 255 for r in used.values()), used
    assert used["kernels.jpeg_cuda:_code_cuda"]["stack_bytes"] >= 4 * (192 + 64 + 64)  # its local arrays


def test_broken_kernels_fail_with_the_compilers_message(compiled: dict[str, dict]) -> None:
    local = compiled["broken_cuda_kernels:run_time_sized_local_array"]
    assert not local["ok"] and "TypingError" in local["error"] and "array(int64, class(int32))" in local["error"]
    zeros = compiled["broken_cuda_kernels:numpy_allocation"]
    assert not zeros["ok"] and "TypingError" in zeros["error"] and "zeros" in zeros["error"]


def test_a_kernel_without_launch_arguments_fails(compiled: dict[str, dict]) -> None:
    unlisted = compiled["broken_cuda_kernels:unlisted"]
    assert not unlisted["ok"] and "no launch arguments listed" in unlisted["error"]


@pytest.mark.skipif(os.environ.get("NUMBA_ENABLE_CUDASIM") != "1", reason="the simulator's half of the contrast")
@pytest.mark.parametrize("name", ["run_time_sized_local_array", "numpy_allocation"])
def test_the_simulator_runs_the_broken_kernels(name: str) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("broken_cuda_kernels", BROKEN)
    broken = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(broken)
    kernel = getattr(broken, name)
    out = np.zeros(64, np.int32)
    kernel[1, 64](out)
    np.testing.assert_array_equal(out, 2 * np.arange(64))
