"""Command-line front end shared by run_async.py and run_sync.py."""
from __future__ import annotations

import sys

from core.config import ConfigError, available_presets
from launch.run_config import builder, load_config

USAGE = """usage: {prog} CONFIG [key=value ...]

CONFIG   a preset name ({presets}) or a path to a YAML file
key=value  override any setting, e.g. runner.max_env_steps=50000 actor.num_actors=2
"""


def main(argv: list[str], expect: str) -> int:
    prog = "run_async.py" if expect == "async" else "run_sync.py"
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(prog=prog, presets=", ".join(available_presets())))
        return 0 if argv else 2
    preset, overrides = argv[0], argv[1:]
    try:
        cfg = load_config(preset, overrides)
        own = getattr(builder(cfg), "command", None)
        if own:  # a stage of its own (e.g. SFT), not a run of roles
            raise ConfigError(f"config '{preset}' uses algo={cfg.algo}; start it with {own}")
        if builder(cfg).synchronous != (expect == "sync"):  # the pipeline says which command starts it
            other = "run_sync.py" if expect == "async" else "run_async.py"
            raise ConfigError(f"config '{preset}' uses algo={cfg.algo}; start it with launch/{other}")
        from launch.local import launch

        return launch(preset, overrides)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
