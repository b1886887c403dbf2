"""The library where a user's mistake meets it: typed errors for arguments deja cannot
use, keys that match what the Client keys, and requests that repeat themselves."""

from __future__ import annotations

import enum
import time
from typing import Any

import numpy as np
import pytest

import deja
import deja.api
from deja.keys import make_key
from deja.stores.memory import MemoryStore
from deja.testing import FakeOpenAIServer

MESSAGES = [{"role": "user", "content": "Capital of Peru?"}]


def chat(**kw: Any) -> deja.Request:
    messages = kw.pop("messages", MESSAGES)
    return deja.Request.chat(model="gpt-4o", messages=messages, **kw)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: deja.Cache(store="memory"), "store must be a deja store"),
        (lambda: deja.Client(cache=MemoryStore()), "cache must be a deja.Cache"),
        (lambda: deja.Client(cache=deja.AsyncCache()), "cache must be a deja.Cache"),
        (lambda: deja.AsyncClient(cache=deja.Cache()), "cache must be a deja.AsyncCache"),
        (lambda: deja.Client(timeout="5"), "timeout must be a number"),
        (lambda: deja.Client(max_retries=1.5), "max_retries must be an int"),
    ],
)
def test_arguments_deja_cannot_use_are_a_type_error(make: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        make()


@pytest.mark.parametrize(
    "request_of",
    [
        lambda: chat(seed=2**70),
        lambda: chat(messages=[{"role": "user", "content": "\ud800"}]),
        lambda: chat(messages=[{"role": "user", "content": "q", 1: "y"}]),
    ],
)
def test_what_json_cannot_carry_is_an_invalid_request(request_of: Any) -> None:
    with pytest.raises(deja.InvalidRequestError, match="cannot be keyed"):
        make_key(request_of())


def test_numpy_numbers_are_numbers() -> None:
    assert make_key(chat(temperature=np.float64(0.2))) == make_key(chat(temperature=0.2))


def test_openais_successor_of_user_is_volatile() -> None:
    assert make_key(chat(safety_identifier="u-1")) == make_key(chat())
    assert make_key(chat(num_retries=3)) == make_key(chat())


def test_a_request_keys_the_endpoint_the_client_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-up")
        cache = deja.Cache()
        with deja.Client(cache=cache, max_retries=0) as client:
            answer = client.completion(model="gpt-4o", messages=MESSAGES)
        assert cache.explain(chat())["key"] == answer.cache.key
        assert cache.get(chat()).info.status == "hit"


def test_an_item_given_twice_is_fetched_once() -> None:
    with FakeOpenAIServer() as server:
        cache = deja.Cache()
        with deja.Client(cache=cache, api_base=server.base_url, api_key="sk", max_retries=0) as c:
            c.embedding(model="text-embedding-3-small", input=["b", "d"])
            answer = c.embedding(model="text-embedding-3-small", input=["a", "b", "a", "c", "d"])
        assert server.requests[-1].body["input"] == ["a", "c"]
        vectors = [item.embedding for item in answer.data]
        assert len(vectors) == 5 and vectors[0] == vectors[2] != vectors[1]


def test_a_store_where_it_cannot_work_is_refused_when_made(tmp_path: Any) -> None:
    from deja.stores.disk import DiskStore
    from deja.stores.redis import RedisStore

    file = tmp_path / "file"
    file.write_text("")
    with pytest.raises(ValueError, match="not a directory"):
        DiskStore(file)
    with pytest.raises(ValueError, match="redis://"):
        RedisStore(url="notaurl")


@pytest.mark.parametrize("model", ["cohere/command-r-plus", "huggingface/bigcode/starcoder"])
def test_a_provider_deja_cannot_call_never_gets_another_providers_key(
    model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # it was sent to OpenAI's endpoint with the model name and the Cohere key
    for base in (None, "https://api.openai.com/v1"):
        if base is None:
            monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
            monkeypatch.delenv("OPENAI_API_BASE", raising=False)
        else:
            monkeypatch.setenv("OPENAI_BASE_URL", base)
        with deja.Client(cache=deja.Cache(), api_key="co-secret", max_retries=0) as client:
            with pytest.raises(deja.InvalidRequestError, match="does not support the provider"):
                client.completion(model=model, messages=MESSAGES)
            with pytest.raises(deja.InvalidRequestError, match="does not support the provider"):
                client.embedding(model=model, input="x")
    # a gateway the environment names (not OpenAI's own endpoint) gets the name as it is
    with FakeOpenAIServer() as gateway:
        monkeypatch.setenv("OPENAI_BASE_URL", gateway.base_url)
        with deja.Client(cache=deja.Cache(), api_key="k", max_retries=0) as client:
            client.completion(model=model, messages=MESSAGES)
        assert gateway.requests[-1].body["model"] == model


def test_ollama_chat_calls_ollama() -> None:
    with FakeOpenAIServer() as server:
        with deja.Client(cache=deja.Cache(), api_base=server.base_url, max_retries=0) as client:
            answer = client.completion(model="ollama_chat/llama3", messages=MESSAGES)
            again = client.completion(model="ollama/llama3", messages=MESSAGES)
        assert server.requests[-1].body["model"] == "llama3"
        assert again.cache.status == "hit" and again.cache.key == answer.cache.key


class _Role(str, enum.Enum):  # noqa: UP042 -- as LlamaIndex's MessageRole
    USER = "user"


class _Text(str):
    pass


def test_str_subclasses_in_messages_are_sent_and_keyed_as_strings() -> None:
    with FakeOpenAIServer() as server:
        with deja.Client(
            cache=deja.Cache(), api_base=server.base_url, api_key="sk", max_retries=0
        ) as client:
            odd = client.completion(
                model="gpt-4o",
                messages=[{"role": _Role.USER, "content": _Text("Capital of Peru?")}],
            )
            plain = client.completion(model="gpt-4o", messages=MESSAGES)
        assert server.requests[-1].body["messages"] == MESSAGES
        assert odd.cache.status == "miss" and plain.cache.status == "hit"
        assert server.count("/v1/chat/completions") == 1


def test_a_provider_prefix_goes_as_it_is_to_an_endpoint_the_caller_names() -> None:
    """NVIDIA NIM's meta/..., OpenRouter's cohere/...: the whole name, to that endpoint."""
    with FakeOpenAIServer() as server:
        with deja.Client(cache=deja.Cache(), api_base=server.base_url, max_retries=0) as client:
            for model in ("meta/llama-3.1-8b-instruct", "cohere/command-r-plus"):
                client.completion(model=model, messages=MESSAGES)
        assert [r.body["model"] for r in server.requests] == [
            "meta/llama-3.1-8b-instruct",
            "cohere/command-r-plus",
        ]


def test_the_clients_key_never_goes_to_another_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "ds-key")
    with FakeOpenAIServer() as deepseek:
        with deja.Client(api_key="sk-openai-key", max_retries=0) as client:
            client.completion(
                model="deepseek/deepseek-chat", messages=MESSAGES, api_base=deepseek.base_url
            )
        assert deepseek.requests[-1].headers["authorization"] == "Bearer ds-key"
    with FakeOpenAIServer() as own:  # the client's own endpoint: its key, whatever the model
        with deja.Client(api_key="sk-own", api_base=own.base_url, max_retries=0) as client:
            client.completion(model="deepseek/deepseek-chat", messages=MESSAGES)
        assert own.requests[-1].headers["authorization"] == "Bearer sk-own"
        with FakeOpenAIServer() as elsewhere:  # a call naming another endpoint: not its key
            with deja.Client(api_key="sk-own", api_base=own.base_url, max_retries=0) as client:
                client.completion(
                    model="deepseek/deepseek-chat", messages=MESSAGES, api_base=elsewhere.base_url
                )
            assert elsewhere.requests[-1].headers["authorization"] == "Bearer ds-key"


def test_litellm_habits_of_the_module_level_api(monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    error = deja.MissingDependencyError("redis", "redis")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)  # a worker's error comes back
    detailed = deja.MissingDependencyError("botocore", "bedrock", detail="model_list[0] signs")
    again = pickle.loads(pickle.dumps(detailed))
    assert str(again) == str(detailed) and again.detail == "model_list[0] signs"
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        deja.set_default_client(deja.Client(max_retries=0))
        with pytest.raises(deja.ControlError):  # checked with or without a cache
            deja.completion(model="gpt-4o", messages=MESSAGES, cache={"no-cach": True})
        cache = deja.enable_cache(ttl=60)  # what litellm.cache is to LiteLLM users
        try:
            first = deja.completion(model="gpt-4o", messages=MESSAGES)
            fresh = deja.completion(model="gpt-4o", messages=MESSAGES, caching=False)
            assert (first.cache.status, fresh.cache.status) == ("miss", "bypass")
            assert "caching" not in server.requests[-1].body  # never sent upstream
            assert cache.delete(cache.key_for(model="gpt-4o", messages=MESSAGES)) is True
        finally:
            deja.disable_cache()
            deja.close()
            deja.set_default_client(deja.Client())  # as a fresh process has it


@pytest.mark.parametrize(
    "arguments",
    [
        {"caching": True},
        {"cache": {"namespace": "faq-v2"}},
        {"extra_body": {"top_k": 5, "cache": {"namespace": "faq-v3"}}},
        {"extra_query": {"tenant_hint": "a"}},
        {"extra_headers": {"x-trace": "1"}, "timeout": 30},
    ],
)
def test_key_for_takes_the_calls_own_arguments(arguments: dict[str, Any]) -> None:
    # the guide's targeted deletion: the key built from the call's exact arguments; these
    # were keyed as request fields, and delete() missed the entry it was meant for
    with FakeOpenAIServer() as server:
        cache = deja.Cache()
        client = deja.Client(cache=cache, api_base=server.base_url, api_key="k")
        stored = client.completion(model="gpt-4o", messages=MESSAGES, **arguments)
        key = cache.key_for(
            model="gpt-4o", messages=MESSAGES, api_base=server.base_url, **arguments
        )
        assert key == stored.cache.key
        assert cache.delete(key) is True
        again = client.completion(model="gpt-4o", messages=MESSAGES, **arguments)
        assert again.cache.status == "miss"


async def test_settings_changed_on_enable_caches_cache_reach_the_async_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the guide's enable_cache(); litellm.cache.ttl = 900: it changed the sync calls only
    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        deja.set_default_client(deja.Client(), async_client=deja.AsyncClient())
        store = MemoryStore()
        cache = deja.enable_cache(store=store)
        try:
            cache.ttl = 900
            cache.key_prefix = "v2:"
            answer = await deja.acompletion(model="gpt-4o", messages=MESSAGES)
            assert answer.cache.key.startswith("v2:")
            assert 899 <= store._expiries[answer.cache.key] - time.time() <= 900
        finally:
            deja.disable_cache()
            deja.close()
            deja.set_default_client(deja.Client(), async_client=deja.AsyncClient())


@pytest.mark.parametrize("name", sorted(deja.api.LITELLM_SETTINGS))
def test_litellm_module_settings_are_refused_with_the_deja_way(name: str) -> None:
    # LiteLLM programs set litellm.api_base, litellm.cache...: on deja such an assignment
    # was stored where nothing reads it (a read of one fails with the way too)
    with pytest.raises(AttributeError, match=f"no module-level {name} .*litellm.{name}"):
        setattr(deja, name, object())
    with pytest.raises(AttributeError, match=f"no module-level {name} "):
        getattr(deja, name)
    assert name not in vars(deja)
    assert not hasattr(deja, name)


def test_the_guides_warming_script_reaches_its_proxy_the_deja_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the guide's warm_cache.py aims the module functions at its proxy with
    # litellm.api_base = ...: deja.api_base = ... changed nothing, and the "warming" calls
    # went to OPENAI_BASE_URL, the provider itself (paid, nothing warmed)
    with FakeOpenAIServer() as provider, FakeOpenAIServer() as proxy:
        monkeypatch.setenv("OPENAI_BASE_URL", provider.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        deja.set_default_client(deja.Client(), async_client=deja.AsyncClient())
        try:
            with pytest.raises(AttributeError, match="set_default_client"):
                deja.api_base = proxy.base_url  # type: ignore[attr-defined]
            deja.set_default_client(
                deja.Client(api_base=proxy.base_url, api_key="any-key"),
                async_client=deja.AsyncClient(api_base=proxy.base_url, api_key="any-key"),
            )
            deja.completion(model="gpt-4o", messages=MESSAGES)
            assert (proxy.count(), provider.count()) == (1, 0)
        finally:
            deja.close()
            deja.set_default_client(deja.Client(), async_client=deja.AsyncClient())


def test_enable_caches_cache_counts_every_hit_from_many_threads() -> None:
    # its first version linked settings by a __setattr__, and the counters' += lost counts
    import sys
    import threading

    request = deja.Request.chat(model="gpt-4o", messages=MESSAGES)
    answer = {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Lima"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    cache = deja.enable_cache()
    interval = sys.getswitchinterval()
    try:
        cache.fetch(request, lambda: answer)
        sys.setswitchinterval(1e-6)  # threads switch often: a lost count shows at once

        def hits() -> None:
            for _ in range(3000):
                cache.fetch(request, lambda: answer)

        threads = [threading.Thread(target=hits) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
        deja.disable_cache()
    assert cache.stats().hits == 12_000 and cache.stats().saved_tokens == 24_000


def test_litellms_caching_switch_in_extra_body_is_a_control_never_sent() -> None:
    # read before extra_body was merged: it went upstream, was keyed, and switched nothing
    import openai

    with FakeOpenAIServer() as server:
        client = deja.Client(cache=deja.Cache(), api_base=server.base_url, api_key="k")
        off = {"extra_body": {"caching": False}}
        statuses = [
            client.completion(model="gpt-4o", messages=MESSAGES, **off).cache.status
            for _ in range(2)
        ]
        assert statuses == ["bypass", "bypass"]
        sdk = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        wrapped = deja.wrap(sdk, cache=deja.Cache())
        for _ in range(2):
            wrapped.chat.completions.create(model="gpt-4o", messages=MESSAGES, **off)
        assert server.count("/v1/chat/completions") == 4
        assert all("caching" not in r.body for r in server.requests)


def test_wrap_leaves_a_pydantic_response_format_to_the_sdk() -> None:
    import openai
    import pydantic

    class Answer(pydantic.BaseModel):
        value: int

    with FakeOpenAIServer() as server:
        sdk = deja.wrap(openai.OpenAI(api_key="sk", base_url=server.base_url))
        with pytest.raises(TypeError, match=r"parse\(\)"):
            sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, response_format=Answer)


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("metrics", "prometheus", "it lacks breaker_state"),
        ("metrics", object(), "it lacks"),
        ("admission", "errors", "AdmissionPolicy, not str"),
        ("semantic", True, "SemanticCache, not bool"),
    ],
)
def test_a_cache_part_that_is_not_one_is_refused_at_construction(
    option: str, value: object, said: str
) -> None:
    """Each was taken, and every fetch then failed with an AttributeError from inside."""
    with pytest.raises(TypeError, match=said):
        deja.Cache(**{option: value})
    with pytest.raises(TypeError, match=said):
        deja.AsyncCache(**{option: value})


def test_litellms_enable_cache_arguments_name_the_store_to_pass() -> None:
    # the seed guide's litellm.enable_cache(type="redis", host=..., port=...): a plain
    # "unexpected keyword argument" told a migrating user nothing of what to do instead
    before = deja.api.DEFAULTS.client.cache
    with pytest.raises(TypeError, match=r"'host', 'port', 'type'.*store=deja\.RedisStore"):
        deja.enable_cache(type="redis", host="localhost", port=6379)
    assert deja.api.DEFAULTS.client.cache is before  # (nothing half set up)
