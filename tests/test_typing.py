"""The README's way of using deja type-checks under mypy --strict (deja ships py.typed)."""

from __future__ import annotations

from pathlib import Path

from mypy import api

USE = """
import deja


def sync_use(client: deja.Client) -> str:
    reply = client.completion(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    text = reply.choices[0].message.content or ""
    for chunk in client.completion(model="gpt-4o", messages=[], stream=True):
        text += chunk.choices[0].delta.content or ""
    info = deja.cache_info(reply)
    return text + (info.status if info is not None else "")


async def async_use(client: deja.AsyncClient) -> str:
    reply = await client.acompletion(model="gpt-4o", messages=[])
    text = reply.choices[0].message.content or ""
    stream = await client.acompletion(model="gpt-4o", messages=[], stream=True)
    async for chunk in stream:
        text += chunk.choices[0].delta.content or ""
    module = deja.completion(model="gpt-4o", messages=[])
    also = await deja.acompletion(model="gpt-4o", messages=[], stream=False)
    return text + (module.choices[0].message.content or "") + str(also.cache.status)
"""


def test_the_documented_calls_type_check(tmp_path: Path) -> None:
    program = tmp_path / "use.py"
    program.write_text(USE)
    out, err, status = api.run(["--strict", str(program)])
    assert status == 0, out + err
