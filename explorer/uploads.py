"""How large each kind of file a user may upload can be.

Every file the app writes for the user must fit its own kind's limit, so it can always be
loaded back: a heads file trained with the conv5 block is 38 MB, a fine-tuned ResNet-50 FPN
checkpoint about 170 MB. The server's own limit (``server.maxUploadSize`` in
``.streamlit/config.toml``) is the largest of these; each uploader sets its kind's limit in the
browser, and :func:`too_large` checks it again on the server (a client can ignore the first).
"""

from __future__ import annotations

from streamlit.runtime.uploaded_file_manager import UploadedFile

LIMITS_MB = {
    "image": 25,
    "heads": 64,
    "boxes": 4,
    "project": 100,
    "dataset": 200,
    "checkpoint": 200,
}


def too_large(upload: UploadedFile, kind: str) -> str | None:
    """A one-line reason when ``upload`` is over its kind's limit, else None."""
    limit = LIMITS_MB[kind]
    if upload.size > limit * 2**20:
        return f"it is {upload.size / 2**20:.0f} MB; {kind} files may be at most {limit} MB"
    return None
