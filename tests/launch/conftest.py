"""Fixtures of the launch-mode tests (defined in launch_helpers.py)."""
from launch_helpers import ssh_hosts  # noqa: F401  (a fixture: pytest finds it here)
