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
