"""The sample plan: deterministic, addressable, covering the grid, in bounds."""

from __future__ import annotations

import numpy as np
import pytest

from engine.compose.plan import SamplePlan, uniform
from engine.config import GenerateConfig
from engine.errors import ConfigError


def make_plan(n_bg: int = 5, n_fg: int = 4, ground: int | None = 60, **overrides) -> SamplePlan:
    config = GenerateConfig(**{"height": 128, "width": 160, "positions": 3, **overrides})
    rng = np.random.default_rng(0)
    fg_sizes = np.stack([rng.integers(40, 129, n_fg), rng.integers(30, 400, n_fg)], axis=1)
    rows = None if ground is None else np.full(n_bg, ground)
    return SamplePlan(config, fg_sizes, n_bg, rows)


def fields(p) -> np.ndarray:
    return np.stack([p.bg, p.fg, p.flip, p.x, p.y, p.h, p.w, p.scale.view(np.int32)], axis=1)


def test_default_layout_is_the_original_400k() -> None:
    config = GenerateConfig()
    plan = SamplePlan(config, np.full((100, 2), [224, 448]), 100, np.full(100, 100))
    assert plan.n_samples == 100 * 100 * 2 * 20 == 400_000


def test_any_range_equals_the_same_slice_of_the_whole() -> None:
    plan = make_plan()
    whole = fields(plan.placements(0, plan.n_samples))
    for start, stop in [(0, 1), (7, 19), (33, plan.n_samples), (plan.n_samples - 1, plan.n_samples)]:
        np.testing.assert_array_equal(fields(plan.placements(start, stop)), whole[start:stop])


def test_placements_at_any_indices_equal_the_rows_of_the_whole() -> None:
    """Shuffled indices with repeats (a loader's batch) give exactly those rows of the plan."""
    plan = make_plan(limit=100)
    whole = fields(plan.placements(0, plan.n_samples))
    indices = np.random.default_rng(1).integers(0, plan.n_samples, 40)
    indices[:2] = [plan.n_samples - 1, 0]
    np.testing.assert_array_equal(fields(plan.placements_at(indices)), whole[indices])
    assert len(plan.placements_at(np.array([], np.int64))) == 0


@pytest.mark.parametrize("bad", [np.array([-1]), np.array([0, 100]), np.array([[0]]), np.array([0.5])])
def test_placements_at_bad_indices_are_errors(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        make_plan(limit=100).placements_at(bad)


def test_same_seed_same_plan_other_seed_other_plan() -> None:
    a = fields(make_plan(seed=3).placements(0, 100))
    b = fields(make_plan(seed=3).placements(0, 100))
    c = fields(make_plan(seed=4).placements(0, 100))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_grid_is_covered_exactly_once() -> None:
    plan = make_plan()
    p = plan.placements(0, plan.n_samples)
    pos = np.arange(plan.n_samples) // (plan.n_bg * plan.n_fg * plan.n_flip)
    combos = set(zip(p.bg.tolist(), p.fg.tolist(), p.flip.tolist(), pos.tolist()))
    assert len(combos) == plan.n_samples == 5 * 4 * 2 * 3


def test_plain_and_flipped_share_the_placement() -> None:
    plan = make_plan()
    p = plan.placements(0, plan.n_samples)
    key = {}
    for i in range(plan.n_samples):
        k = (int(p.bg[i]), int(p.fg[i]), i // (plan.n_bg * plan.n_fg * 2))
        key.setdefault(k, []).append((int(p.flip[i]), int(p.x[i]), int(p.y[i]), int(p.h[i])))
    for entries in key.values():
        assert sorted(e[0] for e in entries) == [0, 1]
        assert entries[0][1:] == entries[1][1:]


@pytest.mark.parametrize("ground", [None, 60, 127])
def test_foregrounds_inside_and_standing_on_the_ground(ground: int | None) -> None:
    plan = make_plan(ground=ground, scale_min=0.1, scale_max=1.0)
    p = plan.placements(0, plan.n_samples)
    assert (p.x >= 0).all() and (p.y >= 0).all()
    assert (p.x + p.w <= 160).all() and (p.y + p.h <= 128).all()
    assert (p.h >= 1).all() and (p.w >= 1).all()
    if ground is not None:
        assert (p.contact_row >= ground).all()


def test_scale_range_and_aspect_are_kept() -> None:
    plan = make_plan(n_fg=1, scale_min=0.3, scale_max=0.5)
    plan.fg_sizes[:] = [100, 50]  # narrow: never clamped by the width
    p = plan.placements(0, plan.n_samples)
    assert (p.h >= round(0.3 * 128)).all() and (p.h <= round(0.5 * 128)).all()
    np.testing.assert_allclose(p.w, np.floor(p.h * 0.5 + 0.5))
    np.testing.assert_allclose(p.scale, p.h / 128, rtol=1e-6)


def test_wide_foregrounds_are_shrunk_to_fit() -> None:
    plan = make_plan(n_fg=1, scale_min=0.9, scale_max=1.0)
    plan.fg_sizes[:] = [50, 500]  # 10:1 — cannot be 0.9 of the height and fit 160 wide
    p = plan.placements(0, plan.n_samples)
    assert (p.w <= 160).all() and (p.h == 16).all()


def test_limit_keeps_a_prefix() -> None:
    full = make_plan()
    limited = make_plan(limit=17)
    assert limited.n_samples == 17
    np.testing.assert_array_equal(fields(limited.placements(0, 17)), fields(full.placements(0, 17)))
    assert make_plan(limit=10**9).n_samples == full.n_samples


def test_shard_ranges_cover_the_plan() -> None:
    plan = make_plan()
    ranges = plan.shard_ranges(7)
    assert ranges[0] == (0, 7) and ranges[-1][1] == plan.n_samples
    assert sum(b - a for a, b in ranges) == plan.n_samples


def test_uniform_is_in_range_and_roughly_uniform() -> None:
    u = uniform(1, np.arange(100_000), 1)
    assert u.min() >= 0 and u.max() < 1
    hist = np.histogram(u, bins=10, range=(0, 1))[0]
    assert hist.min() > 9_500


def test_out_of_range_request_is_an_error() -> None:
    plan = make_plan()
    with pytest.raises(ValueError):
        plan.placements(0, plan.n_samples + 1)


@pytest.mark.parametrize("bad", [{"scale_min": 0.7, "scale_max": 0.5}, {"positions": 0}, {"limit": 0}])
def test_bad_options_are_config_errors(bad: dict) -> None:
    with pytest.raises(ConfigError):
        GenerateConfig(**bad)


# -- perspective placement ------------------------------------------------------------


@pytest.fixture(scope="module")
def street_plan():
    """Built-in street scenes (each its own camera) with the default perspective rule."""
    from engine.compose.depth import make_depth_source
    from engine.compose.generate import load_assets
    from engine.compose.plan import plan_for

    config = GenerateConfig(builtin_backgrounds=12, builtin_foregrounds=6, positions=8, height=96, width=128)
    assets = load_assets(config)
    depth = make_depth_source(config, assets)
    return config, plan_for(config, assets, depth), depth.grounds


def test_auto_placement_is_perspective_on_the_built_in_scenes(street_plan) -> None:
    _, plan, _ = street_plan
    assert plan.placement == "perspective"


def test_pixel_height_times_depth_is_the_object_height(street_plan) -> None:
    """h_px * Z / focal = H_m * (1 +/- jitter), up to half a pixel of rounding, for
    every placement the camera allows; the rest (clamped) are rare and still inside."""
    config, plan, grounds = street_plan
    p = plan.placements(0, plan.n_samples)
    focal = np.array([g.focal for g in grounds])[p.bg]
    z = np.array([grounds[b].ground_depth(np.array([r]))[0] for b, r in zip(p.bg, p.contact_row)])
    assert np.isfinite(z).all(), "every foreground stands on the ground"
    metres = p.h * z / focal
    slack = 0.5 * z / focal  # half a pixel of rounding, in metres
    lo = config.object_height * (1 - config.height_jitter) - slack
    hi = config.object_height * (1 + config.height_jitter) + slack
    ok = (metres >= lo) & (metres <= hi)
    assert ok.mean() > 0.95, f"{(~ok).sum()} of {len(ok)} placements off the perspective rule"
    assert (p.x >= 0).all() and (p.y >= 0).all() and (p.x + p.w <= config.width).all()
    assert (p.contact_row <= config.height - 1).all()
    in_range = (p.h >= np.floor(config.scale_min * config.height)) & (p.h <= np.ceil(config.scale_max * config.height))
    assert in_range.mean() > 0.95
    # the sizes really follow the ground: height against rows below the horizon per metre of camera height
    below = (p.contact_row + 0.5 - np.array([g.horizon for g in grounds])[p.bg]) / np.array(
        [g.camera_height for g in grounds])[p.bg]
    assert np.corrcoef(p.h, below)[0, 1] > 0.95
    assert p.h.max() > 2 * p.h.min()


def test_no_full_size_object_at_the_horizon(street_plan) -> None:
    """The uniform rule put full-size cars where the ground is 80 m away; perspective does not."""
    config, plan, grounds = street_plan
    p = plan.placements(0, plan.n_samples)
    z = np.array([grounds[b].ground_depth(np.array([r]))[0] for b, r in zip(p.bg, p.contact_row)])
    big = p.h >= config.scale_max * config.height * 0.9
    assert big.any() and z[big].max() < 15


def test_perspective_is_addressable_and_shares_placements_across_flips(street_plan) -> None:
    _, plan, _ = street_plan
    whole = fields(plan.placements(0, plan.n_samples))
    picks = np.array([5, 0, 5, plan.n_samples - 1, 77])
    np.testing.assert_array_equal(fields(plan.placements_at(picks)), whole[picks])
    n = plan.n_bg * plan.n_fg
    plain, flipped = whole[:n], whole[n : 2 * n]  # position 0, flip 0 then flip 1
    np.testing.assert_array_equal(np.delete(plain, 2, axis=1), np.delete(flipped, 2, axis=1))


def test_uniform_placement_is_unchanged_by_grounds() -> None:
    from engine.assets.camera import GroundPlane

    grounds = [GroundPlane(50.0, 160.0, 1.6)] * 5
    base = make_plan(placement="uniform")
    with_grounds = SamplePlan(base_config := GenerateConfig(height=128, width=160, positions=3, placement="uniform"),
                              base.fg_sizes, 5, np.full(5, 60), grounds)
    assert with_grounds.placement == "uniform" and base_config.placement == "uniform"
    np.testing.assert_array_equal(fields(with_grounds.placements(0, base.n_samples)),
                                  fields(base.placements(0, base.n_samples)))


def test_perspective_needs_a_ground_model() -> None:
    with pytest.raises(ConfigError, match="--placement perspective"):
        make_plan(placement="perspective")
    assert make_plan(placement="auto").placement == "uniform"  # no ground model: the uniform rule


def test_stores_without_a_placement_key_were_uniform() -> None:
    d = GenerateConfig().to_dict()
    d.pop("placement")
    assert GenerateConfig.from_dict(d).placement == "uniform"
    with pytest.raises(ConfigError, match="--placement"):
        GenerateConfig(placement="random")
    with pytest.raises(ConfigError, match="--object-height"):
        GenerateConfig(object_height=0)


def object_fields(o) -> np.ndarray:
    return np.concatenate([fields(o.objects), o.sample_of[:, None], o.instance_id[:, None]], axis=1)


def multi_plan(**overrides) -> SamplePlan:
    return make_plan(**{"objects_min": 1, "objects_max": 4, "max_overlap": 0.3, **overrides})


def test_objects_of_any_range_equal_the_slice_of_the_whole() -> None:
    plan = multi_plan()
    whole = plan.objects(0, plan.n_samples)
    for start, stop in [(0, 1), (7, 19), (33, plan.n_samples)]:
        part = plan.objects(start, stop)
        rows = slice(whole.offset[start], whole.offset[stop])
        np.testing.assert_array_equal(fields(part.objects), fields(whole.objects)[rows])
        np.testing.assert_array_equal(part.offset, whole.offset[start : stop + 1] - whole.offset[start])
    indices = np.array([5, 2, 5, plan.n_samples - 1])
    picked = plan.objects_at(indices)
    want = np.concatenate([fields(whole.objects)[whole.offset[i] : whole.offset[i + 1]] for i in indices])
    np.testing.assert_array_equal(fields(picked.objects), want)


def test_object_zero_is_the_grid_placement_and_counts_stay_in_range() -> None:
    plan = multi_plan(objects_min=2, max_overlap=1.0)
    o = plan.objects(0, plan.n_samples)
    first = plan.placements(0, plan.n_samples)
    np.testing.assert_array_equal(fields(o.objects)[o.offset[:-1]], fields(first))
    counts = np.diff(o.offset)
    assert counts.min() == 2 and counts.max() == 4  # max_overlap 1: nothing dropped
    assert len(set(counts.tolist())) == 3
    np.testing.assert_array_equal(o.objects.bg, np.repeat(first.bg, counts))
    assert (o.objects.x >= 0).all() and (o.objects.x + o.objects.w <= plan.width).all()
    assert (o.objects.y >= 0).all() and (o.objects.y + o.objects.h <= plan.height).all()
    assert len(np.unique(o.objects.fg)) == plan.n_fg and set(o.objects.flip.tolist()) == {0, 1}


def test_extra_objects_respect_max_overlap_or_are_dropped() -> None:
    for limit in (0.0, 0.3):
        plan = multi_plan(max_overlap=limit)
        o = plan.objects(0, plan.n_samples)
        p = o.objects
        for b in range(len(o)):
            rows = range(o.offset[b], o.offset[b + 1])
            for i in rows:
                for j in rows:
                    if i < j:
                        ix = min(p.x[i] + p.w[i], p.x[j] + p.w[j]) - max(p.x[i], p.x[j])
                        iy = min(p.y[i] + p.h[i], p.y[j] + p.h[j]) - max(p.y[i], p.y[j])
                        inter = max(ix, 0) * max(iy, 0)
                        assert inter <= limit * min(p.h[i] * p.w[i], p.h[j] * p.w[j]) + 1e-9
    tight = np.diff(multi_plan(max_overlap=0.0).objects(0, plan.n_samples).offset).sum()
    loose = np.diff(multi_plan(max_overlap=1.0).objects(0, plan.n_samples).offset).sum()
    assert tight < loose  # some objects found no free place


def test_one_object_per_image_plans_exactly_the_grid() -> None:
    plan = make_plan()
    o = plan.objects(0, plan.n_samples)
    np.testing.assert_array_equal(o.offset, np.arange(plan.n_samples + 1))
    np.testing.assert_array_equal(fields(o.objects), fields(plan.placements(0, plan.n_samples)))


def test_extra_objects_follow_the_perspective_rule() -> None:
    from engine.assets.camera import GroundPlane

    config = GenerateConfig(height=128, width=160, positions=3, objects_max=3, max_overlap=1.0,
                            placement="perspective", height_jitter=0.1)
    fg_sizes = np.array([[60, 120], [50, 90]])
    plan = SamplePlan(config, fg_sizes, 2, np.full(2, 50), [GroundPlane(48.0, 160.0, 1.6)] * 2)
    p = plan.objects(0, plan.n_samples).objects
    # h = k (bottom + 0.5 - horizon), k = object_height (1 +/- jitter) / camera_height
    k = p.h / (p.y + p.h - 1 + 0.5 - 48.0)
    inside = (p.h > 2) & (p.h < 0.6 * 128 - 1)
    assert (np.abs(k[inside] - 1.5 / 1.6) <= 0.1 * 1.5 / 1.6 + 1.0 / p.h[inside] + 1e-9).all()


def test_object_fields_are_saved_only_for_several_objects() -> None:
    one = GenerateConfig().to_dict()
    assert "objects_max" not in one and GenerateConfig.from_dict(one) == GenerateConfig()
    several = GenerateConfig(objects_min=2, objects_max=5, max_overlap=0.25)
    d = several.to_dict()
    assert (d["objects_min"], d["objects_max"], d["max_overlap"]) == (2, 5, 0.25)
    assert GenerateConfig.from_dict(d) == several
    for bad in ({"objects_min": 0}, {"objects_min": 3, "objects_max": 2}, {"objects_max": 65}, {"max_overlap": -0.1}):
        with pytest.raises(ConfigError):
            GenerateConfig(**bad)


def test_object_heights_per_category() -> None:
    """--object-heights: each foreground's category sets its real height; h * Z / focal follows it."""
    from types import SimpleNamespace

    from engine.assets.camera import GroundPlane
    from engine.compose.plan import foreground_heights, plan_for

    config = GenerateConfig(height=128, width=160, positions=40, object_heights=(("people", 1.8), ("trucks", 3.5)),
                            height_jitter=0.0, scale_min=0.05, scale_max=0.9)
    names = ["a.png", "people/p.png", "trucks/t.png", "people/q.png"]
    np.testing.assert_array_equal(foreground_heights(config, names), [1.5, 1.8, 3.5, 1.8])
    with pytest.raises(ConfigError, match="no foreground or category named bikes"):
        foreground_heights(GenerateConfig(object_heights=(("bikes", 1.0),)), names)
    ground = GroundPlane(50.0, 160.0, 1.6)
    depth = SimpleNamespace(first_ground_rows=lambda: np.full(2, ground.first_ground_row()), grounds=[ground] * 2)
    assets = SimpleNamespace(fg_sizes=np.array([[60, 40], [80, 30], [60, 90], [80, 30]]), bg_images=np.zeros((2, 1)),
                             fg_files=[SimpleNamespace(name=n) for n in names])
    p = plan_for(config, assets, depth).placements(0, 2 * 4 * 2 * 40)
    metres = p.h * ground.ground_depth(p.contact_row) / ground.focal
    expected = np.array([1.5, 1.8, 3.5, 1.8])[p.fg]
    ok = np.abs(metres - expected) <= 0.5 * ground.ground_depth(p.contact_row) / ground.focal + 1e-9
    assert ok.mean() > 0.9


def test_object_heights_per_file_and_from_the_heights_file() -> None:
    """A file's height (--object-heights, or --fg's heights.csv entries on the assets) wins over its
    category's, the command line over the file; h * Z / focal follows the height each file got."""
    from types import SimpleNamespace

    from engine.assets.camera import GroundPlane
    from engine.compose.plan import foreground_heights, plan_for

    names = ["a.png", "trucks/tanker.png", "trucks/van.png", "people/p.png"]
    config = GenerateConfig(height=128, width=160, positions=40, height_jitter=0.0, scale_min=0.05, scale_max=0.9,
                            object_heights=(("trucks/tanker", 3.6), ("trucks", 2.2)))
    from_file = (("people", 1.8), ("trucks/van.png", 2.6), ("a.png", 1.1))
    expected = np.array([1.1, 3.6, 2.2, 1.8])
    np.testing.assert_array_equal(foreground_heights(config, names, from_file), expected)
    with pytest.raises(ConfigError, match=r"^fg/heights\.csv: no foreground or category named bikes/b"):
        foreground_heights(GenerateConfig(bg_dir="bg", fg_dir="fg"), names, (("bikes/b", 1.0),))
    ground = GroundPlane(50.0, 160.0, 1.6)
    depth = SimpleNamespace(first_ground_rows=lambda: np.full(2, ground.first_ground_row()), grounds=[ground] * 2)
    assets = SimpleNamespace(fg_sizes=np.array([[60, 40], [80, 60], [60, 90], [80, 30]]), bg_images=np.zeros((2, 1)),
                             fg_files=[SimpleNamespace(name=n) for n in names], heights=from_file)
    p = plan_for(config, assets, depth).placements(0, 2 * 4 * 2 * 40)
    z = ground.ground_depth(p.contact_row)
    ok = np.abs(p.h * z / ground.focal - expected[p.fg]) <= 0.5 * z / ground.focal + 1e-9
    assert ok.mean() > 0.9 and all(ok[p.fg == f].any() for f in range(4))
    # the heights file alone (no --object-heights) is used too
    alone = plan_for(GenerateConfig(height=128, width=160, positions=40, height_jitter=0.0), assets, depth)
    np.testing.assert_array_equal(alone.fg_heights, [1.1, 1.5, 2.6, 1.8])


def test_object_heights_round_trip_and_checks() -> None:
    config = GenerateConfig(object_heights=(("car", 1.5), ("truck", 3.0)))
    assert GenerateConfig.from_dict(json_round_trip(config.to_dict())) == config
    with pytest.raises(ConfigError, match="--object-heights"):
        GenerateConfig(object_heights=(("car", 0.0),))
    with pytest.raises(ConfigError, match="names car twice"):
        GenerateConfig(object_heights=(("car", 1.0), ("car", 2.0)))


def json_round_trip(d: dict) -> dict:
    import json

    return json.loads(json.dumps(d))


# -- --truncation ----------------------------------------------------------------


def truncation_plan(placement: str, objects_max: int, ground: int | None = None, **overrides) -> SamplePlan:
    """A plan of a few thousand objects; perspective with a tall object (k > 1: the top can be cut)."""
    from engine.assets.camera import GroundPlane

    config = GenerateConfig(**{"height": 128, "width": 160, "positions": 40, "placement": placement, "scale_min": 0.1,
                               "scale_max": 1.0, "objects_max": objects_max, "max_overlap": 1.0, "object_height": 3.0,
                               **overrides})
    rng = np.random.default_rng(0)
    fg_sizes = np.stack([rng.integers(40, 129, 4), rng.integers(30, 400, 4)], axis=1)
    grounds = [GroundPlane(49.0, 160.0, 1.6)] * 5 if placement == "perspective" else None
    return SamplePlan(config, fg_sizes, 5, None if ground is None else np.full(5, ground), grounds)


def cut_fractions(p, height: int = 128, width: int = 160) -> dict[str, np.ndarray]:
    """Fraction of each object beyond each border (of its width or height)."""
    return {"left": np.maximum(-p.x, 0) / p.w, "right": np.maximum(p.x + p.w - width, 0) / p.w,
            "top": np.maximum(-p.y, 0) / p.h, "bottom": np.maximum(p.y + p.h - height, 0) / p.h}


@pytest.mark.parametrize("placement, ground", [("uniform", None), ("uniform", 60), ("perspective", None)])
@pytest.mark.parametrize("objects_max", [1, 3])
@pytest.mark.parametrize("fraction", [0.25, 0.9])
def test_truncation_stays_within_the_fraction(placement: str, ground: int | None, objects_max: int,
                                              fraction: float) -> None:
    plan = truncation_plan(placement, objects_max, ground, truncation=fraction)
    p = plan.objects(0, plan.n_samples).objects
    assert len(p) >= 1600
    cut = cut_fractions(p)
    for side, f in cut.items():
        assert (f <= fraction + 1e-12).all(), side
    # every object keeps a part inside, its box rules hold, and some are really cut
    assert (p.x + p.w >= 1).all() and (p.x < 160).all() and (p.y + p.h >= 1).all() and (p.y < 128).all()
    assert (p.h >= 1).all() and (p.h <= 128).all() and (p.w >= 1).all() and (p.w <= 160).all()
    for side in ("left", "right", "top"):
        assert (cut[side] > 0).mean() > 0.02, side
    assert max(cut["left"].max(), cut["right"].max()) > 0.8 * fraction
    if placement == "perspective":  # the standing row sets the size: never below the image
        assert (cut["bottom"] == 0).all() and (p.contact_row >= 49).all()
    else:
        assert (cut["bottom"] > 0).mean() > 0.02
    if ground is not None:
        assert (p.contact_row >= ground).all()


def test_truncation_keeps_the_sizes_and_the_perspective_rule() -> None:
    """Only the position range widens: the same draws give the same sizes as without truncation,
    for uniform; perspective sizes still follow h = k (row + 0.5 - horizon)."""
    base, cut = truncation_plan("uniform", 1), truncation_plan("uniform", 1, truncation=0.5)
    a, b = base.placements(0, base.n_samples), cut.placements(0, cut.n_samples)
    np.testing.assert_array_equal(np.stack([a.bg, a.fg, a.flip, a.h, a.w]), np.stack([b.bg, b.fg, b.flip, b.h, b.w]))
    p = truncation_plan("perspective", 1, truncation=0.5).placements(0, base.n_samples)
    k = p.h / (p.contact_row + 0.5 - 49.0)
    free = (p.h > 2) & (p.h < 128 - 1)
    assert (np.abs(k[free] - 3.0 / 1.6) <= 0.1 * 3.0 / 1.6 + 1.0 / p.h[free] + 1e-9).all()


# Digests of every object field of these plans, computed by the code before --truncation existed.
BEFORE_TRUNCATION = {("uniform", 60): "22f25d1addc0b358", ("uniform", None): "15c6fe619134d312",
                     ("perspective", 60): "e44ce0364ad1aa5f", ("perspective", 49, 3.0): "106af4bf4ebaac41"}


@pytest.mark.parametrize("case", list(BEFORE_TRUNCATION))
def test_zero_truncation_plans_exactly_as_before(case: tuple) -> None:
    import hashlib

    from engine.assets.camera import GroundPlane

    placement, ground, *height = case
    rng = np.random.default_rng(0)
    fg_sizes = np.stack([rng.integers(40, 129, 4), rng.integers(30, 400, 4)], axis=1)
    config = GenerateConfig(height=128, width=160, positions=10, placement=placement, scale_min=0.1, scale_max=1.0,
                            objects_max=3, object_height=height[0] if height else 1.5, truncation=0.0)
    grounds = [GroundPlane(48.0, 160.0, 1.6)] * 5 if placement == "perspective" else None
    plan = SamplePlan(config, fg_sizes, 5, None if ground is None else np.full(5, ground), grounds)
    o = plan.objects(0, plan.n_samples)
    a = fields(o.objects).astype(np.int64)
    assert hashlib.sha256(a.tobytes() + o.offset.tobytes()).hexdigest()[:16] == BEFORE_TRUNCATION[case]


def test_overlap_is_measured_on_boxes_clipped_to_the_image() -> None:
    plan = truncation_plan("uniform", 4, truncation=0.9, max_overlap=0.2)
    o = plan.objects(0, plan.n_samples)
    p = o.objects
    x0, y0 = np.maximum(p.x, 0), np.maximum(p.y, 0)
    x1, y1 = np.minimum(p.x + p.w, 160), np.minimum(p.y + p.h, 128)
    area = (x1 - x0) * (y1 - y0)
    for b in range(len(o)):
        rows = range(o.offset[b], o.offset[b + 1])
        for i in rows:
            for j in rows:
                if i < j:
                    inter = max(min(x1[i], x1[j]) - max(x0[i], x0[j]), 0) * max(min(y1[i], y1[j]) - max(y0[i], y0[j]), 0)
                    assert inter <= 0.2 * min(area[i], area[j]) + 1e-9


def test_truncation_config_round_trip_and_old_configs() -> None:
    assert "truncation" not in GenerateConfig().to_dict()  # stores written before it keep their attributes
    assert "truncation" not in GenerateConfig().identity()
    old = GenerateConfig().to_dict()
    assert GenerateConfig.from_dict(old).truncation == 0.0
    cut = GenerateConfig(truncation=0.35)
    d = cut.to_dict()
    assert d["truncation"] == 0.35 and GenerateConfig.from_dict(d) == cut
    assert cut.identity() != GenerateConfig().identity()  # a different store: resume refuses to mix them
    for bad in (-0.1, 0.95, float("nan")):
        with pytest.raises(ConfigError, match="--truncation"):
            GenerateConfig(truncation=bad)
