"""Configuration: presets, overrides and the errors a user sees."""
from __future__ import annotations

import pytest

from core.config import ConfigError, available_presets
from launch.run_config import load_config


def test_every_preset_loads():
    for name in available_presets():
        cfg = load_config(name)
        for key in ("runner.run_dir", "runner.max_env_steps", "runner.seed", "actor.num_actors"):
            node = cfg
            for part in key.split("."):
                assert part in node, f"{name} lacks {key}"
                node = node[part]


def test_overrides_change_values():
    cfg = load_config("pendulum_sac_mlp", ["actor.num_actors=3", "sac.batch_size=32", "env.kwargs.g=9.0"])
    assert cfg.actor.num_actors == 3 and cfg.sac.batch_size == 32 and cfg.env.kwargs.g == 9.0


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match="Did you mean 'actor.num_actors'"):
        load_config("pendulum_sac_mlp", ["actor.num_actor=2"])


def test_bad_value_and_bad_syntax_are_errors():
    with pytest.raises(ConfigError, match="invalid config value"):
        load_config("pendulum_sac_mlp", ["actor.num_actors=many"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config("pendulum_sac_mlp", ["actor.num_actors"])
    with pytest.raises(ConfigError, match="no config preset"):
        load_config("pendulum_sac_mpl")


def test_pipeline_stages_must_split_the_envs():
    assert load_config("pendulum_sac_mlp", ["actor.pipeline_stages=2", "env.num_envs=4"]).actor.pipeline_stages == 2
    with pytest.raises(ConfigError, match="must be 1 or 2"):
        load_config("pendulum_sac_mlp", ["actor.pipeline_stages=3", "env.num_envs=6"])
    with pytest.raises(ConfigError, match="does not split into"):
        load_config("pendulum_sac_mlp", ["actor.pipeline_stages=2", "env.num_envs=3"])


def test_compile_is_for_sac_runs():
    assert load_config("pendulum_sac_mlp", ["learner.compile=true"]).learner.compile
    with pytest.raises(ConfigError, match="SAC runs only"):
        load_config("cartpole_ppo_mlp", ["learner.compile=true"])


def test_assigned_ports_are_outside_the_range_outgoing_connections_use():
    """Ports handed to services are chosen where no outgoing connection's source port can take them first."""
    import socket

    from core.net import _ephemeral_ports, free_tcp_port

    ports = {free_tcp_port() for _ in range(50)}
    assert len(ports) > 40 and not any(p in _ephemeral_ports() for p in ports)
    for port in list(ports)[:5]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))  # still free


def test_sections_come_from_the_runs_pipeline():
    sac = load_config("pendulum_sac_mlp")
    assert "sac" in sac and "ppo" not in sac and "grpo" not in sac
    with pytest.raises(ConfigError, match="unknown config key 'ppo.epochs'"):
        load_config("pendulum_sac_mlp", ["ppo.epochs=2"])  # a PPO setting in a SAC run is a typo, not ignored
    assert load_config("cartpole_ppo_mlp", ["ppo.epochs=2"]).ppo.epochs == 2
    with pytest.raises(ConfigError, match="unknown algo 'ppp'. Did you mean 'ppo'"):
        load_config("cartpole_ppo_mlp", ["algo=ppp"])


def test_roles_get_the_config_as_dataclasses():
    from launch.run_config import typed
    from learner.configs import GRPOConfig
    from policies.config import EncoderConfig

    run = typed(load_config("cartpole_grpo_mlp", ["grpo.group_size=4"]))
    assert isinstance(run.grpo, GRPOConfig) and run.grpo.group_size == 4
    assert isinstance(run.policy.encoder, EncoderConfig) and run.env.id == "CartPole-v1"


def test_reading_a_config_imports_no_torch():
    """The replay service is numpy-only: its config, its pipeline's builder and its module load without torch."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    code = ("import sys\nfrom launch.run_config import builder, load_config, typed\n"
            "for name in ('pendulum_sac_mlp', 'cartpole_ppo_mlp', 'cartpole_grpo_mlp', 'frankasim_sac_cnn'):\n"
            "    cfg = load_config(name); typed(cfg); builder(cfg)\n"
            "import replay.service, replay.rollout_service\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=repo)
    assert result.returncode == 0, result.stderr


def test_every_endpoint_of_a_run_gets_its_own_port():
    """A port checked free is not held: without the exclusion two endpoints could draw the same one."""
    from core.net import assign_ports, free_tcp_port
    from launch.run_config import load_config

    cfg = load_config("pendulum_sac_mlp", [])
    for _ in range(20):
        cfg.network.ports = {}
        assign_ports(cfg)
        ports = list(cfg.network.ports.values())
        assert len(set(ports)) == len(ports)
    taken = {free_tcp_port() for _ in range(5)}
    assert all(free_tcp_port(exclude=taken) not in taken for _ in range(50))

