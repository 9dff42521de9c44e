"""Record datatrove 0.10.1's decisions on hostile documents for tests/unit/test_datatrove_filters.py.

Run with an interpreter that has ``datatrove[processing]==0.10.1`` and spaCy 3.8.18 (installed
apart from .venv: ``python3.11 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install -c
constraints.txt "datatrove[processing]==0.10.1" spacy regex``):

    /tmp/dtvenv/bin/python bench/record_datatrove_filter_cases.py tests/fixtures/datatrove_filter_cases.json

For each case it stores the text, the words of datatrove's English word tokenizer, the sentence
count of each of its lines (``split_into_sentences``), and the reason ``GopherQualityFilter()``,
``GopherRepetitionFilter()`` and ``C4QualityFilter()`` give (null: kept). The test compares ours
with these, so it needs no datatrove at run time. The cases sit at each rule's threshold (just
kept, just dropped) and on inputs that break naive tokenisers.
"""

from __future__ import annotations

import json
import sys

PROSE = (
    "The quiet river ran past the old mill and the children watched it with wonder.",
    "They said that the water had carried stories from the hills to the sea.",
    "Every morning the miller opened the doors and listened to the wheel turn.",
    "A traveller stopped to ask the way and stayed to hear the songs of the valley.",
    "When the rain came the fields turned green and the markets filled with bread.",
    "Nobody could remember a year when the harvest had been so generous to them.",
)


def prose(lines: int = 6) -> str:
    return "\n".join(PROSE[i % len(PROSE)] + f" Day {i}." for i in range(lines))


def words_doc(n: int, word: str = "cat", stop: str = "the and") -> str:
    """``n`` words: two stop words then ``word`` repeated, split over sentences of 10 words."""
    out = stop.split() + [word] * (n - len(stop.split()))
    lines = [" ".join(out[i : i + 10]) + "." for i in range(0, len(out), 10)]
    return "\n".join(lines)


def cases() -> dict[str, str]:
    c: dict[str, str] = {}
    c["empty"] = ""
    c["whitespace_only"] = " \n\t \n"
    c["only_punctuation"] = "... !!! ??? ### --- *** ((( ))) ;;; ::: ,,, ... " * 12
    c["prose_kept"] = prose(8)
    # Gopher quality thresholds: 50 non-symbol words; mean length in [3, 10]
    c["words_49"] = " ".join(["the", "and"] + ["cats"] * 47) + "."
    c["words_50"] = " ".join(["the", "and"] + ["cats"] * 48) + "."
    c["words_50_plus_symbols"] = " ".join(["the", "and"] + ["cats"] * 47 + ["--", "..."]) + "."
    c["mean_length_3"] = " ".join(["the", "and"] + ["cat"] * 60) + "."
    c["mean_length_below_3"] = " ".join(["the", "and"] + ["ox"] * 60) + "."
    c["mean_length_10"] = " ".join(["the", "and"] + ["abcdefghij"] * 60) + "."
    c["mean_length_above_10"] = " ".join(["the", "and"] + ["abcdefghijk"] * 60) + "."
    c["long_word_1001"] = prose(6) + "\n" + "x" * 1001 + " is a very long word indeed."
    # hashes and ellipses over words: 0.1 is kept, above dropped
    base = " ".join(["the", "and"] + ["cats"] * 88)  # 90 words
    c["hashes_at_ratio"] = base + " #" * 10  # 100 words, 10 '#'
    c["hashes_above_ratio"] = base + " #" * 11
    c["ellipsis_at_ratio"] = base + " …" * 10
    c["ellipsis_above_ratio"] = base + " ..." * 11
    # bullets and end ellipses over lines
    sentence = "the cat and the dog sat with the bird near the house"
    c["bullets_90_percent"] = "\n".join(
        [f"• {sentence} {i}" for i in range(9)] + [f"{sentence} end"]
    )
    c["bullets_all"] = "\n".join([f"- {sentence} {i}" for i in range(10)])
    c["end_ellipsis_30_percent"] = "\n".join(
        [f"{sentence} {i}..." for i in range(3)] + [f"{sentence} {i}." for i in range(7)]
    )
    c["end_ellipsis_40_percent"] = "\n".join(
        [f"{sentence} {i}…" for i in range(4)] + [f"{sentence} {i}." for i in range(6)]
    )
    # alphabetic words: 80% kept, below dropped
    c["alpha_80_percent"] = " ".join(["the", "and"] + ["word"] * 78 + ["1234"] * 20) + " z"
    c["alpha_below_80_percent"] = " ".join(["the", "and"] + ["word"] * 76 + ["1234"] * 22)
    c["one_stop_word"] = " ".join(["the"] + ["river"] * 60) + "."
    c["two_stop_words"] = " ".join(["the", "of"] + ["river"] * 60) + "."
    c["stop_words_capitalised"] = " ".join(["The", "Of", "AND"] + ["river"] * 60) + "."
    # other scripts (datatrove tokenises every language with the English rules)
    c["chinese"] = "。".join(["我們的河流從山上流到海裡，孩子們看著它"] * 30) + "。"
    c["chinese_spaced"] = " ".join(["這是 一個 關於 河流 的 故事 。"] * 20)
    c["arabic"] = " ".join(["هذا نص عربي قصير عن النهر والقرية والناس."] * 12)
    c["russian"] = "\n".join(["Это короткий текст о реке, деревне и людях вокруг них."] * 3 + [
        "Каждое утро мельник открывал двери и слушал, как вращается колесо.",
        "Путник остановился, чтобы спросить дорогу, и остался послушать песни.",
        "Когда пришёл дождь, поля стали зелёными, а рынки наполнились хлебом."])  # fmt: skip
    c["greek"] = " ".join(["Το ποτάμι κυλούσε ήσυχα δίπλα στον παλιό μύλο."] * 10)
    # tokenizer hostile: contractions, abbreviations, URLs, units, emoticons, quotes
    c["tokenizer_mix"] = (
        "Don't stop: it's 10km (6.2mi) to the U.S. border, e.g. via https://example.org/a?b=1 "
        "or www.example.com. I can't say y'all'd've liked it :) but we'll see (: =) <3 ;-). "
        "She said “hello”—and ‘goodbye’... The cost was $5.00, £3 or 20%! "
        "Well-known co-operation; A&P's 3rd-floor shop, 9:30a.m. to 5p.m., isn't open 'til "
        "noon. He'll be there at 5pm; they're gonna wanna go. (*_*) o.O ^_^ ¯\\_(ツ)_/¯ -- ok."
    )
    c["emoticon_across_space"] = (
        "經過等於 ( =)、加 (+)、或減 (-) 設定每種 and the (: ) ( :) (= ) x."
    )
    c["matcher_across_chunks"] = " ".join(["the", "and"] + ["a (", ":) b", "c ("] * 20) + " :-)"
    # C4: terminal punctuation, words per line, citations, lorem ipsum, {, javascript, policy
    c["c4_lorem_ipsum"] = prose(6) + "\nLorem Ipsum dolor sit amet, consectetur adipiscing."
    c["c4_lorem_ipsum_no_punct"] = prose(6) + "\nLorem ipsum dolor sit amet consectetur"
    c["c4_curly_bracket"] = prose(6) + "\nThe function returns {a dictionary} to the caller."
    c["c4_curly_then_lorem"] = prose(3) + "\nIt uses a { here too.\nAnd lorem ipsum here too."
    c["c4_javascript_lines"] = "\n".join(
        [f"Please enable JavaScript to view this page number {i}." for i in range(6)]
    )
    c["c4_policy_lines"] = "\n".join(
        ["This site uses cookies to work well.", "Read our Privacy Policy for details.",
         "By using it you accept the Terms of Use.", prose(3)]
    )  # fmt: skip
    c["c4_four_lines"] = prose(4)
    c["c4_five_lines"] = prose(5)
    c["c4_sentences_in_one_line"] = (
        "One cat sat. Two dogs ran. Three birds sang. Four fish swam. Five."
    )
    c["c4_four_sentences_one_line"] = "One cat sat. Two dogs ran. Three birds sang. Four fish swam."
    c["c4_whitespace_token_sentences"] = (
        "One cat sat .  . Two dogs ran.\tThree birds sang.\t.  Four."
    )
    c["c4_no_terminal_punct"] = "\n".join(PROSE[i].rstrip(".") for i in range(6))
    c["c4_quote_terminal"] = "\n".join(f'He said "the river is {i} miles long."' for i in range(6))
    c["c4_ellipsis_lines"] = "\n".join(f"The river ran past mill {i}..." for i in range(6))
    c["c4_citations"] = "\n".join(
        "The river is long and wide [1]. It flows [edit]" for _ in range(6)
    )
    c["c4_citation_needed"] = "\n".join(
        f"The river {i} runs to the sea.[citation needed]" for i in range(6)
    )
    c["c4_two_word_lines"] = "\n".join("Rivers flow." for _ in range(10))
    c["c4_crlf_and_separators"] = "\r\n".join(PROSE) + "\u2028" + "\x0c".join(PROSE)
    # Gopher repetition: paragraphs, lines, top n-grams, duplicated n-grams
    para = "The river ran past the old mill and the children watched."
    c["rep_duplicate_paragraphs"] = "\n\n".join([para, para, para, prose(2)])
    c["rep_duplicate_lines"] = "\n".join([PROSE[0]] * 4 + list(PROSE[1:4]))
    c["rep_top_2_gram"] = " ".join(["red fish"] * 20 + list(PROSE))
    c["rep_top_3_gram"] = " ".join(["the blue whale"] * 12 + list(PROSE))
    c["rep_duplicated_5_grams"] = " ".join(list(PROSE) + ["a b c d e f g h i j"] * 6)
    c["rep_duplicated_10_grams"] = " ".join(
        list(PROSE) + ["one two three four five six seven eight nine ten"] * 2 + list(PROSE[:2])
    )
    # "".join makes "ab"+"c" and "a"+"bc" the same n-gram string
    c["rep_joined_ngram_collision"] = " ".join(
        list(PROSE) + ["ab c de f gh i jk l mn o"] * 2 + ["a bc d ef g hi j kl m no"] * 3
    )
    c["rep_trailing_newlines"] = prose(6) + "\n\n\n\n" + PROSE[0] + "\n\n" + PROSE[0]
    c["rep_short_text"] = "a b"
    c["code"] = (
        "def f(x):\n    return {k: v for k, v in x.items()}\n\n# comment\nclass A:\n    pass\n"
    ) * 6
    return c


def main() -> int:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from datatrove.utils.text import split_into_sentences
    from datatrove.utils.word_tokenizers import load_word_tokenizer

    tok = load_word_tokenizer("en")
    filters = {
        "gopher_quality": GopherQualityFilter(),
        "gopher_repetition": GopherRepetitionFilter(),
        "c4_quality": C4QualityFilter(),
    }
    out = []
    for name, text in cases().items():
        row = {"name": name, "text": text, "words": tok.word_tokenize(text)}
        row["sentences"] = [
            len(split_into_sentences(line.strip())) for line in text.splitlines() if line.strip()
        ]
        for key, f in filters.items():
            verdict = f.filter(Document(text=text, id=name, metadata={}))
            row[key] = None if verdict is True else verdict[1]
        out.append(row)
    with open(sys.argv[1], "w", encoding="utf-8") as handle:
        json.dump(out, handle, ensure_ascii=False, indent=1)
        handle.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
