"""Per-browser-session state shared by all pages: the image, the user's boxes, the parameters.

Everything lives in ``st.session_state`` (one per browser tab), so a user's boxes, parameters
and trained weights are never seen by another session, and survive page switches and reruns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import streamlit as st

from explorer.samples import DEFAULT_SAMPLE, samples
from frcnn_core.ground_truth import clean_label
from frcnn_core.params import PipelineParams, validate

IMAGE = "image"
BOXES = "boxes"
PARAMS = "params"
BOXES_VERSION = "boxes_version"
WIDGET_PREFIX = "w:"
LOCAL_PREFIX = "local:"  # a page's own what-if values, by page


@dataclass(frozen=True)
class ImageChoice:
    """The current image: its file bytes and where it came from.

    Attributes:
        name: sample name or uploaded file name.
        data: the file's bytes (decoded on demand, cached by digest).
        digest: sha256 of ``data``, the cache key of everything computed from it.
        sample: True for a shipped sample.
    """

    name: str
    data: bytes
    digest: str
    sample: bool


def digest_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def init() -> None:
    """Set up a new session: the tutorial's zebra sample with its four boxes, default params."""
    if IMAGE not in st.session_state:
        catalogue = samples()
        if catalogue:
            name = DEFAULT_SAMPLE if DEFAULT_SAMPLE in catalogue else next(iter(catalogue))
            choose_sample(name)
        else:
            st.session_state[IMAGE] = None
            st.session_state[BOXES] = []
    st.session_state.setdefault(PARAMS, PipelineParams())
    st.session_state.setdefault(BOXES_VERSION, 0)


def image() -> ImageChoice | None:
    return st.session_state.get(IMAGE)


def choose_sample(name: str) -> None:
    sample = samples()[name]
    data = sample.path.read_bytes()
    set_image(ImageChoice(name, data, digest_of(data), True), sample.box_dicts())


def set_image(choice: ImageChoice, boxes: list[dict[str, Any]]) -> None:
    """Switch image; boxes are in the new image's original pixels."""
    st.session_state[IMAGE] = choice
    set_boxes(boxes)


def boxes() -> list[dict[str, Any]]:
    """The user's boxes: ``[{"box": [x1, y1, x2, y2], "label": str}]`` in original pixels."""
    return st.session_state.get(BOXES, [])


def set_boxes(new: list[dict[str, Any]]) -> None:
    """Replace the boxes; labels are cleaned here, where they come in (one bounded line)."""
    st.session_state[BOXES] = [
        {"box": list(b["box"]), "label": clean_label(b.get("label"))} for b in new
    ]
    st.session_state[BOXES_VERSION] = st.session_state.get(BOXES_VERSION, 0) + 1


BoxesKey = tuple[tuple[tuple[float | None, ...], str], ...]


def boxes_key() -> BoxesKey:
    """The session's boxes as a hashable value, for cache keys (see :func:`key_of_boxes`)."""
    return key_of_boxes(boxes())


def key_of_boxes(items: Iterable[Any]) -> BoxesKey:
    """Boxes as ``((x1, y1, x2, y2), label)`` pairs, whatever they hold.

    Session boxes can hold anything typed or set (text, NaN, three numbers, no list at all).
    Nothing is judged here: a value that is not a number becomes ``None`` (NaN and inf stay
    floats) and a box that is not a sequence becomes ``()``, so stage 1
    (:func:`frcnn_core.ground_truth.clean_boxes`) drops that box with a note for the user
    instead of this raising. E.g. ``{"box": ["abc", 1, 2, 3], "label": "cat"}`` ->
    ``((None, 1.0, 2.0, 3.0), "cat")``.
    """
    out = []
    for item in items:
        entry = item if isinstance(item, dict) else {}
        box, label = entry.get("box"), entry.get("label")
        coords = () if isinstance(box, (str, bytes)) else tuple(_number(v) for v in _items(box))
        out.append((coords, "" if label is None else str(label)))
    return tuple(out)


def _items(value: Any) -> list[Any]:
    try:
        return list(value)
    except TypeError:
        return []


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def params() -> PipelineParams:
    """The session's pipeline settings."""
    return st.session_state.get(PARAMS) or PipelineParams()


def set_params(new: PipelineParams) -> None:
    """Replace the session's settings (validated: raises ``ParamsError``, changing nothing)."""
    st.session_state[PARAMS] = validate(new)


def _local(scope: str) -> dict[str, Any]:
    return st.session_state.setdefault(f"{LOCAL_PREFIX}{scope}", {})


def local_params(scope: str) -> PipelineParams:
    """The session's settings with the what-if values of ``scope`` (a page of its own) on top."""
    out = params()
    for path, value in _local(scope).items():
        out = out.replace(path, value)
    return out


def get_param(path: str, scope: str | None = None) -> Any:
    """Setting ``"group.field"``: the pipeline's, or ``scope``'s what-if value."""
    return (local_params(scope) if scope else params()).get(path)


def set_param(path: str, value: Any, scope: str | None = None) -> None:
    """Set one setting (in ``scope``'s what-if values when given); raises ``ParamsError`` for
    a value or combination the pipeline cannot run, and then changes nothing."""
    if scope is None:
        set_params(params().replace(path, value))
        return
    validate(local_params(scope).replace(path, value))
    _local(scope)[path] = value


def reset_params() -> None:
    """Back to the tutorial's defaults (what-if values too); every widget is rebuilt from them."""
    st.session_state[PARAMS] = PipelineParams()
    for key in [k for k in st.session_state if str(k).startswith((WIDGET_PREFIX, LOCAL_PREFIX))]:
        del st.session_state[key]
