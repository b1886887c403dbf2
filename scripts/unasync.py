"""Generate the sync twins of deja's async source files.

``src/deja/_async/*.py`` is the source of truth; this writes ``src/deja/_sync/*.py`` by
token substitution (``async def`` -> ``def``, ``await x`` -> ``x``, ``AsyncCache`` ->
``Cache``, ``store.aget`` -> ``store.get``, ``asyncio.Event`` -> ``threading.Event``...)
and formats the result with ruff so it reads like hand-written code.

A line ending in ``# unasync: <text>`` is replaced by ``<text>`` (same indentation) in the
sync twin, for the rare spot where the sync code must differ.

    python scripts/unasync.py           # regenerate
    python scripts/unasync.py --check   # exit 1 if a generated file is stale (make test)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "src" / "deja" / "_async"
TARGET = ROOT / "src" / "deja" / "_sync"

# whole identifiers (word boundaries) renamed in the sync twin
NAMES = {
    "AsyncCache": "Cache",
    "AsyncSingleFlight": "SingleFlight",
    "AsyncBatchFlight": "BatchFlight",
    "AsyncBroadcast": "Broadcast",
    "AsyncCachedStream": "CachedStream",
    "AsyncClient": "Client",
    "AsyncTieredOps": "TieredOps",
    "AsyncContextCaches": "ContextCaches",
    "aget_or_create": "get_or_create",
    "aforget": "forget",
    "aforget_scope": "forget_scope",
    "aforget_name": "forget_name",
    "arecord": "record",
    "acreate_context_cache": "create_context_cache",
    "adelete_context_cache": "delete_context_cache",
    "apublish": "publish",
    "alock": "lock",
    "acheck": "check",
    "ainspect": "inspect",
    "afeedback": "feedback",
    "astore": "store",
    "aunlock": "unlock",
    "aextend": "extend",
    "AsyncLockKeeper": "LockKeeper",
    "AsyncHTTP": "SyncHTTP",
    "ChunkStream": "SyncChunkStream",
    "AsyncHTTPResponse": "SyncHTTPResponse",
    "async_http_client": "sync_http_client",
    "AsyncChatCompletionStream": "ChatCompletionStream",
    "AsyncCachedCompletions": "CachedCompletions",
    "AsyncCachedEmbeddings": "CachedEmbeddings",
    "AsyncWrappedStream": "WrappedStream",
    "AsyncOpenAI": "OpenAI",
    "AsyncRedisOps": "RedisOps",
    "AsyncRedisClient": "RedisClient",
    "AbstractAsyncContextManager": "AbstractContextManager",
    "__aiter__": "__iter__",
    "__anext__": "__next__",
    "StopAsyncIteration": "StopIteration",
    "aiter_bytes": "iter_bytes",
    "aiter_lines": "iter_lines",
    "aread": "read",
    "aembedding": "embedding",
    "acompletion": "completion",
    "aopen_uncached": "open_uncached",
    "arequest": "request",
    "astream": "stream",
    "acached_embeddings": "cached_embeddings",
    "atext_completion": "text_completion",
    "aget": "get",
    "aset": "set",
    "adelete": "delete",
    "aget_many": "get_many",
    "aset_many": "set_many",
    "aclear": "clear",
    "aclose": "close",
    "atag": "tag",
    "akeys_for": "keys_for",
    "adrop": "drop",
    "ausage": "usage",
    "__aenter__": "__enter__",
    "__aexit__": "__exit__",
    "AsyncIterator": "Iterator",
    "AsyncIterable": "Iterable",
    "AsyncGenerator": "Generator",
}
PHRASES = [
    (re.compile(r"\bdeja\._async\."), "deja._sync."),
    # redis-py mirrors its sync API under redis.asyncio (redis.asyncio.cluster.RedisCluster
    # -> redis.cluster.RedisCluster, redis.asyncio.Redis -> redis.Redis)
    (re.compile(r"\bredis\.asyncio\b"), "redis"),
    (re.compile(r"\basyncio\.Event\b"), "threading.Event"),
    (re.compile(r"\basyncio\.Condition\b"), "threading.Condition"),
    (re.compile(r"\basyncio\.sleep\b"), "time.sleep"),
    (re.compile(r"\bawait asyncio\.to_thread\(([\w.]+)\)"), r"\1()"),
    (re.compile(r"^import asyncio$", re.M), "import threading"),
    (re.compile(r"\basync def\b"), "def"),
    (re.compile(r"\basync with\b"), "with"),
    (re.compile(r"\basync for\b"), "for"),
    (re.compile(r"\bawait "), ""),
]
_NAME_RE = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, NAMES), key=len, reverse=True)) + r")\b"
)
_OVERRIDE_RE = re.compile(r"^(\s*).*#\s*unasync:\s*(.*)$")


def _strip_awaitable(text: str) -> str:
    """``Awaitable[X]`` -> ``X``, with nested brackets in X."""
    out, i = [], 0
    while (j := text.find("Awaitable[", i)) != -1:
        out.append(text[i:j])
        k, depth = j + len("Awaitable["), 1
        start = k
        while depth:
            depth += {"[": 1, "]": -1}.get(text[k], 0)
            k += 1
        out.append(text[start : k - 1])
        i = k
    out.append(text[i:])
    return "".join(out)


def transform(source: str, name: str) -> str:
    lines = []
    for line in source.splitlines():
        m = _OVERRIDE_RE.match(line)
        lines.append(m.group(1) + m.group(2) if m else line)
    text = "\n".join(lines) + "\n"
    text = _strip_awaitable(text)
    text = re.sub(r"\bAwaitable, ", "", text).replace(", Awaitable", "")
    for pattern, replacement in PHRASES:
        text = pattern.sub(replacement, text)
    text = _NAME_RE.sub(lambda m: NAMES[m.group(1)], text)
    header = (
        f"# Generated by scripts/unasync.py from src/deja/_async/{name}: do not edit.\n"
        "# Edit the async source and run `python scripts/unasync.py`.\n"
    )
    return _ruff(header + text, name)


def _ruff(text: str, name: str) -> str:
    ruff = [sys.executable, "-m", "ruff"]
    fname = str(TARGET / name)
    fixed = (
        subprocess.run(
            [
                *ruff,
                "check",
                "--select",
                "I,F401,F811",
                "--fix",
                "--quiet",
                "--stdin-filename",
                fname,
                "-",
            ],
            input=text,
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        or text
    )
    formatted = subprocess.run(
        [*ruff, "format", "--quiet", "--stdin-filename", fname, "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
    )
    return formatted.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a sync twin is stale")
    args = parser.parse_args()
    stale = []
    expected_names = set()
    for src in sorted(SOURCE.glob("*.py")):
        expected_names.add(src.name)
        generated = transform(src.read_text(), src.name)
        dst = TARGET / src.name
        current = dst.read_text() if dst.exists() else None
        if current != generated:
            stale.append(dst)
            if not args.check:
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.write_text(generated)
    extra = [p for p in TARGET.glob("*.py") if p.name not in expected_names]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run: python scripts/unasync.py)")
        for path in extra:
            print(f"orphan: {path.relative_to(ROOT)} has no source in src/deja/_async/")
        return 1 if stale or extra else 0
    for path in stale:
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
