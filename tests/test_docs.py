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

import deja
import deja.api
from deja.providers.bedrock import AwsCredentials
from deja.testing import FakeAnthropicServer, FakeBedrockServer, FakeGeminiServer, FakeOpenAIServer

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def examples(page: Path) -> list[str]:
    return _BLOCK.findall(page.read_text(encoding="utf-8"))


@pytest.fixture
def providers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    aws = AwsCredentials("AKIDDOCS", "docs-secret")
    with (
        FakeOpenAIServer(api_key="sk-openai-docs") as openai,
        FakeOpenAIServer(prompt_cache="deepseek", api_key="sk-deepseek-test") as deepseek,
        FakeAnthropicServer(api_key="sk-ant-test") as anthropic,
        FakeBedrockServer(credentials=aws, region="eu-central-1") as bedrock,
        FakeGeminiServer(api_key="AIza-docs") as gemini,
    ):
        monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-docs")
        monkeypatch.setenv("OPENAI_BASE_URL", openai.base_url)
        monkeypatch.delenv("OPENAI_API_BASE", raising=False)
        monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-deepseek-test")
        monkeypatch.setenv("DEEPSEEK_API_BASE", deepseek.base_url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
        monkeypatch.setenv("ANTHROPIC_API_BASE", anthropic.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", aws.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws.secret_key)
        monkeypatch.setenv("AWS_REGION", "eu-central-1")
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url)
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        monkeypatch.setenv("GEMINI_API_KEY", "AIza-docs")
        monkeypatch.setenv("GEMINI_API_BASE", gemini.url)
        # the module functions' default clients read the environment at their first call
        monkeypatch.setattr(deja.api, "DEFAULTS", deja.api.Defaults())
        yield


README = DOCS.parent / "README.md"


def quick_start_config(readme: str) -> str:
    """The config.yaml README's proxy quick start writes."""
    written = re.search(r"cat > config\.yaml <<'EOF'\n(.*?)^EOF$", readme, re.DOTALL | re.M)
    assert written is not None, "README's quick start writes no config.yaml"
    return written.group(1)


def test_the_readme_examples_run(
    providers: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As pasted, in order, where the proxy quick start wrote its config.yaml: a block
    whose call_the_llm was `...`, or whose messages were `[...]`, failed as pasted."""
    readme = README.read_text(encoding="utf-8")
    (tmp_path / "config.yaml").write_text(quick_start_config(readme))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs.readme"}
    for number, code in enumerate(examples(README), start=1):
        exec(compile(code, f"README.md[example {number}]", "exec"), namespace)
    assert len(examples(README)) >= 5


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


def test_the_readme_names_every_metric() -> None:
    """Its table is the operator's reference: a metric added to the code is added there."""
    readme = README.read_text(encoding="utf-8")
    metrics = deja.PrometheusMetrics()
    names = {
        f"{m._name}_total" if m._type == "counter" else m._name
        for m in vars(metrics).values()
        if hasattr(m, "_labelnames") and hasattr(m, "_name")
    }
    assert len(names) > 20
    for name in sorted(names | {"deja_cache_entries", "deja_cache_evictions_total"}):
        assert f"| `{name}` |" in readme, name


def test_the_newest_upgrade_notes_are_this_versions() -> None:
    """A version bump comes with its notes, and notes with their version."""
    upgrading = (DOCS.parent / "UPGRADING.md").read_text(encoding="utf-8")
    newest = upgrading.split("\n## ")[1]
    assert f"This build is version {deja.__version__}." in newest
