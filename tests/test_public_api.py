"""The public API is small, explicit and sorted; `import deja` needs no extras."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types

import deja


def test_all_is_sorted_and_complete() -> None:
    assert deja.__all__ == sorted(deja.__all__)
    public = {name for name in dir(deja) if not name.startswith("_")}
    # submodules show up as attributes once imported; they are not part of __all__
    modules = {name for name in public if isinstance(getattr(deja, name), types.ModuleType)}
    assert public - modules == set(deja.__all__) - {"__version__"}


def test_every_public_name_has_a_docstring() -> None:
    for name in deja.__all__:
        obj = getattr(deja, name)
        if isinstance(obj, type) or callable(obj):
            assert obj.__doc__, name


def test_import_works_with_no_extras_installed() -> None:
    # Block every optional dependency, as on a machine with `pip install deja-llm` only.
    code = textwrap.dedent(
        """
        import sys
        BLOCKED = {"redis", "boto3", "botocore", "aiobotocore", "numpy", "onnxruntime",
                   "tokenizers", "uvicorn", "qdrant_client", "usearch", "openai", "aiohttp"}

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r} (blocked)")
                return None

        sys.meta_path.insert(0, Block())
        import deja
        cache = deja.Cache()
        request = deja.Request.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "yo"},
                     "finish_reason": "stop"}]}
        assert cache.fetch(request, lambda: response).info.status == "miss"
        assert cache.fetch(request, lambda: response).info.status == "hit"
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        assert not loaded, loaded
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_generated_sync_twins_are_current() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, str(root / "scripts" / "unasync.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_module_functions_show_their_client_methods_signatures() -> None:
    import inspect

    for function, method in (
        (deja.completion, deja.Client.completion),
        (deja.acompletion, deja.AsyncClient.acompletion),
        (deja.embedding, deja.Client.embedding),
    ):
        shown = list(inspect.signature(function).parameters)
        assert shown == list(inspect.signature(method).parameters)[1:]
        assert shown[:2] in (["model", "messages"], ["model", "input"])
    assert inspect.iscoroutinefunction(deja.acompletion)
