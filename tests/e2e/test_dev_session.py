"""``kaito dev`` without the model: the seed's phi-3 example provisions a simulated GPU node and stops at a clear
"image not runnable locally" status; bad files and state are reported clearly."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import time
from pathlib import Path
from typing import Any

import pytest

from kaito.dev.session import (
    NODE,
    WORKSPACE,
    DevError,
    DevSession,
    curl_commands,
    describe_workspace,
    load_documents,
    metrics_endpoint,
    run_until_signal,
    status,
)

ROOT = Path(__file__).resolve().parents[2]
PHI3 = ROOT / "examples" / "inference" / "kaito_workspace_phi_3.yaml"


def condition(ws: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in ws.get("status", {}).get("conditions", []) if c["type"] == kind), {})


@pytest.mark.slow
async def test_gpu_preset_under_kaito_dev_stops_at_image_not_runnable_locally(tmp_path: Path) -> None:
    out = io.StringIO()
    session = DevSession(files=[PHI3], state_dir=tmp_path / "state", out=out, launch_delay=0.0)
    stop = asyncio.Event()
    task = asyncio.create_task(session.run(stop))
    try:
        await asyncio.wait_for(session.ready.wait(), 120)
        state = json.loads((tmp_path / "state" / "state.json").read_text())
        assert await asyncio.to_thread(Path(state["kubeconfig"]).is_file) and state["metrics_url"].startswith("http://127.0.0.1:")
        deadline = time.monotonic() + 120
        while True:
            items = (await session.cluster.client.list(WORKSPACE))["items"]
            inference = condition(items[0], "InferenceReady") if items else {}
            if inference.get("reason") == "ContainerCrashLoopBackOff":
                break
            assert time.monotonic() < deadline, f"no CrashLoopBackOff: {out.getvalue()}"
            await asyncio.sleep(0.5)
        assert condition(items[0], "ResourceReady")["status"] == "True"  # the simulated GPU node joined
        # the condition leads with the container's termination message and keeps the kubectl logs hint
        assert "kaito-phi-3-mini-4k-instruct" in inference["message"] and "is not runnable" in inference["message"]
        assert inference["message"].endswith("--previous`")
        nodes = (await session.cluster.client.list(NODE))["items"]
        assert nodes[0]["status"]["capacity"]["nvidia.com/gpu"] == "1"
        pod = items[0]["metadata"]["name"] + "-0"
        log = session.cluster.read_log("default", pod, previous=True).decode()
        assert "is not runnable locally" in log and "smollm2-135m-instruct" in log
        await session.snapshot()
        assert "is not runnable locally (GPU preset; use smollm2-135m-instruct)" in out.getvalue()
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 60)
    assert not (tmp_path / "state" / "state.json").exists()
    assert status(tmp_path / "state", io.StringIO()) == 3


def test_load_documents_reports_missing_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(DevError, match="cannot read it"):
        load_documents([tmp_path / "nope.yaml"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Workspace\nmetadata: {name: x}\n")
    with pytest.raises(DevError, match=r"document 1: needs apiVersion, kind and metadata\.name"):
        load_documents([bad])
    docs = load_documents([ROOT / "examples" / "tuning" / "smollm2-lora-local.yaml"])
    assert [d["kind"] for d in docs] == ["ConfigMap", "ConfigMap", "PersistentVolumeClaim", "Workspace"]


def test_curl_commands_are_valid_json_requests() -> None:
    chat, openai = curl_commands(("127.0.0.1", 4242), "smollm2-135m-instruct")
    assert chat.startswith("curl -s http://127.0.0.1:4242/chat ")
    chat_body = json.loads(chat.split("-d '", 1)[1].rstrip("'"))
    # the pasted /chat is greedy: the seed's sampling defaults sometimes end before the first token
    assert chat_body["prompt"] and chat_body["generate_kwargs"]["do_sample"] is False
    body = json.loads(openai.split("-d '", 1)[1].rstrip("'"))
    assert body["model"] == "smollm2-135m-instruct" and body["messages"][0]["role"] == "user"


def test_describe_workspace_shows_reasons_of_false_conditions() -> None:
    ws = {"status": {"conditions": [
        {"type": "ResourceReady", "status": "True", "reason": "ResourceReady"},
        {"type": "InferenceReady", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes"},
    ]}}  # fmt: skip
    assert describe_workspace(ws) == "ResourceReady=True, InferenceReady=False (Unschedulable: 0/1 nodes)"


def test_status_when_not_running(tmp_path: Path) -> None:
    out = io.StringIO()
    assert status(tmp_path, out) == 3
    assert "not running" in out.getvalue()


def test_tuning_output_points_at_the_local_pvc_directory(tmp_path: Path) -> None:
    session = DevSession(state_dir=tmp_path / "state")
    docs = load_documents([ROOT / "examples" / "tuning" / "smollm2-lora-local.yaml"])
    ws = {**docs[-1], "metadata": {**docs[-1]["metadata"], "namespace": "default"}}
    assert session.tuning_output(ws) == str((tmp_path / "state").resolve() / "cluster" / "pvc" / "default"
                                            / "smollm2-lora-adapter")
    ws["tuning"]["output"] = {"image": "127.0.0.1:5000/adapter:1"}
    assert session.tuning_output(ws) == "image 127.0.0.1:5000/adapter:1"


def test_the_pasted_openai_curl_is_greedy() -> None:
    _, openai = curl_commands(("127.0.0.1", 4242), "smollm2-135m-instruct")
    body = json.loads(openai.split("-d '", 1)[1].rstrip("'"))
    assert body["temperature"] == 0  # OpenAI's default 1 makes the 135M model answer nonsense


class _Cluster:
    def service_address(self, namespace: str, name: str, port: int) -> tuple[str, int]:
        return ("127.0.0.1", 4242)


def _served_workspace() -> dict[str, Any]:
    return {"metadata": {"namespace": "default", "name": "workspace-smollm2"},
            "inference": {"preset": {"name": "smollm2-135m-instruct"}},
            "status": {"conditions": [{"type": "WorkspaceSucceeded", "status": "True"}]}}


async def test_a_saved_succeeded_condition_is_not_reported_ready_until_the_endpoint_answers(tmp_path: Path) -> None:
    answers = {"default/workspace-smollm2": False}

    async def probe(namespace: str, service: str) -> tuple[bool, str]:
        return answers[f"{namespace}/{service}"], "connection refused"

    out = io.StringIO()
    session = DevSession(state_dir=tmp_path, out=out, cluster=_Cluster(), endpoint_probe=probe)
    await session._report_endpoints([_served_workspace()])  # the condition is the one saved by the last session
    assert "is ready" not in out.getvalue() and "curl" not in out.getvalue() and session.endpoints == {}

    answers["default/workspace-smollm2"] = True
    await session._report_endpoints([_served_workspace()])
    assert "workspace default/workspace-smollm2 is ready: http://127.0.0.1:4242" in out.getvalue()
    assert out.getvalue().count("curl -s") == 2
    assert json.loads((tmp_path / "state.json").read_text())["endpoints"]["default/workspace-smollm2"]["url"] == (
        "http://127.0.0.1:4242")


async def test_a_refused_up_does_not_say_it_stopped_anything(tmp_path: Path) -> None:
    out = io.StringIO()
    session = DevSession(files=[tmp_path / "missing.yaml"], state_dir=tmp_path / "state", out=out)
    with pytest.raises(DevError, match="cannot read it"):
        await session.run(asyncio.Event())
    assert "stop" not in out.getvalue()


async def test_up_while_a_session_runs_leaves_that_session_alone(tmp_path: Path) -> None:
    import os

    (tmp_path / "state.json").write_text(json.dumps({"pid": os.getpid(), "kubeconfig": "k"}))
    out = io.StringIO()
    with pytest.raises(DevError, match="already running"):
        await DevSession(state_dir=tmp_path, out=out).run(asyncio.Event())
    assert out.getvalue() == "" and (tmp_path / "state.json").exists()


def test_an_unexpected_error_is_one_line_naming_the_log_and_the_traceback_goes_to_the_log(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(DevSession):
        async def start(self) -> None:
            self.log_file = (self.state_dir / "dev.log").open("a", encoding="utf-8")
            raise KeyError("boom")

    (tmp_path / "state").mkdir()
    session = Broken(state_dir=tmp_path / "state", out=io.StringIO())
    assert run_until_signal(session, install=lambda _stop: None) == 1
    err = capsys.readouterr().err
    log = tmp_path / "state" / "dev.log"
    assert err.strip().splitlines() == [f"kaito dev: unexpected error: KeyError: 'boom' (traceback in {log.resolve()})"]
    assert "Traceback (most recent call last)" in log.read_text() and "KeyError: 'boom'" in log.read_text()


def test_status_prints_the_full_metrics_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import kaito.dev.session as session_module

    (tmp_path / "state.json").write_text(json.dumps({
        "pid": os.getpid(), "kubeconfig": str(tmp_path / "kubeconfig"), "metrics_url": "http://127.0.0.1:4242"}))

    async def no_workspaces(_state: dict[str, Any]) -> list[str]:
        return ["no workspaces"]

    monkeypatch.setattr(session_module, "_status_lines", no_workspaces)
    out = io.StringIO()
    assert status(tmp_path, out) == 0
    assert "operator metrics: http://127.0.0.1:4242/metrics" in out.getvalue()
    assert metrics_endpoint("http://127.0.0.1:4242") == "http://127.0.0.1:4242/metrics"


def test_kaito_dev_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    from kaito.cli import main

    with pytest.raises(SystemExit):
        main(["dev", "--help"])
    help_text = capsys.readouterr().out
    assert "kaito dev up" in help_text and "``" not in help_text and ":data:" not in help_text


def _launch(image: str, argv: tuple[str, ...], paths: dict[str, str] | None = None,
            env: dict[str, str] | None = None) -> Any:
    from kaito.dev.images import dev_image_map
    from kreconcile.testing.kubelet.images import LaunchContext, LaunchSpec

    spec = dev_image_map().lookup(image)
    assert spec is not None and spec.transform is not None
    ctx = LaunchContext(pod={}, container={"name": "c", "image": image}, ports={}, paths=paths or {},
                        pod_dir=Path("/nonexistent"))
    return spec.transform(LaunchSpec(argv=argv, env=env or {}, cwd="/"), ctx)


def test_the_inference_server_under_kaito_dev_listens_on_localhost_without_progress_bars() -> None:
    from kaito.workloads.common import RUNTIME_IMAGE

    launch = _launch(RUNTIME_IMAGE, ("python", "-m", "kaito.runtime.inference", "--preset", "smollm2-135m-instruct",
                                     "--port", "41234"))
    assert launch.argv[-2:] == ("--host", "127.0.0.1")
    assert launch.env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and launch.env["TQDM_DISABLE"] == "1"
    chosen = _launch(RUNTIME_IMAGE, ("python", "-m", "kaito.runtime.inference", "--host", "::1"),
                     env={"TQDM_DISABLE": "0"})
    assert chosen.argv.count("--host") == 1 and chosen.env["TQDM_DISABLE"] == "0"  # the container's own win


def test_an_upstream_image_says_which_image_is_not_runnable_in_its_log_and_termination_message(
        tmp_path: Path) -> None:
    import subprocess

    image = "mcr.microsoft.com/aks/kaito/kaito-phi-3-mini-4k-instruct:0.0.2"
    message_file = tmp_path / "termination"
    launch = _launch(image, ("/usr/bin/python3",), paths={"/dev/termination-log": str(message_file)})
    done = subprocess.run(launch.argv, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1
    assert f"image {image} is not runnable locally" in done.stderr
    assert message_file.read_text().startswith(f"image {image} is not runnable locally")
