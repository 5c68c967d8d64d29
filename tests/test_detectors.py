"""The production detector's models and the order in which its weights are found.

Nothing here needs the network: weights are random, saved in the real formats (a torchvision
state_dict, a ``CHECKPOINT_FORMAT`` checkpoint, the COCO file name in a fake torch hub cache) and
loaded back; the download path is exercised against an HTTP server on 127.0.0.1. MobileNet is the
model wherever the model does not matter (it builds in 0.2 s; a ResNet-50 FPN in 0.7 s).
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import pytest
import torch
from torchvision.models import detection as tv_detection
from torchvision.ops.misc import FrozenBatchNorm2d

from frcnn_core import detectors
from frcnn_core.detectors import (
    CHECKPOINT_FORMAT,
    COCO_CLASS_NAMES,
    DEFAULT_MODEL,
    MODELS,
    OFFLINE_ENV,
    WEIGHTS_ENV,
    DetectorWeightsError,
    DeviceError,
    build_model,
    checkpoint_info,
    coco_cache_path,
    fetch_coco_weights,
    load_detector,
    resolve_device,
    save_checkpoint,
)

MOBILE = "fasterrcnn_mobilenet_v3_large_fpn"


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture(scope="module")
def mobile_model() -> torch.nn.Module:
    """MobileNet with seed-7 random weights: different from anything a loader builds itself."""
    torch.manual_seed(7)
    return build_model(MOBILE, 91)


@pytest.fixture(scope="module")
def mobile_state_file(tmp_path_factory, mobile_model) -> Path:
    path = tmp_path_factory.mktemp("weights") / "mobile_state_dict.pth"
    torch.save(mobile_model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def mobile_checkpoint(tmp_path_factory, mobile_model) -> Path:
    """A fine-tuned-style checkpoint: 3 classes, settings, extra metadata."""
    torch.manual_seed(8)
    model = build_model(MOBILE, 3)
    path = tmp_path_factory.mktemp("weights") / "finetuned.pt"
    save_checkpoint(
        path, model, MOBILE, ["__background__", "zebra", "car"], {"lr": 0.005}, epoch=4, map=0.25
    )
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No weights env var, not offline, an empty torch hub cache under tmp_path."""
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.delenv(OFFLINE_ENV, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path


def test_model_names_and_coco_classes():
    assert DEFAULT_MODEL == MODELS[0] == "fasterrcnn_resnet50_fpn_v2"
    assert len(COCO_CLASS_NAMES) == 91
    assert COCO_CLASS_NAMES[0] == "__background__"
    assert COCO_CLASS_NAMES[1] == "person" and COCO_CLASS_NAMES[24] == "zebra"
    assert COCO_CLASS_NAMES[12] == "N/A" and COCO_CLASS_NAMES.count("N/A") == 10


def test_build_model_is_shaped_like_torchvisions_trained_model(mobile_model):
    # The trained builder puts FrozenBatchNorm2d in the backbone body and freezes the first
    # stages; build_model gives the same, so torchvision's COCO state_dict fits it unchanged.
    body = mobile_model.backbone.body
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    assert any(isinstance(m, FrozenBatchNorm2d) for m in body.modules())
    assert not any(k.endswith("num_batches_tracked") for k in body.state_dict())
    assert not mobile_model.training
    frozen = [n for n, p in body.named_parameters() if not p.requires_grad]
    trained = [n for n, p in body.named_parameters() if p.requires_grad]
    assert frozen and trained and frozen[0].startswith("0.")  # the first stages are frozen
    assert mobile_model.roi_heads.box_predictor.cls_score.out_features == 91


def test_build_model_resnet_freezes_conv1_and_layer1():
    model = build_model("fasterrcnn_resnet50_fpn", 5, min_size=64, max_size=96)
    grads = {n: p.requires_grad for n, p in model.backbone.body.named_parameters()}
    assert not grads["conv1.weight"] and not grads["layer1.0.conv1.weight"]
    assert grads["layer2.0.conv1.weight"] and grads["layer4.2.conv3.weight"]
    assert model.transform.min_size == (64,) and model.transform.max_size == 96
    assert model.roi_heads.box_predictor.cls_score.out_features == 5


def test_roi_pooler_scales_are_fixed_at_build_time():
    # torchvision infers MultiScaleRoIAlign's scales from the first image it sees and keeps
    # them: a thin first image (10 x 2000 -> 1 x 333 here) poisons a shared model for good.
    plain = tv_detection.fasterrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, min_size=200, max_size=333
    ).eval()
    thin = torch.rand(3, 10, 2000)
    with torch.inference_mode():
        plain([thin])
    assert plain.roi_heads.box_roi_pool.scales == [8.0, 4.0, 2.0, 1.0]
    model = build_model("fasterrcnn_resnet50_fpn", 91, min_size=200, max_size=333)
    pooler = model.roi_heads.box_roi_pool
    assert pooler.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    assert (pooler.map_levels.k_min, pooler.map_levels.k_max) == (2, 5)
    with torch.inference_mode():
        model([thin])
    assert pooler.scales == [1 / 4, 1 / 8, 1 / 16, 1 / 32]  # unchanged by the first image
    mobile = build_model(MOBILE, 91).roi_heads.box_roi_pool
    assert mobile.scales == [1 / 32, 1 / 32] and mobile.map_levels.k_min == 5


def test_unknown_model_name_is_one_line():
    with pytest.raises(DetectorWeightsError, match="unknown model 'yolo'") as info:
        build_model("yolo", 91)
    assert "\n" not in str(info.value)
    with pytest.raises(DetectorWeightsError, match="unknown model"):
        load_detector("yolo", "random")


def test_state_dict_file_loads_exactly(isolated, mobile_model, mobile_state_file):
    det = load_detector(MOBILE, str(mobile_state_file), device="cpu")
    assert det.weights == str(mobile_state_file)
    assert det.name == MOBILE and det.class_names == COCO_CLASS_NAMES and det.meta == {}
    assert same_weights(det.model, mobile_model)
    # The model is recognised from its keys when no name is given.
    assert load_detector(None, str(mobile_state_file)).name == MOBILE


def test_checkpoint_round_trip_gives_its_model_and_class_names(isolated, mobile_checkpoint):
    det = load_detector(None, str(mobile_checkpoint))
    assert det.name == MOBILE
    assert det.class_names == ("__background__", "zebra", "car")
    assert det.meta["format"] == CHECKPOINT_FORMAT
    assert det.meta["settings"] == {"lr": 0.005} and det.meta["epoch"] == 4
    assert "state_dict" not in det.meta
    assert det.model.roi_heads.box_predictor.cls_score.out_features == 3
    saved = torch.load(mobile_checkpoint, weights_only=True)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in det.model.state_dict().items())


def test_checkpoint_info_reads_metadata_only(mobile_checkpoint, mobile_state_file):
    info = checkpoint_info(mobile_checkpoint)
    assert info["format"] == CHECKPOINT_FORMAT and info["model"] == MOBILE
    assert info["num_classes"] == 3 and info["epoch"] == 4 and info["map"] == 0.25
    assert info["class_names"] == ["__background__", "zebra", "car"]
    assert info["bytes"] == mobile_checkpoint.stat().st_size
    assert "state_dict" not in info
    plain = checkpoint_info(mobile_state_file)
    assert plain["format"] == "state_dict" and plain["model"] == MOBILE
    assert plain["num_classes"] == 91


def test_save_checkpoint_is_atomic_and_checks_class_names(tmp_path, mobile_model):
    path = tmp_path / "sub" / "ckpt.pt"
    save_checkpoint(path, mobile_model, MOBILE, COCO_CLASS_NAMES)
    assert path.is_file() and os.listdir(path.parent) == ["ckpt.pt"]  # no temp file left
    before = path.read_bytes()
    with pytest.raises(DetectorWeightsError, match="3 class names for a model with 91"):
        save_checkpoint(path, mobile_model, MOBILE, ["a", "b", "c"])
    assert path.read_bytes() == before and os.listdir(path.parent) == ["ckpt.pt"]


def test_model_kwargs_stored_in_checkpoint_are_applied(tmp_path, mobile_model):
    path = tmp_path / "small.pt"
    save_checkpoint(path, mobile_model, MOBILE, COCO_CLASS_NAMES, model_kwargs={"min_size": 256})
    assert load_detector(None, str(path)).model.transform.min_size == (256,)
    # Explicit settings win over the checkpoint's.
    assert load_detector(None, str(path), min_size=128).model.transform.min_size == (128,)


def test_checkpoint_with_unusable_model_kwargs_is_one_line(tmp_path, mobile_model):
    path = tmp_path / "odd.pt"
    save_checkpoint(path, mobile_model, MOBILE, COCO_CLASS_NAMES, model_kwargs={"num_classes": 5})
    with pytest.raises(DetectorWeightsError, match=r"odd\.pt: its model_kwargs \['num_classes'\]"):
        load_detector(None, str(path))


def test_file_for_another_model_is_refused(mobile_state_file, mobile_checkpoint):
    with pytest.raises(DetectorWeightsError) as info:
        load_detector("fasterrcnn_resnet50_fpn", str(mobile_state_file))
    message = str(info.value)
    assert message == (
        f"{mobile_state_file.name} is a state_dict of {MOBILE}, not fasterrcnn_resnet50_fpn; "
        f"use --model {MOBILE}"
    )
    with pytest.raises(DetectorWeightsError, match=f"checkpoint for {MOBILE}, not"):
        load_detector("fasterrcnn_resnet50_fpn_v2", str(mobile_checkpoint))


def test_state_dict_with_a_wrong_shape_is_one_line(tmp_path, mobile_model):
    state = dict(mobile_model.state_dict())
    state["rpn.head.cls_logits.weight"] = torch.zeros(5, 256, 1, 1)
    path = tmp_path / "bad_shape.pth"
    torch.save(state, path)
    with pytest.raises(DetectorWeightsError) as info:
        load_detector(MOBILE, str(path))
    assert "rpn.head.cls_logits.weight has shape (5, 256, 1, 1)" in str(info.value)
    assert "\n" not in str(info.value)


class Opaque:
    """A pickled class: weights_only loading must refuse it."""


def _bad_files(tmp: Path, good: Path) -> dict[str, Path]:
    data = good.read_bytes()
    files = {
        "random": os.urandom(3_000_000),
        "truncated": data[: len(data) // 2],
        "zip_header_then_junk": b"PK\x03\x04" + os.urandom(50_000),
        "empty": b"",
    }
    out = {}
    for stem, payload in files.items():
        out[stem] = tmp / f"{stem}.pth"
        out[stem].write_bytes(payload)
    out["python_object"] = tmp / "object.pth"
    torch.save({"model": Opaque()}, out["python_object"])
    out["a_tensor"] = tmp / "tensor.pth"
    torch.save(torch.zeros(3), out["a_tensor"])
    out["missing"] = tmp / "missing.pth"
    out["directory"] = tmp
    return out


EXPECTED_BAD = {
    "random": "is not a PyTorch weights file",
    "truncated": "is not a PyTorch weights file",
    "zip_header_then_junk": "is not a PyTorch weights file",
    "empty": "is empty (0 bytes)",
    "python_object": "holds Python objects besides tensors",
    "a_tensor": "does not hold a state_dict",
    "missing": "weights file not found",
    "directory": "is not a file",
}


def test_unusable_files_give_one_short_line(tmp_path, mobile_state_file):
    for stem, path in _bad_files(tmp_path, mobile_state_file).items():
        for call in (lambda p: load_detector(MOBILE, str(p)), checkpoint_info):
            with pytest.raises(DetectorWeightsError) as info:
                call(path)
            message = str(info.value)
            assert EXPECTED_BAD[stem] in message, (stem, message)
            assert "\n" not in message and len(message) < 200, (stem, message)
            assert "weights_only" not in message or stem == "python_object"


@pytest.mark.slow
def test_random_200_mb_file_is_refused_quickly(tmp_path):
    path = tmp_path / "big.pth"
    with open(path, "wb") as fh:
        for _ in range(25):
            fh.write(os.urandom(8 * 2**20))
    started = time.perf_counter()
    with pytest.raises(DetectorWeightsError, match="is not a PyTorch weights file"):
        load_detector(MOBILE, str(path))
    assert time.perf_counter() - started < 30  # a bound against reading it all, not a speed test


# -- the weights order ---------------------------------------------------------------------------


def test_env_var_file_comes_first(isolated, monkeypatch, mobile_model, mobile_state_file):
    # Even with a (different) COCO file in the cache, the env var's file wins.
    cached = coco_cache_path(MOBILE)
    cached.parent.mkdir(parents=True)
    torch.save(build_model(MOBILE, 91).state_dict(), cached)
    monkeypatch.setenv(WEIGHTS_ENV, str(mobile_state_file))
    det = load_detector(MOBILE)
    assert det.weights == str(mobile_state_file)
    assert same_weights(det.model, mobile_model)
    # "coco" skips the env var.
    assert load_detector(MOBILE, "coco").weights == "coco"


def test_env_var_naming_a_bad_file_is_an_error(isolated, monkeypatch, tmp_path):
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(DetectorWeightsError, match="weights file not found"):
        load_detector(MOBILE)


def test_coco_checkpoint_in_the_torch_hub_cache(isolated, mobile_model):
    cached = coco_cache_path(MOBILE)
    assert cached.parent == isolated / "torch_home" / "hub" / "checkpoints"
    assert cached.name == "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"  # torchvision's name
    cached.parent.mkdir(parents=True)
    torch.save(mobile_model.state_dict(), cached)
    det = load_detector(MOBILE, "auto", allow_download=False)
    assert det.weights == "coco" and det.class_names == COCO_CLASS_NAMES
    assert str(cached) in det.note and "32.8 box mAP" in det.note
    assert same_weights(det.model, mobile_model)


def test_cached_v1_checkpoint_with_pre_0_13_rpn_key_names(isolated):
    # torchvision's COCO file for fasterrcnn_resnet50_fpn predates RPNHead's conv -> conv.0.0
    # renaming; RPNHead converts the old names itself, so the file must load as it is.
    name = "fasterrcnn_resnet50_fpn"
    torch.manual_seed(3)
    model = build_model(name, 91)
    old = {
        k.replace("rpn.head.conv.0.0.", "rpn.head.conv."): v for k, v in model.state_dict().items()
    }
    assert "rpn.head.conv.weight" in old
    cached = coco_cache_path(name)
    assert cached.name == "fasterrcnn_resnet50_fpn_coco-258fb6c6.pth"
    cached.parent.mkdir(parents=True)
    torch.save(old, cached)
    det = load_detector(name, "coco", allow_download=False)
    assert det.weights == "coco" and "37.0 box mAP" in det.note
    assert same_weights(det.model, model)


def test_offline_falls_back_to_random_with_a_notice(isolated, monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    started = time.perf_counter()
    det = load_detector(MOBILE, "auto")
    assert time.perf_counter() - started < 10  # no probe, no download attempt
    assert det.weights == "random" and det.class_names == COCO_CLASS_NAMES
    assert "random weights (seed 0)" in det.note and OFFLINE_ENV in det.note
    assert f"fetch-weights --model {MOBILE}" in det.note
    assert str(coco_cache_path(MOBILE).parent) in det.note and WEIGHTS_ENV in det.note
    # Seeded: the same seed gives the same weights, another seed others.
    assert same_weights(det.model, load_detector(MOBILE, "random", seed=0).model)
    assert not same_weights(det.model, load_detector(MOBILE, "random", seed=1).model)


def test_download_disabled_falls_back_to_random(isolated):
    det = load_detector(MOBILE, "auto", allow_download=False)
    assert det.weights == "random" and "download disabled" in det.note
    assert not coco_cache_path(MOBILE).exists()


def test_coco_asked_for_but_unavailable_is_an_error(isolated):
    with pytest.raises(DetectorWeightsError) as info:
        load_detector(MOBILE, "coco", allow_download=False)
    assert "fetch-weights --model" in str(info.value) and "\n" not in str(info.value)


def test_unusable_cached_file_is_reported_and_kept(isolated):
    cached = coco_cache_path(MOBILE)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    det = load_detector(MOBILE, "auto")  # no download is tried over an existing file
    assert det.weights == "random" and "cached file is unusable" in det.note
    assert cached.read_bytes() == b"not a checkpoint"  # never deletes what it did not write


class _Server:
    """A local HTTP server for the download path: serves one file, or stalls."""

    def __init__(self, payload: bytes, stall: bool = False):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if stall:
                    self.wfile.write(payload[:10])
                    self.wfile.flush()
                    time.sleep(5)
                    return
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def served(monkeypatch, mobile_state_file):
    """Point MobileNet's download URL at a local server holding the saved state_dict; the file
    name carries its SHA-256 prefix as torchvision's names do, so torch.hub checks it."""
    payload = mobile_state_file.read_bytes()
    servers = []

    def start(stall: bool = False, digest: str | None = None) -> str:
        server = _Server(payload, stall)
        servers.append(server)
        prefix = digest or hashlib.sha256(payload).hexdigest()[:8]
        url = f"http://127.0.0.1:{server.port}/mobile-{prefix}.pth"
        monkeypatch.setitem(detectors.WEIGHTS_URLS, MOBILE, url)
        return url

    yield start
    for server in servers:
        server.close()


def test_download_fills_the_cache_with_progress(isolated, served, mobile_model, capfd):
    served()
    det = load_detector(MOBILE, "auto")
    assert det.weights == "coco" and "downloaded" in det.note
    assert same_weights(det.model, mobile_model)
    cached = coco_cache_path(MOBILE)
    assert cached.is_file() and cached.name.startswith("mobile-")
    assert "%" in capfd.readouterr().err  # torch.hub's progress bar
    # fetch-weights now finds it there.
    assert fetch_coco_weights(MOBILE) == (cached, False)


def test_download_with_a_wrong_checksum_is_not_kept(isolated, served):
    served(digest="00000000")
    det = load_detector(MOBILE, "auto", seed=2)
    assert det.weights == "random" and "hash" in det.note.lower()
    assert not coco_cache_path(MOBILE).exists()


def test_stalled_download_is_bounded(isolated, served, monkeypatch):
    served(stall=True)
    monkeypatch.setattr(detectors, "DOWNLOAD_TIMEOUT_S", 1.0)
    started = time.perf_counter()
    det = load_detector(MOBILE, "auto")
    assert time.perf_counter() - started < 4
    assert det.weights == "random" and "did not finish within 1 s" in det.note


def test_unreachable_host_is_probed_briefly(isolated, monkeypatch):
    # Port 9 on 127.0.0.1: nothing listens, the connection is refused at once.
    monkeypatch.setitem(detectors.WEIGHTS_URLS, MOBILE, "http://127.0.0.1:9/mobile-12345678.pth")
    with pytest.raises(DetectorWeightsError, match=r"no network access to 127\.0\.0\.1"):
        fetch_coco_weights(MOBILE)
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(DetectorWeightsError, match=f"{OFFLINE_ENV} is set"):
        fetch_coco_weights(MOBILE)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    for bad in ("gpu", "tpu:0", "banana"):
        with pytest.raises(DeviceError) as info:
            resolve_device(bad)
        assert "\n" not in str(info.value)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="CUDA is not available"):
            resolve_device("cuda")
    else:
        assert resolve_device("cuda").type == "cuda"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_half_precision_on_cuda(isolated):
    det = load_detector(MOBILE, "random", device="cuda", half=True)
    assert det.device.type == "cuda" and det.dtype == torch.float16


def test_half_precision_on_cpu_is_a_note():
    det = load_detector(MOBILE, "random", device="cpu", half=True)
    assert det.dtype == torch.float32 and "Half precision needs CUDA" in det.note
