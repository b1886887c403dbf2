"""YAML configuration: load it, validate it, and turn it into settings and a cache.

deja reads its own keys and LiteLLM's, so an existing LiteLLM ``config.yaml`` runs unchanged::

    model_list:                      # deployments: model_name → litellm_params (+ model_info)
    caching:                         # native cache block   (or LiteLLM's, below)
    cache_responses:                 # the seed guide's on/off switch for ``caching``
    cache_control_injection_points:  # provider prompt-cache markers to inject
    hooks:                           # user hook files and the functions they define
    litellm_settings:                # LiteLLM: cache, cache_params, enable_prometheus, ...
    proxy:                           # host, port, workers, max_upstream_connections
    general_settings:                # master_key, virtual_keys, max_request_bytes,
                                     # request_body_timeout, request_header_timeout,
                                     # hook_timeout
    router_settings:                 # LiteLLM: allowed_fails, cooldown_time, num_retries,
                                     # fallbacks (and context_window_, content_policy_,
                                     # default_, max_fallbacks; a misspelling refused;
                                     # others warned, ignored)
    environment_variables:           # LiteLLM: exported by load_config, as LiteLLM does

Rules the loader keeps:

* **Errors name the YAML path** (``model_list[1].litellm_params.model``) and, for a
  misspelt key, suggest the nearest known one (``did you mean 'caching'?``). Every error is
  a :class:`~deja.errors.ConfigError`; no partly-valid configuration is ever returned.
* **``os.environ/NAME``** in any string value is replaced by that environment variable at
  load time (a whole value, as in LiteLLM, or inside a longer string). A missing variable is
  an error naming the path and the variable.
* **Secrets never appear in messages**: a value that came from the environment, or sits
  under a secret-looking key (``api_key``, ``password``, ``master_key``, ``key``...), is
  described by its type only. Reprs of the settings mask them too.
* **LiteLLM keys deja does not implement** (``set_verbose``, ``router_settings``, the
  ``general_settings`` of LiteLLM's reference...) are not errors: they are gathered into one
  warning in :attr:`Settings.warnings`, which :func:`load_config` logs once. Keys that are
  neither deja's nor LiteLLM's are errors.
* **The environment, as LiteLLM reads it**: a redis / redis_semantic block that names no
  server takes it from ``REDIS_URL``, ``REDIS_CLUSTER_NODES``, ``REDIS_SENTINEL_NODES`` or
  ``REDIS_HOST`` (with ``REDIS_PORT``, ``REDIS_DB``), and any option it leaves unset from
  ``REDIS_PASSWORD``, ``REDIS_USERNAME``, ``REDIS_SSL``...; qdrant_semantic without
  ``qdrant_api_base`` reads ``QDRANT_URL`` / ``QDRANT_API_BASE`` and ``QDRANT_API_KEY``.
  What the block says wins.

Cache back-ends plug in through a registry of cache types (:class:`CacheTypeRegistry`):
each registers a canonical name, aliases, typed :class:`Option`\\ s and a factory that builds
its :class:`~deja.stores.base.Store`. The module owns one default registry (the single
piece of module-level state here, deliberately: back-ends register into it the way codecs
register with :mod:`codecs`); tests and embedders can pass their own to
:func:`parse_config`.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any, Final, Literal, overload
from urllib.parse import quote

import yaml

from deja._transport import header_text
from deja.controls import CacheMode, parse_controls
from deja.errors import ConfigError, ControlError, InvalidRequestError
from deja.keys import check_key_prefix, request_builder
from deja.policy import Admission, AdmissionPolicy
from deja.providers.planner import check_injection_point
from deja.request import (
    PROVIDER_ALIASES,
    PROVIDER_API_BASES,
    RequestKind,
    check_params,
    env_api_base,
    is_openais,
    normalize_api_base,
    resolve_model,
    with_provider,
)
from deja.stores.base import MAX_TTL, Store

if TYPE_CHECKING:
    from deja._async.cache import AsyncCache
    from deja._sync.cache import Cache
    from deja.metrics import Metrics
    from deja.prices import PriceTable

__all__ = [
    "CacheMode",
    "CacheType",
    "CacheTypeRegistry",
    "CachingSettings",
    "DEFAULT_COMPRESS_MIN_BYTES",
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_MAX_ENTRY_BYTES",
    "DEFAULT_MAX_FALLBACKS",
    "DEFAULT_MAX_REQUEST_BYTES",
    "FallbackSettings",
    "GeneralSettings",
    "HookSpec",
    "ModelDeployment",
    "model_name_pattern",
    "Option",
    "ProxySettings",
    "Settings",
    "StoreFactory",
    "StoreSpec",
    "VirtualKey",
    "build_cache",
    "cache_types",
    "load_callable",
    "load_config",
    "parse_config",
    "register_cache_type",
    "tiered_bus_url",
    "tiered_bus_urls",
]

logger = logging.getLogger(__name__)

DEFAULT_KEY_PREFIX: Final = "deja:"
DEFAULT_MAX_ENTRY_BYTES: Final = 4 * 2**20
DEFAULT_COMPRESS_MIN_BYTES: Final = 4096
# the cache's own lock defaults (deja.Cache's lock_ttl, lock_wait; a test keeps them equal)
_DEFAULT_LOCK_TTL: Final = 30.0
_DEFAULT_LOCK_WAIT: Final = 600.0
DEFAULT_MAX_REQUEST_BYTES: Final = 10 * 2**20
DEFAULT_REQUEST_BODY_TIMEOUT = 60.0
"""Seconds a caller has to send a whole request body (a stalled body holds a connection)."""


# --------------------------------------------------------------------------- key tables
#
# Each section lists the keys deja implements and, separately, the LiteLLM keys it accepts
# without implementing them. The second list exists so that a LiteLLM config runs (with one
# warning) while a typo in a deja key still fails with a suggestion. The LiteLLM lists come
# from LiteLLM's proxy documentation ("config_settings", "caching_settings").
#
# The keys deja implements carry a one-line description each: the configuration reference
# (docs/configuration.md) is generated from these tables and from the cache types' Options
# by scripts/config_reference.py, and a test keeps the page current.


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _keys(**docs: str) -> Mapping[str, str]:
    """A section's keys, in order, each with its one-line description (read-only)."""
    return MappingProxyType(docs)


_TOP_KEYS: Final = _keys(
    model_list="The deployments: each a model_name, its litellm_params and model_info.",
    caching="deja's cache block: a cache type, its options and the keys shared by all.",
    cache_responses=(
        "true builds the cache (from caching, else litellm_settings.cache_params);"
        " false switches a caching block off."
    ),
    cache_control_injection_points=(
        "Where to place provider prompt-cache markers (cache_control) in every request."
    ),
    hooks="Hook files and the functions they define.",
    litellm_settings="LiteLLM's settings: the cache switch, cache_params, metrics, fallbacks.",
    proxy="Where `deja serve` listens, and its workers and upstream connections.",
    general_settings="The master key, virtual keys, and limits on requests.",
    router_settings="LiteLLM's router: retries, cooldowns and fallbacks across model names.",
    environment_variables=(
        "Set in the process environment before anything else is read (LiteLLM's)."
    ),
)
_TOP_LITELLM_IGNORED: Final = _words("""
    callback_settings guardrails include files_settings assistant_settings
    finetune_settings credential_list mcp_servers mcp_tools vector_store_registry prompts
    search_tools model_group_settings batch_settings
""")

# Keys of a ``caching`` block (and of ``cache_params``) that belong to the cache itself;
# anything else is an option of the chosen back-end.
_CACHING_KEYS: Final = _keys(
    type=(
        "The cache type (below). Unset: memory in caching, redis in LiteLLM's cache_params"
        " (whose local has entries live 600 s unless a ttl is set)."
    ),
    ttl=(
        "Seconds an entry lives (unset: until evicted); a nested block's ttl is folded in"
        " (the shorter wins)."
    ),
    key_prefix="The first part of every key; change it to invalidate every entry at once.",
    namespace="The namespace of requests that name none (entries of one never serve another).",
    key_builder=(
        "A function that builds keys: 'module.function', 'module:function' or"
        " 'file.py:function' (LiteLLM's form too); a plain def (an async one is refused),"
        " held to general_settings.hook_timeout as a sync hook is."
    ),
    similarity_threshold=(
        "Cosine similarity a semantic hit needs, on the embedding model's scale (semantic"
        " types only)."
    ),
    params="The semantic tier's settings: the keys of the params table below.",
    max_entry_bytes="Largest encoded entry stored; a larger answer is served, not stored.",
    compress_min_bytes="Entries at least this long are stored zlib-compressed (0: all).",
    store_truncated=(
        "Store answers that stopped at max_tokens (finish_reason: length); false serves"
        " them uncached."
    ),
    mode=(
        "LiteLLM's cache mode: default_on caches every request, default_off only those that"
        " opt in (use-cache: true)."
    ),
    lock_ttl=(
        "Seconds a cross-process lock (disk, redis: one upstream call for identical misses"
        " in several workers) outlives a holder that died: its waiters' stall (>= 1)."
    ),
    lock_wait=(
        "Most seconds a miss waits for another process's identical call before calling"
        " upstream itself (0: never waits)."
    ),
)
# Keys of ``params``: what the semantic tier reads (build_semantic, cache_kwargs). One
# more is set by the loader only: ``headers``, those of a model_list embedding deployment.
_SEMANTIC_PARAMS: Final = _keys(
    embedding_model=(
        "local (the default: the embedded offline model), an OpenAI-compatible model, or a"
        " model_list model_name (embeds through that deployment)."
    ),
    dimensions="Vector size of a remote model deja does not know (sent upstream).",
    api_base="OpenAI-compatible embeddings endpoint of a remote model.",
    api_key="API key of that endpoint.",
    timeout="Seconds per call to a remote embedding model (default 5).",
    max_strikes="Wrong-answer reports before an entry leaves the tier (default 2).",
    strike_penalty="Similarity each report adds to what the entry needs (default 0.05).",
    semantic_save_interval=(
        "Seconds between saves (and merges) of an in-process index kept in a directory"
        " (default 60)."
    ),
    max_entries=(
        "Bound of the in-process index, type semantic only (default: as many as a memory"
        " store keeps, at most 100,000; the oldest go first)."
    ),
)
# ``params`` keys that only an OpenAI-compatible embedding model uses (not the local one).
_REMOTE_EMBEDDER_PARAMS: Final = _words("dimensions api_base api_key timeout")
_LOCAL_EMBEDDING_MODEL: Final = "local"
# the in-process semantic index's bound when neither params nor the store sets one
_SEMANTIC_MAX_ENTRIES: Final = 100_000
# LiteLLM ``cache_params`` keys deja maps onto its own settings.
_CACHE_PARAMS_MAPPED: Final = _keys(
    default_in_memory_ttl="Replaces ttl when the type is memory (local); ignored otherwise.",
    default_in_redis_ttl="Replaces ttl when the type is redis or redis_semantic.",
    supported_call_types=(
        "The call types whose answers are stored (acompletion, atext_completion,"
        " aembedding...; unset: all); other routes bypass the cache."
    ),
    redis_semantic_cache_embedding_model="params.embedding_model of a redis_semantic cache.",
    qdrant_semantic_cache_embedding_model="params.embedding_model of a qdrant_semantic cache.",
    semantic_cache_embedding_timeout="params.timeout of a semantic cache's remote model.",
)
# Every other ``cache_params`` key LiteLLM knows. A key here that is also an option of the
# chosen back-end (``host`` for redis, ``disk_cache_dir`` for disk) is used as that option;
# otherwise it is listed in the start-up warning.
_CACHE_PARAMS_LITELLM: Final = _words("""
    host port password username url db ssl ssl_cert_reqs ssl_check_hostname ssl_ca_certs
    max_connections socket_timeout redis_flush_size redis_startup_nodes service_name
    sentinel_nodes sentinel_password gcp_service_account gcp_ssl_ca_certs
    redis_semantic_cache_use_async redis_semantic_cache_index_name
    qdrant_api_base qdrant_api_key qdrant_collection_name qdrant_quantization_config
    qdrant_semantic_cache_vector_size
    s3_bucket_name s3_region_name s3_api_version s3_use_ssl s3_verify s3_endpoint_url
    s3_aws_access_key_id s3_aws_secret_access_key s3_aws_session_token s3_config s3_path
    gcs_bucket_name gcs_path_service_account gcs_path azure_account_url azure_blob_container
    disk_cache_dir disable_copilot_system_to_assistant
    azure_redis_ad_token azure_client_id azure_tenant_id azure_client_secret
    ssl_certfile ssl_keyfile ssl_password ssl_ca_path ssl_ca_data ssl_min_version ssl_ciphers
    ssl_validate_ocsp socket_keepalive socket_keepalive_options retry_on_timeout
    health_check_interval encoding encoding_errors decode_responses unix_socket_path
    single_connection_client protocol
""")
# The redis-py options above that deja's Redis client cannot apply and whose absence
# changes what happens (a server that requires a client certificate refuses deja).
_REDIS_TLS_CLIENT_CERT: Final = _words("ssl_certfile ssl_keyfile ssl_password")

# "callbacks" and friends are read for "prometheus" (which turns metrics on); other
# callback names are listed in the warning.
_LITELLM_SETTINGS_KEYS: Final = _keys(
    cache="LiteLLM's cache switch: true builds the cache from cache_params.",
    cache_params="LiteLLM's cache block: the keys of caching (its type defaults to redis).",
    enable_prometheus="false stops serving /metrics (served unless set so).",
    callbacks=(
        '"prometheus" among them turns /metrics on; other names are warned about and ignored.'
    ),
    success_callback="As callbacks.",
    failure_callback="As callbacks.",
    require_auth_for_metrics_endpoint="/metrics takes a valid key (default false).",
    fallbacks="As router_settings', which wins when it gives them too.",
    context_window_fallbacks="As router_settings', which wins when it gives them too.",
    content_policy_fallbacks="As router_settings', which wins when it gives them too.",
    default_fallbacks="As router_settings', which wins when it gives them too.",
    max_fallbacks="As router_settings', which wins when it gives it too.",
)
_LITELLM_SETTINGS_IGNORED: Final = _words("""
    service_callback service_callbacks turn_off_message_logging redact_user_api_key_info
    langfuse_default_tags set_verbose json_logs drop_params modify_params num_retries
    request_timeout force_ipv4 mcp_aliases enable_preview_features
    disable_end_user_cost_tracking disable_end_user_cost_tracking_prometheus_only
    key_generation_settings disable_add_transform_inline_image_block
    disable_hf_tokenizer_download enable_json_schema_validation
    enable_key_alias_format_validation disable_copilot_system_to_assistant
    use_chat_completions_url_for_anthropic_messages max_budget budget_duration
    max_internal_user_budget internal_user_budget_duration default_team_settings
    default_internal_user_params upperbound_key_generate_params default_key_generate_params
    public_teams telemetry upstream_fallbacks guardrails priority_reservation
    presidio_ad_hoc_recognizers allowed_fails callback_settings return_response_headers
    enable_caching_on_provider_specific_optional_params max_end_user_budget ssl_verify
    redact_messages_in_exceptions cache_kwargs
""")

_PROXY_KEYS: Final = _keys(
    host="Address to listen on.",
    port="Port to listen on.",
    workers="Worker processes.",
    graceful_shutdown_seconds=(
        "Seconds a stop waits for the requests in flight (those still running then get a 503)."
    ),
    max_upstream_connections=(
        "Calls a worker has in flight to one upstream at once (others wait for a slot)."
    ),
)

_GENERAL_KEYS: Final = _keys(
    master_key=("The admin key (unset: LITELLM_MASTER_KEY; none: the proxy checks no key at all)."),
    virtual_keys="Tenants' API keys: a list of {key, tenant, models} (needs a master_key).",
    max_request_bytes="Largest request body accepted (larger: 413).",
    max_request_size_mb="LiteLLM's name for the same limit, in MiB (keep one).",
    request_body_timeout="Seconds a caller has to send a whole request body.",
    request_header_timeout=(
        "Seconds a caller has to send a request's line and headers (deja serve only)."
    ),
    hook_timeout=(
        "Seconds an async pre-LLM or post-cache hook has to finish (past them: as one that"
        " raised). A sync hook cannot be stopped: one that ran longer is logged, as is a key"
        " builder (always sync) that did."
    ),
)
_GENERAL_LITELLM_IGNORED: Final = _words("""
    completion_model store_prompts_in_spend_logs forward_client_headers_to_llm_api
    disable_spend_logs disable_spend_updates disable_master_key_return
    disable_retry_on_max_parallel_request_limit_error disable_reset_budget
    disable_adding_master_key_hash_to_db disable_responses_id_security enable_jwt_auth
    enforce_user_param reject_clientside_metadata_tags allowed_routes key_management_system
    key_management_settings maximum_spend_logs_retention_period
    maximum_spend_logs_retention_interval user_mcp_management_mode database_url
    database_connection_pool_limit database_connection_timeout
    allow_requests_on_db_unavailable custom_auth custom_key_generate max_parallel_requests
    global_max_parallel_requests infer_model_from_keys background_health_checks
    health_check_interval health_check_details alerting alerting_threshold alert_types
    alert_to_webhook_url use_client_credentials_pass_through_routes max_response_size_mb
    proxy_batch_write_at proxy_budget_rescheduler_min_time
    proxy_budget_rescheduler_max_time store_model_in_db ui_access_mode public_routes
    admin_only_routes pass_through_endpoints enable_oauth2_auth litellm_jwtauth
    supported_db_objects allowed_ips enforced_params user_header_name
    disable_prisma_schema_update spend_report_frequency
    use_x_forwarded_for service_account_settings image_generation_model
    proxy_batch_polling_interval alerting_args embedding_model default_team_disabled
    allow_user_auth user_api_key_cache_ttl litellm_key_header_name moderation_model
    custom_sso allow_client_side_credentials use_azure_key_vault use_google_kms
    litellm_license oauth2_config_mappings enable_oauth2_proxy_auth forward_openai_org_id
    plugins coordination_redis control_plane_url database_connect_timeout
    database_socket_timeout database_extra_connection_params
    database_disable_prepared_statements database_type database_args otel
    max_batch_file_size_mb proxy_config_reload_interval_seconds cancel_on_disconnect
    health_check_concurrency health_check_skip_disabled_background_models
    background_health_check_model_groups model_list_healthy_only enable_public_model_hub
    pass_through_request_timeout user_header_mappings disable_auto_add_proxy_admin_to_teams
    scheduled_job_stagger maximum_autorouter_session_retention_period
    maximum_health_check_retention_period use_spend_logs_partitioning
    maximum_spend_logs_cleanup_batch_size maximum_spend_logs_cleanup_max_batches
    maximum_spend_logs_cleanup_run_budget maximum_spend_logs_cleanup_batch_timeout
    mcp_internal_ip_ranges mcp_trusted_proxy_ranges mcp_xff_num_trusted_hops
    trusted_proxy_ranges mcp_required_fields disable_budget_reservation
    apply_user_budget_to_team_keys user_url_validation user_url_allowed_hosts
    provider_url_destination_allowed_hosts allow_cli_sso_verification_uri_complete
    routing_strategy num_retries
""")
# The general_settings list is LiteLLM's reference table plus the fields of its
# ConfigGeneralSettings model; the last line holds router_settings keys that configs in the
# wild put in general_settings, where LiteLLM ignores them too.

# router_settings: what deja reads (the cooldown of a failing deployment, retries, the
# fallbacks across model names), and the others of LiteLLM's Router (its constructor's
# arguments, and its reference table's), warned about and ignored. A key that is neither,
# near one deja reads, is refused as the misspelling it is (num_retires left retries at
# their default); max_retries is no router setting (LiteLLM drops it, unknown, as every
# other), but litellm_params' name for them.
_ROUTER_KEYS: Final = _keys(
    allowed_fails=(
        "Failures of a deployment in a row after which it cools down, when its model name"
        " has another deployment (0: never); counted by each worker on its own."
    ),
    cooldown_time="Seconds a cooled-down deployment is tried only after its model name's others.",
    num_retries="Retries of each deployment that names no max_retries of its own.",
    fallbacks=(
        '[{"name": [fallback names]}]: tried in order when every deployment of a name'
        ' failed ("*": any name without an entry).'
    ),
    context_window_fallbacks="Tried instead when the upstream refuses a request as too long.",
    content_policy_fallbacks="Tried instead when the upstream refuses a request by its policy.",
    default_fallbacks="The fallbacks of a name that has none of its own.",
    max_fallbacks="Fallback names one request tries at most (0: none).",
)
# LiteLLM's fallbacks across model names: router_settings' or, when it names none of a
# kind, litellm_settings' (LiteLLM's Router reads ``fallbacks or litellm.fallbacks``)
_FALLBACK_KINDS: Final = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")
_FALLBACK_OPTIONS: Final = ("default_fallbacks", "max_fallbacks")
_ROUTER_LITELLM_IGNORED: Final = _words("""
    assistants_config search_tools redis_url redis_host redis_port redis_password redis_db
    cache_responses cache_kwargs caching_groups client_ttl polling_interval default_priority
    timeout stream_timeout default_litellm_params default_max_parallel_requests
    set_verbose debug_level model_group_alias enable_pre_call_checks enable_pre_call_check
    enable_tag_filtering tag_filtering_match_any retry_after retry_policy
    model_group_retry_policy allowed_fails_policy disable_cooldowns routing_strategy
    optional_pre_call_checks routing_strategy_args provider_budget_config alerting_config
    router_general_settings ignore_invalid_deployments deployment_affinity_ttl_seconds
    guardrail_list routing_groups
""")

_DEPLOYMENT_KEYS: Final = _keys(
    model_name=(
        "The name clients ask for (required); several entries of one name share its"
        ' requests; "*" and "openai/*" match names.'
    ),
    litellm_params="How to reach the model and its default request parameters (required).",
    model_info="Kept as written; the price fields in it override the packaged prices.",
)

# The deployment's default request parameters: merged into every chat / text completion
# sent to it (the caller's own values win), as LiteLLM does, and keyed. LiteLLM's
# litellm_params take "all params accepted by litellm.completion()": its request
# parameters (the first three lines: OpenAI's), and provider-specific ones it passes on in
# the body as they are, of which these are the documented common ones (the last line;
# deja's adapters translate top_k and safety_settings, and pass the others on too).
DEPLOYMENT_DEFAULTS: Final = _words("""
    temperature top_p max_tokens max_completion_tokens seed stop reasoning_effort
    response_format frequency_penalty presence_penalty thinking n logit_bias logprobs
    top_logprobs tools tool_choice parallel_tool_calls functions function_call user
    modalities audio prediction web_search_options
    top_k min_p repetition_penalty safety_settings keep_alive num_ctx
""")
_DEPLOYMENT_DEFAULTS_DOC: Final = (
    "Default request parameters: sent in every chat and text completion under the"
    " caller's own values, and keyed."
)
# litellm_params kept for the provider layer (validated in _litellm_params). The price
# names are LiteLLM's per-token ones, which deja.prices accepts as overrides. extra_body
# holds more default request parameters (LiteLLM merges it into the body).
_LITELLM_SETTINGS_KEPT: Final = _keys(
    model=(
        "The upstream model, provider/model (required); a * in it takes what model_name's"
        " * matched."
    ),
    api_base="The provider's endpoint (required for azure/, hosted_vllm/... without one).",
    api_key="The provider's key (unset: its environment variable, e.g. OPENAI_API_KEY).",
    api_version="Azure's API version (put in the deployment's URL).",
    organization="Sent as the OpenAI-Organization header.",
    timeout="Seconds per call.",
    stream_timeout="Seconds per streamed call (unset: timeout).",
    max_retries=(
        "Retries of a failing call before the next deployment (unset: router_settings'"
        " num_retries, else none)."
    ),
    extra_headers="Headers sent with every call.",
    custom_llm_provider="The provider, prefixed to model unless model starts with it.",
    aws_access_key_id="Bedrock: the access key id that signs calls (SigV4).",
    aws_secret_access_key="Bedrock: its secret key.",
    aws_session_token="Bedrock: a session token for temporary credentials.",
    aws_region_name="Bedrock: the region called.",
    aws_profile_name="Bedrock: the AWS profile whose credentials sign calls.",
    aws_bearer_token_bedrock="Bedrock: an API key, sent instead of a SigV4 signature.",
    vertex_project="Vertex AI: the project.",
    vertex_location="Vertex AI: the region.",
    vertex_credentials=(
        "Vertex AI: a service account's key file or its JSON (unset:"
        " GOOGLE_APPLICATION_CREDENTIALS)."
    ),
    vertex_token_uri=(
        "Vertex AI: where the service account's access token is fetched (unset:"
        " VERTEXAI_TOKEN_URI, else the key file's token_uri)."
    ),
    cache_control_injection_points="This deployment's prompt-cache markers (as the top level's).",
    input_cost_per_token="Price override, USD per input token (LiteLLM's name).",
    output_cost_per_token="Price override, USD per output token.",
    cache_read_input_token_cost="Price override, USD per cached input token read.",
    cache_creation_input_token_cost="Price override, USD per input token written to a cache.",
    cache_creation_input_token_cost_above_1hr=(
        "Price override, USD per input token written to a cache for an hour."
    ),
    allow_storage_urls=(
        "Let requests name s3:// and gs:// files, read with the deployment's credentials"
        " (default false: a 400)."
    ),
    rpm="Share of its model name's requests, when weight is unset (LiteLLM's simple-shuffle).",
    tpm="Share of its model name's requests, when weight and rpm are unset.",
    weight="Share of its model name's requests (0: drained, never tried).",
    order="Priority among its model name's deployments: lower values are tried first.",
)
# litellm_params beside the settings above and the request parameters
_LITELLM_PARAMS_OTHER: Final = _keys(
    extra_body="More default request parameters, merged into the body (any name).",
    num_retries="LiteLLM's name for max_retries (keep one).",
)
_LITELLM_PARAMS_KEPT: Final = (*_LITELLM_SETTINGS_KEPT, "extra_body", *DEPLOYMENT_DEFAULTS)
# litellm_params that the client sends as headers (or signs requests with): checked as
# header values. vertex_credentials is not one (a service account's JSON, or its file).
_HEADER_PARAMS: Final = _words("""
    api_key organization aws_access_key_id aws_secret_access_key aws_session_token
    aws_bearer_token_bedrock
""")
# (stream and stream_options: a default stream would answer every plain call with one)
_LITELLM_PARAMS_IGNORED: Final = _words("""
    stream stream_options max_parallel_requests input_cost_per_second
    output_cost_per_second mock_response drop_params additional_drop_params
    region_name base_model tags max_budget budget_duration
    merge_reasoning_content_in_choices use_in_pass_through use_litellm_proxy
    litellm_credential_name configurable_clientside_auth_params max_file_size_mb headers
    azure_ad_token azure_ad_token_provider tenant_id client_id client_secret
    azure_username azure_password aws_role_name aws_session_name
    aws_web_identity_token aws_bedrock_runtime_endpoint watsonx_region_name
    auto_router_config auto_router_config_path auto_router_default_model
    auto_router_embedding_model
""")

# Providers with no endpoint of their own (an Azure resource, a self-hosted vLLM or
# llama.cpp): a deployment names one, or the environment does. Bedrock and Vertex AI have
# none either, but the client derives theirs from the region.
_NEEDS_API_BASE: Final = frozenset(
    provider
    for provider, base in PROVIDER_API_BASES.items()
    if base is None and provider not in ("bedrock", "vertex_ai")
)

_INJECTION_KEYS: Final = _keys(
    location="message or tool (LiteLLM's tool_config: tool): what the marker goes on.",
    role="The messages of this role (system, developer, user, assistant, tool); message only.",
    index="The message at this index (negative: from the end).",
    last="The last N messages.",
    ttl="The marker's lifetime: 5m or 1h.",
    control="The marker itself, {type: ephemeral, ttl: 5m or 1h}.",
)
# tool_config: LiteLLM's name for a Bedrock tool point, an alias of tool
_INJECTION_LOCATIONS: Final = _words("message tool tool_config")
_MESSAGE_ROLES: Final = _words("system developer user assistant tool")

_HOOK_KEYS: Final = _keys(
    path=(
        "The hook file, a .py path relative to the config file (required). LiteLLM's bundled"
        " anthropic_cache_control_hook.py, when no such file is there, is skipped with a"
        " warning: cache_control_injection_points place the markers by themselves."
    ),
    async_pre_llm_hook=(
        "f(body) -> body: may change a request before it is keyed and sent (given the"
        " caller's tenant= if it declares a tenant parameter or **kwargs)."
    ),
    async_post_cache_hook=(
        "f(response, request) -> options or None: cache options (tags, ttl) for the entry"
        ' (given tenant= as the pre-LLM hook is). For embeddings, `request["input"]` holds'
        " the inputs of the answer's items, in their order (not those served from the cache)."
    ),
    key_builder="A key builder, as caching.key_builder (one of the two).",
)
_HOOK_FUNCTIONS: Final = tuple(key for key in _HOOK_KEYS if key != "path")

_VIRTUAL_KEY_KEYS: Final = _keys(
    key="The API key a caller sends (required).",
    tenant="The tenant it maps to: its entries are its own (required).",
    models="The model names it may use (patterns too; unset or empty: all).",
)

# Cache types deja knows of but cannot build in this version: named in the error so a
# LiteLLM user reads "not available yet" rather than "unknown". Registering one of these
# names makes it available; the registry is always asked first.
_PLANNED_TYPES: Final = _words("""
    redis-cluster
""")
# Cache types whose cache gets the in-process semantic tier (the exact tier's store is
# built by the type's factory; the tier itself from similarity_threshold and params).
_SEMANTIC_TYPES: Final = frozenset({"semantic", "redis_semantic", "qdrant_semantic"})
_UNSUPPORTED_TYPES: Final = _words("gcs azure-blob azure_blob")

# LiteLLM's proxy defaults ``cache_params.type`` to redis (proxy_server.py), not to local.
_LITELLM_DEFAULT_TYPE: Final = "redis"
_NATIVE_DEFAULT_TYPE: Final = "memory"
# LiteLLM's in-memory cache keeps an entry written without a TTL for 600 s
# (InMemoryCache's default_ttl); deja's memory store keeps it until evicted.
_LITELLM_MEMORY_TTL: Final = 600.0

_ENV_PREFIX: Final = "os.environ/"
_ENV_REFERENCE: Final = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")
# Keys whose values are treated as secrets even when written inline (a bearer token's name
# may go on: aws_bearer_token_bedrock; an AWS access key id names the secret's owner), but
# not a price per token (input_cost_per_token)
_SECRET_NAME: Final = re.compile(
    r"(?:^|(?<!per)_)(?:key|password|secret|token|credentials|authorization)$"
    r"|(?:^|_)bearer_token(?:_|$)|(?:^|_)access_key_id$",
    re.IGNORECASE,
)
_INDEX_SUFFIX: Final = re.compile(r"\[\d+\]")
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOTTED: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

# --------------------------------------------------------------------------- registry


@dataclass(frozen=True, slots=True, kw_only=True)
class Option:
    """One typed option of a cache back-end, as it may appear in YAML.

    ``types`` lists the accepted Python types: ``str``, ``int``, ``float`` (an int is
    accepted and converted), ``bool``, ``list``, ``dict``, :class:`~pathlib.Path` (a string
    resolved against the configuration file's directory) and :class:`StoreSpec` (a nested
    cache block, for back-ends made of other stores). ``default`` is used when the key is
    absent or null; ``None`` means "the back-end's own default". ``aliases`` are other
    names for the same option (LiteLLM's ``disk_cache_dir`` for disk's ``directory``).
    ``validator`` receives the typed value and returns it (possibly normalized) or raises
    :class:`ValueError` with a short reason. ``secret`` keeps the value out of messages.
    """

    types: type[object] | tuple[type[object], ...]
    default: object = None
    required: bool = False
    aliases: tuple[str, ...] = ()
    validator: Callable[[Any], object] | None = None
    secret: bool = False
    doc: str = ""

    @property
    def accepted(self) -> tuple[type[object], ...]:
        """``types`` as a tuple."""
        return self.types if isinstance(self.types, tuple) else (self.types,)


StoreFactory = Callable[[Mapping[str, object]], Store]
"""Builds a back-end's store from its validated options (option name → value)."""


@dataclass(frozen=True, slots=True)
class CacheType:
    """A registered cache type: its canonical name, aliases, options and store factory."""

    name: str
    factory: StoreFactory = field(repr=False)
    options: Mapping[str, Option] = field(repr=False)
    aliases: tuple[str, ...] = ()
    doc: str = ""

    def option_keys(self) -> tuple[str, ...]:
        """Every YAML key this type's options answer to (names and aliases)."""
        keys: list[str] = []
        for name, option in self.options.items():
            keys.append(name)
            keys.extend(option.aliases)
        return tuple(keys)


class CacheTypeRegistry:
    """Cache types by name: each back-end registers its name, options and store factory.

    ``CacheTypeRegistry()`` starts with deja's built-in types (``memory``, ``disk``),
    registered on first use so that creating a registry imports no store module;
    ``CacheTypeRegistry(builtins=False)`` starts empty. Names and aliases are matched
    case-insensitively.
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._types: dict[str, CacheType] = {}
        self._by_alias: dict[str, str] = {}
        self._pending_builtins = builtins
        self._installing = False
        # Re-entrant: the built-ins are installed through register(), which checks again.
        self._lock = threading.RLock()

    def _ensure_builtins(self) -> None:
        if not self._pending_builtins:
            return
        with self._lock:
            if self._pending_builtins and not self._installing:
                self._installing = True
                try:
                    _register_builtins(self)
                finally:
                    self._installing = False
                # Cleared only once every built-in is in, so a concurrent reader waits on
                # the lock instead of seeing half a registry.
                self._pending_builtins = False

    def register(
        self,
        name: str,
        *,
        factory: StoreFactory,
        options: Mapping[str, Option],
        aliases: Sequence[str] = (),
        doc: str = "",
    ) -> CacheType:
        """Register a cache type; raise :class:`ValueError` if a name or key collides.

        Option names may not reuse the keys every cache block shares (``type``, ``ttl``,
        ``key_prefix``...), so a YAML key always has one meaning.
        """
        self._ensure_builtins()
        canonical = _normal_type_name(name)
        if not canonical:
            raise ValueError("a cache type needs a non-empty name")
        names = [canonical, *(_normal_type_name(a) for a in aliases)]
        for candidate in names:
            if candidate in self._types or candidate in self._by_alias:
                raise ValueError(f"cache type name {candidate!r} is already registered")
        if len(set(names)) != len(names):
            raise ValueError(f"cache type {canonical!r} lists a name twice")
        seen: set[str] = set()
        for option_name, option in options.items():
            for key in (option_name, *option.aliases):
                if key in _CACHING_KEYS or key in _CACHE_PARAMS_MAPPED:
                    raise ValueError(
                        f"option {key!r} of cache type {canonical!r} clashes with a shared "
                        "caching key"
                    )
                if key in seen:
                    raise ValueError(f"option key {key!r} of {canonical!r} is used twice")
                seen.add(key)
        cache_type = CacheType(
            name=canonical,
            factory=factory,
            options=dict(options),
            aliases=tuple(names[1:]),
            doc=doc,
        )
        self._types[canonical] = cache_type
        for alias in names[1:]:
            self._by_alias[alias] = canonical
        return cache_type

    def get(self, name: str) -> CacheType | None:
        """The cache type called ``name`` (canonical name or alias), or ``None``."""
        self._ensure_builtins()
        key = _normal_type_name(name)
        return self._types.get(self._by_alias.get(key, key))

    def names(self) -> list[str]:
        """The canonical names of every registered type, sorted."""
        self._ensure_builtins()
        return sorted(self._types)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def create(self, name: str, options: Mapping[str, object]) -> Store:
        """Build a store of type ``name`` from already validated ``options``."""
        cache_type = self.get(name)
        if cache_type is None:
            raise ConfigError(f"unknown cache type {name!r}; available: {self.describe()}")
        return cache_type.factory(options)

    def describe(self) -> str:
        """The available types for a message: ``disk, memory (also: local, ...)``."""
        self._ensure_builtins()
        parts = []
        for name in sorted(self._types):
            aliases = self._types[name].aliases
            parts.append(f"{name} (also: {', '.join(aliases)})" if aliases else name)
        return ", ".join(parts) if parts else "none registered"


def _normal_type_name(name: str) -> str:
    return name.strip().lower()


def _positive(value: Any) -> object:
    if value <= 0:
        raise ValueError("must be greater than 0")
    return value


def _memory_factory(options: Mapping[str, object]) -> Store:
    # Imported here so that loading a configuration imports only the stores it uses.
    from deja.stores.memory import MemoryStore

    # An unset option (None) leaves the store's own default in force.
    kwargs: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    return MemoryStore(**kwargs)


def _eviction_policy(value: Any) -> object:
    from deja.stores.disk import EVICTION_POLICIES

    if value not in EVICTION_POLICIES:
        raise ValueError(f"must be one of {', '.join(EVICTION_POLICIES)}")
    return value


def _disk_factory(options: Mapping[str, object]) -> Store:
    from deja.stores.disk import DiskStore

    directory = options["directory"]
    if not isinstance(directory, Path):  # the Option's type guarantees it; keeps mypy honest
        raise TypeError(f"disk directory must be a Path, not {type(directory).__name__}")
    kwargs: dict[str, Any] = {
        k: v for k, v in options.items() if k != "directory" and v is not None
    }
    # the store opens on first use: a directory it can never write is said now, at start,
    # not as a miss on every request
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the disk cache directory {str(directory)!r}: "
            f"{exc.strerror or exc} ({_RELATIVE_NOTE})",
            path="caching.directory",
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(
            f"the disk cache directory {str(directory)!r} is not writable", path="caching.directory"
        )
    return DiskStore(directory, **kwargs)


def _s3_factory(options: Mapping[str, object]) -> Store:
    from deja.stores.s3 import S3Store

    kwargs: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    try:
        return S3Store(**kwargs)
    except ValueError as exc:  # said at start as a config error, not as a traceback
        raise ConfigError(f"s3: {exc}") from None


def _non_empty(value: Any) -> object:
    if not value.strip():  # an empty environment variable, often
        raise ValueError("must not be empty")
    return value


def _redis_url_option(value: Any) -> object:
    """A Redis URL checked now, as a redis block's ``url`` is: a typo (``http://``) would
    otherwise fail every connection attempt, quietly, for as long as the process runs."""
    from urllib.parse import urlsplit

    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", value)
    scheme = found.group(1).lower() if found else ""
    if scheme not in ("redis", "rediss", "unix"):
        # the scheme only: the rest of the URL may hold a password
        raise ValueError(
            "expected a redis://, rediss:// or unix:// URL"
            + (f" (this one is {scheme}://)" if scheme else "")
        )
    if scheme != "unix":
        try:
            urlsplit(value).port  # noqa: B018 - parsed now, not at the first connection
        except ValueError:
            raise ValueError("the URL has no valid port") from None
    return value


def _s3_options() -> dict[str, Option]:
    """Options of the ``s3`` type; the aliases are LiteLLM's ``cache_params`` names."""
    return {
        "bucket": Option(
            types=str,
            required=True,
            aliases=("s3_bucket_name",),
            validator=_non_empty,
            doc="The bucket (it must exist: deja never creates one).",
        ),
        "prefix": Option(
            types=str, aliases=("s3_path",), doc="Folder in the bucket (gets a trailing /)."
        ),
        "region": Option(types=str, aliases=("s3_region_name",), doc="AWS region."),
        "endpoint_url": Option(
            types=str, aliases=("s3_endpoint_url",), doc="S3-compatible endpoint URL."
        ),
        "aws_access_key_id": Option(
            types=str, aliases=("s3_aws_access_key_id",), secret=True, doc="Access key id."
        ),
        "aws_secret_access_key": Option(
            types=str, aliases=("s3_aws_secret_access_key",), secret=True, doc="Secret key."
        ),
        "aws_session_token": Option(
            types=str, aliases=("s3_aws_session_token",), secret=True, doc="Session token."
        ),
        "use_ssl": Option(types=bool, aliases=("s3_use_ssl",), doc="Use TLS (default true)."),
        "verify": Option(
            types=(bool, str), aliases=("s3_verify",), doc="Check certificates, or a CA bundle."
        ),
        "max_pool_connections": Option(
            types=int, validator=_positive, doc="HTTP connections kept (default 32)."
        ),
        "connect_timeout": Option(
            types=float, validator=_positive, doc="Seconds to connect (default 1)."
        ),
        "read_timeout": Option(
            types=float, validator=_positive, doc="Seconds to wait for a reply (default 2)."
        ),
        "max_attempts": Option(
            types=int, validator=_positive, doc="Tries per request in all (default 2)."
        ),
    }


def _redis_factory(options: Mapping[str, object]) -> Store:
    from deja.stores.redis import RedisStore

    kwargs: dict[str, Any] = {k: v for k, v in options.items() if v is not None}
    if "sentinel_nodes" in kwargs:
        kwargs["sentinels"] = kwargs.pop("sentinel_nodes")
    try:
        return RedisStore(**kwargs)
    except ValueError as exc:  # options valid alone but contradictory together
        raise ConfigError(f"redis: {exc}") from None


class _ItemError(ValueError):
    """A validator's reason that concerns item ``index`` of a list option."""

    def __init__(self, reason: str, *, index: int) -> None:
        super().__init__(reason)
        self.index = index


# The redis parsers' messages name the rejected value; a validator gives only the reason,
# since _option_value adds the value (hidden when it is secret or read from the environment).
def _redis_port(value: Any) -> object:
    # LiteLLM configs often quote the port ("6379"), or read it from the environment.
    from deja.stores.redis import parse_port

    try:
        return parse_port(value)
    except ValueError:
        raise ValueError("expected a port number 1-65535") from None


def _redis_nodes(value: Any) -> object:
    from deja.stores.redis import parse_nodes

    if not value:  # (a store would take none for no cluster: a server on this machine)
        raise ValueError("expected at least one address (or leave it out)")
    nodes: list[tuple[str, int]] = []
    for index, spec in enumerate(value):
        try:
            nodes.extend(parse_nodes([spec]))
        except ValueError:
            raise _ItemError(
                "expected 'host:port', [host, port] or {host, port} with a port 1-65535",
                index=index,
            ) from None
    return nodes


def _tiered_factory(options: Mapping[str, object]) -> Store:
    from deja.stores.bus import InvalidationBus, LocalInvalidationBus
    from deja.stores.memory import MemoryStore
    from deja.stores.redis_bus import RedisInvalidationBus
    from deja.stores.tiered import TieredStore

    l1_spec, l2_spec = options.get("l1"), options["l2"]
    if not isinstance(l2_spec, StoreSpec) or not (
        l1_spec is None or isinstance(l1_spec, StoreSpec)
    ):
        raise TypeError("tiered l1/l2 must be cache blocks")  # the Options' types guarantee it
    if l1_spec is not None and l1_spec.type != "memory":
        raise ConfigError(
            f"the L1 of a tiered cache must be memory, not {l1_spec.type!r}", path="caching.l1.type"
        )
    l1 = l1_spec.build() if l1_spec is not None else MemoryStore(max_entries=5000)
    if not isinstance(l1, MemoryStore):
        raise ConfigError("the L1 of a tiered cache must be a memory store", path="caching.l1.type")
    urls = tiered_bus_urls(options)
    bus: InvalidationBus = RedisInvalidationBus(url=urls) if urls else LocalInvalidationBus()
    l1_ttl = options.get("l1_ttl") or (l1_spec.ttl if l1_spec is not None else None) or 300.0
    return TieredStore(l1=l1, l2=l2_spec.build(), l1_ttl=float(l1_ttl), bus=bus)  # type: ignore[arg-type]


def _l2_kind(l2: object) -> str:
    if isinstance(l2, StoreSpec) and l2.type == "redis" and l2.options.get("sentinel_nodes"):
        return "Redis behind Sentinel"
    return repr(l2.type) if isinstance(l2, StoreSpec) else "not Redis"


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _redis_semantic_factory(options: Mapping[str, object]) -> Store:
    """The exact tier of ``redis_semantic``: a RedisStore on the same server as the index."""
    return _redis_factory({k: v for k, v in options.items() if k != "index_name"})


def _semantic_factory(options: Mapping[str, object]) -> Store:
    from deja.stores.memory import MemoryStore

    spec = options.get("store")
    if isinstance(spec, StoreSpec):
        return spec.build()
    return MemoryStore()


def tiered_bus_url(options: Mapping[str, object]) -> str | None:
    """The Redis URL a ``tiered`` cache's L1 invalidations travel on (the first of
    :func:`tiered_bus_urls`), or ``None``: they would reach this process only (a
    Sentinel-managed or non-Redis L2)."""
    urls = tiered_bus_urls(options)
    return urls[0] if urls else None


def tiered_bus_urls(options: Mapping[str, object]) -> list[str]:
    """The Redis URLs a ``tiered`` cache's L1 invalidations travel on, in the order they
    are tried: its ``invalidation_url``, else its L2's when that is Redis (a standalone
    server, or each startup node of a cluster: pub/sub reaches every node, and when one
    fails over the bus moves on to the next). Empty for a Sentinel-managed or non-Redis
    L2."""
    url = options.get("invalidation_url")
    if url is not None:
        return [str(url)]
    l2 = options.get("l2")
    if not isinstance(l2, StoreSpec) or l2.type != "redis":
        return []
    return _redis_urls(l2.options)


def _redis_url(options: Mapping[str, object]) -> str | None:
    """The first of :func:`_redis_urls`, or ``None``."""
    urls = _redis_urls(options)
    return urls[0] if urls else None


def _redis_urls(options: Mapping[str, object]) -> list[str]:
    """redis:// URLs for a redis block (for the invalidation bus, the vector index): its
    server's, or each of a cluster's startup nodes'; none for Sentinel (the master moves:
    processes that resolved it at different times would publish and listen on different
    servers). Each carries the block's credentials and TLS options, as its store has them."""
    if options.get("sentinel_nodes"):
        return []
    nodes = options.get("startup_nodes")
    if nodes:
        return [
            _node_url({**options, "url": None, "host": host, "port": port, "db": None})
            for host, port in nodes  # type: ignore[attr-defined]  # parsed by _redis_nodes
        ]
    if isinstance(options.get("url"), str):
        return [_completed_url(str(options["url"]), options)]
    return [_node_url(options)]


def _url_auth(options: Mapping[str, object]) -> str:
    """A redis block's ``username``/``password`` as a URL's ``user:password@``, or ``""``."""
    from urllib.parse import quote

    user, password = options.get("username"), options.get("password")
    if not (user or password):
        return ""
    # every character escaped: a "/" or "@" in a password too
    auth = quote(str(user or ""), safe="")
    return auth + (f":{quote(str(password), safe='')}@" if password else "@")


def _url_tls(options: Mapping[str, object]) -> dict[str, str]:
    """A redis block's TLS options as URL query parameters (redis-py reads them there)."""
    return {
        name: str(value).lower() if isinstance(value, bool) else str(value)
        for name in ("ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname")
        if (value := options.get(name)) is not None
    }


def _completed_url(url: str, options: Mapping[str, object]) -> str:
    """A block's ``url`` with what the block gives beside it: ``username``/``password``
    when the URL carries none (the store's rule: the URL's own credentials win), and the
    TLS options of a ``rediss://`` URL that its query does not set."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        netloc = _url_auth(options) + host
    else:  # each of user and password from the URL when it has it, else the block's
        user, colon, secret = userinfo.partition(":")
        block = _url_auth(options).removesuffix("@")
        block_user, _, block_secret = block.partition(":")
        user = user or block_user
        secret = secret if colon else block_secret
        netloc = f"{user}{':' + secret if secret else ''}@{host}"
    query = parts.query
    if parts.scheme == "rediss":
        given = {name for name, _ in parse_qsl(query, keep_blank_values=True)}
        extra = {k: v for k, v in _url_tls(options).items() if k not in given}
        if extra:
            query = f"{query}&{urlencode(extra)}" if query else urlencode(extra)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _node_url(options: Mapping[str, object]) -> str:
    """A redis:// URL of a redis block's host and port, its credentials and TLS options."""
    from urllib.parse import urlencode

    host = str(options.get("host") or "127.0.0.1")
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    port = options.get("port") or 6379
    scheme = "rediss" if options.get("ssl") else "redis"
    tls = _url_tls(options)
    query = f"?{urlencode(tls)}" if tls and options.get("ssl") else ""
    return f"{scheme}://{_url_auth(options)}{host}:{port}/{options.get('db') or 0}{query}"


def _redis_options() -> dict[str, Option]:
    """Options of the ``redis`` type; the aliases are LiteLLM's ``cache_params`` names."""
    return {
        "url": Option(
            types=str,
            aliases=("redis_url",),
            doc="redis://[user:password@]host:port/db (rediss:// for TLS).",
        ),
        "host": Option(types=str, validator=_non_empty, doc="Server host (default 127.0.0.1)."),
        "port": Option(types=(int, str), validator=_redis_port, doc="Server port (default 6379)."),
        "db": Option(types=int, doc="Database number (default 0; a cluster has only 0)."),
        "username": Option(types=str, doc="ACL user name."),
        "password": Option(types=str, secret=True, doc="Password of the data servers."),
        "ssl": Option(types=bool, doc="Connect with TLS."),
        "ssl_ca_certs": Option(types=str, doc="CA bundle file for TLS."),
        "ssl_cert_reqs": Option(
            types=str, doc="TLS certificate check: required, optional or none."
        ),
        "ssl_check_hostname": Option(types=bool, doc="Check the server's host name."),
        "cluster": Option(types=bool, doc="A Redis Cluster (default: when startup nodes given)."),
        "startup_nodes": Option(
            types=list,
            aliases=("redis_startup_nodes",),
            validator=_redis_nodes,
            doc="Cluster nodes to discover the cluster from ('host:port' or {host, port}).",
        ),
        "sentinel_nodes": Option(
            types=list,
            aliases=("sentinels",),
            validator=_redis_nodes,
            doc="Sentinels ('host:port' or [host, port]); needs service_name.",
        ),
        "service_name": Option(types=str, doc="The master's name at the sentinels."),
        "sentinel_password": Option(types=str, secret=True, doc="Password of the sentinels."),
        "op_timeout": Option(
            types=float,
            validator=_positive,
            aliases=("socket_timeout",),
            doc="Seconds per command (default 0.1).",
        ),
        "connect_timeout": Option(
            types=float,
            validator=_positive,
            aliases=("socket_connect_timeout",),
            doc="Seconds to connect (default 0.25).",
        ),
        "pool_timeout": Option(
            types=float,
            validator=_positive,
            doc="Longest wait for a free connection (default: connect_timeout); async:"
            " while no command is answered (a queue served in turn is waited in), at most"
            " 8 x pool_timeout (at least 5 s) in all.",
        ),
        "max_connections": Option(
            types=int, validator=_positive, doc="Connections per process (default 50)."
        ),
        "client_name": Option(types=str, doc="Name shown by CLIENT LIST."),
    }


def _register_builtins(registry: CacheTypeRegistry) -> None:
    """Install deja's built-in cache types. Later back-ends add their registration here."""
    registry.register(
        "memory",
        factory=_memory_factory,
        options={
            "max_entries": Option(
                types=int,
                aliases=("capacity",),
                validator=_positive,
                doc="Most entries kept (least recently used evicted first).",
            ),
            "max_bytes": Option(types=int, validator=_positive, doc="Most bytes of values kept."),
        },
        aliases=("local", "in-memory", "in_memory"),
        doc="In-process memory: fastest, not shared between processes.",
    )
    registry.register(
        "disk",
        factory=_disk_factory,
        options={
            "directory": Option(
                types=Path,
                default=".deja_cache",
                aliases=("disk_cache_dir",),
                doc=(
                    "Cache directory; relative paths are relative to the config file (to"
                    " the working directory for a piped config). It holds cache.db (values;"
                    " large ones in subdirectories), tags.sqlite3 (tags), locks.sqlite3"
                    " (cross-process locks) and semantic-index/ (a semantic type's"
                    " in-process index saved beside its disk store)."
                ),
            ),
            "size_limit": Option(types=int, validator=_positive, doc="Most bytes kept on disk."),
            "eviction_policy": Option(
                types=str,
                validator=_eviction_policy,
                doc=(
                    "What goes first past size_limit: least-recently-stored (default; hits"
                    " never write), least-recently-used or least-frequently-used (keep the"
                    " hot prompts; each hit writes)."
                ),
            ),
        },
        doc="Files on local disk: survives restarts, shared by the processes of one host"
        " (identical misses in them make one upstream call: the store's lock).",
    )
    registry.register(
        "s3",
        factory=_s3_factory,
        options=_s3_options(),
        doc="An S3 bucket (AWS or S3-compatible): shared by every host, no server to run.",
    )
    registry.register(
        "redis",
        factory=_redis_factory,
        options=_redis_options(),
        aliases=("valkey",),
        doc="Redis 7+ or Valkey (standalone, Sentinel or Cluster): shared by every host.",
    )
    registry.register(
        "tiered",
        factory=_tiered_factory,
        options={
            "l1": Option(types=StoreSpec, doc="The in-process tier (a memory block)."),
            "l2": Option(types=StoreSpec, required=True, doc="The shared tier (redis, disk, s3)."),
            "l1_ttl": Option(
                types=float, validator=_positive, doc="Longest life of an L1 copy (default 300)."
            ),
            "invalidation_url": Option(
                types=str,
                validator=_redis_url_option,
                secret=True,  # may carry a password: a message shows its scheme only
                doc="Redis URL for cross-process L1 invalidation (default: the l2 redis, or "
                "its cluster's first node; needed with Sentinel or a non-Redis l2 when "
                "several processes share it).",
            ),
        },
        aliases=("dual_cache", "dual"),
        doc="An in-memory L1 in front of a shared L2, kept coherent over Redis pub/sub.",
    )
    registry.register(
        "redis_semantic",
        factory=_redis_semantic_factory,
        options={
            **{
                name: option
                for name, option in _redis_options().items()
                if name in ("url", "host", "port", "db", "username", "password", "ssl")
            },
            "url": Option(types=str, aliases=("redis_url",), doc="redis://host:port/db"),
            "index_name": Option(
                types=str,
                aliases=("redis_semantic_cache_index_name",),
                doc="RediSearch index name (default deja-semantic).",
            ),
        },
        aliases=("redis-semantic", "valkey-semantic"),
        doc="Exact entries and the semantic index (RediSearch vectors) on one standalone Redis.",
    )
    registry.register(
        "qdrant_semantic",
        factory=_semantic_factory,
        options={
            "store": Option(types=StoreSpec, doc="The exact tier's store (default memory)."),
            "qdrant_api_base": Option(
                types=str, doc="Qdrant server URL (unset: QDRANT_URL, else local mode)."
            ),
            "qdrant_api_key": Option(types=str, secret=True, doc="Qdrant API key."),
            "collection": Option(
                types=str,
                aliases=("qdrant_collection_name",),
                doc="Collection name prefix (default deja-semantic; the dimension is appended).",
            ),
            "index_directory": Option(
                types=Path,
                doc="Directory where the in-process index is saved and merged, shared by "
                "the workers (default: beside a disk store; else not saved; not with a "
                "memory store, whose entries are each worker's).",
            ),
        },
        aliases=("qdrant-semantic",),
        doc="The exact tier plus a semantic index in Qdrant.",
    )
    registry.register(
        "semantic",
        factory=_semantic_factory,
        options={
            "store": Option(
                types=StoreSpec, doc="The exact tier's store (a cache block; default memory)."
            ),
            "index_directory": Option(
                types=Path,
                doc="Directory where the in-process index is saved and merged, shared by "
                "the workers (default: beside a disk store; else not saved; not with a "
                "memory store, whose entries are each worker's).",
            ),
        },
        doc="The exact tier plus an in-process semantic tier (offline embedding model).",
    )


_DEFAULT_REGISTRY: Final = CacheTypeRegistry()


def register_cache_type(
    name: str,
    *,
    factory: StoreFactory,
    options: Mapping[str, Option],
    aliases: Sequence[str] = (),
    doc: str = "",
) -> CacheType:
    """Register a cache type in the default registry (see :meth:`CacheTypeRegistry.register`)."""
    return _DEFAULT_REGISTRY.register(
        name, factory=factory, options=options, aliases=aliases, doc=doc
    )


def cache_types() -> list[str]:
    """The canonical names of the cache types in the default registry, sorted."""
    return _DEFAULT_REGISTRY.names()


# --------------------------------------------------------------------------- settings


def _registry(registry: CacheTypeRegistry | None) -> CacheTypeRegistry:
    return registry if registry is not None else _DEFAULT_REGISTRY


def _masked(mapping: Mapping[str, object], secret: Collection[str] = ()) -> dict[str, object]:
    """A copy of ``mapping`` fit for a repr: secret-looking values replaced, and those of
    the ``secret`` keys (a cache type's options declared secret, whatever their name)."""
    return {
        k: "***" if (k in secret or _SECRET_NAME.search(k)) and v is not None else v
        for k, v in mapping.items()
    }


def _secret_options(type_name: str, registry: CacheTypeRegistry | None) -> frozenset[str]:
    """The options of cache type ``type_name`` declared ``secret`` (an ``invalidation_url``
    may carry a password)."""
    cache_type = _registry(registry).get(type_name)
    if cache_type is None:
        return frozenset()
    return frozenset(name for name, option in cache_type.options.items() if option.secret)


@dataclass(frozen=True, slots=True)
class StoreSpec:
    """A nested cache block (for example one tier of a tiered cache), validated.

    ``ttl`` is the block's own TTL (what it means is up to the back-end that nests it).
    """

    type: str
    options: dict[str, object] = field(default_factory=dict)
    ttl: float | None = None
    registry: CacheTypeRegistry | None = field(default=None, repr=False, compare=False)

    def build(self) -> Store:
        """Build this block's store with its registered factory."""
        return _registry(self.registry).create(self.type, self.options)

    def __repr__(self) -> str:
        options = _masked(self.options, _secret_options(self.type, self.registry))
        return f"StoreSpec(type={self.type!r}, options={options!r}, ttl={self.ttl!r})"


@dataclass(frozen=True, slots=True)
class CachingSettings:
    """The response cache, validated: which store, and how the cache façade uses it.

    ``type`` is the canonical cache type and ``options`` its validated options. ``mode``
    is LiteLLM's: ``default_off`` caches only requests that opt in. ``call_types`` (from
    LiteLLM's ``supported_call_types``; ``None``: all) are the request kinds whose answers
    are stored: ``chat``, ``completion``, ``embedding``. ``similarity_threshold``
    and ``params`` (e.g. ``embedding_model``) are for the semantic tier. ``key_builder`` is
    a ``module.function`` / ``module:function`` / ``file.py:function`` spec, loaded from
    ``base_dir`` by :meth:`cache_kwargs`.
    """

    type: str
    options: dict[str, object] = field(default_factory=dict)
    ttl: float | None = None
    key_prefix: str = DEFAULT_KEY_PREFIX
    namespace: str | None = None
    key_builder: str | None = None
    similarity_threshold: float | None = None
    params: dict[str, object] = field(default_factory=dict)
    max_entry_bytes: int = DEFAULT_MAX_ENTRY_BYTES
    compress_min_bytes: int = DEFAULT_COMPRESS_MIN_BYTES
    store_truncated: bool = True
    mode: CacheMode = "default_on"
    lock_ttl: float = _DEFAULT_LOCK_TTL
    lock_wait: float = _DEFAULT_LOCK_WAIT
    call_types: frozenset[str] | None = None
    base_dir: Path = field(default_factory=Path.cwd, repr=False)
    registry: CacheTypeRegistry | None = field(default=None, repr=False, compare=False)
    # where ``key_builder`` was given (a ``hooks:`` entry's is named so in its errors)
    key_builder_path: str = field(default="caching.key_builder", repr=False, compare=False)

    def build_store(self) -> Store:
        """Build the configured store with the cache type's registered factory."""
        return _registry(self.registry).create(self.type, self.options)

    def cache_kwargs(self) -> dict[str, object]:
        """Keyword arguments for :class:`deja.Cache` / :class:`deja.AsyncCache`.

        Builds the store and loads the key builder, so call it once per cache. ``prices``,
        ``metrics`` and ``clock`` are not configuration and are left to the caller.
        """
        # Load user code before creating the store, so a bad key_builder leaves no store
        # (open files, connections) behind.
        key_builder = (
            load_callable(self.key_builder, self.base_dir, yaml_path=self.key_builder_path)
            if self.key_builder is not None
            else None
        )
        if key_builder is not None:
            try:
                request_builder(key_builder)
            except TypeError as exc:  # (an async one: refused at start, not on each request)
                raise ConfigError(
                    f"{self.key_builder}: {exc}", path=self.key_builder_path
                ) from None
        store = self.build_store()
        try:
            semantic = self.build_semantic(store) if self.type in _SEMANTIC_TYPES else None
        except BaseException:
            store.close()  # built for this cache alone: do not leak its resources
            raise
        kwargs: dict[str, object] = {"semantic": semantic}
        spec = self.options.get("store")
        # only an index whose entries live in this process is saved beside the store: a
        # shared one (Redis, a Qdrant server) is stored as it changes, and loading a copy
        # at the next start would replace what other processes stored in it since
        local_index = semantic is not None and getattr(semantic.index, "process_local", False)
        # ...and only beside entries that outlive the process (a memory store's are each
        # worker's own: a vector another worker shared would point at nothing here)
        in_memory = not isinstance(spec, StoreSpec) or spec.type == "memory"
        if local_index and not in_memory:
            directory = self.options.get("index_directory")
            if directory is None and isinstance(spec, StoreSpec) and spec.type == "disk":
                store_directory = spec.options.get("directory")
                if isinstance(store_directory, Path):  # survives restarts beside the entries
                    directory = store_directory / "semantic-index"
            if isinstance(directory, Path):
                kwargs["semantic_path"] = directory
                interval = self.params.get("semantic_save_interval")
                if interval is not None:
                    kwargs["semantic_save_interval"] = interval
        admission = (
            AdmissionPolicy(store_truncated=self.store_truncated)
            if self.call_types is None
            else _CallTypeAdmission(
                store_truncated=self.store_truncated, call_types=self.call_types
            )
        )
        return kwargs | {
            "store": store,
            "ttl": self.ttl,
            "key_prefix": self.key_prefix,
            "namespace": self.namespace,
            "key_builder": key_builder,
            "admission": admission,
            "max_entry_bytes": self.max_entry_bytes,
            "compress_min_bytes": self.compress_min_bytes,
            "mode": self.mode,
            "lock_ttl": self.lock_ttl,
            "lock_wait": self.lock_wait,
        }

    def build_semantic(self, store: Store | None = None) -> Any:
        """The semantic tier: ``similarity_threshold``, ``params.embedding_model`` and the
        feedback settings ``params.max_strikes`` / ``params.strike_penalty``.

        ``embedding_model`` ``local`` (or unset) is the embedded offline model; any other
        name is an OpenAI-compatible embeddings model (``params.api_base`` / ``api_key`` /
        ``dimensions``). A name that is a ``model_list`` model_name was already replaced by
        that deployment's model, api_base, api_key and headers when the configuration was
        parsed (see :func:`_embedding_deployment`).
        With ``store`` (the exact tier's), such a model's vectors are cached in it, per
        text and tenant scope, as the library's ``OpenAIEmbedder(client=Client(cache=...))``
        caches them for the tier: a prompt embedded once for a tenant costs it no call
        again, after a restart either (or after the tier's short memo forgot it). Another
        tenant's identical prompt is embedded for that tenant (a vector shared across
        tenants would tell by timing that someone had sent that prompt).
        """
        from deja.semantic import LocalEmbedder, OpenAIEmbedder, SemanticCache

        model = self.params.get("embedding_model") or _LOCAL_EMBEDDING_MODEL
        if model == _LOCAL_EMBEDDING_MODEL:
            embedder: Any = LocalEmbedder()
        else:
            dimensions = self.params.get("dimensions")
            try:
                timeout = self.params.get("timeout")
                seconds = float(timeout) if isinstance(timeout, (int, float)) else 5.0
                embedder = OpenAIEmbedder(
                    model=str(model),
                    dimensions=dimensions if isinstance(dimensions, int) else None,
                    api_base=_optional_str(self.params.get("api_base")),
                    api_key=_optional_str(self.params.get("api_key")),
                    timeout=seconds,
                    **self._vector_clients(store, seconds),
                )
            except ConfigError as exc:  # the library names its keyword; say the config's key
                raise ConfigError(f"{exc} (in a config: params.dimensions)") from None
        index: Any = None
        if self.type == "redis_semantic":
            from deja.semantic.redis_index import RedisVectorIndex

            index = RedisVectorIndex(
                url=_redis_url(self.options) or "redis://127.0.0.1:6379/0",
                dim=embedder.dim,
                index_name=str(self.options.get("index_name") or "deja-semantic"),
            )
        elif self.type == "qdrant_semantic":
            from deja.semantic.qdrant_index import QdrantIndex

            local = not self.options.get("qdrant_api_base")
            index = QdrantIndex(
                url=_optional_str(self.options.get("qdrant_api_base")),
                api_key=_optional_str(self.options.get("qdrant_api_key")),
                path=":memory:" if local else None,
                collection=str(self.options.get("collection") or "deja-semantic"),
                dim=embedder.dim,
                # local mode lives in this process, as the in-process index: the same bound
                max_entries=self._semantic_bound() if local else None,
            )
        feedback: dict[str, Any] = {
            name: self.params[name]
            for name in ("max_strikes", "strike_penalty")
            if self.params.get(name) is not None
        }
        if index is None:
            feedback["max_entries"] = self._semantic_bound()
        return SemanticCache(
            embedder=embedder, index=index, threshold=self.similarity_threshold, **feedback
        )

    def _vector_clients(self, store: Store | None, seconds: float) -> dict[str, Any]:
        """The clients of a remote embedder, calling with its ``timeout`` and no retry, as
        the clients it would make itself: they keep its vectors in ``store`` (under this
        cache's key prefix and TTL), and send ``params.headers`` (its deployment's
        extra_headers and organization) on every call. Neither to do: none (it makes its
        own)."""
        from deja._async.cache import AsyncCache
        from deja._async.client import AsyncClient
        from deja._sync.cache import Cache
        from deja._sync.client import Client

        given = self.params.get("headers")
        headers = {str(k): str(v) for k, v in given.items()} if isinstance(given, dict) else {}
        if store is None and not headers:
            return {}
        kept: dict[str, Any] = {"store": store, "ttl": self.ttl, "key_prefix": self.key_prefix}
        options: dict[str, Any] = {"timeout": seconds, "max_retries": 0, "headers": headers}
        return {
            "client": Client(cache=None if store is None else Cache(**kept), **options),
            "aclient": AsyncClient(cache=None if store is None else AsyncCache(**kept), **options),
        }

    def _semantic_bound(self) -> int:
        """The bound of an index in this process (the in-process one, Qdrant's local mode):
        ``params.max_entries``, else as many entries as a memory store keeps (a vector
        whose answer was evicted only takes room), else 100,000."""
        given = self.params.get("max_entries")
        if isinstance(given, int):
            return given
        spec = self.options.get("store")
        if spec is None or (isinstance(spec, StoreSpec) and spec.type == "memory"):
            options = spec.options if isinstance(spec, StoreSpec) else {}
            kept = options.get("max_entries") or 10_000  # (unset: MemoryStore's default)
            if isinstance(kept, int):
                return min(kept, _SEMANTIC_MAX_ENTRIES)
        return _SEMANTIC_MAX_ENTRIES

    def __repr__(self) -> str:
        options = _masked(self.options, _secret_options(self.type, self.registry))
        return (
            f"CachingSettings(type={self.type!r}, options={options!r}, "
            f"ttl={self.ttl!r}, key_prefix={self.key_prefix!r}, namespace={self.namespace!r}, "
            f"key_builder={self.key_builder!r}, mode={self.mode!r})"
        )


@dataclass(frozen=True, slots=True)
class ModelDeployment:
    """One ``model_list`` entry: the public ``model_name`` and how to reach it.

    ``litellm_params`` holds the validated LiteLLM parameters deja uses (``model`` always,
    with a ``custom_llm_provider`` applied as its ``provider/`` prefix; ``api_base``,
    ``api_key``, ``timeout``, ``max_retries``... when given); ``model_info`` is kept as
    written.
    """

    model_name: str
    litellm_params: dict[str, object]
    model_info: dict[str, object] = field(default_factory=dict)

    @property
    def model(self) -> str:
        """The upstream model (``litellm_params.model``)."""
        return str(self.litellm_params["model"])

    @property
    def weight(self) -> float:
        """Its share of its model name's requests (LiteLLM's simple-shuffle): ``weight``,
        else ``rpm``, else ``tpm``, else 1. The first of them that is set counts, 0
        included: a deployment at 0 is drained and never tried."""
        for name in ("weight", "rpm", "tpm"):
            value = self.litellm_params.get(name)
            if value is None or isinstance(value, bool):
                continue
            try:
                share = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if math.isfinite(share) and share >= 0:
                return share
        return 1.0

    def __repr__(self) -> str:
        return (
            f"ModelDeployment(model_name={self.model_name!r}, "
            f"litellm_params={_masked(self.litellm_params)!r}, model_info={self.model_info!r})"
        )


@dataclass(frozen=True, slots=True)
class HookSpec:
    """A hook file and the names of the functions it provides."""

    path: Path
    async_pre_llm_hook: str | None = None
    async_post_cache_hook: str | None = None
    key_builder: str | None = None

    def load(self, function: str) -> Callable[..., object]:
        """Import the hook file (once) and return its ``function``."""
        return load_callable(f"{self.path}:{function}", self.path.parent)


DEFAULT_MAX_FALLBACKS: Final = 5
"""LiteLLM's ``max_fallbacks`` default: fallback names one request may try."""


@dataclass(frozen=True, slots=True)
class FallbackSettings:
    """LiteLLM's fallbacks across model names: the names a request for a model name tries,
    in order, when all of its deployments failed. ``general``: after a failure that moves
    on to another deployment (a timeout, no connection, 429, 5xx, a 2xx that is no
    answer); ``context_window``: after the upstream refused the request as too long for
    its context; ``content_policy``: after it refused it by its content policy. Each maps
    a model name (or ``"*"``: any name without an entry of its own) to its fallback names;
    ``default`` (LiteLLM's ``default_fallbacks``) are the general ones of a name with
    none. ``max_fallbacks``: fallback names one request tries at most (0: none)."""

    general: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    context_window: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    content_policy: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    default: tuple[str, ...] = ()
    max_fallbacks: int = DEFAULT_MAX_FALLBACKS

    def __bool__(self) -> bool:
        """Whether a request may fall back at all."""
        return bool(
            (self.general or self.context_window or self.content_policy or self.default)
            and self.max_fallbacks
        )


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """Where the proxy listens; how long a stop waits for the requests in flight
    (``graceful_shutdown_seconds``: those still running then get a 503); how many calls a
    worker has in flight to one upstream at once (``max_upstream_connections``: the
    others wait for a slot, up to their timeout)."""

    host: str = "0.0.0.0"
    port: int = 4000
    workers: int = 1
    graceful_shutdown_seconds: float = 30.0
    max_upstream_connections: int = 100
    allowed_fails: int = 3
    """LiteLLM's ``router_settings.allowed_fails``: failures of a deployment in a row (a
    timeout, no connection, a 429 or 5xx, its key refused) after which it cools down, when
    its model name has another deployment to try (0: never)."""
    cooldown_time: float = 5.0
    """LiteLLM's ``router_settings.cooldown_time``: seconds a cooled-down deployment is
    tried only after its model name's others (LiteLLM's default, 5)."""
    fallbacks: FallbackSettings = field(default_factory=FallbackSettings)
    """LiteLLM's fallbacks across model names (``router_settings``, or
    ``litellm_settings``)."""


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """An API key the proxy accepts, the tenant it maps to, and the models it may use.

    An empty ``models`` means every model.
    """

    key: str = field(repr=False)
    tenant: str
    models: tuple[str, ...] = ()


DEFAULT_REQUEST_HEADER_TIMEOUT = 30.0
"""Seconds a caller has to send a request's line and headers, from its connection or from
the request's first byte (a stalled head holds a connection; ``deja serve`` only)."""

DEFAULT_HOOK_TIMEOUT = 30.0
"""Seconds an async hook has to finish: a hung one held its caller, every caller who joined
the same call and a stream's ``[DONE]`` for ever (room for a moderation or guardrail API
call, far below an upstream's own 600 s)."""


@dataclass(frozen=True, slots=True)
class GeneralSettings:
    """Proxy-wide settings: the admin key, tenants' keys, the request size limit, how
    long a caller may take to send a request's head and its body, and a hook to finish."""

    master_key: str | None = field(default=None, repr=False)
    virtual_keys: tuple[VirtualKey, ...] = ()
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    request_body_timeout: float = DEFAULT_REQUEST_BODY_TIMEOUT
    request_header_timeout: float = DEFAULT_REQUEST_HEADER_TIMEOUT
    hook_timeout: float = DEFAULT_HOOK_TIMEOUT


@dataclass(frozen=True, slots=True)
class Settings:
    """A whole validated configuration.

    ``caching`` is ``None`` when no cache is configured. ``warnings`` holds the start-up
    warnings (at most one listing the LiteLLM keys deja ignores). Relative paths in the
    configuration were resolved against ``base_dir``, the configuration file's directory
    (the working directory for one that is not a regular file: see :func:`load_config`).
    """

    base_dir: Path
    caching: CachingSettings | None = None
    model_list: tuple[ModelDeployment, ...] = ()
    cache_control_injection_points: tuple[dict[str, object], ...] = ()
    hooks: tuple[HookSpec, ...] = ()
    proxy: ProxySettings = field(default_factory=ProxySettings)
    general: GeneralSettings = field(default_factory=GeneralSettings)
    enable_prometheus: bool | None = None
    """LiteLLM's ``enable_prometheus`` (or ``prometheus`` among its callbacks): ``/metrics``
    is served unless it is ``False`` (set so explicitly)."""
    metrics_auth: bool = False
    """LiteLLM's ``require_auth_for_metrics_endpoint``: ``/metrics`` takes a valid key."""
    warnings: tuple[str, ...] = ()
    # LiteLLM's environment_variables block (values may be secrets: kept out of the repr)
    environment_variables: Mapping[str, str] = field(default_factory=dict, repr=False)

    def export_environment(self) -> None:
        """Set :attr:`environment_variables` in the process environment (``os.environ``),
        replacing values already there, as LiteLLM's proxy does at start: what reads the
        environment later (a deployment without ``api_key`` reads ``OPENAI_API_KEY``) sees
        them. :func:`load_config` calls it when it reads ``os.environ``."""
        os.environ.update(self.environment_variables)

    def price_overrides(self) -> dict[str, dict[str, object]]:
        """Price fields set on deployments, by upstream model (``litellm_params.model``).

        Read from ``model_info`` and from ``litellm_params`` (LiteLLM accepts both), in
        either deja's per-1M names or LiteLLM's per-token names.
        """
        from deja.prices import PRICE_FIELDS

        overrides: dict[str, dict[str, object]] = {}
        for deployment in self.model_list:
            fields = {
                name: value
                for block in (deployment.litellm_params, deployment.model_info)
                for name, value in block.items()
                if name in PRICE_FIELDS
            }
            if fields:
                overrides.setdefault(deployment.model, {}).update(fields)
        return overrides

    def price_table(self) -> PriceTable:
        """The packaged price table with this configuration's overrides applied."""
        from deja.prices import PriceTable

        return PriceTable.default().with_overrides(self.price_overrides())


# --------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader, plus an error on duplicate keys.

    PyYAML silently keeps the last of two equal keys, so a second ``caching:`` block would
    quietly replace the first; here it is an error with both line numbers.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[tuple[str, str], int] = {}
        for key_node, _ in node.value:
            # Merge keys (<<) legitimately repeat and are overridden by local keys.
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            ident = (key_node.tag, key_node.value)
            line = key_node.start_mark.line + 1
            if ident in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key_node.value!r} (first at line {seen[ident]})",
                    key_node.start_mark,
                )
            seen[ident] = line
        return super().construct_mapping(node, deep=deep)


def load_config(
    path: str | os.PathLike[str],
    *,
    environ: Mapping[str, str] | None = None,
    registry: CacheTypeRegistry | None = None,
    log_warnings: bool = True,
    text: str | None = None,
) -> Settings:
    """Read, validate and return the configuration in the YAML file at ``path``.

    Relative paths inside it are resolved against the file's directory, or against the
    working directory when ``path`` is no regular file: a pipe (``--config <(envsubst <
    tmpl.yaml)``, named ``/dev/fd/63``) has no directory of its own. When ``environ``
    is ``None`` (read :data:`os.environ`), the ``environment_variables`` block is exported
    to the process environment, as LiteLLM does (see :meth:`Settings.export_environment`);
    with an explicit ``environ`` nothing is exported. Start-up warnings
    are logged once each at WARNING, unless ``log_warnings`` is false (for a process that
    loads a file another one has already validated and warned about; the warnings are in
    :attr:`Settings.warnings` either way). ``text``: the file's contents, read already (the
    proxy's workers build from what the parent read and validated, not from the file as it
    is when one of them is started again). Raises :class:`~deja.errors.ConfigError` (with
    the file and line for unreadable files and YAML syntax errors, the YAML path otherwise).
    """
    file = Path(path)
    if text is None:
        text = read_config_text(file)
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass (see _Loader)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(_yaml_error_message(file, exc)) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: invalid YAML: {exc}") from exc
    if data is None:  # an empty file: every default
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(
            f"{file}: the configuration must be a mapping of settings, not {_a_kind(data)}"
        )
    settings = parse_config(data, base_dir=_relative_base(file), environ=environ, registry=registry)
    if environ is None:  # the process's own environment: export the block into it
        settings.export_environment()
    if log_warnings:
        for warning in settings.warnings:
            logger.warning("%s: %s", file, warning)
    return settings


# Paths that name an open descriptor, not a file in a directory: bash's and zsh's <(...)
# (/dev/fd/N), /proc/self/fd/N, /proc/<pid>/fd/N, /dev/stdin.
_DESCRIPTOR_PATH: Final = re.compile(r"/dev/(?:fd/\d+|stdin)|/proc/(?:self|\d+)/fd/\d+")
# Said where a path that may have been written relative is missing or unusable.
_RELATIVE_NOTE: Final = (
    "relative paths resolve against the config file's directory, or against the working"
    " directory for a config read from a pipe"
)


def _relative_base(file: Path) -> Path:
    """What relative paths in the configuration ``file`` resolve against: its directory, or
    the working directory for one that is not a regular file (a pipe or a FIFO, whose
    "directory" /dev/fd holds nothing of the user's). A descriptor is recognised by its
    name too: a worker process loads the parent's copy of a pipe it cannot open."""
    absolute = file.absolute()
    if _DESCRIPTOR_PATH.fullmatch(str(absolute)):
        return Path.cwd()
    try:
        regular = stat.S_ISREG(absolute.stat().st_mode)
    except OSError:  # gone since the text was read: where it was
        regular = True
    return absolute.parent if regular else Path.cwd()


def _yaml_error_message(file: Path, exc: yaml.MarkedYAMLError) -> str:
    # Only the position and PyYAML's short problem text: its full message quotes the
    # offending line, which may hold a secret.
    mark = exc.problem_mark or exc.context_mark
    where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(file)
    problem = exc.problem or exc.context or "syntax error"
    message = f"{where}: invalid YAML: {problem}"
    if problem.startswith("mapping values are not allowed"):
        message += (
            " (a value that contains ': ' or ends with ':' must be quoted, "
            'e.g. key_prefix: "litellm:v1:")'
        )
    elif "'\\t'" in problem:
        message += " (YAML indents with spaces, not tabs)"
    return message


def read_config_text(file: Path) -> str:
    """The text of the configuration file ``file`` (a :class:`~deja.errors.ConfigError`
    when it cannot be read)."""
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {file}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror or exc}") from exc


def parse_config(
    data: Mapping[str, object],
    *,
    base_dir: Path,
    environ: Mapping[str, str] | None = None,
    registry: CacheTypeRegistry | None = None,
) -> Settings:
    """Validate configuration ``data`` (already parsed YAML) and return :class:`Settings`.

    Pure apart from reading ``environ`` (default :data:`os.environ`): no file is read and
    no user code is imported. ``base_dir`` anchors relative paths. ``registry`` defaults to
    the module's registry of cache types.
    """
    ctx = _Context(
        base_dir=Path(base_dir).absolute(),
        registry=registry if registry is not None else _DEFAULT_REGISTRY,
    )
    root = _mapping(data, "", ctx)
    env: Mapping[str, str] = os.environ if environ is None else environ

    # LiteLLM exports environment_variables before it reads anything else: the references
    # below and the REDIS_* / QDRANT_* variables see them. Exporting them to the process
    # (where OPENAI_API_KEY and friends are read) is load_config's job: this stays pure.
    exported: dict[str, str] = {}
    if "environment_variables" in root:
        exported = _environment_variables(root["environment_variables"], env, ctx)
    lookup: Mapping[str, str] = {**env, **exported} if exported else env
    ctx.env = lookup
    resolved = {
        key: (value if key == "environment_variables" else _resolve_env(value, key, lookup, ctx))
        for key, value in root.items()
    }

    _check_keys(resolved, "", ctx, known=_TOP_KEYS, ignored=_TOP_LITELLM_IGNORED)
    cooldown: dict[str, Any] = {}  # ProxySettings' allowed_fails and cooldown_time
    router_retries: int | None = None
    router: Mapping[str, object] = {}
    if "router_settings" in resolved:
        router = _mapping(resolved["router_settings"], "router_settings", ctx)
        if router.get("allowed_fails") is not None:
            cooldown["allowed_fails"] = _int(
                router["allowed_fails"],
                "router_settings.allowed_fails",
                ctx,
                what="a number of failures",
                minimum=0,
            )
        if router.get("cooldown_time") is not None:
            sub = "router_settings.cooldown_time"
            seconds = _number(router["cooldown_time"], sub, ctx, what="a number of seconds")
            if seconds < 0:
                raise ConfigError("a cooldown cannot be negative", path=sub)
            cooldown["cooldown_time"] = seconds
        if router.get("num_retries") is not None:
            router_retries = _int(
                router["num_retries"],
                "router_settings.num_retries",
                ctx,
                what="a whole number of retries",
                minimum=0,
            )
        _router_near_misses(router, ctx)
        others = sorted(k for k in router if k not in _ROUTER_KEYS)
        if others:
            ctx.ignored.append(f"router_settings ({', '.join(others)})")

    model_list = _model_list(resolved.get("model_list"), ctx)
    if router_retries is not None:  # each deployment's max_retries, where it names none
        model_list = tuple(
            d
            if d.litellm_params.get("max_retries") is not None
            else replace(d, litellm_params={**d.litellm_params, "max_retries": router_retries})
            for d in model_list
        )
    injection = _injection_points(
        resolved.get("cache_control_injection_points"), "cache_control_injection_points", ctx
    )
    hooks = _hooks(resolved.get("hooks"), ctx)
    litellm = _litellm_settings(resolved.get("litellm_settings"), ctx)
    caching = _caching_settings(resolved, litellm, hooks, model_list, ctx)
    proxy = _proxy(resolved.get("proxy"), ctx)
    fallbacks = _fallback_settings(router, litellm, model_list, ctx)
    if fallbacks != FallbackSettings():  # (a max_fallbacks of 0 too: it bounds a request's list)
        cooldown["fallbacks"] = fallbacks
    if cooldown:
        proxy = replace(proxy, **cooldown)
    general = _general(resolved.get("general_settings"), model_list, ctx)

    warnings = list(ctx.warnings)
    if ctx.ignored:
        warnings.insert(
            0,
            "deja does not implement these LiteLLM settings and ignores them: "
            + ", ".join(_grouped_paths(ctx.ignored)),
        )
    return Settings(
        base_dir=ctx.base_dir,
        caching=caching,
        model_list=model_list,
        cache_control_injection_points=injection,
        hooks=hooks,
        proxy=proxy,
        general=general,
        enable_prometheus=litellm.enable_prometheus,
        metrics_auth=litellm.metrics_auth,
        warnings=tuple(warnings),
        environment_variables=exported,
    )


@overload
def build_cache(
    source: Settings | CachingSettings,
    *,
    asynchronous: Literal[False] = False,
    metrics: Metrics | None = None,
) -> Cache: ...


@overload
def build_cache(
    source: Settings | CachingSettings,
    *,
    asynchronous: Literal[True],
    metrics: Metrics | None = None,
) -> AsyncCache: ...


def build_cache(
    source: Settings | CachingSettings,
    *,
    asynchronous: bool = False,
    metrics: Metrics | None = None,
) -> Cache | AsyncCache:
    """Build a :class:`deja.Cache` (or, with ``asynchronous=True``, a :class:`deja.AsyncCache`).

    Raises :class:`~deja.errors.ConfigError` if ``source`` configures no cache.
    """
    caching = source.caching if isinstance(source, Settings) else source
    if caching is None:
        raise ConfigError("no cache is configured (add a caching block)", path="caching")
    # Imported here: the cache façade imports much of deja, and this module must stay
    # importable on its own (the CLI validates the configuration before anything else).
    from deja._async.cache import AsyncCache
    from deja._sync.cache import Cache

    prices = source.price_table() if isinstance(source, Settings) else None
    kwargs: dict[str, Any] = caching.cache_kwargs()
    if metrics is not None:
        kwargs["metrics"] = metrics
    if prices is not None:
        kwargs["prices"] = prices
    try:
        return AsyncCache(**kwargs) if asynchronous else Cache(**kwargs)
    except BaseException:
        kwargs["store"].close()  # built for this cache alone: do not leak its resources
        raise


# --------------------------------------------------------------------------- user code


def load_callable(
    spec: str, base_dir: Path, *, yaml_path: str | None = None
) -> Callable[..., object]:
    """Import and return the callable named by ``spec``.

    ``spec`` is ``module.function``, ``module:function`` or ``path/to/file.py:function``.
    A module is looked for first as a ``.py`` file (or package) under ``base_dir`` — where
    the configuration's relative paths lead (:func:`load_config`) — and then among installed
    modules. A file is imported under a private module name keyed by its absolute path, so
    two configurations with a ``hooks.py`` each do not collide, and ``base_dir`` is on
    ``sys.path`` only while the file runs (so it can import its neighbours). Raises
    :class:`~deja.errors.ConfigError` naming ``yaml_path`` when the module, the attribute or
    a callable is missing.
    """
    module_part, attribute = _split_callable_spec(spec, yaml_path)
    file = _module_file(module_part, Path(base_dir))
    if file is not None:
        module = _import_file(file, yaml_path)
        where = str(file)
    else:
        module = _import_installed(module_part, Path(base_dir), yaml_path)
        where = f"module {module_part!r}"
    try:
        target = getattr(module, attribute)
    except AttributeError:
        names = [n for n in vars(module) if not n.startswith("_")]
        raise ConfigError(
            f"{where} has no {attribute!r}{_suggestion(attribute, names)}", path=yaml_path
        ) from None
    if not callable(target):
        raise ConfigError(
            f"{attribute!r} in {where} is {_a_kind(target)}, not a function", path=yaml_path
        )
    return target  # type: ignore[no-any-return]


def _split_callable_spec(spec: str, yaml_path: str | None) -> tuple[str, str]:
    module_part, sep, attribute = spec.rpartition(":")
    if not sep:
        module_part, sep, attribute = spec.rpartition(".")
    ok_module = bool(module_part) and (
        module_part.endswith(".py") or _DOTTED.fullmatch(module_part) is not None
    )
    if not sep or not ok_module or _IDENTIFIER.fullmatch(attribute) is None:
        raise ConfigError(
            f"expected 'module.function', 'module:function' or 'file.py:function', got {spec!r}",
            path=yaml_path,
        )
    return module_part, attribute


def _module_file(module_part: str, base_dir: Path) -> Path | None:
    if module_part.endswith(".py"):
        return (base_dir / Path(module_part).expanduser()).absolute()
    relative = Path(*module_part.split("."))
    for candidate in (relative.with_suffix(".py"), relative / "__init__.py"):
        file = base_dir / candidate
        if file.is_file():
            return file.absolute()
    return None


def _import_file(file: Path, yaml_path: str | None) -> ModuleType:
    if not file.is_file():
        raise ConfigError(f"no such file: {file} ({_RELATIVE_NOTE})", path=yaml_path)
    digest = hashlib.sha256(str(file).encode()).hexdigest()[:12]
    stem = re.sub(r"\W", "_", file.parent.name if file.name == "__init__.py" else file.stem)
    name = f"_deja_user_{stem}_{digest}"
    if name in sys.modules:  # already imported by an earlier build: same module object
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {file}", path=yaml_path)
    module = importlib.util.module_from_spec(spec)
    # Registered before running it, as importlib does: dataclasses and pickling inside the
    # user's module look their module up in sys.modules.
    sys.modules[name] = module
    directory = str(file.parent)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if not isinstance(exc, Exception):
            raise
        raise ConfigError(
            f"importing {file} failed: {type(exc).__name__}: {exc}", path=yaml_path
        ) from exc
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)
    return module


def _import_installed(module_part: str, base_dir: Path, yaml_path: str | None) -> ModuleType:
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        missing = exc.name or module_part
        if module_part == missing or module_part.startswith(missing + "."):
            file = base_dir / Path(*module_part.split(".")).with_suffix(".py")
            raise ConfigError(
                f"cannot find {module_part!r}: no {file} and no installed module of that"
                f" name ({_RELATIVE_NOTE})",
                path=yaml_path,
            ) from exc
        raise ConfigError(
            f"importing {module_part!r} failed: {type(exc).__name__}: {exc}", path=yaml_path
        ) from exc
    except Exception as exc:
        raise ConfigError(
            f"importing {module_part!r} failed: {type(exc).__name__}: {exc}", path=yaml_path
        ) from exc


# --------------------------------------------------------------------------- validation


@dataclass(slots=True)
class _Context:
    """State of one parse: where paths are anchored, and what was seen along the way."""

    base_dir: Path
    registry: CacheTypeRegistry
    # The environment the configuration reads (os.environ/NAME, REDIS_*, QDRANT_*), with
    # the environment_variables block's values over it.
    env: Mapping[str, str] = field(default_factory=dict)
    # YAML paths whose value came from the environment: never shown in a message.
    from_env: set[str] = field(default_factory=set)
    # LiteLLM keys accepted but not implemented, for the single start-up warning.
    ignored: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _LiteLLMSettings:
    cache: bool | None = None
    cache_params: Mapping[str, object] | None = None
    enable_prometheus: bool | None = None
    metrics_auth: bool = False
    # the fallbacks' keys as given (read with router_settings', which win)
    fallbacks: Mapping[str, object] = field(default_factory=dict)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _at(path: str, index: int) -> str:
    return f"{path}[{index}]"


def _last_key(path: str) -> str:
    return _INDEX_SUFFIX.sub("", path).rpartition(".")[2]


def _a_kind(value: object) -> str:
    """``_kind(value)`` with its article: "an integer", "a list"."""
    kind = _kind(value)
    return ("an " if kind[:1].lower() in "aeiou" else "a ") + kind


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, list | tuple):
        return "list"
    if value is None:
        return "null"
    return type(value).__name__


def _shown(value: object, path: str, ctx: _Context, *, secret: bool = False) -> str:
    """How a rejected value appears in a message: itself, or only its type if secret."""
    if secret or path in ctx.from_env or _SECRET_NAME.search(_last_key(path)):
        return f"{_a_kind(value)} (value hidden)"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 60 else text[:56] + "...'"
    if isinstance(value, int | float):
        return repr(value)
    return _a_kind(value)


def _suggestion(word: str, candidates: Iterable[str], *, also: Iterable[str] = ()) -> str:
    """``; did you mean 'x'?`` for the nearest of ``candidates`` (or of ``also``, which
    must be nearer to count), or ``""``."""
    lower = word.lower()
    best: tuple[float, str] | None = None
    for pool, cutoff in ((candidates, 0.6), (also, 0.8)):
        by_lower = {c.lower(): c for c in pool}
        for match in difflib.get_close_matches(lower, list(by_lower), n=1, cutoff=cutoff):
            ratio = difflib.SequenceMatcher(None, lower, match).ratio()
            if best is None or ratio > best[0]:
                best = (ratio, by_lower[match])
    return f"; did you mean {best[1]!r}?" if best else ""


def _grouped_paths(paths: Sequence[str]) -> list[str]:
    """De-duplicate, folding ``model_list[0].x``, ``model_list[1].x`` into ``model_list[*].x``."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        groups.setdefault(_INDEX_SUFFIX.sub("[*]", p), []).append(p)
    return [folded if len(set(members)) > 1 else members[0] for folded, members in groups.items()]


def _type_error(expected: str, value: object, path: str, ctx: _Context) -> ConfigError:
    return ConfigError(f"expected {expected}, got {_shown(value, path, ctx)}", path=path or None)


def _mapping(value: object, path: str, ctx: _Context) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        if not path:
            raise ConfigError(
                f"the configuration must be a mapping of settings, not {_a_kind(value)}"
            )
        raise _type_error("a mapping", value, path, ctx)
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(f"keys must be strings, got {key!r}", path=path or None)
    return value


def _sequence(value: object, path: str, ctx: _Context) -> list[object]:
    if not isinstance(value, list | tuple):
        raise _type_error("a list", value, path, ctx)
    return list(value)


def _check_keys(
    block: Mapping[str, object],
    path: str,
    ctx: _Context,
    *,
    known: Collection[str],
    ignored: Collection[str] = (),
    unlisted: str | None = None,
) -> None:
    """Reject unknown keys (with a suggestion); note known-but-ignored LiteLLM keys.
    ``unlisted``: what the error says of a key that is no near miss of a known one (by
    default, that LiteLLM does not document it either, when there are ``ignored`` keys)."""
    for key in block:
        if key in known:
            continue
        if key in ignored:
            ctx.ignored.append(_join(path, key))
            continue
        if not path:
            where = "at the top level"
        elif path.endswith("]"):
            where = f"in a {_last_key(path)} entry"
        else:
            where = f"in {_last_key(path)}"
        # The LiteLLM lists are long: matched as loosely as deja's own keys, a key they do
        # not hold draws a "did you mean" for an unrelated one (disable_telemetry: did you
        # mean 'disable_master_key_return'?), so only a near miss of one is suggested.
        hint = _suggestion(key, known, also=ignored)
        if path and key in _TOP_KEYS:
            # (cache_responses written beside litellm_settings' cache_params)
            hint = f"; {key} is a top-level key (at the start of a line, as model_list is)"
        elif not hint and unlisted is not None:
            hint = unlisted
        elif not hint and ignored:
            hint = (
                "; neither a deja setting nor one LiteLLM documents here (deja reads: "
                f"{', '.join(sorted(known))})"
            )
        elif not hint:
            hint = f"; expected one of: {', '.join(sorted(known))}"
        raise ConfigError(f"unknown key {where}{hint}", path=_join(path, key))


def _env_scalar(value: object, path: str, ctx: _Context, want: type[object]) -> object:
    """Convert an environment string to ``want`` (env vars are always strings)."""
    if not isinstance(value, str) or path not in ctx.from_env:
        return value
    text = value.strip()
    try:
        if want is bool:
            lowered = text.lower()
            if lowered in ("true", "yes", "on", "1"):
                return True
            if lowered in ("false", "no", "off", "0"):
                return False
            return value
        if want is int:
            return int(text)
        if want is float:
            return float(text)
    except ValueError:
        return value
    return value


def _str(value: object, path: str, ctx: _Context, *, what: str = "a string") -> str:
    if not isinstance(value, str):
        raise _type_error(what, value, path, ctx)
    return value


def _name(value: object, path: str, ctx: _Context, *, what: str = "a non-empty string") -> str:
    text = _str(value, path, ctx, what=what)
    if not text.strip():
        raise ConfigError(f"expected {what}, got an empty string", path=path)
    return text


def _key_prefix(value: object, path: str, ctx: _Context) -> str:
    """A cache's key prefix, as the cache takes it (:func:`deja.keys.check_key_prefix`):
    one it refused stopped the start with a ValueError naming no YAML path."""
    try:
        return check_key_prefix(_str(value, path, ctx))
    except ValueError as exc:
        raise ConfigError(str(exc), path=path) from None


def _namespace(value: object, path: str, ctx: _Context) -> str:
    """A cache's default namespace, as a request's ``cache`` option names one (the cache
    checks it so): one it refused stopped the start with a ControlError about a
    request's option."""
    text = _name(value, path, ctx)
    try:
        parse_controls({"namespace": text})
    except ControlError as exc:
        said = str(exc).removeprefix("cache option 'namespace' ")
        raise ConfigError(said, path=path) from None
    return text


def _secret(value: object, path: str, ctx: _Context) -> str:
    """A key callers present: surrounding whitespace (the newline of a secret read from a
    file) is no part of it, as the proxy strips what callers send."""
    return _name(value, path, ctx).strip()


def _header_value(value: object, path: str, ctx: _Context) -> str:
    """What goes into an upstream request's header (an ``api_key``, an ``organization``,
    an ``extra_headers`` value): without surrounding whitespace, which HTTP ignores (the
    newline of a Kubernetes secret made from a file), and refused now with a control
    character inside: the transport refuses to send it, so every call would fail, each
    answered as if the upstream were unreachable."""
    try:
        return header_text(_str(value, path, ctx))
    except ValueError as exc:
        raise ConfigError(str(exc), path=path) from None


def _bool(value: object, path: str, ctx: _Context) -> bool:
    value = _env_scalar(value, path, ctx, bool)
    if not isinstance(value, bool):
        raise _type_error("true or false", value, path, ctx)
    return value


def _number(value: object, path: str, ctx: _Context, *, what: str) -> float:
    value = _env_scalar(value, path, ctx, float)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _type_error(what, value, path, ctx)
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"expected {what}, got {_shown(value, path, ctx)}", path=path)
    return number


def _seconds(value: object, path: str, ctx: _Context) -> float:
    seconds = _number(value, path, ctx, what="a number of seconds")
    if seconds <= 0:
        raise ConfigError(
            f"expected a positive number of seconds, got {_shown(value, path, ctx)}", path=path
        )
    return seconds


# The least lock_ttl: one keeper thread extends every lock in turn, a third of its TTL
# apart; a TTL below an extension's own time (a busy disk, a slow Redis) loses the lock
# between two, and a tiny one makes the keeper a busy loop of writes.
_LEAST_LOCK_TTL: Final = 1.0


def _lock_seconds(value: object, path: str, ctx: _Context) -> float:
    seconds = _seconds(value, path, ctx)
    if seconds < _LEAST_LOCK_TTL:
        raise ConfigError(
            f"expected at least {_LEAST_LOCK_TTL:g} s (the lock is extended every third of"
            f" it, each extension a write), got {_shown(value, path, ctx)}",
            path=path,
        )
    return seconds


def _wait_seconds(value: object, path: str, ctx: _Context) -> float:
    """Seconds to wait, 0 included (no wait)."""
    seconds = _number(value, path, ctx, what="a number of seconds")
    if seconds < 0:
        raise ConfigError(
            f"expected a number of seconds >= 0, got {_shown(value, path, ctx)}", path=path
        )
    return seconds


def _optional_seconds(value: object, path: str, ctx: _Context) -> float | None:
    """A TTL: seconds, at most MAX_TTL (``None``: none)."""
    if value is None:
        return None
    seconds = _seconds(value, path, ctx)
    if seconds > MAX_TTL:
        raise ConfigError(
            f"at most {MAX_TTL:.0f} seconds (100 years); give no ttl for entries that never expire",
            path=path,
        )
    return seconds


def _int(value: object, path: str, ctx: _Context, *, what: str, minimum: int) -> int:
    value = _env_scalar(value, path, ctx, int)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _type_error(what, value, path, ctx)
    if value < minimum:
        raise ConfigError(
            f"expected {what} (at least {minimum}), got {_shown(value, path, ctx)}", path=path
        )
    return value


def _fraction(value: object, path: str, ctx: _Context) -> float:
    number = _number(value, path, ctx, what="a number between 0 and 1")
    if not 0.0 <= number <= 1.0:
        raise ConfigError(
            f"expected a number between 0 and 1, got {_shown(value, path, ctx)}", path=path
        )
    return number


def _str_tuple(value: object, path: str, ctx: _Context) -> tuple[str, ...]:
    items = _sequence(value, path, ctx)
    return tuple(_name(item, _at(path, i), ctx) for i, item in enumerate(items))


def _plain_dict(value: object, path: str, ctx: _Context) -> dict[str, object]:
    return dict(_mapping(value, path, ctx))


def _resolve_env(value: object, path: str, lookup: Mapping[str, str], ctx: _Context) -> object:
    """Replace ``os.environ/NAME`` in every string of ``value``; note where it happened."""
    if isinstance(value, str):
        if _ENV_PREFIX not in value:
            return value
        if value.startswith(_ENV_PREFIX) and not _ENV_REFERENCE.match(value):
            raise ConfigError(
                f"{value!r} does not name an environment variable (expected os.environ/NAME)",
                path=path,
            )

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in lookup:
                raise ConfigError(
                    f"environment variable {name} is not set (referenced as os.environ/{name})",
                    path=path,
                )
            return lookup[name]

        ctx.from_env.add(path)
        return _ENV_REFERENCE.sub(substitute, value)
    if isinstance(value, Mapping):
        return {k: _resolve_env(v, _join(path, str(k)), lookup, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, _at(path, i), lookup, ctx) for i, v in enumerate(value)]
    return value


def _environment_variables(value: object, env: Mapping[str, str], ctx: _Context) -> dict[str, str]:
    block = _mapping(value, "environment_variables", ctx)
    exported: dict[str, str] = {}
    for name, raw in block.items():
        path = _join("environment_variables", name)
        # refused now: os.environ would raise a bare ValueError / OSError at the export
        if not _environment_holds(name, name=True):
            raise ConfigError(
                "not a variable name the environment can hold (an empty one, or one with"
                " '=' or a NUL byte)",
                path=path if name else "environment_variables",
            )
        # Everything here is potentially a secret: never shown.
        ctx.from_env.add(path)
        resolved = _resolve_env(raw, path, env, ctx)
        if isinstance(resolved, bool):
            exported[name] = "true" if resolved else "false"
        elif isinstance(resolved, str | int | float):
            exported[name] = str(resolved)
        elif resolved is not None:
            raise _type_error("a string", resolved, path, ctx)
        if name in exported and not _environment_holds(exported[name], name=False):
            raise ConfigError(
                "a value the environment cannot hold (it has a NUL byte, or a character"
                " the file system encoding cannot write)",
                path=path,
            )
    return exported


def _environment_holds(text: str, *, name: bool) -> bool:
    """Whether ``text`` can be an environment variable's name (``name``) or value: the
    OS refuses a NUL byte in either, and an empty name or one with ``=``."""
    if "\0" in text or (name and (not text or "=" in text)):
        return False
    try:
        os.fsencode(text)
    except UnicodeEncodeError:  # a lone surrogate (YAML's "\ud800")
        return False
    return True


# ----- sections


def _model_list(value: object, ctx: _Context) -> tuple[ModelDeployment, ...]:
    if value is None:
        return ()
    deployments = []
    for i, item in enumerate(_sequence(value, "model_list", ctx)):
        path = _at("model_list", i)
        entry = _mapping(item, path, ctx)
        _check_keys(entry, path, ctx, known=_DEPLOYMENT_KEYS)
        if "model_name" not in entry:
            raise ConfigError(
                "required: the name clients use for this model", path=_join(path, "model_name")
            )
        model_name = _name(entry["model_name"], _join(path, "model_name"), ctx)
        if "litellm_params" not in entry:
            raise ConfigError(
                "required: at least {model: provider/model}", path=_join(path, "litellm_params")
            )
        params = _litellm_params(entry["litellm_params"], _join(path, "litellm_params"), ctx)
        info = entry.get("model_info")
        model_info = {} if info is None else _plain_dict(info, _join(path, "model_info"), ctx)
        deployments.append(ModelDeployment(model_name, params, model_info))
    _check_shares(deployments)
    return tuple(deployments)


def _check_shares(deployments: Sequence[ModelDeployment]) -> None:
    """Refuse a model name whose deployments all weigh 0: each is drained, so every
    request to it would be refused (LiteLLM fails those requests instead)."""
    members: dict[str, list[int]] = {}
    for i, deployment in enumerate(deployments):
        members.setdefault(deployment.model_name, []).append(i)
    for name, indices in members.items():
        if any(deployments[i].weight > 0 for i in indices):
            continue
        first = deployments[indices[0]].litellm_params
        key = next(k for k in ("weight", "rpm", "tpm") if first.get(k) is not None)
        which = (
            f"the only deployment of {name!r} has {key}: 0"
            if len(indices) == 1
            else f"every deployment of {name!r} has a share (weight, rpm or tpm) of 0"
        )
        raise ConfigError(
            f"{which}: drained, so no request to {name!r} could be served; give one a share"
            " above 0, or remove the model",
            path=_join(_join(_at("model_list", indices[0]), "litellm_params"), key),
        )


def _router_near_misses(router: Mapping[str, object], ctx: _Context) -> None:
    """Refuse a router_settings key that misspells one deja reads (``num_retires``): it
    was warned about as a LiteLLM setting deja ignores, and retries or the cooldown stayed
    at their defaults. LiteLLM's own settings, and a key nearer one of them than one deja
    reads, stay warned about; a key near none, too (a setting of a LiteLLM to come)."""
    for key in router:
        if key in _ROUTER_KEYS or key in _ROUTER_LITELLM_IGNORED:
            continue
        # (close: a slip of a letter or two, not another word near one deja reads, as
        # num_workers, default_num_retries, max_retries, which LiteLLM configs carry)
        near = difflib.get_close_matches(key.lower(), _ROUTER_KEYS, n=1, cutoff=0.85)
        hint = _suggestion(key, near)
        if hint and hint == _suggestion(key, near, also=_ROUTER_LITELLM_IGNORED):
            raise ConfigError(
                f"unknown key in router_settings{hint}", path=_join("router_settings", key)
            )


def _litellm_params(value: object, path: str, ctx: _Context) -> dict[str, object]:
    block = _mapping(value, path, ctx)
    _check_keys(
        block,
        path,
        ctx,
        known=(*_LITELLM_PARAMS_KEPT, "num_retries"),
        ignored=_LITELLM_PARAMS_IGNORED,
        # LiteLLM passes any key it does not know on to the provider: deja only those
        # it lists, so that a misspelt setting is said now, not by every upstream call
        unlisted=(
            "; not a setting deja reads, nor a request parameter it sends as the"
            " deployment's default (LiteLLM would pass it on to the provider as it is;"
            " deja does so from extra_body: {extra_body: {NAME: ...}})."
            f" Settings: {', '.join(sorted(_LITELLM_SETTINGS_KEPT))};"
            f" request parameters: {', '.join(sorted(DEPLOYMENT_DEFAULTS))}"
        ),
    )
    if "model" not in block:
        raise ConfigError(
            "required: the upstream model, e.g. openai/gpt-4o", path=_join(path, "model")
        )
    params: dict[str, object] = {}
    for key in _LITELLM_PARAMS_KEPT:
        if key not in block or block[key] is None:
            continue
        raw, sub = block[key], _join(path, key)
        if key == "model":
            model = params[key] = _deployment_model(block, path, ctx)
            # a provider deja does not call, and no endpoint named: refused now, not at
            # each request (a wildcard's model is known per request)
            named = (
                block.get("api_base")
                or ctx.env.get("OPENAI_BASE_URL")
                or ctx.env.get("OPENAI_API_BASE")
            )
            if "*" not in model:
                try:
                    resolve_model(model, strict=not named or is_openais(str(named)))
                except InvalidRequestError as exc:
                    raise ConfigError(str(exc), path=sub) from None
            # ...and a provider with no endpoint of its own: every call would fail
            provider, _ = resolve_model(model)
            if (
                provider in _NEEDS_API_BASE
                and block.get("api_base") is None
                and env_api_base(provider, ctx.env) is None
            ):
                raise ConfigError(
                    f"{model!r} needs an api_base: {provider} has no default endpoint (set"
                    f" {_join(path, 'api_base')}, or {provider.upper()}_API_BASE)",
                    path=_join(path, "api_base"),
                )
        elif key in ("timeout", "stream_timeout"):
            params[key] = _seconds(raw, sub, ctx)
        elif key == "max_retries":
            params[key] = _int(raw, sub, ctx, what="a whole number of retries", minimum=0)
        elif key == "extra_headers":
            headers = _mapping(raw, sub, ctx)
            params[key] = {
                name: _header_value(v, _join(sub, name), ctx) for name, v in headers.items()
            }
        elif key in _HEADER_PARAMS:
            params[key] = _header_value(raw, sub, ctx)
        elif key == "cache_control_injection_points":
            params[key] = _injection_points(raw, sub, ctx)
        elif key.endswith(("_cost", "_cost_above_1hr")) or "_cost_per_" in key:
            cost = _number(raw, sub, ctx, what="a price in USD per token")
            if cost < 0:
                raise ConfigError("a price cannot be negative", path=sub)
            params[key] = cost
        elif key == "api_base":
            params[key] = _http_url(raw, sub, ctx)
        elif key == "allow_storage_urls":
            params[key] = _bool(raw, sub, ctx)
        elif key in ("rpm", "tpm", "weight"):
            share = _number(raw, sub, ctx, what="a share of the requests (a number >= 0)")
            if share < 0:
                raise ConfigError("a share of the requests cannot be negative", path=sub)
            params[key] = share
        elif key == "order":
            params[key] = _int(raw, sub, ctx, what="a priority (1 is tried first)", minimum=1)
        elif key in DEPLOYMENT_DEFAULTS:
            params[key] = _request_param(key, raw, sub, ctx)
        elif key == "extra_body":
            params.update(_extra_body(raw, block, sub, ctx))
        else:
            params[key] = _str(raw, sub, ctx)
    if block.get("num_retries") is not None:
        # LiteLLM's name for a deployment's retries (its own word, over router_settings')
        sub = _join(path, "num_retries")
        retries = _int(block["num_retries"], sub, ctx, what="a whole number of retries", minimum=0)
        if params.get("max_retries", retries) != retries:
            raise ConfigError(
                f"max_retries ({params['max_retries']}) and num_retries ({retries}) say two"
                " things: keep one",
                path=sub,
            )
        params["max_retries"] = retries
    _check_bounded_defaults(params, path, ctx)
    return params


# the request parameters whose floor depends on the API (their types: _request_param)
_BOUNDED_DEFAULTS: Final = frozenset(
    {"max_tokens", "max_completion_tokens", "temperature", "top_logprobs"}
)


def _check_bounded_defaults(params: Mapping[str, object], path: str, ctx: _Context) -> None:
    """Refuse a default request parameter below the bounds of the API the deployment calls,
    where deja knows them (``max_tokens: -1`` for Anthropic, a negative ``temperature`` for
    OpenAI's own API): taken at start, it had every request of the model refused."""
    model = str(params["model"])
    defaults = {k: v for k, v in params.items() if k in _BOUNDED_DEFAULTS and v is not None}
    if "*" in model or not defaults:
        return
    provider, _ = resolve_model(model)
    named = params.get("api_base")  # (the endpoint a request of the model goes to)
    base = normalize_api_base(
        str(named) if named is not None else env_api_base(provider, ctx.env), provider
    )
    # judged as chat's: the legacy completions' max_tokens may be 0, but a default of 0 had
    # every chat request refused (and a provider deja translates to takes both as chat)
    for name, value in defaults.items():
        said = _request_type_error(name, value, provider=provider, api_base=base, kinds=("chat",))
        if said is not None:
            raise ConfigError(
                f"{said}: every request of this model would be refused for it (the bound"
                f" of {provider}'s API)",
                path=_join(path, name),
            )


def _json_value(value: object, path: str, ctx: _Context) -> object:
    """``value`` as JSON can carry it, for a request body: a mapping's number keys as
    strings (YAML reads ``logit_bias: {50256: -100}`` with an int key, which JSON writes as
    "50256", as LiteLLM's client does; left an int, the proxy failed to start), and
    anything JSON has no form for (a YAML date, a key that is a list) refused."""
    if isinstance(value, Mapping):
        kept: dict[str, object] = {}
        for key, item in value.items():
            if isinstance(key, bool):
                name = "true" if key else "false"
            elif isinstance(key, (str, int, float)):
                name = str(key)
            else:
                raise ConfigError(f"a key JSON cannot carry: {key!r:.40}", path=path)
            kept[name] = _json_value(item, _join(path, name), ctx)
        return kept
    if isinstance(value, (list, tuple)):
        return [_json_value(item, _at(path, i), ctx) for i, item in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        # (YAML's .nan and .inf: started, then every request of the model was a 400 that
        # blamed the caller for a field it never sent)
        raise ConfigError(f"JSON has no {value}: a finite number is needed", path=path)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise _type_error("a JSON value (text, number, true/false, list or mapping)", value, path, ctx)


def _request_param(name: str, value: object, path: str, ctx: _Context) -> object:
    """A request parameter a deployment sends by default: any JSON value (the provider
    judges it), but of the type deja's own check of a request's fields wants where it has
    one (``max_tokens`` an integer, ``temperature`` a number, ``stop`` text...): a wrong one
    was taken at start, then every request of the model was a 400 that blamed the caller
    ("max_tokens must be an integer, got '100'"). A value from the environment, always a
    string there, is read as the number or boolean it spells where that is what is wanted."""
    value = _json_value(value, path, ctx)
    wrong = _request_type_error(name, value)
    if wrong is None:
        return value
    for want in (int, float, bool):
        converted = _env_scalar(value, path, ctx, want)
        if converted is not value and _request_type_error(name, converted) is None:
            return converted
    # (the check's message shows the value; this one hides one from the environment)
    head, sep, _ = wrong.rpartition(", got ")
    said = head if sep else f"{name} is not of a type a request can carry"
    raise ConfigError(
        f"{said}, got {_shown(value, path, ctx)}: every request of this model would be"
        " refused for it",
        path=path,
    )


def _request_type_error(
    name: str,
    value: object,
    *,
    provider: str | None = None,
    api_base: str | None = None,
    kinds: tuple[RequestKind, ...] = ("chat", "completion"),
) -> str | None:
    """What deja's check of a request's fields says of ``value`` as ``name`` (sent to
    ``provider`` at ``api_base``, when given), or ``None`` if it takes it. Either kind of
    call the default goes into counts: the legacy completions' ``logprobs`` is a count,
    chat's a switch."""
    said: str | None = None
    for kind in kinds:
        try:
            check_params({name: value}, kind, provider=provider, api_base=api_base)
        except InvalidRequestError as exc:
            said = said or str(exc)
        else:
            return None
    return said


def _extra_body(
    value: object, block: Mapping[str, object], path: str, ctx: _Context
) -> dict[str, object]:
    """``extra_body``'s entries, which LiteLLM merges into the request body: default
    request parameters, as if written beside it; the others (a server's own fields, such
    as vLLM's ``guided_json``) are kept in ``extra_body``, sent and keyed as defaults too."""
    entries = _mapping(value, path, ctx)
    defaults: dict[str, object] = {}
    extra: dict[str, object] = {}
    for name, raw in entries.items():
        sub = _join(path, name)
        if name in ("model", "messages", "prompt", "input", "stream", "stream_options"):
            raise ConfigError("the request's own field, not a default to send", path=sub)
        if block.get(name) is not None:
            raise ConfigError(f"{name} is set here and beside extra_body; keep one", path=sub)
        if raw is not None:  # (both merged into the body: of a request's types, each)
            kept = defaults if name in DEPLOYMENT_DEFAULTS else extra
            kept[name] = _request_param(name, raw, sub, ctx)
    return {**defaults, "extra_body": extra} if extra else defaults


def _deployment_model(block: Mapping[str, object], path: str, ctx: _Context) -> str:
    """``litellm_params.model`` as deja calls it: with LiteLLM's ``custom_llm_provider``
    applied as the ``provider/`` prefix it stands for (:func:`~deja.request.with_provider`),
    so the provider's key goes to that provider, in its wire format."""
    model = _name(block["model"], _join(path, "model"), ctx)
    if block.get("custom_llm_provider") is None:
        return model
    sub = _join(path, "custom_llm_provider")
    provider = _name(block["custom_llm_provider"], sub, ctx)
    try:
        return with_provider(model, provider)
    except InvalidRequestError as exc:
        known = (*PROVIDER_API_BASES, *PROVIDER_ALIASES)
        raise ConfigError(f"{exc}{_suggestion(provider, known)}", path=sub) from None


def _http_url(value: object, path: str, ctx: _Context) -> str:
    base = _name(value, path, ctx, what="a URL")
    if not base.startswith(("http://", "https://")):
        raise ConfigError(
            f"expected an http:// or https:// URL, got {_shown(base, path, ctx)}", path=path
        )
    return base


def _injection_points(value: object, path: str, ctx: _Context) -> tuple[dict[str, object], ...]:
    if value is None:
        return ()
    points = []
    for i, item in enumerate(_sequence(value, path, ctx)):
        sub = _at(path, i)
        entry = _mapping(item, sub, ctx)
        _check_keys(entry, sub, ctx, known=_INJECTION_KEYS)
        if "location" not in entry:
            raise ConfigError(
                "required: where to inject (message or tool)", path=_join(sub, "location")
            )
        location = _choice(entry["location"], _join(sub, "location"), ctx, _INJECTION_LOCATIONS)
        point: dict[str, object] = {"location": location}
        if entry.get("role") is not None:
            if location != "message":
                raise ConfigError("role applies only to location: message", path=_join(sub, "role"))
            point["role"] = _choice(entry["role"], _join(sub, "role"), ctx, _MESSAGE_ROLES)
        if entry.get("index") is not None:
            index = _env_scalar(entry["index"], _join(sub, "index"), ctx, int)
            if isinstance(index, bool) or not isinstance(index, int):
                raise _type_error(
                    "an integer index (negative counts from the end)",
                    index,
                    _join(sub, "index"),
                    ctx,
                )
            point["index"] = index
        if entry.get("last") is not None:
            last = _env_scalar(entry["last"], _join(sub, "last"), ctx, int)
            if isinstance(last, bool) or not isinstance(last, int) or last < 1:
                raise _type_error("a positive number of messages", last, _join(sub, "last"), ctx)
            point["last"] = last
        if entry.get("ttl") is not None:
            point["ttl"] = _choice(entry["ttl"], _join(sub, "ttl"), ctx, ("5m", "1h"))
        if entry.get("control") is not None:
            where = _join(sub, "control")
            control = _plain_dict(entry["control"], where, ctx)
            # checked here too, for the YAML path and a value read from the environment
            # kept out of the message; the planner's check below does not know of either
            _choice(control.get("type"), _join(where, "type"), ctx, ("ephemeral",))
            if control.get("ttl") is not None:
                _choice(control["ttl"], _join(where, "ttl"), ctx, ("5m", "1h"))
            point["control"] = control
        _check_injection_point(point, sub, ctx)
        points.append(point)
    return tuple(points)


def _check_injection_point(point: Mapping[str, object], path: str, ctx: _Context) -> None:
    """Run the request path's own check on ``point`` now: a point the planner refuses would
    otherwise start the proxy and then fail every request to the model with a 400 that
    blames the caller. LiteLLM's no-op message point is kept, with a warning."""
    try:
        marks = check_injection_point(point, where=path)
    except InvalidRequestError as exc:
        # the planner's message names the point by ``path`` already
        error = ConfigError(str(exc))
        error.path = path
        raise error from None
    if not marks:
        ctx.warnings.append(
            f"{path} marks nothing: a message point needs role, index or last "
            "(LiteLLM skips this one too)"
        )


def _choice(value: object, path: str, ctx: _Context, choices: Sequence[str]) -> str:
    expected = "one of " + ", ".join(choices)
    text = _str(value, path, ctx, what=expected)
    if text not in choices:
        raise ConfigError(
            f"expected {expected}, got {_shown(text, path, ctx)}{_suggestion(text, choices)}",
            path=path,
        )
    return text


def _hooks(value: object, ctx: _Context) -> tuple[HookSpec, ...]:
    if value is None:
        return ()
    hooks = []
    for i, item in enumerate(_sequence(value, "hooks", ctx)):
        path = _at("hooks", i)
        entry = _mapping(item, path, ctx)
        _check_keys(entry, path, ctx, known=_HOOK_KEYS)
        if "path" not in entry:
            raise ConfigError("required: the hook file, e.g. my_hooks.py", path=_join(path, "path"))
        file = _name(entry["path"], _join(path, "path"), ctx, what="a .py file path")
        if not file.endswith(".py"):
            raise ConfigError(
                f"expected a .py file path, got {_shown(file, _join(path, 'path'), ctx)}",
                path=_join(path, "path"),
            )
        names: dict[str, str | None] = {}
        for key in _HOOK_FUNCTIONS:
            raw = entry.get(key)
            if raw is None:
                names[key] = None
                continue
            name = _str(raw, _join(path, key), ctx, what="a function name")
            if _IDENTIFIER.fullmatch(name) is None:
                raise ConfigError(
                    f"expected a function name, got {_shown(name, _join(path, key), ctx)}",
                    path=_join(path, key),
                )
            names[key] = name
        if not any(names.values()):
            raise ConfigError(
                "names no hook function; add one of: " + ", ".join(_HOOK_FUNCTIONS), path=path
            )
        hook_file = (ctx.base_dir / Path(file).expanduser()).absolute()
        if _bundled_injection_hook(hook_file, names):
            ctx.warnings.append(
                f"{path}: {file} is LiteLLM's bundled hook, and there is no such file: skipped."
                " deja places cache_control markers by itself, where"
                " cache_control_injection_points (top level, or a deployment's litellm_params)"
                " say"
            )
            continue
        hooks.append(
            HookSpec(
                path=hook_file,
                async_pre_llm_hook=names["async_pre_llm_hook"],
                async_post_cache_hook=names["async_post_cache_hook"],
                key_builder=names["key_builder"],
            )
        )
    return tuple(hooks)


# LiteLLM's hook that injects cache_control markers, which the seed guide lists under
# hooks: as a file to load; deja's injection points do its work
_BUNDLED_INJECTION_HOOK: Final = "anthropic_cache_control_hook.py"


def _bundled_injection_hook(file: Path, names: Mapping[str, str | None]) -> bool:
    """Whether a hooks entry is LiteLLM's bundled injection hook, named by the guide's
    config but absent (its job is built in): a pre-LLM hook only, in a file of that name
    that does not exist. A file of that name that is there is the user's own, and runs."""
    return (
        file.name == _BUNDLED_INJECTION_HOOK
        and not file.exists()
        and names["async_post_cache_hook"] is None
        and names["key_builder"] is None
    )


def _litellm_settings(value: object, ctx: _Context) -> _LiteLLMSettings:
    if value is None:
        return _LiteLLMSettings()
    path = "litellm_settings"
    block = _mapping(value, path, ctx)
    _check_keys(block, path, ctx, known=_LITELLM_SETTINGS_KEYS, ignored=_LITELLM_SETTINGS_IGNORED)
    cache = None if block.get("cache") is None else _bool(block["cache"], _join(path, "cache"), ctx)
    params = None
    if block.get("cache_params") is not None:
        params = _mapping(block["cache_params"], _join(path, "cache_params"), ctx)
    prometheus: bool | None = None
    if block.get("enable_prometheus") is not None:
        prometheus = _bool(block["enable_prometheus"], _join(path, "enable_prometheus"), ctx)
    # LiteLLM turns its Prometheus metrics on with callbacks: ["prometheus"].
    for key in ("callbacks", "success_callback", "failure_callback"):
        if block.get(key) is None:
            continue
        raw = block[key]
        names = (raw,) if isinstance(raw, str) else _str_tuple(raw, _join(path, key), ctx)
        others = [n for n in names if n != "prometheus"]
        if len(others) < len(names):
            prometheus = True
        if others:
            ctx.ignored.append(f"{_join(path, key)} ({', '.join(others)})")
    metrics_auth = False
    if block.get("require_auth_for_metrics_endpoint") is not None:
        where = _join(path, "require_auth_for_metrics_endpoint")
        metrics_auth = _bool(block["require_auth_for_metrics_endpoint"], where, ctx)
    return _LiteLLMSettings(
        cache=cache,
        cache_params=params,
        enable_prometheus=prometheus,
        metrics_auth=metrics_auth,
        fallbacks={
            k: v
            for k, v in block.items()
            if v is not None and (k in _FALLBACK_KINDS or k in _FALLBACK_OPTIONS)
        },
    )


def model_name_pattern(name: str) -> re.Pattern[str]:
    """The names a ``model_list`` name with ``*`` serves (LiteLLM's wildcard routing), to
    match whole: each ``*`` a group of what it matched, in order (``openai/*``:
    ``openai/gpt-4o``, its group ``gpt-4o``)."""
    parts = [re.escape(part) for part in name.split("*")]
    return re.compile("(.*?)".join(parts[:-1]) + "(.*)" + parts[-1], re.S)


def _fallback_settings(
    router: Mapping[str, object],
    litellm: _LiteLLMSettings,
    model_list: Sequence[ModelDeployment],
    ctx: _Context,
) -> FallbackSettings:
    """LiteLLM's fallbacks across model names, from ``router_settings`` or, for a kind it
    does not name, from ``litellm_settings`` (as LiteLLM's Router reads them). Every name
    must be served by ``model_list`` (a typo would never fall back), ``"*"`` as a key
    standing for every name without an entry of its own."""
    names = {d.model_name for d in model_list}
    patterns = [model_name_pattern(name) for name in names if "*" in name]
    exact = sorted(n for n in names if "*" not in n)

    def served(name: object, path: str, *, key: bool = False) -> str:
        text = _name(name, path, ctx, what="a model name")
        if key and (text in names or text == "*"):
            return text  # (a wildcard name as a key: its names' fallbacks)
        if "*" in text:
            raise ConfigError(
                f"{text!r} is a pattern: a fallback is the model name a request is sent"
                " as (one a wildcard entry serves is fine)",
                path=path,
            )
        if text in names or any(p.fullmatch(text) for p in patterns):
            return text
        raise ConfigError(
            f"{text!r} is no model_name of model_list{_suggestion(text, exact)}", path=path
        )

    def given(key: str) -> tuple[object, str] | None:
        mine, theirs = router.get(key), litellm.fallbacks.get(key)
        # (LiteLLM's Router: ``fallbacks or litellm.fallbacks``, but a max_fallbacks of 0
        # is one: ``litellm.max_fallbacks`` only when the Router's is None)
        absent = mine is None if key == "max_fallbacks" else not mine
        if absent:
            return None if theirs is None else (theirs, _join("litellm_settings", key))
        if theirs is not None and theirs != mine:
            ctx.warnings.append(
                f"{key} is given in router_settings and in litellm_settings: router_settings'"
                " is used, as LiteLLM's Router does"
            )
        return mine, _join("router_settings", key)

    def names_of(value: object, path: str) -> tuple[str, ...]:
        if isinstance(value, str):  # (LiteLLM would try each of its letters)
            raise ConfigError(f"expected a list of model names, got {value!r}", path=path)
        entries = _sequence(value, path, ctx)
        for i, entry in enumerate(entries):
            if isinstance(entry, Mapping):
                raise ConfigError(
                    "a fallback is a model name: deja does not take LiteLLM's fallbacks with"
                    " their own request parameters (give the model_list entry them)",
                    path=_at(path, i),
                )
        return tuple(served(entry, _at(path, i)) for i, entry in enumerate(entries))

    maps: dict[str, dict[str, tuple[str, ...]]] = {}
    for kind in _FALLBACK_KINDS:
        found = given(kind)
        table: dict[str, tuple[str, ...]] = {}
        if found is not None:
            value, path = found
            for i, item in enumerate(_sequence(value, path, ctx)):
                entry = _mapping(item, _at(path, i), ctx)
                for source, targets in entry.items():
                    where = _join(_at(path, i), source)
                    served(source, where, key=True)
                    if source in table:
                        raise ConfigError(f"{source!r} has fallbacks twice in {path}", path=where)
                    table[source] = names_of(targets, where)
        maps[kind] = table
    default: tuple[str, ...] = ()
    found = given("default_fallbacks")
    if found is not None:
        default = names_of(*found)
    most = DEFAULT_MAX_FALLBACKS
    found = given("max_fallbacks")
    if found is not None:
        most = _int(*found, ctx, what="a whole number of fallbacks", minimum=0)
    return FallbackSettings(
        general=maps["fallbacks"],
        context_window=maps["context_window_fallbacks"],
        content_policy=maps["content_policy_fallbacks"],
        default=default,
        max_fallbacks=most,
    )


def _caching_settings(
    root: Mapping[str, object],
    litellm: _LiteLLMSettings,
    hooks: Sequence[HookSpec],
    model_list: Sequence[ModelDeployment],
    ctx: _Context,
) -> CachingSettings | None:
    responses = root.get("cache_responses")
    switch = None if responses is None else _bool(responses, "cache_responses", ctx)
    litellm_on = litellm.cache is True
    # the two on/off switches (the seed guide's and LiteLLM's) may not contradict
    if switch is not None and litellm.cache is not None and switch is not litellm.cache:
        raise ConfigError(
            f"cache_responses is {str(switch).lower()} but litellm_settings.cache is "
            f"{str(litellm.cache).lower()}; keep one",
            path="cache_responses",
        )

    caching: CachingSettings | None
    if "caching" in root:
        if litellm_on or litellm.cache_params is not None:
            conflict = "cache_params" if litellm.cache_params is not None else "cache"
            raise ConfigError(
                "the cache is configured twice, by caching and by litellm_settings; keep one "
                "(litellm_settings.cache_params takes the same keys as caching)",
                path=f"litellm_settings.{conflict}",
            )
        block = _mapping(root["caching"], "caching", ctx)
        caching = _parse_caching(
            block, "caching", model_list, ctx, default_type=_NATIVE_DEFAULT_TYPE
        )
        # validated above, so a typo still fails, then switched off, as the switch says
        off = "cache_responses" if switch is False else None
        if litellm.cache is False:  # LiteLLM's own switch
            off = "litellm_settings.cache"
        if off is not None:
            caching = None
            ctx.warnings.append(f"the caching block is not used: {off} is false (no cache)")
    elif litellm_on or (switch is True and litellm.cache_params is not None):
        # cache_params is how LiteLLM's cache is built, whichever switch turned it on
        caching = _parse_caching(
            litellm.cache_params or {},
            "litellm_settings.cache_params",
            model_list,
            ctx,
            default_type=_LITELLM_DEFAULT_TYPE,
            litellm_block=True,
        )
    elif switch is True:
        caching = _parse_caching({}, "caching", model_list, ctx, default_type=_NATIVE_DEFAULT_TYPE)
    else:
        caching = None
        if litellm.cache_params is not None:
            ctx.warnings.append(
                "litellm_settings.cache_params is ignored because litellm_settings.cache is "
                "not true (LiteLLM ignores it too)"
            )

    hook_builders = [(i, h) for i, h in enumerate(hooks) if h.key_builder is not None]
    if len(hook_builders) > 1:
        raise ConfigError(
            "more than one hook defines key_builder; keep one",
            path=_join(_at("hooks", hook_builders[1][0]), "key_builder"),
        )
    if hook_builders:
        index, hook = hook_builders[0]
        path = _join(_at("hooks", index), "key_builder")
        if caching is None:
            ctx.warnings.append(f"{path} has no effect: no cache is configured")
        elif caching.key_builder is not None:
            raise ConfigError(
                "the key builder is set here and in caching.key_builder; keep one", path=path
            )
        else:
            caching = _replace_key_builder(caching, f"{hook.path}:{hook.key_builder}", path)
    return caching


def _replace_key_builder(caching: CachingSettings, spec: str, path: str) -> CachingSettings:
    from dataclasses import replace

    return replace(caching, key_builder=spec, key_builder_path=path)


# ----- values read from the environment, as LiteLLM reads them

# LiteLLM's Redis caches read REDIS_<redis-py keyword> (litellm/_redis.py), and
# REDIS_CLUSTER_NODES / REDIS_SENTINEL_NODES as JSON lists; a value in the block wins.
# Where the server is comes from the environment only when the block names no address
# at all: a block's own host is never paired with another server's port.
_REDIS_TYPES: Final = frozenset({"redis", "redis_semantic"})
_REDIS_ADDRESS_KEYS: Final = ("url", "host", "startup_nodes", "sentinel_nodes")
_REDIS_ENV_ADDRESSES: Final = (
    ("REDIS_URL", "url", ()),
    ("REDIS_CLUSTER_NODES", "startup_nodes", ()),
    ("REDIS_SENTINEL_NODES", "sentinel_nodes", (("REDIS_SERVICE_NAME", "service_name"),)),
    ("REDIS_HOST", "host", (("REDIS_PORT", "port"), ("REDIS_DB", "db"))),
)
# LiteLLM drops the password when a URL is given (the URL carries its credentials).
_REDIS_ENV_CREDENTIALS: Final = (("REDIS_USERNAME", "username"), ("REDIS_PASSWORD", "password"))
_REDIS_ENV_SETTINGS: Final = (
    ("REDIS_SSL", "ssl"),
    ("REDIS_SSL_CA_CERTS", "ssl_ca_certs"),
    ("REDIS_SSL_CERT_REQS", "ssl_cert_reqs"),
    ("REDIS_SSL_CHECK_HOSTNAME", "ssl_check_hostname"),
    ("REDIS_SOCKET_TIMEOUT", "op_timeout"),
    ("REDIS_SOCKET_CONNECT_TIMEOUT", "connect_timeout"),
    ("REDIS_MAX_CONNECTIONS", "max_connections"),
    ("REDIS_CLIENT_NAME", "client_name"),
    ("REDIS_SENTINEL_PASSWORD", "sentinel_password"),
)
# REDIS_* variables LiteLLM applies and deja's Redis client cannot.
_REDIS_ENV_UNSUPPORTED: Final = (
    "REDIS_SSL_CERTFILE",
    "REDIS_SSL_KEYFILE",
    "REDIS_SSL_PASSWORD",
    "REDIS_GCP_SERVICE_ACCOUNT",
)
# LiteLLM's QdrantSemanticCache: qdrant_api_base or QDRANT_URL or QDRANT_API_BASE.
_QDRANT_ENV_URLS: Final = ("QDRANT_URL", "QDRANT_API_BASE")
_QDRANT_ENV_KEY: Final = "QDRANT_API_KEY"


def _environment_option(
    cache_type: CacheType, name: str, variable: str, path: str, ctx: _Context
) -> object:
    """Option ``name`` of ``cache_type`` from environment variable ``variable``, checked
    like the YAML value it stands in for; a message names the variable, never the value."""
    option = cache_type.options[name]
    sub = _join(path, name)
    raw: object = ctx.env[variable]
    ctx.from_env.add(sub)
    if list in option.accepted and isinstance(raw, str):  # node lists are JSON, as in LiteLLM
        try:
            raw = json.loads(raw)
        except ValueError:
            raise ConfigError(
                f"the environment variable {variable} is not a JSON list of nodes "
                '(e.g. [{"host": "10.0.0.1", "port": 7000}])',
                path=sub,
            ) from None
    try:
        return _option_value(option, raw, sub, ctx)
    except ConfigError as exc:
        reason = str(exc).removeprefix(f"{exc.path}: ") if exc.path else str(exc)
        raise ConfigError(
            f"{reason} (read from the environment variable {variable})", path=exc.path or sub
        ) from None


def _with_environment(
    cache_type: CacheType,
    block: Mapping[str, object],
    options: dict[str, object],
    path: str,
    ctx: _Context,
) -> dict[str, object]:
    """``options`` with what a redis or qdrant block leaves unset read from the
    environment, as LiteLLM reads it (REDIS_HOST, REDIS_URL, QDRANT_URL...)."""
    if cache_type.name in _REDIS_TYPES:
        return _redis_environment(cache_type, block, options, path, ctx)
    if cache_type.name == "qdrant_semantic":
        filled = dict(options)
        if filled.get("qdrant_api_base") is None:
            for variable in _QDRANT_ENV_URLS:
                if ctx.env.get(variable):
                    filled["qdrant_api_base"] = _environment_option(
                        cache_type, "qdrant_api_base", variable, path, ctx
                    )
                    break
        # the key is for a server: local mode has none to send it to
        if (
            filled.get("qdrant_api_base") is not None
            and filled.get("qdrant_api_key") is None
            and ctx.env.get(_QDRANT_ENV_KEY)
        ):
            filled["qdrant_api_key"] = _environment_option(
                cache_type, "qdrant_api_key", _QDRANT_ENV_KEY, path, ctx
            )
        return filled
    return options


def _redis_environment(
    cache_type: CacheType,
    block: Mapping[str, object],
    options: dict[str, object],
    path: str,
    ctx: _Context,
) -> dict[str, object]:
    env, known = ctx.env, cache_type.options
    wanted: list[tuple[str, str]] = []
    if not any(options.get(key) is not None for key in _REDIS_ADDRESS_KEYS):
        for variable, name, companions in _REDIS_ENV_ADDRESSES:
            if name not in known or not env.get(variable):
                continue
            if name == "url" and (options.get("port") is not None or options.get("db") is not None):
                continue  # a URL cannot go with the block's own port or db
            wanted += [(variable, name), *companions]
            break
    url = options.get("url") is not None or any(name == "url" for _, name in wanted)
    wanted += [*(() if url else _REDIS_ENV_CREDENTIALS), *_REDIS_ENV_SETTINGS]
    filled = dict(options)
    for variable, name in wanted:
        if name in known and filled.get(name) is None and env.get(variable):
            filled[name] = _environment_option(cache_type, name, variable, path, ctx)

    # LiteLLM refuses to start without an address; deja's own format documents the
    # default, so only a LiteLLM block is told which server it gets
    if path.startswith("litellm_settings.") and not any(
        filled.get(key) is not None for key in _REDIS_ADDRESS_KEYS
    ):
        ctx.warnings.append(
            f"{path}: no Redis address (host, url, redis_startup_nodes or sentinel_nodes), "
            "and neither REDIS_URL nor REDIS_HOST is set in the environment: deja connects "
            "to 127.0.0.1:6379 (LiteLLM would not start)"
        )
    certificates = [
        _join(path, key) for key in _REDIS_TLS_CLIENT_CERT if block.get(key) is not None
    ] + [name for name in _REDIS_ENV_UNSUPPORTED if env.get(name)]
    if certificates:
        ctx.warnings.append(
            f"{', '.join(certificates)}: deja's Redis client does not support TLS client "
            "certificates (nor GCP IAM sign-in) and connects without them; a server that "
            "requires them refuses every connection, and every lookup is then a miss"
        )
    return filled


def _folded_ttl(
    ttl: float | None, options: Mapping[str, object], path: str, ctx: _Context
) -> float | None:
    """The block's TTL with the ``ttl`` of the cache blocks nested in it folded in.

    The cache sets one TTL on every entry it writes, through whatever stores it is made
    of, so a nested block's ttl (the guide's ``l2: {type: redis, ttl: 3600}``) is that
    TTL; when two differ, entries expire after the shorter. A tiered cache's ``l1.ttl`` is
    only how long L1 keeps its copies (``l1_ttl``), so it is not one of them.
    """
    for name, spec in options.items():
        if name == "l1" or not isinstance(spec, StoreSpec) or spec.ttl is None:
            continue
        if ttl is None:
            ttl = spec.ttl
        elif spec.ttl != ttl:
            shorter = min(ttl, spec.ttl)
            ctx.warnings.append(
                f"{_join(_join(path, name), 'ttl')} ({spec.ttl:g} s) and "
                f"{_join(path, 'ttl')} ({ttl:g} s) differ: entries expire after the "
                f"shorter, {shorter:g} s"
            )
            ttl = shorter
    return ttl


# ----- supported_call_types

# LiteLLM's call types deja's cache serves, by the kind of request they are.
_CALL_TYPES: Final = {
    "completion": "chat",
    "acompletion": "chat",
    "text_completion": "completion",
    "atext_completion": "completion",
    "embedding": "embedding",
    "aembedding": "embedding",
}
_CALL_TYPE_ROUTES: Final = {
    "chat": "/chat/completions",
    "completion": "/completions",
    "embedding": "/embeddings",
}


def _call_types(value: object, path: str, ctx: _Context) -> frozenset[str]:
    """LiteLLM's ``supported_call_types`` as the request kinds whose answers are stored."""
    names = (value,) if isinstance(value, str) else _str_tuple(value, path, ctx)
    kinds: set[str] = set()
    others: list[str] = []
    for i, name in enumerate(names):
        kind = _CALL_TYPES.get(name)
        if kind is not None:
            kinds.add(kind)
            continue
        close = difflib.get_close_matches(name, list(_CALL_TYPES), n=1, cutoff=0.8)
        if close:  # acompletions, aembeddings: a typo would turn caching off for a route
            raise ConfigError(
                f"unknown call type {_shown(name, _at(path, i), ctx)}; did you mean {close[0]!r}?",
                path=_at(path, i) if not isinstance(value, str) else path,
            )
        others.append(name)
    # the proxy's routes of the kinds left out bypass the cache, as in LiteLLM
    if others:
        ctx.warnings.append(
            f"{path}: {', '.join(others)}: deja serves no such call, nothing to cache"
        )
    return frozenset(kinds)


@dataclass(frozen=True, slots=True)
class _CallTypeAdmission(AdmissionPolicy):
    """:class:`~deja.policy.AdmissionPolicy` that also refuses the answers of request
    kinds ``supported_call_types`` leaves out (``chat``, ``completion``, ``embedding``)."""

    call_types: frozenset[str] = frozenset()

    def admit(self, response: object) -> Admission:
        if _response_kind(response) not in self.call_types:
            return Admission(False, "call_type")
        return AdmissionPolicy.admit(self, response)


def _response_kind(response: object) -> str:
    """Which kind of request an OpenAI-shaped answer answers."""
    if not isinstance(response, Mapping):
        return "chat"
    kind = response.get("object")
    if kind == "list" or (kind is None and "data" in response):
        return "embedding"
    if kind == "text_completion":
        return "completion"
    choices = response.get("choices")
    first = choices[0] if isinstance(choices, list) and choices else None
    if isinstance(first, Mapping) and "text" in first and "message" not in first:
        return "completion"
    return "chat"


# ----- where an in-process semantic index lives


def _semantic_index_warnings(
    cache_type: CacheType,
    options: Mapping[str, object],
    params: Mapping[str, object],
    path: str,
    ctx: _Context,
) -> None:
    """Say, at start, when a semantic index is kept in one process only (lost at restart,
    not shared by the workers) or a setting about saving it has no effect."""
    interval = _join(_join(path, "params"), "semantic_save_interval")
    where = _join(path, "index_directory")
    if cache_type.name == "redis_semantic" or (
        cache_type.name == "qdrant_semantic" and options.get("qdrant_api_base") is not None
    ):
        unused = [interval] if "semantic_save_interval" in params else []
        if options.get("index_directory") is not None:
            unused.append(where)
        if unused:
            ctx.warnings.append(
                f"{' and '.join(unused)} {'have' if len(unused) > 1 else 'has'} no effect: "
                "the semantic index is on the server, stored as it changes"
            )
        return
    if cache_type.name not in ("semantic", "qdrant_semantic"):
        return
    spec = options.get("store")
    store = spec.type if isinstance(spec, StoreSpec) else "memory"
    if store == "memory" and options.get("index_directory") is not None:
        ctx.warnings.append(
            f"{where} has no effect with a memory store: its entries live in each worker and"
            " end with it, so the semantic index does too (vectors shared without their"
            " entries would be forgotten by the workers that lack them); use a disk or"
            " shared store to share it"
        )
    saved = store == "disk" or (store != "memory" and options.get("index_directory") is not None)
    qdrant = cache_type.name == "qdrant_semantic"
    if qdrant:
        message = (
            f"{path}: no Qdrant server (neither qdrant_api_base nor QDRANT_URL / "
            "QDRANT_API_BASE is set): the semantic index runs in Qdrant's local mode "
            "inside this process"
        )
        if not saved:
            message += (
                f", in memory: lost at restart and not shared between workers (set {where} "
                "to save it)"
            )
        ctx.warnings.append(message + "; set qdrant_api_base (or QDRANT_URL) to use a server")
        if saved:
            return
    elif saved:
        return
    if store != "memory":
        if not qdrant:
            ctx.warnings.append(
                f"{path}: the semantic index lives in this process only: it is lost at "
                f"restart and not shared between workers, while the {store} store's exact "
                f"entries are; set {where} to a directory the workers share to save it "
                "there and share it"
                + (f" ({interval} applies then)" if "semantic_save_interval" in params else "")
            )
    elif "semantic_save_interval" in params:
        ctx.warnings.append(
            f"{interval} has no effect: the semantic index is not saved (set {where}, or "
            "use a disk store, to save it)"
        )


def _parse_caching(
    block: Mapping[str, object],
    path: str,
    model_list: Sequence[ModelDeployment],
    ctx: _Context,
    *,
    default_type: str,
    litellm_block: bool = False,
) -> CachingSettings:
    """A cache block, validated; ``litellm_block``: LiteLLM's ``cache_params``, whose
    defaults are LiteLLM's (a ``local`` cache's entries live 600 s unless a TTL is set)."""
    cache_type = _cache_type(block, path, ctx, default_type=default_type)
    option_keys = cache_type.option_keys()
    known = (*_CACHING_KEYS, *_CACHE_PARAMS_MAPPED, *option_keys)
    ignored = [k for k in _CACHE_PARAMS_LITELLM if k not in option_keys]
    _check_keys(block, path, ctx, known=known, ignored=ignored)
    options = _with_environment(
        cache_type, block, _options(cache_type, block, path, ctx), path, ctx
    )

    def get(key: str) -> object:
        return block.get(key)

    ttl = _folded_ttl(_optional_seconds(get("ttl"), _join(path, "ttl"), ctx), options, path, ctx)
    # LiteLLM: a per-backend default TTL replaces ttl for that backend only (Cache()
    # sets its ttl to it, and every write passes that ttl to the backend).
    for key, applies_to in (
        ("default_in_memory_ttl", ("memory",)),
        ("default_in_redis_ttl", ("redis", "redis_semantic")),
    ):
        if get(key) is None:
            continue
        value = _seconds(get(key), _join(path, key), ctx)
        if cache_type.name in applies_to:
            ttl = value
        else:
            ctx.ignored.append(_join(path, key))
    if ttl is None and litellm_block and cache_type.name == "memory":
        ttl = _LITELLM_MEMORY_TTL

    params_path = _join(path, "params")
    params: dict[str, object] = {}
    if get("params") is not None:
        params = _semantic_params(get("params"), params_path, ctx)
    for key, semantic_type in (
        ("redis_semantic_cache_embedding_model", "redis_semantic"),
        ("qdrant_semantic_cache_embedding_model", "qdrant_semantic"),
    ):
        if get(key) is None:
            continue
        model = _name(get(key), _join(path, key), ctx)
        if cache_type.name != semantic_type:
            ctx.ignored.append(_join(path, key))
        elif "embedding_model" in params:
            raise ConfigError(
                f"the embedding model is set here and in {path}.params.embedding_model; keep one",
                path=_join(path, key),
            )
        else:
            params["embedding_model"] = model
    if get("semantic_cache_embedding_timeout") is not None:  # LiteLLM's name
        where = _join(path, "semantic_cache_embedding_timeout")
        if cache_type.name not in _SEMANTIC_TYPES:
            ctx.ignored.append(where)
        elif (params.get("embedding_model") or _LOCAL_EMBEDDING_MODEL) == _LOCAL_EMBEDDING_MODEL:
            ctx.warnings.append(f"{where} has no effect with the local embedding model")
        elif "timeout" in params:
            raise ConfigError(
                f"the embedding timeout is set here and in {params_path}.timeout; keep one",
                path=where,
            )
        else:
            params["timeout"] = _seconds(get("semantic_cache_embedding_timeout"), where, ctx)

    l2 = options.get("l2")
    shareable = isinstance(l2, StoreSpec) and l2.type != "memory"
    if cache_type.name == "tiered" and shareable and tiered_bus_url(options) is None:
        ctx.warnings.append(
            f"{path}: the L1 invalidations of this tiered cache reach this process only (its"
            f" l2 is {_l2_kind(l2)}): another process or host sharing the l2 keeps serving"
            " what this one deletes, overwrites or flushes for up to l1_ttl; set"
            f" {_join(path, 'invalidation_url')}: redis://... if others share it"
        )
    semantic = cache_type.name in _SEMANTIC_TYPES
    if semantic:
        params = _embedding_deployment(params, params_path, model_list, ctx)
        _semantic_index_warnings(cache_type, options, params, path, ctx)
    if "max_entries" in params and cache_type.name != "semantic":
        raise ConfigError(
            "bounds the in-process semantic index (type: semantic); Redis and Qdrant "
            "indexes have no entry bound here (their entries expire with their answers)",
            path=_join(params_path, "max_entries"),
        )

    call_types = None
    if get("supported_call_types") is not None:
        call_types = _call_types(
            get("supported_call_types"), _join(path, "supported_call_types"), ctx
        )

    key_builder = None
    if get("key_builder") is not None:
        sub = _join(path, "key_builder")
        key_builder = _str(get("key_builder"), sub, ctx, what="'module.function'")
        _split_callable_spec(key_builder, sub)

    threshold = None
    if get("similarity_threshold") is not None:
        threshold = _fraction(get("similarity_threshold"), _join(path, "similarity_threshold"), ctx)
    embedding_model = params.get("embedding_model") or _LOCAL_EMBEDDING_MODEL
    if semantic and threshold is None and embedding_model != _LOCAL_EMBEDDING_MODEL:
        # another model's cosines are on another scale (unrelated texts at ~0.78 with
        # ada-002): the embedded model's threshold served ~44% wrong answers on one
        ctx.warnings.append(
            f"{path}: no similarity_threshold for embedding model {embedding_model}: the"
            " semantic tier runs the threshold tuned for the embedded model, whose scale"
            " another model's similarities do not share; measure one with"
            " `deja calibrate PAIRS.jsonl --config FILE`"
        )

    # validated above either way, so a typo still fails; then said not to do anything
    unused = [
        _join(path, key)
        for key, given in (("similarity_threshold", threshold is not None), ("params", params))
        if given
    ]
    if unused and not semantic:
        ctx.warnings.append(
            f"{' and '.join(unused)} {'have' if len(unused) > 1 else 'has'} no effect: cache "
            f"type {cache_type.name!r} has no semantic tier (use one of: "
            f"{', '.join(sorted(_SEMANTIC_TYPES))})"
        )

    return CachingSettings(
        type=cache_type.name,
        options=options,
        ttl=ttl,
        key_prefix=(
            DEFAULT_KEY_PREFIX
            if get("key_prefix") is None
            else _key_prefix(get("key_prefix"), _join(path, "key_prefix"), ctx)
        ),
        namespace=(
            None
            if get("namespace") is None
            else _namespace(get("namespace"), _join(path, "namespace"), ctx)
        ),
        key_builder=key_builder,
        similarity_threshold=threshold,
        params=params,
        max_entry_bytes=(
            DEFAULT_MAX_ENTRY_BYTES
            if get("max_entry_bytes") is None
            else _int(
                get("max_entry_bytes"),
                _join(path, "max_entry_bytes"),
                ctx,
                what="a number of bytes",
                minimum=1,
            )
        ),
        compress_min_bytes=(
            DEFAULT_COMPRESS_MIN_BYTES
            if get("compress_min_bytes") is None
            else _int(
                get("compress_min_bytes"),
                _join(path, "compress_min_bytes"),
                ctx,
                what="a number of bytes",
                minimum=0,
            )
        ),
        store_truncated=(
            True
            if get("store_truncated") is None
            else _bool(get("store_truncated"), _join(path, "store_truncated"), ctx)
        ),
        mode=_mode(get("mode"), _join(path, "mode"), ctx),
        lock_ttl=(
            _DEFAULT_LOCK_TTL
            if get("lock_ttl") is None
            else _lock_seconds(get("lock_ttl"), _join(path, "lock_ttl"), ctx)
        ),
        lock_wait=(
            _DEFAULT_LOCK_WAIT
            if get("lock_wait") is None
            else _wait_seconds(get("lock_wait"), _join(path, "lock_wait"), ctx)
        ),
        call_types=call_types,
        base_dir=ctx.base_dir,
        registry=ctx.registry,
    )


def _semantic_params(value: object, path: str, ctx: _Context) -> dict[str, object]:
    """``params``: only the keys the semantic tier reads, each checked; nulls dropped."""
    block = _mapping(value, path, ctx)
    _check_keys(block, path, ctx, known=_SEMANTIC_PARAMS)
    params: dict[str, object] = {}
    for key, raw in block.items():
        if raw is None:
            continue
        sub = _join(path, key)
        if key == "embedding_model":
            params[key] = _name(raw, sub, ctx, what="an embedding model name")
        elif key == "dimensions":
            params[key] = _int(raw, sub, ctx, what="a number of dimensions", minimum=1)
        elif key == "api_base":
            params[key] = _http_url(raw, sub, ctx)
        elif key == "api_key":
            params[key] = _name(_header_value(raw, sub, ctx), sub, ctx)
        elif key == "timeout":  # seconds per call of a remote embedding model
            params[key] = _seconds(raw, sub, ctx)
        elif key == "max_strikes":  # wrong-answer reports before an entry leaves the tier
            params[key] = _int(
                raw, sub, ctx, what="a whole number of wrong-answer reports", minimum=1
            )
        elif key == "strike_penalty":  # similarity each report adds to what the entry needs
            params[key] = _fraction(raw, sub, ctx)
        elif key == "max_entries":  # the in-process index's bound (oldest evicted first)
            params[key] = _int(raw, sub, ctx, what="a whole number of entries", minimum=1)
        else:  # semantic_save_interval: how often an in-process index beside a disk store is saved
            params[key] = _seconds(raw, sub, ctx)
    return params


def _embedding_deployment(
    params: dict[str, object],
    path: str,
    model_list: Sequence[ModelDeployment],
    ctx: _Context,
) -> dict[str, object]:
    """Resolve ``params.embedding_model`` through ``model_list``, as LiteLLM does.

    A name that is a deployment's model_name (an alias such as ``my-embedding``, or a real
    model name the config routes somewhere) becomes that deployment's model, and its
    api_base, api_key and timeout fill in the ones ``params`` does not set; its calls carry
    what the proxy's ``/v1/embeddings`` calls to it carry too: its ``extra_headers`` and
    ``organization`` (``params.headers``), and an Azure deployment's ``api_version`` (in
    the api_base, as the deployment URL Azure's client takes as it is). Otherwise the name
    is an OpenAI-compatible model at params' api_base (or the client's default endpoint).
    """
    name = params.get("embedding_model") or _LOCAL_EMBEDDING_MODEL
    if name == _LOCAL_EMBEDDING_MODEL:
        given = [key for key in _REMOTE_EMBEDDER_PARAMS if key in params]
        if given:
            ctx.warnings.append(
                f"{', '.join(_join(path, key) for key in given)} "
                f"{'have' if len(given) > 1 else 'has'} no effect with the local embedding "
                "model (set params.embedding_model to an OpenAI-compatible model)"
            )
        return params
    matches = [d for d in model_list if d.model_name == name]
    if not matches:
        if not any(params.get(key) for key in ("api_base", "api_key")) and not ctx.env.get(
            "OPENAI_API_KEY"
        ):
            # (an api_base may need no key: a local embeddings server)
            ctx.warnings.append(
                f"{_join(path, 'embedding_model')}: {name!r} is no model_list name and has no"
                " api_key, and OPENAI_API_KEY is not set: OpenAI will refuse every embedding"
                " call, and every semantic lookup will miss (give params.api_key, or a"
                " model_list deployment of that name)"
            )
        return params
    if len(matches) > 1:
        ctx.warnings.append(
            f"{_join(path, 'embedding_model')}: model_list has {len(matches)} deployments "
            f"named {name!r}; the semantic tier embeds with the first"
        )
    deployment = matches[0]
    deployed = deployment.litellm_params
    resolved = {**params, "embedding_model": deployment.model}
    for key in ("api_base", "api_key", "timeout"):
        value = deployed.get(key)
        if key not in params and value is not None:
            resolved[key] = value
    extra = deployed.get("extra_headers")
    headers = {str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {}
    organization = deployed.get("organization")
    if organization is not None and not any(
        header.lower() == "openai-organization" for header in headers
    ):
        headers["OpenAI-Organization"] = str(organization)
    if headers:
        resolved["headers"] = headers
    version = deployed.get("api_version")
    provider, deployment_name = resolve_model(deployment.model)
    base = resolved.get("api_base") or env_api_base("azure", ctx.env)
    # the client sends a body's api_version, which the embedder's calls have no way to
    # carry; a deployment URL with its api-version in it is called as it is
    if (
        provider == "azure"
        and version is not None
        and isinstance(base, str)
        and "/openai/deployments/" not in base
        and "api-version=" not in base
    ):
        resolved["api_base"] = (
            f"{base.rstrip('/')}/openai/deployments/{quote(deployment_name, safe='')}"
            f"?api-version={quote(str(version), safe='')}"
        )
    return resolved


def _mode(value: object, path: str, ctx: _Context) -> CacheMode:
    if value is None or value == "default_on":
        return "default_on"
    if value == "default_off":
        return "default_off"
    raise _type_error("default_on or default_off", value, path, ctx)


def _cache_type(
    block: Mapping[str, object], path: str, ctx: _Context, *, default_type: str
) -> CacheType:
    sub = _join(path, "type")
    raw = block.get("type")
    defaulted = raw is None
    name = default_type if defaulted else _name(raw, sub, ctx, what="a cache type name")
    cache_type = ctx.registry.get(name)
    if cache_type is not None:
        return cache_type
    available = ctx.registry.describe()
    normal = _normal_type_name(name)
    if defaulted:
        message = (
            f"not set, and LiteLLM's default {name!r} is not available yet in this version "
            f"of deja; set it to one of: {available}"
        )
    elif normal in _PLANNED_TYPES:
        message = (
            f"cache type {name!r} is not available yet in this version of deja; "
            f"available types: {available}"
        )
    elif normal in _UNSUPPORTED_TYPES:
        message = f"cache type {name!r} is not supported by deja; available types: {available}"
    else:
        every = [*ctx.registry.names(), *_PLANNED_TYPES]
        for registered in ctx.registry.names():
            every.extend(ctx.registry.get(registered).aliases)  # type: ignore[union-attr]
        message = (
            f"unknown cache type {_shown(name, sub, ctx)}{_suggestion(name, every)}; "
            f"available types: {available}"
        )
    raise ConfigError(message, path=sub)


def _options(
    cache_type: CacheType, block: Mapping[str, object], path: str, ctx: _Context
) -> dict[str, object]:
    options: dict[str, object] = {}
    for name, option in cache_type.options.items():
        present = [k for k in (name, *option.aliases) if k in block]
        if len(present) > 1:
            raise ConfigError(
                f"{present[0]} and {present[1]} are the same option; keep one",
                path=_join(path, present[1]),
            )
        key = present[0] if present else name
        sub = _join(path, key)
        raw = block[key] if present else None
        if raw is None:
            if option.required:
                raise ConfigError(f"required by cache type {cache_type.name!r}", path=sub)
            raw = option.default
            if raw is None:
                options[name] = None
                continue
        options[name] = _option_value(option, raw, sub, ctx)
    return options


def _option_value(option: Option, value: object, path: str, ctx: _Context) -> object:
    typed = _coerce(option, value, path, ctx)
    if option.validator is None:
        return typed
    try:
        return option.validator(typed)
    except _ItemError as exc:
        item = _at(path, exc.index)
        rejected = typed[exc.index] if isinstance(typed, list) else typed
        raise ConfigError(
            f"{exc}, got {_shown(rejected, item, ctx, secret=option.secret)}", path=item
        ) from None
    except ValueError as exc:
        raise ConfigError(
            f"{exc}, got {_shown(value, path, ctx, secret=option.secret)}", path=path
        ) from None


def _coerce(option: Option, value: object, path: str, ctx: _Context) -> object:
    for want in option.accepted:
        candidate = _env_scalar(value, path, ctx, want)
        if want is bool:
            if isinstance(candidate, bool):
                return candidate
        elif want is int:
            if isinstance(candidate, int) and not isinstance(candidate, bool):
                return candidate
        elif want is float:
            if (
                isinstance(candidate, int | float)
                and not isinstance(candidate, bool)
                and math.isfinite(candidate)
            ):
                return float(candidate)
        elif want is str:
            if isinstance(candidate, str):
                return candidate
        elif want is list:
            if isinstance(candidate, list | tuple):
                return list(candidate)
        elif want is dict:
            if isinstance(candidate, Mapping):
                return dict(candidate)
        elif want is Path:
            if isinstance(candidate, str) and candidate.strip():
                return (ctx.base_dir / Path(candidate).expanduser()).absolute()
        elif want is StoreSpec:
            if isinstance(candidate, Mapping):
                return _store_spec(_mapping(candidate, path, ctx), path, ctx)
        elif isinstance(candidate, want):
            return candidate
    expected = " or ".join(_describe_type(t) for t in option.accepted)
    raise ConfigError(
        f"expected {expected}, got {_shown(value, path, ctx, secret=option.secret)}", path=path
    )


def _describe_type(want: type[object]) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a mapping",
        Path: "a path",
        StoreSpec: "a cache block (type and its options)",
    }.get(want, f"a {want.__name__}")


def _store_spec(block: Mapping[str, object], path: str, ctx: _Context) -> StoreSpec:
    """A nested cache block: ``type``, its options and an optional ``ttl``."""
    if "type" not in block:
        raise ConfigError(
            f"required: the cache type of this block ({ctx.registry.describe()})",
            path=_join(path, "type"),
        )
    cache_type = _cache_type(block, path, ctx, default_type=_NATIVE_DEFAULT_TYPE)
    option_keys = cache_type.option_keys()
    # redis-py's TLS client-certificate options: said not to apply, not refused
    ignored = [k for k in _REDIS_TLS_CLIENT_CERT if k not in option_keys]
    _check_keys(block, path, ctx, known=("type", "ttl", *option_keys), ignored=ignored)
    options = _with_environment(
        cache_type, block, _options(cache_type, block, path, ctx), path, ctx
    )
    ttl = _optional_seconds(block.get("ttl"), _join(path, "ttl"), ctx)
    return StoreSpec(
        type=cache_type.name,
        options=options,
        ttl=_folded_ttl(ttl, options, path, ctx),
        registry=ctx.registry,
    )


def _proxy(value: object, ctx: _Context) -> ProxySettings:
    if value is None:
        return ProxySettings()
    block = _mapping(value, "proxy", ctx)
    _check_keys(block, "proxy", ctx, known=_PROXY_KEYS)
    defaults = ProxySettings()
    host = defaults.host
    if block.get("host") is not None:
        host = _name(block["host"], "proxy.host", ctx, what="a host name or address")
    port = defaults.port
    if block.get("port") is not None:
        port = _int(block["port"], "proxy.port", ctx, what="a port number 1-65535", minimum=1)
        if port > 65535:
            raise ConfigError(
                f"expected a port number 1-65535, got {_shown(port, 'proxy.port', ctx)}",
                path="proxy.port",
            )
    workers = defaults.workers
    if block.get("workers") is not None:
        workers = _int(
            block["workers"], "proxy.workers", ctx, what="a number of workers", minimum=1
        )
    drain = defaults.graceful_shutdown_seconds
    if block.get("graceful_shutdown_seconds") is not None:
        drain = _seconds(block["graceful_shutdown_seconds"], "proxy.graceful_shutdown_seconds", ctx)
    connections = defaults.max_upstream_connections
    if block.get("max_upstream_connections") is not None:
        connections = _int(
            block["max_upstream_connections"],
            "proxy.max_upstream_connections",
            ctx,
            what="a number of connections",
            minimum=1,
        )
    return ProxySettings(
        host=host,
        port=port,
        workers=workers,
        graceful_shutdown_seconds=drain,
        max_upstream_connections=connections,
    )


_MASTER_KEY_VARIABLE = "LITELLM_MASTER_KEY"


def _general(
    value: object, model_list: Sequence[ModelDeployment], ctx: _Context
) -> GeneralSettings:
    path = "general_settings"
    block: Mapping[str, object] = {}
    if value is not None:
        block = _mapping(value, path, ctx)
        _check_keys(block, path, ctx, known=_GENERAL_KEYS, ignored=_GENERAL_LITELLM_IGNORED)

    master_key = None
    if block.get("master_key") is not None:
        master_key = _secret(block["master_key"], _join(path, "master_key"), ctx)
    elif ctx.env.get(_MASTER_KEY_VARIABLE, "").strip():
        # LiteLLM's proxy takes its master key from this variable when the config names
        # none (its Docker deployments set it so): ignored, the proxy ran with no auth
        master_key = ctx.env[_MASTER_KEY_VARIABLE].strip()

    max_bytes = DEFAULT_MAX_REQUEST_BYTES
    if block.get("max_request_bytes") is not None and block.get("max_request_size_mb") is not None:
        raise ConfigError(
            "max_request_bytes and max_request_size_mb set the same limit; keep one",
            path=_join(path, "max_request_size_mb"),
        )
    if block.get("max_request_bytes") is not None:
        max_bytes = _int(
            block["max_request_bytes"],
            _join(path, "max_request_bytes"),
            ctx,
            what="a number of bytes",
            minimum=1,
        )
    elif block.get("max_request_size_mb") is not None:
        sub = _join(path, "max_request_size_mb")
        megabytes = _number(block["max_request_size_mb"], sub, ctx, what="a number of megabytes")
        if megabytes <= 0:
            raise ConfigError(
                f"expected a positive number of megabytes, got {megabytes:g}", path=sub
            )
        max_bytes = int(megabytes * 2**20)

    # (each a positive number of seconds: _seconds refuses 0, a negative or a bad value)
    body_timeout = DEFAULT_REQUEST_BODY_TIMEOUT
    if block.get("request_body_timeout") is not None:
        sub = _join(path, "request_body_timeout")
        body_timeout = _seconds(block["request_body_timeout"], sub, ctx)
    header_timeout = DEFAULT_REQUEST_HEADER_TIMEOUT
    if block.get("request_header_timeout") is not None:
        sub = _join(path, "request_header_timeout")
        header_timeout = _seconds(block["request_header_timeout"], sub, ctx)
    hook_timeout = DEFAULT_HOOK_TIMEOUT
    if block.get("hook_timeout") is not None:
        hook_timeout = _seconds(block["hook_timeout"], _join(path, "hook_timeout"), ctx)

    model_names = {d.model_name for d in model_list}
    keys: list[VirtualKey] = []
    first_at: dict[str, int] = {}
    raw_keys = block.get("virtual_keys")
    entries = [] if raw_keys is None else _sequence(raw_keys, _join(path, "virtual_keys"), ctx)
    for i, item in enumerate(entries):
        sub = _at(_join(path, "virtual_keys"), i)
        entry = _mapping(item, sub, ctx)
        _check_keys(entry, sub, ctx, known=_VIRTUAL_KEY_KEYS)
        for required in ("key", "tenant"):
            if entry.get(required) is None:
                raise ConfigError("required", path=_join(sub, required))
        key = _secret(entry["key"], _join(sub, "key"), ctx)
        if key in first_at:
            raise ConfigError(
                f"the same key as virtual_keys[{first_at[key]}]; each key maps to one tenant",
                path=_join(sub, "key"),
            )
        if key == master_key:
            raise ConfigError("the same as general_settings.master_key", path=_join(sub, "key"))
        first_at[key] = i
        tenant = _name(entry["tenant"], _join(sub, "tenant"), ctx)
        models: tuple[str, ...] = ()
        if entry.get("models") is not None:
            models = _str_tuple(entry["models"], _join(sub, "models"), ctx)
            # A key limited to a model the proxy does not serve is a typo, unless the
            # model_list routes by wildcard (LiteLLM's "*" and "openai/*").
            if model_names and not any("*" in n for n in model_names):
                for j, model in enumerate(models):
                    if model not in model_names:
                        raise ConfigError(
                            f"{model!r} is not a model_name in model_list"
                            f"{_suggestion(model, model_names)}",
                            path=_at(_join(sub, "models"), j),
                        )
        keys.append(VirtualKey(key=key, tenant=tenant, models=models))
    if keys and master_key is None:
        # without a master key the proxy does no authentication at all: every caller would
        # be one anonymous tenant, the keys and their model limits ignored
        raise ConfigError(
            "virtual keys need a master_key: without one the proxy checks no key at all",
            path=_join(path, "virtual_keys"),
        )
    return GeneralSettings(
        master_key=master_key,
        virtual_keys=tuple(keys),
        max_request_bytes=max_bytes,
        request_body_timeout=body_timeout,
        request_header_timeout=header_timeout,
        hook_timeout=hook_timeout,
    )
