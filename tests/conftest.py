"""Shared fixtures. The backbone's forward pass is the only slow step (about 1.7 s at 800 x 800
on a 2-core CPU), so each input's feature map is computed once per session.

Stage 1 runs through the stage graph (:data:`frcnn_core.pipeline.PIPELINE`), as the command line
and the app run it: :class:`Prepared` holds its three results. The stages after the backbone run
through :func:`frcnn_core.pipeline.run_on_features` (the ``run_stages`` fixture).

Test modules take helpers from fixtures (``prepare``, ``run_stages``, ``make_pixels``):
``from conftest import`` would find tests/e2e/conftest.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pytest
import torch

# Saved projects go to a store of this test run, never the developer's (and the servers the
# browser tests start inherit it).
os.environ.setdefault("FRCNN_STORE", f"sqlite:///{tempfile.mkdtemp()}/store.sqlite3")
os.environ.setdefault("FRCNN_OFFLINE", "1")
# No background warm-up of the samples in tests (it would compete with the test for the CPU
# and change the stage counts tests assert on); tests/test_warmup.py runs it on purpose.
os.environ.setdefault("FRCNN_WARMUP", "0")
# The CLI speaks the machine's language (LANG=ko_KR...): the tests read its English.
os.environ["FRCNN_LANG"] = "en"

from frcnn_core.backbone import VGG16, Backbone, BackboneSpec, load_backbone
from frcnn_core.graph import Run, Source
from frcnn_core.ground_truth import ClassIds, GroundTruth
from frcnn_core.image import InputImage, LoadedImage, ResizeParams
from frcnn_core.params import PipelineParams
from frcnn_core.pipeline import PIPELINE, DetectorHeads, UserBoxes, run_on_features

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


@dataclass(frozen=True)
class Prepared:
    """Stage 1's results for one image: the input frame, the boxes in it, their class ids."""

    image: InputImage
    ground_truth: GroundTruth
    classes: ClassIds

    @property
    def gt_boxes(self) -> torch.Tensor:
        """Tensor[G, 4] float32 in the input frame."""
        return self.ground_truth.boxes

    @property
    def labels(self) -> tuple[str, ...]:
        return self.ground_truth.labels

    @property
    def notes(self) -> tuple[str, ...]:
        return self.ground_truth.notes

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.classes.class_names

    @property
    def gt_labels(self) -> torch.Tensor:
        """Tensor[G] int64 class ids in 1..C."""
        return self.classes.gt_labels

    def without_boxes(self) -> Prepared:
        """The same image and class vocabulary with no ground-truth box."""
        return Prepared(
            self.image,
            GroundTruth(torch.zeros(0, 4), ()),
            ClassIds(self.class_names, torch.zeros(0, dtype=torch.int64)),
        )


def prepare(
    pixels: np.ndarray,
    boxes: Sequence[object],
    labels: Sequence[object],
    resize: ResizeParams | None = None,
) -> Prepared:
    """Stage 1 by an eager run of the graph's ``image``, ``ground_truth`` and ``classes``
    stages; the vocabulary is the surviving labels in order of first appearance."""
    sources = {
        "photo": Source.of(LoadedImage(pixels), "photo"),
        "user_boxes": Source.of(UserBoxes(tuple(boxes), tuple(labels)), "boxes"),
    }
    run = Run(PIPELINE, sources, PipelineParams(resize=resize or ResizeParams()))
    gt = run["ground_truth"]
    run.sources["vocabulary"] = Source.of(gt.class_names, gt.class_names)
    return Prepared(run["image"], gt, run["classes"])


def features_of(
    image: InputImage, backbone: Backbone, params: PipelineParams | None = None
) -> torch.Tensor:
    """Stage 2 by the graph's ``backbone`` stage: Tensor[1, 512, Hf, Wf]."""
    sources = {"backbone_net": Source.of(backbone, id(backbone))}
    run = Run(PIPELINE, sources, params or PipelineParams(), given={"image": image})
    return run["backbone"].features


def run_stages(
    prepared: Prepared,
    features: torch.Tensor,
    heads: DetectorHeads,
    params: PipelineParams | None = None,
    spec: BackboneSpec = VGG16,
    grad: bool = False,
) -> Run:
    """The stages after the backbone on ``prepared`` and its ``features`` (an eager run)."""
    return run_on_features(
        prepared.image,
        prepared.ground_truth,
        prepared.classes,
        features,
        heads,
        params or PipelineParams(),
        spec,
        grad,
    )


def small_heads_for(
    num_classes: int, params: PipelineParams | None = None, seed: int = 0
) -> DetectorHeads:
    """Seeded heads sized for ``params`` (default settings) with a narrow Fast R-CNN head."""
    return DetectorHeads.for_params(
        num_classes, params or PipelineParams(), seed=seed, hidden=TEST_HIDDEN
    )


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
    """:func:`synthetic_pixels`, for tests that need an image of their own size."""
    return synthetic_pixels


@pytest.fixture(scope="session", name="prepare")
def prepare_fixture():
    """:func:`prepare`: stage 1 of the graph on pixels, boxes and labels."""
    return prepare


@pytest.fixture(scope="session", name="features_of")
def features_of_fixture():
    """:func:`features_of`: stage 2 of the graph on an input image."""
    return features_of


@pytest.fixture(scope="session", name="run_stages")
def run_stages_fixture():
    """:func:`run_stages`: the stages after the backbone, eagerly."""
    return run_stages


@pytest.fixture(scope="session", name="make_heads")
def make_heads_fixture():
    """:func:`small_heads_for`: seeded heads with a narrow Fast R-CNN head."""
    return small_heads_for


@pytest.fixture(scope="session")
def backbone() -> Backbone:
    """Random VGG16 features (seed 0): the pipeline's numbers must not need ImageNet weights."""
    return load_backbone("random", seed=0)


@pytest.fixture(scope="session")
def zebra_input() -> Prepared:
    """The zebra boxes on a synthetic 2000 x 1333 image, through stage 1 at 800 x 800."""
    pixels = synthetic_pixels(*ZEBRA_ORIGINAL_SIZE)
    return prepare(pixels, ZEBRA_ORIGINAL_BOXES, ["zebra"] * 4, ResizeParams())


@pytest.fixture(scope="session")
def zebra_features(zebra_input: Prepared, backbone: Backbone) -> torch.Tensor:
    """[1, 512, 50, 50]; computed once (the one 800 x 800 forward pass of the suite)."""
    return features_of(zebra_input.image, backbone)


@pytest.fixture(scope="session")
def small_input() -> Prepared:
    """A 320 x 320 input frame (20 x 20 feature map) with two classes."""
    pixels = synthetic_pixels(240, 360, seed=1)
    boxes = [[30, 40, 150, 160], [170, 60, 330, 200], [200, 10, 300, 90]]
    return prepare(pixels, boxes, ["cat", "dog", "cat"], ResizeParams(height=320, width=320))


@pytest.fixture(scope="session")
def small_features(small_input: Prepared, backbone: Backbone) -> torch.Tensor:
    return features_of(small_input.image, backbone)


@pytest.fixture
def small_heads(small_input: Prepared) -> DetectorHeads:
    return small_heads_for(len(small_input.class_names))


def pytest_collection_modifyitems(config, items):
    """Browser tests last: their session-wide server and Chromium (and Playwright's event loop
    in the main thread, which would stop a later ``asyncio.run``) start only after every other
    test has run, and no other test counts their processes as its own children."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)
