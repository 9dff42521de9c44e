"""The ``datatrove`` MinHash scheme of ``openrecipe.data.minhash_lsh``.

The decisions of datatrove 0.10.1's MinHash chain (``MinhashDedupSignature``,
``MinhashDedupBuckets``, ``MinhashDedupCluster``, ``MinhashDedupFilter`` with its default
``MinhashConfig``), which built FineWeb, reproduced document for document so that a recipe can
claim FineWeb-compatible near-duplicate removal and ``bench/curation.py`` can compare speed on
identical decisions. Every step is datatrove's:

- text: ``simplify_text`` (lowercase; every run of Unicode digits, with one decimal part, becomes
  ``0``; datatrove's punctuation set becomes spaces; whitespace runs become one space; NFD with the
  combining marks dropped);
- words: datatrove's English word tokenizer, which is spaCy's blank ``en`` tokenizer. spaCy is not
  a dependency here, so ``_SpacyEnglishWords`` reimplements that tokenizer's algorithm (affix
  splitting, special cases, infixes, the special-case matcher) with spaCy 3.8's English rules, of
  which only those that can fire on ``simplify_text`` output are kept (each omission is argued
  where the rules are built). After ``simplify_text`` it splits on spaces, except that spaCy's
  exceptions split contractions whose apostrophe became a space (``cannot`` -> ``can not``,
  ``dont`` -> ``do nt``), digits are split from units and currency (``0km`` -> ``0 km``) and
  quotes and symbols that datatrove keeps (``‘``, ``§``, ``©``, emoji) are split off;
- shingles: every word ``ngram``-gram (``" "``-joined, repeats included) hashed with 64-bit xxHash
  of its UTF-8 bytes; a document with fewer than ``ngram`` words has no shingle and no signature,
  and is never a duplicate;
- signature: ``bands * rows`` hashes ``min((a * x + b) mod 2**64 mod (2**61 - 1))`` over the
  shingles ``x``, with ``a``, ``b`` drawn by ``numpy.random.RandomState(seed)`` exactly as datatrove
  draws them (the wrap-around of the 64-bit product is datatrove's too);
- candidates: two documents are duplicates when ANY band of their signatures is equal (no
  Jaccard check; ``threshold`` is unused). Within a band, documents with equal band values are
  chained in stream order (d1-d2, d2-d3, ...), bands in order;
- clusters: datatrove's union-find, union by size: the pair's first document's root stays root
  unless the other cluster is strictly larger. The kept document of a cluster is its root, which
  is usually but not always its first document in stream order.

Checked against datatrove 0.10.1 with spaCy 3.8.18: the same words for every document of
``data/raw`` (21,262 documents, 13.2 million words) and 600,000 random strings of awkward
characters, the same 112 signature values for every document, and the same removed documents
through its four-step chain (91 of 1,752 documents on the four sources ``bench/curation.py``
reported first, 5,963 of 21,259 on all of ``data/raw``; two of those clusters keep a document
that is not their first). Hashing needs ``xxhash`` and the digit rule ``regex`` (datatrove's
choices; both imported only by this scheme).

The numbers are computed with numpy in batches (the multiply-add-modulo over all shingles of many
documents at once, the Mersenne modulo by shift-and-add, the band matching by sorting), the words
of each distinct space-separated chunk once; datatrove runs spaCy on every document and matches
bands through a heap of Python objects, so this scheme is much faster with the same output.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import cache
from itertools import chain

import numpy as np

# --- the datatrove scheme ----------------------------------------------------------------------

_MERSENNE = np.uint64((1 << 61) - 1)  # datatrove's _mersenne_prime
NO_SIGNATURE = np.iinfo(np.uint64).max  # the row of a document without shingles
_SHINGLES_PER_BATCH = 1 << 12  # shingles permuted at once: 3.7 MB of uint64 at 112 hashes

# datatrove.utils.text.PUNCTUATION (0.10.1), the characters simplify_text turns into spaces.
_DT_PUNCTUATION = (
    "!/—”:％１〈&(、━\\【#%「」，】；+^]~“《„';’{|∶´[=-`*．（–？！：$～«〉,><》)?）。…@_.\"}►»"
    + "".join(
        map(chr, (x for a, b in ((0, 9), (11, 13), (13, 32), (127, 160)) for x in range(a, b)))
    )
)


@cache
def _dt_text_tables() -> tuple[object, dict[int, str], re.Pattern[str], frozenset[str]]:
    # The `regex` module, as datatrove: its \p{Nd} is its own Unicode table, not `re`'s.
    import regex

    numbers = regex.compile(r"\p{Nd}+([.,،٫⎖⎗⎘]{1}\p{Nd}+)?", regex.VERBOSE | regex.UNICODE)
    punctuation = str.maketrans(_DT_PUNCTUATION, " " * len(_DT_PUNCTUATION))
    punctuation_re = re.compile("[" + re.escape(_DT_PUNCTUATION) + "]")
    marks = frozenset(chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) == "Mn")
    return numbers, punctuation, punctuation_re, marks


def _dt_simplify(text: str) -> str:
    """datatrove's ``simplify_text`` under its default ``TextNormConfig``. (``str.translate`` is
    fast on ASCII text only, so other text takes a regex, and combining marks ``str.replace``.)"""
    numbers, punctuation, punctuation_re, marks = _dt_text_tables()
    text = numbers.sub("0", text.lower())  # type: ignore[attr-defined]
    text = text.translate(punctuation) if text.isascii() else punctuation_re.sub(" ", text)
    # == re.sub(r"\s+", " ", text.strip()): str.split and re's \s are both Py_UNICODE_ISSPACE
    text = " ".join(text.split())
    if not text.isascii():  # NFD of ASCII is itself and has no combining mark
        text = unicodedata.normalize("NFD", text)
        for mark in marks.intersection(text):
            text = text.replace(mark, "")
    return text.strip()


def _dt_chunks(text: str) -> list[str]:
    """``_dt_simplify(text).split()`` (the chunks spaCy tokenizes) without the whitespace pass:
    NFD maps whitespace to whitespace and nothing else to whitespace, never moves a character
    across one (whitespace has combining class 0) and combining marks are not whitespace, so
    normalising whitespace before NFD, as datatrove does, or not at all splits alike (checked
    over every code point)."""
    numbers, punctuation, punctuation_re, marks = _dt_text_tables()
    text = numbers.sub("0", text.lower())  # type: ignore[attr-defined]
    text = text.translate(punctuation) if text.isascii() else punctuation_re.sub(" ", text)
    if not text.isascii():
        text = unicodedata.normalize("NFD", text)
        for mark in marks.intersection(text):
            text = text.replace(mark, "")
    return text.split()


# spaCy 3.8's character classes (spacy/lang/char_classes.py, MIT licence), verbatim: the rules of
# its English tokenizer are built from them below exactly as spaCy builds them.
_SPACY_PUNCT = (
    r"… …… , : ; \! \? ¿ ؟ ¡ \( \) \[ \] \{ \} < > _ # \* & 。 ？ ！ ， 、 ； ： ～ · । ، ۔ ؛ ٪"
)
_SPACY_QUOTES = "\\' \" ” “ ` ‘ ´ ’ ‚ , „ » « 「 」 『 』 （ ） 〔 〕 【 】 《 》 〈 〉 〈 〉  ⟦ ⟧"
_SPACY_CURRENCY = (
    r"\$ £ € ¥ ฿ US\$ C\$ A\$ ₽ ﷼ ₴ ₠ ₡ ₢ ₣ ₤ ₥ ₦ ₧ ₨ ₩ ₪ ₫ € ₭ ₮ ₯ ₰ ₱ ₲ ₳ ₴ ₵ ₶ ₷ ₸ ₹ ₺ ₻ ₼ "
    r"₽ ₾ ₿"
)
_SPACY_UNITS = (
    r"km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz"
    r" m/s km/h kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм"
    r"² дм³ см см² см³ мм мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Т"
    r"б ТБ тбكم كم² كم³ م م² م³ سم سم² سم³ مم مم² مم³ كم غرام جرام جم كغ ملغ كوب اكواب"
)
_SPACY_OTHER_SYMBOLS = (
    r"\u00A6\u00A9\u00AE\u00B0\u0482\u058D\u058E\u060E\u060F\u06DE\u06E9\u06FD\u06FE\u07F6"
    r"\u09FA\u0B70\u0BF3-\u0BF8\u0BFA\u0C7F\u0D4F\u0D79\u0F01-\u0F03\u0F13\u0F15-\u0F17\u0F1A-"
    r"\u0F1F\u0F34\u0F36\u0F38\u0FBE-\u0FC5\u0FC7-\u0FCC\u0FCE\u0FCF\u0FD5-\u0FD8\u109E\u109F"
    r"\u1390-\u1399\u1940\u19DE-\u19FF\u1B61-\u1B6A\u1B74-\u1B7C\u2100\u2101\u2103-\u2106"
    r"\u2108\u2109\u2114\u2116\u2117\u211E-\u2123\u2125\u2127\u2129\u212E\u213A\u213B\u214A"
    r"\u214C\u214D\u214F\u218A\u218B\u2195-\u2199\u219C-\u219F\u21A1\u21A2\u21A4\u21A5\u21A7-"
    r"\u21AD\u21AF-\u21CD\u21D0\u21D1\u21D3\u21D5-\u21F3\u2300-\u2307\u230C-\u231F\u2322-"
    r"\u2328\u232B-\u237B\u237D-\u239A\u23B4-\u23DB\u23E2-\u2426\u2440-\u244A\u249C-\u24E9"
    r"\u2500-\u25B6\u25B8-\u25C0\u25C2-\u25F7\u2600-\u266E\u2670-\u2767\u2794-\u27BF\u2800-"
    r"\u28FF\u2B00-\u2B2F\u2B45\u2B46\u2B4D-\u2B73\u2B76-\u2B95\u2B98-\u2BC8\u2BCA-\u2BFE"
    r"\u2CE5-\u2CEA\u2E80-\u2E99\u2E9B-\u2EF3\u2F00-\u2FD5\u2FF0-\u2FFB\u3004\u3012\u3013"
    r"\u3020\u3036\u3037\u303E\u303F\u3190\u3191\u3196-\u319F\u31C0-\u31E3\u3200-\u321E\u322A-"
    r"\u3247\u3250\u3260-\u327F\u328A-\u32B0\u32C0-\u32FE\u3300-\u33FF\u4DC0-\u4DFF\uA490-"
    r"\uA4C6\uA828-\uA82B\uA836\uA837\uA839\uAA77-\uAA79\uFDFD\uFFE4\uFFE8\uFFED\uFFEE\uFFFC"
    r"\uFFFD\U00010137-\U0001013F\U00010179-\U00010189\U0001018C-\U0001018E\U00010190-"
    r"\U0001019B\U000101A0\U000101D0-\U000101FC\U00010877\U00010878\U00010AC8\U0001173F"
    r"\U00016B3C-\U00016B3F\U00016B45\U0001BC9C\U0001D000-\U0001D0F5\U0001D100-\U0001D126"
    r"\U0001D129-\U0001D164\U0001D16A-\U0001D16C\U0001D183\U0001D184\U0001D18C-\U0001D1A9"
    r"\U0001D1AE-\U0001D1E8\U0001D200-\U0001D241\U0001D245\U0001D300-\U0001D356\U0001D800-"
    r"\U0001D9FF\U0001DA37-\U0001DA3A\U0001DA6D-\U0001DA74\U0001DA76-\U0001DA83\U0001DA85"
    r"\U0001DA86\U0001ECAC\U0001F000-\U0001F02B\U0001F030-\U0001F093\U0001F0A0-\U0001F0AE"
    r"\U0001F0B1-\U0001F0BF\U0001F0C1-\U0001F0CF\U0001F0D1-\U0001F0F5\U0001F110-\U0001F16B"
    r"\U0001F170-\U0001F1AC\U0001F1E6-\U0001F202\U0001F210-\U0001F23B\U0001F240-\U0001F248"
    r"\U0001F250\U0001F251\U0001F260-\U0001F265\U0001F300-\U0001F3FA\U0001F400-\U0001F6D4"
    r"\U0001F6E0-\U0001F6EC\U0001F6F0-\U0001F6F9\U0001F700-\U0001F773\U0001F780-\U0001F7D8"
    r"\U0001F800-\U0001F80B\U0001F810-\U0001F847\U0001F850-\U0001F859\U0001F860-\U0001F887"
    r"\U0001F890-\U0001F8AD\U0001F900-\U0001F90B\U0001F910-\U0001F93E\U0001F940-\U0001F970"
    r"\U0001F973-\U0001F976\U0001F97A\U0001F97C-\U0001F9A2\U0001F9B0-\U0001F9B9\U0001F9C0-"
    r"\U0001F9C2\U0001F9D0-\U0001F9FF\U0001FA60-\U0001FA6D"
)
_SPACY_ALPHA = (
    r"A-Za-z\uFF21-\uFF3A\uFF41-\uFF5A\u00C0-\u00D6\u00D8-\u00F6\u00F8-\u00FF\u0100-\u017F"
    r"\u0180-\u01BF\u01C4-\u024F\u2C60-\u2C7B\u2C7E\u2C7F\uA722-\uA76F\uA771-\uA787\uA78B-"
    r"\uA78E\uA790-\uA7B9\uA7FA\uAB30-\uAB5A\uAB60-\uAB64\u0250-\u02AF\u1D00-\u1D25\u1D6B-"
    r"\u1D77\u1D79-\u1D9A\u1E00-\u1EFFёа-яЁА-ЯәөүҗңһӘӨҮҖҢҺα-ωάέίόώήύΑ-ΩΆΈΊΌΏΉΎа-щюяіїєґА-ЩЮЯІЇ"
    r"ЄҐѓѕјљњќѐѝЃЅЈЉЊЌЀЍ\u1200-\u137F\u0980-\u09FF\u0591-\u05F4\uFB1D-\uFB4F\u0620-\u064A"
    r"\u066E-\u06D5\u06E5-\u06FF\u0750-\u077F\u08A0-\u08BD\uFB50-\uFBB1\uFBD3-\uFD3D\uFD50-"
    r"\uFDC7\uFDF0-\uFDFB\uFE70-\uFEFC\U0001EE00-\U0001EEBB\u0D80-\u0DFF\u0900-\u097F\u0C80-"
    r"\u0CFF\u0B80-\u0BFF\u0C00-\u0C7F\uAC00-\uD7AF\u1100-\u11FF\u3040-\u309F\u30A0-\u30FFー"
    r"\u4E00-\u62FF\u6300-\u77FF\u7800-\u8CFF\u8D00-\u9FFF\u3400-\u4DBF\U00020000-\U000215FF"
    r"\U00021600-\U000230FF\U00023100-\U000245FF\U00024600-\U000260FF\U00026100-\U000275FF"
    r"\U00027600-\U000290FF\U00029100-\U0002A6DF\U0002A700-\U0002B73F\U0002B740-\U0002B81F"
    r"\U0002B820-\U0002CEAF\U0002CEB0-\U0002EBEF\u2E80-\u2EFF\u2F00-\u2FDF\u2FF0-\u2FFF\u3000-"
    r"\u303F\u31C0-\u31EF\u3200-\u32FF\u3300-\u33FF\uF900-\uFAFF\uFE30-\uFE4F\U0001F200-"
    r"\U0001F2FF\U0002F800-\U0002FA1F"
)
_SPACY_HYPHENS = r"-|–|—|--|---|——|~"

# spaCy's English tokenizer exceptions whose text can survive simplify_text (lowercase, no
# apostrophe, no period, no space), as "piece|piece" (the text is the pieces joined), then those
# that are one token (they still stop affix splitting). Produced by listing
# ``spacy.blank("en").tokenizer.rules`` with spaCy 3.8 and keeping each ``k`` for which
# ``simplify_text(k) == k`` and ``" " not in k``.
_SPACY_EN_SPLITS = (
    "ai|nt are|nt can|not ca|nt ca|nt|ve could|nt could|nt|ve could|ve dare|nt did|nt "
    "did|nt|ve does|nt does|nt|ve do|nt do|nt|ve gon|na got|ta had|nt had|nt|ve has|nt "
    "have|nt he|d he|d|ve he|ll|ve he|s how|d how|d|ve how|ll how|ll|ve how|re how|s how|ve "
    "i|d i|d|ve i|ll|ve i|m i|m|a is|nt it|d it|d|ve it|ll it|ll|ve i|ve may|nt may|nt|ve "
    "might|nt might|nt|ve might|ve must|nt must|nt|ve must|ve need|nt need|nt|ve not|ve "
    "ought|nt ought|nt|ve sha|nt sha|nt|ve she|d|ve she|ll|ve she|s should|nt should|nt|ve "
    "should|ve that|d that|d|ve that|ll that|ll|ve that|s there|d there|d|ve there|ll "
    "there|ll|ve there|re there|s there|ve these|d these|d|ve these|ll these|ll|ve these|re "
    "these|ve they|d they|d|ve they|ll they|ll|ve they|re they|ve this|d this|d|ve this|ll "
    "this|ll|ve this|s those|d those|d|ve those|ll those|ll|ve those|re those|ve was|nt we|d "
    "we|d|ve we|ll|ve were|nt we|ve what|d what|d|ve what|ll what|ll|ve what|re what|s "
    "what|ve when|d when|d|ve when|ll when|ll|ve when|re when|s when|ve where|d where|d|ve "
    "where|ll where|ll|ve where|re where|s where|ve who|d who|d|ve who|ll who|ll|ve who|s "
    "who|ve why|d why|d|ve why|ll why|ll|ve why|re why|s why|ve wo|nt wo|nt|ve would|nt "
    "would|nt|ve would|ve y|all you|d you|d|ve you|ll you|ll|ve you|re you|ve"
)
_SPACY_EN_WHOLE = "doin em goin havin ll lovin nothin nuff nuthin ol somethin ಠ︵ಠ ‘s"


_ENDS_IN_DIGIT = re.compile(r"[a-z0-9]*[0-9]")


class _SpacyEnglishWords:
    """The words datatrove's English tokenizer (``spacy.blank("en")`` through ``SpaCyTokenizer``,
    whitespace tokens dropped) gives for text that ``_dt_simplify`` returned: spaCy's algorithm
    (``Tokenizer._split_affixes`` / ``_attach_tokens`` / ``_apply_special_cases``) ported line by
    line, with the words of each distinct chunk computed once.

    Rules left out, because their central character never occurs in ``simplify_text`` output
    (datatrove's punctuation set maps ``.`` to a space and no character's canonical decomposition
    yields ``.``): the two period suffixes and the period infix (the only rules needing spaCy's
    ALPHA_LOWER / ALPHA_UPPER / PUNCT classes), and spaCy's URL matcher (a host needs a ``.``);
    English has no ``token_match``. The comma, hyphen and ``[:<>=/]`` infixes are kept: ``≠``,
    ``≮``, ``≯`` decompose to ``=``, ``<``, ``>``."""

    def __init__(self) -> None:
        def split(chars: str) -> list[str]:
            return chars.strip().split(" ")

        units, currency = (
            _SPACY_UNITS.strip().replace(" ", "|"),
            _SPACY_CURRENCY.strip().replace(" ", "|"),
        )
        ellipses, icons = [r"\.\.+", "…"], [f"[{_SPACY_OTHER_SYMBOLS}]"]
        punct, quotes = split(_SPACY_PUNCT), split(_SPACY_QUOTES)
        prefixes = (
            ["§", "%", "=", "—", "–", r"\+(?![0-9])"]
            + punct + ellipses + quotes + split(_SPACY_CURRENCY) + icons
        )  # fmt: skip
        suffixes = (
            punct + ellipses + quotes + icons + ["'s", "'S", "’s", "’S", "—", "–"]
            + [r"(?<=[0-9])\+", r"(?<=°[FfCcKk])\.", rf"(?<=[0-9])(?:{currency})",
               rf"(?<=[0-9])(?:{units})"]
        )  # fmt: skip
        a = _SPACY_ALPHA
        infixes = ellipses + icons + [
            r"(?<=[0-9])[+\-\*^](?=[0-9-])",
            rf"(?<=[{a}]),(?=[{a}])",
            rf"(?<=[{a}0-9])(?:{_SPACY_HYPHENS})(?=[{a}])",
            rf"(?<=[{a}0-9])[:<>=/](?=[{a}])",
        ]  # fmt: skip
        # spacy.util.compile_prefix_regex / compile_suffix_regex / compile_infix_regex
        self.prefix = re.compile("|".join("^" + p for p in prefixes if p.strip())).search
        self.suffix = re.compile("|".join(p + "$" for p in suffixes if p.strip())).search
        self.infix = re.compile("|".join(p for p in infixes if p.strip())).finditer
        self.specials: dict[str, tuple[str, ...]] = {w: (w,) for w in _SPACY_EN_WHOLE.split()}
        for pieces in _SPACY_EN_SPLITS.split():
            self.specials["".join(pieces.split("|"))] = tuple(pieces.split("|"))
        self.chunks: dict[str, list[str]] = {}
        self.changed: set[str] = set()  # the chunks that are not one word

    def __call__(self, text: str) -> list[str]:
        return self.words(text.split())  # spaCy's chunks: maximal runs of non-space characters

    def words(self, split: list[str]) -> list[str]:
        """The words of the chunks ``split`` (``split`` itself when each chunk is one word)."""
        for chunk in set(split).difference(self.chunks):
            words = self.chunks[chunk] = self._words(chunk)
            if words != [chunk]:
                self.changed.add(chunk)
        if self.changed.isdisjoint(split):
            return split
        return list(chain.from_iterable(map(self.chunks.__getitem__, split)))

    def _words(self, string: str) -> list[str]:
        specials = self.specials
        # Every affix and infix rule needs a character that is not a letter, or a digit before a
        # unit; so letters alone, or letters and digits ending in a digit, are one word or a
        # special case (checked over every code point).
        if string.isalpha() or _ENDS_IN_DIGIT.fullmatch(string):
            return list(specials.get(string, (string,)))
        prefixes: list[str] = []
        suffixes: list[str] = []
        last_size = 0
        prefix = suffix = ""
        while string and len(string) != last_size:  # Tokenizer._split_affixes
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
                string = string[pre_len:]
                prefixes.append(prefix)
            elif suf_len:
                string = string[:-suf_len]
                suffixes.append(suffix)
        words = prefixes  # Tokenizer._attach_tokens
        if string in specials:
            words += specials[string]
        elif string:
            start = 0
            for match in self.infix(string):
                infix_start, infix_end = match.start(), match.end()
                if infix_start == 0:  # spaCy skips an infix at the very start
                    continue
                if infix_start != start:
                    words.append(string[start:infix_start])
                if infix_start != infix_end:
                    words.append(string[infix_start:infix_end])
                start = infix_end
            if string[start:]:
                words.append(string[start:])
        words += reversed(suffixes)
        # Tokenizer._apply_special_cases: of the exceptions that contain affixes, only "‘s"
        # (tokenised "‘", "s") can occur in simplified text; adjacent in one chunk, it is merged.
        for i in range(len(words) - 1, 0, -1):
            if words[i] == "s" and words[i - 1] == "‘":
                words[i - 1 : i + 1] = ["‘s"]
        return words


def datatrove_words(text: str) -> list[str]:
    """The words datatrove's MinHash shingles for ``text`` (English): ``simplify_text``, then the
    spaCy English tokenizer."""
    return _SpacyEnglishWords()(_dt_simplify(text))


def _datatrove_permutations(num_hashes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``MinhashDedupSignature.parameters``: a in [1, p), b in [0, p), in this draw order."""
    gen = np.random.RandomState(seed)
    a = gen.randint(1, _MERSENNE, dtype=np.uint64, size=(1, num_hashes))
    b = gen.randint(0, _MERSENNE, dtype=np.uint64, size=(1, num_hashes))
    return a, b


def _datatrove_shingles(words: list[str], ngram: int) -> np.ndarray:
    from xxhash import xxh64_intdigest

    count = len(words) - ngram + 1
    if count <= 0:
        return np.zeros(0, dtype=np.uint64)
    grams = map(" ".join, zip(*(words[i:] for i in range(ngram)), strict=False))
    return np.fromiter(map(xxh64_intdigest, map(str.encode, grams)), dtype=np.uint64, count=count)


def _datatrove_min_hashes(
    shingles: np.ndarray, docs: np.ndarray, a: np.ndarray, b: np.ndarray, out: np.ndarray
) -> None:
    """``out[d] = min(out[d], min over d's shingles x of (a * x + b) mod 2**64 mod p)`` for the
    documents ``docs`` (non-decreasing, one per shingle); ``a``, ``b`` are columns."""
    phv = a * shingles  # (hashes, shingles); uint64 arithmetic wraps modulo 2**64, as datatrove's
    phv += b
    high = phv >> np.uint64(61)  # x mod p == (x >> 61) + (x & p) when that is < p, else less p
    phv &= _MERSENNE
    phv += high
    np.subtract(phv, _MERSENNE, out=high)  # wraps to > p unless phv >= p
    np.minimum(phv, high, out=phv)
    starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
    mins = np.minimum.reduceat(phv, starts, axis=1)
    rows = docs[starts]
    out[rows] = np.minimum(out[rows], mins.T)


def signatures(texts: Sequence[str], bands: int, rows: int, ngram: int, seed: int) -> np.ndarray:
    """``(len(texts), bands * rows)`` uint64 signatures; ``NO_SIGNATURE`` rows for documents
    without a shingle."""
    a, b = (x.reshape(-1, 1) for x in _datatrove_permutations(bands * rows, seed))
    out = np.full((len(texts), bands * rows), NO_SIGNATURE, dtype=np.uint64)
    words = _SpacyEnglishWords()
    pending: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not pending:
            return
        shingles, docs = np.concatenate(pending), np.concatenate(owners)
        for lo in range(0, len(shingles), _SHINGLES_PER_BATCH):
            hi = lo + _SHINGLES_PER_BATCH
            _datatrove_min_hashes(shingles[lo:hi], docs[lo:hi], a, b, out)
        pending.clear()
        owners.clear()
        size = 0

    for i, text in enumerate(texts):
        hashed = _datatrove_shingles(words.words(_dt_chunks(text)), ngram)
        if len(hashed):
            pending.append(hashed)
            owners.append(np.full(len(hashed), i, dtype=np.int64))
            size += len(hashed)
            if size >= _SHINGLES_PER_BATCH:
                flush()
    flush()
    return out


def _datatrove_pairs(matrix: np.ndarray, bands: int, rows: int) -> Iterable[tuple[int, int]]:
    """``MinhashDedupBuckets``' duplicate pairs, in the order its ``.dups`` files hold them: per
    band, the signed documents sorted by (band values, position); each one equal to the previous
    is paired with it."""
    signed = np.flatnonzero((matrix != NO_SIGNATURE).any(axis=1))
    if len(signed) < 2:
        return
    for band in range(bands):
        block = matrix[signed, band * rows : (band + 1) * rows]
        order = np.lexsort((signed, *block.T[::-1]))  # first column most significant
        ranked = block[order]
        for j in np.flatnonzero((ranked[1:] == ranked[:-1]).all(axis=1)).tolist():
            yield int(signed[order[j]]), int(signed[order[j + 1]])


def cluster(
    ids: Sequence[str], matrix: np.ndarray, bands: int, rows: int
) -> tuple[list[str], list[list[str]], dict[str, str]]:
    """(kept ids, clusters (root first), dropped id -> its root's id) of datatrove's chain."""
    if matrix.ndim != 2 or matrix.shape[1] != bands * rows or matrix.dtype != np.uint64:
        raise ValueError(
            f"fuzzy_dedup: datatrove-scheme signatures must be uint64 ({len(ids)}, {bands * rows}),"
            f" got {matrix.dtype} {matrix.shape}"
        )
    parent: dict[int, int] = {}
    size: dict[int, int] = {}

    def root(x: int) -> int:
        path = []
        while parent.setdefault(x, x) != x:
            path.append(x)
            x = parent[x]
        for y in path:
            parent[y] = x
        return x

    for first, second in _datatrove_pairs(matrix, bands, rows):  # MinhashDedupCluster.union
        root_a, root_b = root(first), root(second)
        if root_a != root_b:
            size_a, size_b = size.get(root_a, 1), size.get(root_b, 1)
            if size_a < size_b:
                root_a, root_b = root_b, root_a
            parent[root_b] = root_a
            size[root_a] = size_a + size_b
            size.pop(root_b, None)
    members: dict[int, list[int]] = {}
    for i in sorted(parent):
        members.setdefault(root(i), []).append(i)
    kept: list[str] = []
    clusters: list[list[str]] = []
    duplicate_of: dict[str, str] = {}
    for i, doc_id in enumerate(ids):
        top = root(i) if i in parent else i
        if top == i:
            kept.append(doc_id)
            if i in members and len(members[i]) > 1:
                clusters.append([doc_id] + [ids[j] for j in members[i] if j != i])
        else:
            duplicate_of[doc_id] = ids[top]
    return kept, clusters, duplicate_of
