"""The limits a package sets for every request: checked when packaging, overridable per deployment."""

import pytest

from deploykit import ConfigError
from deploykit._limits import package_limits
from deploykit._runtime.limits import Limits


def test_defaults_and_user_values_go_into_the_manifest():
    limits = package_limits({"max_string": 50_000, "explain_seconds": 2}, max_batch=300)
    assert limits["max_string"] == 50_000 and limits["explain_seconds"] == 2.0 and limits["max_batch"] == 300
    assert limits["max_body_bytes"] == 8 << 20 and limits["explain_deadline_seconds"] == 30.0


@pytest.mark.parametrize("limits, max_batch, fragment", [
    ({"max_strings": 5}, 10, "unknown limit 'max_strings'"),
    ({"max_string": 0}, 10, "from 1 to"),
    ({"explain_concurrency": 1.5}, 10, "must be an integer"),
    ({"max_batch": 5}, 10, "its own argument"),
    (None, 0, "max_batch must be an integer from 1"),
])
def test_unusable_limits_are_config_errors(limits, max_batch, fragment):
    with pytest.raises(ConfigError, match=fragment):
        package_limits(limits, max_batch)


def test_an_operator_can_change_a_limit_for_one_deployment():
    manifest = {"schema": {"max_batch": 12}, "limits": {"explain_deadline_seconds": 30}}
    assert Limits.from_manifest(manifest, {}).max_batch == 12  # a package made before limits existed keeps its batch
    changed = Limits.from_manifest(manifest, {"DEPLOYKIT_LIMITS": '{"explain_deadline_seconds": 2}'})
    assert changed.explain_deadline_seconds == 2.0
    with pytest.raises(ValueError, match="DEPLOYKIT_LIMITS"):
        Limits.from_manifest(manifest, {"DEPLOYKIT_LIMITS": '{"explain_deadline_seconds": -1}'})
