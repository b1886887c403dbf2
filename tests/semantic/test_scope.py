"""The semantic scope: only the final user text is compared by meaning."""

from __future__ import annotations

from typing import Any

from deja.request import Request
from deja.semantic.scope import final_user_text, semantic_query, tenant_scope


def chat(last: Any = "What is the capital of France?", **kw: Any) -> Request:
    messages = kw.pop("messages", [{"role": "system", "content": "Be brief."}])
    return Request.chat(
        model=kw.pop("model", "gpt-4o"),
        messages=[*messages, {"role": "user", "content": last}],
        **kw,
    )


def scope(request: Request, **kw: Any) -> str:
    q = semantic_query(request, embedder_id=kw.pop("embedder_id", "e:384"), **kw)
    assert q is not None
    return q.scope


def test_the_final_user_text_is_not_in_the_scope() -> None:
    a = semantic_query(chat("What is the capital of France?"), embedder_id="e:384")
    b = semantic_query(chat("Which city is France's capital?"), embedder_id="e:384")
    assert a is not None and b is not None
    assert a.scope == b.scope
    assert a.text == "What is the capital of France?"


def test_everything_else_is_in_the_scope() -> None:
    base = scope(chat())
    assert scope(chat(model="gpt-4o-mini")) != base
    assert scope(chat(messages=[{"role": "system", "content": "Be long."}])) != base
    assert scope(chat(temperature=0.2)) != base
    assert scope(chat(tools=[{"type": "function", "function": {"name": "f"}}])) != base
    assert scope(chat(), embedder_id="other:384") != base
    assert scope(chat(), namespace="ns") != base
    assert scope(chat(tenant="team-a")) != base
    earlier = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]
    assert scope(chat(messages=earlier)) != base
    # volatile parameters stay out, as in the exact key
    assert scope(chat(user="someone", stream=True)) == base


def test_list_content_text_parts_are_joined_and_other_parts_scoped() -> None:
    parts = [
        {"type": "text", "text": "Describe"},
        {"type": "image_url", "image_url": {"url": "https://x/cat.png"}},
        {"type": "text", "text": "this picture"},
    ]
    q = semantic_query(chat(parts), embedder_id="e:384")
    assert q is not None and q.text == "Describe\nthis picture"
    other_image = [dict(p) for p in parts]
    other_image[1] = {"type": "image_url", "image_url": {"url": "https://x/dog.png"}}
    assert scope(chat(other_image)) != q.scope
    # one text part is the same request as a plain string
    assert scope(chat([{"type": "text", "text": "hello"}])) == scope(chat("hello"))


def test_not_applicable_without_a_final_user_text() -> None:
    assistant_last = Request.chat(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
    )
    assert final_user_text(assistant_last) is None
    assert semantic_query(chat("   "), embedder_id="e") is None
    image_only = [{"type": "image_url", "image_url": {"url": "https://x/cat.png"}}]
    assert semantic_query(chat(image_only), embedder_id="e") is None


def test_scope_starts_with_the_tenant_namespace_hash() -> None:
    s = scope(chat(tenant="t1"), namespace="n1")
    assert s.startswith(tenant_scope("t1", "n1") + "/")


def test_the_request_is_not_modified() -> None:
    request = chat()
    before = [dict(m) for m in request.messages]
    scope(request)
    assert [dict(m) for m in request.messages] == before
