"""The four PATCH flavours kube-apiserver accepts, applied to plain JSON dicts.

Rule: JSON patch (RFC 6902) goes through the `jsonpatch` library; a failing operation (including a
failed `test`) is a 422 `Invalid` as in the apiserver's patcher. JSON merge patch (RFC 7386) is
six lines and written here. Strategic merge patch is hand-written because no Python library
implements it: the real one reads `patchStrategy`/`patchMergeKey` from the Go struct tags, so this
module carries the few list rules the contract needs (finalizers as a set, ownerReferences by uid,
node/pod conditions and node addresses by type, containers and volumes by name; every other list,
notably `spec.taints`, is replaced), merged lists in kube-apiserver's order (items new to the list
before the existing ones they were patched in front of, see `_merge_sorted`), plus the `$patch`,
`$retainKeys`, `$setElementOrder` and `$deleteFromPrimitiveList` directives. Server-side apply is
approximated as a strategic merge of the applied configuration (no managed-field ownership, no
removal of fields a manager dropped).
Pure functions, no I/O.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer
import yaml

from rebootd.emulator.errors import ApiError, bad_request

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, APPLY_PATCH, STRATEGIC_MERGE_PATCH)

# (path of the list field) -> merge key; "" means a list of primitives merged as a set.
_LIST_RULES: Mapping[tuple[str, ...], str] = {
    ("metadata", "finalizers"): "",
    ("metadata", "ownerReferences"): "uid",
    ("status", "conditions"): "type",
    ("status", "addresses"): "type",
    ("spec", "containers"): "name",
    ("spec", "initContainers"): "name",
    ("spec", "volumes"): "name",
    ("spec", "template", "spec", "containers"): "name",
    ("spec", "template", "spec", "volumes"): "name",
}


def unsupported_media_type() -> ApiError:
    """A PATCH whose content type is none of PATCH_TYPES (kube-apiserver 1.37's wording)."""
    return ApiError(code=415, reason="UnsupportedMediaType", message="415: Unsupported Media Type")


def _patch_invalid(detail: str) -> ApiError:
    return ApiError(
        code=422,
        reason="Invalid",
        message="the server rejected our request due to an error in our request",
        details={"causes": [{"reason": "UnexpectedServerResponse", "message": detail}]},
    )


def apply_json_patch(target: Any, raw: bytes) -> Any:
    try:
        operations = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"invalid JSON patch: {exc}") from exc
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        patch = jsonpatch.JsonPatch(operations)
        return patch.apply(copy.deepcopy(target))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise _patch_invalid(f"testing value failed: {exc}") from exc
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, KeyError, IndexError) as exc:
        raise _patch_invalid(str(exc)) from exc
    except TypeError as exc:
        raise bad_request(f"invalid JSON patch: {exc}") from exc


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _decode_object(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise bad_request(f"error decoding patch: {exc}") from exc
    if not isinstance(value, dict):
        raise bad_request("json: cannot unmarshal array into Go value of type map[string]interface {}")
    return value


def strategic_merge(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch `patch` to `target` (neither is modified)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result: dict[str, Any] = dict(target) if isinstance(target, dict) else {}
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            current = result.get(field)
            if isinstance(current, list) and isinstance(value, list):
                result[field] = [item for item in current if item not in value]
            continue
        child = (*path, key)
        if value is None:
            result.pop(key, None)
            continue
        if isinstance(value, list):
            merged_list = _merge_list(result.get(key), value, child)
            if merged_list is None:
                result.pop(key, None)
            else:
                result[key] = merged_list
            continue
        merged = strategic_merge(result.get(key), value, child)
        if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        else:
            result[key] = merged
    return result


def _merge_list(current: Any, patch: list[Any], path: tuple[str, ...]) -> list[Any] | None:
    rule = _LIST_RULES.get(_rule_path(path))
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if rule is None or not isinstance(current, list):
        return [_strip_directives(copy.deepcopy(i)) for i in patch]
    if rule == "":
        patched_set: list[Any] = []
        for item in patch:
            if item not in patched_set:
                patched_set.append(item)
        server_set = [old for old in current if old not in patched_set]
        return _merge_sorted(
            server_only=server_set, patched=patched_set, server_order=list(current), rule=rule
        )
    keys = [old.get(rule) if isinstance(old, dict) else None for old in current]
    patched: list[dict[str, Any]] = []
    touched: set[Any] = set()
    for item in patch:
        if not isinstance(item, dict) or rule not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {rule}")
        key = item[rule]
        touched.add(key)
        if item.get("$patch") == "delete":
            patched = [p for p in patched if p.get(rule) != key]
            continue
        before = next((p for p in patched if p.get(rule) == key), None)
        if before is None:
            before = next((old for old, k in zip(current, keys, strict=True) if k == key), None)
            value = (
                _strip_directives(copy.deepcopy(item))
                if before is None
                else strategic_merge(before, item, path)
            )
            patched.append(value)
        else:
            patched[patched.index(before)] = strategic_merge(before, item, path)
    server_only = [copy.deepcopy(old) for old, key in zip(current, keys, strict=True) if key not in touched]
    return _merge_sorted(server_only=server_only, patched=patched, server_order=keys, rule=rule)


def _merge_sorted(
    *, server_only: list[Any], patched: list[Any], server_order: list[Any], rule: str
) -> list[Any]:
    """The apiserver's order of a merged keyed list (strategic merge's mergeSortedSlice): the
    server-only items and the patch's items (in the patch's order) interleaved, an item taken from
    the server side first only when both items were in the original list and it came first there;
    so a patch item new to the list goes before the server-only items still waiting. `rule` is
    the merge key of a list of maps, "" for a list of primitives (the item is its own key)."""

    def key(item: Any) -> Any:
        return item.get(rule) if rule and isinstance(item, dict) else item

    out: list[Any] = []
    i = j = 0
    while i < len(server_only) or j < len(patched):
        if j >= len(patched):
            out.append(server_only[i])
            i += 1
            continue
        if i >= len(server_only):
            out.append(patched[j])
            j += 1
            continue
        left, right = key(server_only[i]), key(patched[j])
        if (
            left in server_order
            and right in server_order
            and server_order.index(left) < server_order.index(right)
        ):
            out.append(server_only[i])
            i += 1
        else:
            out.append(patched[j])
            j += 1
    return out


def _rule_path(path: tuple[str, ...]) -> tuple[str, ...]:
    return path


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip_directives(v)
            for k, v in value.items()
            if not k.startswith("$setElementOrder/") and k not in ("$patch", "$retainKeys")
        }
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def apply_patch(*, content_type: str, target: dict[str, Any] | None, raw: bytes) -> dict[str, Any]:
    """Apply a PATCH body of `content_type` to `target` (None: the object does not exist, allowed
    for server-side apply only). Returns the patched object; raises ApiError (400/415/422)."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media not in PATCH_TYPES:
        raise unsupported_media_type()
    if media == APPLY_PATCH:
        try:
            applied = yaml.safe_load(raw.decode("utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise bad_request(f"error decoding YAML: {exc}") from exc
        if not isinstance(applied, dict):
            raise bad_request("error decoding YAML: the applied configuration is not an object")
        return strategic_merge(target or {}, applied) if target is not None else applied
    if target is None:
        raise AssertionError("patch of a missing object is answered with 404 before applying")
    if media == JSON_PATCH:
        result = apply_json_patch(target, raw)
    elif media == MERGE_PATCH:
        result = merge_patch(target, _decode_object(raw))
    else:
        result = strategic_merge(target, _decode_object(raw))
    if not isinstance(result, dict):
        raise _patch_invalid("the patched document is not an object")
    return result
