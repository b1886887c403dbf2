"""Guards: the facts two prompts must share before one's answer may serve the other.

An embedding says "convert 5 km to miles" and "convert 8 km to miles" mean nearly the same
thing (cosine 0.95); they do not share an answer. Guards are pure functions over the text
that extract the *anchors* of a prompt and compare them, in order:

* numbers (digits with separators, decimals, ``#1234``, ordinals, written forms like
  "twenty-five", "a hundred", "two dozen", "a pair of" or "twice", percentages, versions
  such as ``v2.10.0``, rates and fractions such as ``$5/month``, ``24/7`` or ``1/2``;
  currency amounts as number + currency), and how many things a request asks for ("give
  me an example" is one, "give me examples" several; compared where both prompts ask);
* dates (``March 15, 2030``, ``15 March 2030``, ``2030-03-15``, ``3/15/2030``; weekdays,
  "Tuesdays" as "Tuesday", and relative days such as ``tomorrow`` or ``next week``);
* units and currencies, source before target (``15 cups in ml`` == ``how many ml is 15 cups``
  but ``km to miles`` != ``miles to km``; a digit then ``'`` is feet, ``6'``);
* quoted strings (any double-quote shape; a digit then ``"`` is an inch mark, ``12"``) and
  code spans (backticks, identifiers such as ``os.path.join``, ``std::vector``,
  ``df.groupby()``, ``print(x)``, ``snake_case`` or ``2FA``, file names and types
  (``.docx``), paths such as ``/etc/hosts`` or ``~/.bashrc``, URLs and e-mail addresses
  without a trailing ``.``/``,``/``)``, but not dotted abbreviations such as ``e.g.`` or
  ``U.S.``; compared without letter case or a call's ``()``, with a call's short
  arguments where both prompts give some: ``print(x)`` != ``print(y)``); compared as sets,
  but in order when a connector joins two of them ("convert `list` to `tuple`", "from
  /etc/a to /etc/b"); a span in backticks is the same words written bare on the other side
  ("run `git rebase -i`" == "run git rebase -i");
* named entities, found by heuristics (capitalised words that are not common words,
  acronyms, camel case, ``C++``), a small gazetteer of places, languages, technologies and
  developer tools that users often type in lower case (``git``, ``pip``, ``kubectl``;
  ``React.js`` is ``React``; ``NYC``, ``LA``, ``SF``, ``UK`` and ``US``/``USA`` are the
  full names), hyphenated package and model names (``scikit-learn``, ``react-dom``,
  ``gpt-4``; not prose such as "well-known") and the packages of an install command
  (``pip install requests``); a possessive or a comma ends a name ("Google's Android",
  "Visa, Mastercard"); a place qualifier after a name is part of it ("New York City" !=
  "New York state"), unless the other prompt leaves it out ("New York"); compared
  case-insensitively and in order;
* polarity and direction words (increase/decrease, high/low, before/after, buy/sell,
  max/min, enable/disable, send/receive, raw/cooked, legal/illegal, beginner/expert,
  client/server, debit/credit, domestic/international, brief/detailed, formal/casual...;
  the same two words joined by "to"/"into" the other way round: "string to int" /
  "int to string") and negation (not, no, never, -n't).

No model is downloaded: everything here is regular expressions and small word lists. A
candidate hit must pass every enabled guard (:class:`GuardSettings`).
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields

__all__ = [
    "GuardReport",
    "GuardSettings",
    "Signature",
    "check_guards",
    "content_words",
    "signature",
    "tokens",
]

# -- word lists ---------------------------------------------------------------------------

# Common English words: a capitalised one of these is not a name (sentence starts, titles).
_COMMON = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "also",
        "am",
        "an",
        "and",
        "any",
        "are",
        "aren't",
        "as",
        "ask",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "best",
        "better",
        "between",
        "both",
        "but",
        "by",
        "can",
        "can't",
        "cannot",
        "could",
        "couldn't",
        "did",
        "didn't",
        "do",
        "does",
        "doesn't",
        "doing",
        "don't",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "get",
        "gets",
        "getting",
        "give",
        "given",
        "go",
        "going",
        "got",
        "had",
        "hadn't",
        "has",
        "hasn't",
        "have",
        "haven't",
        "having",
        "he",
        "help",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "i'd",
        "i'll",
        "i'm",
        "i've",
        "if",
        "in",
        "into",
        "is",
        "isn't",
        "it",
        "it's",
        "its",
        "itself",
        "just",
        "let",
        "let's",
        "like",
        "list",
        "make",
        "me",
        "more",
        "most",
        "much",
        "must",
        "my",
        "myself",
        "need",
        "new",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "one",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "please",
        "same",
        "say",
        "see",
        "shall",
        "she",
        "should",
        "shouldn't",
        "show",
        "so",
        "some",
        "such",
        "take",
        "tell",
        "than",
        "thank",
        "thanks",
        "that",
        "that's",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "there's",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "us",
        "use",
        "used",
        "using",
        "very",
        "want",
        "was",
        "wasn't",
        "way",
        "we",
        "well",
        "were",
        "weren't",
        "what",
        "what's",
        "when",
        "where",
        "where's",
        "which",
        "while",
        "who",
        "who's",
        "whom",
        "why",
        "why's",
        "will",
        "with",
        "won't",
        "would",
        "wouldn't",
        "write",
        "yes",
        "yet",
        "you",
        "your",
        "yours",
        "yourself",
        "hi",
        "hello",
        "hey",
        "dear",
        "ok",
        "okay",
        "sure",
        "also",
        "anyway",
        "maybe",
        "convert",
        "calculate",
        "compare",
        "explain",
        "describe",
        "define",
        "find",
        "track",
        "check",
        "tell",
        "give",
        "show",
        "list",
        "translate",
        "install",
        "installing",
        "steps",
        "step",
        "winner",
        "capital",
        "weather",
        "time",
        "tomorrow",
        "today",
        "tonight",
        "yesterday",
        "boiling",
        "boil",
        "how's",
        "hows",
        "whats",
        "who's",
        "current",
        "local",
        "cheapest",
        "cheap",
        "low-cost",
        "recommend",
        "suggest",
        "create",
        "generate",
        "summarize",
        "summarise",
        "fix",
        "debug",
        "is",
        "are",
        "was",
        "were",
        "will",
        "would",
        "should",
        "could",
        "can",
        "may",
        "might",
        "must",
        "shall",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "why",
        "when",
        "where",
        "what",
        "which",
        "who",
        "whom",
        "whose",
        "how",
    ]
)

# Place, language and technology names that are safe to match in lower case too.
_GAZETTEER_WORDS = [
    "afghanistan",
    "albania",
    "algeria",
    "andorra",
    "angola",
    "argentina",
    "armenia",
    "australia",
    "austria",
    "azerbaijan",
    "bahamas",
    "bahrain",
    "bangladesh",
    "barbados",
    "belarus",
    "belgium",
    "belize",
    "benin",
    "bhutan",
    "bolivia",
    "bosnia",
    "botswana",
    "brazil",
    "brunei",
    "bulgaria",
    "burkina",
    "burundi",
    "cambodia",
    "cameroon",
    "canada",
    "chad",
    "colombia",
    "comoros",
    "congo",
    "croatia",
    "cuba",
    "cyprus",
    "czechia",
    "czech",
    "denmark",
    "djibouti",
    "dominica",
    "ecuador",
    "egypt",
    "eritrea",
    "estonia",
    "eswatini",
    "ethiopia",
    "fiji",
    "finland",
    "france",
    "gabon",
    "gambia",
    "germany",
    "ghana",
    "greece",
    "grenada",
    "guatemala",
    "guinea",
    "guyana",
    "haiti",
    "honduras",
    "hungary",
    "iceland",
    "india",
    "indonesia",
    "iran",
    "iraq",
    "ireland",
    "israel",
    "italy",
    "jamaica",
    "japan",
    "kazakhstan",
    "kenya",
    "kiribati",
    "kosovo",
    "kuwait",
    "kyrgyzstan",
    "laos",
    "latvia",
    "lebanon",
    "lesotho",
    "liberia",
    "libya",
    "liechtenstein",
    "lithuania",
    "luxembourg",
    "madagascar",
    "malawi",
    "malaysia",
    "maldives",
    "mali",
    "malta",
    "mauritania",
    "mauritius",
    "mexico",
    "micronesia",
    "moldova",
    "monaco",
    "mongolia",
    "montenegro",
    "morocco",
    "mozambique",
    "myanmar",
    "namibia",
    "nauru",
    "nepal",
    "netherlands",
    "nicaragua",
    "niger",
    "nigeria",
    "norway",
    "oman",
    "pakistan",
    "palau",
    "palestine",
    "panama",
    "paraguay",
    "peru",
    "philippines",
    "poland",
    "portugal",
    "qatar",
    "romania",
    "russia",
    "rwanda",
    "samoa",
    "senegal",
    "serbia",
    "seychelles",
    "singapore",
    "slovakia",
    "slovenia",
    "somalia",
    "spain",
    "sudan",
    "suriname",
    "sweden",
    "switzerland",
    "syria",
    "taiwan",
    "tajikistan",
    "tanzania",
    "thailand",
    "togo",
    "tonga",
    "tunisia",
    "turkmenistan",
    "tuvalu",
    "uganda",
    "ukraine",
    "uruguay",
    "uzbekistan",
    "vanuatu",
    "venezuela",
    "vietnam",
    "yemen",
    "zambia",
    "zimbabwe",
    "england",
    "scotland",
    "wales",
    "britain",
    "usa",
    "uk",
    "uae",
    "amsterdam",
    "athens",
    "atlanta",
    "auckland",
    "austin",
    "baghdad",
    "bangkok",
    "barcelona",
    "beijing",
    "beirut",
    "berlin",
    "bogota",
    "boston",
    "brussels",
    "bucharest",
    "budapest",
    "cairo",
    "calgary",
    "chicago",
    "copenhagen",
    "dallas",
    "delhi",
    "denver",
    "detroit",
    "dubai",
    "dublin",
    "edinburgh",
    "frankfurt",
    "geneva",
    "hamburg",
    "hanoi",
    "havana",
    "helsinki",
    "honolulu",
    "houston",
    "istanbul",
    "jakarta",
    "jerusalem",
    "johannesburg",
    "kabul",
    "karachi",
    "kathmandu",
    "kiev",
    "kyiv",
    "lagos",
    "lima",
    "lisbon",
    "london",
    "madrid",
    "manila",
    "melbourne",
    "miami",
    "milan",
    "montreal",
    "moscow",
    "mumbai",
    "munich",
    "nairobi",
    "naples",
    "osaka",
    "oslo",
    "ottawa",
    "paris",
    "philadelphia",
    "phoenix",
    "prague",
    "quebec",
    "reykjavik",
    "riga",
    "rome",
    "santiago",
    "seattle",
    "seoul",
    "shanghai",
    "singapore",
    "stockholm",
    "sydney",
    "taipei",
    "tallinn",
    "tehran",
    "tokyo",
    "toronto",
    "vancouver",
    "vienna",
    "vilnius",
    "warsaw",
    "wellington",
    "zurich",
    "english",
    "french",
    "german",
    "spanish",
    "italian",
    "portuguese",
    "dutch",
    "russian",
    "chinese",
    "mandarin",
    "cantonese",
    "japanese",
    "korean",
    "arabic",
    "hindi",
    "bengali",
    "urdu",
    "turkish",
    "greek",
    "polish",
    "swedish",
    "norwegian",
    "danish",
    "finnish",
    "hebrew",
    "thai",
    "vietnamese",
    "indonesian",
    "ukrainian",
    "czech",
    "hungarian",
    "romanian",
    "persian",
    "swahili",
    "latin",
    "python",
    "javascript",
    "typescript",
    "kotlin",
    "haskell",
    "golang",
    "perl",
    "php",
    "lua",
    "matlab",
    "fortran",
    "cobol",
    "elixir",
    "erlang",
    "clojure",
    "ocaml",
    "bash",
    "powershell",
    "sql",
    "mysql",
    "postgresql",
    "postgres",
    "sqlite",
    "mongodb",
    "redis",
    "nginx",
    "apache",
    "docker",
    "kubernetes",
    "linux",
    "ubuntu",
    "debian",
    "fedora",
    "centos",
    "windows",
    "macos",
    "android",
    "ios",
    "excel",
    "numpy",
    "pandas",
    "django",
    "flask",
    "react",
    "angular",
    "vue",
    # developer tools and libraries typed in lower case (package managers, version control,
    # containers, shells and editors, build tools); tools whose name is also a common word
    # ("yarn", "brew", "cargo", "gem", "poetry") are names only before "install" or "add"
    # (_INSTALL_RE below)
    "git",
    "github",
    "gitlab",
    "bitbucket",
    "npm",
    "npx",
    "pnpm",
    "pip",
    "pip3",
    "pipx",
    "pipenv",
    "conda",
    "anaconda",
    "miniconda",
    "virtualenv",
    "kubectl",
    "minikube",
    "homebrew",
    "apt",
    "apt-get",
    "yum",
    "dnf",
    "winget",
    "vim",
    "neovim",
    "emacs",
    "tmux",
    "zsh",
    "ssh",
    "wget",
    "ffmpeg",
    "openssl",
    "gcc",
    "clang",
    "cmake",
    "gradle",
    "maven",
    "webpack",
    "eslint",
    "jupyter",
    "pytorch",
    "tensorflow",
    "keras",
    "scipy",
    "matplotlib",
    "jquery",
    "deno",
    "terraform",
    "ansible",
    "jenkins",
    "vscode",
    "heroku",
    "firebase",
    # ("curl", "make", "helm", "snap", "spark" are left out: common words too)
]
_GAZETTEER_PHRASES = (
    "new york",
    "los angeles",
    "san francisco",
    "hong kong",
    "new zealand",
    "south africa",
    "south korea",
    "north korea",
    "saudi arabia",
    "united states",
    "united kingdom",
    "costa rica",
    "sri lanka",
    "buenos aires",
    "rio de janeiro",
    "mexico city",
    # (cities named after their country or province: "Panama City" is not Panama)
    "panama city",
    "guatemala city",
    "kuwait city",
    "quebec city",
    "cape town",
    "las vegas",
    "tel aviv",
    "kuala lumpur",
    "c++",
    "c#",
    "f#",
    "node.js",
    "visual studio",
    "vs code",
)
_GAZETTEER = frozenset(_GAZETTEER_WORDS) | frozenset(_GAZETTEER_PHRASES)
# Names that are also common words: they count only when written with a capital, even as
# the first word of a sentence ("Go code to read a file", "Java 21").
_CAPITALISED_NAMES = frozenset(
    [
        "go",
        "rust",
        "swift",
        "ruby",
        "java",
        "dart",
        "julia",
        "scala",
        "crystal",
        "groovy",
        "r",
        "c",
        "turkey",
        "chile",
        "china",
        "jordan",
        "georgia",
        "nice",
        "mobile",
        "reading",
        "bath",
    ]
)
_GAZETTEER_MAX_WORDS = 3
# Short names of places, read as the full name: "NYC" is "New York City". The two-letter
# ones that are also words or notes ("us", "la") count only in capitals, or as "the us".
_ALIASES = {
    "nyc": "new york city",
    "la": "los angeles",
    "sf": "san francisco",
    "uk": "united kingdom",
    "us": "united states",
    "usa": "united states",
}
_CAPITAL_ALIASES = frozenset({"la", "sf", "us"})
# A word after a place that says which one it means: "New York City" and "New York state"
# are two places, "Washington state" is not "Washington DC". Written on one side only, it
# is a detail ("New York" and "New York City" name the same place far more often than
# not); places whose own name ends in such a word are whole names of the gazetteer
# ("Mexico City") or capitalised names ("Kansas City").
_PLACE_QUALIFIERS = frozenset({"city", "state", "county", "province", "district"})

# Hyphenated words are prose ("well-known", "e-mail", "top-up", "state-of-the-art") unless
# they name a package, tool or model: a hyphenated token with a digit ("gpt-4", "utf-8"),
# one that starts with a technology's name and does not end as a compound adjective
# ("scikit-learn", "react-dom", "docker-compose", "bert-base-cased"; not "python-based"),
# or one listed here. (Prefixes that start prose compounds are left out: "express-delivery",
# "next-gen", "spring-loaded".)
_TECH_PREFIXES = frozenset(
    [
        "ansible",
        "angular",
        "aws",
        "azure",
        "babel",
        "bert",
        "distilbert",
        "django",
        "docker",
        "eslint",
        "firebase",
        "flask",
        "gatsby",
        "git",
        "github",
        "google",
        "gpt",
        "graphql",
        "huggingface",
        "jest",
        "jquery",
        "jupyter",
        "keras",
        "kube",
        "kubernetes",
        "langchain",
        "laravel",
        "llama",
        "mongo",
        "mongodb",
        "mysql",
        "nginx",
        "node",
        "npm",
        "numpy",
        "nuxt",
        "openai",
        "opencv",
        "pandas",
        "postgres",
        "pytest",
        "python",
        "pytorch",
        "react",
        "redis",
        "redux",
        "roberta",
        "scikit",
        "sklearn",
        "sqlite",
        "svelte",
        "tailwind",
        "tensorflow",
        "terraform",
        "ts",
        "typescript",
        "vite",
        "vue",
        "webpack",
    ]
)
_PROSE_SUFFIXES = frozenset(
    [
        "agnostic",
        "aware",
        "backed",
        "based",
        "centric",
        "compatible",
        "dependent",
        "driven",
        "enabled",
        "esque",
        "first",
        "focused",
        "free",
        "friendly",
        "generated",
        "heavy",
        "independent",
        "ish",
        "level",
        "like",
        "only",
        "oriented",
        "powered",
        "ready",
        "related",
        "savvy",
        "side",
        "speaking",
        "specific",
        "style",
        "styled",
        "wide",
        "written",
    ]
)
_HYPHENATED_NAMES = frozenset(
    ["create-react-app", "pre-commit", "sentence-transformers", "styled-components"]
)
# "pip install NAME", "yarn add NAME": the words after an installer's command are package
# names, and an installer written there is a name even when it is also a common word.
# (The names are looked ahead at, and at most 20, so that a second command in the same
# text, "npm i lodash then yarn add leftpad", is read too, in linear time; a flag is "-"
# then [\w-]+, one way only: "-{1,2}[\w-]+" splits "--x" two ways, 2**k tries for k flags.)
_INSTALL_RE = re.compile(
    r"\b(apt-get|apt|brew|cargo|conda|gem|mamba|npm|pip3?|pipx|pnpm|poetry|uv|yarn)\s+"
    r"(?:install|add|i)\b((?:\s+-[\w-]+|\s+[\ue000-\uefff])*)"
    r"(?=((?:\s+[A-Za-z][\w.-]*){1,20}))",
    re.IGNORECASE,
)
_NOT_PACKAGES = frozenset(
    [
        "command",
        "error",
        "globally",
        "library",
        "locally",
        "module",
        "package",
        "packages",
        "version",
    ]
)


def _is_hyphenated_name(low: str) -> bool:
    if low in _HYPHENATED_NAMES or any(c.isdigit() for c in low):
        return True
    parts = low.split("-")
    return parts[0] in _TECH_PREFIXES and parts[-1] not in _PROSE_SUFFIXES


def _installed_names(text: str) -> set[int]:
    """Where the installers and package names of install commands start in ``text``."""
    starts: set[int] = set()
    for m in _INSTALL_RE.finditer(text):
        starts.add(m.start(1))
        for word in _WORD_RE.finditer(text, m.start(3), m.end(3)):
            low = word.group().lower().rstrip(".")
            if low in _STOP or low in _COMMON or low in _NOT_PACKAGES:
                break
            starts.add(word.start())
            if word.group().endswith("."):
                break
    return starts


_WORD_RE = re.compile(r"\S+")

# Units of measure: every spelling maps to one canonical name.
_UNIT_SPELLINGS: dict[str, tuple[str, ...]] = {
    "km": ("km", "kms", "kilometer", "kilometers", "kilometre", "kilometres"),
    "m": ("meter", "meters", "metre", "metres"),
    "cm": ("cm", "centimeter", "centimeters", "centimetre", "centimetres"),
    "mm": ("mm", "millimeter", "millimeters", "millimetre", "millimetres"),
    "mi": ("mi", "mile", "miles"),
    "yd": ("yd", "yard", "yards"),
    "ft": ("ft", "foot", "feet"),
    "in": ("inch", "inches"),
    "kg": ("kg", "kgs", "kilogram", "kilograms", "kilo", "kilos"),
    "g": ("g", "gram", "grams", "gramme", "grammes"),
    "mg": ("mg", "milligram", "milligrams"),
    "lb": ("lb", "lbs", "pound", "pounds"),
    "oz": ("oz", "ounce", "ounces"),
    "st": ("stone", "stones"),
    "t": ("ton", "tons", "tonne", "tonnes"),
    "l": ("l", "liter", "liters", "litre", "litres"),
    "ml": ("ml", "milliliter", "milliliters", "millilitre", "millilitres"),
    "gal": ("gal", "gallon", "gallons"),
    "qt": ("qt", "quart", "quarts"),
    "pt": ("pint", "pints"),
    "cup": ("cup", "cups"),
    "tbsp": ("tbsp", "tablespoon", "tablespoons"),
    "tsp": ("tsp", "teaspoon", "teaspoons"),
    "floz": ("fl oz", "fluid ounce", "fluid ounces"),
    "C": ("celsius", "centigrade", "°c"),
    "F": ("fahrenheit", "°f"),
    "K": ("kelvin", "kelvins"),
    "mph": ("mph",),
    "kmh": ("kph", "kmh", "km/h"),
    "m/s": ("m/s",),
    "kb": ("kb", "kilobyte", "kilobytes"),
    "mb": ("mb", "megabyte", "megabytes"),
    "gb": ("gb", "gigabyte", "gigabytes"),
    "tb": ("tb", "terabyte", "terabytes"),
    "w": ("watt", "watts"),
    "kw": ("kw", "kilowatt", "kilowatts"),
    "kwh": ("kwh",),
    "hp": ("hp", "horsepower"),
    "cal": ("calorie", "calories", "kcal"),
    "acre": ("acre", "acres"),
    "ha": ("hectare", "hectares"),
    "sqft": ("sq ft", "square feet", "square foot"),
    "sqm": ("square meter", "square meters", "square metre", "square metres", "m2"),
    "rad": ("radian", "radians"),
    "deg": ("degree", "degrees"),
}
# Time units count only when attached to a number ("3 days"): "how many days does it
# take" and "how long does it take" ask the same thing.
_UNIT_WORDS = frozenset(n for names in _UNIT_SPELLINGS.values() for n in names)
_TIME_UNITS: dict[str, tuple[str, ...]] = {
    "s": ("second", "seconds", "sec", "secs"),
    "min": ("minute", "minutes", "mins"),
    "h": ("hour", "hours", "hr", "hrs"),
    "day": ("day", "days"),
    "week": ("week", "weeks"),
    "month": ("month", "months"),
    "year": ("year", "years"),
}
# Counting words that, like time units, count only right after a number: "two pairs of
# socks" is not "a pair of socks" (which reads as the number two), but "how to pair
# headphones" has no unit.
_COUNT_UNITS: dict[str, tuple[str, ...]] = {"pair": ("pair", "pairs")}
_CURRENCY_SPELLINGS: dict[str, tuple[str, ...]] = {
    "USD": ("usd", "dollar", "dollars", "us dollar", "us dollars", "$"),
    "EUR": ("eur", "euro", "euros", "€"),
    "GBP": ("gbp", "sterling", "£"),
    "JPY": ("jpy", "yen", "¥"),
    "CHF": ("chf", "swiss franc", "swiss francs"),
    "CAD": ("cad", "canadian dollar", "canadian dollars"),
    "AUD": ("aud", "australian dollar", "australian dollars"),
    "NZD": ("nzd",),
    "CNY": ("cny", "rmb", "yuan", "renminbi"),
    "INR": ("inr", "rupee", "rupees", "₹"),
    "MXN": ("mxn", "peso", "pesos"),
    "BRL": ("brl", "real", "reais"),
    "SEK": ("sek", "krona", "kronor"),
    "NOK": ("nok", "krone", "kroner"),
    "DKK": ("dkk",),
    "PLN": ("pln", "zloty"),
    "RUB": ("rub", "ruble", "rubles", "rouble", "roubles"),
    "KRW": ("krw", "won"),
    "SGD": ("sgd",),
    "HKD": ("hkd",),
    "ZAR": ("zar", "rand"),
    "TRY": ("lira",),
    "BTC": ("btc", "bitcoin", "bitcoins"),
    "ETH": ("eth", "ether", "ethereum"),
}
# Currency names that are also common words count only next to a number or another code.
_AMBIGUOUS_CURRENCY = frozenset({"real", "won", "rand", "ether"})


def _spellings(table: dict[str, tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    return {tuple(_tokens_of(s)): canon for canon, names in table.items() for s in names}


# Antonym pairs: per pair, the poles two prompts mention must not conflict.
_POLES: tuple[tuple[frozenset[str], frozenset[str]], ...] = tuple(
    (frozenset(a.split()), frozenset(b.split()))
    for a, b in (
        (
            "increase increases increased increasing raise raising boost boosting grow"
            " growing higher more maximize maximise improve improving gain gaining",
            "decrease decreases decreased decreasing reduce reduces reducing lower lowering"
            " less fewer minimize minimise shrink shrinking cut cutting drop dropping lose"
            " losing worsen",
        ),
        ("high", "low"),
        ("before earlier", "after later"),
        ("buy buying bought purchase purchasing", "sell selling sold"),
        (
            "max maximum most largest biggest highest longest greatest",
            "min minimum least smallest lowest shortest fewest",
        ),
        (
            "enable enabling enabled activate activating activated unlock unblock unfreeze on",
            "disable disabling disabled deactivate deactivating deactivated lock block freeze off",
        ),
        ("add adding", "remove removing delete deleting"),
        ("send sending sent", "receive receiving received"),
        ("deposit depositing", "withdraw withdrawing withdrawal"),
        ("import importing", "export exporting"),
        ("upload uploading", "download downloading"),
        ("encrypt encrypting encryption", "decrypt decrypting decryption"),
        ("encode encoding", "decode decoding"),
        ("push pushing", "pull pulling"),
        ("start starting", "stop stopping"),
        ("open opening", "close closing"),
        ("win winning won", "lose losing lost"),
        ("positive", "negative"),
        ("true", "false"),
        ("hot warm", "cold cool"),
        ("fast faster fastest quick quickly", "slow slower slowest slowly"),
        ("cheap cheaper cheapest inexpensive low-cost", "expensive pricey costly"),
        ("best", "worst"),
        ("advantages pros benefits", "disadvantages cons drawbacks"),
        ("north northern", "south southern"),
        ("east eastern", "west western"),
        ("above over", "below under"),
        ("with", "without"),
        ("inside internal", "outside external"),
        ("first", "last"),
        ("old older oldest", "young younger youngest new newer newest"),
        ("big bigger large larger", "small smaller little"),
        ("long", "short"),
        ("heavy heavier", "light lighter"),
        ("strong stronger", "weak weaker"),
        ("input", "output"),
        ("upper uppercase", "lower lowercase"),
        ("ascending", "descending"),
        ("plus", "minus"),
        ("husband", "wife"),
        ("men men's male", "women women's female"),
        ("boy boys", "girl girls"),
        # states and kinds whose answers differ ("is raw chicken safe to eat?")
        ("good", "bad"),
        ("difference differences", "similarity similarities"),
        ("active", "passive"),
        ("singular", "plural"),
        ("synonym synonyms", "antonym antonyms"),
        ("permanent permanently", "temporary temporarily"),
        ("upgrade upgrading", "downgrade downgrading"),
        ("brief briefly concise", "detail detailed thorough thoroughly"),
        ("formal formally", "informal casual casually"),
        ("happy", "sad"),
        ("soft", "hard"),
        ("raw uncooked", "cooked"),
        ("safe", "unsafe dangerous"),
        ("legal", "illegal"),
        ("easy easier easiest", "hard harder hardest difficult"),
        ("beginner beginners novice", "expert experts"),
        ("child children kid kids", "adult adults"),
        ("early earlier", "late"),
        ("morning", "evening"),
        ("day daytime", "night nighttime"),
        ("summer", "winter"),
        ("spring", "autumn fall"),
        ("public", "private"),
        ("free", "paid"),
        ("past", "future"),
        ("wet", "dry"),
        ("sweet", "savory savoury"),
        ("left", "right"),
        ("top", "bottom"),
        ("horizontal horizontally", "vertical vertically"),
        ("include including", "exclude excluding"),
        ("online", "offline"),
        ("local", "remote"),
        ("client client-side", "server server-side"),
        ("frontend front-end", "backend back-end"),
        ("synchronous sync", "asynchronous async"),
        ("static", "dynamic"),
        ("mutable", "immutable"),
        ("prefix", "suffix"),
        ("install installing", "uninstall uninstalling"),
        ("login log-in", "logout log-out"),
        ("subscribe subscribing", "unsubscribe unsubscribing"),
        ("compress compressing compression zip", "decompress decompressing unzip"),
        # banking: each names another product or route
        ("debit", "credit"),
        ("physical", "virtual"),
        ("domestic", "international foreign abroad overseas"),
    )
)
_POLE_WORDS = frozenset().union(*(a | b for a, b in _POLES))


# word -> the (pair, side) it stands for: most prompts hold no pole word or one, so the
# poles are read from the few words found rather than by testing every pair
def _pole_index() -> dict[str, list[tuple[int, int]]]:
    index: dict[str, list[tuple[int, int]]] = {}
    for k, pair in enumerate(_POLES):
        for side, words in enumerate(pair):
            for word in words:
                index.setdefault(word, []).append((k, side))
    return index


_POLE_INDEX = _pole_index()
# the sides found, by bit mask (1: side 0, 2: side 1)
_SIDES: tuple[frozenset[int], ...] = (
    frozenset(),
    frozenset({0}),
    frozenset({1}),
    frozenset({0, 1}),
)
_NO_POLES: tuple[frozenset[int], ...] = (frozenset(),) * len(_POLES)


def _poles_of(present: frozenset[str]) -> tuple[frozenset[int], ...]:
    """Per antonym pair, the sides (0, 1) whose words are among ``present``."""
    found = present & _POLE_WORDS
    if not found:
        return _NO_POLES
    masks = [0] * len(_POLES)
    for word in found:
        for k, side in _POLE_INDEX[word]:
            masks[k] |= 1 << side
    return tuple(_SIDES[m] for m in masks)


_NEGATIONS = frozenset(
    [
        "not",
        "no",
        "never",
        "none",
        "nothing",
        "nobody",
        "nowhere",
        "neither",
        "nor",
        "cannot",
        "can't",
        "won't",
        "don't",
        "doesn't",
        "didn't",
        "isn't",
        "aren't",
        "wasn't",
        "weren't",
        "hasn't",
        "haven't",
        "hadn't",
        "shouldn't",
        "wouldn't",
        "couldn't",
        "mustn't",
        "without",
    ]
)

_NUMBER_WORDS = {
    "zero": 0, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60,
    "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
# Multipliers: "two dozen" is 24 and "three hundred" 300; alone they need "a" or "one"
# before them ("a hundred", "one thousand"), except "dozen", which is never a pronoun.
# Adverbs of repetition: "twice" is "two times". They are loose numbers, as "twice" says
# "more than once" as often as "two": "charged twice" is "charged two times" and not
# "charged 3 times", but also "a duplicate charge" (and "once" is also "as soon as").
_TIMES_WORDS = {"once": 1, "twice": 2, "thrice": 3}
_SCALES = {"dozen": 12, "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}
_ORDINAL_WORDS = {
    "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7,
    "eighth": 8, "ninth": 9, "tenth": 10, "eleventh": 11, "twelfth": 12, "twentieth": 20,
}  # fmt: skip
_MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4,
    "apr": 4, "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8,
    "september": 9, "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11,
    "nov": 11, "december": 12, "dec": 12,
}  # fmt: skip
# Month abbreviations and "may"/"march" are common words: they count only beside a number.
_STRICT_MONTHS = frozenset(
    {
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "may",
        "march",
    }
)
_DAY_WORDS = frozenset(
    [
        "today",
        "tomorrow",
        "yesterday",
        "tonight",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
)
# each day word, and the weekdays' plurals ("on Tuesdays" is "on Tuesday")
_DAY_NAMES = {w: w for w in _DAY_WORDS} | {
    f"{w}s": w for w in _DAY_WORDS if w.endswith("day") and w not in ("today", "yesterday")
}
_RELATIVE = frozenset({"next", "last", "this", "previous", "coming"})
_PERIODS = frozenset({"week", "month", "year", "weekend", "quarter", "decade", "century"})

# -- tokenizer ----------------------------------------------------------------------------

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


def _stem(word: str) -> str:
    # A crude suffix stripper: enough to match "boil"/"boiling", "card"/"cards".
    for suffix, keep in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + keep
    return word


# Words skipped between a direction word and what it joins ("a string to an int").
_ARROW_SKIP = frozenset([
    "a", "an", "the", "my", "your", "our", "their", "his", "her", "its", "this", "that",
    "these", "those", "some", "any",
])  # fmt: skip


def _arrows(lows: list[str]) -> frozenset[tuple[str, str]]:
    """The (source, target) pairs of word stems around each "to"/"into" in ``lows``."""
    out: set[tuple[str, str]] = set()
    for i, w in enumerate(lows):
        if w not in ("to", "into"):
            continue
        j = i - 1
        while j >= 0 and lows[j] in _ARROW_SKIP:
            j -= 1
        k = i + 1
        while k < len(lows) and lows[k] in _ARROW_SKIP:
            k += 1
        if j >= 0 and k < len(lows) and lows[j].isalpha() and lows[k].isalpha():
            out.add((_stem(lows[j]), _stem(lows[k])))
    return frozenset(out)


def content_words(text: str) -> list[str]:
    """Stemmed, lower-case content words of ``text`` (stop words dropped), in order."""
    return [_stem(t) for t in _tokens_of(text) if t not in _STOP and not t.isdigit()]


# -- extraction ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signature:
    """The anchors of one prompt, in order of appearance (see the module docstring)."""

    numbers: tuple[str, ...] = ()
    # the numbers with the loose ones of repetition words among them ("twice": "2")
    all_numbers: tuple[str, ...] = ()
    dates: tuple[str, ...] = ()
    units: tuple[str, ...] = ()
    quotes: tuple[str, ...] = ()
    code: tuple[str, ...] = ()
    entities: tuple[str, ...] = ()
    entity_candidates: frozenset[str] = frozenset()
    # entities with a place qualifier after them ("new york city"): one the other prompt
    # leaves out is no conflict, another one is
    qualified: frozenset[str] = frozenset()
    # how many things each request asks for ("give me an example": "1", "list examples":
    # "n"), compared with the numbers where both prompts ask
    requested: tuple[str, ...] = ()
    directed: bool = False
    # a connector joins two code spans or quotes ("convert `list` to `tuple`"): their order
    # counts, as the entities' does when ``directed``
    literals_directed: bool = False
    poles: tuple[frozenset[int], ...] = field(default=(), repr=False)
    # (source, target) word stems joined by "to"/"into" ("convert string to int"): the
    # same two words the other way round on the other side are a reversed direction
    arrows: frozenset[tuple[str, str]] = field(default=frozenset(), repr=False)
    negated: bool = False
    words: frozenset[str] = frozenset()
    low_text: str = field(default="", repr=False)
    # the text as given, and its backtick spans as bare words (see :func:`check_guards`)
    text: str = field(default="", repr=False)
    ticked: tuple[str, ...] = field(default=(), repr=False)

    @property
    def anchors(self) -> int:
        """How many anchors (numbers, dates, units, quotes, code, entities) were found."""
        return (
            len(self.numbers)
            + len(self.dates)
            + len(self.units)
            + len(self.quotes)
            + len(self.code)
            + len(self.entities)
        )


# Double quotes are read whatever their shape: typed ("), typographic (“ ”), low („), or a
# closing mark used to open (”::”, as autocorrect leaves it): text quoted one way on one
# side and another way on the other is the same quote. Single curly quotes keep their
# pairing: a lone right single quote is an apostrophe. (A quote's text holds no opening
# mark of its own kind: a line of unclosed "\u2018" would be scanned once per mark.)
_DQ = '"\u201c\u201d\u201e\u201f'
_QUOTE_RE = re.compile(
    r"""(?:(?<![\w])'(?P<s>[^'\n]*?(?:\w'\w[^'\n]*?)*)'(?![\w]))"""  # 'I don't know'
    rf"""|[{_DQ}](?P<d>[^{_DQ}\n]+)[{_DQ}]|\u2018(?P<t>[^\u2018\u2019\n]+)\u2019"""
)
# A "v" before a dotted number is the word "version": "v2.10.0" is "version 2.10.0".
# Undotted ones ("v8", "V2") stay identifiers.
# (Not inside a path: "/docs/v2.10.0/x" keeps its segment.)
_VERSION_RE = re.compile(r"(?<!/)\b[vV](?=\d+(?:\.\d+)+\b)")
_CODE_RE = re.compile(r"```.*?```|`[^`\n]+`", re.DOTALL)
# Identifiers come in two passes: addresses and paths first (only in a text with a slash,
# backslash or "@", which most prompts lack: one regex with every alternative makes the
# scan of every prompt ~30% slower), then names.
_PATH_RE = re.compile(
    r"""
    https?://\S*[^\s.,;:!?)\]'"]                   # URLs (not a trailing "." "," ")")
    | (?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+     # e-mail addresses
    | (?<![\w/~.\\])(?:(?:~|\.\.?)(?=/)(?:/(?:\.\.?(?=/)|[\w.-]*[\w-]))+  # ~/.bashrc ../x
      | (?=/[A-Za-z_.])(?:/(?:\.\.?(?=/)|[\w.-]*[\w-])){2,}             # /etc/hosts
      | [A-Za-z]:\\[\w.\\-]*[\w-])                                      # C:\Users\me
    | (?<![\w/.-])(?:[\w.-]+/)+[\w.-]*[\w-]        # src/main.py
    """,
    re.VERBOSE,
)
_IDENT_RE = re.compile(
    r"""
    (?P<dotted>(?<![\w.])[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?:\([^()\n]{0,40}\))?(?!\w)
                                                   # os.path.join, df.groupby(key), fs.ls
    | \b[A-Za-z_]\w*(?:\((?!e?s\))[^()\n]{0,40}\)|(?=\((?!e?s\))))
                                                   # call(), print(x); not "file(s)"
    | \b\w*_\w+\b                                  # snake_case
    | (?<!\w)--?[a-z][\w-]*                        # --flag
    | \b(?=\w*\d)(?=\w*[A-Za-z])\w{2,}\b           # 2FA, x86, A1234, ES2015
    | (?P<ext>\.(?<![\w.]\.)(?:[a-z][a-z0-9]{1,11}|[A-Z][A-Z0-9]{1,11})\b)(?![.\w])
                                                   # .docx, .PDF, .gitignore (file types)
    """,
    re.VERBOSE,
)


# Scoped names (C++, Rust, Ruby, PHP): ``std::vector``, ``Foo::~Foo()``, ``a::b::c``. Only
# in a text with "::" (another alternative in ``_IDENT_RE`` costs every prompt ~15%).
_SCOPED_RE = re.compile(
    r"(?<![\w:])[A-Za-z_]\w*(?:::~?[A-Za-z_]\w*)+(?:\([^()\n]{0,40}\))?(?![\w:])"
)


_PROSE_SLASH_RE = re.compile(r"[A-Za-z]+/[A-Za-z]+")
# A number, a slash and one word or number is a rate or a fraction ("$5/month", "24/7",
# "1/2"), not a path: its numbers are read as numbers.
_RATE_RE = re.compile(r"\d+(?:[.,]\d+)?/(?:[A-Za-z]+|\d+(?:\.\d+)?)")
# A call's arguments are part of its value ("print(x)" is not "print(y)"); a call written
# without them names the function whatever its arguments ("df.groupby()", "df.groupby").
_CALL_RE = re.compile(r"([\w.]+)\((.*)\)", re.DOTALL)
_EMPTY_CALL_RE = re.compile(r"\(\s+\)")

# Code spans and quotes leave a mark in the text where they stood (a private-use character
# per span, numbered), so that their order and the words between them can be read after
# every pass: "convert `list` to `tuple`" is directed, "use `a` and `b`" is not.
_CODE_MARK = 0xE000
_QUOTE_MARK = 0xE800
_MARK_SPAN = 0x800  # marks per kind
_MARK_RE = re.compile("[\ue000-\uefff]")
# the words between two marks that give them a direction (as ``_CONNECTORS`` for names,
# maybe after one noun: "convert a `.docx` file to `.pdf`"), and "from" before a mark
# ("migrate from /etc/a ...")
_LITERAL_GAP_RE = re.compile(
    r"\s*(?:(?!and\b|or\b)\w+\s+)?(?:to|into|vs\.?|versus|than|from|->|=>|\u2192)\s+"
    r"(?:(?:a|an|the)\s+)?",
    re.IGNORECASE,
)
_FROM_BEFORE_RE = re.compile(r"\bfrom\s+(?:(?:a|an|the)\s+)?$", re.IGNORECASE)


def _mark(base: int, index: int) -> str:
    return f" {chr(base + index)} " if index < _MARK_SPAN else " "


def _marks_in(text: str) -> str:
    """The marks inside ``text`` (a span taken whole keeps those it swallowed)."""
    return "".join(_MARK_RE.findall(text))


def _literal_order(
    rest: str, code: list[str], quotes: list[str]
) -> tuple[list[str], list[str], bool]:
    """Code spans and quotes in text order, and whether a connector orders them."""
    code_at: list[str] = []
    quotes_at: list[str] = []
    directed = False
    prev_end = -1
    for m in _MARK_RE.finditer(rest):
        k = ord(m.group())
        if k >= _QUOTE_MARK:
            quotes_at.append(quotes[k - _QUOTE_MARK])
        else:
            code_at.append(code[k - _CODE_MARK])
        if not directed:
            start = m.start()
            directed = (
                prev_end >= 0 and _LITERAL_GAP_RE.fullmatch(rest, prev_end, start) is not None
            ) or _FROM_BEFORE_RE.search(rest[max(0, start - 12) : start]) is not None
            prev_end = m.end()
    # (a text with thousands of spans runs out of marks: the rest keep extraction order)
    if len(code_at) < len(code):
        code_at += code[_MARK_SPAN:]
    if len(quotes_at) < len(quotes):
        quotes_at += quotes[_MARK_SPAN:]
    return code_at, quotes_at, directed


# Dotted abbreviations with a part longer than two letters (shorter ones go by shape).
_DOTTED_ABBREVIATIONS = frozenset(
    ["b.arch", "m.arch", "b.com", "m.com", "b.tech", "m.tech", "m.phil", "d.phil", "b.pharm"]
)


def _is_dotted_code(name: str, call: bool) -> bool:
    """Is the dotted name ``name`` (``os.path.join``, ``e.g``, ``node.js``) code?

    A call (``a.b()``, ``a.b(x)``) always is. Otherwise dotted abbreviations are not:
    they cut words to one or two letters with at least one single letter (``e.g``,
    ``i.e``, ``U.S``, ``a.m``, ``Ph.D``, ``M.Sc``), or are listed above; nor are the
    technologies of the gazetteer (``node.js``), left to the entity guard. Everything
    else is: an attribute path (``os.path.join``, ``fs.ls``, ``Split.TRAIN``), a file
    name (``README.md``, ``index.js``) or a domain (``amazon.com``), each one value that
    two prompts must share. A missing space after a full stop ("card.What") reads as code
    too, as it read as a name before.
    """
    if call:
        return True
    low = name.lower()
    parts = low.split(".")
    if all(len(p) <= 2 for p in parts) and any(len(p) == 1 for p in parts):
        return False
    return low not in _DOTTED_ABBREVIATIONS and low not in _GAZETTEER


# A digit then a double quote is an inch mark, not a quote ("a 12" pizza"), unless it closes
# a quote left open ('"iPhone 12"'); and a digit then a single quote before inches is feet
# (5'10"). Double primes are inch marks wherever they follow a digit.
_DIGIT_MARK_RE = re.compile(rf"\d[{_DQ}\u2033]")
_INCH_RE = re.compile(rf"[{_DQ}\u2033\n]")
_FEET_RE = re.compile(r"(?<=\d)['\u2032](?=\s?\d+(?:\.\d+)?\s?[\"\u201d\u2033])")


def _inch_marks(text: str) -> str:
    """``text`` with its inch and feet marks written as words (``12"`` -> ``12 inches``)."""
    if _DIGIT_MARK_RE.search(text) is None:
        return text
    text = _FEET_RE.sub(" feet ", text)
    out: list[str] = []
    last = 0
    open_quote = False
    for m in _INCH_RE.finditer(text):
        mark = m.group()
        if mark == "\n":
            open_quote = False  # quotes never span lines
        elif (
            m.start() > 0 and text[m.start() - 1].isdigit() and (mark == "\u2033" or not open_quote)
        ):
            out.append(text[last : m.start()])
            out.append(" inches ")
            last = m.end()
        elif mark != "\u2033":
            open_quote = not open_quote
    out.append(text[last:])
    return "".join(out)


# A digit then a single quote (or prime) left over once quotes are read is feet: "I'm 6'
# tall" is "6 feet" (not "press '5'" or "'iPhone 12'", quotes; "5'10\"" is read above).
_FEET_ALONE_RE = re.compile(r"(?<![\w'\u2018.])(\d+(?:\.\d+)?)['\u2032](?![\w'\u2032])")


_DIGIT_QUOTE_RE = re.compile(r"\d['\u2032]")


def _feet_marks(text: str) -> str:
    if _DIGIT_QUOTE_RE.search(text) is None:
        return text
    return _FEET_ALONE_RE.sub(r"\1 feet ", text)


# "React.js", "reactjs" and "React" name one technology: a ".js" after a technology of the
# gazetteer is dropped ("node" alone is a common word: "nodejs" is written "node.js").
_JS_NAME_RE = re.compile(r"(?<![\w.])([A-Za-z]+)\.?js\b(?!\.\w)", re.IGNORECASE)


def _js_name(m: re.Match[str]) -> str:
    name = m[1]
    low = name.lower()
    if low == "node":
        return "node.js"
    return name if low in _GAZETTEER else m.group()


def _int_text(digits: str) -> str:
    """``str(int(digits))`` for decimal digits of any length: ``int()`` refuses more than
    ``sys.get_int_max_str_digits()`` (4300 by default, 640 at the least), and a prompt may
    hold a longer run of digits (a hex dump, a pasted number)."""
    if len(digits) <= 640:
        return str(int(digits))
    return digits.lstrip("0") or "0"


def _canon_number(raw: str) -> str:
    s = raw.lstrip("#").replace(",", "")
    pct = s.endswith("%")
    s = s.rstrip("%")
    s = re.sub(r"(st|nd|rd|th)$", "", s)
    if s.count(".") == 1:
        whole, frac = s.split(".")
        frac = frac.rstrip("0")
        s = f"{_int_text(whole or '0')}.{frac}" if frac else _int_text(whole or "0")
    elif s.count(".") == 0 and s.isdigit():
        s = _int_text(s)
    return s + ("%" if pct else "")


def _phrase_table() -> dict[tuple[str, ...], tuple[str, str]]:
    table: dict[tuple[str, ...], tuple[str, str]] = {}
    for spelling, canon in _spellings(_UNIT_SPELLINGS).items():
        table[spelling] = ("unit", canon)
    for spelling, canon in _spellings(_TIME_UNITS).items():
        table[spelling] = ("time", canon)
    for spelling, canon in _spellings(_COUNT_UNITS).items():
        table[spelling] = ("time", canon)  # same rule: a unit only after a number
    for spelling, canon in _spellings(_CURRENCY_SPELLINGS).items():
        table[spelling] = ("currency", canon)
    return table


@functools.cache
def _phrases() -> tuple[dict[tuple[str, ...], tuple[str, str]], int]:
    table = _phrase_table()
    return table, max(len(k) for k in table)


def _written_number(toks: list[_Tok], i: int) -> tuple[int, int] | None:
    """A number written in words starting at ``toks[i]``: (value, tokens used)."""
    if (
        toks[i].low == "pair"
        and i > 0
        and toks[i - 1].low in ("a", "one")
        and i + 1 < len(toks)
        and toks[i + 1].low == "of"
    ):
        return 2, 1  # "a pair of sentences" is "two sentences"
    total = current = 0
    j = i
    seen = False
    while j < len(toks):
        w = toks[j].low
        parts = w.split("-") if "-" in w else [w]
        if len(parts) > 1 and all(p in _NUMBER_WORDS or p == "one" for p in parts):
            current += sum(_NUMBER_WORDS.get(p, 1) for p in parts)  # "twenty-one"
            seen = True
        elif all(p in _NUMBER_WORDS for p in parts):
            current += sum(_NUMBER_WORDS[p] for p in parts)
            seen = True
        elif (
            w in _SCALES
            and (seen or w == "dozen" or (j == i and i > 0 and toks[i - 1].low in ("a", "one")))
            # "twelve hundred", not "hundred hundred" or "dozen dozen dozen": each would
            # multiply the value again (a number of thousands of digits, which str() refuses)
            and (_SCALES[w] >= 1000 or current < 100)
        ):
            current = max(current, 1) * _SCALES[w]
            if _SCALES[w] >= 1000:
                total += current
                current = 0
            seen = True
        elif w == "and" and seen and j + 1 < len(toks) and toks[j + 1].low in _NUMBER_WORDS:
            pass
        elif w == "one" and (
            seen or (j + 1 < len(toks) and toks[j + 1].low in _SCALES)
        ):  # "one" alone is too often a pronoun ("a new one")
            current += 1
            seen = True
        else:
            break
        j += 1
    if not seen:
        return None
    return total + current, j - i


def _date_at(toks: list[_Tok], i: int) -> tuple[str, int] | None:
    """A calendar date starting at ``toks[i]``: (canonical ``Y-M-D`` text, tokens used)."""
    n = len(toks)

    def num(k: int, lo: int, hi: int) -> int | None:
        if k < n and toks[k].kind == "num":
            s = re.sub(r"(st|nd|rd|th)$", "", toks[k].low.lstrip("#"))
            s = s.lstrip("0") or "0"  # (int() refuses thousands of digits)
            if s.isdigit() and len(s) <= 4 and lo <= int(s) <= hi:
                return int(s)
        return None

    def month(k: int) -> int | None:
        return _MONTHS.get(toks[k].low) if k < n else None

    def year_after(k: int) -> tuple[int | None, int]:
        # optional "," is not a token; an optional year follows
        y = num(k, 1000, 2999)
        return (y, 1) if y is not None else (None, 0)

    m = month(i)
    if m is not None:
        d = num(i + 1, 1, 31)
        if d is not None:
            y, used = year_after(i + 2)
            return f"{y or '?'}-{m}-{d}", 2 + used
        y = num(i + 1, 1000, 2999)
        if y is not None:
            return f"{y}-{m}-?", 2
        return None
    d = num(i, 1, 31)
    if d is not None:
        k = i + 1
        if k < n and toks[k].low == "of":
            k += 1
        m = month(k)
        if m is not None:
            y, used = year_after(k + 1)
            return f"{y or '?'}-{m}-{d}", k + 1 - i + used
    return None


_ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b")
_SLASH_DATE_RE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{2,4})\b")


def signature(text: str) -> Signature:
    """Extract the anchors of ``text`` (pure, cached; about 0.2 ms for a new one-line prompt)."""
    return _signature(text)


# Capital letters each followed by a full stop ("U.S.", "U.K.", "E.U."): an acronym written
# with dots, the same name as without them.
_DOTTED_ACRONYM_RE = re.compile(r"\b(?:[A-Z]\.){2,}(?![A-Za-z0-9])")


def _undot(m: re.Match[str]) -> str:
    # the last full stop stays: it may also end the sentence ("I live in the U.S. Can...")
    return m.group()[:-1].replace(".", "") + "."


@functools.lru_cache(maxsize=8192)
def _signature(text: str) -> Signature:
    quotes: list[str] = []
    code: list[str] = []

    def take_code(m: re.Match[str]) -> str:
        code.append(m.group().strip("`").strip())
        return _mark(_CODE_MARK, len(code) - 1)

    given = text

    if _MARK_RE.search(text) is not None:
        text = _MARK_RE.sub(" ", text)  # the text's own private-use characters are not marks
    if "." in text:
        text = _DOTTED_ACRONYM_RE.sub(_undot, text)  # "U.S." is "US", "U.K." is "UK"
    rest = _CODE_RE.sub(take_code, text) if "`" in text else text
    ticked = tuple(_bare_words(c) for c in code) if code else ()

    def take_quote(m: re.Match[str]) -> str:
        inner = next(g for g in m.groups() if g is not None)
        quotes.append(" ".join(_MARK_RE.sub(" ", inner).lower().split()))
        return _mark(_QUOTE_MARK, len(quotes) - 1) + _marks_in(inner)

    rest = _feet_marks(_QUOTE_RE.sub(take_quote, _inch_marks(rest)))
    dates: list[tuple[int, str]] = []

    def take_iso(m: re.Match[str]) -> str:
        dates.append((m.start(), f"{int(m[1])}-{int(m[2])}-{int(m[3])}"))
        return " "

    def take_slash(m: re.Match[str]) -> str:
        year = int(m[3]) + (2000 if len(m[3]) == 2 else 0)
        dates.append((m.start(), f"{year}-{int(m[1])}-{int(m[2])}"))
        return " "

    rest = _ISO_DATE_RE.sub(take_iso, rest)
    rest = _SLASH_DATE_RE.sub(take_slash, rest)

    def take_ident(m: re.Match[str]) -> str:
        value = m.group()
        # plain ordinals and numbers with a unit ("3rd", "5km") are numbers, not ids
        unit = re.fullmatch(r"\d+(?:\.\d+)?([a-zA-Z]{1,3})", value)
        if re.fullmatch(r"\d+(?:st|nd|rd|th)", value) or (
            unit is not None and unit[1].lower() in _UNIT_WORDS
        ):
            return value
        # one slash between two plain words is prose ("list/dictionary", "and/or") or a
        # unit ("km/h"), not a path: paths show a dot, digit, underscore or second slash;
        # a number before it makes a rate or a fraction ("$5/month", "24/7")
        if _PROSE_SLASH_RE.fullmatch(value) or _RATE_RE.fullmatch(value):
            return value
        if m.re is _IDENT_RE and m["ext"] is not None and value[1:].lower() in _COMMON:
            return value  # a full stop before a word, " .is it", is no file type
        if value.lower() in _GAZETTEER:
            return value  # a name with a digit ("pip3") is left to the entity guard
        dotted = m["dotted"] if m.re is _IDENT_RE else None
        if dotted is not None and not _is_dotted_code(
            dotted, "(" in value or m.string.startswith("(", m.end())
        ):
            return value
        marks = _marks_in(value)  # a quote among a call's arguments
        code.append(_EMPTY_CALL_RE.sub("()", _MARK_RE.sub("", value)) if marks else value)
        return _mark(_CODE_MARK, len(code) - 1) + marks

    rest = _VERSION_RE.sub(" ", rest)
    if "js" in rest or "JS" in rest or "Js" in rest:
        rest = _JS_NAME_RE.sub(_js_name, rest)
    if "/" in rest or "\\" in rest or "@" in rest:
        rest = _PATH_RE.sub(take_ident, rest)
    if "::" in rest:
        rest = _SCOPED_RE.sub(take_ident, rest)
    rest = _IDENT_RE.sub(take_ident, rest)
    literals_directed = False
    if len(code) + len(quotes) > 1:
        code, quotes, literals_directed = _literal_order(rest, code, quotes)
    toks = _scan(rest)
    lows = [t.low for t in toks]
    phrases, longest = _phrases()

    numbers: list[str] = []
    number_at: list[int] = []  # the token index of each number
    loose: set[int] = set()  # where the loose numbers are
    quantity_units: list[tuple[int, str]] = []
    other_units: list[tuple[int, str]] = []
    consumed = [False] * len(toks)
    i = 0
    while i < len(toks):
        tok = toks[i]
        found = _date_at(toks, i)
        if found is not None:
            dates.append((tok.start, found[0]))
            for k in range(i, i + found[1]):
                consumed[k] = True
            i += found[1]
            continue
        low = tok.low
        if low in _DAY_NAMES:
            dates.append((tok.start, _DAY_NAMES[low]))
            consumed[i] = True
        elif low in _RELATIVE and i + 1 < len(toks) and lows[i + 1] in _PERIODS:
            dates.append((tok.start, f"{low} {lows[i + 1]}"))
            consumed[i] = consumed[i + 1] = True
            i += 2
            continue
        elif low in _MONTHS and low not in _STRICT_MONTHS:
            dates.append((tok.start, f"?-{_MONTHS[low]}-?"))
            consumed[i] = True
        i += 1

    i = 0
    while i < len(toks):
        if consumed[i]:
            i += 1
            continue
        tok = toks[i]
        value: str | None = None
        used = 1
        if tok.kind == "num":
            value = _canon_number(tok.low)
            if i + 1 < len(toks) and lows[i + 1] in ("percent", "%") and "%" not in value:
                value += "%"
                used = 2
        elif tok.low in _ORDINAL_WORDS:
            value = str(_ORDINAL_WORDS[tok.low])
        elif tok.low in _TIMES_WORDS:
            value = str(_TIMES_WORDS[tok.low])
        else:
            written = _written_number(toks, i)
            if written is not None:
                value, used = str(written[0]), written[1]
                if i + used < len(toks) and lows[i + used] in ("percent", "%"):
                    value += "%"
                    used += 1
        if value is not None:
            numbers.append(value)
            number_at.append(i)
            if tok.low in _TIMES_WORDS:
                loose.add(i)
            for k in range(i, i + used):
                consumed[k] = True
            # a unit or currency right after the number (or a symbol right before) is
            # the quantity's own unit: it comes first in the unit order
            j = i + used
            for size in range(min(longest, len(toks) - j), 0, -1):
                hit = phrases.get(tuple(lows[j : j + size]))
                if hit is not None:
                    quantity_units.append((toks[j].start, hit[1]))
                    for k in range(j, j + size):
                        consumed[k] = True
                    break
            if i > 0 and lows[i - 1] in ("$", "€", "£", "¥", "₹") and not consumed[i - 1]:
                quantity_units.append((toks[i - 1].start, phrases[(lows[i - 1],)][1]))
                consumed[i - 1] = True
            i += used
            continue
        i += 1

    i = 0
    while i < len(toks):
        if consumed[i]:
            i += 1
            continue
        for size in range(min(longest, len(toks) - i), 0, -1):
            if any(consumed[i : i + size]):
                continue
            hit = phrases.get(tuple(lows[i : i + size]))
            if hit is None:
                continue
            kind, canon = hit
            if kind == "time":
                break
            if kind == "currency" and size == 1 and lows[i] in _AMBIGUOUS_CURRENCY:
                break
            if kind == "unit" and size == 1 and len(lows[i]) <= 2 and toks[i].text != lows[i]:
                break  # "M", "G", "L" as capitals are more often names than units
            quantity = i > 0 and lows[i - 1] in ("a", "an", "one", "per")
            (quantity_units if quantity else other_units).append((toks[i].start, canon))
            for k in range(i, i + size):
                consumed[k] = True
            i += size - 1
            break
        i += 1

    present = frozenset(lows)
    requested: tuple[str, ...] = ()
    if not present.isdisjoint(_REQUEST_VERBS):
        requested, counted = _requested(toks)
        if counted:  # "give me 1 example" asks for one thing as "give me an example" does
            numbers = [v for k, v in zip(number_at, numbers, strict=True) if k not in counted]
            number_at = [k for k in number_at if k not in counted]
    low_text = lows
    if not _ALIASES.keys().isdisjoint(lows):
        toks, consumed = _expand_aliases(toks, consumed, rest)
        low_text = [t.low for t in toks]
    names: set[int] = set()
    if "nstall" in rest or "add" in rest or "npm i " in rest:
        starts = _installed_names(rest)
        names = {i for i, t in enumerate(toks) if t.start in starts}
    entities, qualified, directed = _entities(toks, consumed, names)
    poles = _poles_of(present)
    negated = any(w in _NEGATIONS or w.endswith("n't") for w in lows)
    arrows = _arrows(lows) if "to" in present or "into" in present else frozenset()
    units = [u for _, u in sorted(quantity_units)] + [u for _, u in sorted(other_units)]
    all_numbers = tuple(numbers)
    return Signature(
        numbers=tuple(v for k, v in zip(number_at, numbers, strict=True) if k not in loose)
        if loose
        else all_numbers,
        all_numbers=all_numbers,
        dates=tuple(d for _, d in sorted(dates)),
        units=tuple(units),
        quotes=tuple(quotes),
        code=tuple(code),
        entities=tuple(entities),
        entity_candidates=frozenset(entities),
        qualified=qualified,
        requested=requested,
        directed=directed,
        literals_directed=literals_directed,
        poles=poles,
        arrows=arrows,
        negated=negated,
        words=frozenset(_stem(w) for w in lows if w not in _STOP),
        low_text=" ".join(low_text),
        text=given,
        ticked=ticked,
    )


def _is_name_like(tok: _Tok) -> bool:
    """Does ``tok`` look like (part of) a name, judged by its letters?"""
    text = tok.text
    if tok.kind != "word" or tok.low in _STOP:
        return False
    if len(text) >= 2 and text.isupper():
        return tok.low not in _COMMON  # acronym (SSD, JSON), not shouting ("HOW?")
    if len(text) >= 3 and text[:-1].isupper() and text[-1] == "s":
        return True  # ETFs
    if any(c.isupper() for c in text[1:]) and any(c.islower() for c in text):
        return True  # macOS, iPhone, JavaScript
    return text[0].isupper() and tok.low not in _COMMON


_CONNECTORS = frozenset({"to", "->", "=>", "→", "into", "vs", "versus", "than", "from"})

# How many things a request asks for: "give me an example" is one, "give me examples" or
# "list some examples" several. Read only after a verb that hands something over, used as
# a request (first in its sentence, or after "you" or "please"), so that "how to write a
# unit test" and "how to write unit tests" stay one question.
_REQUEST_VERBS = frozenset([
    "give", "show", "list", "provide", "suggest", "recommend", "share", "tell", "name",
    "generate", "write", "create",
])  # fmt: skip
_REQUEST_BEFORE = frozenset({"you", "please", "pls", "just"})
_ONE = frozenset({"a", "an", "one", "single"})
_SEVERAL = frozenset({"some", "several", "few", "more", "multiple", "various", "many"})
# after "a": several things ("a list of examples", "a few ideas") or no count ("a bit")
_A_SEVERAL = frozenset([
    "bunch", "collection", "couple", "few", "handful", "list", "lot", "number", "range",
    "selection", "series", "set", "variety",
])  # fmt: skip
_DETERMINERS = frozenset([
    "all", "any", "each", "every", "her", "his", "its", "my", "no", "our", "that", "the",
    "their", "these", "this", "those", "your",
])  # fmt: skip
_A_NONE = frozenset({"bit", "little", "hand", "moment", "second", "minute"})
# words that end the noun a request asks for ("an example *of* a metaphor")
_NOUN_END = frozenset([
    "about", "and", "as", "at", "by", "for", "from", "how", "in", "like", "of", "on", "or",
    "that", "to", "using", "what", "when", "where", "which", "who", "why", "with",
])  # fmt: skip
# singular words that end in "s"
_NOT_PLURAL = frozenset([
    "alias", "atlas", "bias", "canvas", "economics", "ethics", "gas", "lens", "means",
    "mathematics", "news", "physics", "politics", "series", "species", "statistics",
])  # fmt: skip


def _is_plural(word: str) -> bool:
    return (
        len(word) > 3
        and word[-1] == "s"
        and not word.endswith(("ss", "us", "is", "'s"))
        and word not in _NOT_PLURAL
    )


def _requested(toks: list[_Tok]) -> tuple[tuple[str, ...], set[int]]:
    """How many things each request in ``toks`` asks for ("1" or "n": several), and where
    a request counts one thing with the digit "1"."""
    out: list[str] = []
    counted: set[int] = set()
    n = len(toks)
    for i, tok in enumerate(toks):
        if tok.low not in _REQUEST_VERBS:
            continue
        if not (tok.initial or (i > 0 and toks[i - 1].low in _REQUEST_BEFORE)):
            continue
        j = i + 1
        if j < n and toks[j].low in ("me", "us") and not toks[j].initial:
            j += 1
        if j >= n or toks[j].initial:
            continue
        count = ""
        det = toks[j].low
        if det in _DETERMINERS:
            continue  # "show me my transactions", "list the steps": no count
        if det in _ONE or det == "1":
            count = "1"
            if det == "1":
                counted.add(j)
            j += 1
            if j < n and toks[j].low in _A_SEVERAL:
                count = "n"
            elif j < n and toks[j].low in _A_NONE:
                continue
        elif det in _SEVERAL:
            count = "n"
            j += 1
        # the noun: up to four plain words, the last one before a word that ends it
        k = j
        while (
            k < n
            and k - j < 4
            and toks[k].kind == "word"
            and toks[k].text.islower()
            and toks[k].low not in _NOUN_END
            and not toks[k].initial
        ):
            k += 1
        if k == j or (k - j == 4 and k < n and toks[k].low not in _NOUN_END):
            continue
        if not count and _is_plural(toks[k - 1].low):
            count = "n"
        if count:
            out.append(count)
    return tuple(out), counted


_LOWER_RE = re.compile("[a-z]")


def _expand_aliases(
    toks: list[_Tok], consumed: list[bool], text: str
) -> tuple[list[_Tok], list[bool]]:
    """``toks`` with each short place name written out as its full name (``_ALIASES``)."""
    shouting: bool | None = None  # a text in capitals says nothing of "US" or "LA"
    out: list[_Tok] = []
    out_consumed: list[bool] = []
    for i, tok in enumerate(toks):
        full = None if consumed[i] else _ALIASES.get(tok.low)
        if full is not None and tok.low in _CAPITAL_ALIASES:
            the_us = tok.low == "us" and i > 0 and toks[i - 1].low == "the"
            if not the_us and tok.text.isupper() and shouting is None:
                shouting = _LOWER_RE.search(text) is None
            if not (the_us or (tok.text.isupper() and not shouting)):
                full = None
        if full is None:
            out.append(tok)
            out_consumed.append(consumed[i])
            continue
        for k, word in enumerate(full.split()):
            first = k == 0
            out.append(
                _Tok(word, word, "word", tok.start, tok.initial and first, tok.joined or not first)
            )
            out_consumed.append(False)
    return out, out_consumed


def _entities(
    toks: list[_Tok], consumed: list[bool], names: set[int]
) -> tuple[list[str], frozenset[str], bool]:
    """The names in ``toks``, those of them with a place qualifier ("new york city"), and
    whether their order is directed ("Oslo to Berlin").

    ``names`` holds the indices of tokens known to be names (install commands).
    """
    out: list[str] = []
    qualified: set[str] = set()
    spans: list[tuple[int, int]] = []
    i = 0
    n = len(toks)
    while i < n:
        tok = toks[i]
        if consumed[i] or tok.kind != "word":
            i += 1
            continue
        # a package, tool or model name: one token, whatever its letter case
        if i in names or ("-" in tok.low and _is_hyphenated_name(tok.low)):
            out.append(tok.low)
            spans.append((i, i + 1))
            i += 1
            continue
        j = i
        # gazetteer phrases first (lower case allowed), longest match
        for size in range(min(_GAZETTEER_MAX_WORDS, n - i), 0, -1):
            phrase = " ".join(t.low for t in toks[i : i + size])
            if phrase in _GAZETTEER and not any(consumed[i : i + size]):
                j = i + size
                break
        if j == i and tok.text[0].isupper() and tok.low in _CAPITALISED_NAMES:
            j = i + 1
        if j == i and _is_name_like(tok) and tok.text != "I":
            j = i + 1
            while (
                j < n
                and not consumed[j]
                and toks[j].joined
                and not toks[j].initial
                and _is_name_like(toks[j])
            ):
                j += 1
            # A capital at the start of a sentence says nothing, unless the word is
            # written like a name anyway (acronym, camel case) or starts a longer name
            # ("Lionel Messi height").
            letters = tok.text
            plain_capital = letters[0].isupper() and letters[1:].islower()
            if tok.initial and plain_capital and j == i + 1:
                j = i
        if j == i:
            i += 1
            continue
        name = " ".join(t.low for t in toks[i:j])
        if (
            j < n
            and toks[j].low in _PLACE_QUALIFIERS
            and not consumed[j]
            and toks[j].joined
            and not toks[j].initial
        ):
            name = f"{name} {toks[j].low}"
            qualified.add(name)
            j += 1
        out.append(name)
        spans.append((i, j))
        i = j
    directed = any(start > 0 and toks[start - 1].low == "from" for start, _ in spans) or any(
        nxt[0] == prev[1] + 1 and toks[prev[1]].low in _CONNECTORS
        for prev, nxt in itertools.pairwise(spans)
    )
    return out, frozenset(qualified), directed


# -- comparison ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """Which guards run. All are on by default; turn one off only with a measured reason."""

    numbers: bool = True
    dates: bool = True
    units: bool = True
    quotes: bool = True
    code: bool = True
    entities: bool = True
    polarity: bool = True
    # Off by default: Banking77 paraphrases flip negation all the time ("my payment
    # failed" / "why didn't my payment work?"); the verifier weighs it instead.
    negation: bool = False

    @classmethod
    def none(cls) -> GuardSettings:
        """Every guard off (a bare threshold, for comparisons)."""
        return cls(**dict.fromkeys((f.name for f in fields(cls)), False))


@dataclass(frozen=True, slots=True)
class GuardReport:
    """The outcome of comparing two signatures: ``failed`` names the guards that failed."""

    failed: tuple[str, ...]
    shared_anchors: int

    @property
    def ok(self) -> bool:
        """True when every enabled guard passed."""
        return not self.failed


def _occurrences(candidates: Iterable[str], low_text: str) -> tuple[str, ...]:
    """Where each candidate entity occurs in ``low_text`` (whole words), in text order."""
    found: list[tuple[int, str]] = []
    padded = f" {low_text} "
    for name in candidates:
        needle = f" {name} "
        start = padded.find(needle)
        while start != -1:
            found.append((start, name))
            start = padded.find(needle, start + 1)
    found.sort()
    # an entity inside a longer one found at the same place ("york" in "new york") is
    # dropped: keep the first, longest match at each position
    out: list[str] = []
    end = -1
    for start, name in sorted(found, key=lambda f: (f[0], -len(f[1]))):
        if start < end:
            continue
        out.append(name)
        end = start + len(name) + 1
    return tuple(out)


def _drop_lone_qualifiers(
    seen: tuple[str, ...], other: tuple[str, ...], qualified: frozenset[str]
) -> tuple[str, ...]:
    """``seen`` with the place qualifiers that ``other`` does not give its own names
    left out: "new york city" is "new york" beside "new york", not beside "new york state".
    """
    qualifying = {name.rsplit(" ", 1)[0] for name in other if name in qualified}
    return tuple(
        base if name in qualified and (base := name.rsplit(" ", 1)[0]) not in qualifying else name
        for name in seen
    )


def _same_numbers(a: Signature, b: Signature) -> bool:
    """The same numbers, the loose ones ("twice") counting only where both prompts give
    some: "twice" is "two times" and not "thrice", nor "3 times", but may be "duplicate".
    """
    if a.all_numbers == b.all_numbers:
        return True
    loose_a = len(a.all_numbers) > len(a.numbers)
    loose_b = len(b.all_numbers) > len(b.numbers)
    return a.numbers == b.numbers and not (loose_a and loose_b)


def _first_seen(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def _same_values(a: tuple[str, ...], b: tuple[str, ...], ordered: bool) -> bool:
    """The same values, in the same order of first appearance when ``ordered``."""
    return _first_seen(a) == _first_seen(b) if ordered else set(a) == set(b)


def _code_parts(code: str) -> tuple[str, str | None]:
    """A code span's name without letter case, and a call's arguments (None: none given)."""
    low = code.lower()
    call = _CALL_RE.fullmatch(low)
    if call is None:
        return low, None
    return call[1], "".join(call[2].split()) or None


def _same_code(a: tuple[str, ...], b: tuple[str, ...], ordered: bool) -> bool:
    """Do two prompts name the same code? Names must agree (see :func:`_same_values`); a
    call's arguments must agree where both prompts give some: ``print(x)`` is not
    ``print(y)``, but ``df.groupby()`` or ``df.groupby`` names ``df.groupby(key)``."""
    parts_a = [_code_parts(c) for c in a]
    parts_b = [_code_parts(c) for c in b]
    names_a = tuple(n for n, _ in parts_a)
    if not _same_values(names_a, tuple(n for n, _ in parts_b), ordered):
        return False
    for name in set(names_a):
        args_a = {g for n, g in parts_a if n == name and g is not None}
        args_b = {g for n, g in parts_b if n == name and g is not None}
        if args_a and args_b and args_a != args_b:
            return False
    return True


def _bare_words(text: str) -> str:
    """``text`` as lower-case words without backticks or the punctuation that ends a
    clause, one space apart: how a code span reads written bare in prose."""
    return " ".join(w.rstrip(".,;:!?").strip("\"'") for w in text.replace("`", " ").lower().split())


def _unticked(a: Signature, b: Signature) -> Signature:
    """``a`` read without its backticks when ``b`` writes every one of its code spans word
    for word ("run `git rebase -i`" / "run git rebase -i"), else ``a``."""
    if not a.ticked:
        return a
    other = f" {_bare_words(b.text)} "
    if all(f" {span} " in other for span in a.ticked):
        return signature(a.text.replace("`", " "))
    return a


def check_guards(a: Signature, b: Signature, settings: GuardSettings | None = None) -> GuardReport:
    """Compare two prompts' anchors; every enabled guard must agree for a hit."""
    s = settings if settings is not None else GuardSettings()
    failed = _failed(a, b, s)
    if "code" in failed and (a.ticked or b.ticked):
        # backticks mark code, but the same words written bare are the same code: compare
        # the two prompts without them when each side's spans are all on the other side
        bare_a, bare_b = _unticked(a, b), _unticked(b, a)
        if (bare_a is not a or bare_b is not b) and not _failed(bare_a, bare_b, s):
            failed = []
    shared = 0
    if not failed:
        shared = a.anchors
    return GuardReport(failed=tuple(failed), shared_anchors=shared)


def _failed(a: Signature, b: Signature, s: GuardSettings) -> list[str]:
    """The guards of ``s`` that fail between ``a`` and ``b``."""
    failed: list[str] = []
    if s.numbers and (
        not _same_numbers(a, b) or (a.requested and b.requested and a.requested != b.requested)
    ):
        failed.append("numbers")
    if s.dates and a.dates != b.dates:
        failed.append("dates")
    if s.units and a.units != b.units:
        failed.append("units")
    # quotes and code spans are compared as sets, as paraphrases reorder them freely,
    # unless a connector orders them ("convert `list` to `tuple`", "rename 'a' to 'b'")
    ordered = a.literals_directed or b.literals_directed
    if s.quotes and not _same_values(a.quotes, b.quotes, ordered):
        failed.append("quotes")
    # and code without letter case: a prompt that names `ImageFolder` and one that names
    # `imagefolder` ask about the same thing far more often than about two things
    # (and with or without a call's empty parentheses: `init()` is `init`)
    if s.code and not _same_code(a.code, b.code, ordered):
        failed.append("code")
    if s.entities:
        # An entity spotted on one side only by its capital letter ("ATM" vs "atm") still
        # counts on the other side if written there: compare where the union occurs. Order
        # counts when either prompt gives the names a direction ("Oslo to Berlin").
        names = a.entity_candidates | b.entity_candidates
        if names:
            seen_a = _occurrences(names, a.low_text)
            seen_b = _occurrences(names, b.low_text)
            marked_a: Iterable[str] = a.entity_candidates
            marked_b: Iterable[str] = b.entity_candidates
            qualified = a.qualified | b.qualified
            if qualified:
                seen_a, seen_b, marked_a, marked_b = (
                    _drop_lone_qualifiers(seen_a, seen_b, qualified),
                    _drop_lone_qualifiers(seen_b, seen_a, qualified),
                    _drop_lone_qualifiers(tuple(marked_a), seen_b, qualified),
                    _drop_lone_qualifiers(tuple(marked_b), seen_a, qualified),
                )
            if a.directed or b.directed:
                same = _first_seen(seen_a) == _first_seen(seen_b)
            else:
                # A name a prompt marks itself is in it, even where the other prompt's
                # longer name swallows it: "public inference API" holds "API" when only
                # the other side capitalised "Inference API".
                same = set(seen_a).union(marked_a) == set(seen_b).union(marked_b)
            if not same:
                failed.append("entities")
    if s.polarity:
        # a conflict is one prompt on one pole only and the other on the other pole only,
        # or the same two words joined the other way round ("string to int" / "int to
        # string")
        for pa, pb in zip(a.poles, b.poles, strict=True):
            if pa and pb and not (pa & pb):
                failed.append("polarity")
                break
        else:
            if (
                a.arrows
                and b.arrows
                and any(
                    (y, x) in b.arrows for x, y in a.arrows if x != y and (x, y) not in b.arrows
                )
            ):
                failed.append("polarity")
    if s.negation and a.negated != b.negated:
        failed.append("negation")
    return failed
