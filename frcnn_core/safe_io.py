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

MB = 2**20
# Nesting deeper than any boxes, dataset or project file needs, far below Python's recursion
# limit (json.loads recurses once per level).
MAX_JSON_DEPTH = 64
RESCUE_ENV = "FRCNN_RESCUE_DIR"


class InputError(ValueError):
    """A file that cannot be used; the message is one line for the user."""


def read_file(path: str | os.PathLike[str], max_bytes: int, what: str = "file") -> bytes:
    """The bytes of a regular file of at most ``max_bytes``.

    Raises:
        InputError: missing, not a regular file (a folder, a FIFO, a device), unreadable, or
            larger than ``max_bytes``.
    """
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise InputError(f"{what} {name} does not exist") from None
    except OSError as exc:
        raise InputError(f"{what} {name} cannot be read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{what} {name} is a folder, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{what} {name} is not a regular file (a pipe or a device?)")
    if info.st_size > max_bytes:
        raise InputError(f"{what} {name} is {_size(info.st_size)}; the limit is {_size(max_bytes)}")
    try:
        # O_NONBLOCK: had the path been swapped for a FIFO since the check, open() must not wait.
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{what} {name} cannot be read: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise InputError(f"{what} {name} is larger than {_size(max_bytes)}")
    return data


def _size(n: int) -> str:
    return f"{n / MB:.0f} MB" if n >= MB else f"{n} bytes"


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


def parse_json(data: bytes | str, what: str = "file", max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON from bytes or text, nesting at most ``max_depth`` deep.

    Raises:
        InputError: not UTF-8, not JSON (with the line and column), or nested too deeply.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    except UnicodeDecodeError:
        raise InputError(f"{what} is not UTF-8 text") from None
    if json_depth(text) > max_depth:
        raise InputError(f"{what} nests deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def check_writable(path: str | os.PathLike[str], what: str = "output") -> Path:
    """``path`` as a Path once it is clear a file can be written there: its folder exists and
    is writable, and the path itself is not a folder (nor an existing file that cannot be
    replaced).

    Raises:
        InputError: with the reason, before any long work starts.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(f"{what} {target} is a folder; give a file name")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{what} {target}: the folder {folder} does not exist")
    try:  # the one sure test (permissions say nothing of a read-only disk, or to root)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(
            f"{what} {target}: cannot write in {folder} ({exc.strerror or exc})"
        ) from None
    if target.exists() and not os.access(target, os.W_OK):
        raise InputError(f"{what} {target} exists and is not writable")
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
