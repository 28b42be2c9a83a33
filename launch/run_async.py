"""Start an asynchronous (off-policy) run: `python launch/run_async.py CONFIG [key=value ...]`.

CONFIG is a preset in configs/ (e.g. pendulum_sac_mlp, frankasim_sac_cnn) or a YAML path.
Overrides use dotted keys: `runner.max_env_steps=50000 actor.num_actors=2 sac.batch_size=128`.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from launch.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], expect="async"))
