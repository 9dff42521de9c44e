"""Language ID: the bundled lid.176.ftz model, offline, deterministic."""

import socket

import pytest

from openrecipe.data import fasttext_langid

SENTENCES = {
    "en": "The old house at the end of the lane had stood empty for many years before she came.",
    "es": "La casa vieja al final del camino llevaba muchos años vacía antes de que ella llegara.",
    "de": "Das alte Haus am Ende des Weges stand viele Jahre leer, bevor sie dort ankam.",
    "fr": "La vieille maison au bout du chemin était restée vide pendant des années avant elle.",
}


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: the lite model must ship in the wheel."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("lang", sorted(SENTENCES))
def test_identifies_language(no_network, lang):
    found, confidence = fasttext_langid.identify(SENTENCES[lang])
    assert found == lang
    assert 0.5 < confidence <= 1.0


def test_deterministic_and_long_documents_not_cut_to_a_title(no_network):
    doc = "CAPÍTULO I\n\n" + " ".join([SENTENCES["es"]] * 20)
    assert fasttext_langid.identify(doc) == fasttext_langid.identify(doc)
    assert fasttext_langid.identify(doc)[0] == "es"


def test_empty_text_is_undetermined():
    assert fasttext_langid.identify(" \n\t") == ("und", 0.0)


def test_batch_skips_code_and_keeps_order(no_network):
    docs = [
        {"id": "a", "lang": "en", "text": SENTENCES["de"]},
        {"id": "b", "lang": "code", "text": "def f(x):\n    return x + 1\n"},
        {"id": "c", "lang": "en", "text": SENTENCES["en"]},
    ]
    results = fasttext_langid.identify_docs(docs)
    assert [(r.id, r.lang, r.skipped) for r in results] == [
        ("a", "de", False),
        ("b", "code", True),
        ("c", "en", False),
    ]
    assert results[1].confidence == 1.0


def test_model_info_names_the_bundled_file():
    info = fasttext_langid.model_info()
    assert info["version"] == "1.1.0"
    assert info["model"] == "lite:lid.176.ftz"
    assert len(info["sha256"]) == 64
