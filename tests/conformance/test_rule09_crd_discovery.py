"""Rule 9: CRDs served after Established, schema validation/pruning/defaulting, discovery, /version, OpenAPI,
the Table format with additionalPrinterColumns."""

from __future__ import annotations

from .conftest import CRD_NAME, WIDGET_API, Cluster

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"


def widget(name: str, **spec: object) -> dict:
    return {"apiVersion": WIDGET_API, "kind": "Widget", "metadata": {"name": name}, "spec": dict(spec)}


async def test_crd_becomes_established_and_served(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    _, crd = await cluster.request("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}")
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    _, resources = await cluster.request("GET", f"/apis/{WIDGET_API}")
    assert {"widgets", "widgets/status", "widgets/scale"} <= {r["name"] for r in resources["resources"]}


async def test_schema_validation_names_fields(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    status, body = await cluster.request("POST", cluster.ns_path("widgets", WIDGET_API),
                                         widget("bad", size=0, color="pink", parts=[{"count": 1}]))
    assert (status, body["reason"]) == (422, "Invalid")
    fields = {c["field"] for c in body["details"]["causes"]}
    assert {"spec.size", "spec.color"} <= fields
    # 1.20 reports a required field inside a list without the index (spec.parts.name); newer servers index it
    assert fields & {"spec.parts[0].name", "spec.parts.name"}
    status, _ = await cluster.request("GET", cluster.ns_path("widgets", WIDGET_API, "bad"))
    assert status == 404


async def test_unknown_fields_are_pruned_and_defaults_applied(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    obj = await cluster.create("widgets", {**widget("w", color="red", junk=1, extra={"free": {"form": True}}),
                                           "topLevelJunk": 2}, WIDGET_API)
    assert obj["spec"] == {"size": 1, "color": "red", "extra": {"free": {"form": True}}}
    assert "topLevelJunk" not in obj


async def test_discovery_and_version(cluster: Cluster) -> None:
    _, api = await cluster.request("GET", "/api")
    assert api["versions"] == ["v1"]
    _, apis = await cluster.request("GET", "/apis")
    groups = {g["name"]: g for g in apis["groups"]}
    assert groups["apps"]["preferredVersion"]["version"] == "v1"
    _, v1 = await cluster.request("GET", "/api/v1")
    by_name = {r["name"]: r for r in v1["resources"]}
    assert by_name["pods"]["namespaced"] and not by_name["nodes"]["namespaced"]
    assert "po" in by_name["pods"]["shortNames"]
    _, version = await cluster.request("GET", "/version")
    assert version["major"] == "1" and version["gitVersion"].startswith("v1.")
    for probe in ("/healthz", "/readyz", "/livez"):
        status, text = await cluster.request("GET", probe)
        assert (status, text) == (200, "ok")


async def test_aggregated_discovery(cluster: Cluster) -> None:
    cluster.require_minor(27, "aggregated discovery (apidiscovery.k8s.io/v2)")
    async with cluster.http.get("/apis", headers={"Accept": AGGREGATED}) as r:
        assert "as=APIGroupDiscoveryList" in r.headers["Content-Type"]
        body = await r.json()
    apps = next(i for i in body["items"] if i["metadata"]["name"] == "apps")
    resources = {r["resource"] for r in apps["versions"][0]["resources"]}
    assert {"deployments", "statefulsets"} <= resources


async def test_openapi_v3_describes_custom_resources(cluster: Cluster) -> None:
    cluster.require_minor(27, "OpenAPI v3")
    await cluster.ensure_widget_crd()
    _, index = await cluster.request("GET", "/openapi/v3")
    url = index["paths"][f"apis/{WIDGET_API}"]["serverRelativeURL"]
    _, doc = await cluster.request("GET", url)
    schema = doc["components"]["schemas"]["dev.kreconcile.conformance.v1.Widget"]
    assert schema["properties"]["spec"]["properties"]["size"]["type"] == "integer"
    assert schema["x-kubernetes-group-version-kind"] == [{"group": "conformance.kreconcile.dev", "version": "v1",
                                                          "kind": "Widget"}]


async def test_table_format_uses_printer_columns(cluster: Cluster) -> None:
    await cluster.ensure_widget_crd()
    await cluster.create("widgets", widget("w", size=4, color="blue"), WIDGET_API)
    await cluster.request("PATCH", cluster.ns_path("widgets", WIDGET_API, "w", "status"),
                          {"status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                          "application/merge-patch+json")
    async with cluster.http.get(cluster.ns_path("widgets", WIDGET_API), headers={"Accept": TABLE}) as r:
        table = await r.json()
    assert table["kind"] == "Table"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:3] == ["Name", "Size", "Ready"] and "Age" in names
    row = table["rows"][0]
    cells = dict(zip(names, row["cells"], strict=True))
    assert (cells["Name"], cells["Size"], cells["Ready"], cells["Color"]) == ("w", 4, "True", "blue")
    assert row["object"]["metadata"]["name"] == "w"
    async with cluster.http.get(cluster.ns_path("configmaps"), headers={"Accept": TABLE}) as r:
        assert (await r.json())["columnDefinitions"][0]["name"] == "Name"
