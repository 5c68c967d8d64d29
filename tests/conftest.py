"""Shared fixtures. The backbone's forward pass is the only slow step (about 1.7 s at 800 x 800
on a 2-core CPU), so each input's feature map is computed once per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frcnn_core.backbone import Backbone, BackboneParams, load_backbone
from frcnn_core.image import ResizeParams
from frcnn_core.pipeline import DetectorHeads, PreparedInput, compute_features, prepare_input

# SPEC section 3: the tutorial's zebra boxes in the 800 x 800 input frame ...
ZEBRA_BOXES = [
    [89, 469, 249, 644],
    [238, 417, 415, 630],
    [435, 419, 580, 634],
    [617, 462, 765, 637],
]
# ... and as given on the 1333 x 2000 (H x W) original.
ZEBRA_ORIGINAL_BOXES = [
    [223, 782, 623, 1074],
    [597, 695, 1038, 1050],
    [1088, 699, 1452, 1057],
    [1544, 771, 1914, 1063],
]
ZEBRA_ORIGINAL_SIZE = (1333, 2000)  # (H, W)
CPU = torch.device("cpu")
# The Fast R-CNN head at hidden=4096 holds 400 MB of weights; its width does not matter here.
TEST_HIDDEN = 256


@pytest.fixture
def zebra_boxes() -> torch.Tensor:
    return torch.tensor(ZEBRA_BOXES, dtype=torch.float32)


def synthetic_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth, seeded uint8 RGB image: gradients plus noise, so features are not constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack(
        (255 * xx / max(width - 1, 1), 255 * yy / max(height - 1, 1), 128 + 0 * xx), axis=2
    )
    noisy = base + rng.normal(0, 20, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def make_pixels():
    """:func:`synthetic_pixels`, for tests that need an image of their own size. (Test modules
    take helpers from fixtures: ``from conftest import`` would find tests/e2e/conftest.py.)"""
    return synthetic_pixels


@pytest.fixture(scope="session")
def backbone() -> Backbone:
    """Random VGG16 features (seed 0): the pipeline's numbers must not need ImageNet weights."""
    return load_backbone("random", seed=0)


@pytest.fixture(scope="session")
def zebra_input() -> PreparedInput:
    """The zebra boxes on a synthetic 2000 x 1333 image, through stage 1 at 800 x 800."""
    pixels = synthetic_pixels(*ZEBRA_ORIGINAL_SIZE)
    return prepare_input(pixels, ZEBRA_ORIGINAL_BOXES, ["zebra"] * 4, ResizeParams())


@pytest.fixture(scope="session")
def zebra_features(zebra_input: PreparedInput, backbone: Backbone) -> torch.Tensor:
    """[1, 512, 50, 50]; computed once (the one 800 x 800 forward pass of the suite)."""
    features, _ = compute_features(zebra_input.image, backbone, BackboneParams(), CPU)
    return features


@pytest.fixture(scope="session")
def small_input() -> PreparedInput:
    """A 320 x 320 input frame (20 x 20 feature map) with two classes."""
    pixels = synthetic_pixels(240, 360, seed=1)
    boxes = [[30, 40, 150, 160], [170, 60, 330, 200], [200, 10, 300, 90]]
    return prepare_input(pixels, boxes, ["cat", "dog", "cat"], ResizeParams(height=320, width=320))


@pytest.fixture(scope="session")
def small_features(small_input: PreparedInput, backbone: Backbone) -> torch.Tensor:
    features, _ = compute_features(small_input.image, backbone, BackboneParams(), CPU)
    return features


@pytest.fixture
def small_heads(small_input: PreparedInput) -> DetectorHeads:
    return DetectorHeads(len(small_input.class_names), seed=0, hidden=TEST_HIDDEN)
