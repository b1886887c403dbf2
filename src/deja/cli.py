"""The ``deja`` command.

    deja demo [--json]        replay the labelled support-bot workload through the cache
    deja serve --config FILE  run the caching proxy (also, as LiteLLM users type it:
                              deja --config FILE [--host H] [--port N] [--num_workers N])
    deja calibrate PAIRS.jsonl [--max-false-hit-rate 0.01] [--config FILE]
                              tune the semantic threshold (of the embedder FILE configures)
    deja --version

``python -m deja`` is the same command. Errors follow argparse: the usage of the command at
fault and one ``error:`` line on stderr, exit 2.

A running proxy's statistics, explanations and deletions are its admin routes
(``/cache/stats``, ``/cache/explain``, ``/cache/delete``), not commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence

from deja._version import __version__
from deja.errors import DejaError

__all__ = ["main"]

# uvicorn's own names (uvicorn.config.LOG_LEVELS), spelled out so that `deja --help` needs
# no uvicorn; any other name is a KeyError inside uvicorn.run.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

# The options of `deja serve` that `deja --config FILE ...` accepts too (dest names).
_SERVE_OPTIONS = ("config", "host", "port", "workers", "log_level")
# Top-level copies of them are stored under this prefix, because a subcommand's defaults
# would overwrite top-level values of the same name.
_TOP = "top_"


def _int_in(what: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [``low``, ``high``], else a one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


def _float_in(
    what: str, low: float, high: float = math.inf, *, high_open: bool = False
) -> Callable[[str], float]:
    """An argparse ``type``: a finite float in [``low``, ``high``] (or [``low``, ``high``))."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        above = value >= high if high_open else value > high
        if not math.isfinite(value) or value < low or above:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
        return value

    return parse


# The bounds of proxy.port and proxy.workers in deja.config.
_port = _int_in("a port number 1-65535", 1, 65535)
_workers = _int_in("a number of workers >= 1", 1)


def _host(text: str) -> str:
    """An argparse ``type``: a host that is not blank (``serve`` would take ``""`` for "not
    given" and listen on proxy.host, 0.0.0.0 by default: on every interface, unasked)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a host name or address, got {text!r}")
    return text


# What the check below binds a --port given without --host on: proxy.host's default; and on
# Linux a port that a socket listens on, at whatever address, cannot be bound there.
_ANY_HOST = "0.0.0.0"


def _cannot_listen(host: str | None, port: int | None) -> str | None:
    """Why the proxy could not listen where the command line says (``None``: it can).

    Bound, and closed at once, before the configuration and the app are built: uvicorn's
    own message on a port in use or a host not of this machine comes after those, and names
    neither the address nor the option. A half the command line does not give is the
    configuration's, unknown here: a host alone is bound with port 0 (any free one: only the
    host is checked), a port alone on every interface.
    """
    from deja.server.run import bind_problem

    if host is None and port is None:
        return None
    reason = bind_problem(_ANY_HOST if host is None else host, port or 0)
    if reason is None:
        return None
    # (a lone surrogate, from argv, as \udcff: a stream of strict UTF-8 could not print it)
    shown = (host or "").encode("utf-8", "backslashreplace").decode("utf-8")
    if host is not None and ":" in host:
        shown = f"[{shown}]"
    if port is None:
        return f"cannot listen on {shown}: {reason} (--host)"
    if host is None:
        return f"cannot listen on port {port}: {reason} (--port)"
    return f"cannot listen on {shown}:{port}: {reason} (--host/--port)"


def _demo(args: argparse.Namespace) -> int:
    from deja.demo import format_report, run_demo

    report = asyncio.run(
        run_demo(
            concurrency=args.concurrency,
            median_latency=args.latency,
            live=args.live,
            via_proxy=args.proxy,
            semantic=not args.exact_only,
        )
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        print(format_report(report))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from deja.server.run import serve

    if not args.config:
        print("deja serve: --config FILE is required", file=sys.stderr)
        return 2
    if args.config == "-" and sys.stdin is not None and sys.stdin.isatty():
        # (read to its end, as `cat -` does: a prompt, not a start that seems to hang)
        print(
            "deja: reading the configuration from standard input (end it with Ctrl-D)",
            file=sys.stderr,
        )
    problem = _cannot_listen(args.host, args.port)
    if problem is not None:
        print(f"deja: error: {problem}", file=sys.stderr)
        return 2
    serve(
        args.config, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from deja.semantic.calibrate import calibrate, configured_tier, load_pairs

    if args.config is None:
        report = calibrate(args.pairs, max_false_hit_rate=args.max_false_hit_rate)
    else:
        pairs = load_pairs(args.pairs)
        semantic = configured_tier(args.config, pairs) if pairs else None
        report = calibrate(
            pairs or args.pairs, max_false_hit_rate=args.max_false_hit_rate, semantic=semantic
        )
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format())
    return 0


def _add_serve_options(parser: argparse.ArgumentParser, *, prefix: str = "") -> None:
    """``--host``, ``--port``, ``--workers`` (alias ``--num_workers``, LiteLLM's spelling)
    and ``--log-level``, stored under ``prefix`` + their usual names."""
    parser.add_argument(
        "--host",
        dest=f"{prefix}host",
        metavar="HOST",
        type=_host,
        help="listen address (default: proxy.host, 0.0.0.0)",
    )
    parser.add_argument(
        "--port",
        dest=f"{prefix}port",
        metavar="PORT",
        type=_port,
        help="listen port, 1-65535 (default: proxy.port, 4000)",
    )
    parser.add_argument(
        "--workers",
        "--num_workers",
        dest=f"{prefix}workers",
        metavar="N",
        type=_workers,
        help="worker processes, >= 1 (default: proxy.workers, 1)",
    )
    parser.add_argument(
        "--log-level",
        dest=f"{prefix}log_level",
        metavar="LEVEL",
        type=str.lower,
        choices=LOG_LEVELS,
        # the top-level copy defaults to None, to tell whether it was given
        default=None if prefix else "info",
        help=f"uvicorn log level: {', '.join(LOG_LEVELS)} (default info)",
    )


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: an option it does not know is its own error, with its own
    usage (argparse hands a subcommand's unknown arguments back to the top-level parser,
    whose usage and message named neither the command nor its options)."""

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deja`` command."""
    parser = argparse.ArgumentParser(
        prog="deja", description="Never pay twice for the same LLM answer."
    )
    parser.add_argument("--version", action="version", version=f"deja {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--config",
        dest=f"{_TOP}config",
        metavar="FILE",
        help="serve this configuration (same as `deja serve --config`, as LiteLLM users type it;"
        " the serve options below apply; -: read it from standard input)",
    )
    _add_serve_options(parser, prefix=_TOP)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    demo = commands.add_parser(
        "demo", help="replay a labelled support-bot workload through the cache"
    )
    demo.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    demo.add_argument(
        "--concurrency",
        type=_int_in("a number of users >= 1", 1),
        default=16,
        help="simultaneous users (default 16)",
    )
    demo.add_argument(
        "--latency",
        type=_float_in("a latency in seconds >= 0", 0.0),
        default=0.5,
        help="median simulated upstream latency, s (default 0.5)",
    )
    demo.add_argument(
        "--live", action="store_true", help="use the real OpenAI API (OPENAI_API_KEY; costs money)"
    )
    demo.add_argument(
        "--proxy", action="store_true", help="send the workload through the caching proxy over HTTP"
    )
    demo.add_argument(
        "--exact-only", action="store_true", help="without the semantic tier (exact matches only)"
    )
    demo.set_defaults(run=_demo)
    calibrate = commands.add_parser(
        "calibrate", help="find the semantic threshold for a false-hit target on labelled pairs"
    )
    calibrate.add_argument("pairs", help='JSONL of {"a": ..., "b": ..., "same": true|false}')
    calibrate.add_argument(
        "--max-false-hit-rate",
        type=_float_in("a rate with 0 <= rate < 1", 0.0, 1.0, high_open=True),
        default=0.01,
        help="target, 0 <= rate < 1 (default 0.01)",
    )
    calibrate.add_argument(
        "--config",
        metavar="FILE",
        help="score with the semantic tier this configuration builds (its embedding model,"
        " guards and verifier); default: the embedded model",
    )
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.set_defaults(run=_calibrate)
    serve = commands.add_parser("serve", help="run the caching proxy")
    serve.add_argument(
        "--config",
        required=True,
        metavar="FILE",
        help="the YAML configuration (-: read it from standard input)",
    )
    _add_serve_options(serve)
    serve.set_defaults(run=_serve)
    return parser


def _resolve_top_level(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn ``deja --config FILE [--port N ...]`` into ``deja serve --config FILE ...``.

    Serve options before a command (or without ``--config``) would be silently ignored, so
    they are an error instead.
    """
    given = [
        "--" + name.replace("_", "-")
        for name in _SERVE_OPTIONS
        if getattr(args, _TOP + name) is not None
    ]
    if args.command is not None:
        if given:
            parser.error(
                f"{', '.join(given)} before a command: put serve options after `serve`"
                " (deja serve --config FILE ...) or use them without a command"
            )
        return
    if args.top_config is None:
        if given:
            parser.error(f"{', '.join(given)} needs --config FILE (or use `deja serve`)")
        return
    args.command = "serve"
    args.run = _serve
    for name in _SERVE_OPTIONS:
        setattr(args, name, getattr(args, _TOP + name))
    if args.log_level is None:
        args.log_level = "info"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deja`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _resolve_top_level(parser, args)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.command is None:
        # argparse's way for a missing required argument: the usage and one error line on
        # stderr, exit 2 (the whole help went to stdout, as if asked for, with exit 2)
        parser.error("a command is required: demo, calibrate or serve (or --config FILE)")
    try:
        code: int = args.run(args)
    except DejaError as exc:
        print(f"deja: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl+C: a line, not a traceback, and the shell's 128 + 2
        print("deja: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
