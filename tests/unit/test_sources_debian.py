"""acquire: extractors of the Debian-packaged sources (SWORD Bibles, Python docs, Debian
Handbook, GNOME help), each on a small fixture of its real on-disk format built here."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from pysword.canons import canons

from openrecipe.data.acquire import EXTRACTORS
from openrecipe.data.sources import debian_handbook, gnome_help, markup_text, python_docs, sword
from openrecipe.errors import SourceError


def _source(name: str, package: str) -> dict:
    return {"name": name, "package": package, "version": "1.0-1"}


# --- SWORD zText --------------------------------------------------------------------------------
CONF = """[TestBible]
DataPath=./modules/texts/ztext/testbible/
ModDrv=zText
SourceType=OSIS
Encoding=UTF-8
CompressType=ZIP
BlockType=BOOK
Versification=KJV
Lang=en
"""


def _kjv_ot_keys() -> int:
    books = canons["kjv"]["ot"]
    return 2 + sum(sum(lengths) + len(lengths) + 1 for *_, lengths in books)


def _write_ztext(root: Path, texts: dict[int, str], n_keys: int | None = None) -> None:
    """An OT-only zText module: key index -> OSIS text, everything in one zlib block."""
    (root / "usr/share/sword/mods.d").mkdir(parents=True)
    (root / "usr/share/sword/mods.d/testbible.conf").write_text(CONF, encoding="utf-8")
    data = root / "usr/share/sword/modules/texts/ztext/testbible"
    data.mkdir(parents=True)
    block, keys = b"", b""
    for index in range(_kjv_ot_keys() if n_keys is None else n_keys):
        raw = texts.get(index, "").encode("utf-8")
        keys += struct.pack("<IIH", 0, len(block) if raw else 0, len(raw))
        block += raw
    compressed = zlib.compress(block)
    (data / "ot.bzv").write_bytes(keys)
    (data / "ot.bzs").write_bytes(struct.pack("<III", 0, len(compressed), len(block)))
    (data / "ot.bzz").write_bytes(compressed)


# Keys: 0 module, 1 testament, 2 Genesis heading, 3 Gen.1 heading, 4.. Gen.1:1..31 (KJV),
# 35 Gen.2 heading, 36 Gen.2:1.
GEN_1_1 = (
    '<div sID="p1" type="x-p"/><title type="section">The Creation</title>'
    '<w lemma="strong:H7225">In the beginning</w> <w lemma="strong:H0430">God</w>'
    '<note placement="foot"><reference type="annotateRef">1:1 </reference>Elohim.</note>'
    '<w lemma="strong:H1254">created</w> the heavens &amp; the earth. '
)
GEN_1_2 = '<div eID="p1" type="x-p"/><div sID="p2" type="x-p"/>And <q who="God">light</q> was.'
GEN_2_1 = (
    '<title canonical="true" type="psalm">A Song.</title><lg sID="g1"/><l sID="l1"/>Thus the'
    ' heavens were finished,<l eID="l1"/> <l sID="l2"/>and the earth.<l eID="l2"/><lg eID="g1"/>'
)


def test_sword_chapters_ids_and_markup_stripped(tmp_path):
    _write_ztext(
        tmp_path,
        {
            2: '<div type="book" osisID="Gen"/><title type="main">Preface</title>',
            3: '<chapter osisID="Gen.1" sID="Gen.1"/>',
            4: GEN_1_1,
            5: GEN_1_2,
            36: GEN_2_1,
        },
    )
    docs = list(sword.documents(tmp_path, _source("bible_web", "sword-text-web")))
    assert [d["id"] for d in docs] == ["bible_web/Gen/001", "bible_web/Gen/002"]
    assert docs[0]["text"] == (
        "In the beginning God created the heavens & the earth.\n\nAnd light was."
    )
    assert docs[1]["text"] == "A Song.\n\nThus the heavens were finished,\nand the earth."
    assert docs[0]["url_or_path"].endswith("modules/texts/ztext/testbible#Gen.1")
    assert "lang" not in docs[0]  # the source's declared language applies
    assert docs == list(sword.documents(tmp_path, _source("bible_web", "sword-text-web")))


def test_sword_wrong_versification_is_an_error(tmp_path):
    _write_ztext(tmp_path, {4: "In the beginning."}, n_keys=40)
    with pytest.raises(SourceError, match="Versification"):
        list(sword.documents(tmp_path, _source("b", "sword-text-web")))


def test_osis_note_gap_becomes_space_only_between_words():
    text = sword.tidy(sword.osis_to_text("God<note>n</note>created, then<note>n</note>. End"))
    assert text == "God created, then. End"


# --- Python docs (reST sources) -------------------------------------------------------------------
PAGE_RST = """\
:mod:`json` --- JSON encoder
============================

.. module:: json
   :synopsis: Encode and decode the JSON format.

.. _json-intro:

The :mod:`json` module, see :pep:`8` and :func:`~json.decoder.loads`
(like :ref:`the table
<py-to-json>`) and ``dumps()``, **really** *fast* [#note]_.

.. function:: dumps(obj, *, \\
                    indent=None, **kw)

   Serialize *obj*.

   .. versionadded:: 3.2

   Example::

      >>> 2**8 ** 1
      256

.. note::
   A note with `a link <https://json.org>`_.

.. code-block:: shell-session

   $ python -m json.tool *x*

.. [#note] Footnote text.

..
   A comment that is dropped.
"""


def _write_pydoc(root: Path) -> None:
    base = root / "usr/share/doc/python3.11/html/_sources"
    (base / "library").mkdir(parents=True)
    (base / "library/json.rst.txt").write_text(PAGE_RST, encoding="utf-8")
    (base / "contents.rst.txt").write_text("Contents\n========\n\nAll.\n", encoding="utf-8")
    (base / "library/notes.txt").write_text("not a page", encoding="utf-8")
    (root / "usr/share/doc/python3.11-doc").mkdir()
    (root / "usr/share/doc/python3.11-doc/html").symlink_to("../python3.11/html")


def test_python_docs_pages_and_cleaning(tmp_path):
    _write_pydoc(tmp_path)
    docs = list(python_docs.documents(tmp_path, _source("python_docs", "python3.11-doc")))
    assert [d["id"] for d in docs] == ["python_docs/contents", "python_docs/library/json"]
    assert docs[1]["url_or_path"] == (
        "python3.11-doc_1.0-1/usr/share/doc/python3.11/html/_sources/library/json.rst.txt"
    )
    assert docs[1]["text"] == (
        "json --- JSON encoder\n\n"
        "The json module, see PEP 8 and loads\n"
        "(like the table) and dumps(), really fast.\n\n"
        "dumps(obj, *, indent=None, **kw)\n\n"
        "Serialize obj.\n\n"
        "New in version 3.2.\n\n"
        "Example:\n\n"
        ">>> 2**8 ** 1\n"  # literal block: dedented, no inline rules
        "256\n\n"
        "A note with a link.\n\n"
        "$ python -m json.tool *x*\n\n"
        "Footnote text."
    )
    assert docs == list(python_docs.documents(tmp_path, _source("python_docs", "python3.11-doc")))


# --- Debian Handbook (Publican XHTML) ----------------------------------------------------------
HANDBOOK_PAGE = """<?xml version="1.0" encoding="UTF-8" standalone="no"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" "x">
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>6.2. {title}</title>
<style>body {{}}</style></head><body>
<div id="banner"><a href="x"><span class="text">Download the ebook</span></a></div>
<p id="title"><a class="left" href="x"><img alt="Product Site" src="a.png" /></a></p>
<ul class="docnav top"><li class="previous"><a href="p.html"><strong>Prev</strong></a></li></ul>
<div class="section"><div class="titlepage"><h2 class="title">6.2. <code>apt</code> {title}</h2>
</div><a id="i1" class="indexterm"></a><div class="toc"><dl><dt>6.2.1 Contents</dt></dl></div>
<div class="para">
  {para} <code class="command">apt   install</code>.
</div><pre class="screen"># apt install  x
  indented</pre><script>var x = 1;</script>
<ul><li>one</li><li>two</li></ul></div>
<ul class="docnav"><li class="next"><a href="n.html"><strong>Next</strong>6.3</a></li></ul>
</body></html>"""


def _write_handbook(root: Path) -> None:
    base = root / "usr/share/doc/debian-handbook/html"
    pages = {"en-US": ("Commands", "Use"), "pt-BR": ("Comandos", "Use o")}
    for locale, (title, para) in pages.items():
        (base / locale / "Common_Content").mkdir(parents=True)
        (base / locale / "sect.apt.html").write_text(
            HANDBOOK_PAGE.format(title=title, para=para), encoding="utf-8"
        )


def test_debian_handbook_pages_per_locale_without_chrome(tmp_path):
    _write_handbook(tmp_path)
    docs = list(debian_handbook.documents(tmp_path, _source("debian_handbook", "debian-handbook")))
    assert [(d["id"], d["lang"]) for d in docs] == [
        ("debian_handbook/en-US/sect.apt", "en"),
        ("debian_handbook/pt-BR/sect.apt", "pt"),
    ]
    assert docs[0]["text"] == (
        "6.2. apt Commands\n\nUse apt install.\n\n# apt install  x\n  indented\n\none\n\ntwo"
    )
    assert docs[1]["url_or_path"].endswith("debian-handbook/html/pt-BR/sect.apt.html")
    assert docs == list(
        debian_handbook.documents(tmp_path, _source("debian_handbook", "debian-handbook"))
    )


@pytest.mark.parametrize(
    ("locale", "lang"),
    [("fr-FR", "fr"), ("pt-BR", "pt"), ("zh-TW", "zh"), ("nb-NO", "no"), ("pt_BR", "pt"),
     ("sr@latin", "sr"), ("C", "en")],
)  # fmt: skip
def test_locale_lang(locale, lang):
    assert markup_text.locale_lang(locale) == lang


# --- GNOME help (Mallard) ----------------------------------------------------------------------
MALLARD_PAGE = """<page xmlns="http://projectmallard.org/1.0/"
      xmlns:if="http://projectmallard.org/if/1.0/" type="topic" id="shortcuts">
  <info>
    <link type="guide" xref="keyboard"/>
    <credit type="author"><name>Jane Writer</name><email>jane@example.org</email></credit>
    <include href="legal.xml" xmlns="http://www.w3.org/2001/XInclude"/>
    <desc>Define shortcuts.</desc>
  </info>
  <title>{title}</title>
  <p>Press <keyseq><key>Ctrl</key><key>Alt</key><key>T</key></keyseq> or open
  <guiseq><gui>Settings</gui><gui>Keyboard</gui></guiseq>, see <link xref="x">help</link>.</p>
  <comment><cite>editor</cite><p>Rewrite this.</p></comment>
  <steps><item><p>First step.</p></item><item><p>Run <cmd>ls</cmd>.</p></item></steps>
  <if:choose>
    <if:when test="!platform:classic"><p>Modern text.</p></if:when>
    <if:else><p>Classic text.</p></if:else>
  </if:choose>
  <media type="image" src="figures/x.png"><p>Fallback.</p></media>
  <table><tr><td><p>Cell A</p></td><td><p>Cell B</p></td></tr></table>
  <screen>$ gsettings set  a b
  next</screen>
  <links type="topic"/>
</page>
"""


def _write_help(root: Path) -> None:
    base = root / "usr/share/help"
    for locale, title in (("C", "Keyboard shortcuts"), ("pt_BR", "Atalhos de teclado")):
        (base / locale / "gnome-help").mkdir(parents=True)
        (base / locale / "gnome-help/shortcuts.page").write_text(
            MALLARD_PAGE.format(title=title), encoding="utf-8"
        )
    (base / "pt_BR/gnome-help/broken.page").write_text("<page><p>unclosed</page>", "utf-8")
    (base / "pt_BR/gnome-help/linked.page").symlink_to("../../C/gnome-help/shortcuts.page")


def test_gnome_help_pages_per_locale(tmp_path):
    _write_help(tmp_path)
    docs = list(gnome_help.documents(tmp_path, _source("gnome_help", "gnome-user-docs")))
    assert [(d["id"], d["lang"]) for d in docs] == [
        ("gnome_help/C/gnome-help/shortcuts", "en"),
        ("gnome_help/pt_BR/gnome-help/broken", "pt"),
        ("gnome_help/pt_BR/gnome-help/shortcuts", "pt"),
    ]
    assert docs[0]["text"] == (
        "Keyboard shortcuts\n\n"
        "Press Ctrl+Alt+T or open Settings ▸ Keyboard, see help.\n\n"
        "First step.\n\nRun ls.\n\nModern text.\n\nCell A\n\nCell B\n\n"
        "$ gsettings set  a b\n  next"
    )
    assert docs[1]["text"] == ""  # unparseable: kept, empty, so curation quarantines it
    assert docs[2]["text"].startswith("Atalhos de teclado\n\n")
    assert docs == list(gnome_help.documents(tmp_path, _source("gnome_help", "gnome-user-docs")))


def test_debian_sources_are_registered():
    for package in (
        "sword-text-web",
        "sword-text-sparv",
        "python3.11-doc",
        "debian-handbook",
        "gnome-user-docs",
    ):
        assert EXTRACTORS[("debian", package)][0] == ""
