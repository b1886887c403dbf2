"""Hook leftovers: an embeddings request split into several upstream calls is one request
to the post-cache hooks; a post-cache hook that fails part way through changes nothing;
key builders named in the config are held to ``general_settings.hook_timeout`` as the
other hooks are."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

import deja
from deja.testing import FakeOpenAIServer
from tests.server.conftest import MASTER, proxy_config

EMBED = "/v1/embeddings"
ADMIN = {"authorization": f"Bearer {MASTER}"}
# each call the hook gets, a line in this file (the hook runs in the proxy, as loaded)
SEEN = "seen.jsonl"


def _mistral(upstream: FakeOpenAIServer, tmp_path: Path, hook: str) -> dict[str, Any]:
    """The test proxy with a Mistral embeddings deployment (256 inputs a call) and one
    post-cache hook, ``post`` (its body ``hook``), that first notes what it is given."""
    upstream.max_embedding_inputs = 256
    (tmp_path / "post_hook.py").write_text(
        "import json\n\n"
        "def post(response, request):\n"
        f"    with open({str(tmp_path / SEEN)!r}, 'a') as seen:\n"
        "        data = response['data']\n"
        "        note = {'items': len(data), 'indexes': [d['index'] for d in data],\n"
        "                'usage': response['usage'], 'inputs': len(request['input'])}\n"
        "        seen.write(json.dumps(note) + '\\n')\n"
        f"{hook}"
    )
    mistral = {"model": "mistral/mistral-embed", "api_base": upstream.base_url, "api_key": "k"}
    config = proxy_config(
        upstream, hooks=[{"path": "post_hook.py", "async_post_cache_hook": "post"}]
    )
    config["model_list"].append({"model_name": "mistral-embed", "litellm_params": mistral})
    return config


def _seen(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / SEEN
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _inputs(count: int) -> list[str]:
    return [f"item {i}" for i in range(count)]


# -- an embeddings request in several upstream calls ------------------------------------


async def test_the_post_cache_hooks_see_an_embeddings_request_once_whole(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """600 inputs to a deployment that takes 256 a call are three upstream calls: a hook
    that counts, bills or logs requests was called three times, each with a third of the
    answer. It is called once, with the whole answer (as one call would have given it),
    and the options it asks for hold for every item."""
    hook = "    return {'tags': ['billed']}\n"
    async with make_proxy(_mistral(upstream, tmp_path, hook)) as proxy:
        body = {"model": "mistral-embed", "input": _inputs(600)}
        answer = await proxy.post(EMBED, json=body)
        assert answer.status_code == 200
        assert [len(r.body["input"]) for r in upstream.requests] == [256, 256, 88]
        [seen] = _seen(tmp_path)
        assert seen["items"] == seen["inputs"] == 600
        assert seen["indexes"] == list(range(600))
        assert seen["usage"] == answer.json()["usage"]  # (the three calls' tokens)
        # the hook's tag is on the items of every call, not the last one's only
        gone = await proxy.post("/cache/invalidate", json={"tag": "billed"}, headers=ADMIN)
        assert gone.json() == {"deleted": 600}


async def test_an_answer_whose_last_call_fails_keeps_the_earlier_calls_items(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """The items of each call are stored as it answers: the third call failing (the
    upstream refuses an empty input) loses none of the first two's. The hooks never saw
    an answer (there was none)."""
    async with make_proxy(_mistral(upstream, tmp_path, "")) as proxy:
        failed = await proxy.post(
            EMBED, json={"model": "mistral-embed", "input": [*_inputs(512), ""]}
        )
        assert failed.status_code == 400
        assert [len(r.body["input"]) for r in upstream.requests] == [256, 256, 1]
        assert _seen(tmp_path) == []
        kept = await proxy.post(EMBED, json={"model": "mistral-embed", "input": _inputs(512)})
    assert kept.headers["x-deja-cache"] == "hit"
    assert upstream.count(EMBED) == 3


@pytest.mark.parametrize(
    "hook",
    ["    return {'no-store': True}\n", "    raise RuntimeError('billing is down')\n"],
    ids=["no-store", "raises"],
)
async def test_an_embeddings_answer_the_hooks_keep_from_the_cache_is_not_stored_at_all(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    hook: str,
) -> None:
    """A hook that asks not to store the answer (or fails: the answer is then served, not
    stored) decides for every item of the request, those of the calls stored before the
    answer was whole too."""
    async with make_proxy(_mistral(upstream, tmp_path, hook)) as proxy:
        body = {"model": "mistral-embed", "input": _inputs(300)}
        first = await proxy.post(EMBED, json=body)
        assert first.status_code == 200 and len(first.json()["data"]) == 300
        again = await proxy.post(EMBED, json=body)
    assert again.headers["x-deja-cache"] == "miss"
    assert again.headers["x-deja-cached-items"] == "0/300"
    assert [len(r.body["input"]) for r in upstream.requests] == [256, 44, 256, 44]


@pytest.mark.parametrize("inputs", [2, 300], ids=["one call", "two calls"])
async def test_a_hook_that_changes_the_vectors_changes_nothing_served_or_stored(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    inputs: int,
) -> None:
    """The hooks' changes to an embeddings answer are neither served nor stored (its
    items are stored one by one): a hook that scaled the vectors in place was given the
    very lists that were served and stored."""
    hook = "    for item in response['data']:\n        item['embedding'][0] = 12345.0\n"
    async with make_proxy(_mistral(upstream, tmp_path, hook)) as proxy:
        body = {"model": "mistral-embed", "input": _inputs(inputs)}
        first = await proxy.post(EMBED, json=body)
        again = await proxy.post(EMBED, json=body)
    assert again.headers["x-deja-cache"] == "hit"
    for answer in (first, again):
        assert all(item["embedding"][0] != 12345.0 for item in answer.json()["data"])
    assert first.json()["data"] == again.json()["data"]


# -- the request an embeddings answer is given with ---------------------------------------

RECORD = (
    "import json\n\n"
    "def post(response, request):\n"
    "    with open({path!r}, 'a') as seen:\n"
    "        seen.write(json.dumps({{'request': request, 'response': response}}) + '\\n')\n"
)


@pytest.mark.parametrize(
    ("first", "then", "answered"),
    [
        (["a", "b"], ["c", "a", "d", "b", "c"], ["c", "d"]),
        ([[1, 2], [3]], [[3], [4, 5], [1, 2], [6]], [[4, 5], [6]]),
        (["a"], ["b", "b"], ["b"]),  # (no hit: an input given twice is fetched once)
    ],
    ids=["strings", "token arrays", "an input twice"],
)
async def test_an_embeddings_hook_is_given_the_inputs_of_the_items_it_is_given(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    first: list[Any],
    then: list[Any],
    answered: list[Any],
) -> None:
    """A request some of whose inputs are hits: the hook's answer holds only the items
    fetched (indexed from 0), and its request held every input, so a hook could not tell
    which vector was which input's. The request it is given holds the inputs of the
    answer's items, in their order, and the rest of the body as it came."""
    (tmp_path / "post_hook.py").write_text(RECORD.format(path=str(tmp_path / SEEN)))
    config = proxy_config(
        upstream, hooks=[{"path": "post_hook.py", "async_post_cache_hook": "post"}]
    )
    model = "text-embedding-3-small"
    async with make_proxy(config) as proxy:
        cached = {"model": model, "input": first, "dimensions": 8}
        assert (await proxy.post(EMBED, json=cached)).status_code == 200
        body = {"model": model, "input": then, "dimensions": 8, "user": "u-1"}
        answer = await proxy.post(EMBED, json=body)
    assert answer.status_code == 200
    served = {
        json.dumps(i): d["embedding"] for i, d in zip(then, answer.json()["data"], strict=True)
    }
    seen = _seen(tmp_path)[-1]
    assert seen["request"] == {**body, "input": answered}
    items = seen["response"]["data"]
    assert [item["index"] for item in items] == list(range(len(answered)))
    for given, item in zip(answered, items, strict=True):
        assert item["embedding"] == served[json.dumps(given)]  # the input's own vector


async def test_an_embeddings_hook_whose_request_all_missed_is_given_it_as_it_came(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """Every input fetched, each once: the request is the body as it came (one string
    stays a string)."""
    (tmp_path / "post_hook.py").write_text(RECORD.format(path=str(tmp_path / SEEN)))
    config = proxy_config(
        upstream, hooks=[{"path": "post_hook.py", "async_post_cache_hook": "post"}]
    )
    async with make_proxy(config) as proxy:
        for given in ("one", ["two", "three"]):
            body = {"model": "text-embedding-3-small", "input": given}
            assert (await proxy.post(EMBED, json=body)).status_code == 200
            assert _seen(tmp_path)[-1]["request"] == body


async def test_an_embeddings_hook_that_changes_its_token_arrays_changes_nothing_served(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """The request's inputs are the hook's own: one that appends to a token array it is
    given changes neither what the batch serves nor where."""
    hook = (
        "def post(response, request):\n"
        "    for given in request['input']:\n"
        "        given.append(7)\n"
    )
    (tmp_path / "post_hook.py").write_text(hook)
    config = proxy_config(
        upstream, hooks=[{"path": "post_hook.py", "async_post_cache_hook": "post"}]
    )
    model = "text-embedding-3-small"
    async with make_proxy(config) as proxy:
        first = await proxy.post(EMBED, json={"model": model, "input": [[1, 2]]})
        both = await proxy.post(EMBED, json={"model": model, "input": [[1, 2], [3], [3]]})
        alone = await proxy.post(EMBED, json={"model": model, "input": [[3]]})
    assert both.status_code == 200
    vectors = [item["embedding"] for item in both.json()["data"]]
    assert vectors == [
        first.json()["data"][0]["embedding"],
        *[alone.json()["data"][0]["embedding"]] * 2,
    ]


# -- a post-cache hook that fails part way through ---------------------------------------

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-4o", "messages": [{"role": "user", "content": "Mail the mayor of Lima?"}]}
REDACT = (
    "def redact(response, request):\n"
    "    message = response['choices'][0]['message']\n"
    "    message['content'] = message['content'].replace('mayor@lima.pe', '[email]')\n"
)
HALF = (
    "def half(response, request):\n"
    "    response['choices'][0]['message']['content'] = 'HALF DONE'\n"
    "    response['choices'][0]['finish_reason'] = 'hooked'\n"
    "    raise RuntimeError('the second half failed')\n"
)
SLOW_HALF = (
    "import asyncio\n\n"
    "async def half(response, request):\n"
    "    response['choices'][0]['message']['content'] = 'HALF DONE'\n"
    "    await asyncio.Event().wait()\n"
)


def _post_hooks(tmp_path: Path, hooks: list[str]) -> list[dict[str, str]]:
    """``hooks:`` entries of the post-cache hooks whose sources are ``hooks``, in order
    (each written to a file of its own, named by the function it defines)."""
    specs = []
    for i, source in enumerate(hooks):
        (tmp_path / f"hook{i}.py").write_text(source)
        name = source.split("def ", 1)[1].split("(", 1)[0]
        specs.append({"path": f"hook{i}.py", "async_post_cache_hook": name})
    return specs


@pytest.mark.parametrize(
    ("hooks", "served"),
    [
        ([HALF], "Write to mayor@lima.pe."),
        ([SLOW_HALF], "Write to mayor@lima.pe."),
        # the hooks before the one that failed keep their changes (a redaction)
        ([REDACT, HALF], "Write to [email]."),
    ],
    ids=["raises", "times out", "after a redaction"],
)
async def test_a_post_cache_hook_that_fails_part_way_changes_nothing(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    hooks: list[str],
    served: str,
) -> None:
    """A post-cache hook that changed the answer in place, then raised (or was cancelled
    past hook_timeout): the half-changed answer was served. A hook that fails changes
    nothing: the answer as the hooks before it left it is served, not stored (as for a
    hook that fails without changing it), and the failure is logged."""
    from deja.testing import Reply

    upstream.reply_with(lambda body: Reply("Write to mayor@lima.pe."))
    config = proxy_config(upstream, hooks=_post_hooks(tmp_path, hooks))
    config["general_settings"]["hook_timeout"] = 0.05
    async with make_proxy(config) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answers = [await proxy.post(CHAT, json=BODY) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-deja-cache"] for a in answers] == ["miss", "miss"]  # not stored
    for answer in answers:
        choice = answer.json()["choices"][0]
        assert choice["message"]["content"] == served
        assert choice["finish_reason"] == "stop"
    said = [r.getMessage() for r in caplog.records if "hook half failed" in r.getMessage()]
    assert said and "not stored" in said[0]


BAD_OPTIONS = (
    "def half(response, request):\n"
    "    response['choices'][0]['message']['content'] = 'HALF DONE'\n"
    "    return {'ttl': 'soon'}\n"
)
UNWRITABLE = (
    "def unwritable(response, request):\n"
    "    response['choices'][0]['message']['content'] = 'A SET'\n"
    "    response['extra'] = {1, 2}\n"
)
# a hook after UNWRITABLE: never run on an answer JSON cannot write (its failure undid
# the changes of the hooks before it back to a stale copy)
NOTES_RUNS = (
    "def half(response, request):\n"
    "    response['choices'][0]['message']['content'] = 'HALF DONE'\n"
    "    raise RuntimeError('the second half failed')\n"
)


MAYOR = "Write to mayor@lima.pe."


@pytest.mark.parametrize(
    ("hooks", "said", "served"),
    [
        ([BAD_OPTIONS], "asked for an invalid cache option", MAYOR),
        ([UNWRITABLE, NOTES_RUNS], "left the answer unwritable", MAYOR),
        # the redaction before it kept (the answer as the upstream sent it was served)
        ([REDACT, UNWRITABLE, NOTES_RUNS], "left the answer unwritable", "Write to [email]."),
    ],
    ids=["invalid options", "after an unwritable answer", "unwritable after a redaction"],
)
async def test_a_post_cache_hook_whose_answer_is_not_stored_changes_nothing(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    hooks: list[str],
    said: str,
    served: str,
) -> None:
    """A hook that changed the answer and asked for an invalid cache option had its change
    served (not stored); a hook after one that left the answer unwritable ran on it; and
    an answer left unwritable was served as the upstream sent it, a redaction by a hook
    before undone. Each serves the answer as the hooks before it left it, not stored."""
    from deja.testing import Reply

    upstream.reply_with(lambda body: Reply("Write to mayor@lima.pe."))
    async with make_proxy(proxy_config(upstream, hooks=_post_hooks(tmp_path, hooks))) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answers = [await proxy.post(CHAT, json=BODY) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-deja-cache"] for a in answers] == ["miss", "miss"]  # not stored
    for answer in answers:
        assert answer.json()["choices"][0]["message"]["content"] == served
        assert "extra" not in answer.json()
    assert any(said in r.getMessage() for r in caplog.records)
    assert not any("hook half failed" in r.getMessage() for r in caplog.records)


AWAITABLE = (
    "import asyncio\n\n"
    "class Later:\n"
    "    def __await__(self):\n"
    "        yield from asyncio.sleep(0).__await__()\n"
    "        return {'tags': ['from-later']}\n\n"
    "def later(response, request):\n"
    "    return Later()\n"
)


async def test_a_sync_hook_that_returns_an_awaitable_of_its_own_is_awaited(
    upstream: FakeOpenAIServer, make_proxy: Callable[..., httpx2.AsyncClient], tmp_path: Path
) -> None:
    """Only coroutines and asyncio Futures were awaited: another awaitable a sync hook
    returned (another library's) was taken for its options, ignored, and never run."""
    (tmp_path / "later.py").write_text(AWAITABLE)
    hooks = [{"path": "later.py", "async_post_cache_hook": "later"}]
    async with make_proxy(proxy_config(upstream, hooks=hooks)) as proxy:
        first = await proxy.post(CHAT, json=BODY)
        dropped = await proxy.post("/cache/invalidate", json={"tag": "from-later"}, headers=ADMIN)
        again = await proxy.post(CHAT, json=BODY)
    assert first.status_code == 200 and first.headers["x-deja-cache"] == "miss"
    assert dropped.status_code == 200, dropped.text
    assert again.headers["x-deja-cache"] == "miss"  # tagged by the awaited options: dropped


# -- key builders named in the config ----------------------------------------------------


def _hook_builder(upstream: FakeOpenAIServer) -> dict[str, Any]:
    return proxy_config(upstream, hooks=[{"path": "kb.py", "key_builder": "kb"}])


def _caching_builder(upstream: FakeOpenAIServer) -> dict[str, Any]:
    return proxy_config(upstream, caching={"type": "memory", "key_builder": "kb.kb"})


BUILDERS = pytest.mark.parametrize(
    "config", [_hook_builder, _caching_builder], ids=["hooks entry", "caching.key_builder"]
)


@BUILDERS
async def test_a_slow_key_builder_is_said_as_a_slow_sync_hook_is(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    config: Callable[[FakeOpenAIServer], dict[str, Any]],
) -> None:
    """A key builder had no time limit, and nothing said one held every request of its
    worker. It runs as a sync hook does (a key is computed synchronously: nothing can stop
    it): its digest stands, and that it ran past hook_timeout is said, once then counted."""
    (tmp_path / "kb.py").write_text(
        "import time\n\n"
        "def kb(request, tenant=None):\n"
        "    time.sleep(0.06)\n"  # (at least that long: past the 0.05 s limit)
        "    return 'same-for-all'\n"
    )
    settings = config(upstream)
    settings["general_settings"]["hook_timeout"] = 0.05
    async with make_proxy(settings) as proxy:
        with caplog.at_level("WARNING", logger="deja"):
            answers = [await proxy.post(CHAT, json=BODY) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.headers["x-deja-cache"] for a in answers] == ["miss", "hit"]  # its digest stands
    said = [r.getMessage() for r in caplog.records if "past general_settings" in r.getMessage()]
    assert len(said) == 1  # once, then counted
    assert said[0].startswith("key builder kb ran ")
    assert "general_settings.hook_timeout (0.05 s)" in said[0]


@BUILDERS
def test_an_async_key_builder_is_refused_at_start(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    config: Callable[[FakeOpenAIServer], dict[str, Any]],
) -> None:
    """A key is computed synchronously, on every lookup: an ``async def`` builder's
    coroutine was never awaited, and every request was a 500 ("returned coroutine, not a
    digest string"). It is refused at start, naming it where it was given (a hooks entry's
    was named as caching.key_builder)."""
    (tmp_path / "kb.py").write_text("async def kb(request, tenant=None):\n    return 'digest'\n")
    with pytest.raises(deja.ConfigError) as raised:
        make_proxy(config(upstream))
    given = "hooks[0].key_builder" if config is _hook_builder else "caching.key_builder"
    assert raised.value.path == given
    assert "kb is async" in str(raised.value) and "plain def" in str(raised.value)


def test_the_library_refuses_an_async_key_builder() -> None:
    async def kb(request: Any) -> str:
        return "digest"

    for cache in (deja.Cache, deja.AsyncCache):
        with pytest.raises(TypeError, match="kb is async"):
            cache(key_builder=kb)


@BUILDERS
async def test_a_failing_key_builder_is_logged_once_then_counted(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    config: Callable[[FakeOpenAIServer], dict[str, Any]],
) -> None:
    """A key builder that raised logged its traceback on every request (five requests,
    five tracebacks), where a failing hook is said once, then counted; the caller's
    message nested the hook's in a repr (``key builder kb failed: HookError("hook kb
    failed (...)")``)."""
    (tmp_path / "kb.py").write_text(
        "def kb(request, tenant=None):\n    raise RuntimeError('vault token hvs.SECRET123')\n"
    )
    async with make_proxy(config(upstream)) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answers = [await proxy.post(CHAT, json=BODY) for _ in range(5)]
    assert [a.status_code for a in answers] == [500] * 5
    assert all("SECRET123" not in a.text for a in answers)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "SECRET123" in (tracebacks[0].exc_text or "")
    assert "key builder hook kb failed" in tracebacks[0].getMessage()
    if config is _hook_builder:
        assert answers[0].json()["error"]["message"] == "hook kb failed (the proxy's log has why)"


async def test_a_key_builder_whose_digests_are_refused_is_logged_once_then_counted(
    upstream: FakeOpenAIServer,
    make_proxy: Callable[..., httpx2.AsyncClient],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A key builder returning a digest deja refuses (a space in it) was logged at ERROR on
    every request; it is said as a failing key builder is, once, then counted."""
    (tmp_path / "kb.py").write_text("def kb(request, tenant=None):\n    return 'has space'\n")
    async with make_proxy(_caching_builder(upstream)) as proxy:
        with caplog.at_level("ERROR", logger="deja"):
            answers = [await proxy.post(CHAT, json=BODY) for _ in range(5)]
    assert [a.status_code for a in answers] == [500] * 5
    assert {a.json()["error"]["code"] for a in answers} == {"key_builder_failed"}
    said = [r for r in caplog.records if "key builder hook kb failed" in r.getMessage()]
    assert len(said) == 1 and "has space" in (said[0].exc_text or "")
