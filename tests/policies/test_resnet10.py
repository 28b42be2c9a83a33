"""ResNet-10: size, public tensor names, flax "SAME" padding, weights files."""
import pytest
import torch

from policies.resnet10 import (
    RESNET10_NUM_PARAMETERS,
    ResNet10,
    SameMaxPool2d,
    SamePaddedConv2d,
    load_resnet10_weights,
    same_padding,
    save_resnet10_weights,
)

# The tensor names of the public PyTorch ResNet-10 (Hugging Face helper2424/resnet10, used by LeRobot).
PUBLIC_NAMES = ["embedder.0.weight", "embedder.1.group_norm.weight", "embedder.1.group_norm.bias"]
for _i in range(4):
    _stage = f"encoder.stages.{_i}."
    PUBLIC_NAMES += [_stage + n for n in (
        "conv1.conv.weight", "norm1.group_norm.weight", "norm1.group_norm.bias",
        "conv2.conv.weight", "norm2.group_norm.weight", "norm2.group_norm.bias")]
    if _i > 0:
        PUBLIC_NAMES += [_stage + n for n in (
            "shortcut.0.conv.weight", "shortcut.1.group_norm.weight", "shortcut.1.group_norm.bias")]


def _model(seed: int = 0) -> ResNet10:
    torch.manual_seed(seed)
    return ResNet10().eval()


def test_parameter_count_matches_the_published_model():
    assert sum(p.numel() for p in ResNet10().parameters()) == RESNET10_NUM_PARAMETERS == 4_905_792


def test_tensor_names_are_the_public_ones():
    assert list(ResNet10().state_dict()) == PUBLIC_NAMES


def test_feature_map_shape_for_128x128():
    model = _model()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 128))
    assert out.shape == (2, 512, 4, 4)
    assert ResNet10.output_size(128, 128) == (4, 4)
    assert ResNet10.output_size(64, 64) == (2, 2)


def test_stride2_convolution_pads_like_flax_same():
    # flax "SAME" pads a stride-2 3x3 window on an even input by 0 before and 1 after.
    assert same_padding(32, 3, 2) == (0, 1)
    assert same_padding(33, 3, 2) == (1, 1)
    conv = SamePaddedConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.weight[0, 0, 0, 0] = 1.0  # picks the top-left pixel of each window
    x = torch.arange(1.0, 65.0).view(1, 1, 8, 8)
    out = conv(x)
    assert out.shape == (1, 1, 4, 4)
    # Windows start at pixel 0 (not at padding -1, as torch's padding=1 would).
    assert torch.equal(out[0, 0], x[0, 0, ::2, ::2])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_save_load_round_trip_gives_identical_outputs(tmp_path, suffix):
    source, target = _model(0), _model(1)
    path = tmp_path / f"resnet10{suffix}"
    save_resnet10_weights(source, path)
    load_resnet10_weights(target, path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_load_with_prefix_reads_a_bigger_checkpoint(tmp_path):
    source, target = _model(0), _model(1)
    state = {f"policy.encoder.{k}": v for k, v in source.state_dict().items()}
    state["policy.head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "policy.pt")
    load_resnet10_weights(target, tmp_path / "policy.pt", prefix="policy.encoder.")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_load_accepts_the_older_norm_names(tmp_path):
    source, target = _model(0), _model(1)
    state = {k.replace(".group_norm.", "."): v for k, v in source.state_dict().items()}
    assert "encoder.stages.1.shortcut.1.weight" in state  # the pre-April-2025 export layout
    torch.save(state, tmp_path / "old.pt")
    load_resnet10_weights(target, tmp_path / "old.pt")
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), target.state_dict().values()))


def test_load_names_every_wrong_missing_and_misshaped_key(tmp_path):
    from safetensors.torch import save_file

    state = dict(_model().state_dict())
    state["encoder.stages.0.conv1.weight"] = state.pop("encoder.stages.0.conv1.conv.weight")  # renamed
    del state["embedder.1.group_norm.bias"]                                                   # missing
    state["encoder.stages.3.norm2.group_norm.weight"] = torch.ones(256)                       # wrong shape
    path = tmp_path / "bad.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = _model(1)
    before = [t.clone() for t in model.state_dict().values()]
    with pytest.raises(ValueError) as err:
        load_resnet10_weights(model, path)
    message = str(err.value)
    assert "missing" in message and "encoder.stages.0.conv1.conv.weight" in message
    assert "embedder.1.group_norm.bias" in message
    assert "unexpected" in message and "encoder.stages.0.conv1.weight" in message
    assert "mis-shaped" in message and "encoder.stages.3.norm2.group_norm.weight: file (256,), model (512,)" in message
    # Nothing was copied: a bad file leaves the model as it was.
    assert all(torch.equal(a, b) for a, b in zip(before, model.state_dict().values()))


def test_load_rejects_unknown_file_types_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_resnet10_weights(ResNet10(), tmp_path / "absent.safetensors")
    (tmp_path / "w.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown weights file type"):
        load_resnet10_weights(ResNet10(), tmp_path / "w.npz")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="does not hold a state dict"):
        load_resnet10_weights(ResNet10(), tmp_path / "list.pt")


def test_same_max_pool_ignores_padding():
    x = -torch.ones(1, 1, 4, 4)  # all negative: zero padding would win the max, -inf padding does not
    assert torch.equal(SameMaxPool2d(3, 2)(x), -torch.ones(1, 1, 2, 2))
