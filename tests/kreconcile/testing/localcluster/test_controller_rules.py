"""Pure rules of the built-in controllers: endpoints, ordinals, rollout budget, template hashes, node objects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kreconcile.testing.controllers._common import Expectations, pod_from_template, safe_hash, status_patch
from kreconcile.testing.controllers.deployment import max_unavailable
from kreconcile.testing.controllers.endpoints import endpoint_slice_for, endpoints_for, resolve_target_port
from kreconcile.testing.controllers.node import node_object
from kreconcile.testing.controllers.serviceproxy import ServiceProxy
from kreconcile.testing.controllers.statefulset import ordinal_of
from kreconcile.testing.localcluster import LocalCluster


def _pod(name: str, ready: bool, ip: str | None = "127.0.0.1", **spec: Any) -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    status: dict[str, Any] = {"phase": "Running", "conditions": conditions}
    if ip:
        status["podIP"] = ip
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": f"u-{name}"},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 5000}]}],
                 **spec},
        "status": status,
    }


SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "svc", "namespace": "ns", "uid": "svc-uid"},
           "spec": {"selector": {"app": "x"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}}


def test_endpoints_split_ready_and_not_ready_and_resolve_named_target_ports() -> None:
    pods = [_pod("b", True, hostname="b", subdomain="svc"), _pod("a", False), _pod("pending", True, ip=None)]
    subsets = endpoints_for(SERVICE, pods)
    assert subsets == [{
        "ports": [{"port": 5000, "protocol": "TCP", "name": "web"}],
        "addresses": [{"ip": "127.0.0.1", "nodeName": "n1", "hostname": "b",
                       "targetRef": {"kind": "Pod", "namespace": "ns", "name": "b", "uid": "u-b"}}],
        "notReadyAddresses": [{"ip": "127.0.0.1", "nodeName": "n1",
                               "targetRef": {"kind": "Pod", "namespace": "ns", "name": "a", "uid": "u-a"}}],
    }]
    assert endpoints_for(SERVICE, []) == []
    slice_ = endpoint_slice_for(SERVICE, subsets)
    assert slice_["metadata"]["labels"]["kubernetes.io/service-name"] == "svc"
    assert [e["conditions"]["ready"] for e in slice_["endpoints"]] == [True, False]
    assert slice_["metadata"]["ownerReferences"][0]["uid"] == "svc-uid"


def test_numeric_target_port_and_missing_named_port() -> None:
    assert resolve_target_port({"port": 80, "targetPort": 8080}, None) == 8080
    assert resolve_target_port({"port": 80}, None) == 80
    assert resolve_target_port({"port": 80, "targetPort": "grpc"}, _pod("a", True)) is None


def test_ordinals_belong_to_their_set_only() -> None:
    assert ordinal_of("web", "web-12") == 12
    assert ordinal_of("web", "web-api-0") is None
    assert ordinal_of("web", "webx-1") is None


@pytest.mark.parametrize(("value", "replicas", "count"), [(None, 4, 1), ("25%", 3, 0), ("50%", 5, 2), (2, 5, 2)])
def test_max_unavailable(value: Any, replicas: int, count: int) -> None:
    strategy = {} if value is None else {"rollingUpdate": {"maxUnavailable": value}}
    assert max_unavailable({"spec": {"strategy": strategy}}, replicas) == count


def test_template_hash_is_stable_and_sensitive() -> None:
    t1 = {"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c"}]}}
    t2 = {"spec": {"containers": [{"name": "c"}]}, "metadata": {"labels": {"a": "1"}}}
    assert safe_hash(t1) == safe_hash(t2)
    assert safe_hash(t1) != safe_hash({**t1, "spec": {"containers": [{"name": "d"}]}})
    assert set(safe_hash(t1)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_pod_from_template_is_controlled_by_its_owner() -> None:
    owner = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "ns", "uid": "1"}}
    pod = pod_from_template({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": []}}, owner,
                            generate_name="d-h-", labels={"pod-template-hash": "h"})
    assert pod["metadata"]["generateName"] == "d-h-"
    assert pod["metadata"]["labels"] == {"app": "x", "pod-template-hash": "h"}
    ref = pod["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Deployment", "d", "1", True)


def test_status_patch_nulls_vanished_fields() -> None:
    assert status_patch({"active": 1, "ready": 1}, {"ready": 0}) == {"status": {"active": None, "ready": 0}}


def test_expectations_wait_for_the_cache_to_show_creations_and_deletions() -> None:
    exp = Expectations()
    exp.created("k", "p1")
    assert not exp.satisfied("k", [])
    assert exp.satisfied("k", [{"metadata": {"name": "p1"}}])
    exp.deleted("k", "p1")
    assert not exp.satisfied("k", [{"metadata": {"name": "p1"}}])
    assert exp.satisfied("k", [{"metadata": {"name": "p1", "deletionTimestamp": "t"}}])


def test_node_object_has_capacity_labels_taints_and_ready() -> None:
    node = node_object("gpu-1", {"pool": "a"}, {"nvidia.com/gpu": "2"},
                       [{"key": "sku", "value": "gpu", "effect": "NoSchedule"}], instance_type="Standard_NC12s_v3")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "gpu-1"
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "Standard_NC12s_v3"
    assert node["status"]["allocatable"]["nvidia.com/gpu"] == "2"
    assert node["status"]["capacity"]["cpu"] == "4"
    assert node["spec"]["taints"][0]["key"] == "sku"
    assert node["status"]["conditions"][0]["reason"] == "KubeletReady"


async def test_service_proxy_forwards_to_ready_backends_and_refuses_without_any() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"pong:" + await reader.readline())
        await writer.drain()
        writer.close()

    backend = await asyncio.start_server(echo, "127.0.0.1", 0)
    backend_port = backend.sockets[0].getsockname()[1]
    proxy = ServiceProxy(lambda ns, pod, port: backend_port if (ns, pod, port) == ("ns", "a", 5000) else None)
    try:
        await proxy.sync(SERVICE, None, "ns", "svc")
        host, port = proxy.address("ns", "svc", 80)  # type: ignore[misc]
        reader, writer = await asyncio.open_connection(host, port)
        assert await reader.read() == b""  # no endpoints: closed at once
        writer.close()
        await proxy.sync(SERVICE, {"subsets": endpoints_for(SERVICE, [_pod("a", True)])}, "ns", "svc")
        assert proxy.address("ns", "svc", 80) == (host, port)  # the address is stable
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"ping\n")
        await writer.drain()
        assert await reader.read() == b"pong:ping\n"
        writer.close()
        await proxy.sync(None, None, "ns", "svc")
        assert proxy.address("ns", "svc", 80) is None
    finally:
        await proxy.close()
        backend.close()
        await backend.wait_closed()


def test_unknown_backend_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"use 'emulator' \(default\) or 'real'"):
        LocalCluster("kind")  # type: ignore[arg-type]


def test_completed_indexes_are_compressed_into_ranges() -> None:
    from kreconcile.testing.controllers.job import format_indexes

    assert format_indexes([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert format_indexes([]) == ""
