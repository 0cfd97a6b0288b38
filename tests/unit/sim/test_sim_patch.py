"""Patch flavours: strategic merge list rules and directives, RFC 7386 merge patch, JSON patch errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from rebootd.emulator.errors import ApiError
from rebootd.emulator.patch import apply_patch, merge_patch, strategic_merge

SMP = "application/strategic-merge-patch+json"


def test_taints_and_other_lists_are_replaced_whole() -> None:
    node: dict[str, Any] = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}], "podCIDRs": ["x"]}}
    patched = strategic_merge(node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}})
    assert patched["spec"] == {"taints": [{"key": "b", "effect": "NoExecute"}], "podCIDRs": ["x"]}
    assert node["spec"]["taints"][0]["key"] == "a"  # the input is untouched


def test_conditions_merge_by_type_and_keep_unmentioned_fields() -> None:
    status = {
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady"},
                {"type": "DiskPressure", "status": "False"},
            ]
        }
    }
    patched = strategic_merge(
        status,
        {"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "New", "status": "True"}]}},
    )
    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "False", "reason": "KubeletReady"},
        {"type": "New", "status": "True"},  # kube-apiserver 1.37's order (checked on it)
        {"type": "DiskPressure", "status": "False"},
    ]


def test_finalizers_are_a_set_and_can_be_removed_by_directive() -> None:
    obj = {"metadata": {"finalizers": ["a", "b"]}}
    assert strategic_merge(obj, {"metadata": {"finalizers": ["b", "c"]}})["metadata"]["finalizers"] == [
        "a",
        "b",
        "c",
    ]
    removed = strategic_merge(obj, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}})
    assert removed["metadata"]["finalizers"] == ["b"]


def test_owner_references_merge_by_uid_and_patch_delete_removes_one() -> None:
    obj = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}
    patched = strategic_merge(
        obj, {"metadata": {"ownerReferences": [{"uid": "2", "$patch": "delete"}, {"uid": "3", "name": "c"}]}}
    )
    assert patched["metadata"]["ownerReferences"] == [{"uid": "3", "name": "c"}, {"uid": "1", "name": "a"}]


def test_maps_merge_null_deletes_and_directives_are_honoured() -> None:
    obj = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"x": {"keep": 1, "drop": 2}}}
    patched = strategic_merge(obj, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"}
    replaced = strategic_merge(obj, {"spec": {"x": {"$patch": "replace", "new": 1}}})
    assert replaced["spec"]["x"] == {"new": 1}
    deleted = strategic_merge(obj, {"spec": {"x": {"$patch": "delete"}}})
    assert "x" not in deleted["spec"]
    retained = strategic_merge(obj, {"spec": {"x": {"$retainKeys": ["keep"], "keep": 5}}})
    assert retained["spec"]["x"] == {"keep": 5}
    ordered = strategic_merge(
        {"status": {"conditions": [{"type": "A"}]}},
        {"status": {"$setElementOrder/conditions": [{"type": "A"}]}},
    )
    assert ordered == {"status": {"conditions": [{"type": "A"}]}}


@pytest.mark.parametrize(
    ("target", "patch", "expected"),
    [  # RFC 7386 appendix A
        ({"a": "b"}, {"a": "c"}, {"a": "c"}),
        ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
        ({"a": "b"}, {"a": None}, {}),
        ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
        ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
        ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
        ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
    ],
)
def test_merge_patch_follows_rfc_7386(target: object, patch: object, expected: object) -> None:
    assert merge_patch(target, patch) == expected


def test_json_patch_test_failure_is_422_and_bad_documents_are_400() -> None:
    target: dict[str, Any] = {"spec": {"taints": []}}
    ops = [
        {"op": "test", "path": "/spec/taints", "value": [{"key": "x"}]},
        {"op": "remove", "path": "/spec/taints"},
    ]
    with pytest.raises(ApiError) as failed:
        apply_patch(content_type="application/json-patch+json", target=target, raw=json.dumps(ops).encode())
    assert failed.value.code == 422
    assert failed.value.reason == "Invalid"
    with pytest.raises(ApiError) as missing:
        apply_patch(
            content_type="application/json-patch+json",
            target=target,
            raw=b'[{"op": "remove", "path": "/spec/nothing"}]',
        )
    assert missing.value.code == 422
    with pytest.raises(ApiError) as not_a_list:
        apply_patch(content_type="application/json-patch+json", target=target, raw=b"{}")
    assert not_a_list.value.code == 400
    with pytest.raises(ApiError) as media:
        apply_patch(content_type="text/plain", target=target, raw=b"{}")
    assert media.value.code == 415


def test_content_type_parameters_are_ignored_and_apply_yaml_is_merged() -> None:
    patched = apply_patch(
        content_type=f"{SMP}; charset=utf-8", target={"a": {"b": 1}}, raw=b'{"a": {"c": 2}}'
    )
    assert patched == {"a": {"b": 1, "c": 2}}
    applied = apply_patch(
        content_type="application/apply-patch+yaml", target={"spec": {"x": 1}}, raw=b"spec:\n  y: 2\n"
    )
    assert applied == {"spec": {"x": 1, "y": 2}}


def test_merged_lists_take_kube_apiservers_order_new_items_before_the_existing_ones_they_lead() -> None:
    """The orders kube-apiserver 1.37.2 answered (issue 15's probe): a patch item new to the list
    goes before the server-only items; items both had keep the server's relative order."""
    obj = {"metadata": {"finalizers": ["x/x", "y/y"]}}
    merged = strategic_merge(obj, {"metadata": {"finalizers": ["z/z", "x/x"]}})
    assert merged["metadata"]["finalizers"] == ["z/z", "x/x", "y/y"]
    assert strategic_merge(merged, {"metadata": {"finalizers": ["y/y"]}}) == merged
    node = {"status": {"conditions": [{"type": t, "status": "True"} for t in ("B", "Ready", "A")]}}
    patch = {"status": {"conditions": [{"type": t, "status": "False"} for t in ("C", "D", "A")]}}
    types = [c["type"] for c in strategic_merge(node, patch)["status"]["conditions"]]
    assert types == ["C", "D", "B", "Ready", "A"]
