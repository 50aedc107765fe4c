"""``kaito dev``: kaito on one machine — a LocalCluster whose pods are local processes, the CRDs, the operator with
the local provider and the webhook (see :mod:`kaito.dev.session` and docs/local-cluster.md)."""
