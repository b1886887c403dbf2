"""Every example config starts and serves one hit through the proxy."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from deja.config import load_config
from deja.server.app import ProxyApp
from deja.testing import FakeOpenAIServer

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
