"""The Python documentation's reStructuredText sources (Debian ``python3.X-doc``), one document
per page.

Sphinx copies each page's source next to the HTML as ``html/_sources/<page>.rst.txt``; those
are read instead of the HTML because they hold the same prose without the navigation, search
and index chrome of every generated page. The id is the page path without ``.rst.txt``
(``python_docs/library/json``).

Cleaning is deliberately light and line-based (no docutils: the pages use Sphinx-only
directives and roles that plain docutils rejects), so the text keeps reST's plain-text
readability rather than turning into rendered HTML:

- section adornment lines (``=====``, ``-----`` ...) and table borders are dropped;
- inline markup is reduced to its text: ``:func:`json.dumps``` -> ``json.dumps``, ``~a.b`` -> ``b``
  and ``title <target>`` -> ``title`` (as Sphinx renders them), ``:pep:`8``` -> ``PEP 8``,
  ````x```` -> ``x``, ``**x**``/``*x*`` -> ``x``, ```text <url>`_`` -> ``text``, footnote
  references dropped;
- directives: metadata and navigation (``module``, ``index``, ``toctree``, comments, link
  targets ...) are dropped with their block; object descriptions (``function``, ``class``,
  ``method`` ...) keep their signature as a line; ``versionadded``/``versionchanged``/
  ``deprecated`` become Sphinx's sentence ("New in version 3.2."); every other directive
  (``note``, ``seealso``, ``code-block`` ...) keeps its content, dedented, without its option
  lines;
- literal blocks (after ``::`` and in code directives) are kept verbatim: they are code, and
  inline rules would corrupt it (``2**8``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from openrecipe.errors import SourceError

SUFFIX = ".rst.txt"
_DIRECTIVE = re.compile(r"^\.\.\s+([\w:-]+)::\s*(.*)$")
_OPTION = re.compile(r"^:[\w -]+:(\s|$)")
_ADORNMENT = re.compile(r"""^([=\-~^"'`*+#<>:._])\1{2,}\s*$""")
_TABLE_BORDER = re.compile(r"^\s*[+|]?(?:[-=+|]{3,}\s*)+$")

# Dropped with their whole block: metadata, navigation and markup that renders no prose.
_DROP = {
    "module", "currentmodule", "moduleauthor", "sectionauthor", "index", "toctree", "highlight",
    "include", "literalinclude", "raw", "image", "figure", "tabularcolumns", "contents",
    "testsetup", "testcleanup", "audit-event", "audit-event-table", "program", "miscnews",
    "limited-api-list",
}  # fmt: skip
# Object descriptions: the signature (the directive's argument) is kept as a line.
_SIGNATURE = {
    "function", "method", "class", "attribute", "data", "exception", "decorator",
    "decoratormethod", "classmethod", "staticmethod", "abstractmethod", "coroutinefunction",
    "coroutinemethod", "awaitablefunction", "awaitablemethod", "opcode", "cmdoption",
    "option", "envvar", "describe", "object", "pdbcommand", "rubric", "topic", "sidebar",
}  # fmt: skip
_VERSION = {
    "versionadded": "New in version {}.",
    "versionchanged": "Changed in version {}.",
    "deprecated": "Deprecated since version {}.",
    "deprecated-removed": "Deprecated since version {}, will be removed in version {}.",
}
# Directives whose content is code: kept verbatim.
_LITERAL = {
    "code-block", "sourcecode", "code", "doctest", "testcode", "testoutput", "productionlist",
    "parsed-literal",
}  # fmt: skip
_ROLE_PREFIX = {"pep": "PEP ", "rfc": "RFC ", "issue": "bpo-", "gh": "gh-"}
_ROLE = re.compile(r":([\w:.+-]+):`([^`]*)`")
_INLINE = [
    (re.compile(r"``(.+?)``", re.DOTALL), r"\1"),
    (re.compile(r"`([^`<]*?)\s*<[^`>]*>`__?"), r"\1"),  # `text <url>`_
    (re.compile(r"`([^`]+)`__?"), r"\1"),  # `name`_ reference
    (re.compile(r"\s?\[#[\w-]*\]_"), ""),  # footnote reference
    (re.compile(r"\[(\d+)\]_"), ""),
    (re.compile(r"\*\*(\S(?:.*?\S)?)\*\*"), r"\1"),
    (re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])"), r"\1"),
    (re.compile(r"`([^`]+)`"), r"\1"),  # default role
    (re.compile(r"\\ "), ""),  # escaped space joining markup to a word
]


def _role(match: re.Match) -> str:
    role, content = match.group(1).split(":")[-1], match.group(2)
    explicit = re.fullmatch(r"(.*?)\s*<[^<>]*>", content, re.DOTALL)
    if explicit and explicit.group(1):
        return explicit.group(1)
    content = content.lstrip("!")
    if content.startswith("~"):
        content = content[1:].rsplit(".", 1)[-1]
    if role == "samp":
        content = content.replace("{", "").replace("}", "")
    return _ROLE_PREFIX.get(role, "") + content


def inline(line: str) -> str:
    """Prose (a paragraph, newlines allowed) with its inline markup reduced to text."""
    line = _ROLE.sub(_role, line)
    for pattern, repl in _INLINE:
        line = pattern.sub(repl, line)
    return line


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _block(lines: list[str], start: int, indent: int) -> int:
    """Index just past the block that is indented deeper than ``indent`` from ``start`` on
    (blank lines inside it included, trailing blank lines not)."""
    end = start
    for i in range(start, len(lines)):
        if lines[i].strip() and _indent(lines[i]) <= indent:
            break
        if lines[i].strip():
            end = i + 1
    return end


def _dedent(lines: list[str]) -> list[str]:
    width = min((_indent(line) for line in lines if line.strip()), default=0)
    return [line[width:] for line in lines]


def clean_lines(lines: list[str]) -> list[str]:
    """reST lines -> prose lines, following the rules in the module docstring (recursive over
    directive contents). Inline markup is reduced per paragraph, since a role may wrap onto the
    next line."""
    out: list[str] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            out.extend(inline("\n".join(paragraph)).split("\n"))
            paragraph.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        indent = _indent(line)
        if stripped.startswith(".. ") or stripped == "..":
            flush()
            end = _block(lines, i + 1, indent)
            out.extend(_directive(stripped, lines[i + 1 : end]))
            i = end
        elif _ADORNMENT.match(stripped) or _TABLE_BORDER.match(line):
            flush()
            i += 1
        elif stripped.endswith("::"):  # a literal block follows
            text = line.rstrip()[:-2]
            if text.strip():  # "Example::" -> "Example:"; "Example: ::" -> "Example:"
                paragraph.append(text.rstrip() + ("" if text[-1:].isspace() else ":"))
            flush()
            end = _block(lines, i + 1, indent)
            out.extend(_dedent(lines[i + 1 : end]))
            i = end
        elif not stripped:
            flush()
            out.append("")
            i += 1
        else:
            paragraph.append(line)
            i += 1
    flush()
    return out


def _directive(head: str, body: list[str]) -> list[str]:
    """One explicit markup block: a directive, comment, link target or footnote."""
    match = _DIRECTIVE.match(head)
    if not match:
        footnote = re.match(r"^\.\.\s+\[[^\]]*\]\s*(.*)$", head)
        if footnote:  # footnote text is prose; a comment or a link target is not
            return clean_lines([footnote.group(1), *_dedent(body)])
        return []
    name, argument = match.group(1).split(":")[-1].lower(), match.group(2).strip()
    if name in _DROP or head.startswith(".. |"):
        return []
    content = _dedent(body)
    if name in _SIGNATURE:
        while argument.endswith("\\") and content:  # signature continued on the next line
            argument = f"{argument[:-1].rstrip()} {content.pop(0).strip()}"
    while content and _OPTION.match(content[0].strip()):  # :synopsis:, :linenos: ...
        content = content[1:]
    if name in _LITERAL:
        return ["", *content, ""]
    lead: list[str] = []
    if name in _VERSION:
        versions = argument.split()
        template = _VERSION[name]
        if len(versions) >= template.count("{}"):
            lead = [template.format(*versions[: template.count("{}")])]
    elif name in _SIGNATURE and argument:
        lead = [_ROLE.sub(_role, argument)]  # no emphasis rules: `*args` is not italics
    elif name == "availability" and argument:
        lead = [f"Availability: {inline(argument)}."]
    return ["", *lead, *clean_lines(content), ""]


def tidy(lines: list[str]) -> str:
    """Trailing spaces off, at most one blank line in a row, no blank lines at the ends."""
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def page_text(raw: str) -> str:
    return tidy(clean_lines(raw.expandtabs(8).splitlines()))


def sources_dir(root: Path) -> Path:
    # python3.X-doc/html is a symlink to python3.X/html: count the real directory once.
    candidates = sorted(root.glob("usr/share/doc/python3*/html/_sources"))
    found = [p for p in candidates if not p.parent.is_symlink()]
    if len(found) != 1:
        raise SourceError(
            f"{root}: expected one usr/share/doc/python3*/html/_sources, found {found}"
        )
    return found[0]


def documents(root: Path, source: dict) -> Iterator[dict]:
    """Pages in path order; ids ``<source>/<page path without .rst.txt>``."""
    base = sources_dir(root)
    prefix = f"{source['package']}_{source['version']}/{base.relative_to(root)}"
    for path in sorted(base.rglob(f"*{SUFFIX}")):
        rel = path.relative_to(base).as_posix()
        text = page_text(path.read_text(encoding="utf-8"))
        if not text:
            continue
        yield {
            "id": f"{source['name']}/{rel[: -len(SUFFIX)]}",
            "url_or_path": f"{prefix}/{rel}",
            "text": text,
        }
