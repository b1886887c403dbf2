"""Generate docs/configuration.md, the configuration reference, from deja.config itself.

Every key on the page comes from the parser's own declarations: the cache types' typed
``Option``\\ s (name, aliases, types, secrecy, doc), the key tables of the other sections
with the one-line description each carries, the LiteLLM keys each section accepts and
ignores, and the tables of REDIS_* / QDRANT_* variables read. Defaults are the ones
declared (an ``Option``'s ``default``), else those of the settings dataclass or store
class that receives the value. Nothing about a key is written here: a key without a
description fails tests/test_config_reference.py, which also checks the page is current.

    python scripts/config_reference.py > docs/configuration.md   # regenerate
    python scripts/config_reference.py --check                   # exit 1 if the page is stale
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import sys
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "configuration.md"
REGENERATE = "python scripts/config_reference.py > docs/configuration.md"

# the deja of this tree, not another one installed in the environment
sys.path.insert(0, str(ROOT / "src"))

from deja import config  # noqa: E402
from deja.config import CacheType, Option, StoreSpec  # noqa: E402
from deja.prices import PRICE_FIELDS  # noqa: E402
from deja.stores.disk import DiskStore  # noqa: E402
from deja.stores.memory import MemoryStore  # noqa: E402
from deja.stores.redis import RedisStore  # noqa: E402
from deja.stores.s3 import S3Store  # noqa: E402

# Where an option left unset gets its value: the keyword argument of the store class its
# type's factory passes it to (None: the store decides, as its doc says).
STORE_CLASSES: Mapping[str, Callable[..., object]] = {
    "memory": MemoryStore,
    "disk": DiskStore,
    "s3": S3Store,
    "redis": RedisStore,
    "redis_semantic": RedisStore,
}
# Types shown first, in this order (an easy store before a composed one); any other
# registered type follows, sorted.
TYPE_ORDER = ("memory", "disk", "redis", "s3", "tiered", "semantic", "redis_semantic")
TYPE_NAMES: Mapping[type[object], str] = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "list",
    dict: "mapping",
    Path: "path",
    StoreSpec: "cache block",
}
LITELLM_MARK = "†"
NO_DEFAULT = "—"


def code(name: str) -> str:
    return f"`{name}`"


def cell(text: str) -> str:
    """Text fit for one table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def wrapped(text: str) -> list[str]:
    return textwrap.wrap(text, width=100, break_long_words=False, break_on_hyphens=False)


def shown(value: object) -> str:
    """A default as YAML would write it."""
    if value is None:
        return NO_DEFAULT
    if isinstance(value, tuple | list):
        return code("[" + ", ".join(str(v) for v in value) + "]")
    if value == "":
        return code('""')
    if isinstance(value, bool):
        return code("true" if value else "false")
    if isinstance(value, float):
        return code(f"{value:g}")
    if isinstance(value, int):
        for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
            if value >= size and value % size == 0:
                return f"{code(str(value))} ({value // size} {unit})"
        return code(str(value))
    return code(str(value))


def parameter_default(source: Callable[..., object], name: str) -> object:
    """The default of keyword ``name`` of ``source`` (a class or dataclass), or None."""
    parameter = inspect.signature(source).parameters.get(name)
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def field_default(settings: Any, name: str) -> object:
    """The plain default of dataclass field ``name`` (None for a factory or no field)."""
    for item in dataclasses.fields(settings):
        if item.name == name and item.default is not dataclasses.MISSING:
            return item.default
    return None


def is_secret(name: str) -> bool:
    return config._SECRET_NAME.search(name) is not None


def key_cell(name: str, *, secret: bool = False, litellm: bool = False) -> str:
    return code(name) + (LITELLM_MARK if litellm else "") + (" (secret)" if secret else "")


def key_rows(
    keys: Mapping[str, str],
    *,
    defaults: Sequence[type[object]] = (),
    litellm: Iterable[str] = (),
) -> list[list[str]]:
    """Rows of a key table: key, default (from the ``defaults`` dataclasses' fields of the
    same name), description."""
    theirs = set(litellm)
    rows = []
    for name, doc in keys.items():
        value = next((v for v in (field_default(d, name) for d in defaults) if v is not None), None)
        rows.append(
            [key_cell(name, secret=is_secret(name), litellm=name in theirs), shown(value), doc]
        )
    return rows


def ignored_list(what: str, names: Iterable[str]) -> list[str]:
    """A folded list of LiteLLM keys a section accepts without implementing them."""
    listed = sorted(set(names))
    if not listed:
        return []
    return [
        "<details>",
        f"<summary>{what} ({len(listed)}): accepted, listed in one start-up warning,"
        " not used.</summary>",
        "",
        *wrapped(", ".join(code(n) for n in listed)),
        "",
        "</details>",
        "",
    ]


# ----------------------------------------------------------------------------- sections


def intro() -> list[str]:
    return [
        "# Configuration reference",
        "",
        "<!-- Generated by scripts/config_reference.py from src/deja/config.py: do not edit. -->",
        "",
        *wrapped(
            "Every key `deja serve --config` and `deja.config.load_config` accept, with its"
            " type, default and meaning. This page is generated from the parser's own"
            " declarations (the cache types' options and the key table of each section), so"
            f" it lists exactly what the parser reads. Regenerate it with `{REGENERATE}`;"
            " `python scripts/config_reference.py --check` fails when it is stale, and so"
            " does the test suite."
        ),
        "",
        "How to read it:",
        "",
        *wrapped(
            "- **`os.environ/NAME`** may stand for any value, or part of a string (`redis://"
            "os.environ/REDIS_HOST:6379`): it is replaced by that environment variable when"
            " the file is loaded, converted to the number or boolean the key takes. A"
            " missing variable is an error naming the key and the variable."
        ),
        *wrapped(
            "- **(secret)**: the value is never shown in a message or a repr (nor is any"
            " value read from the environment)."
        ),
        *wrapped(
            f"- **{LITELLM_MARK}**: a LiteLLM `cache_params` key, so a LiteLLM config's"
            " `litellm_settings.cache_params` block is read as it is."
        ),
        *wrapped(
            f"- **Default** {NO_DEFAULT}: none, or one the description gives (decided by the"
            " back-end, or by other keys)."
        ),
        *wrapped(
            "- A misspelt key is an error that names its YAML path and suggests the nearest"
            " key. The LiteLLM keys deja does not implement are accepted and named in one"
            " start-up warning (each section lists them, folded)."
        ),
        "",
    ]


def top_level() -> list[str]:
    return [
        "## Top level",
        "",
        *table(["Key", "Description"], ([code(k), d] for k, d in config._TOP_KEYS.items())),
        *ignored_list("LiteLLM top-level keys", config._TOP_LITELLM_IGNORED),
    ]


def caching(registry: config.CacheTypeRegistry) -> list[str]:
    lines = [
        "## `caching` (and `litellm_settings.cache_params`)",
        "",
        *wrapped(
            "The response cache: a `type` (one of the cache types below) with its options,"
            " beside the keys every cache block shares. LiteLLM's"
            " `litellm_settings.cache_params` takes the same keys."
        ),
        "",
        *table(
            ["Key", "Default", "Description"],
            [
                *key_rows(config._CACHING_KEYS, defaults=[config.CachingSettings]),
                *key_rows(config._CACHE_PARAMS_MAPPED, litellm=config._CACHE_PARAMS_MAPPED),
            ],
        ),
    ]
    used = {key for name in registry.names() for key in registry_type(registry, name).option_keys()}
    lines += ignored_list(
        "LiteLLM `cache_params` keys no cache type takes",
        (k for k in config._CACHE_PARAMS_LITELLM if k not in used),
    )
    lines += [
        *wrapped(
            f"A LiteLLM key that is an option of some types ({LITELLM_MARK} below) is warned"
            " about and ignored in a block of another type. redis-py's TLS client"
            " certificate options ("
            + ", ".join(code(k) for k in config._REDIS_TLS_CLIENT_CERT)
            + ") are not supported: a block that sets them is warned about at start."
        ),
        "",
        "### `params` (the semantic tier)",
        "",
        *wrapped(
            "Read by the semantic cache types (`"
            + "`, `".join(sorted(config._SEMANTIC_TYPES))
            + "`), with `similarity_threshold`; a misspelt key is an error, and `params` on"
            " another type is warned about."
        ),
        "",
        *table(["Key", "Description"], key_rows_plain(config._SEMANTIC_PARAMS)),
    ]
    return lines


def key_rows_plain(keys: Mapping[str, str]) -> list[list[str]]:
    return [[key_cell(name, secret=is_secret(name)), doc] for name, doc in keys.items()]


def registry_type(registry: config.CacheTypeRegistry, name: str) -> CacheType:
    cache_type = registry.get(name)
    if cache_type is None:  # (a name the registry listed)
        raise LookupError(name)
    return cache_type


def type_names(registry: config.CacheTypeRegistry) -> list[str]:
    names = registry.names()
    first = [n for n in TYPE_ORDER if n in names]
    return first + sorted(n for n in names if n not in first)


def option_type(option: Option) -> str:
    text = " or ".join(TYPE_NAMES.get(t, t.__name__) for t in option.accepted)
    if option.validator is config._positive:
        text += " > 0"
    elif option.validator is config._non_empty:
        text = "non-empty " + text
    return text


def option_default(type_name: str, name: str, option: Option) -> str:
    if option.required:
        return "required"
    if option.default is not None:
        return shown(option.default)
    store = STORE_CLASSES.get(type_name)
    return shown(parameter_default(store, name) if store is not None else None)


def cache_type_section(cache_type: CacheType) -> list[str]:
    litellm = set(config._CACHE_PARAMS_LITELLM)
    rows = []
    for name, option in cache_type.options.items():
        secret = option.secret or is_secret(name)
        also = ", ".join(code(a) + (LITELLM_MARK if a in litellm else "") for a in option.aliases)
        rows.append(
            [
                key_cell(name, secret=secret, litellm=name in litellm),
                also,
                option_type(option),
                option_default(cache_type.name, name, option),
                option.doc,
            ]
        )
    aliases = ", ".join(code(a) for a in cache_type.aliases)
    head = cache_type.doc + (f" Also named {aliases}." if aliases else "")
    if cache_type.name in config._SEMANTIC_TYPES:
        head += " Takes `similarity_threshold` and `params`."
    return [
        f"### `{cache_type.name}`",
        "",
        *wrapped(head),
        "",
        *table(["Key", "Also", "Type", "Default", "Description"], rows),
    ]


def cache_types(registry: config.CacheTypeRegistry) -> list[str]:
    lines = [
        "## Cache types",
        "",
        *wrapped(
            "The options of each `type`, written beside `type` in the cache block (or in a"
            " nested cache block: a `tiered` cache's `l1` and `l2`, a semantic type's"
            " `store`, which also take a `ttl`). An alias is another name for the same key;"
            " giving two names of one option is an error."
        ),
        "",
    ]
    for name in type_names(registry):
        lines += cache_type_section(registry_type(registry, name))
    return lines


def environment(registry: config.CacheTypeRegistry) -> list[str]:
    def where(option: str, types: Iterable[str]) -> str:
        having = [t for t in types if option in registry_type(registry, t).options]
        return ", ".join(f"`{t}.{option}`" for t in having)

    redis = sorted(config._REDIS_TYPES)
    rows: list[list[str]] = []
    for choice, (variable, option, companions) in enumerate(config._REDIS_ENV_ADDRESSES, 1):
        notes = [f"The server, choice {choice} (the block names none)."]
        if option == "url":
            notes.append("Not with the block's own port or db.")
        if option.endswith("nodes"):
            notes.append("A JSON list of nodes.")
        if companions:
            notes.append("Read with " + ", ".join(code(v) for v, _ in companions) + ".")
        rows.append([code(variable), where(option, redis), " ".join(notes)])
        rows += [[code(v), where(o, redis), f"With {code(variable)}."] for v, o in companions]
    rows += [
        [code(v), where(o, redis), "The block leaves it unset and names no URL."]
        for v, o in config._REDIS_ENV_CREDENTIALS
    ]
    rows += [
        [code(v), where(o, redis), "The block leaves it unset."]
        for v, o in config._REDIS_ENV_SETTINGS
    ]
    rows += [
        [code(v), NO_DEFAULT, "Not supported: warned about at start when set."]
        for v in config._REDIS_ENV_UNSUPPORTED
    ]
    qdrant = ["qdrant_semantic"]
    rows += [
        [
            code(v),
            where("qdrant_api_base", qdrant),
            "The block names no server; the first set is used (none: Qdrant's local mode).",
        ]
        for v in config._QDRANT_ENV_URLS
    ]
    rows.append(
        [
            code(config._QDRANT_ENV_KEY),
            where("qdrant_api_key", qdrant),
            "The block leaves it unset and a server is named.",
        ]
    )
    rows.append(
        [
            code(config._MASTER_KEY_VARIABLE),
            "`general_settings.master_key`",
            "The config names no master_key (as LiteLLM's proxy).",
        ]
    )
    return [
        "## Environment variables read",
        "",
        *wrapped(
            "As LiteLLM reads them. What the block says always wins; a value read from the"
            " environment is checked as the key it stands in for, and a message names the"
            " variable, never the value. A redis or redis_semantic block that names no server"
            " (no "
            + ", ".join(code(k) for k in config._REDIS_ADDRESS_KEYS)
            + ") takes it from the first of the server variables that is set."
        ),
        "",
        *table(["Variable", "Sets", "When"], rows),
    ]


def model_list() -> list[str]:
    params = {**config._LITELLM_SETTINGS_KEPT, **config._LITELLM_PARAMS_OTHER}
    request = ", ".join(code(k) for k in config.DEPLOYMENT_DEFAULTS)
    return [
        "## `model_list`",
        "",
        "Each entry:",
        "",
        *table(["Key", "Description"], key_rows_plain(config._DEPLOYMENT_KEYS)),
        "### `litellm_params`",
        "",
        *table(
            ["Key", "Description"],
            [*key_rows_plain(params), [request, config._DEPLOYMENT_DEFAULTS_DOC]],
        ),
        *ignored_list("LiteLLM `litellm_params` keys", config._LITELLM_PARAMS_IGNORED),
        *wrapped(
            "Any other key is an error (LiteLLM would pass it on to the provider; deja"
            " sends what `extra_body` holds)."
        ),
        "",
        "### `model_info`",
        "",
        *wrapped(
            "Kept as written. These price fields (in it or in `litellm_params`) override"
            " the packaged prices of the deployment's `model`: "
            + ", ".join(code(k) for k in sorted(PRICE_FIELDS))
            + "."
        ),
        "",
    ]


def injection_points() -> list[str]:
    return [
        "## `cache_control_injection_points`",
        "",
        *wrapped(
            "A list of points, at the top level (every model) or in a deployment's"
            " `litellm_params`. Each point:"
        ),
        "",
        *table(["Key", "Description"], key_rows_plain(config._INJECTION_KEYS)),
    ]


def hooks() -> list[str]:
    return [
        "## `hooks`",
        "",
        "A list of hook files. Each entry names the file and at least one function:",
        "",
        *table(["Key", "Description"], key_rows_plain(config._HOOK_KEYS)),
    ]


def litellm_settings() -> list[str]:
    return [
        "## `litellm_settings`",
        "",
        *table(["Key", "Description"], key_rows_plain(config._LITELLM_SETTINGS_KEYS)),
        *ignored_list("LiteLLM `litellm_settings` keys", config._LITELLM_SETTINGS_IGNORED),
    ]


def proxy() -> list[str]:
    return [
        "## `proxy`",
        "",
        *table(
            ["Key", "Default", "Description"],
            key_rows(config._PROXY_KEYS, defaults=[config.ProxySettings]),
        ),
    ]


def general_settings() -> list[str]:
    return [
        "## `general_settings`",
        "",
        *table(
            ["Key", "Default", "Description"],
            key_rows(config._GENERAL_KEYS, defaults=[config.GeneralSettings]),
        ),
        *ignored_list("LiteLLM `general_settings` keys", config._GENERAL_LITELLM_IGNORED),
        "### `virtual_keys`",
        "",
        "Each entry:",
        "",
        *table(["Key", "Description"], key_rows_plain(config._VIRTUAL_KEY_KEYS)),
    ]


def router_settings() -> list[str]:
    return [
        "## `router_settings`",
        "",
        *table(
            ["Key", "Default", "Description"],
            key_rows(config._ROUTER_KEYS, defaults=[config.ProxySettings, config.FallbackSettings]),
        ),
        *ignored_list("LiteLLM `router_settings` keys", config._ROUTER_LITELLM_IGNORED),
        *wrapped(
            "Another key near one of deja's (`num_retires`) is refused as the misspelling"
            " it is; any other is warned about and ignored."
        ),
        "",
        *wrapped(
            "Cooldowns are kept by each worker process of `deja serve --workers N`, not"
            " shared: each worker counts a deployment's failures in a row and cools it down"
            " on its own, so a failing deployment is tried up to N x `allowed_fails` times"
            " before every worker tries it last, and so again once each worker's"
            " `cooldown_time` is over (with 3 workers and `allowed_fails: 3`, 9 of 60"
            " requests reached a deployment answering 503s, against 3 with one worker)."
            " When another deployment answers, none of those requests fails; each pays the"
            " failed call first (a deployment that hangs: its whole timeout). For one"
            " worker's figure, set `allowed_fails` to its value divided by N (at least 1)."
        ),
        "",
    ]


def environment_variables() -> list[str]:
    return [
        "## `environment_variables`",
        "",
        *wrapped(
            "A mapping of variable names to values (strings, numbers or booleans), set in"
            " the process environment before anything else is read: the `os.environ/`"
            " references, the REDIS_* and QDRANT_* variables above, and a deployment"
            " without `api_key` (`OPENAI_API_KEY`...) see them. Every value is secret."
        ),
        "",
    ]


def python_example() -> list[str]:
    return [
        "## From Python",
        "",
        *wrapped(
            "`deja.config.parse_config` validates a configuration already read (a mapping);"
            " `load_config` reads a file. Errors are `deja.ConfigError`s naming the key:"
        ),
        "",
        "```python",
        "from pathlib import Path",
        "",
        "from deja import ConfigError",
        "from deja.config import cache_types, parse_config",
        "",
        'block = {"type": "memory", "max_entries": 1000, "ttl": 600}',
        'settings = parse_config({"caching": block}, base_dir=Path("."), environ={})',
        "assert settings.caching is not None",
        'assert settings.caching.options["max_entries"] == 1000',
        'assert "redis" in cache_types()',
        "",
        "try:",
        '    parse_config({"caching": {"max_entires": 10}}, base_dir=Path("."), environ={})',
        "except ConfigError as exc:",
        '    assert exc.path == "caching.max_entires"',
        "    assert \"did you mean 'max_entries'?\" in str(exc)",
        "```",
        "",
    ]


def render(registry: config.CacheTypeRegistry | None = None) -> str:
    """The whole page, for ``registry`` (default: a fresh one with deja's built-in types)."""
    registry = registry if registry is not None else config.CacheTypeRegistry()
    lines = [
        *intro(),
        *top_level(),
        *caching(registry),
        *cache_types(registry),
        *environment(registry),
        *model_list(),
        *injection_points(),
        *hooks(),
        *litellm_settings(),
        *proxy(),
        *general_settings(),
        *router_settings(),
        *environment_variables(),
        *python_example(),
    ]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help=f"fail if {PAGE.relative_to(ROOT)} is stale"
    )
    args = parser.parse_args()
    page = render()
    if not args.check:
        sys.stdout.write(page)
        return 0
    current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
    if current != page:
        print(f"{PAGE.relative_to(ROOT)} is out of date: run `{REGENERATE}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
