"""The catalogues and the session's language.

- The catalogue check (``tools/i18n.py check``) passes: every message of the code is in the
  English and the Korean catalogue, translated into Korean with the same placeholders, and no
  user-facing literal in app.py, the pages or the views bypasses the catalogue.
- The check fails when a key is removed from either language, when a placeholder differs, and
  on a literal that bypasses the catalogue (each shown on a copy, not the real files).
- Plurals and numbers follow the language; an unknown language is refused.
- The language is per session: from ``?lang=``, kept in the URL, switched in the sidebar,
  saved with the project and restored from it; one session's choice never changes another's.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("FRCNN_OFFLINE", "1")

from streamlit.testing.v1 import AppTest

from explorer import i18n as app_i18n
from explorer import projects
from frcnn_core.i18n import LANGUAGES, _, language, ngettext, normalise, number, using

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def _tool():
    spec = importlib.util.spec_from_file_location("i18n_tool", ROOT / "tools" / "i18n.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


tool = _tool()


@pytest.fixture(scope="module")
def messages():
    found, problems = tool.extract(ROOT)
    assert not problems, problems
    return found


# -- the catalogues ---------------------------------------------------------------------------


def test_the_catalogue_check_passes(messages) -> None:
    catalogues = {lang: tool.load(lang, ROOT) for lang in LANGUAGES}
    assert len(messages) > 500  # the whole app, not a handful
    assert tool.check_catalogues(messages, catalogues) == []
    assert tool.bypasses(ROOT) == []


def copy_catalogues(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "locales", tmp_path / "locales")
    return tmp_path


def test_the_check_fails_when_a_key_is_removed_from_one_language(messages, tmp_path) -> None:
    root = copy_catalogues(tmp_path)
    key = "Reset to tutorial defaults"
    assert key in messages
    for lang in LANGUAGES:
        catalogues = {code: tool.load(code, root) for code in LANGUAGES}
        assert catalogues[lang].get(key) is not None
        catalogues[lang].delete(key)
        problems = tool.check_catalogues(messages, catalogues)
        line = messages[key].locations[0][1]
        assert problems == [f"app.py:{line}: {key!r} is missing from the {lang} catalogue"]
    # The same through the files: remove the entry from the Korean .po and read it again.
    for path in (root / "locales" / "ko" / "LC_MESSAGES").glob("*.po"):
        text = path.read_text(encoding="utf-8")
        entry = f'msgid "{key}"\nmsgstr "튜토리얼 기본값으로 되돌리기"\n'
        if entry in text:
            path.write_text(text.replace(entry, ""), encoding="utf-8")
    ko = tool.load("ko", root)
    assert ko.get(key) is None
    problems = tool.check_catalogues(messages, {"en": tool.load("en", root), "ko": ko})
    assert any(key in p and "missing from the ko catalogue" in p for p in problems), problems


def test_the_check_fails_on_a_placeholder_that_differs(messages, tmp_path) -> None:
    catalogues = {lang: tool.load(lang, ROOT) for lang in LANGUAGES}
    key = "Backbone weights: {weights}"
    catalogues["ko"][key].string = "백본 가중치: {weight}"
    problems = tool.check_catalogues(messages, catalogues)
    assert len(problems) == 1 and "placeholders ['weight'], the key ['weights']" in problems[0]


def test_the_check_finds_a_literal_that_bypasses_the_catalogue(tmp_path) -> None:
    page = tmp_path / "app_pages" / "demo.py"
    page.parent.mkdir()
    page.write_text(
        "import streamlit as st\n"
        "from frcnn_core.i18n import _\n"
        'st.caption("Anchors inside the image")\n'
        'st.caption(_("Anchors inside the image"))\n'
        'st.slider(_("IoU"), key="w:x", help=f"{3} anchors per cell")\n'
        'st.metric("IoU", 3)\n'  # a term that is the same in both languages
        'st.radio(_("Mode"), ["Show all", "Hide"], key="m")\n'
        "st.html(\"<div class='legend'></div>\")  # i18n: keep\n",
        encoding="utf-8",
    )
    problems = tool.bypasses(tmp_path, ["app_pages"])
    lines = sorted(int(p.split(":")[1]) for p in problems)
    assert lines == [3, 5, 7, 7], problems


def test_a_message_that_is_not_a_literal_is_refused(tmp_path) -> None:
    module = tmp_path / "explorer" / "demo.py"
    module.parent.mkdir()
    module.write_text(
        'from frcnn_core.i18n import _\nx = 3\nprint(_(f"{x} anchors"))\nprint(_("ok"))\n',
        encoding="utf-8",
    )
    found, problems = tool.extract(tmp_path)
    assert problems == ["explorer/demo.py:3: a message that is not a literal"]
    assert list(found) == ["ok"]


def test_placeholders_are_named() -> None:
    assert tool.placeholders("{n} boxes at IoU {t:.2f}") == {"n", "t"}
    assert tool.placeholders("{} boxes") is None
    assert tool.placeholders("{0} boxes") is None
    assert tool.placeholders("a {{literal}} brace") == set()


# -- translating ------------------------------------------------------------------------------


def test_messages_plurals_and_numbers_follow_the_language() -> None:
    assert language() == "en"
    with using("ko"):
        assert _("Reset to tutorial defaults") == "튜토리얼 기본값으로 되돌리기"
        assert ngettext("{n} box", "{n} boxes", 3).format(n=3) == "박스 3개"
        assert ngettext("{n} box", "{n} boxes", 1).format(n=1) == "박스 1개"
        assert number(22500) == "22,500"
        assert _("a message nobody translated") == "a message nobody translated"
    assert ngettext("{n} box", "{n} boxes", 1).format(n=1) == "1 box"
    assert ngettext("{n} box", "{n} boxes", 2).format(n=2) == "2 boxes"
    assert number(0.256, 2) == "0.26"
    with pytest.raises(ValueError, match="unknown language"), using("xx"):
        pass
    values = ("ko-KR", "ko_KR", "KO", "en-GB", "fr", None, 3)
    assert [normalise(v) for v in values] == ["ko", "ko", "ko", "en", None, None, None]


# -- the session's language -------------------------------------------------------------------


def session(query: dict[str, str] | None = None, owner: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=300)
    if owner is not None:
        at.session_state[projects.OWNER] = owner
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def query(at: AppTest, name: str) -> str:
    """A query parameter as the app last set it (AppTest keeps a list or a string)."""
    value = at.query_params[name]
    return value[-1] if isinstance(value, list) else value


def sidebar_text(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.sidebar.caption)


def test_each_session_speaks_its_own_language() -> None:
    korean = session({"lang": "ko"})
    english = session()
    assert korean.session_state[app_i18n.KEY] == "ko"
    assert english.session_state[app_i18n.KEY] == "en"  # AppTest has no browser locale
    assert "장치:" in sidebar_text(korean) and "Device:" in sidebar_text(english)
    assert query(korean, "lang") == "ko" and query(english, "lang") == "en"
    # The page titles in the menu follow: "Anchors" is "앵커 박스" for the Korean session only.
    korean.switch_page("app_pages/glossary.py").run()
    english.switch_page("app_pages/glossary.py").run()
    assert korean.title[0].value == "용어집" and english.title[0].value == "Glossary"
    # Switching one session's language leaves the other alone.
    korean.session_state[app_i18n.SWITCH] = "en"
    app_i18n_switched(korean)
    assert korean.title[0].value == "Glossary"
    assert query(korean, "lang") == "en"
    english.run()
    assert english.title[0].value == "Glossary"


def app_i18n_switched(at: AppTest) -> None:
    """The sidebar switch's callback, as a click runs it: the session's language from the
    switch's value, then a rerun."""
    at.session_state[app_i18n.KEY] = at.session_state[app_i18n.SWITCH]
    at.query_params["lang"] = at.session_state[app_i18n.SWITCH]
    at.run()
    assert not at.exception, at.exception


def test_a_bad_language_in_the_link_is_ignored() -> None:
    at = session({"lang": "klingon"})
    assert at.session_state[app_i18n.KEY] == "en"
    assert query(at, "lang") == "en"


def test_the_saved_project_keeps_the_language() -> None:
    owner = "owner-lang-0123456789abcdef"
    first = session({"lang": "ko"}, owner=owner)
    first.switch_page("app_pages/glossary.py").run()
    assert first.title[0].value == "용어집"
    # A new session of the same browser, no ?lang= in its URL: back in Korean.
    second = session(owner=owner)
    assert second.session_state[app_i18n.KEY] == "ko"
    assert "장치:" in sidebar_text(second)
    # A link that names its language wins over the saved one.
    third = session({"lang": "en"}, owner=owner)
    assert third.session_state[app_i18n.KEY] == "en"
    assert "Device:" in sidebar_text(third)
