"""The guards' tokenizer: word, number and symbol tokens (:func:`tokens`), stop words and
stems (:func:`content_words`), and the word pairs that "to"/"into" joins.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

_TOKEN_RE = re.compile(
    r"""
    (?P<num>[#]?\d{1,3}(?:,\d{3})+(?:\.\d+)?%?          # 1,000,000.5
      | [#]?\d+(?:\.\d+)*(?:st|nd|rd|th)?%?)            # 12  #123  3.12  3rd  50%
    | (?P<word>[A-Za-z][A-Za-z0-9]*(?:[.'\u2019\-_][A-Za-z0-9]+)*(?:\+\+|\#)?)  # node.js c++ c#
    | (?P<sym>->|=>|→|[$€£¥₹°%&/])
    """,
    re.VERBOSE,
)
_BREAK_RE = re.compile(r"[.!?:;\n\"“(\[]")


@dataclass(frozen=True, slots=True)
class _Tok:
    text: str  # as written
    low: str  # lower case, possessive "'s" dropped
    kind: str  # "num" | "word" | "sym"
    start: int
    initial: bool  # first word of a sentence (its capital letter says nothing)
    # follows the previous token across spaces only, and that one is not a possessive:
    # only then can the two be one name ("Lionel Messi", not "Datasets' BuilderConfig",
    # "Google's Android" or "Visa, Mastercard")
    joined: bool = True


# a power written as a superscript is the caret form users type too ("m/s²" / "m/s^2")
_SUPERSCRIPTS = str.maketrans({c: f"^{d}" for d, c in enumerate("⁰¹²³⁴⁵⁶⁷⁸⁹")})


def unaccented(text: str) -> str:
    """``text`` without its accents ("ça va": "ca va"), powers written with a caret."""
    if text.isascii():
        return text
    text = text.translate(_SUPERSCRIPTS)
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


# Letters of the Latin script beyond ASCII: Latin-1, Latin Extended-A and -B, IPA, Latin
# Extended Additional, -C, -D and -E, the ligatures and the fullwidth forms ("é", "ł",
# dotless "i", "ß", "ø", "ğ", the "fi" ligature)
_LATIN = (
    "A-Za-z\u00aa\u00ba\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02af\u1e00-\u1eff\u2c60-\u2c7f"
    "\ua720-\ua7ff\uab30-\uab6f\ufb00-\ufb06\uff21-\uff3a\uff41-\uff5a"
)
# Scripts written without spaces between words (Han, kana, Thai, Lao, Myanmar, Khmer): each
# character counts as a word of its own
_UNSPACED = (
    "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f"
)
# Numbers that are no digits but read as word characters ("²", "½", "Ⅻ", "①")
_NUMERIC = "\u00b2\u00b3\u00b9\u00bc-\u00be\u2070-\u209f\u2150-\u218f\u2460-\u24ff"
_LATIN_WORD_RE = re.compile(f"[{_LATIN}]+")
_OTHER_WORD_RE = re.compile(f"[{_UNSPACED}]|[^\\W\\d_{_LATIN}{_UNSPACED}{_NUMERIC}]+")
# a run of non-space characters holding a letter of another script than Latin (started at
# a run's start only, and lazy: linear in the text's length)
_FOREIGN_RE = re.compile(f"(?<!\\S)\\S*?[^\\W\\d_{_LATIN}{_NUMERIC}]\\S*")
# what may stand around such a word without being part of it
_AROUND_WORDS = (
    "!\"#%&'()*,./:;<>?@[\\]^_`{|}~\u00a1\u00ab\u00bb\u00bf\u2013\u2014\u2018\u2019\u201c\u201d"
    "\u201e\u2026\u3001\u3002\u3008\u3009\u300a\u300b\u300c\u300d\u300e\u300f\u3010\u3011"
    "\uff01\uff08\uff09\uff0c\uff1a\uff1b\uff1f"
)


def mostly_latin(text: str) -> bool:
    """Whether most words of ``text`` are written in the Latin script (a text without
    letters counts as Latin). A word is a run of letters of one script, and in the scripts
    written without spaces each character is one: "iPhone 15 的电池怎么样" is one Latin word
    against six Chinese ones.

    The guards read Latin letters only (:func:`tokens`): a text mostly of another script
    would show them no word, no name, no number word to compare, and two such prompts
    would look the same to them whatever they ask.
    """
    if text.isascii():
        return True
    return len(_LATIN_WORD_RE.findall(text)) >= len(_OTHER_WORD_RE.findall(text))


def foreign_words(text: str) -> tuple[str, ...]:
    """The words of ``text`` that hold letters of another script than Latin, in order,
    without the punctuation around them, in lower case ("Translate 你好 into English":
    ``("你好",)``): the part of a mostly Latin prompt that the guards cannot read
    otherwise, so it must be the same on both sides."""
    if text.isascii():
        return ()
    found = (w.strip(_AROUND_WORDS).lower() for w in _FOREIGN_RE.findall(text))
    return tuple(w for w in found if w)


def _tokens_of(text: str) -> list[str]:
    return [t.low for t in _scan(text)]


def _scan(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    end = 0
    possessive = False
    for m in _TOKEN_RE.finditer(text):
        kind = m.lastgroup or "sym"
        raw = m.group()
        low = raw.lower().replace("\u2019", "'")
        start = m.start()
        joined = not possessive and (start == end or text[end:start].isspace())
        possessive = False
        if kind == "word" and low.endswith("'s"):
            low = low[:-2]
            raw = raw[:-2]
            possessive = True
        elif kind == "word" and low.endswith("s") and text.startswith(("'", "\u2019"), m.end()):
            possessive = True  # plural possessive: "Datasets' BuilderConfig"
        initial = not out or _BREAK_RE.search(text, end, start) is not None
        out.append(_Tok(raw, low, kind, start, initial, joined))
        end = m.end()
    return out


def tokens(text: str) -> list[str]:
    """Lower-case word, number and symbol tokens of ``text`` (possessive ``'s`` dropped)."""
    return _tokens_of(text)


# Words that carry little meaning for overlap measures (features of the verifier).
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "from",
        "by",
        "with",
        "about",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "am",
        "do",
        "does",
        "did",
        "doing",
        "have",
        "has",
        "had",
        "having",
        "i",
        "me",
        "my",
        "mine",
        "you",
        "your",
        "we",
        "our",
        "us",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "there",
        "here",
        "what",
        "what's",
        "which",
        "who",
        "whom",
        "whose",
        "how",
        "when",
        "where",
        "why",
        "can",
        "could",
        "would",
        "should",
        "will",
        "shall",
        "may",
        "might",
        "must",
        "please",
        "hi",
        "hello",
        "hey",
        "thanks",
        "thank",
        "just",
        "so",
        "and",
        "or",
        "but",
        "if",
        "then",
        "than",
        "any",
        "some",
        "all",
        "also",
        "too",
        "very",
        "really",
        "much",
        "many",
        "more",
        "most",
        "get",
        "got",
        "want",
        "need",
        "like",
        "know",
        "tell",
        "give",
        "show",
        "let",
        "let's",
        "i'm",
        "i've",
        "i'd",
        "it's",
        "that's",
        "there's",
        "how's",
    ]
)


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    # A crude suffix stripper: enough to match "boil"/"boiling", "card"/"cards".
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    return word


def _plain_stem(word: str) -> str:
    """:func:`_stem` without a final "e", which it keeps or drops by the suffix
    ("includes" is "includ", "include" "include"), and an irregular verb's past forms as
    the verb ("wrote", "written": "writ"): for comparing words one to one."""
    return _stem(_IRREGULAR.get(word, word)).removesuffix("e")


# The past forms of common irregular verbs, read as the verb ("who wrote Dune" / "when was
# Dune written" ask about one act). Forms that are more often another word are left out
# ("left", "rose", "bit", "fed", "led", "lit", "lay", "drew").
_IRREGULAR = {
    form: verb
    for verb, forms in {
        "become": "became", "begin": "began begun", "break": "broke broken",
        "bring": "brought", "build": "built", "buy": "bought", "catch": "caught",
        "choose": "chose chosen", "come": "came", "drink": "drank drunk", "drive": "drove driven",
        "eat": "ate eaten", "fall": "fell fallen", "feel": "felt", "fight": "fought",
        "find": "found", "fly": "flew flown", "forget": "forgot forgotten",
        "freeze": "froze frozen", "get": "got gotten", "give": "gave given", "go": "went gone",
        "grow": "grew grown", "hang": "hung", "hide": "hid hidden", "hold": "held",
        "keep": "kept", "know": "knew known", "lose": "lost", "make": "made", "mean": "meant",
        "meet": "met", "pay": "paid", "ride": "rode ridden", "ring": "rang rung", "run": "ran",
        "say": "said", "see": "saw seen", "sell": "sold", "send": "sent", "shake": "shook shaken",
        "shoot": "shot", "sing": "sang sung", "sink": "sank sunk", "sleep": "slept",
        "speak": "spoke spoken", "spend": "spent", "stand": "stood", "steal": "stole stolen",
        "strike": "struck stricken", "swim": "swam swum", "take": "took taken",
        "teach": "taught", "tell": "told", "think": "thought", "throw": "threw thrown",
        "understand": "understood", "wake": "woke woken", "wear": "wore worn", "win": "won",
        "withdraw": "withdrew withdrawn", "write": "wrote written",
    }.items()
    for form in forms.split()
}  # fmt: skip


# Words skipped between a direction word and what it joins ("a string to an int").
_ARROW_SKIP = frozenset([
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that",
    "these", "those", "some", "any",
    # words that stand for a thing named elsewhere ("from one account to another")
    "one", "another", "other",
    # "convert an ONNX model back into PyTorch" joins "ONNX model" to "PyTorch"
    "back",
])  # fmt: skip


_ARROW_WORDS = frozenset({"to", "into", "onto", "than"})


def _arrow_end(lows: list[str], i: int, step: int) -> list[str]:
    """The words a direction word at ``i`` joins on one side (``step`` -1: before it, 1:
    after it): past the skipped words, the next word, and one more beside it when both
    are content words ("a word document to a pdf": "document" and "word")."""
    j = i + step
    while 0 <= j < len(lows) and lows[j] in _ARROW_SKIP:
        j += step
    # (a name may be digits in part: "an IRA into a 401(k)", whose words are "401" "k")
    if not (0 <= j < len(lows)) or not lows[j].isalnum():
        return []
    out = [lows[j]]
    k = j + step
    if (
        lows[j] not in _STOP
        and 0 <= k < len(lows)
        and lows[k].isalnum()
        and lows[k] not in _STOP
        and lows[k] not in _ARROW_WORDS
    ):
        out.append(lows[k])
    return out


def _arrows(lows: list[str]) -> frozenset[tuple[str, str]]:
    """The (source, target) pairs of word stems around each "to"/"into"/"than" in
    ``lows`` ("convert a pdf to a word document": ("pdf", "word"), ("pdf", "document")),
    and from the words of "from X to Y" to those of Y ("from Venice airport to my hotel
    in Mestre": ("venice", "hotel"), ("airport", "hotel"))."""
    out: set[tuple[str, str]] = set()
    for i, w in enumerate(lows):
        if w not in _ARROW_WORDS:
            continue
        targets = _arrow_end(lows, i, 1)
        if targets:
            for x in _arrow_end(lows, i, -1):
                out.update((_stem(x), _stem(y)) for y in targets)
        if w == "to":
            sources = _from_span(lows, i)
            if sources:
                ends = _span_after(lows, i)
                out.update((_stem(x), _stem(y)) for x in sources for y in ends)
    return frozenset(out)


# how many words a "from X to Y" span may hold on each side, and the words that name no
# place of their own ("from there")
_SPAN = 4
_SPAN_SKIP = _ARROW_SKIP | {"there", "here", "somewhere"}


def _from_span(lows: list[str], to: int) -> list[str]:
    """The content words between a "from" and the "to" at ``to`` (none when no "from"
    comes within _SPAN words before it)."""
    for j in range(to - 1, max(-1, to - _SPAN - 2), -1):
        if lows[j] == "from":
            return [w for w in lows[j + 1 : to] if w not in _STOP and w not in _SPAN_SKIP]
        if lows[j] in _ARROW_WORDS or not lows[j].isalpha():
            return []
    return []


def _span_after(lows: list[str], to: int) -> list[str]:
    """Up to _SPAN content words after the "to" at ``to``: up to the next little word
    ("to GBP with your app": "gbp"), articles and possessives passed over."""
    out: list[str] = []
    for w in lows[to + 1 : to + 1 + _SPAN + 2]:
        if w in _SPAN_SKIP:
            continue
        if w in _STOP or w in _ARROW_WORDS or w == "from" or not w.isalpha():
            break
        out.append(w)
        if len(out) == _SPAN:
            break
    return out


def content_words(text: str) -> list[str]:
    """Stemmed, lower-case content words of ``text`` (stop words dropped), in order."""
    return [_stem(t) for t in _tokens_of(text) if t not in _STOP and not t.isdigit()]
