"""The registry's selection and skip reasons, and the ratios the runner adds."""

from __future__ import annotations

import dataclasses

import pytest

from benchmarks.suite.runner import add_ratios
from benchmarks.suite.stages import QUICK, STAGES, Context, problem, select


def test_select_by_name_and_family() -> None:
    assert [s.name for s in select(["composite"])] == ["composite"]
    assert [s.name for s in select(["loader", "composite"])] == ["composite", "loader-resident", "loader-torch",
                                                                 "loader-dali"]
    assert select(None) == list(STAGES)
    with pytest.raises(ValueError, match="unknown stage 'nope'; stages: resize, composite"):
        select(["nope"])


def test_problem_says_why_a_stage_cannot_run() -> None:
    resize = select(["resize"])[0]
    assert problem(resize, "cuda") == "no cuda variant" and problem(resize, "cpu") is None


def test_quick_sizes_meet_the_timer_rule() -> None:
    assert QUICK.repeats >= 5 and QUICK.generate_samples["cpu"] % QUICK.batch == 0


def test_ratios_and_fractions(make_record) -> None:
    r = make_record(gpu=True)
    r["figures"][0]["median"] = 4000.0
    add_ratios(r)
    assert r["figures"][0]["ratios"] == {"naive_single": 40.0, "naive_pool": pytest.approx(4000 / 180)}
    assert r["figures"][0]["fraction_of_ceiling"] is None  # no ceiling for the CPU kernel
    assert r["figures"][2]["fraction_of_ceiling"] == pytest.approx(1e6 * 1e5 / 2000e9)


TINY = dataclasses.replace(QUICK, image=16, assets=2, batch=8, generate_samples={"cpu": 16, "cuda": 16}, naive_samples=4,
                           ceiling_bytes=1 << 16)


@pytest.mark.parametrize("name, device", [("composite", "cpu"), ("composite", "cuda"), ("resize", "cpu"),
                                          ("compress", "cpu"), ("write", "cpu")])
def test_stage_measures_positive_rates(name: str, device: str, tmp_path) -> None:
    """Each stage's own code path at tiny sizes; CUDA ones on Numba's simulator (conftest)."""
    ctx = Context(TINY, tmp_path)
    m = select([name])[0].run(ctx, device)
    assert m.items == 8 and len(m.timing.times_s) == TINY.repeats and min(m.timing.times_s) > 0
    if device == "cuda":
        assert m.ceiling == "device_copy_GBps" and m.bytes_per_item == 16 * 16 * 6


def test_generate_stage_carries_the_writer_cost_model_into_a_valid_figure(tmp_path) -> None:
    from benchmarks.suite.record import check_figure
    from benchmarks.suite.runner import figure

    m = select(["generate"])[0].run(Context(TINY, tmp_path), "cpu")
    cost = m.writer_cost
    assert cost is not None and cost["samples"] == 16 and 0 < cost["compression_share"] <= 1
    assert "compress images" in cost["ms_per_sample"]
    assert sum(cost["ms_per_sample"].values()) == pytest.approx(cost["total_ms_per_sample"], rel=1e-6)
    fig = figure("generate", "cpu", m)
    assert fig["writer_cost"] == cost and "of compression ceiling" in fig["notes"]
    check_figure(fig, "figures[0]")
