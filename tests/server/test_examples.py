"""Every example config starts and serves one hit through the proxy."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from deja.config import load_config
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer
from tests.test_docs import README, quick_start_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KEYS = {
    "DEJA_MASTER_KEY": "sk-master",
    "TEAM_A_KEY": "sk-a",
    "TEAM_B_KEY": "sk-b",
    "OPENAI_API_KEY": "sk-up",
}


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from tests.stores.redis_servers import start_standalone

    server = start_standalone(tmp_path_factory.mktemp("examples-redis"))
    yield server.url
    server.kill()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
async def test_example_serves_a_hit(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str
) -> None:
    for file in EXAMPLES.iterdir():  # a copy, so the disk example's cache lands in tmp_path
        shutil.copy(file, tmp_path / file.name)
    with FakeOpenAIServer() as upstream:
        monkeypatch.setenv("UPSTREAM_BASE", upstream.base_url)
        for variable, value in KEYS.items():
            monkeypatch.setenv(variable, value)
        monkeypatch.setenv("REDIS_URL", redis_url)
        app = ProxyApp(load_config(tmp_path / name))
        headers = (
            {"authorization": "Bearer sk-a"}
            if "virtual_keys" in (tmp_path / name).read_text()
            else {"authorization": "Bearer sk-master"}
        )
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://proxy"
        ) as proxy:
            first = await proxy.post("/v1/chat/completions", json=body, headers=headers)
            second = await proxy.post("/v1/chat/completions", json=body, headers=headers)
            # the other routes pass every example's hooks too
            legacy = {"model": "gpt-4o", "prompt": "hello"}
            completion = await proxy.post("/v1/completions", json=legacy, headers=headers)
            assert completion.status_code == 200, completion.text
        await app.aclose()
        assert first.status_code == 200, first.text
        assert second.headers["x-deja-cache"] == "hit"
        assert upstream.count("/v1/chat/completions") == 1


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_names_the_variables_it_reads_in_its_first_lines(name: str) -> None:
    """A user who runs it as its comment says gets no 'environment variable X is not set'."""
    text = (EXAMPLES / name).read_text()
    head = "\n".join(line for line in text.splitlines()[:4] if line.startswith("#"))
    assert f"--config examples/{name}" in head
    for variable in set(re.findall(r"os\.environ/([A-Z_]+)", text)):
        assert f"{variable}=" in head, variable


async def test_the_readme_quick_start_config_serves_a_hit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "config.yaml").write_text(quick_start_config(README.read_text()))
    with FakeOpenAIServer(api_key="sk-up") as upstream:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-up")
        monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)  # (where api.openai.com was)
        app = ProxyApp(load_config(tmp_path / "config.yaml"))
        body = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]}
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://proxy"
        ) as proxy:
            first = await proxy.post("/v1/chat/completions", json=body)
            second = await proxy.post("/v1/chat/completions", json=body)
        await app.aclose()
    assert first.status_code == 200, first.text
    assert second.headers["x-deja-cache"] == "hit"
