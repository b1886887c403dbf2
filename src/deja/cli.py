"""The ``deja`` command.

    deja demo [--json]        replay the labelled support-bot workload through the cache
    deja serve --config FILE  run the caching proxy (also: deja --config FILE)
    deja calibrate PAIRS.jsonl [--max-false-hit-rate 0.01]   tune the semantic threshold
    deja --version

Later issues add ``serve``, ``calibrate``, ``warm``, ``explain``, ``stats`` and ``bench``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence

from deja._version import __version__
from deja.errors import DejaError

__all__ = ["main"]


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
    serve(
        args.config, host=args.host, port=args.port, workers=args.workers, log_level=args.log_level
    )
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from deja.semantic.calibrate import calibrate

    report = calibrate(args.pairs, max_false_hit_rate=args.max_false_hit_rate)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(report.format())
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``deja`` command."""
    parser = argparse.ArgumentParser(
        prog="deja", description="Never pay twice for the same LLM answer."
    )
    parser.add_argument("--version", action="version", version=f"deja {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    parser.add_argument(
        "--config",
        help="serve this configuration (same as `deja serve --config`, as LiteLLM users type it)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="replay a labelled support-bot workload through the cache"
    )
    demo.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    demo.add_argument("--concurrency", type=int, default=16, help="simultaneous users (default 16)")
    demo.add_argument(
        "--latency",
        type=float,
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
        "--max-false-hit-rate", type=float, default=0.01, help="target (default 0.01)"
    )
    calibrate.add_argument("--json", action="store_true", help="print the report as JSON")
    calibrate.set_defaults(run=_calibrate)
    serve = commands.add_parser("serve", help="run the caching proxy")
    serve.add_argument("--config", required=True, help="the YAML configuration")
    serve.add_argument("--host", help="listen address (default: proxy.host, 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (default: proxy.port, 4000)")
    serve.add_argument("--workers", type=int, help="worker processes (default: proxy.workers, 1)")
    serve.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    serve.set_defaults(run=_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``deja`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    if args.command is None and args.config:
        args = parser.parse_args(
            [*(["-v"] if args.verbose else []), "serve", "--config", args.config]
        )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        code: int = args.run(args)
    except DejaError as exc:
        print(f"deja: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
