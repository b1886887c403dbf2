"""The semantic tier: prompts that mean the same thing share one exact-tier entry.

:class:`SemanticCache` maps the vector of a prompt's final user text to the key of the
exact-tier entry that answered it; the response itself stays in the exact tier's store.
The exact-tier façade calls, on a miss, :meth:`SemanticCache.check` (a match names the key
to serve), and after storing a fresh answer, :meth:`SemanticCache.store`. Deleting an entry
(by key, tag, namespace or tenant) calls :meth:`forget` / :meth:`forget_scope`.

Every check embeds the query text once (kept briefly, so the ``store`` that follows a miss
does not embed it again), searches the index within the request's scope
(:mod:`deja.semantic.scope`), and runs :func:`deja.semantic.decision.decide` on the nearest
candidates, best first. Defaults are the tuned ones: threshold, guards and the shipped
verifier (see ``python -m deja.bench.semantic`` for what they score).

The vectors kept briefly, the embeddings in flight that identical prompts share, and
what deciding needs of a text (its guard signature and verifier features, worked out once:
:class:`~deja.semantic.decision.PreparedText`; the substitution guard's word vectors) are
kept apart per tenant and namespace (the start of the scope, :func:`tenant_scope`), as the
entries are: a vector or signature left by another tenant's prompt would answer faster,
telling whether someone had sent exactly that prompt. An embedder that keeps vectors itself
(a cache of them) is told the tenant too (:class:`~deja.semantic.embedders.Scoped`), and
one that keeps them as cache entries keeps them as that tenant's
(:class:`~deja.semantic.embedders.TenantScoped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from deja._async.batching import AsyncBatchFlight
from deja._async.batching import WaitExpired as AsyncWaitExpired
from deja._forks import renew_in_child
from deja._outcomes import Failed
from deja._sync.batching import BatchFlight, WaitExpired
from deja.errors import BadRequestError, ConfigError, ProviderError, UpstreamTimeoutError
from deja.metrics import Metrics
from deja.request import Request
from deja.semantic.decision import (
    BARE_THRESHOLD,
    DEFAULT_THRESHOLD,
    Decision,
    PreparedText,
    decide,
    prepare,
    word_similarity_for,
)
from deja.semantic.guards import GuardSettings, spelling
from deja.semantic.guards.tokenizer import mostly_latin
from deja.semantic.scope import (
    DEFAULT_PARTITION,
    SemanticQuery,
    partition_of,
    semantic_query,
    tenant_scope,
)
from deja.semantic.verifier import Verifier

if TYPE_CHECKING:
    from deja.semantic.embedders import Embedder
    from deja.semantic.index import VectorIndex

__all__ = ["Feedback", "SemanticCache", "SemanticLookup", "SemanticMatch"]

_VECTOR_MEMO = 256
# texts of one tenant scope whose signature and verifier features are kept (a stored prompt
# is a candidate of every later check near it: ~0.3 ms each time otherwise)
_TEXT_MEMO = 8192
# calls at once of an embedder that takes batches: a few, so that one slow call holds up
# no other prompt, and under load each call carries what queued meanwhile
_EMBEDDING_CALLS = 4
_OLD_STRIKES_FILE = "feedback.json"


@dataclass(frozen=True, slots=True)
class SemanticMatch:
    """A semantic hit: serve the exact-tier entry ``key``; ``similarity`` is the cosine."""

    key: str
    similarity: float
    probability: float | None = None


@dataclass(frozen=True, slots=True)
class Feedback:
    """What a feedback report did to entry ``key``: its ``strikes`` now, and whether it
    reached ``max_strikes`` and was ``forgotten`` by the semantic tier."""

    key: str
    strikes: int
    forgotten: bool


@dataclass(frozen=True, slots=True)
class SemanticLookup:
    """Everything one check saw: the match (if any) and the decision per candidate.

    ``candidates`` pairs each candidate key with its :class:`Decision`, best similarity
    first, and ``prompts`` holds the text each was stored for, in the same order;
    ``applicable`` is false when the tier does not apply to the request, and ``reason``
    then says why (:meth:`SemanticCache.query`).
    """

    match: SemanticMatch | None
    candidates: tuple[tuple[str, Decision], ...] = ()
    applicable: bool = True
    prompts: tuple[str | None, ...] = ()
    embedded: bool = False
    """Whether this check asked the embedder (its vector was not remembered)."""
    reason: str | None = None
    """Why the tier does not apply (``None`` when it does): ``"no_text"`` (no final user
    text), ``"script"`` (a text mostly in another script than Latin) or ``"too_long"``
    (longer than the embedder reads)."""

    @property
    def best_similarity(self) -> float | None:
        """Similarity of the nearest candidate (a near miss when there is no match)."""
        return self.candidates[0][1].similarity if self.candidates else None


class SemanticCache:
    """Second cache tier: serve an entry stored for a prompt that means the same thing.

    Keyword-only options:

    * ``embedder``: an :class:`~deja.semantic.embedders.Embedder` (default: the embedded
      :class:`~deja.semantic.embedders.LocalEmbedder`, loaded on first use);
    * ``index``: a :class:`~deja.semantic.index.VectorIndex` (default: an
      :class:`~deja.semantic.index.InProcessIndex` bounded to ``max_entries``);
    * ``threshold``: cosine similarity a candidate needs (default: the tuned value);
    * ``guards``: which guards run (:class:`~deja.semantic.guards.GuardSettings`); the
      substitution guard (two prompts the same but for one word on each side) weighs the
      two words with the embedded model, so it runs only with that embedder;
    * ``verifier``: the second-stage :class:`~deja.semantic.verifier.Verifier`; ``"default"``
      is the shipped one for this embedder (:meth:`Verifier.default_for`: it weighs the
      prompt vectors with the embedded model, text features alone with any other), ``None``
      turns it off (the default threshold is then :data:`~deja.semantic.decision.BARE_THRESHOLD`,
      0.85, instead of 0.70 with the verifier);
    * ``top_k``: candidates examined per check, best first;
    * ``max_entries``: size bound of the default index (oldest evicted first);
    * ``strike_penalty`` / ``max_strikes``: each ``feedback(key, correct=False)`` raises that
      entry's threshold by ``strike_penalty``; at ``max_strikes`` the entry is forgotten
      (strikes live with the entry in the index: shared by every process using it);
    * ``clock``: wall clock for expiry (inject a fake in tests);
    * ``metrics``: where embedder calls are reported (calls, seconds, cost); when ``None``,
      a :class:`deja.Cache` given this semantic tier reports them to its own metrics.

    Thread-safe. The async methods run embedding and search in worker threads.
    """

    def __init__(
        self,
        *,
        embedder: Embedder | None = None,
        index: VectorIndex | None = None,
        threshold: float | None = None,
        guards: GuardSettings | None = None,
        verifier: Verifier | Literal["default"] | None = "default",
        top_k: int = 4,
        max_entries: int = 100_000,
        strike_penalty: float = 0.05,
        max_strikes: int = 2,
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        for name, count in (("top_k", top_k), ("max_strikes", max_strikes)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{name} must be an int >= 1, not {count!r:.40}")
        if isinstance(strike_penalty, bool) or not isinstance(strike_penalty, (int, float)):
            raise ValueError(f"strike_penalty must be a number >= 0, not {strike_penalty!r:.40}")
        if not 0 <= strike_penalty < float("inf"):  # (NaN too)
            raise ValueError(f"strike_penalty must be a number >= 0, not {strike_penalty!r:.40}")
        if threshold is not None and (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not -1.0 <= threshold <= 1.0
        ):
            raise ValueError(
                f"threshold is a cosine similarity, between -1 and 1, not {threshold!r:.40}"
            )
        _check_parts(embedder, index, guards, verifier)
        if embedder is None:
            from deja.semantic.embedders import LocalEmbedder

            embedder = LocalEmbedder()
        if index is None:
            from deja.semantic.index import InProcessIndex

            index = InProcessIndex(dim=embedder.dim, max_entries=max_entries, clock=clock)
        if index.dim != embedder.dim:
            raise ConfigError(
                f"the index holds {index.dim}-d vectors but embedder {embedder.id} makes"
                f" {embedder.dim}-d ones"
            )
        from deja.semantic.embedders import TimeBound, Windowed, takes_scope, takes_tenant

        self.embedder = embedder
        self._fits = embedder.fits if isinstance(embedder, Windowed) else None
        self._scoped = embedder if takes_scope(embedder) else None
        self._tenanted = embedder if takes_tenant(embedder) else None
        # a lookup waits for its vector no longer than one call may take, however long
        # it stood queued behind other calls (behind hung ones it waited twice that)
        self._patience = embedder.patience if isinstance(embedder, TimeBound) else None
        self._gave_up: tuple[float, object] | None = None  # (when, the failure's token)
        self.index = index
        self.guards = guards if guards is not None else GuardSettings()
        self._words = word_similarity_for(embedder, self.guards)
        spelling.preload()  # the typing-slip word list, read in the background
        if verifier == "default":
            verifier = Verifier.default_for(embedder.id)
        if threshold is None:  # the tuned threshold assumes the verifier stands behind it
            threshold = DEFAULT_THRESHOLD if verifier is not None else BARE_THRESHOLD
        self.threshold = threshold
        if verifier is not None and verifier.uses_vectors:
            from deja.semantic.embedders import without_credentials

            # (an id saved by an older build may name its endpoint with a password)
            weighs = verifier.embedder or ""
            if weighs != embedder.id and without_credentials(weighs) != embedder.id:
                weighs = without_credentials(weighs)
                raise ConfigError(
                    f"the verifier weighs {weighs} vectors but this cache embeds with"
                    f" {embedder.id}; use a verifier trained on its vectors (or a text-only"
                    " one)"
                )
        self.verifier: Verifier | None = verifier
        self.top_k = top_k
        self.strike_penalty = strike_penalty
        self.max_strikes = max_strikes
        self._clock = clock
        self.metrics = metrics
        self._vectors: OrderedDict[str, Any] = OrderedDict()
        self._texts: OrderedDict[tuple[str, str], PreparedText] = OrderedDict()
        self._renew()  # its embeddings in flight and lock (renewed in a forked child)
        renew_in_child(self, SemanticCache._renew)
        self.partition = DEFAULT_PARTITION
        """The first scope segment of this tier's entries: its cache's key prefix
        (:meth:`bind`)."""
        self._bound: str | None = None

    def bind(self, key_prefix: str) -> None:
        """Keep this tier's entries apart by ``key_prefix``, its :class:`deja.Cache`'s (the
        cache calls this): a bumped prefix reaches no earlier vector, and caches of other
        prefixes sharing one index never match each other's. One tier serves one prefix."""
        if self._bound is not None and self._bound != key_prefix:
            raise ConfigError(
                f"this semantic tier serves the cache of key prefix {self._bound!r}: give the"
                f" cache of {key_prefix!r} a SemanticCache of its own"
            )
        self._bound = key_prefix
        self.partition = partition_of(key_prefix)

    def rebind(self, old: str, new: str) -> None:
        """Follow a cache whose ``key_prefix`` went from ``old`` to ``new`` (its setter calls
        this): the bumped prefix's lookups by meaning reach no earlier vector."""
        if self._bound not in (None, old):
            raise ConfigError(
                f"this semantic tier serves the cache of key prefix {self._bound!r}, not {old!r}"
            )
        self._bound = None
        self.bind(new)

    def __len__(self) -> int:
        return len(self.index)

    # -- the request path ---------------------------------------------------------------

    def query(
        self,
        request: Request,
        *,
        namespace: str | None = None,
        context_key: str | None = None,
    ) -> SemanticQuery | None:
        """The text and scope of ``request`` (``None``: the semantic tier does not apply).

        ``context_key``: what the cache's custom key builder keys beyond the prompt (see
        :func:`~deja.semantic.scope.semantic_query`); requests it tells apart never match.

        It does not apply to a request without a final user text, nor to one whose text is
        mostly in another script than Latin (Cyrillic, Greek, Arabic, Hebrew, Devanagari,
        Thai, Chinese, Japanese, Korean...: :func:`~deja.semantic.guards.tokenizer.mostly_latin`),
        whatever the embedder: the guards read Latin letters only, so they would see no
        word, number or name of it to tell two such prompts apart (and the embedded model
        reads Chinese, Japanese and Thai as unknown pieces). Nor to one whose text is
        longer than the embedder reads (:class:`~deja.semantic.embedders.Windowed`): its
        vector would not see the end, where a long prompt usually asks its question, so
        two prompts sharing a long context would match whatever they ask. Those are left
        to the exact tier.
        """
        return self._query(request, namespace=namespace, context_key=context_key)[0]

    def _query(
        self,
        request: Request,
        *,
        namespace: str | None,
        context_key: str | None,
    ) -> tuple[SemanticQuery | None, str | None]:
        """:meth:`query`, and why the tier does not apply when it does not (a
        :attr:`SemanticLookup.reason`)."""
        q = semantic_query(
            request,
            embedder_id=self.embedder.id,
            namespace=namespace,
            partition=self.partition,
            context_key=context_key,
        )
        if q is None:
            return None, "no_text"
        if not mostly_latin(q.text):
            return None, "script"
        if self._fits is not None and not self._fits(q.text):
            return None, "too_long"
        return q, None

    def check(
        self,
        request: Request,
        *,
        context_key: str | None = None,
        namespace: str | None = None,
        threshold: float | None = None,
    ) -> SemanticMatch | None:
        """The stored entry whose prompt means the same as ``request``'s, if any."""
        return self.inspect(
            request, namespace=namespace, threshold=threshold, context_key=context_key
        ).match

    async def acheck(
        self,
        request: Request,
        *,
        context_key: str | None = None,
        namespace: str | None = None,
        threshold: float | None = None,
    ) -> SemanticMatch | None:
        """:meth:`check` without blocking the event loop."""
        lookup = await self.ainspect(
            request, namespace=namespace, threshold=threshold, context_key=context_key
        )
        return lookup.match

    def inspect(
        self,
        request: Request,
        *,
        context_key: str | None = None,
        namespace: str | None = None,
        threshold: float | None = None,
        evaluate_all: bool = False,
        skip: frozenset[str] = frozenset(),
    ) -> SemanticLookup:
        """:meth:`check` with the decision on every candidate (for metrics, calibration).

        ``evaluate_all`` runs guards and verifier even on candidates below the threshold.
        ``skip``: keys to pass over as if not indexed (entries found stale or gone).
        """
        q, reason = self._query(request, namespace=namespace, context_key=context_key)
        if q is None:
            return SemanticLookup(None, applicable=False, reason=reason)
        vector, embedded = self._embed(q.text, self._asking(q, request.tenant, namespace))
        lookup = self._decide(q, vector, threshold, evaluate_all, skip)
        return replace(lookup, embedded=True) if embedded else lookup

    async def ainspect(
        self,
        request: Request,
        *,
        context_key: str | None = None,
        namespace: str | None = None,
        threshold: float | None = None,
        evaluate_all: bool = False,
        skip: frozenset[str] = frozenset(),
    ) -> SemanticLookup:
        """:meth:`inspect` without blocking the event loop."""
        q, reason = self._query(request, namespace=namespace, context_key=context_key)
        if q is None:
            return SemanticLookup(None, applicable=False, reason=reason)
        vector, embedded = await self._aembed(q.text, self._asking(q, request.tenant, namespace))
        lookup = await asyncio.to_thread(self._decide, q, vector, threshold, evaluate_all, skip)
        return replace(lookup, embedded=True) if embedded else lookup

    def store(
        self,
        request: Request,
        key: str,
        *,
        context_key: str | None = None,
        ttl: float | None = None,
        namespace: str | None = None,
    ) -> bool:
        """Record that the exact-tier entry ``key`` answers ``request`` (for ``ttl`` s).

        Returns ``False`` when the semantic tier does not apply to the request.
        """
        q = self.query(request, namespace=namespace, context_key=context_key)
        if q is None:
            return False
        self._add(key, q, self._embed(q.text, self._asking(q, request.tenant, namespace))[0], ttl)
        return True

    async def astore(
        self,
        request: Request,
        key: str,
        *,
        context_key: str | None = None,
        ttl: float | None = None,
        namespace: str | None = None,
    ) -> bool:
        """:meth:`store` without blocking the event loop."""
        q = self.query(request, namespace=namespace, context_key=context_key)
        if q is None:
            return False
        vector, _ = await self._aembed(q.text, self._asking(q, request.tenant, namespace))
        await asyncio.to_thread(self._add, key, q, vector, ttl)
        return True

    # -- management ---------------------------------------------------------------------

    @staticmethod
    def refused(exc: BaseException) -> bool:
        """Whether ``exc``, raised by a lookup or a store of this tier, is the embedder's
        refusal of that one input (too long, say: called alone, or split from the others
        of its call, which were embedded): a failure of that lookup, not of the tier,
        which must not stop asking the embedder for other prompts."""
        return _REFUSED_ALONE in getattr(exc, "__notes__", ())

    def held_keys(self) -> list[str] | None:
        """The keys of the entries this tier holds vectors of, oldest first, when its index
        lives in this process (a snapshot); ``None`` for a remote index."""
        from deja.semantic.index import InProcessIndex

        index = self.index
        return index.ids() if isinstance(index, InProcessIndex) else None

    def forget(self, key: str) -> bool:
        """Drop the vector of entry ``key`` (call when the entry is deleted)."""
        return self.index.remove(key)

    def forget_scope(self, *, tenant: str | None = None, namespace: str | None = None) -> int:
        """Drop every vector of one (tenant, namespace); returns how many. What this
        process keeps of its prompts (vectors, signatures) goes too."""
        scope = tenant_scope(tenant, namespace, self.partition)
        self._drop_memos(scope)
        return self.index.remove_scope(scope)

    def clear(self) -> int:
        """Drop every vector of this tier's key prefix (another prefix's, in a shared
        index, stay); returns how many."""
        self._drop_memos(self.partition)
        return self.index.remove_scope(self.partition)

    async def aforget(self, key: str) -> bool:
        """:meth:`forget` without blocking the event loop (the index may be remote)."""
        return await asyncio.to_thread(self.forget, key)

    async def aforget_scope(
        self, *, tenant: str | None = None, namespace: str | None = None
    ) -> int:
        """:meth:`forget_scope` without blocking the event loop (a remote index scans its
        whole scope: seconds at 20k vectors)."""
        return await asyncio.to_thread(self.forget_scope, tenant=tenant, namespace=namespace)

    async def aclear(self) -> int:
        """:meth:`clear` without blocking the event loop."""
        return await asyncio.to_thread(self.clear)

    def feedback(self, key: str, *, correct: bool) -> Feedback | None:
        """Report whether serving entry ``key`` for a similar prompt was right.

        A wrong answer is a *strike* on the entry: it raises the similarity the entry
        needs by ``strike_penalty`` per strike, and at ``max_strikes`` the entry's vector
        is forgotten (the exact tier still serves identical requests). A right one takes
        back one strike. Strikes are kept with the entry in the index, so with a shared
        (Redis, Qdrant) index every process sees them. ``None`` when the index holds no
        entry ``key`` (never stored, deleted, expired or already forgotten).
        """
        strike = getattr(self.index, "strike", None)
        if strike is None:  # an index written against the protocol before it had strikes
            raise ConfigError(
                f"the vector index {type(self.index).__name__} keeps no strikes (it has no"
                " strike method; see deja.semantic.VectorIndex): feedback needs one that does"
            )
        strikes = strike(key, -1 if correct else 1)
        if strikes is None:
            return None
        forgotten = strikes >= self.max_strikes
        if forgotten:
            self.forget(key)
        return Feedback(key, strikes, forgotten)

    async def afeedback(self, key: str, *, correct: bool) -> Feedback | None:
        """:meth:`feedback` without blocking the event loop (the index may be remote)."""
        return await asyncio.to_thread(self.feedback, key, correct=correct)

    def save(self, path: str | Path) -> None:
        """Save the index (strikes included) to the directory ``path``."""
        self.index.save(path)

    @property
    def syncs(self) -> bool:
        """Whether the index saves by :meth:`sync` (what changed, merged with what other
        processes saved); otherwise only :meth:`save` writes it, in full."""
        return callable(getattr(self.index, "sync", None))

    def sync(self, path: str | Path) -> bool:
        """Bring an in-process index and ``path`` in step: take in what other processes
        wrote there, write what this index changed (see
        :meth:`deja.semantic.index.InProcessIndex.sync`); returns whether it took in or
        wrote anything. A shared index (Redis, Qdrant) is stored as it changes: ``False``."""
        sync = getattr(self.index, "sync", None)
        return bool(sync(path)) if sync is not None else False

    def load(self, path: str | Path) -> None:
        """Load what :meth:`save` wrote (replacing the current contents).

        A directory saved by an older deja kept strikes in ``feedback.json`` beside the
        index: they are carried into the index once, and the file removed.
        """
        self.index.load(path)
        old = Path(path) / _OLD_STRIKES_FILE
        if old.exists():
            for key, count in json.loads(old.read_bytes()).items():
                if int(count) > 0:
                    self.index.strike(str(key), int(count))
            with contextlib.suppress(OSError):
                old.unlink()

    # -- internals ----------------------------------------------------------------------

    def _decide(
        self,
        q: SemanticQuery,
        vector: Any,
        threshold: float | None,
        evaluate_all: bool,
        skip: frozenset[str] = frozenset(),
    ) -> SemanticLookup:
        # a caller's own threshold (stricter than the tier's, see Cache) holds for every
        # candidate: the same words' slip allowance is the tier's, not the caller's
        base = self.threshold if threshold is None else threshold
        floor = threshold if threshold is not None and threshold > self.threshold else None
        # the candidates' stored vectors come back with the search when the verifier weighs
        # them (no second round trip to a remote index)
        with_vectors = self.verifier is not None and self.verifier.uses_vectors
        neighbors = self.index.search(
            vector, scope=q.scope, k=self.top_k, with_vectors=with_vectors
        )
        decided: list[tuple[str, Decision]] = []
        prompts: list[str | None] = []
        match: SemanticMatch | None = None
        tenant = _tenant_of(q)  # (every candidate is of the query's scope: the search's)
        asked = self._prepared(tenant, q.text)
        words = None if self._words is None else functools.partial(self._words, scope=tenant)
        for neighbor in neighbors:
            if neighbor.id in skip:
                continue
            if neighbor.strikes >= self.max_strikes:
                # reported wrong that often (by several processes, say, each below the
                # count at which it forgets an entry): as good as forgotten
                continue
            stored = self._prepared(tenant, neighbor.payload or "")
            decision = decide(
                neighbor.similarity,
                asked,
                stored,
                threshold=base + neighbor.strikes * self.strike_penalty,
                guards=self.guards,
                verifier=self.verifier,
                query_vector=vector,
                candidate_vector=neighbor.vector,
                evaluate_all=evaluate_all,
                word_similarity=words,
                floor=floor,
            )
            self._keep(tenant, stored)
            decided.append((neighbor.id, decision))
            prompts.append(neighbor.payload)
            if evaluate_all:
                if decision.hit and match is None:
                    match = SemanticMatch(neighbor.id, neighbor.similarity, decision.probability)
                continue
            if decision.hit:
                match = SemanticMatch(neighbor.id, neighbor.similarity, decision.probability)
                break
            if decision.reason == "verifier":
                # The nearest candidate that the guards let through was judged to mean
                # something else: a farther one passing the verifier is more likely one
                # of its chance errors than a better match (on a Banking77 stream, going
                # on served ~30% wrong answers among the hits it added), so stop here.
                # A guard rejection (another number, entity...) says nothing about the
                # next candidate, which may carry the query's own values: go on.
                break
        self._keep(tenant, asked)
        return SemanticLookup(match, tuple(decided), prompts=tuple(prompts))

    def _add(self, key: str, q: SemanticQuery, vector: Any, ttl: float | None) -> None:
        expires = None if ttl is None else self._clock() + ttl
        self.index.add(key, vector, scope=q.scope, expires=expires, payload=q.text)
        # worked out now (a miss, about to wait for the model anyway), not on the first
        # check that meets it
        tenant = _tenant_of(q)
        self._keep(tenant, prepare(self._prepared(tenant, q.text)))

    def _prepared(self, scope: str, text: str) -> PreparedText:
        """What deciding on ``text`` needs, as kept for the tenant ``scope``
        (:func:`_tenant_of`) only, else a new one to :meth:`_keep`: another tenant's check
        of the same text works it out again (a signature found ready would answer it
        ~0.4 ms sooner, telling that someone sent that text)."""
        key = (scope, text)
        with self._lock:
            prepared = self._texts.get(key)
            if prepared is not None:
                self._texts.move_to_end(key)
                return prepared
        return PreparedText(text)

    def _keep(self, scope: str, prepared: PreparedText) -> None:
        """Keep ``prepared`` for the tenant ``scope``, if a decision worked anything of it
        out (a query or candidate passed over below the threshold would only push out
        the stored prompts that later checks meet)."""
        if not prepared.worked_out:
            return
        key = (scope, prepared.text)
        with self._lock:
            kept = self._texts.setdefault(key, prepared) is prepared
            if kept and len(self._texts) > _TEXT_MEMO:
                self._texts.popitem(last=False)

    def _drop_memos(self, scope: str) -> None:
        """Forget the vectors and prepared texts kept for ``scope`` and the scopes under it
        (a tenant scope, or a whole partition)."""

        def under(kept: str) -> bool:
            return kept == scope or kept.startswith(f"{scope}/")

        with self._lock:
            for key in [k for k in self._vectors if under(_owner_of(_scope_of(k))[0])]:
                del self._vectors[key]
            for text_key in [k for k in self._texts if under(k[0])]:
                del self._texts[text_key]

    def _memo_get(self, key: str) -> Any:
        """The vector remembered for ``key`` (a text's :func:`_flight_key`), else ``None``."""
        with self._lock:
            vector = self._vectors.get(key)
            if vector is not None:
                self._vectors.move_to_end(key)
            return vector

    def _memo_put(self, key: str, vector: Any) -> None:
        with self._lock:
            self._vectors[key] = vector
            if len(self._vectors) > _VECTOR_MEMO:
                self._vectors.popitem(last=False)

    def _renew(self) -> None:
        """Fresh embedding queues and lock: at start, and in a forked child (where a
        parent's thread that was embedding a text is not)."""
        self._lock = threading.Lock()
        # Prompts to embed at once share calls, when the embedder takes batches (a remote
        # one: fewer requests against its rate limit); one at a time otherwise (the local
        # model is no faster per text in batches), identical ones of one tenant always
        # shared (the queues hold _flight_key's, never a bare text).
        size = getattr(self.embedder, "batch_size", 1)
        size = size if isinstance(size, int) and size > 1 else 1
        parallel = None if size == 1 else _EMBEDDING_CALLS
        self._embedding: BatchFlight[Any] = BatchFlight(
            self._embed_texts, size=size, parallel=parallel
        )
        self._aembedding: AsyncBatchFlight[Any] = AsyncBatchFlight(
            self._aembed_texts, size=size, parallel=parallel
        )

    def _asking(self, q: SemanticQuery, tenant: str | None, namespace: str | None) -> str:
        """The scope ``q``'s vector is remembered and shared in flight by: its tenant scope
        (:func:`_tenant_of`), and for an embedder told whose it is
        (:class:`~deja.semantic.embedders.TenantScoped`), the ``tenant`` and ``namespace``
        it stands for."""
        scope = _tenant_of(q)
        return scope if self._tenanted is None else _owned(scope, tenant, namespace)

    def _embed(self, text: str, scope: str = "") -> tuple[Any, bool]:
        """``text``'s vector for the tenant ``scope`` (:func:`_tenant_of`; ``""``: no
        tenant's own), and whether the embedder was asked for it (not remembered for that
        scope)."""
        key = _flight_key(scope, text)
        vector = self._memo_get(key)
        if vector is not None:
            return vector, False
        try:
            return self._embedding.run(key, wait=self._patience), True
        except WaitExpired:
            raise self._late() from None

    def _embed_texts(self, keys: list[str]) -> list[Any]:
        """The vectors of ``keys`` (:func:`_flight_key`'s): one call for those not
        remembered (one per tenant scope for an embedder that takes it: :meth:`_calls`). A
        call the embedder refused for one of its inputs (too long, say: an endpoint refuses
        the whole request; one NaN vector, the whole batch) is split in halves, down to the
        text refused alone, which fails alone (``Failed``), marked as the input's
        (:meth:`refused`), as is one text refused in a call of its own. When both halves are
        refused the refusal is no single input's (a setting the endpoint refuses whatever it
        is sent: every 400 split down to single texts was 2n-1 calls): they all fail.
        Another failure fails all."""
        known, wanted = self._remembered(keys)
        for call in self._calls(wanted):  # (one after the other: no thread to spare here)
            self._embed_split(call, known, alone=len(wanted) == 1)
        return [known[key] for key in keys]

    def _embed_split(self, keys: list[str], known: dict[str, Any], *, alone: bool) -> None:
        """Embed ``keys`` into ``known``, split as :meth:`_embed_texts` says; ``alone``:
        they are the only text asked for (its refusal is raised, not kept)."""
        part: list[str] | None = keys
        whole = True  # (the first try: all at once)
        while part is not None:
            refused: list[tuple[list[str], Exception]] = []
            for piece in _pieces(part, whole=whole):
                try:
                    self._embed_call(piece, known)
                except Exception as exc:
                    if not _refused_input(exc):
                        raise
                    if alone:
                        _alone(exc)
                        raise
                    refused.append((piece, exc))
            part, whole = _split_again(refused, known), False

    def _embed_call(self, keys: list[str], into: dict[str, Any]) -> None:
        texts = [_text_of(key) for key in keys]
        started = time.monotonic()
        try:
            # (a call's keys share their scope: _calls)
            scope, tenant, namespace = _owner_of(_scope_of(keys[0]))
            if self._tenanted is not None:
                vectors = self._tenanted.embed(
                    texts, scope=scope or None, tenant=tenant, namespace=namespace
                )
            elif self._scoped is not None:
                vectors = self._scoped.embed(texts, scope=scope or None)
            else:
                vectors = self.embedder.embed(texts)
            self._learn(keys, vectors, time.monotonic() - started, into)
        except Exception as exc:
            self._embedding_failed(exc, time.monotonic() - started)
            raise

    def _calls(self, keys: list[str]) -> list[list[str]]:
        """The calls that embed ``keys``: one, unless the embedder takes a tenant scope
        (:class:`~deja.semantic.embedders.Scoped`), which it takes per call: then one per
        scope among them, in the order they came."""
        if not keys:
            return []
        if self._scoped is None:
            return [keys]
        calls: dict[str, list[str]] = {}
        for key in keys:
            calls.setdefault(_scope_of(key), []).append(key)
        return list(calls.values())

    async def _aembed(self, text: str, scope: str = "") -> tuple[Any, bool]:
        """:meth:`_embed` without blocking the event loop."""
        key = _flight_key(scope, text)
        vector = self._memo_get(key)
        if vector is not None:
            return vector, False
        try:
            return await self._aembedding.run(key, wait=self._patience), True
        except AsyncWaitExpired:
            raise self._late() from None

    def _late(self) -> UpstreamTimeoutError:
        """The error of a lookup that waited for its vector as long as one call may take
        (its call goes on, for the others in it): its own (one object raised to every
        caller grew their frames into one traceback, and kept their requests alive), with
        the ``failure`` token of the lookups that gave up within a second, which waited for
        the same slow calls (a cache's breaker counts one failure per token)."""
        now = time.monotonic()
        with self._lock:
            late = self._gave_up
            if late is None or now - late[0] > 1.0:
                late = self._gave_up = (now, object())
        error = UpstreamTimeoutError(
            f"embedder {self.embedder.id} gave no vector within {self._patience:g} s"
        )
        error.failure = late[1]  # type: ignore[attr-defined]
        return error

    async def _aembed_texts(self, keys: list[str]) -> list[Any]:
        """:meth:`_embed_texts` without blocking the event loop (its calls, one per tenant
        scope, at once: a lookup waits no longer for sharing a batch with other tenants)."""
        known, wanted = self._remembered(keys)
        alone = len(wanted) == 1
        await asyncio.gather(
            *(self._aembed_split(c, known, alone=alone) for c in self._calls(wanted))
        )
        return [known[key] for key in keys]

    async def _aembed_split(self, keys: list[str], known: dict[str, Any], *, alone: bool) -> None:
        """:meth:`_embed_split` without blocking the event loop."""
        part: list[str] | None = keys
        whole = True  # (the first try: all at once)
        while part is not None:
            refused: list[tuple[list[str], Exception]] = []
            for piece in _pieces(part, whole=whole):
                try:
                    await self._aembed_call(piece, known)
                except Exception as exc:
                    if not _refused_input(exc):
                        raise
                    if alone:
                        _alone(exc)
                        raise
                    refused.append((piece, exc))
            part, whole = _split_again(refused, known), False

    async def _aembed_call(self, keys: list[str], into: dict[str, Any]) -> None:
        texts = [_text_of(key) for key in keys]
        started = time.monotonic()
        try:
            scope, tenant, namespace = _owner_of(_scope_of(keys[0]))
            if self._tenanted is not None:
                vectors = await self._tenanted.aembed(
                    texts, scope=scope or None, tenant=tenant, namespace=namespace
                )
            elif self._scoped is not None:
                vectors = await self._scoped.aembed(texts, scope=scope or None)
            else:
                vectors = await self.embedder.aembed(texts)
            self._learn(keys, vectors, time.monotonic() - started, into)
        except Exception as exc:
            self._embedding_failed(exc, time.monotonic() - started)
            raise

    def _remembered(self, keys: list[str]) -> tuple[dict[str, Any], list[str]]:
        """The vectors of ``keys`` remembered (a call that ended just now may have left
        some), and the keys to ask the embedder for."""
        known: dict[str, Any] = {}
        for key in keys:
            vector = self._memo_get(key)
            if vector is not None:
                known[key] = vector
        return known, [key for key in keys if key not in known]

    def _learn(self, keys: list[str], matrix: Any, seconds: float, into: dict[str, Any]) -> None:
        """One embedder call's vectors: checked, reported, remembered, put ``into``."""
        from deja.semantic.embedders import usable

        matrix = usable(matrix, f"embedder {self.embedder.id}")
        if len(matrix) != len(keys):
            raise ProviderError(
                f"embedder {self.embedder.id} returned {len(matrix)} vectors for {len(keys)} texts"
            )
        self._embedded(seconds)
        for key, row in zip(keys, matrix, strict=True):
            # a row of its own (a view would keep the whole batch's matrix alive)
            vector = row.copy() if len(keys) > 1 else row
            self._memo_put(key, vector)
            into[key] = vector

    def _embedding_failed(self, exc: BaseException, seconds: float) -> None:
        """Report one embedder call that failed; one billed all the same (its vectors then
        refused: another size, a NaN) is reported as a call with its cost too, when it
        failed (taken only by a later call that succeeded, a steady fault went unbilled)."""
        if self.metrics is None:
            return
        self.metrics.embedding_failed(self.embedder.id, type(exc).__name__)
        cost = self._cost()
        if cost:
            self.metrics.embedding(self.embedder.id, seconds, cost)

    def _embedded(self, seconds: float) -> None:
        """Report one embedder call: its duration and, for a paid embedder, its cost."""
        if self.metrics is not None:
            self.metrics.embedding(self.embedder.id, seconds, self._cost())

    def _cost(self) -> float:
        """What the embedder billed since the last report (0 for the local model)."""
        from deja.semantic.embedders import CostReporting

        embedder = self.embedder
        return embedder.take_cost_usd() if isinstance(embedder, CostReporting) else 0.0


def _tenant_of(q: SemanticQuery) -> str:
    """The tenant scope of ``q``: its :func:`tenant_scope`, the scope up to its last ``/``
    (before the hash of the request's context, so that one tenant's prompt asked of two
    models is embedded once)."""
    return q.scope.rpartition("/")[0]


# Between a tenant scope and the JSON of the tenant and namespace it stands for, in a
# flight key's scope (neither a scope nor JSON holds one: JSON escapes control characters)
_OWNER = "\x1f"


def _owned(scope: str, tenant: str | None, namespace: str | None) -> str:
    """The tenant ``scope`` with the ``tenant`` and ``namespace`` it stands for (what an
    embedder that takes them is told: :func:`_owner_of`)."""
    return f"{scope}{_OWNER}{json.dumps([tenant, namespace])}"


def _owner_of(scope: str) -> tuple[str, str | None, str | None]:
    """The tenant scope of a flight key's ``scope`` (:func:`_scope_of`), and the tenant and
    namespace :func:`_owned` put after it (``None`` both for a scope without them)."""
    scope, sep, owner = scope.partition(_OWNER)
    if not sep:
        return scope, None, None
    tenant, namespace = json.loads(owner)
    return scope, tenant, namespace


def _flight_key(scope: str, text: str) -> str:
    """What the vector of ``text`` for the tenant ``scope`` is remembered and shared in
    flight by: the scope, a NUL (a scope holds none), the text; with no scope, the text
    alone unless it holds a NUL itself."""
    return f"{scope}\0{text}" if scope or "\0" in text else text


def _scope_of(key: str) -> str:
    """The tenant scope of a :func:`_flight_key` (``""`` for a bare text: none)."""
    scope, sep, _ = key.partition("\0")
    return scope if sep else ""


def _text_of(key: str) -> str:
    """The text of a :func:`_flight_key` (a bare text is its own)."""
    _, sep, text = key.partition("\0")
    return text if sep else key


def _pieces(texts: list[str], *, whole: bool) -> list[list[str]]:
    """The calls to make for ``texts``: all of them at once (the first try), else halves."""
    if whole:
        return [texts]
    half = len(texts) // 2
    return [texts[:half], texts[half:]]


def _split_again(
    refused: list[tuple[list[str], Exception]], into: dict[str, Any]
) -> list[str] | None:
    """After the calls of one round, the texts to split and try again: those of the one
    refused call of several texts (only one call was refused, a first try included);
    else ``None``, the refused texts failed (``Failed``) in ``into``: a text refused alone,
    or two halves both refused."""
    if len(refused) == 1 and len(refused[0][0]) > 1:
        return refused[0][0]
    for part, exc in refused:
        for text in part:
            into[text] = Failed(_alone(exc) if len(refused) == 1 else exc)
    return None


_REFUSED_ALONE = "deja: the embedder refused this input alone; only its lookup fails"


def _alone(exc: Exception) -> Exception:
    """``exc``, marked as the embedder's refusal of one input, called alone (too long, say:
    another input is embedded): the failure of that lookup, not of the semantic tier
    (:meth:`SemanticCache.refused`). A note, so its kind and status stay the endpoint's."""
    if _REFUSED_ALONE not in getattr(exc, "__notes__", ()):
        exc.add_note(_REFUSED_ALONE)
    return exc


def _refused_input(exc: BaseException) -> bool:
    """Whether an embedder's call may have failed for one of its inputs (which another
    call without it would not): the endpoint refused the request (400, 413, 422, whatever
    the client's exception) or a vector came back unusable."""
    from deja.semantic.embedders import UnusableVectors

    if isinstance(exc, (BadRequestError, UnusableVectors)):
        return True
    # (a custom embedder's own client error: the openai SDK's BadRequestError, say)
    return getattr(exc, "status_code", None) in (400, 413, 422)


def _check_parts(embedder: object, index: object, guards: object, verifier: object) -> None:
    """A TypeError naming the argument for a part of the wrong kind (each failed later
    with an AttributeError from inside: ``verifier="bogus"``, ``index=5``). An embedder
    and an index are read by what they must have (an index written before the protocol
    had ``strike`` still serves: only feedback needs it)."""
    for name, value, needs in (
        ("embedder", embedder, ("embed", "dim", "id")),
        ("index", index, ("add", "search", "dim")),
    ):
        if value is not None and not all(hasattr(value, part) for part in needs):
            raise TypeError(f"{name} must have {', '.join(needs)}, not {value!r:.60}")
    if guards is not None and not isinstance(guards, GuardSettings):
        raise TypeError(f"guards must be a GuardSettings, not {guards!r:.60}")
    if verifier is not None and verifier != "default" and not isinstance(verifier, Verifier):
        raise TypeError(f'verifier must be a Verifier, "default" or None, not {verifier!r:.60}')
