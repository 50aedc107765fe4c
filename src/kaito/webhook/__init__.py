"""Admission for Workspace: pure validation rules and defaulting, and the HTTPS AdmissionReview server."""

from kaito.webhook.defaulting import default_patch
from kaito.webhook.rules import validate_workspace
from kaito.webhook.ssrf import url_problem
from kaito.webhook.training_config import validate_training_config
from kaito.webhook.verdict import FieldError, Verdict

__all__ = ["FieldError", "Verdict", "default_patch", "url_problem", "validate_training_config", "validate_workspace"]
