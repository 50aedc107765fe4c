"""kaito-operator's flags: every one documented in --help with its environment variable; env fills defaults, a
flag wins; bad values are refused with the flag's name."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kaito.operator.options import OPTIONS, OptionError, build_parser, parse_feature_gates, parse_options


def test_help_documents_every_flag_and_its_environment_variable() -> None:
    text = " ".join(build_parser({}).format_help().split())
    for opt in OPTIONS:
        assert opt.flag in text, opt.flag
        assert f"env {opt.env}" in text, opt.env
    for required in ("--kubeconfig", "--provider", "--azure-subscription-id", "--metrics-bind-address",
                     "--health-probe-bind-address", "--leader-elect", "--log-format", "--log-level",
                     "--feature-gates", "--watch-namespaces", "--enable-tuning-controller", "--webhook"):
        assert required in text


def test_console_script_help_exits_zero_and_lists_flags() -> None:
    out = subprocess.run([sys.executable, "-m", "kaito.operator", "--help"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    assert "--leader-elect" in out and "--provider {azure,local,none}" in out


def test_defaults_are_the_documented_ones() -> None:
    opts = parse_options([], {})
    assert (opts.metrics_bind_address, opts.health_probe_bind_address) == (":8080", ":8081")
    assert opts.leader_elect is False and opts.provider == "none" and opts.webhook is True
    assert (opts.lease_duration, opts.renew_deadline, opts.retry_period) == (15.0, 10.0, 2.0)
    assert opts.watch_namespaces == () and opts.feature_gates["disableNodeAutoProvisioning"] is False


def test_environment_sets_defaults_and_flags_win() -> None:
    env = {"LEADER_ELECT": "true", "METRICS_BIND_ADDRESS": "127.0.0.1:9090", "KAITO_PROVIDER": "none",
           "WATCH_NAMESPACES": "a, b", "LOG_LEVEL": "debug", "KAITO_ENABLE_TUNING_CONTROLLER": "off"}
    opts = parse_options([], env)
    assert opts.leader_elect is True and opts.metrics_bind_address == "127.0.0.1:9090"
    assert opts.provider == "none" and opts.watch_namespaces == ("a", "b") and opts.log_level == "debug"
    assert opts.enable_tuning_controller is False
    opts = parse_options(["--no-leader-elect", "--metrics-bind-address=:1", "--provider=local"], env)
    assert opts.provider == "local"
    assert opts.leader_elect is False and opts.metrics_bind_address == ":1" and opts.provider == "local"


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(OptionError, match=r"LEADER_ELECT.*'maybe' is not a boolean"):
        parse_options([], {"LEADER_ELECT": "maybe"})
    with pytest.raises(OptionError, match=r"KAITO_PROVIDER.*'gcp' is not one of azure, local, none"):
        parse_options([], {"KAITO_PROVIDER": "gcp"})


def test_azure_provider_needs_subscription_group_and_cluster() -> None:
    with pytest.raises(OptionError, match="--azure-resource-group, --azure-cluster-name"):
        parse_options(["--provider=azure", "--azure-subscription-id=s"], {})
    opts = parse_options(["--provider=azure"], {"AZURE_SUBSCRIPTION_ID": "s", "AZURE_RESOURCE_GROUP": "g",
                                                "AZURE_CLUSTER_NAME": "c"})
    assert (opts.azure_subscription_id, opts.azure_resource_group, opts.azure_cluster_name) == ("s", "g", "c")


def test_feature_gates() -> None:
    assert parse_feature_gates("disableNodeAutoProvisioning=true")["disableNodeAutoProvisioning"] is True
    with pytest.raises(OptionError, match="unknown gate 'vLLMx'; known gates: disableNodeAutoProvisioning, webhook"):
        parse_feature_gates("vLLMx=true")
    with pytest.raises(OptionError, match="webhook='sometimes' is not a boolean"):
        parse_feature_gates("webhook=sometimes")
    opts = parse_options(["--feature-gates", "disableNodeAutoProvisioning=true,webhook=false"], {})
    assert opts.provider == "none" and opts.webhook is False


def test_leader_election_durations_must_be_ordered() -> None:
    with pytest.raises(OptionError, match="--lease-duration > --renew-deadline"):
        parse_options(["--leader-elect", "--lease-duration=5", "--renew-deadline=10"], {})


def test_operator_exits_2_with_a_clear_message_on_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    from kaito.operator.main import run

    assert run(["--provider=azure"], {}) == 2
    assert "--provider azure needs --azure-subscription-id" in capsys.readouterr().err
