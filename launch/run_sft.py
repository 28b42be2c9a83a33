"""Run the SFT stage of a VLA: `python launch/run_sft.py CONFIG [key=value ...]` (e.g. maniskill_sft_openvla).

Behaviour cloning on the scripted expert's demonstrations (learner/sft.py); the demonstrations are recorded
first when `sft.demos` names a directory that does not exist. Writes into runner.run_dir (default
runs/<config>-<time>): config.yaml, demos/ (when recorded there), metrics.jsonl, summary.json and
checkpoints/ckpt-*-s<steps>/, the checkpoint an RL config starts from with vla.init_from=<run_dir>.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from core.config import ConfigError, available_presets  # noqa: E402

USAGE = """usage: run_sft.py CONFIG [key=value ...]

CONFIG   an SFT preset (maniskill_sft_openvla, maniskill_sft_oft, calvin_sft_pi0, calvin_sft_pi05) or a YAML path; presets: {presets}
key=value  override any setting, e.g. sft.steps=500 sft.demos=/data/demos runner.run_dir=runs/sft
"""


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(presets=", ".join(available_presets())))
        return 0 if argv else 2
    from core.config import save_config
    from launch.launcher import check_env_ids, lock_run_dir, make_run_dir, run_dir_name
    from launch.monitor import MetricSinks
    from launch.run_config import load_config, typed

    try:
        cfg = load_config(argv[0], argv[1:])  # with the pipeline's sections, validated
        if cfg.algo != "vla_sft":
            raise ConfigError(f"config '{argv[0]}' uses algo={cfg.algo}; run_sft.py runs algo=vla_sft configs")
        check_env_ids(cfg)
        run_dir = make_run_dir(cfg.runner.run_dir or run_dir_name(cfg))
        cfg.runner.run_dir = str(run_dir)
        lock_run_dir(run_dir)  # one run per directory, as for the launcher's runs
        save_config(cfg, run_dir / "config.yaml")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from core.log import get_logger
    from learner.sft import run_sft

    sinks = MetricSinks(cfg, run_dir)
    summary: dict = {}
    try:
        summary = run_sft(typed(cfg), run_dir, sinks.write, get_logger("sft")).summary
    finally:
        sinks.close(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
