"""Word lists of the guards (data): common words, the gazetteer of names and its aliases,
hyphenated names, units, currencies, antonym pairs, negations, number, month and day words.

With them, the small lookups that need nothing but these lists (:func:`_is_hyphenated_name`,
:func:`_poles_of`). What each guard does with them: :mod:`deja.semantic.guards`.
"""

from __future__ import annotations

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
    # (_INSTALL_RE, in entities.py)
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
    # the people for their country: "US citizens" / "Americans"
    "american": "united states",
    "americans": "united states",
    "britain": "united kingdom",
    "british": "united kingdom",
    "brits": "united kingdom",
    "canadian": "canada",
    "canadians": "canada",
    # ("Dutch landlords" / "landlords in the Netherlands"; a language named after its
    # country is compared with the other side's the same way: "translate into French" /
    # "into German" still differ)
    "german": "germany", "germans": "germany", "french": "france", "dutch": "netherlands",
    "spanish": "spain", "italian": "italy", "italians": "italy", "japanese": "japan",
    "chinese": "china", "mexican": "mexico", "mexicans": "mexico",
    "australian": "australia", "australians": "australia", "irish": "ireland",
    "swedish": "sweden", "norwegian": "norway", "danish": "denmark",
    "portuguese": "portugal", "brazilian": "brazil", "russian": "russia",
    "russians": "russia",
}  # fmt: skip
# US states by their postal codes, in capitals only ("a move from TX to CA"); not the
# codes that are words or other things' initials in chat (OK, IN, OR, ME, HI, ID, CT, SD,
# MD, PA, VA, CO...)
_STATE_CODES = {
    "tx": "texas", "ca": "california", "fl": "florida", "ny": "new york",
    "nj": "new jersey", "nc": "north carolina", "sc": "south carolina", "nv": "nevada",
    "nh": "new hampshire", "nm": "new mexico", "az": "arizona", "ak": "alaska",
    "ks": "kansas", "ky": "kentucky", "mn": "minnesota", "tn": "tennessee",
    "vt": "vermont", "wi": "wisconsin", "wv": "west virginia", "wy": "wyoming",
    "ri": "rhode island", "wa": "washington", "il": "illinois",
    "mi": "michigan", "ut": "utah",
}  # fmt: skip
_ALIASES.update(_STATE_CODES)
_CAPITAL_ALIASES = frozenset({"la", "sf", "us", *_STATE_CODES})
# Two spellings of one product or language, compared as one name where a prompt names it
# ("JS" / "JavaScript", "Postgres" / "PostgreSQL", "VSCode" / "VS Code"); only names the
# entity guard found, so the plain word "node" or "go" is not read as one.
_NAME_ALIASES = {
    "js": "javascript", "ts": "typescript", "postgres": "postgresql",
    "vscode": "vs code", "visual studio code": "vs code", "node": "node.js",
    "nodejs": "node.js", "golang": "go", "reactjs": "react", "react.js": "react",
    "vuejs": "vue", "vue.js": "vue", "nextjs": "next.js", "mongo": "mongodb",
    "sklearn": "scikit-learn", "cpp": "c++", "macos": "mac os", "osx": "mac os",
    "os x": "mac os", "gcp": "google cloud", "google cloud platform": "google cloud",
    "amazon web services": "aws", "ms excel": "excel", "microsoft excel": "excel",
    "gmail.com": "gmail", "k8s": "kubernetes", "kubectl": "kubernetes", "wifi": "wi-fi",
}  # fmt: skip


def same_name(x: str, y: str) -> bool:
    """Whether two lower-case words are two spellings of one name ("golang" / "go",
    "ts" / "typescript")."""
    return x != y and _NAME_ALIASES.get(x, x) == _NAME_ALIASES.get(y, y)


# Prefixes that make a word another thing: "off-peak" is not "peak", "non-profit" not
# "profit", "a not-at-fault accident" not "an at-fault accident", "unsafe" not "safe"
# (written without a hyphen only the negating ones count: "overcharge", "prepay" and
# "subtitle" are words of their own too often)
_PREFIXES = (
    "off",
    "non",
    "not",
    "no",
    "un",
    "anti",
    "semi",
    "sub",
    "super",
    "over",
    "under",
    "pre",
    "post",
    "multi",
    "counter",
    "ex",
    "mid",
    "self",
)
# prefixes that undo or deny (English "un-", "dis-", "de-"; Spanish and French "des-",
# "dés-", German "ent-": "desactivar" / "activar", "désactiver" / "activer")
_JOINED_PREFIXES = ("non", "un", "anti", "dis", "de", "des", "dés", "ent", "in")


# prefixes that say the opposite of each other on one stem ("inbound" / "outbound",
# "overweight" / "underweight", "upstream" / "downstream", "inhale" / "exhale")
_OPPOSITE_PREFIXES = frozenset(
    {
        frozenset(pair)
        for pair in (
            ("in", "out"), ("over", "under"), ("up", "down"), ("in", "ex"), ("im", "ex"),
            ("hypo", "hyper"), ("pre", "post"), ("inter", "intra"), ("sub", "super"),
            ("micro", "macro"), ("inner", "outer"), ("pro", "anti"), ("max", "min"),
            # "whitelist" / "blacklist", "allowlist" / "blocklist", "full-time" /
            # "part-time", "foreground" / "background", "headwind" / "tailwind",
            # "hardware" / "software"
            ("white", "black"), ("allow", "block"), ("full", "part"), ("fore", "back"),
            ("head", "tail"), ("hard", "soft"), ("dark", "light"),
        )
    }
)  # fmt: skip


def _opposite_prefixes(x: str, y: str) -> bool:
    """Whether two words are one stem of three letters or more after two prefixes of
    :data:`_OPPOSITE_PREFIXES` (a hyphen after each or neither)."""
    for cut in range(2, min(len(x), 6)):
        head, stem = x[:cut], x[cut:]
        if head.endswith("-"):
            head = head[:-1]
        elif stem.startswith("-"):
            continue
        if len(stem.lstrip("-")) < 3 or not y.endswith(stem):
            continue
        other = y[: len(y) - len(stem)].removesuffix("-")
        if frozenset((head, other)) in _OPPOSITE_PREFIXES and head != other:
            return True
    return False


def prefixed(x: str, y: str) -> bool:
    """Whether one of two lower-case words is the other with a prefix that makes it
    another thing ("off-peak" / "peak", "unsafe" / "safe"), or the two are one stem
    with opposite prefixes ("inbound" / "outbound")."""
    if _opposite_prefixes(x, y):
        return True
    short, long = (x, y) if len(x) < len(y) else (y, x)
    if len(short) < 3 or not long.endswith(short):
        return False
    head = long[: -len(short)]
    if head.endswith("-"):
        return head[:-1] in _PREFIXES
    # (a word after "de" or "in" is no short one: "decode" / "code", "invest" / "vest")
    return head in _JOINED_PREFIXES and len(short) >= (5 if head in ("de", "in") else 4)


# spellings above that are also everyday words: a name only where a prompt marks it so
_EVERYDAY_SPELLINGS = frozenset({"node", "go", "ts", "mac os", "excel", "react", "vue"})
_DEMONYM_COUNTRIES = frozenset({
    "germany", "france", "netherlands", "spain", "italy", "japan", "china", "mexico",
    "australia", "ireland", "sweden", "norway", "denmark", "portugal", "brazil", "russia",
})  # fmt: skip
# ... but not inside other names: "Latin American", "Great Britain", "British Columbia"
_DEMONYMS = frozenset(
    {"american", "americans", "britain", "british", "brits", "canadian", "canadians"}
    | {w for w, place in _ALIASES.items() if place in _DEMONYM_COUNTRIES}
)
_DEMONYM_NOT_AFTER = frozenset(
    {"great", "latin", "south", "north", "central", "african", "native", "anglo", "pan"}
)
_DEMONYM_NOT_BEFORE = frozenset(
    {"express", "airlines", "airways", "idol", "football", "columbia", "museum", "rockies"}
    # things named after a people, not a country's: "French press", "Dutch oven"
    | {"toast", "fries", "press", "horn", "oven", "shepherd", "omelette", "roulette"}
    | {"checkers", "coffee", "pastry", "massage", "maple", "wax", "braid", "kiss"}
    | {"bulldog", "dressing", "guitar", "curve"}
)
# Long official names, read as the usual one: "United States of America" is one place,
# the United States, not two (longest first)
_LONG_NAMES = (
    (
        ("united", "kingdom", "of", "great", "britain", "and", "northern", "ireland"),
        "united kingdom",
    ),
    (("united", "kingdom", "of", "great", "britain"), "united kingdom"),
    (("united", "states", "of", "america"), "united states"),
)
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


def _is_hyphenated_name(low: str) -> bool:
    if low in _HYPHENATED_NAMES or any(c.isdigit() for c in low):
        return True
    parts = low.split("-")
    return parts[0] in _TECH_PREFIXES and parts[-1] not in _PROSE_SUFFIXES


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
    "C": ("celsius", "centigrade", "°c", "degrees celsius", "degree celsius", "degrees c"),
    "F": ("fahrenheit", "°f", "degrees fahrenheit", "degree fahrenheit", "degrees f"),
    "K": ("kelvin", "kelvins", "degrees kelvin"),
    "nmi": ("nmi", "nautical mile", "nautical miles"),
    "mph": ("mph", "miles per hour", "mile per hour", "miles an hour"),
    "kmh": ("kph", "kmh", "km/h", "km per hour", "kilometers per hour", "kilometres per hour"),
    "m/s": ("m/s",),
    "kb": ("kb", "kilobyte", "kilobytes"),
    "mb": ("mb", "megabyte", "megabytes"),
    "gb": ("gb", "gigabyte", "gigabytes"),
    "tb": ("tb", "terabyte", "terabytes"),
    "w": ("watt", "watts"),
    "mw": ("milliwatt", "milliwatts"),
    "MW": ("megawatt", "megawatts"),
    "v": ("volt", "volts"),
    "mah": ("milliamp hour", "milliamp hours", "milliampere hour", "milliampere hours"),
    "mbit/s": ("megabit per second", "megabits per second"),
    "hz": ("hz", "hertz"),
    "khz": ("khz", "kilohertz"),
    "mhz": ("mhz", "megahertz"),
    "ghz": ("ghz", "gigahertz"),
    "kw": ("kw", "kilowatt", "kilowatts"),
    "kwh": ("kwh", "kilowatt-hour", "kilowatt-hours", "kilowatt hour", "kilowatt hours"),
    "hp": ("hp", "horsepower"),
    "cal": ("calorie", "calories", "kcal"),
    "acre": ("acre", "acres"),
    "ha": ("hectare", "hectares"),
    "sqft": ("sq ft", "square feet", "square foot"),
    "sqm": ("square meter", "square meters", "square metre", "square metres", "m2"),
    "rad": ("radian", "radians"),
    "B": ("byte", "bytes"),
    "psi": ("psi",),
    "kpa": ("kpa", "kilopascal", "kilopascals"),
    "deg": ("degree", "degrees", "°"),
}
# Units whose letter case says which unit, read as written right after a number: a bit
# is not a byte ("8 Gb" is a gigabit, "8 GB" a gigabyte: 8 times more) and milli is not
# mega ("5 mW" / "5 MW"). Spelt all in lower case they keep the everyday reading above
# ("8gb of ram" is bytes; "100 mbps" is megabits, as providers sell it; "mw" milliwatts).
_CASED_UNITS = {
    "Kb": "kbit", "Mb": "mbit", "Gb": "gbit", "Tb": "tbit",
    "kbps": "kbit/s", "Kbps": "kbit/s", "mbps": "mbit/s", "Mbps": "mbit/s",
    "gbps": "gbit/s", "Gbps": "gbit/s", "Mbit/s": "mbit/s", "Gbit/s": "gbit/s",
    "KBps": "kb/s", "kBps": "kb/s", "MBps": "mb/s", "GBps": "gb/s",
    "mW": "mw", "mw": "mw", "MW": "MW", "GW": "GW", "kW": "kw",
    "C": "C", "F": "F", "Mg": "Mg", "mA": "ma", "mAh": "mah", "mah": "mah",
    "V": "v", "mV": "mv", "kV": "kv",
}  # fmt: skip
# Time units count only when attached to a number ("3 days"): "how many days does it
# take" and "how long does it take" ask the same thing.
_UNIT_WORDS = frozenset(n for names in _UNIT_SPELLINGS.values() for n in names)
_TIME_UNITS: dict[str, tuple[str, ...]] = {
    "s": ("second", "seconds", "sec", "secs", "s"),
    "ms": ("ms", "millisecond", "milliseconds", "msec"),
    "min": ("minute", "minutes", "min", "mins"),
    "h": ("hour", "hours", "hr", "hrs", "h"),
    "day": ("day", "days"),
    "week": ("week", "weeks"),
    "month": ("month", "months"),
    "year": ("year", "years"),
}
# Counting words that, like time units, count only right after a number: "two pairs of
# socks" is not "a pair of socks" (which reads as the number two), but "how to pair
# headphones" has no unit.
_COUNT_UNITS: dict[str, tuple[str, ...]] = {"pair": ("pair", "pairs")}
# Units whose words mean other things too ("a bit confused", "a bar of soap", "the
# ATM"), counted only after a number as well: "32 bits", "200 bar".
_NUMBERED_UNITS: dict[str, tuple[str, ...]] = {
    "bit": ("bit", "bits"),
    "bar": ("bar",),
    "atm": ("atm",),
}
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
_AMBIGUOUS_CURRENCY = frozenset({"real", "won", "rand", "ether", "rub", "cad", "sterling"})


# Antonym pairs, and groups of mutually exclusive alternatives (times of day, seasons,
# meals, diets): per group, the sides two prompts mention must not conflict. "on"/"off"
# count only after a switch verb ("turn it on"; see extract._pole_words): as a preposition
# ("dark mode on iPhone") "on" is everywhere.
# Two parties a question can be asked about either way round: the same two named in the
# other order ask the other question ("should an interviewer ask a candidate" / "a
# candidate ask the interviewer", "can the account owner see what members watch" / "can
# a member see what the owner watches"). Those of a deal or a hiring are also groups of
# alternatives (below): a question about the tenant is not one about the landlord.
_SIDES_OF_A_DEAL = (
    # (a property manager stands for the landlord: "what should a tenant ask a property
    # manager" / "what should a landlord ask a tenant")
    ("tenant tenants renter renters", "landlord landlords manager managers"),
    ("buyer buyers", "seller sellers"),
    ("employer employers", "employee employees"),
    ("candidate candidates applicant applicants", "interviewer interviewers"),
    ("borrower borrowers", "lender lenders"),
    # (a professor, lecturer, instructor or tutor teaches: "an email to my professor" /
    # "to my student")
    (
        "teacher teachers professor professors lecturer lecturers instructor instructors"
        " tutor tutors",
        "student students pupil pupils",
    ),
    ("leader leaders organizer organizers", "participant participants attendee attendees"),
)
# ... the others only by their order ("can my parents open an account" is still a
# question about a child's account)
_PARTIES_IN_ORDER = (
    ("parent parents mother father", "child children kid kids baby babies son daughter"),
    ("subclass subclasses child", "superclass parent base"),
    ("owner owners", "member members user users guest guests"),
    ("host hosts", "guest guests"),
    ("freelancer freelancers contractor contractors", "client clients"),
    ("coach coaches", "player players"),
    ("customer customers", "shop shops merchant merchants developer developers"),
    ("sender", "recipient receiver"),
    ("doctor doctors", "patient patients"),
    ("driver drivers", "passenger passengers"),
    ("client clients", "server servers"),
)
_ROLE_PAIRS: tuple[tuple[frozenset[str], frozenset[str]], ...] = tuple(
    (frozenset(x.split()), frozenset(y.split())) for x, y in _SIDES_OF_A_DEAL + _PARTIES_IN_ORDER
)

# What a prompt asks of a rule: whether something is allowed, advised or required. Read
# three ways (guards.compare): the modal swapped between prompts otherwise the same;
# the modal opening a yes/no question; required against the others between
# near-duplicates.
_PERMITTED = "can could may allowed possible optional"
_ADVISED = "should ought"
_REQUIRED = "must required mandatory obligatory obligated"

# more or less than is right: "too much" or "too many" / "too little" or "too few"
# (guards.extract._pole_words; no word of a prompt is written so)
_TOO_MUCH = "too-much"
_TOO_LITTLE = "too-little"
# where a verb of moving sends a thing (guards.extract._moved): "bring alcohol into
# Dubai" / "out of Dubai" (no word of a prompt is written so)
_MOVED_INTO = "moved-into"
_MOVED_OUT_OF = "moved-out-of"

_POLES: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(side.split()) for side in sides)
    for sides in (
        (
            "increase increases increased increasing raise raising boost boosting grow"
            " growing higher more maximize maximise improve improving gain gaining",
            "decrease decreases decreased decreasing reduce reduces reducing lower lowering"
            " less fewer minimize minimise shrink shrinking cut cutting drop dropping lose"
            " losing worsen",
        ),
        ("high", "low"),
        ("before earlier within", "after later"),
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
        ("hot hotter hottest warm warmer warmest", "cold colder coldest cool cooler coolest"),
        (
            "fast faster fastest quick quicker quickest quickly",
            "slow slower slowest slowly",
        ),
        (
            "accept accepts accepted accepting approve approves approved approving",
            "reject rejects rejected rejecting",
        ),
        # set by a verb only ("zoom in" / "zoom out", "log in" / "log out"; see
        # guards.extract): any other "in" is a preposition
        ("in", "out"),
        (
            "cheap cheaper cheapest inexpensive low-cost affordable",
            "expensive pricey pricier priciest costly costlier",
        ),
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
        ("tall taller tallest", "short shorter"),
        ("thick thicker thickest", "thin thinner thinnest"),
        ("wide wider widest", "narrow narrower narrowest"),
        ("deep deeper deepest", "shallow shallower shallowest"),
        ("loud louder loudest noisy noisier noisiest", "quiet quieter quietest"),
        ("busy busier busiest crowded", "quiet quieter quietest"),
        ("rich richer richest wealthy wealthier wealthiest", "poor poorer poorest"),
        ("strict stricter strictest", "lenient"),
        ("mild milder mildest", "severe harsh harsher harshest"),
        # (only graded: "clean" and "dirty" are as often what one does to a thing or
        # what it is: "how do I clean my dirty oven")
        ("cleaner cleanest", "dirtier dirtiest"),
        ("heavy heavier heaviest", "light lighter lightest"),
        # ("dark mode" / "light mode", "a dark roast" / "a light roast")
        ("dark darker darkest", "light lighter lightest"),
        ("strong stronger", "weak weaker"),
        ("input", "output"),
        ("incoming inbound", "outgoing outbound"),
        ("indoor indoors", "outdoor outdoors"),
        ("upstairs", "downstairs"),
        ("upstream", "downstream"),
        ("overweight", "underweight"),
        ("inhale inhaling", "exhale exhaling"),
        ("arrival arrivals", "departure departures"),
        ("borrow borrowing borrowed", "lend lending lent"),
        ("predecessor predecessors", "successor successors"),
        ("creditor creditors", "debtor debtors"),
        ("sender", "recipient receiver"),
        ("upper uppercase", "lower lowercase"),
        ("ascending", "descending"),
        ("plus", "minus"),
        ("husband", "wife"),
        # a parent against a child of someone: "who was Queen Victoria's mother" /
        # "... daughter", "the father of Zeus" / "the son of Zeus"
        (
            "mother mothers mom mum father fathers dad parent parents",
            "daughter daughters son sons child children",
        ),
        (
            "grandmother grandfather grandparent grandparents",
            "granddaughter grandson grandchild grandchildren",
        ),
        # "too much yeast" / "too little yeast" (read in guards.extract._pole_words)
        (_TOO_MUCH, _TOO_LITTLE),
        ("men men's male", "women women's female"),
        ("boy boys", "girl girls"),
        # states and kinds whose answers differ ("is raw chicken safe to eat?")
        ("good better", "bad worse"),
        ("difference differences", "similarity similarities"),
        ("active", "passive"),
        ("singular", "plural"),
        ("synonym synonyms", "antonym antonyms"),
        ("permanent permanently", "temporary temporarily"),
        ("upgrade upgrading", "downgrade downgrading"),
        # (asking for the answer alone, "answer only, no explanation", is brief: see
        # guards.extract._pole_words)
        ("brief briefly concise", "detail detailed thorough thoroughly"),
        ("formal formally", "informal casual casually"),
        ("happy", "sad"),
        ("soft soft-boiled", "hard hard-boiled"),
        ("raw uncooked", "cooked"),
        ("safe safer safest", "unsafe dangerous hazardous toxic poisonous riskier riskiest"),
        ("healthy healthier healthiest", "unhealthy unhealthier unhealthiest"),
        ("common commonest popular", "rare rarer rarest uncommon unpopular"),
        ("legal", "illegal"),
        (
            "easy easier easiest simple simpler simplest",
            "hard harder hardest difficult complicated complex",
        ),
        ("beginner beginners novice", "intermediate", "expert experts experienced advanced"),
        # (a puppy or a kitten against an adult dog or cat: their vaccines, food and doses
        # differ; against the animal itself, "my puppy" / "my dog", see below)
        ("child children kid kids puppy puppies kitten kittens", "adult adults"),
        ("early earlier", "late"),
        ("morning", "afternoon", "evening", "night nighttime"),
        ("day daytime", "night nighttime"),
        ("spring", "summer", "autumn fall", "winter"),
        ("breakfast", "lunch", "dinner supper"),
        ("vegan", "vegetarian", "keto ketogenic", "paleo", "carnivore"),
        ("boiling", "freezing", "melting"),
        ("sunrise dawn", "sunset dusk"),
        ("beginning", "end ending"),
        ("rise", "decline"),
        ("cause causes caused causing", "effect effects consequence consequences"),
        ("music melody melodies", "lyrics"),
        # "why does X happen" asks for causes, "how do I fix / stop X" for steps (each
        # answer serves the other only in part); 1,185 of Banking77's 685,976 same-intent
        # pairs are refused for it (far apart anyway: no stream answer changed)
        (
            "cause causes causing why",
            "fix fixing solve solving resolve resolving troubleshoot stop rid silence suppress"
            " prevent preventing avoid",
        ),
        ("endothermic", "exothermic"),
        # the operation asked for: "2 + 3" is "2 plus 3", not "2 times 3"
        (
            "plus addition sum",
            "minus subtract subtraction",
            "times multiply multiplied multiplication product",
            "divided divide division quotient",
        ),
        # which criterion a "best way" asks for
        ("cheapest", "fastest quickest", "easiest simplest", "safest", "healthiest"),
        # roles: the same question from the other side has another answer
        *_SIDES_OF_A_DEAL,
        ("junior", "senior"),
        # how many of a thing ("a double / triple bypass", "single / double quotes")
        ("single", "double", "triple", "quadruple"),
        ("white", "black"),
        ("cat cats kitten kittens", "dog dogs puppy puppies", "rabbit rabbits", "horse horses"),
        # sides, ranks and states that each have their own answer
        ("plaintiff plaintiffs", "defendant defendants"),
        ("weekday weekdays", "weekend weekends"),
        ("shipped", "delivered"),
        ("approved", "pending", "rejected denied declined"),
        ("polite politely", "rude rudely"),
        ("felony felonies", "misdemeanor misdemeanors misdemeanour misdemeanours"),
        ("graduate postgraduate", "undergraduate undergrad"),
        ("democrat democrats democratic", "republican republicans"),
        ("gold", "silver", "bronze"),
        ("citizen citizens", "resident residents"),
        ("amateur amateurs", "professional professionals"),
        ("infant infants newborn newborns", "toddler toddlers"),
        ("teen teens teenager teenagers adolescent adolescents", "adult adults"),
        ("front", "rear"),
        ("host hosts", "guest guests"),
        ("doctor doctors", "patient patients"),
        ("public", "private"),
        ("free", "paid"),
        ("past", "future"),
        ("wet wetter wettest rainy rainier rainiest", "dry drier driest"),
        ("sweet", "savory savoury"),
        ("left", "right"),
        ("top", "bottom"),
        ("horizontal horizontally", "vertical vertically"),
        ("include including", "exclude excluding"),
        ("online", "offline"),
        ("local", "remote"),
        ("client client-side", "server server-side"),
        ("frontend front-end", "backend back-end"),
        ("synchronous synchronously sync", "asynchronous asynchronously async"),
        ("sequential sequentially serially", "parallel concurrently concurrent"),
        ("inner", "outer"),
        ("mutate mutates mutating inplace in-place", "copy copies"),
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
        ("closest nearest", "farthest furthest"),
        ("longer", "shorter"),
        ("hour hours hourly", "minute minutes", "seconds"),
        (_MOVED_INTO, _MOVED_OUT_OF),
        ("better superior", "worse inferior"),
        ("extend extending lengthen", "shorten shortening"),
        ("pause pausing paused", "resume resuming resumed unpause"),
        ("hold holding", "sell selling"),
        ("economy", "business"),
        ("full-time fulltime", "part-time parttime"),
        ("whitelist whitelisted allowlist allowlisted", "blacklist blacklisted blocklist"),
        ("foreground", "background"),
        ("transparent transparency", "opaque opacity"),
        # terms the embedded model sets close (cosine 0.6-0.9 alone) for two things:
        # "the numerator of 3/4" / "the denominator", "2 decimal places" / "2
        # significant figures"
        ("numerator numerators", "denominator denominators"),
        ("decimal decimals", "significant sig"),
        ("latitude latitudes", "longitude longitudes"),
        ("stalactite stalactites", "stalagmite stalagmites"),
        ("mitosis", "meiosis"),
        ("systolic", "diastolic"),
        ("headwind headwinds", "tailwind tailwinds"),
        ("hardcover hardback", "softcover paperback"),
        ("individual", "family"),
        ("renter renters tenant tenants", "homeowner homeowners"),
        # a reset clears settings, a restart does not
        ("reset", "restart reboot"),
        ("lock locking", "unlock unlocking release"),
        ("daily", "weekly", "monthly", "annual annually yearly"),
        ("email e-mail", "phone telephone", "chat"),
        # the form an answer is asked in
        # (one group: "one sentence", "one paragraph", "an essay" and "a numbered list"
        # are each another answer; a poem or a tweet is a form of its own as well)
        (
            "table",
            "bullet bullets bulleted numbered",
            "paragraph paragraphs",
            "sentence sentences",
            "essay essays",
        ),
        ("tweet tweets", "poem poems", "essay essays", "haiku", "limerick", "speech"),
        ("millisecond milliseconds", "microsecond microseconds", "nanosecond nanoseconds"),
        # states said in two words (read as one, hyphenated: see _POLE_PHRASES) that the
        # embedded model sets close: "a medium rare steak" / "a well done steak" (0.89),
        # "boil water at high altitude" / "at sea level", "a round trip ticket" / "a one
        # way ticket", "cooked rice in the fridge" / "at room temperature"
        ("rare", "medium-rare", "medium-well", "well-done"),
        ("high-altitude altitude", "sea-level"),
        ("round-trip", "one-way"),
        (
            "fridge fridges refrigerator refrigerated refrigerate",
            "freezer freezers freeze freezing frozen",
            "room-temperature",
        ),
        # a step of the law against another: "my rights if I am arrested" / "... detained"
        (
            "arrest arrested",
            "detain detained detention",
            "indict indicted indictment",
            "convict convicted conviction",
        ),
        ("probation", "parole"),
        # the young of an animal against the animal ("how often should I feed my cat" /
        # "... my kitten"): their food, doses and vaccines differ
        ("kitten kittens", "cat cats"),
        ("puppy puppies", "dog dogs"),
        # a function of one number: "the square root of 144" / "the square of 144"
        ("square squared", "square-root sqrt", "cube cubed", "cube-root"),
        ("permutation permutations", "combination combinations"),
    )
)
# Words that, swapped for another of their group in a prompt otherwise word for word
# the same, ask another question ("do all birds fly" / "do some birds fly", "ship to
# Canada" / "ship from Canada"). Only for such aligned prompts: chat is full of loose
# quantifiers, modals and prepositions ("for some reason", "any limits", "how to").
# The antonym groups above count as swaps too.
_SWAPS: tuple[tuple[frozenset[str], ...], ...] = tuple(
    tuple(frozenset(side.split()) for side in sides)
    for sides in (
        ("all every each", "some any", "most", "none", "one single", "both"),
        # one thing against all of them ("delete a key" / "delete all keys"; "a" and
        # "any" or "each" ask alike: "is there a fee" / "are there any fees")
        ("all every", "a an"),
        (_REQUIRED, _PERMITTED),
        ("to into towards", "from"),
        ("before until till", "after since"),
        ("within", "after"),
        ("current this", "last previous past", "next upcoming coming following"),
        ("radius", "diameter"),
        # ("shut down my account" / "top up my card" are no directions)
        ("up upward upwards", "down downward downwards"),
        ("time", "space"),
        ("send", "request"),
        ("keep", "discard"),
        ("use", "ignore skip"),
        # "a script to read a CSV file" / "to write a CSV file" (not as poles: "write code
        # that reads a file" asks what "how do I read a file" does)
        ("read reading", "write writing"),
        ("eat", "avoid"),
        # which side of a claim: "arguments for the claim" / "arguments against it"
        ("for", "against"),
        # what else a thing covers: "does my plan only cover dental" / "also cover dental"
        ("only", "also"),
        # spans of time: "how much Spanish can I learn in a month" / "... in a year"
        ("day days", "week weeks", "month months", "year years", "decade decades"),
        # what a question asks for: "when did the wall fall" / "why did the wall fall"
        ("who whom whose", "when", "where", "why"),
        # where it is done: "import a PGN on the mobile app" / "on the desktop site"
        ("mobile", "desktop"),
        ("ios iphone ipad", "android"),
        # which of the things a prompt names it asks about: "12 red and 8 blue marbles,
        # the probability of drawing red" / "... of drawing blue"
        ("red", "blue", "green", "yellow", "black", "white", "orange", "purple", "pink"),
    )
)
# words that join two others symmetrically: "London and Tokyo" is "Tokyo and London"
_SYMMETRIC_JOINS = frozenset({"and", "or", "&", "vs", "versus", "a", "an", "the"})


class _Groups:
    """Reads which sides of each group of alternatives a prompt's words name."""

    def __init__(self, groups: tuple[tuple[frozenset[str], ...], ...]) -> None:
        self.size = len(groups)
        self.words = frozenset().union(*(side for sides in groups for side in sides))
        # word -> the (group, side) it stands for: most prompts hold no pole word or one,
        # so the sides are read from the few words found rather than by testing each group
        self.index: dict[str, list[tuple[int, int]]] = {}
        for k, sides in enumerate(groups):
            for side, words in enumerate(sides):
                for word in words:
                    self.index.setdefault(word, []).append((k, side))
        # the sides found, by bit mask (bit s: side s)
        widest = max(map(len, groups))
        self.sides = tuple(
            frozenset(s for s in range(widest) if m >> s & 1) for m in range(1 << widest)
        )
        self.none: tuple[frozenset[int], ...] = (frozenset(),) * self.size

    def __call__(self, present: frozenset[str]) -> tuple[frozenset[int], ...]:
        """Per group, the sides whose words are among ``present``."""
        found = present & self.words
        if not found:
            return self.none
        masks = [0] * self.size
        for word in found:
            for k, side in self.index[word]:
                masks[k] |= 1 << side
        return tuple(self.sides[m] for m in masks)


_poles_of = _Groups(_POLES)


def _pole_phrases() -> dict[str, frozenset[str]]:
    """Each hyphenated pole word ("medium-rare", "part-time") -> the words of it that
    stand for a side of one of its groups ("rare"): written as two words, the phrase is
    read as the hyphenated word in place of those ("a medium rare steak" is no "rare"
    steak)."""
    out: dict[str, frozenset[str]] = {}
    for phrase, at in _poles_of.index.items():
        if "-" not in phrase:
            continue
        groups = {k for k, _ in at}
        parts = phrase.split("-")
        if len(parts) == 2:
            out[phrase] = frozenset(
                p for p in parts if groups & {k for k, _ in _poles_of.index.get(p, ())}
            )
    return out


_POLE_PHRASES = _pole_phrases()
# the first words of those phrases: a prompt with none of them holds no such phrase
_POLE_PHRASE_STARTS = frozenset(phrase.split("-")[0] for phrase in _POLE_PHRASES)


def _opposites() -> dict[str, str]:
    """A word of a two-sided pole group -> a word of its other side (of the first such
    group that holds it): what "less" or "least" before it says ("less healthy" is
    "unhealthy", "least expensive" "cheap")."""
    out: dict[str, str] = {}
    for sides in _POLES:
        if len(sides) == 2:
            for side, other in (sides, sides[::-1]):
                for word in side:
                    out.setdefault(word, min(other))
    return out


_OPPOSITES = _opposites()
# the words that grade a pole word after them: "more dangerous" is "riskier"
_DEGREES = frozenset({"more", "most", "less", "least"})


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
    # French, Spanish and German, two to ten ("un"/"uno"/"ein" are also "a"; "sept" is
    # also September, "six" is English already, "dos" English too: "dos and don'ts")
    "deux": 2, "trois": 3, "quatre": 4, "cinq": 5, "huit": 8, "neuf": 9, "dix": 10,
    "tres": 3, "cuatro": 4, "cinco": 5, "seis": 6, "siete": 7, "ocho": 8,
    "nueve": 9, "diez": 10,
    "zwei": 2, "drei": 3, "vier": 4, "fünf": 5, "sechs": 6, "sieben": 7, "acht": 8,
    "neun": 9, "zehn": 10,
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


# "all columns except password" is not "only the password column" (read only after
# "all", "every", "any" or "each": "someone besides me" is someone else)
_EXCLUSIONS = frozenset({"except", "excluding", "besides"})
# ("not counting the dressing" / "not including tax" take it out as "excluding" does)
_EXCLUSION_PAIRS = frozenset({
    ("other", "than"), ("apart", "from"), ("aside", "from"), ("all", "but"),
    ("not", "counting"), ("not", "including"),
})  # fmt: skip
