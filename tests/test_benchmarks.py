"""The benchmark scripts still run (tiny sizes): a benchmark that rots is no benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, env: dict | None = None) -> str:
    """Run a benchmark script; its scratch files go to a fresh temporary folder,
    never the checkout's benchmarks/scratch (which may hold a user's stores)."""
    scratch = tempfile.mkdtemp(prefix="fgbg-bench-")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args], cwd=ROOT / "benchmarks", capture_output=True,
        text=True, env={**os.environ, "FGBG_BENCH_SCRATCH": scratch, **(env or {})}, timeout=600,
    )
    shutil.rmtree(scratch, ignore_errors=True)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.slow
def test_bench_generate_runs(tmp_path: Path) -> None:
    stdout = run("bench_generate.py", "--samples", "600", "--naive-samples", "60", "--backgrounds", "3",
                 "--foregrounds", "3", "--repeats", "1", "--shard-size", "256", "--devices", "cpu",
                 "--results-dir", str(tmp_path))
    assert "naive per-image loop" in stdout and "engine --device cpu" in stdout
    doc = json.loads((tmp_path / "generate.json").read_text())
    assert doc["results"]["cpu/zstd"]["images_per_s_writing"] > 0 and doc["machine"]["cpu_count"] >= 1


@pytest.mark.slow
def test_bench_gpu_smoke_runs_on_the_simulator(tmp_path: Path) -> None:
    stdout = run("bench_gpu.py", "--smoke", "--results-dir", str(tmp_path), "--jsonl", str(tmp_path / "stages.jsonl"),
                 env={"NUMBA_ENABLE_CUDASIM": "1"})
    assert "x the floor" in stdout and ">= 50x the single naive loop" in stdout
    results = json.loads((tmp_path / "gpu-smoke.json").read_text())["results"]
    assert results["simulated"] is True
    for name in ("generate_cuda_zstd", "generate_cuda_jpeg", "generate_cpu_zstd"):
        assert results[name]["images_per_s_writing"] > 0 and results[name]["floor_seconds"] > 0, name
    assert results["naive"]["single"] > 0 and results["kernel"]["8"]["images_per_s"] > 0
    assert results["nvcomp_sweep"]["256"]["ratio"] > 0  # the host stand-in where nvCOMP is absent
    assert results["channel_stats"]["gpu_images_per_s"] > 0 and results["channel_stats"]["numpy_bincount_images_per_s"] > 0
    _check_chunk_sweep(results, stdout, tmp_path / "stages.jsonl")


def _check_chunk_sweep(results: dict, stdout: str, jsonl: Path) -> None:
    """Issue 24's sweep in the smoke run: piece sizes with their 400k projection, one
    generate run per default setting (nvCOMP through the host stand-in), the chunk verdict."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from chunk_sweep import DEFAULT_SETTINGS, parse_settings, setting_key
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    per_image, per_sample = 16 * 16 * 3, 16 * 16 * 6  # --smoke composites 16x16
    sweep = results["nvcomp_sweep"]
    assert sweep[str(per_image)]["setting"].startswith("--chunk-size 1")
    for size in ("256", str(per_image), "1024"):
        projected = sweep[size]["projected_400k_s"]
        assert projected["raw_bytes"] == 400_000 * per_sample and projected["compress_s"] > 0
        assert projected["end_to_end_s"] == max(projected["compress_s"], projected["write_s"]) > 0
    recorded = {}
    for line in jsonl.read_text().splitlines():
        record = json.loads(line)
        recorded[record["stage"]] = record["value"]
    settings = parse_settings(DEFAULT_SETTINGS)
    defaults = []
    for compressor, chunk, level in settings:
        name = "generate_sweep_" + setting_key(compressor, chunk, level)
        e = recorded[name]  # as --jsonl recorded it: the projection and the setting included
        assert e == results[name]
        assert e["samples"] == 16 and e["projected_to_samples"] == 48
        assert e["projected_seconds_writing_full"] == pytest.approx(e["seconds_writing"] * 3)
        assert e["store_bytes"] > 0 and e["vs_floor"] > 0 and e["raw_GBps_writing"] > 0
        assert e["chunk_samples"] == (chunk or 2048) and e["compression_level"] == level
        assert e["writer_cost"]["samples"] == 16 and 0 < e["writer_cost"]["compression_share"] <= 1
        if compressor != "cpu":
            assert e["compressor"].startswith(("host-zstd-stand-in", "hybrid (host-zstd-stand-in")), e["compressor"]
        assert e["setting"]["compressor"] == compressor and e["setting"]["chunk_size"] == chunk
        defaults += [name] if e["setting"]["is_default"] else []
    from engine.config import DEFAULT_COMPRESSION_LEVEL

    default = f"hybrid_chunkdefault_level{DEFAULT_COMPRESSION_LEVEL}"  # what --compressor auto runs behind a GPU
    assert defaults == [f"generate_sweep_{default}"]
    verdict = recorded["chunk_verdict"]
    assert verdict == results["chunk_verdict"] and verdict["default"] == default
    assert sorted(verdict["measured_order"]) == sorted(setting_key(*s) for s in settings)
    assert f"chunk verdict: {verdict['line']}" in stdout and "one sample's image" in stdout


@pytest.mark.slow
def test_bench_asset_cache_runs(tmp_path: Path) -> None:
    stdout = run("bench_asset_cache.py", "--repeats", "1", "--limit", "16", "--backgrounds", "2",
                 "--foregrounds", "2", "--results-dir", str(tmp_path))
    assert "load_assets, cache warm" in stdout and "cli.py generate --limit 16, cache cold" in stdout
    results = json.loads((tmp_path / "asset_cache.json").read_text())["results"]
    assert results["cache_files"] == 4 and results["cache_bytes"] > 0
    assert results["load_assets_warm"]["median_s"] > 0 and results["cli_generate_warm"]["median_s"] > 0


@pytest.mark.slow
def test_bench_data_runs(tmp_path: Path) -> None:
    stdout = run("bench_data.py", "--samples", "64", "--load", "40", "--results-dir", str(tmp_path))
    assert "load_split 40 samples" in stdout and "make_batch" in stdout
    assert json.loads((tmp_path / "data.json").read_text())["results"]["make_batch_224_cpu_ms"] > 0


@pytest.mark.slow
def test_bench_atlas_runs(tmp_path: Path) -> None:
    stdout = run("bench_atlas.py", "--samples", "300", "--backgrounds", "3", "--foregrounds", "3",
                 "--results-dir", str(tmp_path))
    assert "distinct resizes" in stdout
    results = json.loads((tmp_path / "atlas.json").read_text())["results"]
    assert results["samples"] == 300 and 1 <= results["distinct_resizes"] <= 300
    assert set(results["warm_ms_per_shard"]) == {"placements", "atlas_lookup", "plane_depth"}


@pytest.mark.slow
def test_bench_jpeg_runs(tmp_path: Path) -> None:
    stdout = run("bench_jpeg.py", "--samples", "24", "--size", "48", "--repeats", "1", "--results-dir", str(tmp_path))
    assert "fgbg_cpu_all_cores" in stdout
    results = json.loads((tmp_path / "jpeg.json").read_text())["results"]
    for name in ("pillow_one_thread", "pillow_all_cores", "fgbg_cpu_one_thread", "fgbg_cpu_all_cores"):
        assert results[name]["images_per_s"] > 0 and results[name]["min_psnr_db"] > 30, name
    assert results["fgbg_cpu_one_thread"]["bytes_per_image"] == results["fgbg_cpu_all_cores"]["bytes_per_image"]


@pytest.mark.slow
def test_bench_online_runs(tmp_path: Path) -> None:
    stdout = run("bench_online.py", "--samples", "40", "--backgrounds", "2", "--foregrounds", "2", "--size", "32",
                 "--repeats", "1", "--results-dir", str(tmp_path))
    assert "store (ShardReader)" in stdout and "online warm, whole plan" in stdout
    results = json.loads((tmp_path / "online_cpu.json").read_text())["results"]
    assert results["online warm, store's samples"]["samples_per_s"] > 0 and results["plan_samples"] == 160


def test_bench_gpu_helpers() -> None:
    """The zstd header reader (does nvCOMP write the content size?) and the JPEG run's size rule."""
    import numpy as np
    from numcodecs import Zstd

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from bench_gpu import frame_content_size, jpeg_sample_count
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    for n in (10, 300, 70_000, 5_000_000):
        assert frame_content_size(bytes(Zstd(level=3).encode(np.zeros(n, np.uint8)))) == n
    assert jpeg_sample_count({"nvimgcodec": 20_000.0, "pillow": 1_000.0}, 400_000, 2048) == 400_000
    assert jpeg_sample_count({"nvimgcodec": {"error": "x"}, "pillow": 1_600.0}, 400_000, 2048) == 96_000 // 2048 * 2048
    assert jpeg_sample_count({"pillow": 10.0}, 400_000, 2048) == 20_480
    assert jpeg_sample_count(None, 400_000, 2048) == 400_000
    measured = {"pillow_all_cores": 1_600.0, "writers": 8, "single_call": {"nvimgcodec": 99_000.0},
                "8_writers": {"torchvision_nvjpeg": 5_000.0, "nvimgcodec": {"error": "x"}}}
    assert jpeg_sample_count(measured, 400_000, 2048) == 300_000 // 2048 * 2048  # the writers' rate counts
    picked = {"writers": 8, "8_writers": {"fgbg_kernels": 2_000.0, "torchvision_nvjpeg": 5_000.0},
              "auto": {"auto_picks": "fgbg"}}
    assert jpeg_sample_count(picked, 400_000, 2048) == 120_000 // 2048 * 2048  # the run uses auto's pick


def _bench_gpu():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_gpu
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_gpu


def test_jpeg_writer_rate_and_verdict() -> None:
    """Writers each build their own encoder once; auto's pick is judged at the writers' rates."""
    import threading

    import numpy as np

    bench_gpu = _bench_gpu()
    built: list[int] = []

    def make():  # type: ignore[no-untyped-def]
        built.append(threading.get_ident())
        return lambda images, quality: [b"x"] * len(images)

    assert bench_gpu.writer_rate(make, np.zeros(16), writers=3, repeats=1) > 0
    assert 1 <= len(built) <= 3 and len(set(built)) == len(built)  # one per thread at most
    order = ("nvjpeg", "nvimgcodec", "nvimgcodec-streams")
    assert bench_gpu.jpeg_verdict({"fgbg_kernels": 30_000.0, "torchvision_nvjpeg": 6_000.0},
                                  ("fgbg",) + order)["confirmed"] is True
    rates = {"torchvision_nvjpeg": 6_000.0, "nvimgcodec": 5_000.0, "nvimgcodec_streams_4": 9_000.0,
             "nvimgcodec_streams_8": 12_000.0}  # the 8-stream variant is no option: not judged
    verdict = bench_gpu.jpeg_verdict(rates, order)
    assert verdict["auto_picks"] == "nvjpeg" and verdict["fastest"] == "nvimgcodec-streams"
    assert verdict["confirmed"] is False and verdict["measured_order"][0] == "nvimgcodec-streams"
    assert bench_gpu.jpeg_verdict({"torchvision_nvjpeg": 6_000.0, "nvimgcodec": {"error": "x"}}, order)["confirmed"]
    assert bench_gpu.jpeg_verdict({}, order)["confirmed"] is None


def test_jpeg_variants_without_nvimgcodec() -> None:
    """fgbg's kernels (the simulator here) and torchvision are measured even
    where nvImageCodec is missing; each writer's fgbg encoder writes the CPU's bytes."""
    import numpy as np
    from numba import cuda

    from kernels.jpeg import encode_jpeg_batch

    variants = _bench_gpu().jpeg_variants(nvimgcodec_runs=False)
    assert list(variants) == ["fgbg_kernels", "torchvision_nvjpeg"]
    images = np.random.default_rng(0).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    assert list(variants["fgbg_kernels"]()(cuda.to_device(images), 95)) == list(encode_jpeg_batch(images, 95))
    assert list(_bench_gpu().jpeg_variants(nvimgcodec_runs=False, fgbg_runs=False)) == ["torchvision_nvjpeg"]


def test_compression_sweep_with_the_host_stand_in() -> None:
    """The nvCOMP piece-size sweep's bookkeeping, run with the CPU stand-in on the simulator:
    its frames are CPU zstd-3's, so both ratios agree; both call shapes give the same frames."""
    import numpy as np
    from numba import cuda

    from engine.store.device_codec import HostZstdStandIn

    bench_gpu = _bench_gpu()
    rng = np.random.default_rng(0)
    flat = {"images": cuda.to_device(rng.integers(0, 4, 4096, dtype=np.uint8)),
            "masks": cuda.to_device(np.zeros(1024, np.uint8))}
    rows = bench_gpu.compression_sweep(flat, [256, 2048], HostZstdStandIn(level=3), cores=2, repeats=1)
    assert rows["compressor"] == "host-zstd-stand-in"
    assert rows["256"]["pieces"] == 16 + 4 and rows["2048"]["pieces"] == 2  # masks are smaller than 2048 B
    for size in ("256", "2048"):
        assert rows[size]["ratio"] == pytest.approx(rows[size]["cpu_zstd3_ratio"], rel=1e-9)
        assert rows[size]["per_array_call_GBps"] > 0 and rows[size]["per_shard_call_GBps"] > 0


@pytest.mark.slow
def test_bench_loader_runs(tmp_path: Path) -> None:
    stdout = run("bench_loader.py", "--samples", "128", "--steps", "2", "--batch", "8", "--input-size", "64",
                 "--overhead-steps", "1", "--repeats", "1", "--results-dir", str(tmp_path))
    assert "b_dali_lossless" in stdout and "training" in stdout
    results = json.loads((tmp_path / "loader.json").read_text())["results"]
    for name in ("a_device_resident", "b_dali_lossless", "c_dali_jpeg", "d_torch_in_memory", "e_online_compositing"):
        assert results["loader_alone"][name]["samples_per_s"] > 0, name
    assert results["training"]["a_device_resident"]["vs_device_resident"] == 1.0


@pytest.mark.slow
def test_bench_ranks_runs(tmp_path: Path) -> None:
    stdout = run("bench_ranks.py", "--samples", "64", "--size", "32", "--shard-size", "16", "--repeats", "1",
                 "--train-steps", "1", "--results-dir", str(tmp_path))
    assert "2-rank store byte-identical to the 1-rank store: True" in stdout
    results = json.loads((tmp_path / "ranks.json").read_text())["results"]
    assert len(results["generate_2"]["per_rank"]) == 2 and results["train_2"]["together"] > 0


def test_bench_blend_runs(tmp_path: Path) -> None:
    stdout = run("bench_blend.py", "--size", "32", "--batch", "4", "--repeats", "1", "--results-dir", str(tmp_path))
    assert "poisson" in stdout and "alpha+harmonize" in stdout
    modes = json.loads((tmp_path / "blend.json").read_text())["results"]["modes"]
    assert set(modes) == {"alpha", "feather", "motion", "poisson", "alpha+harmonize"}
    assert all(m["images_per_s"] > 0 for m in modes.values())


@pytest.mark.slow
def test_bench_objects_runs(tmp_path: Path) -> None:
    stdout = run("bench_objects.py", "--variants", "1 1,2 2", "--samples", "16", "--size", "32", "--shard-size", "8",
                 "--repeats", "1", "--results-dir", str(tmp_path))
    assert "objects/image" in stdout
    doc = json.loads((tmp_path / "objects.json").read_text())
    assert doc["results"]["2 2"]["objects_per_image"] > 1 and doc["results"]["1 1"]["images_per_s_writing_median"] > 0
    stdout = run("bench_objects.py", "--online", "--variants", "1 1,2 2", "--samples", "16", "--size", "32",
                 "--batch", "4", "--reads", "1", "--repeats", "1", "--results-dir", str(tmp_path))
    assert "online images/s" in stdout
    doc = json.loads((tmp_path / "objects_online.json").read_text())
    assert doc["results"]["2 2"]["objects_per_image"] > 1 and doc["results"]["1 1"]["images_per_s_median"] > 0


@pytest.mark.slow
def test_bench_objects_runs_with_truncation(tmp_path: Path) -> None:
    stdout = run("bench_objects.py", "--variants", "1 2", "--truncations", "0,0.5", "--samples", "16", "--size", "32",
                 "--shard-size", "8", "--repeats", "1", "--results-dir", str(tmp_path))
    assert "trunc 0.5" in stdout
    doc = json.loads((tmp_path / "objects-truncation.json").read_text())
    assert set(doc["results"]) >= {"1 2", "1 2 trunc 0.5"}


def test_bench_blend_runs_several_objects(tmp_path: Path) -> None:
    run("bench_blend.py", "--size", "48", "--batch", "4", "--repeats", "1", "--modes", "alpha,feather",
        "--objects", "1 1,2 3", "--scale-min", "0.1", "--scale-max", "0.3", "--results-dir", str(tmp_path))
    modes = json.loads((tmp_path / "blend-objects.json").read_text())["results"]["modes"]
    assert set(modes) == {"alpha", "feather", "alpha objects 2-3", "feather objects 2-3"}
    assert modes["feather objects 2-3"]["objects_per_image"] >= 2 and modes["feather"]["objects_per_image"] == 1


@pytest.mark.slow
def test_bench_stats_runs(tmp_path: Path) -> None:
    stdout = run("bench_stats.py", "--samples", "4", "--size", "32", "--repeats", "1", "--results-dir", str(tmp_path))
    assert "kernel_all_cores_gb_s" in stdout
    results = json.loads((tmp_path / "stats.json").read_text())["results"]
    assert results["kernel_gb_s"] > 0 and results["bincount_gb_s"] > 0


def test_bench_user_files_quick_writes_both_whole_process_figures(tmp_path: Path) -> None:
    out = tmp_path / "user_files.json"
    stdout = run("bench_user_files.py", "--quick", "--pool", "--json", str(out))
    assert "generate / naive loop, whole process" in stdout
    result = json.loads(out.read_text())
    assert result["samples"] == 40 and result["backgrounds"] == 3 and result["foregrounds"] == 2
    assert result["naive_fg"] == "fit"
    names = {"generate", "naive"} | ({"naive_pool"} if (os.cpu_count() or 1) > 1 else set())
    assert set(result["runs"]) == names and all(len(runs) == 1 for runs in result["runs"].values())
    assert all(result["images_per_s"][name] > 0 for name in names)
    rate = result["images_per_s"]
    assert result["ratio_generate_vs_naive"] == pytest.approx(rate["generate"] / rate["naive"], rel=1e-9)
    assert "cli.py generate --bg" in result["commands"]["generate"] and result["machine"]["cpu_count"] >= 1


def test_bench_writers_quick_measures_both_and_their_scaling(tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_writers import scaling

    assert scaling(100.0, 160.0, 2) == pytest.approx(0.8)
    with pytest.raises(ValueError):
        scaling(0.0, 1.0, 2)
    out = tmp_path / "writers.json"
    stdout = run("bench_writers.py", "--quick", "--json", str(out))
    doc = json.loads(out.read_text())
    assert "scaling:" in stdout and doc["one_core_samples_per_s"] > 0 and doc["every_core_samples_per_s"] > 0
    one, every = doc["runs"]["one_core"][0], doc["runs"]["every_core"][0]
    assert one["cores"] == 1 and one["writers"] == 1 and every["cores"] == doc["cores"] >= 1
    assert doc["scaling"] == pytest.approx(scaling(doc["one_core_samples_per_s"], doc["every_core_samples_per_s"],
                                                   doc["cores"]))
    assert 0 < one["compression_share"] <= 1 and one["samples"] == 64  # one shard of the quick size
