"""Pretrained backbones: timm models and torchvision ResNets load their weights bit-exactly from a
local file through the real loading path; wrong files, names and offline hubs are one-line errors.

Nothing is downloaded: the tests create tiny models (a 2-block ViT on 32×32 inputs, timm's
test_resnet) and save them in timm's three file formats.
"""

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn

from ltlight.models import NormedLinear, resnet50, timm_backbone
from ltlight.models.timm_backbone import file_sha256

TINY_VIT = {"img_size": 32, "depth": 2}


def tiny_vit(num_classes: int = 5) -> nn.Module:
    return timm.create_model("vit_tiny_patch16_224", num_classes=num_classes, **TINY_VIT)


def save_weights(model: nn.Module, path) -> str:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if str(path).endswith(".safetensors"):
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return str(path)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".bin"])
def test_vit_weights_load_bit_exactly_from_a_local_file(tmp_path, suffix):
    reference = tiny_vit()
    path = save_weights(reference, tmp_path / f"vit{suffix}")
    model = timm_backbone("vit_tiny_patch16_224", 5, checkpoint_path=path, **TINY_VIT)
    # the file's 1000-class-config head is dropped as timm does; every other tensor is the file's
    own = model.state_dict()
    for name, tensor in reference.state_dict().items():
        if not name.startswith("head."):
            assert torch.equal(own[name], tensor), name
    assert model.pretrained_cfg["file"] == path  # timm's own path, its config kept
    assert model.ltlight_base_weights.sha256 == file_sha256(path)
    assert model.ltlight_base_weights.model_name == "vit_tiny_patch16_224"


def test_resnet_weights_and_timm_interface_with_a_cosine_head(tmp_path):
    reference = timm.create_model("test_resnet", num_classes=4)
    path = save_weights(reference, tmp_path / "resnet.safetensors")
    model = timm_backbone("test_resnet", 4, checkpoint_path=path, head="cosine", head_scale=25.0)
    assert isinstance(model.get_classifier(), NormedLinear) and model.fc.scale == 25.0
    for name, tensor in reference.state_dict().items():
        if not name.startswith("fc."):
            assert torch.equal(model.state_dict()[name], tensor), name
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.forward_head(model.forward_features(x), pre_logits=True)
    cosines = nn.functional.normalize(features, dim=1) @ nn.functional.normalize(
        model.fc.weight, dim=0
    )
    torch.testing.assert_close(model(x), 25.0 * cosines)
    assert model.pretrained_cfg["mean"] == reference.pretrained_cfg["mean"]
    model.reset_classifier(7)
    assert model(x).shape == (2, 7)


def test_keyword_arguments_reach_timm():
    model = timm_backbone("vit_tiny_patch16_224", 3, drop_path_rate=0.1, **TINY_VIT)
    assert len(model.blocks) == 2 and model.patch_embed.img_size == (32, 32)
    assert model.blocks[1].drop_path1.drop_prob == pytest.approx(0.1)


def test_unknown_model_name_lists_the_closest():
    with pytest.raises(ValueError, match=r"no model 'vit_tiny_patch16_2244'.*vit_tiny_patch16_224"):
        timm_backbone("vit_tiny_patch16_2244", 3)


def test_missing_truncated_and_other_architecture_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no weights file at .*absent\.safetensors"):
        timm_backbone("test_resnet", 3, checkpoint_path=str(tmp_path / "absent.safetensors"))
    path = save_weights(tiny_vit(), tmp_path / "vit.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(Path(path).read_bytes()[:4000])
    with pytest.raises(ValueError, match=r"truncated\.safetensors is truncated or not a weights"):
        timm_backbone("vit_tiny_patch16_224", 5, checkpoint_path=str(truncated), **TINY_VIT)
    resnet = save_weights(timm.create_model("test_resnet", num_classes=5), tmp_path / "r.pth")
    with pytest.raises(ValueError, match=r"does not fit VisionTransformer.*missing.*unexpected"):
        timm_backbone("vit_tiny_patch16_224", 5, checkpoint_path=resnet, **TINY_VIT)
    wider = timm.create_model("vit_tiny_patch16_224", depth=2, img_size=32, mlp_ratio=2.0)
    wider_path = save_weights(wider, tmp_path / "wider.safetensors")
    with pytest.raises(ValueError, match=r"another shape.*blocks.0.mlp.fc1.weight \(384, 192\)"):
        timm_backbone("vit_tiny_patch16_224", 5, checkpoint_path=wider_path, **TINY_VIT)


def test_offline_hub_without_cache_is_one_line_naming_checkpoint_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(RuntimeError) as caught:
        timm_backbone("vit_tiny_patch16_224", 3, pretrained=True, **TINY_VIT)
    message = str(caught.value)
    assert "\n" not in message and "'vit_tiny_patch16_224'" in message
    assert "checkpoint_path=" in message and "offline" in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_head_arguments_are_checked():
    with pytest.raises(ValueError, match="head must be 'linear' or 'cosine', got 'mlp'"):
        timm_backbone("test_resnet", 3, head="mlp")
    with pytest.raises(ValueError, match="head_scale applies to head='cosine' only"):
        timm_backbone("test_resnet", 3, head_scale=25.0)


@pytest.fixture(scope="module")
def resnet50_reference() -> nn.Module:
    torch.manual_seed(0)
    return resnet50(num_classes=1000)


def test_torchvision_weights_from_the_hub_cache_and_from_a_local_file(
    resnet50_reference, tmp_path, monkeypatch
):
    from torchvision.models import ResNet50_Weights

    cached = tmp_path / "hub" / "checkpoints" / ResNet50_Weights.IMAGENET1K_V2.url.split("/")[-1]
    cached.parent.mkdir(parents=True)
    torch.save(resnet50_reference.state_dict(), cached)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    from_cache = resnet50(num_classes=1000, weights="IMAGENET1K_V2")
    for name, tensor in resnet50_reference.state_dict().items():
        assert torch.equal(from_cache.state_dict()[name], tensor), name
    # a new head for another class count; the rest is the file's
    from_file = resnet50(num_classes=10, normed=True, weights=str(cached))
    assert torch.equal(from_file.layer4[2].conv3.weight, resnet50_reference.layer4[2].conv3.weight)
    assert isinstance(from_file.fc, NormedLinear) and from_file.fc.out_features == 10


def test_torchvision_weights_not_cached_and_unreachable_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # refused at once: no network
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match=r"IMAGENET1K_V2 is not in torch hub's cache .*\.pth>"):
        resnet50(weights="IMAGENET1K_V2")
    with pytest.raises(ValueError, match="weights must be one of IMAGENET1K_V1, IMAGENET1K_V2"):
        resnet50(weights="IMAGENET21K")
