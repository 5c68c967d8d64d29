"""Stage 2: the VGG16 backbone, where its weights come from, and the input normalisation (B13).

Nothing here downloads: every ``load_backbone`` call either names a local file, asks for random
weights, or passes ``allow_download=False`` / sets ``FRCNN_OFFLINE``. Building a VGG16 costs about
a second on a 2-core CPU, so these tests build as few as they can."""

from __future__ import annotations

import dataclasses
import shutil

import pytest
import torch

from frcnn_core.backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OFFLINE_ENV,
    VGG16,
    WEIGHTS_ENV,
    BackboneParams,
    BackboneSpec,
    WeightsError,
    _random_features,
    image_to_tensor,
    imagenet_cache_path,
    load_backbone,
    load_weights_file,
    run_backbone,
)


@pytest.fixture(scope="module")
def saved_module():
    """A features[:30] module with seed-3 random weights, different from the session's seed 0."""
    return _random_features(seed=3).eval()


@pytest.fixture(scope="module")
def features_file(tmp_path_factory, saved_module):
    """A state_dict of the features only: keys "0.weight", "0.bias", ..."""
    path = tmp_path_factory.mktemp("weights") / "vgg16_features.pth"
    torch.save(saved_module.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def whole_vgg16_file(tmp_path_factory, saved_module):
    """A state_dict shaped like a whole torchvision VGG16: "features.0.weight", ...,
    "classifier.*" (a small stand-in here; the loader must ignore it)."""
    state = {f"features.{k}": v for k, v in saved_module.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(3, 3)
    path = tmp_path_factory.mktemp("weights") / "vgg16-whole.pth"
    torch.save(state, path)
    return path


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No weights env var, and an empty torch hub cache: no ImageNet weights to be found."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_features_only_file_loads(features_file, saved_module, isolated_env):
    bb = load_backbone(str(features_file))
    assert bb.weights == str(features_file)
    assert str(features_file) in bb.note
    assert_same_weights(bb.features, saved_module)
    assert not bb.features.training
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(bb.features(x), saved_module(x))


def test_whole_vgg16_file_loads(whole_vgg16_file, saved_module):
    module = load_weights_file(whole_vgg16_file)
    assert_same_weights(module, saved_module)
    assert len(module) == 30  # features[:30]: conv5_3 + ReLU, no fifth max-pool


def test_corrupt_file_raises(tmp_path, features_file):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00\x01not a pickle at all" * 100)
    with pytest.raises(WeightsError):
        load_backbone(str(garbage))
    # A download cut half-way: the first 1 MB of a real file.
    cut = tmp_path / "cut.pth"
    cut.write_bytes(features_file.read_bytes()[: 1 << 20])
    with pytest.raises(WeightsError):
        load_weights_file(cut)


def test_wrong_shape_file_raises(tmp_path, saved_module):
    state = dict(saved_module.state_dict())
    state["0.weight"] = torch.zeros(64, 3, 5, 5)  # VGG16 needs (64, 3, 3, 3)
    path = tmp_path / "wrong_shape.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"0\.weight"):
        load_weights_file(path)


def test_missing_key_and_non_state_dict_raise(tmp_path, saved_module):
    state = dict(saved_module.state_dict())
    del state["28.bias"]
    missing = tmp_path / "missing.pth"
    torch.save(state, missing)
    with pytest.raises(WeightsError, match=r"28\.bias"):
        load_weights_file(missing)
    tensor_file = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(WeightsError):
        load_weights_file(tensor_file)
    with pytest.raises(WeightsError, match="does not exist"):
        load_weights_file(tmp_path / "nothere.pth")


def test_auto_without_weights_falls_back_to_random(isolated_env, backbone):
    bb = load_backbone("auto", allow_download=False)
    assert bb.weights == "random"
    assert "random" in bb.note and WEIGHTS_ENV in bb.note
    assert str(isolated_env) in str(imagenet_cache_path())  # TORCH_HOME was honoured
    # Seeded: the same seed 0 as the session's load_backbone("random", seed=0).
    assert_same_weights(bb.features, backbone.features)


def test_offline_env_disables_download(isolated_env, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    bb = load_backbone(None, seed=3)
    assert bb.weights == "random"
    assert "download disabled" in bb.note


def test_env_var_names_the_weights_file(isolated_env, monkeypatch, features_file, saved_module):
    monkeypatch.setenv(WEIGHTS_ENV, str(features_file))
    bb = load_backbone(allow_download=False)
    assert bb.weights == str(features_file)
    assert_same_weights(bb.features, saved_module)


def test_imagenet_cache_is_used(isolated_env, whole_vgg16_file, saved_module):
    cached = imagenet_cache_path()
    cached.parent.mkdir(parents=True)
    shutil.copy(whole_vgg16_file, cached)
    bb = load_backbone("imagenet", allow_download=False)
    assert bb.weights == "imagenet"
    assert_same_weights(bb.features, saved_module)


def test_half_written_imagenet_cache_falls_back_to_random(isolated_env):
    cached = imagenet_cache_path()
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"partial download")
    bb = load_backbone("auto", allow_download=False)
    assert bb.weights == "random"
    assert not cached.exists()  # removed, so the next run may download it again


def test_random_weights_are_seeded(backbone, saved_module):
    # (test_auto_without_weights_falls_back_to_random shows two seed-0 builds are equal.)
    assert backbone.weights == "random"
    w0 = backbone.features.state_dict()["0.weight"]
    assert not torch.equal(w0, saved_module.state_dict()["0.weight"])


# ---- input normalisation and the forward pass ---------------------------------------------


def test_image_to_tensor_normalisation_b13():
    image = torch.tensor([[[255, 0, 128]]], dtype=torch.uint8)  # one pixel, H = W = 1
    before = image.clone()
    x = image_to_tensor(image, BackboneParams())
    # (v / 255 - mean) / std: R (1 - 0.485) / 0.229 = 2.24891, G (0 - 0.456) / 0.224 = -2.03571,
    # B (128/255 - 0.406) / 0.225 = 0.42649.
    assert x.shape == (1, 3, 1, 1) and x.dtype == torch.float32
    assert x.flatten().tolist() == pytest.approx([2.24891, -2.03571, 0.42649], abs=1e-5)
    expected = [
        (v / 255 - m) / s
        for v, m, s in zip((255, 0, 128), IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    assert x.flatten().tolist() == pytest.approx(expected, abs=1e-6)
    # B13 (no normalisation): just v / 255.
    raw = image_to_tensor(image, BackboneParams(normalize=False))
    assert raw.flatten().tolist() == pytest.approx([1.0, 0.0, 128 / 255], abs=1e-7)
    assert torch.equal(image, before)


def test_run_backbone_shapes_and_b13(backbone):
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (64, 96, 3), dtype=torch.uint8, generator=g)
    before = {k: v.clone() for k, v in backbone.features.state_dict().items()}
    out = run_backbone(image, backbone.features)
    # 64 x 96 / 16 = 4 x 6.
    assert out.features.shape == (1, 512, 4, 6)
    assert out.features.dtype == torch.float32 and out.features.is_contiguous()
    assert not out.features.is_inference() and out.seconds > 0
    out.features.requires_grad_(True)  # later stages may train on it
    plain = run_backbone(image, backbone.features, BackboneParams(), channels_last=False)
    torch.testing.assert_close(plain.features, out.features.detach(), rtol=1e-4, atol=1e-5)
    unnormalised = run_backbone(image, backbone.features, BackboneParams(normalize=False))
    assert (unnormalised.features - out.features.detach()).abs().max() > 1e-3
    assert_same_weights_dict(backbone.features.state_dict(), before)


def assert_same_weights_dict(a, b):
    assert all(torch.equal(a[k], b[k]) for k in b)


# ---- the backbone's spec: every size after it follows from it ----------------------------


def test_vgg16_spec_stride_channels_and_feature_size():
    # Four 2 x 2 max-pools with floor: stride 2^4 = 16, conv5_3's 512 channels.
    assert (VGG16.stride, VGG16.channels, VGG16.pools) == (16, 512, 4)
    assert VGG16.feature_size((800, 800)) == (50, 50)
    # Each pool floors: 810 -> 405 -> 202 -> 101 -> 50, not round(810 / 16) = 51.
    assert VGG16.feature_size((810, 810)) == (50, 50)
    assert VGG16.feature_size((480, 640)) == (30, 40)
    assert VGG16.feature_size((15, 33)) == (0, 2)
    stride8 = BackboneSpec("to conv4_3", channels=512, pools=3)
    assert stride8.stride == 8 and stride8.feature_size((320, 320)) == (40, 40)
    with pytest.raises(dataclasses.FrozenInstanceError):
        VGG16.pools = 3  # type: ignore[misc]


@pytest.mark.parametrize(("height", "width"), [(64, 96), (70, 100), (47, 33)])
def test_spec_feature_size_is_the_networks(backbone, height, width):
    # The spec's arithmetic against a real forward: odd sizes floor at every pool.
    assert len(backbone.features) == 30 and backbone.spec == VGG16
    pools = sum(isinstance(m, torch.nn.MaxPool2d) for m in backbone.features)
    convs = [m for m in backbone.features if isinstance(m, torch.nn.Conv2d)]
    assert pools == VGG16.pools and convs[-1].out_channels == VGG16.channels
    image = torch.zeros(height, width, 3, dtype=torch.uint8)
    out = run_backbone(image, backbone.features).features
    assert out.shape == (1, VGG16.channels, *VGG16.feature_size((height, width)))
