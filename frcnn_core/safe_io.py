"""Reading and writing users' files without surprises.

Everything the command line and the app read from a path goes through :func:`read_file`: only
a regular file is opened (a FIFO, a device such as ``/dev/zero`` or a folder is refused at once,
before anything blocks or grows), its size is checked against a limit for its kind before it is
read, and the read itself stops at that limit. JSON is parsed by :func:`parse_json`, which
refuses nesting deeper than a limit before Python's parser would recurse into it.

Results that took long to compute are written with :func:`write_atomic`, after
:func:`check_writable` said up front (before the long work) that the place can be written;
if writing still fails at the end, :func:`rescue` puts the bytes somewhere they are kept and
says where.

Every failure is an :class:`InputError` whose message is one line for the user.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from frcnn_core.i18n import _

MB = 2**20
# Nesting deeper than any boxes, dataset or project file needs, far below Python's recursion
# limit (json.loads recurses once per level).
MAX_JSON_DEPTH = 64
RESCUE_ENV = "FRCNN_RESCUE_DIR"


class InputError(ValueError):
    """A file that cannot be used; the message is one line for the user."""


def read_file(path: str | os.PathLike[str], max_bytes: int, what: str | None = None) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Args:
        what: what the file is, in the messages ("image", "boxes file"; default "file"), in the
            caller's language.

    Raises:
        InputError: missing, not a regular file (a folder, a FIFO, a device), unreadable, or
            larger than ``max_bytes``.
    """
    name = os.fspath(path)
    what = what or _("file")
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise InputError(_("{what} {name} does not exist").format(what=what, name=name)) from None
    except OSError as exc:
        raise InputError(_cannot_read(what, name, exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(_("{what} {name} is a folder, not a file").format(what=what, name=name))
    if not stat.S_ISREG(info.st_mode):
        raise InputError(
            _("{what} {name} is not a regular file (a pipe or a device?)").format(
                what=what, name=name
            )
        )
    if info.st_size > max_bytes:
        raise InputError(
            _("{what} {name} is {size}; the limit is {limit}").format(
                what=what, name=name, size=_size(info.st_size), limit=_size(max_bytes)
            )
        )
    try:
        # O_NONBLOCK: had the path been swapped for a FIFO since the check, open() must not wait.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(_cannot_read(what, name, exc)) from None
    if len(data) > max_bytes:
        raise InputError(
            _("{what} {name} is larger than {limit}").format(
                what=what, name=name, limit=_size(max_bytes)
            )
        )
    return data


def _cannot_read(what: str, name: str, exc: OSError) -> str:
    return _("{what} {name} cannot be read: {reason}").format(
        what=what, name=name, reason=exc.strerror or exc
    )


def _size(n: int) -> str:
    if n >= MB:
        return _("{mb:.0f} MB").format(mb=n / MB)
    return _("{n} bytes").format(n=n)


def json_depth(text: str) -> int:
    """How deeply ``[`` and ``{`` nest in JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(data: bytes | str, what: str | None = None, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from bytes or text, nesting at most ``max_depth`` deep.

    Args:
        what: the file, in the messages (default "file"), in the caller's language.

    Raises:
        InputError: not UTF-8, not JSON (with the line and column), or nested too deeply.
    """
    what = what or _("file")
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise InputError(_("{what} is not UTF-8 text").format(what=what)) from None
    if json_depth(text) > max_depth:
        raise InputError(
            _("{what} nests deeper than {depth} levels").format(what=what, depth=max_depth)
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # exc.msg is Python's own English ("Expecting value"): the line and column say where.
        raise InputError(
            _("{what} is not valid JSON (line {line}, column {column}: {reason})").format(
                what=what, line=exc.lineno, column=exc.colno, reason=exc.msg
            )
        ) from None


def check_writable(path: str | os.PathLike[str], what: str | None = None) -> Path:
    """``path`` as a Path once it is clear a file can be written there: its folder exists and
    is writable, and the path itself is not a folder (nor an existing file that cannot be
    replaced).

    Raises:
        InputError: with the reason, before any long work starts.
    """
    target = Path(path)
    what = what or _("output")
    if target.is_dir():
        raise InputError(
            _("{what} {path} is a folder; give a file name").format(what=what, path=target)
        )
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(
            _("{what} {path}: the folder {folder} does not exist").format(
                what=what, path=target, folder=folder
            )
        )
    try:  # the one sure test (permissions say nothing of a read-only disk, or to root)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(
            _("{what} {path}: cannot write in {folder} ({reason})").format(
                what=what, path=target, folder=folder, reason=exc.strerror or exc
            )
        ) from None
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(
            _("{what} {path} exists and is not writable").format(what=what, path=target)
        )
    return target


def write_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so a reader
    never sees half a file and an interrupted write leaves the old file in place.

    Raises:
        OSError: the write failed (see :func:`rescue`).
    """
    target = Path(path)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def rescue(data: bytes, name: str) -> Path:
    """Keep ``data`` that could not be written where asked: in ``$FRCNN_RESCUE_DIR``, else
    ``~/.cache/frcnn-explorer/rescued``, else the system's temporary folder. Returns where.

    Raises:
        OSError: not even those places could be written.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidates = [os.environ.get(RESCUE_ENV, "")]
    candidates += [
        str(Path.home() / ".cache" / "frcnn-explorer" / "rescued"),
        tempfile.gettempdir(),
    ]
    last: OSError | None = None
    for folder in filter(None, candidates):
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            return write_atomic(Path(folder) / f"{stamp}-{Path(name).name}", data)
        except OSError as exc:
            last = exc
    assert last is not None
    raise last
