"""``bash benchmarks/gpu_check.sh``: its plan fits the budget, its runner keeps
what each step measured (cut or not), and ``gpu_report.py`` turns the results
into RESULTS.md's section. All without a GPU."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).resolve().parent / "gpu_check_fixture.jsonl"
sys.path.insert(0, str(ROOT / "benchmarks"))
import chunk_sweep  # noqa: E402
import gpu_check  # noqa: E402
import gpu_report  # noqa: E402
import trim_wheel  # noqa: E402

sys.path.remove(str(ROOT / "benchmarks"))


def test_plan_fits_nine_minutes() -> None:
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--plan"], cwd=ROOT, capture_output=True, text=True,
                         timeout=30)
    assert run.returncode == 0, run.stdout + run.stderr
    total = int(re.search(r"^total\s+(\d+) s", run.stdout, re.M).group(1))
    assert total <= 540 and total == gpu_check.total_cap_s()
    order = [m.group(1) for m in re.finditer(r"^(\w+)\s+\d+ s", run.stdout, re.M)]
    assert order == ["setup", "smoke", "headline", "training", "user_loader", "sweeps", "total"]


def test_plan_over_budget_exits_non_zero() -> None:
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--plan", "--budget-s", "300"], cwd=ROOT,
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "OVER BUDGET" in run.stdout


def test_stages_cover_the_gpu_defaults() -> None:
    steps = {s.name: (stage.name, s) for stage in gpu_check.STAGES for s in stage.steps}
    assert len(steps) == sum(len(stage.steps) for stage in gpu_check.STAGES), "step names must be unique"
    smoke = {n for n, (stage, _) in steps.items() if stage == "smoke"}
    assert {"pytest_gpu", "generate_lossless", "generate_jpeg", "train_dali_mixed", "train_cache_device",
            "train_source_online", "train_cuda_graphs", "evaluate_dali", "generate_kornia_blend"} <= smoke
    assert gpu_check.STAGES[1].cap_s + gpu_check.STAGES[0].cap_s + gpu_check.SETUP_CAP_S <= 300  # headline in 5 min
    stage, user = steps["bench_user_loader"]
    assert stage == "user_loader" and user.needs == gpu_check.USER_LOADER_SCRIPT
    for _, step in steps.values():  # each placeholder is one the runner fills
        step.command.format(dir="D", work="W", py="P")


def test_runner_appends_a_line_per_step_and_cuts_at_caps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpu_check, "WORK", tmp_path / "work")
    stages = (
        gpu_check.Stage("one", "test", (
            gpu_check.Step("beside", 5, "sleep 0.2 && echo '{{\"x\": 1}}' > {dir}/b.json", background=True),
            gpu_check.Step("writes", 5, "echo '{{\"rate\": 2.5}}' > {dir}/r.json"),
            gpu_check.Step("fails", 5, "echo broke; exit 3"),
            gpu_check.Step("hangs", 1, "sleep 30"),
            gpu_check.Step("absent", 5, "true", needs="benchmarks/no_such_script.py"),
        )),
        gpu_check.Stage("two", "test", (gpu_check.Step("late", 5, "true"),)),
    )
    results = tmp_path / "r.jsonl"
    t0 = time.monotonic()
    failed = gpu_check.run_stages(stages, results, deadline=time.monotonic() + 60)
    assert time.monotonic() - t0 < 10  # the hanging step was cut at its 1 s cap
    lines = {line["step"]: line for line in map(json.loads, results.read_text().splitlines())}
    assert lines["writes"]["status"] == "pass" and lines["writes"]["outputs"] == {"r.json": {"rate": 2.5}}
    assert lines["fails"]["status"] == "fail" and lines["fails"]["rc"] == 3 and lines["fails"]["log_tail"] == ["broke"]
    assert lines["hangs"]["status"] == "timeout" and lines["hangs"]["seconds"] < 8
    assert lines["absent"]["status"] == "skipped" and "does not exist" in lines["absent"]["why"]
    assert lines["beside"]["status"] == "pass" and lines["beside"]["outputs"] == {"b.json": {"x": 1}}
    assert lines["late"]["status"] == "pass" and failed == 2
    spent = tmp_path / "spent.jsonl"
    gpu_check.run_stages(stages[1:], spent, deadline=time.monotonic())  # the run's time is spent: skipped
    assert json.loads(spent.read_text())["status"] == "skipped"


def test_report_renders_the_fixture_and_regenerates_only_its_section(tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nearlier text\n")
    for _ in range(2):  # the second run replaces the section, never appends another
        subprocess.run([sys.executable, "benchmarks/gpu_report.py", str(FIXTURE), "--markdown", str(md)], cwd=ROOT,
                       check=True, capture_output=True, timeout=30)
    text = md.read_text()
    assert text.startswith("# Results\n\nearlier text\n") and text.count(gpu_report.BEGIN) == 1
    assert "| generate_lossless | pass | 9.1 | 14 |" in text
    assert "| train_dali_mixed | **fail**: RuntimeError: nvJPEG decoder not available" in text
    assert "| evaluate_dali | **skipped**: nvidia.dali does not import" in text
    assert "| 400k lossless (`--compressor auto`) | 400,000 | 31.2 | — | 38.5 | 12,821 | 3.1 | hybrid |" in text
    assert "| JPEG q95 (`--jpeg-encoder auto`) | 200,000 | 9.8 | 19.6 |" in text
    assert "| naive loop, one process (images/s) | 412 |" in text and "| disk_write_GBps | 3.2 |" in text
    assert "| 400k lossless, writing phase <= 15 s | 31.2 | **no** |" in text
    assert "| a_device_resident | 24,100 | 1 | 97 | 61,000 |" in text
    assert "| c_dali_jpeg | 23,000 | 0.954 | 93 | 31,000 |" in text
    assert "**sweeps / blend_modes**: **timeout**" in text and "| blend.modes.alpha.images_per_s | 90,000 |" in text
    assert "numba-cuda | 0.30.4" in text and "NVIDIA H200" in text
    # issue 24's sweep: one table of nvCOMP alone per piece size and generate per setting, then the verdict
    assert "### Inner chunks and compressors: the sweep and the default (issue 24)" in text
    assert ("| setting | GB/s | ratio | 400k s, compressor alone | writing s, 400k projected | store bytes | GPU share "
            "| compression share of writer CPU |") in text
    assert "| nvcomp-zstd alone, pieces of 150,528 B: --chunk-size 1 (one sample's image) | 25 | 5.6 | 6.72 | — |" in text
    assert ("| generate `--compressor hybrid --compression-level 3 (default chunks)` (today's default), 20,480 samples "
            "| 3.85 | 10.5 | — | 31.2 | 587,202,560 | 0.2 | 0.81 |") in text
    assert ("**Chunk verdict**: fastest end to end: `--compressor nvcomp --chunk-size 1`, 19.5 s writing for 400,000 "
            "samples (projected from 20,480 samples) vs 31.2 s with today's default") in text
    assert "`GenerateConfig.samples_per_chunk`" in text and "to 1 sample per chunk" in text
    assert "`resolve_compressor` (today hybrid), to nvcomp." in text
    # the CPU writers' scaling (bench_writers.py)
    assert "| 16 cores, 8 writers | 42,000 | 0.31 | 0.84 | 0.8 |" in text
    assert "Scaling: 0.75 of 16 x the one-core rate (target >= 0.8: **not met**)." in text
    assert "**sweeps / writer_scaling**" not in text  # shown in its own table, not among the other steps


def _fixture_line(step: str) -> dict:
    return next(line for line in gpu_report.read_lines(FIXTURE) if line.get("step") == step)


def test_report_computes_the_chunk_verdict_when_the_run_did_not_record_it() -> None:
    """A run cut before its end records no ``chunk_verdict``: the report derives the same one from the runs."""
    line = _fixture_line("bench_gpu_sweeps")
    recorded = gpu_report.sweep_section(line)
    stages = line["outputs"]["stages.jsonl"]
    cut = {**line, "outputs": {"stages.jsonl": [s for s in stages if s["stage"] != "chunk_verdict"]}}
    assert len(cut["outputs"]["stages.jsonl"]) == len(stages) - 1
    assert gpu_report.sweep_section(cut) == recorded
    assert gpu_report.sweep_section(None)[-2:] == ["not reached", ""]


def test_chunk_sweep_projects_400k_by_hand() -> None:
    """400,000 samples of 224x224 (3 + 1 + 2 bytes a pixel: 301,056 B) are 120.4224 GB raw."""
    p = chunk_sweep.project_400k(10.0, 4.0, 2.0, 301_056)
    assert p["samples"] == 400_000 and p["raw_bytes"] == 120_422_400_000
    assert p["compressed_bytes"] == pytest.approx(30_105_600_000)  # raw / ratio 4
    assert p["compress_s"] == pytest.approx(12.04224)  # 120.4224 GB at 10 GB/s
    assert p["write_s"] == pytest.approx(15.0528)  # 30.1056 GB at the disk's 2 GB/s
    assert p["end_to_end_s"] == pytest.approx(15.0528) and p["bound"] == "disk"
    slow = chunk_sweep.project_400k(5.0, 4.0, 2.0, 301_056)
    assert slow["end_to_end_s"] == pytest.approx(24.08448) and slow["bound"] == "compression"
    assert chunk_sweep.project_400k(1.0, 2.0, 1.0, 10, samples=100)["end_to_end_s"] == pytest.approx(1e-6)
    assert "compressor alone" in p["basis"]
    for missing in ((10.0, 4.0, None), (None, 4.0, 2.0), (10.0, 0.0, 2.0), (10.0, {"error": "x"}, 2.0)):
        assert chunk_sweep.project_400k(*missing, 301_056) is None


def test_chunk_settings_parse_and_name() -> None:
    settings = chunk_sweep.parse_settings(chunk_sweep.DEFAULT_SETTINGS)
    assert settings[:4] == [("nvcomp", None, 3), ("nvcomp", 1, 3), ("hybrid", None, 3), ("hybrid", None, 2)]
    assert ("nvcomp", 2, 3) in settings and chunk_sweep.parse_settings("") == []
    assert chunk_sweep.setting_key("hybrid", None, 2) == "hybrid_chunkdefault_level2"
    assert chunk_sweep.setting_label("nvcomp", 1, 3) == "--compressor nvcomp --chunk-size 1"
    assert chunk_sweep.setting_label("hybrid", None, 2) == "--compressor hybrid --compression-level 2 (default chunks)"
    for bad in ("nvcomp:1", "zip:1:3", "nvcomp:one:3"):
        with pytest.raises(ValueError):
            chunk_sweep.parse_settings(bad)


def _sweep_run(compressor: str, chunk: int | None, level: int, seconds_400k: float, store_bytes: int = 10**9) -> dict:
    """A ``generate_sweep_*`` stage value as bench_gpu records it (20,480 samples, projected to 400k)."""
    return {"samples": 20_480, "seconds_writing": seconds_400k * 20_480 / 400_000,
            "projected_seconds_writing_full": seconds_400k, "projected_to_samples": 400_000,
            "store_bytes": store_bytes, "chunk_samples": chunk or 8,
            "setting": {"compressor": compressor, "chunk_size": chunk, "compression_level": level,
                        "label": chunk_sweep.setting_label(compressor, chunk, level),
                        "is_default": compressor == "hybrid" and chunk is None and level == 3}}


def _stages(*runs: dict) -> dict:
    return {"generate_sweep_" + chunk_sweep.setting_key(r["setting"]["compressor"], r["setting"]["chunk_size"],
                                                        r["setting"]["compression_level"]): r for r in runs}


def test_chunk_verdict_keeps_or_names_the_change() -> None:
    default = _sweep_run("hybrid", None, 3, 30.0)
    kept = chunk_sweep.chunk_verdict(_stages(default, _sweep_run("nvcomp", 1, 3, 35.0)))
    assert kept["default_is_fastest"] is True and not kept["follow"] and kept["changes"] == []
    assert kept["line"].endswith("next `--compressor nvcomp --chunk-size 1` 35.0 s. Keep the default.")

    small = chunk_sweep.chunk_verdict(_stages(default, _sweep_run("nvcomp", 1, 3, 20.0, store_bytes=2 * 10**9)))
    assert small["fastest"] == "nvcomp_chunk1_level3" and small["default"] == "hybrid_chunkdefault_level3"
    assert small["default_is_fastest"] is False and small["follow"] and len(small["changes"]) == 2
    assert "`GenerateConfig.samples_per_chunk`" in small["changes"][0] and "to 1 sample per chunk" in small["changes"][0]
    assert "8 samples per chunk here" in small["changes"][0]
    assert "`resolve_compressor` (today hybrid), to nvcomp" in small["changes"][1]
    assert "20.0 s writing for 400,000 samples (projected from 20,480 samples) vs 30.0 s" in small["line"]
    assert "(33% less, a store 2.00x the default's bytes)" in small["line"]
    no_level = chunk_sweep.chunk_verdict(_stages(default, _sweep_run("nvcomp", 1, 2, 20.0)))  # nvCOMP has no level
    assert len(no_level["changes"]) == 2 and not any("compression_level" in c for c in no_level["changes"])

    near = chunk_sweep.chunk_verdict(_stages(default, _sweep_run("hybrid", None, 2, 28.9)))  # 3.7% less
    assert near["fastest"] == "hybrid_chunkdefault_level2" and not near["follow"] and near["changes"] == []
    assert "within the 5% margin. Keep the default." in near["line"]

    level = chunk_sweep.chunk_verdict(_stages(default, _sweep_run("hybrid", None, 2, 27.0)))  # 10% less
    assert level["follow"] and len(level["changes"]) == 1
    assert "`GenerateConfig.compression_level` (today 3" in level["changes"][0] and level["changes"][0].endswith("to 2")

    cpu = chunk_sweep.chunk_verdict(_stages(default, _sweep_run("cpu", None, 3, 25.0)))
    assert cpu["changes"] == ["`--compressor auto`'s pick where nvCOMP runs, engine/compose/hardware.py "
                              "`resolve_compressor` (today hybrid), to cpu"]


def test_chunk_verdict_without_the_default_or_any_run() -> None:
    alone = chunk_sweep.chunk_verdict(_stages(_sweep_run("nvcomp", 1, 3, 20.0), _sweep_run("nvcomp", None, 3, 90.0)))
    assert alone["fastest"] == "nvcomp_chunk1_level3" and alone["default"] is None
    assert alone["default_is_fastest"] is None and not alone["follow"] and "was not measured" in alone["line"]
    broken = {"generate_sweep_hybrid_chunkdefault_level3": {"error": "RuntimeError: x"},
              "generate_cuda_zstd": _sweep_run("hybrid", None, 3, 1.0)}  # not a sweep stage
    assert chunk_sweep.chunk_verdict(broken)["fastest"] is None
    assert chunk_sweep.chunk_verdict({})["line"] == "no end-to-end sweep run finished: no verdict"


def _fake_library(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A minimal 64-bit ELF whose ``.nv_fatbin`` holds one fat binary of ``(kind, sm, payload)`` entries."""
    fat = b""
    for kind, sm, payload in entries:
        header = bytearray(64)
        struct.pack_into("<HHIQ", header, 0, kind, 0x101, 64, len(payload))
        struct.pack_into("<I", header, 28, sm)
        fat += bytes(header) + payload
    blob = struct.pack("<IHHQ", trim_wheel.FATBIN_MAGIC, 1, 16, len(fat)) + fat
    names = b"\0.shstrtab\0.nv_fatbin\0"
    data_at, names_at = 64, 64 + len(blob)
    shoff = names_at + len(names)
    elf = bytearray(shoff + 3 * 64)
    elf[:5] = b"\x7fELF\x02"
    struct.pack_into("<Q", elf, 0x28, shoff)
    struct.pack_into("<HHH", elf, 0x3A, 64, 3, 1)
    elf[data_at:data_at + len(blob)] = blob
    elf[names_at:names_at + len(names)] = names
    for i, (name, offset, size) in enumerate([(0, 0, 0), (1, names_at, len(names)), (11, data_at, len(blob))]):
        struct.pack_into("<I", elf, shoff + i * 64, name)
        struct.pack_into("<QQ", elf, shoff + i * 64 + 0x18, offset, size)
    return bytes(elf)


def test_keep_one_sm_blanks_other_architectures_in_place() -> None:
    sm75, sm90, ptx = b"A" * 100, b"B" * 80, b"C" * 60
    lib = _fake_library([(trim_wheel.ELF, 75, sm75), (trim_wheel.ELF, 90, sm90), (trim_wheel.PTX, 120, ptx)])
    out, zeroed = trim_wheel.keep_one_sm(lib, 90)
    assert len(out) == len(lib) and zeroed == 160
    assert sm90 in out and b"A" * 10 not in out and b"C" * 10 not in out
    start, size = trim_wheel.nv_fatbin_section(out)
    assert [(k, sm, n) for _, _, n, k, sm in trim_wheel.fatbin_entries(out, start, start + size)] == [
        (trim_wheel.ELF, 75, 100), (trim_wheel.ELF, 90, 80), (trim_wheel.PTX, 120, 60)]  # headers kept
    untouched, zeroed = trim_wheel.keep_one_sm(_fake_library([(trim_wheel.ELF, 80, sm75)]), 90)
    assert zeroed == 0 and sm75 in untouched  # no sm_90 code: the library is left as it is
