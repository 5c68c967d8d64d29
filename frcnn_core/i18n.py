"""Translations: English, the language the code is written in, and Korean (한국어).

Catalogues are gettext ``.po`` files, one per language,
``locales/<lang>/LC_MESSAGES/messages.po``, read with Babel (no compile step: a changed file is
read again within :data:`RELOAD_S`). The English text is the key (``msgid``); English's own
catalogue lists every key too, so the test suite can check that both languages have them all
(``tools/i18n.py check``).

In code::

    from frcnn_core.i18n import _, N_, ngettext, number

    st.caption(_("{n} anchors over a {h} x {w} grid").format(n=number(22500), h=50, w=50))
    ngettext("{n} box", "{n} boxes", n).format(n=n)
    LABEL = N_("Positive IoU")   # marked for the catalogue; translated where shown: _(LABEL)

Rules the catalogue check enforces: a message is a literal (never an f-string or a
concatenation), placeholders are named (``{n}``, not ``{}``), and a translation has the same
placeholders as its key.

The language is per caller: :func:`using` / :func:`set_language` (the CLI's ``--lang``, tests)
set it for the current context; otherwise a resolver installed by the app (the session's
choice, :mod:`explorer.i18n`) decides; otherwise English. Nothing here imports Streamlit.
"""

from __future__ import annotations

import gettext
import io
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

LANGUAGES = {"en": "English", "ko": "한국어"}
DEFAULT = "en"
# Babel's locale for numbers and plural rules.
LOCALES = {"en": "en_US", "ko": "ko_KR"}
DOMAIN = "messages"
LOCALE_DIR = Path(
    os.environ.get("FRCNN_LOCALE_DIR", Path(__file__).resolve().parents[1] / "locales")
)
RELOAD_S = 2.0

_override: ContextVar[str | None] = ContextVar("frcnn_language", default=None)
_resolver: Callable[[], str | None] | None = None


def normalise(value: object) -> str | None:
    """``"ko"``, ``"ko-KR"``, ``"ko_KR"``, ``"KO"`` -> ``"ko"``; a language we do not have, or
    anything that is not text, -> None."""
    if not isinstance(value, str):
        return None
    code = re.split(r"[-_]", value.strip().lower(), maxsplit=1)[0]
    return code if code in LANGUAGES else None


def set_resolver(resolver: Callable[[], str | None] | None) -> None:
    """Where :func:`language` looks when no :func:`using` is in force (the app: the session's
    choice)."""
    global _resolver
    _resolver = resolver


def language() -> str:
    """The language of the current caller (see the module docstring)."""
    lang = _override.get()
    if lang is None and _resolver is not None:
        lang = _resolver()
    return lang if lang in LANGUAGES else DEFAULT


def set_language(lang: str) -> None:
    """Use ``lang`` in this context from now on (the CLI, once, from ``--lang``).

    Raises:
        ValueError: not a language of :data:`LANGUAGES`.
    """
    code = normalise(lang)
    if code is None:
        raise ValueError(f"unknown language {lang!r}; choose from {', '.join(LANGUAGES)}")
    _override.set(code)


@contextmanager
def using(lang: str) -> Iterator[None]:
    """Within the block, text is in ``lang``."""
    code = normalise(lang)
    if code is None:
        raise ValueError(f"unknown language {lang!r}; choose from {', '.join(LANGUAGES)}")
    token = _override.set(code)
    try:
        yield
    finally:
        _override.reset(token)


# -- catalogues -----------------------------------------------------------------------------


def catalogue_paths(lang: str, root: Path | None = None) -> list[Path]:
    """The ``.po`` files of ``lang`` (one, ``messages.po``, once merged)."""
    folder = (root or LOCALE_DIR) / lang / "LC_MESSAGES"
    return sorted(folder.glob("*.po")) if folder.is_dir() else []


def read_catalogue(lang: str, root: Path | None = None):
    """``lang``'s catalogue as one Babel ``Catalog`` (several files merged; the first
    translation of a key wins)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po

    merged = Catalog(locale=LOCALES[lang], domain=DOMAIN)
    for path in catalogue_paths(lang, root):
        with path.open("rb") as f:
            part = read_po(f, locale=LOCALES[lang])
        for message in part:
            if not message.id:
                continue
            known = merged.get(message.id, message.context)
            if known is not None and _translated(known.string):
                continue
            if known is not None:
                merged.delete(message.id, message.context)
            merged[message.id] = message
    return merged


def _translated(string: object) -> bool:
    if isinstance(string, tuple | list):
        return any(bool(s) for s in string)
    return bool(string)


class _Loaded:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_lang: dict[str, tuple[tuple, float, gettext.NullTranslations]] = {}


_LOADED = _Loaded()


def _signature(lang: str) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns) for p in catalogue_paths(lang))


def translations(lang: str) -> gettext.NullTranslations:
    """``lang``'s compiled catalogue, read once and again when its files change."""
    now = time.monotonic()
    entry = _LOADED.by_lang.get(lang)
    if entry is not None and now - entry[1] < RELOAD_S:
        return entry[2]
    with _LOADED.lock:
        entry = _LOADED.by_lang.get(lang)
        try:
            signature = _signature(lang)
        except OSError:
            signature = ()
        if entry is not None and entry[0] == signature:
            _LOADED.by_lang[lang] = (signature, now, entry[2])
            return entry[2]
        compiled = _compile(lang) if signature else gettext.NullTranslations()
        _LOADED.by_lang[lang] = (signature, now, compiled)
        return compiled


def _compile(lang: str) -> gettext.NullTranslations:
    from babel.messages.mofile import write_mo

    buffer = io.BytesIO()
    write_mo(buffer, read_catalogue(lang))
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


# -- the functions the code calls -----------------------------------------------------------


def _(message: str) -> str:
    """``message`` in the caller's language (itself in English, or when not translated)."""
    return translations(language()).gettext(message)


def N_(message: str) -> str:  # gettext's name
    """Marks ``message`` for the catalogue where it is defined; :func:`_` translates it where
    it is shown."""
    return message


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of a message for ``n`` (Korean has one form, English two)."""
    return translations(language()).ngettext(singular, plural, n)


def number(value: float | int, decimals: int | None = None) -> str:
    """``value`` written the language's way: ``7,469``; ``0.25`` with ``decimals=2``."""
    from babel.numbers import format_decimal

    if decimals is None:
        return format_decimal(value, locale=LOCALES[language()])
    fmt = "#,##0" + ("." + "0" * decimals if decimals > 0 else "")
    return format_decimal(value, format=fmt, locale=LOCALES[language()])
