"""Evaluate a saved VLA on ZarlPutOnPlate-v1's splits: `python launch/eval_vla.py CONFIG vla.init_from=DIR
[eval.episodes=128] [vla_eval.splits=[train,vision,semantic,execution]] [key=value ...]`; with a play-table config
(calvin_sft_pi0, calvin_ppo_pi0_sde, ...) on CALVIN's 5-subtask chains (eval.episodes chains; average length); with
libero_sft_oft in the real LIBERO-spatial simulator (eval.episodes init states per task of env.kwargs.tasks, the
env in eval_env.workers processes of .venv-libero; success per task), whatever pipeline trained the checkpoint
(the SFT base, or GRPO inside the world model).

CONFIG is the VLA config the checkpoint was trained with (maniskill_sft_openvla, maniskill_ppo_oft, ...; it builds
the base model and the env), DIR an SFT or VLA learner checkpoint or the run directory holding it (the newest).
The policy is saved -> loaded -> LoRA-merged before it acts (actors/vla_evaluator.py). The summary (success per
split, episodes, env steps, wall time, device) is printed and written to <run dir>/eval/<checkpoint>.json, where
the run directory is runner.run_dir when given, else the one the checkpoint is in (LIBERO:
<checkpoint>.libero[-tasks<k>_...].json).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from omegaconf import OmegaConf  # noqa: E402

from core.config import ConfigError, available_presets  # noqa: E402

USAGE = """usage: eval_vla.py CONFIG vla.init_from=DIR [key=value ...]

CONFIG   the VLA config of the checkpoint ({presets}) or a YAML path
key=value  e.g. eval.episodes=128 eval.num_envs=64 vla_eval.splits=[train,vision] vla_eval.greedy=false
"""


def output_path(cfg, checkpoint: Path) -> Path:
    if cfg.runner.run_dir:
        run_dir = Path(cfg.runner.run_dir)
    else:
        run_dir = checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent
    name = checkpoint.name
    if cfg.env.id == "LiberoSpatial-v0":  # an evaluation split into parts by task writes one file per part
        tasks = OmegaConf.merge(cfg.env, cfg.eval_env).kwargs.get("tasks", "all")
        name += ".libero" + ("" if tasks == "all" else "-tasks" + "_".join(str(int(t)) for t in tasks))
    return run_dir / "eval" / f"{name}.json"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE.format(presets=", ".join(available_presets())))
        return 0 if argv else 2
    from launch.run_config import load_config, typed

    try:
        cfg = load_config(argv[0], argv[1:])
        if "vla_eval" not in cfg:
            raise ConfigError(f"config '{argv[0]}' uses algo={cfg.algo}, not a VLA pipeline (vla_sft, vla_ppo, "
                              "vla_grpo)")
        if not cfg.vla.init_from:
            raise ConfigError("nothing to evaluate: give vla.init_from=DIR (an SFT or VLA learner checkpoint, or "
                              "the run directory holding it)")
        from learner.vla_checkpoint import resolve

        checkpoint = resolve(cfg.vla.init_from)
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from actors.vla_evaluator import evaluate_vla
    from core.log import get_logger

    summary = evaluate_vla(typed(cfg), get_logger("eval_vla"))
    path = output_path(cfg, checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2) + "\n")
    figure = {"avg_len": summary["avg_len"]} if "chains" in summary else {"success_rate": summary["success_rate"]}
    print(json.dumps({**figure, "env_steps": summary["env_steps"],
                      "wall_s": round(summary["wall_s"], 1), "summary": str(path)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
