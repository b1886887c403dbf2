"""`deja calibrate --config FILE` scores with the semantic tier a configuration builds (a
remote model's similarities are on its own scale), and says which embedder it scored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deja.cli import main
from deja.testing import FakeOpenAIServer

_PAIRS = [
    {"a": "How can I track my card?", "b": "where is my card now", "same": True},
    {"a": "How do I reset my PIN?", "b": "What is the capital of Peru?", "same": False},
    {"a": "Is there a fee for top ups?", "b": "do top ups cost anything", "same": True},
]


def _files(tmp_path: Path, api_base: str) -> tuple[Path, Path]:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(p) + "\n" for p in _PAIRS), encoding="utf-8")
    config = tmp_path / "deja.yaml"
    config.write_text(
        "caching:\n"
        "  type: redis_semantic\n"  # (its index is not needed: pairs are scored in process)
        "  url: redis://127.0.0.1:1/0\n"
        "  params:\n"
        "    embedding_model: text-embedding-3-small\n"
        "    dimensions: 16\n"
        f"    api_base: {api_base}\n"
        "    api_key: sk-test\n",
        encoding="utf-8",
    )
    return pairs, config


def test_calibrate_scores_the_configured_embedder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAIServer(embedding_dim=16) as emb:
        pairs, config = _files(tmp_path, emb.base_url)
        assert main(["calibrate", str(pairs), "--config", str(config), "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["embedder"] == f"openai:text-embedding-3-small:16@{emb.base_url}"
        assert report["verifier"] == "text"  # a remote model gets the text-only verifier
        assert emb.count("/v1/embeddings") >= 1  # its vectors, not the embedded model's
        assert main(["calibrate", str(pairs), "--config", str(config)]) == 0
        first = capsys.readouterr().out.splitlines()[0]
        assert first == (
            f"scored with embedder openai:text-embedding-3-small:16@{emb.base_url}, verifier: text"
        )


def test_calibrate_refuses_a_config_without_a_semantic_tier(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs, _ = _files(tmp_path, "http://127.0.0.1:1/v1")
    config = tmp_path / "exact.yaml"
    config.write_text("caching:\n  type: memory\n", encoding="utf-8")
    assert main(["calibrate", str(pairs), "--config", str(config)]) == 2
    assert "configures no semantic tier" in capsys.readouterr().err
