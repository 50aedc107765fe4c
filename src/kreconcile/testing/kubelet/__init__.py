"""The process kubelet: runs pods bound to a local Node as local processes.

Public API: :class:`ProcessKubelet` (one per Node), :class:`KubeletBackend` (its view of the API),
:class:`ImageMap`/:class:`ImageSpec` (image → local command), :class:`PodWorker` (one pod). What is emulated and
what is not is tabled in ``docs/local-cluster.md``.
"""

from kreconcile.testing.kubelet.images import ImageMap, ImageSpec, LaunchContext, LaunchSpec
from kreconcile.testing.kubelet.kubelet import KubeletBackend, ProcessKubelet
from kreconcile.testing.kubelet.pod import NodeContext, PodWorker
from kreconcile.testing.kubelet.process import live_process_groups

__all__ = [
    "ImageMap",
    "ImageSpec",
    "KubeletBackend",
    "LaunchContext",
    "LaunchSpec",
    "NodeContext",
    "PodWorker",
    "ProcessKubelet",
    "live_process_groups",
]
