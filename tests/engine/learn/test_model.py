"""The coarse/fine network's shapes (the paper's Figure 1 table), rates and init."""

from __future__ import annotations

import pytest
import torch

from engine.errors import ConfigError
from engine.learn.model import EigenDepth, ModelConfig, load_alexnet_convs, param_groups


@pytest.mark.parametrize(
    "height, width, coarse1, coarse2_4, output",
    [
        (228, 304, (27, 37), (13, 18), (55, 74)),  # the paper's NYU input: 37x27, 18x13, output 74x55 (W x H)
        (224, 224, (27, 27), (13, 13), (54, 54)),
        (112, 112, (13, 13), (6, 6), (26, 26)),
    ],
)
def test_sizes_match_the_papers_table(height, width, coarse1, coarse2_4, output) -> None:
    config = ModelConfig(height=height, width=width, hidden=64)
    model = EigenDepth(config).eval()
    x = torch.zeros(2, 3, height, width)
    features = model.coarse.features(x)
    assert tuple(features[0].shape[2:]) == coarse1
    assert all(tuple(f.shape[2:]) == coarse2_4 for f in features[1:4])
    assert config.output_size == output
    assert tuple(model(x, "coarse").shape) == (2, 1, *output)
    assert tuple(model(x, "fine").shape) == (2, 1, *output)


def test_fine_sees_the_coarse_map_as_its_64th_channel() -> None:
    model = EigenDepth(ModelConfig(height=64, width=64, hidden=32)).eval()
    assert model.fine.conv1.out_channels == 63 and model.fine.conv2.in_channels == 64
    x = torch.randn(1, 3, 64, 64)
    coarse = model(x, "coarse")
    changed = model.fine(x, coarse + 1.0)
    assert not torch.allclose(model.fine(x, coarse), changed)


def test_the_papers_learning_rates() -> None:
    model = EigenDepth(ModelConfig(height=64, width=64, hidden=32))
    coarse = {g["name"]: g["lr"] for g in param_groups(model, "coarse")}
    fine = {g["name"]: g["lr"] for g in param_groups(model, "fine")}
    assert coarse == {"coarse convs": 0.001, "coarse fulls": 0.1}
    assert fine == {"fine 1, 3": 0.001, "fine 2": 0.01}
    n_coarse = sum(p.numel() for g in param_groups(model, "coarse") for p in g["params"])
    assert n_coarse == sum(p.numel() for p in model.coarse.parameters())


def test_init_from_torchvision_alexnet_weights() -> None:
    torchvision = pytest.importorskip("torchvision")
    state = torchvision.models.alexnet(weights=None).state_dict()  # random, but torchvision's layout
    model = EigenDepth(ModelConfig(height=64, width=64, hidden=32, coarse_channels="torchvision"))
    assert load_alexnet_convs(model, state, "alexnet.pth") == 5
    assert torch.equal(model.coarse.conv1.weight, state["features.0.weight"])
    assert torch.equal(model.coarse.conv5.bias, state["features.10.bias"])
    paper = EigenDepth(ModelConfig(height=64, width=64, hidden=32))
    with pytest.raises(ConfigError, match="features.0.weight is \\(64, 3, 11, 11\\).*--coarse-channels torchvision"):
        load_alexnet_convs(paper, state, "alexnet.pth")
    with pytest.raises(ConfigError, match="no 'features.0.weight'"):
        load_alexnet_convs(model, {"something": torch.zeros(1)}, "x.pth")


def test_bad_model_options() -> None:
    with pytest.raises(ConfigError, match="coarse channels"):
        ModelConfig(coarse_channels="vgg")
    with pytest.raises(ConfigError, match="at least 64x64"):
        ModelConfig(height=32, width=32)


def test_batch_lr_factor_against_hand_computed_values() -> None:
    from engine.learn.model import batch_lr_factor

    assert batch_lr_factor(32, "linear") == 1.0 and batch_lr_factor(32, "sqrt") == 1.0
    assert batch_lr_factor(256, "linear") == 8.0
    assert batch_lr_factor(128, "sqrt") == 2.0
    assert batch_lr_factor(256, "sqrt") == pytest.approx(2.8284271247461903, rel=1e-15)
    assert batch_lr_factor(256, "none") == 1.0
    with pytest.raises(ConfigError, match="--lr-scaling"):
        batch_lr_factor(32, "cubic")
    with pytest.raises(ConfigError, match="--batch"):
        batch_lr_factor(0, "linear")
