"""The catalogues' tool: find the messages in the code, update both languages' catalogues, and
check them.

    .venv/bin/python tools/i18n.py update   # new messages into en and ko (ko: untranslated)
    .venv/bin/python tools/i18n.py check    # what the test suite checks; exit 1 on a problem
    .venv/bin/python tools/i18n.py todo     # the Korean messages still to translate
    .venv/bin/python tools/i18n.py add --po locales/ko/LC_MESSAGES/part.po --json ko.json

``check`` fails when a message of the code is missing from a language's catalogue, when a Korean
message is untranslated, when a translation's placeholders differ from its key's, when a message
is not a literal, and when app.py, a page or a view passes a user-facing literal to Streamlit
or to a figure without the catalogue (see :func:`bypasses`).
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from frcnn_core.i18n import DOMAIN, LANGUAGES, LOCALES, catalogue_paths  # noqa: E402

# Where messages are: every Python file of the app, its pages, its library and the core.
SOURCES = ("app.py", "app_pages", "explorer", "frcnn_core")
KEYWORDS = {"_": None, "N_": None, "ngettext": (1, 2)}
# Where no user-facing literal may bypass the catalogue.
UI_SOURCES = ("app.py", "app_pages", "explorer/views")
SOURCE_LANG = "en"
KEEP = "i18n: keep"  # a comment on a line whose literals are not text (a CSS class, an id, ...)


@dataclass(frozen=True)
class Message:
    id: str | tuple[str, str]
    locations: tuple[tuple[str, int], ...]


def source_files(root: Path = ROOT, sources: Iterable[str] = SOURCES) -> Iterator[Path]:
    for name in sources:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def extract(root: Path = ROOT) -> tuple[dict[str | tuple[str, str], Message], list[str]]:
    """The messages of the code, and problems (a message that is not a literal)."""
    found: dict[str | tuple[str, str], list[tuple[str, int]]] = {}
    problems: list[str] = []
    for path in source_files(root):
        rel = str(path.relative_to(root))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Babel's note on an f-string: _built_messages
            extracted = list(
                extract_from_file(
                    "python", str(path), keywords=KEYWORDS, comment_tags=(), strip_comment_tags=True
                )
            )
        for lineno, text, _comments, _context in extracted:
            ids = text if isinstance(text, tuple) else (text,)
            if any(not t for t in ids):
                continue  # a name: see _built_messages
            key = text if isinstance(text, str) else (text[0], text[1])
            found.setdefault(key, []).append((rel, lineno))
        problems += _built_messages(path, rel)
    messages = {k: Message(k, tuple(v)) for k, v in found.items()}
    return messages, problems


def _built_messages(path: Path, rel: str) -> list[str]:
    """``_()``/``N_()``/``ngettext()`` of an f-string, a concatenation or a formatted string: the
    catalogue cannot hold it (Babel skips it with a warning; here it is a problem). A name
    (``_(PARAM.label)``) is fine: what it holds was marked with ``N_`` where defined."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and _call_name(node) in KEYWORDS and node.args:
            for arg in node.args[:2] if _call_name(node) == "ngettext" else node.args[:1]:
                if isinstance(arg, ast.JoinedStr | ast.BinOp) or (
                    isinstance(arg, ast.Call) and _call_name(arg) == "format"
                ):
                    out.append(f"{rel}:{node.lineno}: a message that is not a literal")
    return out


def template(messages: dict[str | tuple[str, str], Message]) -> Catalog:
    catalog = Catalog(domain=DOMAIN, project="Faster R-CNN Explorer", charset="utf-8")
    for key, message in messages.items():
        catalog.add(key, locations=message.locations)
    return catalog


def load(lang: str, root: Path = ROOT) -> Catalog:
    from frcnn_core.i18n import read_catalogue

    return read_catalogue(lang, root / "locales")


def catalogue_file(lang: str, root: Path = ROOT) -> Path:
    return root / "locales" / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


def save(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    write_po(buffer, catalog, width=100, sort_output=False, include_previous=False)
    path.write_bytes(buffer.getvalue())


def update(root: Path = ROOT) -> dict[str, int]:
    """Every language's catalogue gets the code's messages (kept translations stay; messages
    the code no longer has are dropped); several files of a language are merged into one.
    Returns how many messages each language still lacks a translation for."""
    messages, problems = extract(root)
    for p in problems:
        print(p, file=sys.stderr)
    tpl = template(messages)
    untranslated = {}
    for lang in LANGUAGES:
        old = load(lang, root)
        new = Catalog(locale=LOCALES[lang], domain=DOMAIN, project="Faster R-CNN Explorer")
        new.language_team = LANGUAGES[lang]
        missing = 0
        for message in tpl:
            if not message.id:
                continue
            known = old.get(message.id)
            string = (
                known.string
                if known is not None
                else ("" if isinstance(message.id, str) else ("",))
            )
            new.add(message.id, string, locations=message.locations)
            if lang != SOURCE_LANG and not _complete(string):
                missing += 1
        for path in catalogue_paths(lang, root / "locales"):
            if path.name != f"{DOMAIN}.po":
                path.unlink()
        save(new, catalogue_file(lang, root))
        untranslated[lang] = missing
    return untranslated


def _complete(string: object) -> bool:
    if isinstance(string, tuple | list):
        return bool(string) and all(bool(s) for s in string)
    return bool(string)


PLACEHOLDER = re.compile(r"(?<!\{)\{([^{}]*)\}(?!\})")


def placeholders(text: str) -> set[str] | None:
    """The names of ``text``'s ``{name}`` placeholders (format spec left out); None when one
    is positional (``{}`` or ``{0}``), which the check refuses."""
    names = set()
    for inner in PLACEHOLDER.findall(text):
        name = re.split(r"[!:.\[]", inner, maxsplit=1)[0]
        if not name or name.isdigit():
            return None
        names.add(name)
    return names


def check_catalogues(
    messages: dict[str | tuple[str, str], Message], catalogues: dict[str, Catalog]
) -> list[str]:
    """Problems: a message missing from a language, untranslated (other than English), or
    translated with other placeholders than its key's."""
    problems = []
    for key, message in messages.items():
        where = "{}:{}".format(*message.locations[0])
        ids = (key,) if isinstance(key, str) else key
        names = placeholders(ids[0])
        if names is None or any(placeholders(i) != names for i in ids[1:]):
            problems.append(f"{where}: {ids[0]!r} has a positional or mismatched placeholder")
            continue
        for lang, catalog in catalogues.items():
            found = catalog.get(key)
            if found is None:
                problems.append(f"{where}: {ids[0]!r} is missing from the {lang} catalogue")
                continue
            if lang == SOURCE_LANG and not _complete(found.string):
                continue  # English: an empty translation means the key itself
            if not _complete(found.string):
                problems.append(f"{where}: {ids[0]!r} is not translated into {lang}")
                continue
            strings = found.string if isinstance(found.string, tuple | list) else (found.string,)
            for s in strings:
                if placeholders(s) != names:
                    problems.append(
                        f"{where}: the {lang} translation of {ids[0]!r} has placeholders "
                        f"{sorted(placeholders(s) or [])}, the key {sorted(names)}"
                    )
    return problems


# -- literals that bypass the catalogue ------------------------------------------------------

# Streamlit calls whose text arguments a user reads, and our own wrappers around them.
UI_CALLS = {
    "markdown", "caption", "header", "subheader", "title", "write", "text", "info", "warning",
    "error", "success", "toast", "button", "download_button", "link_button", "page_link",
    "slider", "select_slider", "selectbox", "multiselect", "radio", "checkbox", "toggle",
    "number_input", "text_input", "text_area", "file_uploader", "metric", "tabs", "expander",
    "popover", "form_submit_button", "spinner", "status", "segmented_control", "pills",
    "color_picker", "date_input", "chat_input", "latex_caption", "Page", "intro", "note",
    "TextColumn", "NumberColumn", "CheckboxColumn", "ProgressColumn", "SelectboxColumn",
    "ImageColumn", "LinkColumn", "Column", "add_annotation", "update_layout", "update_xaxes",
    "update_yaxes", "Scatter", "Heatmap", "Bar", "Histogram", "Image", "Box", "Pie", "image",
    "dataframe", "data_editor", "plain_message", "param_widget", "add_boxes", "add_gt",
    "image_figure", "make_subplots",
}  # fmt: skip
# Keyword arguments that are text a user reads (``key=``, ``format=`` and the like are not).
UI_KEYWORDS = {
    "label", "help", "placeholder", "caption", "title", "name", "text", "hovertext",
    "hovertemplate", "xaxis_title", "yaxis_title", "legend_title", "legendgrouptitle",
    "body", "subplot_titles", "column_titles", "row_titles", "title_text", "tooltip",
    "value_label", "delta", "options_text", "annotation_text", "hint",
}  # fmt: skip
WORD = re.compile(r"[A-Za-z]{2,}")
# Text that is the same in both languages: units, symbols, code a user types.
NOT_WORDS = re.compile(
    r"`[^`]*`|\$[^$]*\$|:material/[a-z_]+:|https?://\S+|<[^>]*>|&[a-z]+;|"
    r"\b[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\b|[\w/{}.-]+\.(?:py|png|jpg|jpeg|json|zip|pt|pth|po|csv|txt)\b|\b(?:px|ms|MB|GB|GiB|MiB|"
    r"kB|fps|IoU|RPN|NMS|RoI|RoIs|GT|FPN|VGG16|ResNet|COCO|KITTI|mAP|AP|AR|CPU|GPU|CUDA|fc6|fc7|"
    r"conv5_3|x1|y1|x2|y2|dx|dy|dw|dh|ID|id|OK|PNG|JPEG|JSON|CSV|ZIP|zip|json|csv|png|jpg|pt|"
    r"torchvision|PyTorch|FRCNN_[A-Z_]+)\b"
)


def user_text(node: ast.AST) -> bool:
    """A literal (or f-string) with words in it, after leaving out what is not language."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(WORD.search(NOT_WORDS.sub(" ", node.value)))
    if isinstance(node, ast.JoinedStr):
        parts = "".join(
            v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
        )
        return bool(WORD.search(NOT_WORDS.sub(" ", parts)))
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return user_text(node.left) or user_text(node.right)
    if isinstance(node, ast.IfExp):
        return user_text(node.body) or user_text(node.orelse)
    return False


def _call_name(call: ast.Call) -> str | None:
    f = call.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return None


def bypasses(root: Path = ROOT, sources: Iterable[str] = UI_SOURCES) -> list[str]:
    """User-facing literals passed to a UI call without :func:`frcnn_core.i18n._`: the text
    arguments of Streamlit's calls, our wrappers' and plotly's (positional and the keywords of
    :data:`UI_KEYWORDS`), and the items of an ``options``/``tabs`` list. A line with the
    comment ``i18n: keep`` is left out."""
    problems = []
    for path in source_files(root, sources):
        text = path.read_text(encoding="utf-8")
        lines = text.splitlines()
        rel = str(path.relative_to(root))
        for node in ast.walk(ast.parse(text)):
            if not isinstance(node, ast.Call) or _call_name(node) not in UI_CALLS:
                continue
            candidates: list[ast.AST] = []
            for arg in node.args:
                candidates += arg.elts if isinstance(arg, ast.List | ast.Tuple) else [arg]
            for kw in node.keywords:
                if kw.arg in UI_KEYWORDS:
                    candidates.append(kw.value)
                elif kw.arg in {"options", "tabs"} and isinstance(kw.value, ast.List | ast.Tuple):
                    candidates += kw.value.elts
            for c in candidates:
                if user_text(c) and KEEP not in lines[c.lineno - 1]:
                    snippet = ast.get_source_segment(text, c) or ""
                    problems.append(f"{rel}:{c.lineno}: {snippet[:70]} is not from the catalogue")
    return problems


def check(root: Path = ROOT, langs: Iterable[str] | None = None) -> list[str]:
    messages, problems = extract(root)
    catalogues = {lang: load(lang, root) for lang in (langs or LANGUAGES)}
    return problems + check_catalogues(messages, catalogues) + bypasses(root)


def add(po: Path, translations: dict[str, str | list[str]], root: Path = ROOT) -> list[str]:
    """Put ``translations`` ({English: Korean}; a plural message by its singular, with a list of
    Korean forms) into the Korean catalogue file ``po`` (created if need be; its other entries
    kept). Returns the keys that the code does not have (left out)."""
    messages, _ = extract(root)
    by_singular = {(k if isinstance(k, str) else k[0]): k for k in messages}
    catalog = Catalog(locale=LOCALES["ko"], domain=DOMAIN)
    if po.exists():
        with po.open("rb") as f:
            for m in read_po(f, locale=LOCALES["ko"]):
                if m.id:
                    catalog.add(m.id, m.string, locations=m.locations)
    unknown = []
    for english, korean in translations.items():
        key = by_singular.get(english)
        if key is None:
            unknown.append(english)
            continue
        if isinstance(key, tuple):
            string: str | tuple[str, ...] = tuple(korean) if isinstance(korean, list) else (korean,)
        else:
            string = korean if isinstance(korean, str) else korean[0]
        if catalog.get(key) is not None:
            catalog.delete(key)
        catalog.add(key, string, locations=messages[key].locations)
    save(catalog, po)
    return unknown


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["update", "check", "todo", "add"])
    parser.add_argument("--under", help="todo/check: only files under this path")
    parser.add_argument("--lang", choices=list(LANGUAGES), help="check: only this catalogue")
    parser.add_argument("--write", help="todo: also write them to this .po file, to translate")
    parser.add_argument("--po", help="add: the Korean .po file to add to")
    parser.add_argument("--json", help="add: a JSON file {English: Korean}")
    args = parser.parse_args()
    if args.command == "add":
        import json

        table = json.loads(Path(args.json).read_text(encoding="utf-8"))
        unknown = add(Path(args.po), table)
        for u in unknown:
            print(f"not a message of the code (left out): {u!r}")
        print(f"{len(table) - len(unknown)} translation(s) in {args.po}")
        return 0
    if args.command == "update":
        for lang, missing in update().items():
            print(f"{lang}: {missing} message(s) to translate")
        return 0
    if args.command == "todo":
        messages, _ = extract()
        ko = load("ko")
        todo = Catalog(locale=LOCALES["ko"], domain=DOMAIN)
        for key, m in messages.items():
            if args.under and not any(loc[0].startswith(args.under) for loc in m.locations):
                continue
            found = ko.get(key)
            if found is None or not _complete(found.string):
                print(f"{m.locations[0][0]}:{m.locations[0][1]}: {key!r}")
                todo.add(key, "" if isinstance(key, str) else ("",), locations=m.locations)
        if args.write:
            save(todo, Path(args.write))
        return 0
    problems = check(langs=[args.lang] if args.lang else None)
    if args.under:
        problems = [p for p in problems if p.startswith(args.under)]
    for p in problems:
        print(p)
    print(f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
