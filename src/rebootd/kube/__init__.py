"""Thin async facade over the Kubernetes API: the calls rebootd makes, nothing else.

Rule: every Kubernetes API call of rebootd goes through `Kube`, and `rebootd.kube` is the one name
callers import from; the package is split by job, each module with its own rule:

- `errors`: the typed `KubeError`s and the mapping of a response to one (pure);
- `retry`: `RetryPolicy` and `is_retryable`, what is retried and after how long (pure);
- `paths`: the resources' REST paths, selectors, MicroTime and resourceVersion formats (pure);
- `credentials`: where the server is and who rebootd is to it, in-cluster or from the kubeconfig
  (kubectl's order), every error naming the field at fault;
- `session`: the aiohttp session built from them (TLS, the credential, the proxy resolved once);
- `exotic`: exec plugins and auth-providers, the only use of kubernetes-asyncio;
- `client`: `Kube`, the transport (one method an API operation, retries, request counting, watch);
- `follow`: `ObjectFollower`, the latest state of one named object by list + watch.
"""

from __future__ import annotations

from rebootd.kube.client import PAGE_SIZE, WATCH_MAX_LINE, WATCH_READ_TIMEOUT, Kube, Sleep
from rebootd.kube.credentials import ConfigError, Credentials
from rebootd.kube.errors import (
    Conflict,
    Expired,
    Invalid,
    KubeError,
    NotFound,
    TooManyRequests,
    error_from_response,
    error_from_status,
    parse_retry_after,
)
from rebootd.kube.follow import ObjectFollower, WatchEvent
from rebootd.kube.paths import (
    METADATA_LIST_ACCEPT,
    PATCH_CONTENT_TYPES,
    RESOURCES,
    JsonObj,
    PatchType,
    Resource,
    WatchKind,
    format_microtime,
    resource_path,
    resource_version,
    selector_query,
)
from rebootd.kube.retry import RetryPolicy, is_retryable

__all__ = [
    "METADATA_LIST_ACCEPT",
    "PAGE_SIZE",
    "PATCH_CONTENT_TYPES",
    "RESOURCES",
    "WATCH_MAX_LINE",
    "WATCH_READ_TIMEOUT",
    "ConfigError",
    "Conflict",
    "Credentials",
    "Expired",
    "Invalid",
    "JsonObj",
    "Kube",
    "KubeError",
    "NotFound",
    "ObjectFollower",
    "PatchType",
    "Resource",
    "RetryPolicy",
    "Sleep",
    "TooManyRequests",
    "WatchEvent",
    "WatchKind",
    "error_from_response",
    "error_from_status",
    "format_microtime",
    "is_retryable",
    "parse_retry_after",
    "resource_path",
    "resource_version",
    "selector_query",
]
