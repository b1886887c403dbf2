"""Chaos runs: randomized end-to-end property tests of deja under mixed load.

Each run starts deja for real in front of deja's simulated providers (``deja.testing``) and
puts a random load through it, checking every answer. They found real bugs (a chunk lost
from a shared stream and the cut answer stored; readers of a shared stream left hanging
when one left while its end was stored), and run here so such bugs stay found.

The runs
    ``test_proxy_openai``     ``deja serve`` (memory 1 worker, redis 2 workers, disk with the
                              semantic tier 2 workers) in front of two OpenAI upstreams:
                              weighted and failover routes, wildcards, embeddings.
    ``test_proxy_providers``  ``deja serve`` (tiered memory-over-valkey 2 workers, memory with
                              the semantic tier) in front of Anthropic, Bedrock and Gemini:
                              prompt caching, images, tools, a tool round trip in history.
    ``test_library``          ``deja.Client`` in threads and ``deja.AsyncClient`` in tasks at
                              once, on one store (memory, disk, redis).
    ``test_shared_streams``   identical streams shared live while some readers leave.

The load: plain and streamed chat (``n=2``, tools, JSON schemas in either property order,
``include_usage``), clients that leave a stream after a few events or are cancelled,
embeddings batches with duplicates, bursts of identical requests (single-flight, some from
other tenants), three tenants, per-request ``no-cache``, ``no-store``, ``ttl``, namespaces
and tags, admin deletes and invalidations, and upstream faults (errors, slow answers,
dropped connections, answers cut short).

The invariants, checked on every answer (:mod:`tests.chaos.checks`)
    * each answer is the upstream's answer to the request's own prompt, for every choice
      (finish reason and tool calls too); a semantic hit answers a prompt of the same
      meaning, never one that differs by a number, an entity or a quoted string;
    * a stream ends with ``[DONE]`` and has a usage chunk exactly when asked for;
    * a hit replays the miss that made its entry (by completion id): same key, same tenant,
      same usage, finish reasons and tool calls; ``no-cache`` never hits;
    * ``x-deja-cache-key``: one tenant per key, one scope per (tenant, namespace) and the
      other way round, one digest per request and the other way round;
    * embeddings: one vector per item, in order, right, in the caller's encoding;
    * an error answer only while a fault is armed, and only with a fault's status (429,
      502, 503, 504, 529: never a 500); admin calls succeed;
    * every request is answered in time (no hang); the proxy stops on SIGTERM, and its log
      holds no traceback.

How to run
    ``make chaos`` runs them all (a few minutes on 2 cores); ``make test`` never collects
    them: they are collected only when ``tests/chaos`` is named on pytest's command line.
    Each run prints its seed and figures. ``DEJA_CHAOS_SEED=N make chaos`` (or
    ``--chaos-seed N``) replays a seed, ``DEJA_CHAOS_OPS=N`` (``--chaos-ops N``) sets the
    operations per run (default 700); ``-k`` picks runs, e.g.
    ``.venv/bin/python -m pytest tests/chaos -k 'library and redis' --chaos-seed 42``.

A failure names the seed and, for each violation, the request as sent and the answer as
received (all of them also in the run's ``violations.jsonl``). The seed fixes the plan
(every request, tenant, option, fault, and when each client leaves); the interleaving is
the machine's, so a race may need a few replays, or more operations, to show again.
"""
