"""Fixtures of the launch-mode tests (defined in launch_helpers.py)."""
from launch_helpers import loopback_namespace, ssh_hosts  # noqa: F401  (fixtures: pytest finds them here)
