"""How large each kind of file a user may upload can be.

Every file the app writes for the user must fit its own kind's limit, so it can always be
loaded back: a heads file trained with the conv5 block is 38 MB, a fine-tuned ResNet-50 FPN
checkpoint about 170 MB. The server's own limit (``server.maxUploadSize`` in
``.streamlit/config.toml``) is the largest of these; each uploader sets its kind's limit in the
browser, and :func:`too_large` checks it again on the server (a client can ignore the first).
"""

from __future__ import annotations

from streamlit.runtime.uploaded_file_manager import UploadedFile

from frcnn_core.i18n import N_, _

LIMITS_MB = {
    "image": 25,
    "heads": 64,
    "boxes": 4,
    "project": 100,
    "dataset": 200,
    "checkpoint": 200,
}
# What a file over its kind's limit is told, one whole sentence per kind (English here; said as
# ``_(message)``).
TOO_LARGE = {
    "image": N_("it is {size:.0f} MB; image files may be at most {limit} MB"),
    "heads": N_("it is {size:.0f} MB; heads files may be at most {limit} MB"),
    "boxes": N_("it is {size:.0f} MB; boxes files may be at most {limit} MB"),
    "project": N_("it is {size:.0f} MB; project files may be at most {limit} MB"),
    "dataset": N_("it is {size:.0f} MB; dataset files may be at most {limit} MB"),
    "checkpoint": N_("it is {size:.0f} MB; checkpoint files may be at most {limit} MB"),
}


def too_large(upload: UploadedFile, kind: str) -> str | None:
    """A one-line reason when ``upload`` is over its kind's limit, else None."""
    limit = LIMITS_MB[kind]
    if upload.size > limit * 2**20:
        return _(TOO_LARGE[kind]).format(size=upload.size / 2**20, limit=limit)
    return None
