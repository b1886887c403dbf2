"""Every Python example in docs/*.md runs, against deja's local fake providers.

The examples read their endpoints and keys from the environment, as a user's code would;
here the environment points at the fake servers. The blocks of one page run in order in
one namespace, so a later block may use what an earlier one made.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from deja.testing import FakeAnthropicServer, FakeOpenAIServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def examples(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with (
        FakeOpenAIServer(prompt_cache="deepseek", api_key="sk-deepseek-test") as deepseek,
        FakeAnthropicServer(api_key="sk-ant-test") as anthropic,
    ):
        monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-test")
        monkeypatch.setenv("DEEPSEEK_API_BASE", deepseek.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_API_BASE", anthropic.url)
        yield


def test_every_page_has_examples() -> None:
    pages = sorted(DOCS.glob("*.md"))
    assert pages, "docs/ has no pages"
    for page in pages:
        assert examples(page), f"{page.name} has no python example"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_examples_run(page: Path, providers: None) -> None:
    namespace: dict[str, object] = {"__name__": f"docs.{page.stem}"}
    for number, code in enumerate(examples(page), start=1):
        compiled = compile(code, f"{page.name}[example {number}]", "exec")
        exec(compiled, namespace)
