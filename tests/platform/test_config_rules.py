"""Every key's rule (core/rules.py tables next to each config dataclass): bad values are one line naming the
key, the value and what is allowed; the launch scripts exit 2 on them and start nothing."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import pipelines
from core import rules as R
from core.config import ConfigError, RunConfig
from launch.run_config import load_config

REPO = Path(__file__).resolve().parents[2]
PRESET_OF = {"sac": "pendulum_sac_mlp", "ppo": "cartpole_ppo_mlp", "grpo": "cartpole_grpo_mlp",
             "vla_ppo": "maniskill_ppo_openvla", "vla_grpo": "maniskill_grpo_openvla"}


def numeric_keys() -> list[tuple[str, str, type, object]]:
    """(algo, dotted key, type, rule) of every int/float key of every section a built-in pipeline has."""
    out = []

    def walk(cls, prefix, algo):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = hints[f.name]
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            base = args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp
            key = f"{prefix}{f.name}"
            if dataclasses.is_dataclass(base):
                walk(base, key + ".", algo)
            elif base in (int, float):
                out.append((algo, key, base, getattr(cls, "RULES", {}).get(f.name)))

    for algo in PRESET_OF:
        sections = {f.name: f.type for f in dataclasses.fields(RunConfig)}
        sections.update(pipelines.get(algo).config_sections)
        hints = typing.get_type_hints(RunConfig)
        for name, cls in sections.items():
            cls = hints.get(name, cls)
            if dataclasses.is_dataclass(cls):
                walk(cls, name + ".", algo)
    return sorted(set(out), key=lambda t: (t[1], t[0]))


NUMERIC = numeric_keys()


def test_every_numeric_key_has_a_rule():
    missing = [key for _, key, _, rule in NUMERIC if rule is None]
    assert not missing, f"numeric config keys without a rule in their dataclass's RULES: {missing}"
    assert len({key for _, key, _, _ in NUMERIC}) > 80  # sanity: the walk found the sections


def _bad_value(rule) -> str:
    """One value the rule refuses: below its lower end, else above its upper end, else not a choice."""
    if isinstance(rule, R.Range):
        if rule.lo is not None:
            return str(rule.lo if rule.lo_open else rule.lo - 1)
        if rule.hi is not None:
            return str(rule.hi if rule.hi_open else rule.hi * 10 + 1)
        return "nan"
    return "12345"


# Each key once (a key every run has: under the SAC preset), with one value outside its range; the type check
# (a string for a number, nan, an empty value) is the same code for every key: tried on a few.
ONCE = sorted({key: (algo, key, tp, rule) for algo, key, tp, rule in reversed(NUMERIC)}.values(), key=lambda t: t[1])


@pytest.mark.parametrize("algo,key,tp,rule", ONCE, ids=[k for _, k, _, _ in ONCE])
def test_a_value_outside_a_numeric_keys_rule_is_one_line_naming_the_key(algo, key, tp, rule):
    value = _bad_value(rule)
    with pytest.raises(ConfigError) as e:
        load_config(PRESET_OF[algo], [f"{key}={value}"])
    message = str(e.value)
    assert "\n" not in message and f"{key}=" in message, (value, message)


@pytest.mark.parametrize("item", ["actor.num_actors=abc", "runner.max_env_steps=", "runner.max_env_steps=1e99",
                                  "sac.gamma=nan", "sac.tau=inf", "replay.capacity_gb=abc", "actor.credits=1.5",
                                  "policy.hidden=[64,0]", "env.max_episode_steps=-1", "launch.mode=nowhere",
                                  "actor.heartbeat_s=20"])
def test_type_and_value_errors_are_one_line_naming_the_key(item):
    with pytest.raises(ConfigError) as e:
        load_config("pendulum_sac_mlp", [item])
    assert "\n" not in str(e.value) and item.split("=")[0] + "=" in str(e.value), str(e.value)


# -- the launch scripts: exit code 2, one line on stderr, nothing started -----------------------------------


def run_script(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(REPO / "launch" / script), *args], capture_output=True, text=True,
                          env=env, timeout=120, cwd=REPO)


BAD = {
    "batch_size_0": ["sac.batch_size=0"],
    "capacity_below_min_size": ["replay.capacity=50"],
    "min_size_below_batch_size": ["replay.min_size=10"],
    "num_actors_abc": ["actor.num_actors=abc"],
    "max_env_steps_empty": ["runner.max_env_steps="],
    "max_env_steps_1e99": ["runner.max_env_steps=1e99"],
    "unknown_env_id": ["env.id=NoSuchEnv-v0"],
}


@pytest.mark.parametrize("case", list(BAD) + ["run_dir_is_a_file", "run_dir_read_only"])
def test_a_bad_config_exits_2_with_one_line_and_starts_nothing(case, tmp_path):
    run_dir = tmp_path / "run"
    if case == "run_dir_is_a_file":
        run_dir.write_text("not a directory")
    elif case == "run_dir_read_only":
        run_dir = Path("/sys/fs/zarl-run")  # sysfs: no directory can be made there (EPERM / EROFS)
        if os.path.isdir(run_dir):
            pytest.skip("/sys/fs is writable here")
    result = run_script("run_async.py", "pendulum_sac_mlp", *BAD.get(case, []), f"runner.run_dir={run_dir}")
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    # Nothing started: no run directory made (or, for a file, left as it was), no config written, no logs.
    if case == "run_dir_is_a_file":
        assert run_dir.read_text() == "not a directory"
    else:
        assert not run_dir.exists()


def test_run_sync_exits_2_on_a_bad_value_too(tmp_path):
    result = run_script("run_sync.py", "cartpole_ppo_mlp", "ppo.rollout_len=0", f"runner.run_dir={tmp_path / 'r'}")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "r").exists()


def test_env_ids_made_by_make_vector_env_itself_pass_the_launchers_id_check():
    from launch.launcher import check_env_ids
    from launch.run_config import load_config

    check_env_ids(load_config("maniskill_pickcube_sac_mlp"))  # ManiSkill/PickCube-v1: not in gymnasium's registry
    check_env_ids(load_config("pendulum_sac_mlp", ["eval_env.id=ManiSkill/PushCube-v1"]))
    with pytest.raises(ConfigError, match="eval_env.id=NoSuchEnv-v0"):
        check_env_ids(load_config("pendulum_sac_mlp", ["eval_env.id=NoSuchEnv-v0"]))
