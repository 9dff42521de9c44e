"""The words and sentences datatrove's English tokenizer gives, without spaCy.

datatrove 0.10.1 splits every language's text into words with ``load_word_tokenizer("en")``:
``spacy.blank("en")`` plus a ``sentencizer``, whitespace tokens dropped (``strip_strings``). Its
Gopher and C4 filters decide on those words (counts, lengths, stop words, n-grams) and on the
number of sentences of a line, so a filter that must make datatrove's decisions needs exactly
spaCy's tokens. spaCy 3.8 with its English data is about 190 MB installed (spaCy, thinc, blis), too
heavy to add for a tokenizer, so this module runs spaCy's tokenizer algorithm
(``spacy/tokenizer.pyx``: ``_tokenize_affixes``, ``_split_affixes``, ``_attach_tokens``,
``_apply_special_cases``) ported line by line, on spaCy's own rules: the prefix, suffix, infix and
URL regular expressions and the 1,347 special cases of ``spacy.blank("en").tokenizer``, dumped
verbatim by ``bench/dump_spacy_en_rules.py`` (spaCy 3.8.18, MIT licence) into
``spacy_en_rules.json``. spaCy compiles those patterns with Python's ``re``, as here, so each
rule matches what it matches there.

Text is cut where spaCy cuts it, at whitespace (``str.split`` and spaCy both use
``Py_UNICODE_ISSPACE``); each distinct chunk is tokenised once and its words kept (a corpus
repeats its chunks, so most chunks are looked up, not tokenised). spaCy's special-case matcher
runs over the whole document's tokens; here it runs within a chunk, which is the same unless a
phrase can match across two chunks: a match across whitespace names no special case (its text
holds the whitespace) but still shadows overlapping matches, so wherever the last token of a
chunk and the first of the next are neighbours in a phrase, ``document_tokens`` runs spaCy's
matcher over the whole text (``gopher_filters`` over just the run of chunks concerned). The
sentence count runs the matcher over the whole line always. ``bench/gopher_c4_vs_datatrove.py``
checks the outcome: datatrove's decisions on every document of the default corpus, and
tests/unit/test_datatrove_filters.py datatrove's words on hostile cases (emoticons across a space
among them).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import cache
from itertools import pairwise
from pathlib import Path

_RULES = Path(__file__).with_name("spacy_en_rules.json")

# spacy.pipeline.Sentencizer.default_punct_chars (spaCy 3.8): a token that is one of these ends
# a sentence.
SENT_PUNCT = frozenset(
    "!.?։؟۔܀܁܂߹।॥၊။።፧፨᙮᜵᜶᠃᠉᥄᥅᪨᪩᪪᪫᭚᭛᭞᭟᰻᰼᱾᱿‼‽⁇⁈⁉⸮⸼꓿꘎꘏꛳꛷꡶꡷꣎꣏꤯꧈꧉꩝꩞꩟꫰꫱꯫﹒﹖﹗！．？𐩖𐩗𑁇𑁈𑂾𑂿𑃀"
    "𑃁𑅁𑅂𑅃𑇅𑇆𑇍𑇞𑇟𑈸𑈹𑈻𑈼𑊩𑑋𑑌𑗂𑗃𑗉𑗊𑗋𑗌𑗍𑗎𑗏𑗐𑗑𑗒𑗓𑗔𑗕𑗖𑗗𑙁𑙂𑜼𑜽𑜾𑩂𑩃𑪛𑪜𑱁𑱂𖩮𖩯𖫵𖬷𖬸𖭄𛲟𝪈｡。"
)


def is_punct(text: str) -> bool:
    """spaCy's ``IS_PUNCT`` lexeme attribute: every character is Unicode punctuation (P*)."""
    return all(unicodedata.category(c)[0] == "P" for c in text)


class SpacyEnglish:
    """``spacy.blank("en")``'s tokenizer: ``words(text)`` is datatrove's
    ``SpaCyTokenizer("en").word_tokenize(text)``; ``sentences(text)`` its ``sent_tokenize`` count
    (what ``split_into_sentences`` returns the length of for non-blank text)."""

    def __init__(self) -> None:
        data = json.loads(_RULES.read_text(encoding="utf-8"))
        # every prefix alternative starts with "^" (spacy.util.compile_prefix_regex), so
        # spaCy's search is a match
        self.prefix = re.compile(data["prefix"]["pattern"], data["prefix"]["flags"]).match
        self.suffix = re.compile(data["suffix"]["pattern"], data["suffix"]["flags"]).search
        self.infix = re.compile(data["infix"]["pattern"], data["infix"]["flags"]).finditer
        self.url = re.compile(data["url"]["pattern"], data["url"]["flags"]).match
        self.specials: dict[str, tuple[str, ...]] = {k: tuple(v) for k, v in data["rules"].items()}
        # the special-case matcher's phrases: each special case that affixes would split, as
        # the tokens spaCy's rules give it without special cases
        self.patterns: dict[tuple[str, ...], str] = {}
        for text, tokens in data["matcher"].items():
            self.patterns.setdefault(tuple(tokens), text)
        self.pattern_starts = frozenset(p[0] for p in self.patterns)
        self.max_pattern = max(map(len, self.patterns))
        # a phrase can match across two chunks only where the first's last token and the
        # second's first token are neighbours in a phrase
        self.pairs = frozenset(pair for p in self.patterns for pair in pairwise(p))
        self.pair_firsts = sorted({a for a, _ in self.pairs})
        self.pair_seconds = sorted({b for _, b in self.pairs})
        self.chunks: dict[str, tuple[str, ...]] = {}
        self.pre: dict[str, tuple[str, ...]] = {}  # tokens before the special-case matcher

    # --- words ---------------------------------------------------------------------------------
    def chunk_words(self, chunk: str) -> tuple[str, ...]:
        """The tokens of one whitespace-free chunk (memoised)."""
        words = self.chunks.get(chunk)
        if words is None:
            words = self.chunks[chunk] = self._tokenize(chunk)
        return words

    def words(self, text: str) -> list[str]:
        """datatrove's ``word_tokenize``: the tokens of ``text``, whitespace tokens dropped."""
        split = text.split()
        get = self.chunks.get
        out: list[str] = []
        for chunk in split:
            words = get(chunk)
            if words is None:
                words = self.chunk_words(chunk)
            out += words
        if self.crosses(split):
            return [t for t in self.document_tokens(text) if t.strip()]
        return out

    def crosses(self, split: list[str]) -> bool:
        """Whether a special-case phrase could match across two neighbouring chunks (then only
        the whole document's tokens, ``document_tokens``, are exact)."""
        pre, pairs = self.pre, self.pairs
        return any((pre[a][-1], pre[b][0]) in pairs for a, b in pairwise(split))

    def document_tokens(self, text: str) -> list[str]:
        """spaCy's tokens of all of ``text``, whitespace tokens included: every chunk's tokens
        before special cases, then the special-case matcher over the whole sequence (a match
        across a single space is a span whose text has a space, which names no special case)."""
        tokens: list[str] = []
        # glued[i]: tokens i and i + 1 are of one chunk. A span across pieces holds whitespace,
        # and the only special cases with whitespace are single characters.
        glued: list[bool] = []
        for piece, is_space in self._pieces(text):
            new = (piece,) if is_space else self.pre_tokens(piece)
            tokens += new
            glued += [True] * (len(new) - 1) + [False]
        return self._apply_special_cases(tokens, glued)

    def _pieces(self, text: str) -> list[tuple[str, bool]]:
        """spaCy's spans: chunks, and whitespace runs other than the one ``" "`` that follows a
        token (``(span, is_whitespace)``)."""
        out: list[tuple[str, bool]] = []
        pos = 0
        for match in _SPACES.finditer(text):
            start, end = match.span()
            if start > pos:
                out.append((text[pos:start], False))
            if start > 0 and text[start] == " ":
                start += 1
            if end > start:
                out.append((text[start:end], True))
            pos = end
        if pos < len(text):
            out.append((text[pos:], False))
        return out

    def pre_tokens(self, chunk: str) -> tuple[str, ...]:
        """The tokens of a chunk before the special-case matcher (memoised)."""
        tokens = self.pre.get(chunk)
        if tokens is None:
            if chunk in self.specials:  # Tokenizer._try_specials_and_cache
                tokens = self.specials[chunk]
            elif chunk.isalpha():
                # no prefix, suffix, infix or URL rule matches letters alone (each needs another
                # character; checked over every letter of Unicode alone, doubled and beside "a")
                tokens = (chunk,)
            else:
                tokens = tuple(self._affixes(chunk))
            self.pre[chunk] = tokens
        return tokens

    def _tokenize(self, string: str) -> tuple[str, ...]:
        tokens = list(self.pre_tokens(string))
        if len(tokens) > 1 or tokens[0] in self.pattern_starts:
            tokens = self._apply_special_cases(tokens, [True] * len(tokens))
        return tuple(tokens)

    def _affixes(self, string: str) -> list[str]:
        """Tokenizer._split_affixes then _attach_tokens (English has no ``token_match``)."""
        specials = self.specials
        prefixes: list[str] = []
        suffixes: list[str] = []
        last_size = 0
        prefix = suffix = minus_pre = minus_suf = ""
        while string and len(string) != last_size:
            if string in specials:
                break
            last_size = len(string)
            match = self.prefix(string)
            pre_len = match.end() - match.start() if match else 0
            if pre_len:
                prefix, minus_pre = string[:pre_len], string[pre_len:]
                if minus_pre and minus_pre in specials:
                    string = minus_pre
                    prefixes.append(prefix)
                    break
            match = self.suffix(string[pre_len:])
            suf_len = match.end() - match.start() if match else 0
            if suf_len:
                suffix, minus_suf = string[-suf_len:], string[:-suf_len]
                if minus_suf and minus_suf in specials:
                    string = minus_suf
                    suffixes.append(suffix)
                    break
            if pre_len and suf_len and pre_len + suf_len <= len(string):
                string = string[pre_len:-suf_len]
                prefixes.append(prefix)
                suffixes.append(suffix)
            elif pre_len:
                string = minus_pre
                prefixes.append(prefix)
            elif suf_len:
                string = minus_suf
                suffixes.append(suffix)
        tokens = prefixes
        if string:
            if string in specials:
                tokens += specials[string]
            elif self.url(string):
                tokens.append(string)
            else:
                matches = list(self.infix(string))
                if not matches:
                    tokens.append(string)
                else:
                    start = 0
                    for match in matches:
                        infix_start, infix_end = match.start(), match.end()
                        if infix_start == 0:  # spaCy skips an infix at the very start
                            continue
                        if infix_start != start:
                            tokens.append(string[start:infix_start])
                        if infix_start != infix_end:
                            tokens.append(string[infix_start:infix_end])
                        start = infix_end
                    if string[start:]:
                        tokens.append(string[start:])
        tokens += reversed(suffixes)
        return tokens

    def _apply_special_cases(self, tokens: list[str], glued: list[bool]) -> list[str]:
        """Tokenizer._apply_special_cases: every phrase match, longest first then leftmost, kept
        unless its first or last token is taken by one kept before; each kept span becomes its
        special case's tokens."""
        patterns, starts = self.patterns, self.pattern_starts
        n = len(tokens)
        matches: list[tuple[int, int]] = []
        for i in range(n):
            if tokens[i] not in starts:
                continue
            for length in range(1, min(self.max_pattern, n - i) + 1):
                if tuple(tokens[i : i + length]) in patterns:
                    matches.append((i, i + length))
        if not matches:
            return tokens
        matches.sort(key=lambda m: (-(m[1] - m[0]), m[0]))
        seen: set[int] = set()
        kept: list[tuple[int, int]] = []
        for start, end in matches:
            if start not in seen and end - 1 not in seen:
                kept.append((start, end))
            seen.update(range(start, end))
        kept.sort()
        out: list[str] = []
        i = 0
        for start, end in kept:
            out += tokens[i:start]
            touching = all(glued[start : end - 1])
            rule = self.specials.get("".join(tokens[start:end])) if touching else None
            out += rule if rule is not None else tokens[start:end]
            i = end
        out += tokens[i:]
        return out

    # --- sentences -----------------------------------------------------------------------------
    def sentences(self, text: str) -> int:
        """How many sentences spaCy's ``sentencizer`` finds in ``text`` (at least 1 when ``text``
        has a token). Whitespace tokens count here, as in spaCy: a whitespace run other than
        one ``" "`` after a token is a token (not punctuation) and can start a sentence."""
        count = 1
        seen_period = False
        for token in self.document_tokens(text):
            in_punct = token in SENT_PUNCT
            if seen_period and not in_punct and not _is_punct(token):
                count += 1
                seen_period = False
            elif in_punct:
                seen_period = True
        return count


_SPACES = re.compile(r"\s+")


@cache
def _is_punct(token: str) -> bool:
    return is_punct(token)


@cache
def english() -> SpacyEnglish:
    """The process's one tokenizer (its chunk memo is shared by every caller)."""
    return SpacyEnglish()
