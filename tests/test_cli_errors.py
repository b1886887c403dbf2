"""`deja` command errors: one clear line on stderr, no traceback, a non-zero exit."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deja.cli import LOG_LEVELS, main


def _fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run ``deja argv``, expect a non-zero exit (returned or argparse's), return stderr."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    return err


def _error_line(err: str) -> str:
    """The one error line (argparse prints its usage above it)."""
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    return lines[0]


def _write_pairs(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


# -- calibrate: the pairs file ---------------------------------------------------------------


def test_calibrate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    line = _error_line(_fails(["calibrate", str(missing)], capsys))
    assert str(missing) in line and "No such file" in line


def test_calibrate_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _error_line(_fails(["calibrate", str(tmp_path)], capsys))
    assert str(tmp_path) in line and "directory" in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not json\n", "not valid JSON"),
        (b'{"a": "x", "b": "y"}\n', 'missing "same"'),
        (b'{"b": "y", "same": true}\n', 'missing "a"'),
        (b"[1, 2]\n", "got a JSON list"),
        (b'{"a": "x", "b": "y", "same": "yes"}\n', "same a boolean"),
        (b"\xff\xfe\n", "not UTF-8"),
        # a lone surrogate reached the embedder: TypeError, TextInputSequence must be str
        (b'{"a": "\\ud800", "b": "x", "same": true}\n', '"a" cannot be encoded as UTF-8'),
        (b'{"a": "x", "b": "y\\udfff", "same": true}\n', '"b" cannot be encoded as UTF-8'),
        # json.loads recurses per level: a RecursionError traceback
        (b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b', "b": "x", "same": true}\n', "too deeply"),
    ],
)
def test_calibrate_bad_line_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, says: str
) -> None:
    path = tmp_path / "pairs.jsonl"
    good = b'{"a": "hello there", "b": "hi there", "same": true}\n'
    path.write_bytes(good + b"\n" + content)  # the bad line is line 3
    line = _error_line(_fails(["calibrate", str(path)], capsys))
    assert f"{path}:3:" in line and says in line


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_calibrate_empty_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_text(content)
    line = _error_line(_fails(["calibrate", str(path)], capsys))
    assert str(path) in line and "no labelled pairs" in line


@pytest.mark.parametrize("rate", ["2", "1", "-0.1", "nan", "inf", "abc"])
def test_calibrate_rejects_a_rate_outside_0_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rate: str
) -> None:
    path = tmp_path / "never-read.jsonl"
    line = _error_line(_fails(["calibrate", str(path), "--max-false-hit-rate", rate], capsys))
    assert "--max-false-hit-rate" in line and "0 <= rate < 1" in line


def test_calibrate_without_negatives_says_the_false_hit_rate_is_unmeasurable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_pairs(
        tmp_path / "positives.jsonl",
        [
            {"a": "what is the capital of France?", "b": "which city is it?", "same": True},
            {"a": "how do I reset my password?", "b": "reset a password", "same": True},
        ],
    )
    assert main(["calibrate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "cannot be measured without negative pairs" in out
    assert "no threshold keeps" not in out and "recall cannot" not in out


def test_calibrate_without_positives_says_recall_is_unmeasurable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_pairs(
        tmp_path / "negatives.jsonl",
        [{"a": "convert 5 km to miles", "b": "convert 8 km to miles", "same": False}],
    )
    assert main(["calibrate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "recall cannot be measured without positive pairs" in out
    assert "false-hit rate cannot" not in out


# -- python -m deja.bench.semantic: the same files, the same errors --------------------------


def _bench_fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the bench entry point, expect exit status 2 and one error line; return it."""
    from deja.bench.semantic import main as bench

    try:
        code = bench(argv)
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert "Traceback" not in captured.err and not captured.out
    return _error_line(captured.err)


BENCH = "python -m deja.bench.semantic: error: "


@pytest.mark.parametrize(
    "content",
    [
        None,  # missing
        b"",
        b"\n  \n",
        b'{"a": "hello there", "b": "hi there", "same": true}\nnot json\n',
        b'{"a": "x", "b": "y"}\n',
        b"[1, 2]\n",
        b'{"a": 1, "b": "y", "same": true}\n',
        b"\xff\xfe\n",
        b'{"a": "x", "b": "\\ud800", "same": true}\n',
        b"[" * 10_000 + b"]" * 10_000 + b"\n",
    ],
)
def test_bench_pairs_errors_are_those_of_calibrate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None
) -> None:
    path = tmp_path / "pairs.jsonl"
    if content is not None:
        path.write_bytes(content)
    expected = _error_line(_fails(["calibrate", str(path)], capsys))
    assert expected.startswith("deja: error: ")
    for argv in (["--pairs", str(path)], ["--pairs", str(path), "--json"]):
        line = _bench_fails(argv, capsys)
        assert line == BENCH + expected.removeprefix("deja: error: ")


def test_bench_pairs_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _bench_fails(["--pairs", str(tmp_path)], capsys)
    assert line.startswith(BENCH) and str(tmp_path) in line and "directory" in line


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "No such file"),
        (b"", "expected CSV columns"),
        (b"question,label\nx,y\n", "expected CSV columns"),
        (b"text,category\n", "no labelled queries"),
        (b"text,category\n\xff\xfe,x\n", "not UTF-8"),
    ],
)
def test_bench_stream_file_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, says: str
) -> None:
    path = tmp_path / "queries.csv"
    if content is not None:
        path.write_bytes(content)
    line = _bench_fails(["--stream", str(path)], capsys)
    assert line.startswith(BENCH) and str(path) in line and says in line


def test_bench_stream_reads_its_band_and_exclude_files_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    queries = tmp_path / "queries.csv"
    queries.write_text("text,category\nhello,a\nhi,a\n")
    band = tmp_path / "band.jsonl"
    band.write_text("")
    line = _bench_fails(["--stream", str(queries), "--band", str(band)], capsys)
    assert line == f"{BENCH}{band}: no labelled pairs in the file"
    band.write_text("oops\n")
    line = _bench_fails(["--stream", str(queries), "--band", str(band)], capsys)
    assert f"{band}:1: not valid JSON" in line
    line = _bench_fails(["--stream", str(queries), "--exclude", str(tmp_path / "no")], capsys)
    assert "cannot read pairs file" in line
    exclude = tmp_path / "exclude.jsonl"
    exclude.write_text(json.dumps({"a": "hello", "b": "hi", "same": True}) + "\n")
    line = _bench_fails(["--stream", str(queries), "--exclude", str(exclude)], capsys)
    assert "every query is in" in line


def test_bench_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = _write_pairs(tmp_path / "p.jsonl", [{"a": "x", "b": "y", "same": True}])
    line = _bench_fails(["--pairs", str(pairs), "--write-verifiers", str(tmp_path / "no")], capsys)
    assert "--write-verifiers" in line and "not a directory" in line
    line = _bench_fails(["--pairs", str(pairs), "--index", "redis"], capsys)
    assert line == BENCH + "--index redis needs --redis-url (a Redis with the RediSearch module)"
    assert "--queries" in _bench_fails(["--stream", "q.csv", "--queries", "0"], capsys)
    assert "--feedback" in _bench_fails(["--stream", "q.csv", "--feedback", "2"], capsys)


# -- serve ----------------------------------------------------------------------------------


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Calls of ``deja.server.run.serve`` (replaced: nothing starts)."""
    calls: list[dict[str, Any]] = []

    def fake_serve(config: str, **options: Any) -> None:
        calls.append({"config": config, **options})

    monkeypatch.setattr("deja.server.run.serve", fake_serve)
    return calls


@pytest.fixture
def served_unchecked(
    served: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> list[dict[str, Any]]:
    """As ``served``, and the check that the address can be bound skipped: those tests are
    about the options' values, not about which ports of this machine are free."""
    monkeypatch.setattr("deja.cli._cannot_listen", lambda host, port: None)
    return served


def test_serve_rejects_an_unknown_log_level(capsys: pytest.CaptureFixture[str]) -> None:
    line = _error_line(_fails(["serve", "--config", "c.yaml", "--log-level", "loud"], capsys))
    assert "--log-level" in line and "invalid choice: 'loud'" in line


def test_serve_takes_uvicorn_log_levels_in_any_case(served: list[dict[str, Any]]) -> None:
    for level in LOG_LEVELS:
        assert main(["serve", "--config", "c.yaml", "--log-level", level.upper()]) == 0
    assert [call["log_level"] for call in served] == list(LOG_LEVELS)


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--port", "99999", "a port number 1-65535"),
        ("--port", "65536", "a port number 1-65535"),
        ("--port", "0", "a port number 1-65535"),
        ("--port", "http", "a port number 1-65535"),
        ("--workers", "0", "a number of workers >= 1"),
        ("--workers", "-2", "a number of workers >= 1"),
        ("--num_workers", "0", "a number of workers >= 1"),
    ],
)
@pytest.mark.parametrize("form", [["serve", "--config", "c.yaml"], ["--config", "c.yaml"]])
def test_serve_rejects_a_port_or_workers_the_config_would(
    capsys: pytest.CaptureFixture[str], form: list[str], option: str, value: str, says: str
) -> None:
    line = _error_line(_fails([*form, option, value], capsys))
    assert option.removeprefix("--num_").removeprefix("--") in line and says in line


def test_serve_accepts_the_bounds(served_unchecked: list[dict[str, Any]]) -> None:
    assert main(["serve", "--config", "c.yaml", "--port", "65535", "--workers", "1"]) == 0
    assert main(["serve", "--config", "c.yaml", "--port", "1", "--num_workers", "3"]) == 0
    assert [(c["port"], c["workers"]) for c in served_unchecked] == [(65535, 1), (1, 3)]


@pytest.fixture
def listener() -> Iterator[int]:
    """A port of 127.0.0.1 that a socket listens on (in use, as another server's would be)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.mark.parametrize("form", [["serve", "--config", "c.yaml"], ["--config", "c.yaml"]])
def test_serve_refuses_a_port_in_use(
    served: list[dict[str, Any]],
    listener: int,
    capsys: pytest.CaptureFixture[str],
    form: list[str],
) -> None:
    """uvicorn's `ERROR: [Errno 98] Address already in use`, exit 3, after the configuration
    and the app were built, named neither the port nor the option."""
    port = str(listener)
    line = _error_line(_fails([*form, "--host", "127.0.0.1", "--port", port], capsys))
    assert line == (
        f"deja: error: cannot listen on 127.0.0.1:{port}: Address already in use (--host/--port)"
    )
    # without --host: the configuration's, any address (0.0.0.0 by default)
    line = _error_line(_fails([*form, "--port", port], capsys))
    assert line == f"deja: error: cannot listen on port {port}: Address already in use (--port)"
    assert served == []


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("999.1.1.1", "cannot listen on 999.1.1.1:"),  # does not resolve
        ("192.0.2.1", "cannot listen on 192.0.2.1:"),  # TEST-NET-1: not of this machine
        ("a\0b", "cannot listen on a\0b:"),
        ("\udcff", r"cannot listen on \udcff:"),  # (argv bytes that are not UTF-8)
        ("é" * 64 + ".example", f"cannot listen on {'é' * 64}.example:"),  # IDNA: > 63
    ],
    ids=["unresolvable", "not-local", "nul", "surrogate", "idna-label-too-long"],
)
def test_serve_refuses_a_host_it_cannot_listen_on(
    served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], host: str, says: str
) -> None:
    """uvicorn failed as for a port in use ("Name or service not known"), exit 3."""
    line = _error_line(
        _fails(["serve", "--config", "c.yaml", "--host", host, "--port", "18904"], capsys)
    )
    assert line.startswith(f"deja: error: {says}18904: ") and line.endswith(" (--host/--port)")
    line = _error_line(_fails(["--config", "c.yaml", "--host", host], capsys))
    assert line.startswith(f"deja: error: {says} ") and line.endswith(" (--host)")
    assert served == []


@pytest.mark.parametrize("host", ["", "  "])
@pytest.mark.parametrize("form", [["serve", "--config", "c.yaml"], ["--config", "c.yaml"]])
def test_serve_refuses_an_empty_host(
    served: list[dict[str, Any]], capsys: pytest.CaptureFixture[str], form: list[str], host: str
) -> None:
    """`--host ""` listened on proxy.host (0.0.0.0 by default): every interface, unasked."""
    line = _error_line(_fails([*form, "--host", host], capsys))
    assert "--host" in line and f"expected a host name or address, got {host!r}" in line
    assert served == []


def test_serve_check_leaves_the_address_free(served: list[dict[str, Any]]) -> None:
    """The check leaves nothing bound: a free port passes it, and is free after it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    assert main(["serve", "--config", "c.yaml", "--host", "127.0.0.1", "--port", str(free)]) == 0
    assert main(["--config", "c.yaml", "--host", "localhost"]) == 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", free))
    assert [(c["host"], c["port"]) for c in served] == [("127.0.0.1", free), ("localhost", None)]


# -- deja --config FILE [serve options] (LiteLLM's form) -------------------------------------


def test_top_level_config_takes_the_serve_options(served_unchecked: list[dict[str, Any]]) -> None:
    options = ["--port", "18903", "--host", "127.0.0.1", "--log-level", "debug"]
    assert main(["--config", "lite.yaml", *options, "--num_workers", "2"]) == 0
    assert main(["serve", "--config", "lite.yaml", *options, "--workers", "2"]) == 0
    assert served_unchecked[0] == served_unchecked[1]
    assert served_unchecked[0] == {
        "config": "lite.yaml",
        "host": "127.0.0.1",
        "port": 18903,
        "workers": 2,
        "log_level": "debug",
    }


def test_top_level_config_alone_serves_with_the_defaults(served: list[dict[str, Any]]) -> None:
    assert main(["--config", "lite.yaml"]) == 0
    assert main(["serve", "--config", "lite.yaml"]) == 0
    assert served[0] == served[1]
    assert served[0]["port"] is None and served[0]["log_level"] == "info"


def test_top_level_serve_options_need_config(capsys: pytest.CaptureFixture[str]) -> None:
    line = _error_line(_fails(["--port", "18903"], capsys))
    assert "--port needs --config" in line


def test_top_level_serve_options_before_a_command_are_rejected(
    capsys: pytest.CaptureFixture[str],
) -> None:
    line = _error_line(_fails(["--port", "18903", "demo"], capsys))
    assert "--port before a command" in line
    line = _error_line(_fails(["--config", "c.yaml", "serve", "--config", "c.yaml"], capsys))
    assert "--config before a command" in line


# -- demo ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--concurrency", "0", "a number of users >= 1"),
        ("--concurrency", "-3", "a number of users >= 1"),
        ("--concurrency", "many", "a number of users >= 1"),
        ("--latency", "-0.5", "a latency in seconds >= 0"),
        ("--latency", "nan", "a latency in seconds >= 0"),
        ("--latency", "inf", "a latency in seconds >= 0"),
    ],
)
def test_demo_rejects_bad_numbers(
    capsys: pytest.CaptureFixture[str], option: str, value: str, says: str
) -> None:
    line = _error_line(_fails(["demo", option, value], capsys))
    assert option in line and says in line


def test_a_metrics_directory_that_cannot_be_made_is_a_config_error(tmp_path: Path) -> None:
    """A PROMETHEUS_MULTIPROC_DIR naming a file stopped the start with a traceback, exit 1
    (a ConfigError is the one `deja: error:` line and exit 2)."""
    from deja.errors import ConfigError
    from deja.server.workers import clear_directory

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match=r"PROMETHEUS_MULTIPROC_DIR=.*cannot hold"):
        clear_directory(str(blocker))


def test_ctrl_c_is_one_line_and_exit_130(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ctrl+C during calibrate or demo printed a KeyboardInterrupt traceback."""
    import deja.semantic.calibrate

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(deja.semantic.calibrate, "calibrate", interrupted)
    pairs = _write_pairs(tmp_path / "p.jsonl", [{"a": "x", "b": "y", "same": True}])
    assert main(["calibrate", str(pairs)]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "deja: interrupted"


def test_a_start_that_fails_leaves_no_copy_of_the_configuration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers' private copy of the configuration (keys included) was written before a
    check that could still fail, and stayed in TMPDIR."""
    import tempfile

    from deja.errors import ConfigError
    from deja.server import run

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(blocker))
    config = tmp_path / "config.yaml"
    config.write_text("caching: {type: memory}\nmodel_list: []\n")
    with pytest.raises(ConfigError, match="PROMETHEUS_MULTIPROC_DIR"):
        run.serve(config, port=4999)
    assert list(temporary.iterdir()) == []


def test_a_shared_metrics_directory_keeps_a_running_proxys_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Starting a second proxy on the same PROMETHEUS_MULTIPROC_DIR deleted the running
    one's files: its workers counted on into deleted files, its /metrics fell to nothing.
    Nor are the files of its dead workers deleted, or the archive they were folded into:
    they are part of its sums, which went down."""
    import os
    import subprocess
    import sys

    from deja.server.workers import clear_directory

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    names = [
        f"counter_{os.getpid()}.db",
        f"histogram_{os.getpid()}.db",
        f"counter_{dead_pid}.db",
        "counter_dead-workers.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("the operator's")
    with caplog.at_level("WARNING", logger="deja.server"):
        clear_directory(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*names, "notes.txt"])
    assert f"pids {os.getpid()}" in caplog.text
    (tmp_path / names[0]).unlink()  # that process has stopped: all its files are old now
    (tmp_path / names[1]).unlink()
    (tmp_path / "counter_1.db-folding").write_bytes(b"x")  # (a fold killed midway)
    (tmp_path / "deja-fold.journal").write_bytes(b"{}")
    clear_directory(str(tmp_path))
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_serve_refuses_a_configured_address_it_cannot_listen_on(
    listener: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command line's --host/--port were checked, not the configuration's proxy.host /
    proxy.port: uvicorn's exit 3 after the app was built."""
    config = tmp_path / "busy.yaml"
    config.write_text(f"proxy: {{host: 127.0.0.1, port: {listener}}}\n")
    assert main(["serve", "--config", str(config)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert line.startswith(f"deja: error: cannot listen on 127.0.0.1:{listener}: ")
    assert "proxy.host / proxy.port of busy.yaml" in line


# -- the command line itself: argparse's conventions -------------------------------------


def test_no_command_is_a_usage_error_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    """Plain `deja` printed the whole help to stdout, and exited 2 as for an error."""
    err = _fails([], capsys)
    assert capsys.readouterr().out == ""
    assert err.startswith("usage: deja ")
    line = _error_line(err)
    assert line.startswith("deja: error: a command is required")
    for command in ("demo", "calibrate", "serve", "--config FILE"):
        assert command in line


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["serve", "--config", "c.yaml", "--bogus"], "usage: deja serve "),
        (["demo", "--bogus"], "usage: deja demo "),
        (["calibrate", "pairs.jsonl", "extra.jsonl"], "usage: deja calibrate "),
    ],
)
def test_an_unknown_argument_of_a_command_is_its_own_error(
    served: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    usage: str,
) -> None:
    """An option `deja serve` does not know was reported with the top-level usage, as
    `deja: error:`, naming neither the command nor its options."""
    err = _fails(argv, capsys)
    assert err.startswith(usage)
    command = argv[0]
    assert _error_line(err) == f"deja {command}: error: unrecognized arguments: {argv[-1]}"
    assert served == []


def test_an_unknown_top_level_option_keeps_the_top_level_usage(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _fails(["--bogus", "demo"], capsys)
    assert err.startswith("usage: deja [")
    assert _error_line(err) == "deja: error: unrecognized arguments: --bogus"


def _deja(argv: list[str], *, stdin: str = "", cwd: Path | None = None) -> Any:
    """Run ``python -m deja argv`` (the deja under test, wherever ``cwd`` is)."""
    import os
    import subprocess
    import sys

    import deja

    source = str(Path(deja.__file__).parents[1])
    path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run(
        [sys.executable, "-m", "deja", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path},
        check=False,
        timeout=60,
    )


def test_python_dash_m_deja_is_the_deja_command() -> None:
    """`python -m deja` failed: "No module named deja.__main__"."""
    from deja._version import __version__

    version = _deja(["--version"])
    assert (version.returncode, version.stdout.strip()) == (0, f"deja {__version__}")
    bad = _deja(["demo", "--bogus"])
    assert bad.returncode == 2
    assert bad.stderr.startswith("usage: deja demo ")  # its prog is deja, not __main__.py


# -- --config -: the standard input ------------------------------------------------------


@pytest.mark.parametrize("form", [["serve", "--config", "-"], ["--config", "-"]])
def test_config_dash_reads_the_standard_input(
    tmp_path: Path, listener: int, form: list[str]
) -> None:
    """`--config -` read a file named `-` ("config file not found: .../-"): `-` is the
    standard input, as for most commands (a file of that name is `./-`). Shown by what
    the configuration piped in says: its YAML error, then its address (one in use, so
    that nothing starts)."""
    (tmp_path / "-").write_text("the_file_named_dash: [\n")  # not read (else its error)
    broken = _deja(form, stdin="caching: [\n", cwd=tmp_path)
    assert broken.returncode == 2
    assert broken.stderr.startswith("deja: error: /dev/stdin:2:1: invalid YAML")
    busy = _deja(form, stdin=f"proxy: {{host: 127.0.0.1, port: {listener}}}\n", cwd=tmp_path)
    assert busy.returncode == 2
    assert busy.stderr.startswith(f"deja: error: cannot listen on 127.0.0.1:{listener}: ")
    assert "proxy.host / proxy.port of stdin" in busy.stderr


def test_config_dash_from_a_terminal_says_it_reads_it(
    served: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """From a terminal the standard input is read to its end (Ctrl-D), as `cat -` reads
    it: a line says so, or the proxy seems to hang at its start."""

    class Terminal:
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("deja.cli._cannot_listen", lambda host, port: None)
    assert main(["serve", "--config", "-"]) == 0
    assert "reading the configuration from standard input" in capsys.readouterr().err
    assert served == [
        {"config": "-", "host": None, "port": None, "workers": None, "log_level": "info"}
    ]
