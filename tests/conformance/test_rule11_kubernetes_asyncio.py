"""Rule 11: kubernetes-asyncio's quirks behave as on a real server (a loose emulator would hide them)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.rest import ApiException

from .conftest import WIDGET_API, Cluster


@pytest_asyncio.fixture
async def api(cluster: Cluster) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


async def test_custom_objects_patch_sends_a_dict_as_json_patch(cluster: Cluster, api: client.ApiClient) -> None:
    await cluster.ensure_widget_crd()
    custom = client.CustomObjectsApi(api)
    group, version = WIDGET_API.split("/")
    await custom.create_namespaced_custom_object(group, version, cluster.namespace, "widgets", {
        "apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 2}})
    with pytest.raises(ApiException) as err:
        await custom.patch_namespaced_custom_object(group, version, cluster.namespace, "widgets", "w",
                                                    {"spec": {"size": 3}})
    assert err.value.status in (400, 422)
    patched = await custom.patch_namespaced_custom_object(group, version, cluster.namespace, "widgets", "w",
                                                          {"spec": {"size": 3}},
                                                          _content_type="application/merge-patch+json")
    assert patched["spec"]["size"] == 3


async def test_typed_client_round_trip(cluster: Cluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="c", labels={"a": "b"}), data={"k": "v"})
    created = await core.create_namespaced_config_map(cluster.namespace, body)
    assert created.metadata.uid and created.metadata.resource_version
    listed = await core.list_namespaced_config_map(cluster.namespace, label_selector="a=b")
    assert [c.metadata.name for c in listed.items] == ["c"]
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_config_map(cluster.namespace, body)
    assert err.value.status == 409


async def test_watch_with_timeout_raises_410_for_an_expired_version(cluster: Cluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        async for _ in w.stream(core.list_namespaced_config_map, cluster.namespace, resource_version="1",
                                timeout_seconds=5):
            pass
    assert err.value.status == 410
    await w.close()


async def test_watch_stream_replays_events_after_a_version(cluster: Cluster, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    listed = await core.list_namespaced_config_map(cluster.namespace)
    await cluster.create("configmaps", {"metadata": {"name": "live"}})
    await cluster.request("DELETE", cluster.ns_path("configmaps", name="live"))
    w = watch.Watch()
    seen = []
    async for event in w.stream(core.list_namespaced_config_map, cluster.namespace,
                                resource_version=listed.metadata.resource_version, timeout_seconds=10):
        seen.append((event["type"], event["object"].metadata.name))
        if event["type"] == "DELETED":
            break
    await w.close()
    assert seen == [("ADDED", "live"), ("DELETED", "live")]
