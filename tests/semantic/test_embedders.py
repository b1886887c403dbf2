"""Embedders: the embedded model (offline, verified) and any OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import hashlib
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import deja
from deja.errors import ConfigError
from deja.semantic.embedders import (
    MINILM_TOKENIZER_SHA256,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    _model_package_dir,
)
from deja.testing import FakeOpenAIServer

TOKENIZER = Path(__file__).resolve().parents[2] / "src/deja/semantic/data/minilm-tokenizer.json"


def test_local_embedder_vectors(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.id == "local:all-MiniLM-L6-v2-int8:384"
    v = embedder.embed(["convert 5 km to miles", "convert 8 km to miles", "bake a cake"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]
    # batch-independent: a text has the same vector alone or in a batch
    assert np.allclose(embedder.embed(["bake a cake"])[0], v[2], atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed("one string")  # type: ignore[arg-type]


async def test_local_aembed_runs_off_the_loop(embedder: LocalEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(5):
            ticks += 1
            await asyncio.sleep(0)

    vectors, _ = await asyncio.gather(embedder.aembed(["hello"] * 8), ticker())
    assert vectors.shape == (8, 384) and ticks == 5


def test_the_constructor_does_no_io() -> None:
    LocalEmbedder(model_path="/nonexistent/model.onnx")  # nothing read yet


def test_hash_mismatch_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_bytes(TOKENIZER.read_bytes() + b" ")
    with pytest.raises(ConfigError, match="tokenizer"):
        LocalEmbedder(tokenizer_path=bad).embed(["x"])
    with pytest.raises(ConfigError, match="model"):
        LocalEmbedder(model_sha256="0" * 64).embed(["x"])
    assert hashlib.sha256(TOKENIZER.read_bytes()).hexdigest() == MINILM_TOKENIZER_SHA256


def test_a_copy_with_the_right_hashes_loads(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    shutil.copy(_model_package_dir() / "model.onnx", model)
    e = LocalEmbedder(model_path=model, tokenizer_path=TOKENIZER, threads=1)
    assert e.embed(["hi"]).shape == (1, 384)


def test_openai_embedder_batches_and_caches(tmp_path: Path) -> None:
    with FakeOpenAIServer() as server:
        client = deja.Client(api_base=server.base_url, api_key="sk-test", cache=deja.Cache())
        e = OpenAIEmbedder(dimensions=16, client=client, batch_size=2)
        assert e.id == "openai:text-embedding-3-small:16" and e.dim == 16
        v = e.embed(["a", "b", "c"])
        assert v.shape == (3, 16)
        assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
        assert server.count("/v1/embeddings") == 2  # batches of 2
        again = e.embed(["c", "a"])
        assert server.count("/v1/embeddings") == 2  # every item cached
        assert np.allclose(again, v[[2, 0]])


async def test_openai_embedder_async() -> None:
    with FakeOpenAIServer() as server:
        client = deja.AsyncClient(
            api_base=server.base_url, api_key="sk-test", cache=deja.AsyncCache()
        )
        e = OpenAIEmbedder(dimensions=16, aclient=client)
        v = await e.aembed(["a", "b"])
        assert v.shape == (2, 16)
        await client.aclose()


def test_openai_embedder_checks_sizes() -> None:
    with pytest.raises(ConfigError):
        OpenAIEmbedder(model="my-own-model")
    assert OpenAIEmbedder().dim == 1536
    with FakeOpenAIServer() as server:
        client = deja.Client(api_base=server.base_url, api_key="sk-test")
        e: Any = OpenAIEmbedder(client=client)  # the fake answers 16-d, not 1536-d
        with pytest.raises(ConfigError, match="shape"):
            e.embed(["a"])
