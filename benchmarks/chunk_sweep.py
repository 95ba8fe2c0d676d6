"""Issue 24's inner-chunk sweep as numbers: the 400k projection and the verdict on the default.

``bench_gpu.py`` measures, on a GPU machine (``bash benchmarks/gpu_check.sh``):
nvCOMP alone on one shard cut into pieces of several sizes
(``nvcomp_sweep``), and ``generate`` end to end with several inner-chunk
settings and hybrid CPU levels (the ``generate_sweep_*`` stages). This module
turns those measurements into 400k projections and the verdict: which setting
is fastest end to end, whether it is today's default, and what to change if
not. Nothing here measures anything, and nothing imports more than the
standard library (``gpu_report.py`` uses it too).
"""

from __future__ import annotations

from typing import Any

#: the full run the projections are for (the issue's 400k samples)
FULL_SAMPLES = 400_000
#: stage-name prefix of bench_gpu's end-to-end sweep runs: ``generate_sweep_<key>``
SWEEP_PREFIX = "generate_sweep_"
#: the verdict asks another setting to be this much faster than the default (a
#: share of the default's seconds) before it says to change the default: one
#: short run per setting decides it
MARGIN = 0.05
#: bench_gpu's ``--chunk-settings`` default: ``compressor:chunk:level``, the most
#: important first (a run cut short keeps those); ``default``: the chunk rule of
#: engine/config.py. nvCOMP has no level: its runs take the default's.
DEFAULT_SETTINGS = "nvcomp:default:3,nvcomp:1:3,hybrid:default:3,hybrid:default:2,cpu:default:3,nvcomp:2:3"

Setting = tuple[str, int | None, int]


def parse_settings(text: str) -> list[Setting]:
    """``"nvcomp:1:3,hybrid:default:2"`` → ``[("nvcomp", 1, 3), ("hybrid", None, 2)]``
    (compressor, samples per chunk or ``None`` for the default rule, CPU zstd level).

    Raises:
        ValueError: a setting is not ``compressor:chunk:level``.
    """
    settings: list[Setting] = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        parts = item.split(":")
        if len(parts) != 3 or parts[0] not in ("auto", "cpu", "nvcomp", "hybrid"):
            raise ValueError(f"chunk setting {item!r}: expected compressor:chunk:level, e.g. nvcomp:1:3")
        chunk = None if parts[1] == "default" else int(parts[1])
        settings.append((parts[0], chunk, int(parts[2])))
    return settings


def setting_key(compressor: str, chunk: int | None, level: int) -> str:
    """The sweep run's name: ``nvcomp_chunk1_level3``, ``hybrid_chunkdefault_level2``."""
    return f"{compressor}_chunk{'default' if chunk is None else chunk}_level{level}"


def setting_label(compressor: str, chunk: int | None, level: int) -> str:
    """The command-line flags of a setting (nvCOMP has no level: none shown for it)."""
    flags = [f"--compressor {compressor}"]
    flags += [f"--chunk-size {chunk}"] if chunk is not None else []
    flags += [f"--compression-level {level}"] if compressor != "nvcomp" else []
    return " ".join(flags) + (" (default chunks)" if chunk is None else "")


def project_400k(GBps: float | None, ratio: float | None, disk_GBps: float | None, bytes_per_sample: int,
                 samples: int = FULL_SAMPLES) -> dict[str, Any] | None:
    """``samples`` samples' raw bytes through a compressor measured alone, then onto the disk.

    Compressing takes ``raw / GBps``; writing the compressed bytes (``raw /
    ratio``) takes ``compressed / disk_GBps``. ``generate`` overlaps the two,
    so the end-to-end projection is the larger. Projected from the compressor
    alone (one call per shard): no compositing, copies or writer overheads.

    Args:
        GBps: the compressor's rate, 1e9 raw input bytes per second.
        ratio: raw bytes / compressed bytes it measured.
        disk_GBps: the disk's sequential write rate, 1e9 bytes per second.
        bytes_per_sample: raw bytes of one sample (``H*W*(3+1+2)``: image, mask, depth).

    Returns:
        ``None`` when a rate or the ratio is missing or not positive.
    """
    if not all(isinstance(v, (int, float)) and v > 0 for v in (GBps, ratio, disk_GBps)):
        return None
    raw = samples * bytes_per_sample
    compressed = raw / ratio
    compress_s, write_s = raw / (GBps * 1e9), compressed / (disk_GBps * 1e9)
    return {"samples": samples, "raw_bytes": raw, "compressed_bytes": compressed, "compress_s": compress_s,
            "write_s": write_s, "end_to_end_s": max(compress_s, write_s),
            "bound": "compression" if compress_s >= write_s else "disk",
            "basis": "projected from the compressor alone (one call per shard) and the measured disk rate: "
                     "compression and writes overlap in generate, so the larger; not a generate run"}


def seconds_full(run: dict[str, Any]) -> float | None:
    """A run's writing phase for the full run: projected when it was shortened, else measured."""
    value = run.get("projected_seconds_writing_full", run.get("seconds_writing"))
    return value if isinstance(value, (int, float)) else None


def samples_full(run: dict[str, Any]) -> int | None:
    """The samples :func:`seconds_full` is for: what a shortened run was projected to, else its own."""
    return run.get("projected_to_samples", run.get("samples"))


def sweep_runs(stages: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The end-to-end sweep runs that finished: key → the stage's value (with its ``setting``)."""
    return {name[len(SWEEP_PREFIX):]: value for name, value in stages.items()
            if name.startswith(SWEEP_PREFIX) and isinstance(value, dict) and isinstance(value.get("setting"), dict)
            and seconds_full(value) is not None}


def chunk_verdict(stages: dict[str, Any], margin: float = MARGIN) -> dict[str, Any]:
    """Which sweep setting ``generate`` runs fastest (writing phase, 400k projected),
    whether it is today's default, and if not what to change to follow it.

    The default is the run whose ``setting.is_default`` bench_gpu set
    (``--compressor auto``, which is ``hybrid`` where nvCOMP runs, the default
    chunk rule, the default level). Another setting must be faster by more than
    ``margin`` of the default's seconds for the verdict to ask for a change.
    The chunk size stays one rule on every device (stores' layout must not
    depend on the machine: they resume across devices), so a change is always
    to the rule in engine/config.py, never a per-device default.

    Args:
        stages: bench_gpu's stage name → value (its ``--jsonl`` or its JSON's ``results``).
    """
    runs = sweep_runs(stages)
    if not runs:
        return {"fastest": None, "default": None, "default_is_fastest": None, "follow": False, "changes": [],
                "line": "no end-to-end sweep run finished: no verdict"}
    seconds = {k: seconds_full(v) for k, v in runs.items()}
    order = sorted(seconds, key=seconds.__getitem__)
    fastest = order[0]
    default = next((k for k, v in runs.items() if v["setting"].get("is_default")), None)
    best, best_run = seconds[fastest], runs[fastest]
    label = best_run["setting"].get("label", fastest)
    basis = (f"projected from {best_run['samples']:,} samples" if "projected_seconds_writing_full" in best_run
             else "measured")
    out: dict[str, Any] = {"fastest": fastest, "fastest_label": label, "fastest_seconds_full": best,
                           "default": default, "seconds_full": seconds, "measured_order": order, "margin": margin,
                           "changes": [], "follow": False}
    head = f"fastest end to end: `{label}`, {best:.1f} s writing for {samples_full(best_run):,} samples ({basis})"
    if default is None:
        out["default_is_fastest"] = None
        out["line"] = f"{head}; today's default was not measured in the sweep: no verdict on it"
        return out
    d_run, d_s = runs[default], seconds[default]
    d_label = d_run["setting"].get("label", default)
    out["default_seconds_full"] = d_s
    out["default_is_fastest"] = fastest == default
    if fastest == default:
        nxt = (f"; next `{runs[order[1]]['setting'].get('label', order[1])}` {seconds[order[1]]:.1f} s"
               if len(order) > 1 else "")
        out["line"] = f"{head}: today's default{nxt}. Keep the default."
        return out
    gain = (d_s - best) / d_s
    per_sample = {k: runs[k].get("store_bytes", 0) / max(runs[k].get("samples", 1), 1) for k in (fastest, default)}
    bytes_note = (f", a store {per_sample[fastest] / per_sample[default]:.2f}x the default's bytes"
                  if per_sample[default] > 0 else "")
    vs = f" vs {d_s:.1f} s with today's default `{d_label}` ({100 * gain:.0f}% less{bytes_note})"
    if gain <= margin:
        out["line"] = f"{head}{vs}: within the {100 * margin:.0f}% margin. Keep the default."
        return out
    out["changes"] = changes(best_run, d_run)
    out["follow"] = bool(out["changes"])
    out["line"] = f"{head}{vs}. To follow it: " + "; ".join(out["changes"]) + "."
    return out


def changes(best: dict[str, Any], default: dict[str, Any]) -> list[str]:
    """What to change in the code so that the default becomes ``best``'s setting."""
    b, d = best["setting"], default["setting"]
    out = []
    if b.get("chunk_size") != d.get("chunk_size"):
        want = b.get("chunk_size") or best.get("chunk_samples")
        out.append(f"the default chunk rule, engine/config.py `GenerateConfig.samples_per_chunk` (today about 1 MB "
                   f"of images: {default.get('chunk_samples', '?')} samples per chunk here), to {want} "
                   f"sample{'' if want == 1 else 's'} per chunk, one rule on every device (stores resume across "
                   "devices)")
    if b.get("compressor") != d.get("compressor"):
        out.append(f"`--compressor auto`'s pick where nvCOMP runs, engine/compose/hardware.py `resolve_compressor` "
                   f"(today {d.get('compressor')}), to {b.get('compressor')}")
    if b.get("compressor") != "nvcomp" and b.get("compression_level") != d.get("compression_level"):
        out.append(f"the default `--compression-level`, engine/config.py `GenerateConfig.compression_level` (today "
                   f"{d.get('compression_level')}; the CPU's zstd on every device), to {b.get('compression_level')}")
    return out
