"""The sample images shipped in ``sample_images/``, each with a JSON sidecar of the same stem:
``{"title", "source", "licence", "boxes": [{"box": [x1, y1, x2, y2], "label": ...}]}``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from frcnn_core.i18n import N_, _

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "sample_images"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_SAMPLE = "zebras"
# The shipped samples' titles (their sidecars' "title"), marked for the catalogue; shown in the
# session's language by :attr:`Sample.shown_title`.
TITLES = (
    N_("Astronaut Eileen Collins"),
    N_("Chelsea the cat"),
    N_("Coffee cup"),
    N_("Greek coins from Pompeii"),
    N_("Falcon 9 with DSCOVR on the launch pad"),
    N_("Zebras (synthetic)"),
)


@dataclass(frozen=True)
class Sample:
    name: str
    title: str
    path: Path
    source: str
    licence: str
    boxes: tuple[tuple[tuple[float, float, float, float], str], ...]

    @property
    def shown_title(self) -> str:
        """The title in the session's language (the sidecar's English when not translated)."""
        return _(self.title)

    def box_dicts(self) -> list[dict]:
        return [{"box": list(box), "label": label} for box, label in self.boxes]


@lru_cache(maxsize=1)
def samples() -> dict[str, Sample]:
    """Every sample, zebras first (the tutorial's scene), then by title."""
    found: dict[str, Sample] = {}
    for sidecar in sorted(SAMPLE_DIR.glob("*.json")):
        image = next((p for s in IMAGE_SUFFIXES if (p := sidecar.with_suffix(s)).is_file()), None)
        if image is None:
            continue
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        boxes = tuple(
            (tuple(float(v) for v in b["box"]), str(b.get("label", "object")))
            for b in meta.get("boxes", [])
        )
        found[sidecar.stem] = Sample(
            name=sidecar.stem,
            title=meta.get("title", sidecar.stem),
            path=image,
            source=meta.get("source", ""),
            licence=meta.get("licence", ""),
            boxes=boxes,  # type: ignore[arg-type]
        )
    order = sorted(found, key=lambda n: (n != DEFAULT_SAMPLE, found[n].title.lower()))
    return {n: found[n] for n in order}
