"""YAML output for generated manifests and ``kaito plan``: block style, key order kept, no anchors/aliases."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(obj: Any) -> str:
    """One YAML document for ``obj`` (dict key order preserved, multi-line strings as ``|`` blocks)."""
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)


def dump_yaml_all(objs: Iterable[Any]) -> str:
    """Several documents separated by ``---`` lines."""
    return "---\n".join(dump_yaml(o) for o in objs)
