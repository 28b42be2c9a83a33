"""Placement: which host and device each process gets, and the environment and addresses derived from it."""
from __future__ import annotations

import shlex

import pytest

from core.config import ConfigError
from launch.run_config import load_config
from launch import placement
from launch.ssh import Host, load_hosts

PINNED_ACTORS = ["launch.placement.actors=[{host: '', count: 2, devices: [cuda:0, cuda:1]}]"]


def test_two_actors_get_different_cuda_visible_devices_locally_over_ssh_and_in_ray(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    cfg = load_config("pendulum_sac_mlp", PINNED_ACTORS)
    processes = {p.name: p for p in placement.plan(cfg)}
    a0, a1 = processes["actor-0"], processes["actor-1"]
    # On this machine (local and tmux modes): each actor process sees its own GPU.
    env0, env1 = placement.local_env(cfg, a0), placement.local_env(cfg, a1)
    assert (env0["CUDA_VISIBLE_DEVICES"], env1["CUDA_VISIBLE_DEVICES"]) == ("0", "1")
    assert env0["OMP_NUM_THREADS"] == "1"
    # The evaluator shares actor 0's GPU; the learner and replay are not pinned.
    assert placement.local_env(cfg, processes["evaluator"])["CUDA_VISIBLE_DEVICES"] == "0"
    assert "CUDA_VISIBLE_DEVICES" not in placement.local_env(cfg, processes["replay"])
    # On another host (ssh mode): the same pinning travels in the remote command's environment.
    remote0 = placement.remote_env(cfg, a0, "/opt/zarl", {"MUJOCO_GL": "egl"})
    remote1 = placement.remote_env(cfg, a1, "/opt/zarl")
    assert remote0 == {"PYTHONPATH": "/opt/zarl", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                       "CUDA_VISIBLE_DEVICES": "0", "MUJOCO_GL": "egl"}
    assert remote1["CUDA_VISIBLE_DEVICES"] == "1"
    # Inside its process a pinned actor's only GPU is cuda:0, and the config the roles read says so.
    placement.write_actor_devices(cfg, list(processes.values()))
    assert cfg.actor.num_actors == 2 and list(cfg.actor.devices) == ["cuda:0", "cuda:0"]


def test_pinning_counts_among_the_launchers_own_visible_gpus_for_ssh_and_ray_too(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    cfg = load_config("pendulum_sac_mlp", PINNED_ACTORS)
    processes = {p.name: p for p in placement.plan(cfg)}
    assert placement.local_env(cfg, processes["actor-1"])["CUDA_VISIBLE_DEVICES"] == "3"
    assert placement.local_env(cfg, processes["replay"])["CUDA_VISIBLE_DEVICES"] == "2,3"  # inherited as is
    too_many = load_config("pendulum_sac_mlp", ["actor.num_actors=3", "actor.devices=[cuda:0,cuda:1,cuda:2]"])
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES=2,3"):
        placement.local_env(too_many, placement.plan(too_many)[-1])


def test_actor_devices_without_placement_still_pin_each_actor_for_tmux_and_ray():
    cfg = load_config("pendulum_sac_mlp", ["actor.num_actors=3", "actor.devices=[cuda:1,cpu]"])
    actors = [p for p in placement.plan(cfg) if p.role == "actor"]
    assert [(p.gpu, p.device_in_process) for p in actors] == [(1, "cuda:0"), (None, "cpu"), (1, "cuda:0")]


def test_ssh_placement_gives_addresses_only_when_roles_leave_this_machine():
    local = placement.plan(load_config("pendulum_sac_mlp", ["actor.num_actors=2"]))
    assert placement.service_addresses(local, lambda h: "unused", "") == {}
    cfg = load_config("pendulum_sac_mlp", ["launch.placement.replay=a", "launch.placement.learner=b",
                                           "launch.placement.actors=[{host: b, count: 3}]"])
    spread = placement.plan(cfg)
    assert [p.host for p in spread if p.role == "actor"] == ["b", "b", "b"]
    addresses = {"a": "10.0.0.1", "b": "10.0.0.2"}
    assert placement.service_addresses(spread, addresses.get, "10.0.0.9") == {
        "replay": "10.0.0.1", "learner": "10.0.0.2", "launcher": "10.0.0.9"}
    with pytest.raises(ConfigError, match="launch.placement.launcher_host"):
        placement.service_addresses(spread, addresses.get, "")


def test_ssh_hosts_file_defaults_and_errors(tmp_path):
    path = tmp_path / "hosts.yaml"
    path.write_text("defaults: {user: alice, python: /opt/zarl/.venv/bin/python, workdir: /opt/zarl}\n"
                    "hosts:\n  gpu-a: {host: 10.0.0.11, port: 2222, identity: /keys/id, env: {MUJOCO_GL: egl}}\n")
    host = load_hosts(path)["gpu-a"]
    assert (host.user, host.port, host.workdir, host.env) == ("alice", 2222, "/opt/zarl", {"MUJOCO_GL": "egl"})
    argv = host.ssh_argv(tty=True)
    assert argv[:2] == ["ssh", "-tt"] and "BatchMode=yes" in argv and argv[-2:] == ["alice@10.0.0.11", "--"]
    assert argv[argv.index("-p") + 1] == "2222" and argv[argv.index("-i") + 1] == "/keys/id"
    path.write_text("hosts:\n  gpu-a: {host: 10.0.0.11, pyhton: /usr/bin/python3}\n")
    with pytest.raises(ConfigError, match="host 'gpu-a' has unknown key"):
        load_hosts(path)
    path.write_text("hosts:\n  gpu-a: {user: bob}\n")
    with pytest.raises(ConfigError, match="needs 'host:'"):
        load_hosts(path)


def test_ssh_mode_needs_a_hosts_file_and_known_hosts(tmp_path):
    with pytest.raises(ConfigError, match="launch.hosts_file"):
        load_config("pendulum_sac_mlp", ["launch.mode=ssh"])
    hosts = tmp_path / "hosts.yaml"
    hosts.write_text("hosts:\n  a: {host: 10.0.0.1}\n")
    from launch.ssh import SSHLauncher

    cfg = load_config("pendulum_sac_mlp", ["launch.mode=ssh", f"launch.hosts_file={hosts}",
                                           "launch.placement.actors=[{host: c, count: 1}]",
                                           f"runner.run_dir={tmp_path / 'run'}"])
    with pytest.raises(ConfigError, match="host 'c', which is not in"):
        SSHLauncher(cfg)


def test_tmux_and_local_modes_refuse_other_hosts(tmp_path):
    from launch.tmux import TmuxLauncher

    cfg = load_config("pendulum_sac_mlp", ["launch.mode=tmux", "launch.placement.learner=gpu-b",
                                           f"runner.run_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="use launch.mode=ssh or ray"):
        TmuxLauncher(cfg)


def test_ssh_remote_command_is_the_role_command_with_its_environment():
    host = Host(name="b", host="10.0.0.2", python="/opt/py", workdir="/opt/zarl")
    cfg = load_config("pendulum_sac_mlp", ["launch.placement.actors=[{host: b, count: 1, devices: [cuda:3]}]"])
    actor = placement.plan(cfg)[-1]
    env = placement.remote_env(cfg, actor, host.workdir)
    from launch.processes import role_command

    words = shlex.split(shlex.join([f"{k}={v}" for k, v in env.items()]
                                   + role_command("actor", "/runs/x", actor.index, python=host.python)))
    assert "CUDA_VISIBLE_DEVICES=3" in words and words[-6:] == ["launch.role", "actor", "--run-dir", "/runs/x",
                                                                "--index", "0"]


def test_ray_reserves_one_gpu_per_pinned_actor_and_pins_named_nodes():
    from launch.ray_launcher import ray_options

    actors = "launch.placement.actors=[{host: 10.0.0.2, count: 2, devices: [cuda:0, cpu]}]"
    cfg = load_config("pendulum_sac_mlp", ["learner.device=cuda", "launch.ray_cpus_per_role=0.5", actors])
    options = {p.name: ray_options(cfg, p) for p in placement.plan(cfg)}
    assert [options[n]["num_gpus"] for n in ("replay", "learner", "evaluator", "actor-0", "actor-1")] == [0, 1, 1, 1, 0]
    assert options["actor-0"]["resources"] == {"node:10.0.0.2": 0.001} and "resources" not in options["replay"]
    assert options["replay"]["num_cpus"] == 0.5
    bad = load_config("pendulum_sac_mlp", ["learner.device=cuda:1"])
    with pytest.raises(ConfigError, match="set learner.device=cuda"):
        ray_options(bad, placement.plan(bad)[1])


def test_a_libero_run_starts_its_actors_and_evaluator_with_the_libero_venvs_interpreter(tmp_path):
    """LiberoSpatial-v0's simulator is in .venv-libero: the roles that make the env get its interpreter, the
    learner and replay the launcher's; a missing venv is a config error that says how to make it."""
    import sys

    from launch.processes import role_command

    cfg = load_config("pendulum_sac_mlp", ["env.id=LiberoSpatial-v0"])
    assert placement.env_python(cfg, "actor") == placement.env_python(cfg, "evaluator") == ".venv-libero/bin/python"
    assert placement.env_python(cfg, "learner") == placement.env_python(cfg, "replay") == ""
    assert placement.env_python(load_config("pendulum_sac_mlp"), "actor") == ""
    # actor.python (here the test's own interpreter, absolute) wins over the env's
    cfg = load_config("pendulum_sac_mlp", ["env.id=LiberoSpatial-v0", f"actor.python={sys.executable}"])
    processes = {p.name: p for p in placement.plan(cfg)}
    assert role_command("actor", "RUN", 0, placement.interpreter(processes["actor-0"], "/repo"))[0] == sys.executable
    assert placement.interpreter(processes["learner"], "/repo") is None
    relative = placement.ProcessPlacement("actor-0", "actor", 0, "gpu-b", "cpu", ".venv-libero/bin/python")
    assert placement.interpreter(relative, "/opt/zarl") == "/opt/zarl/.venv-libero/bin/python"  # an ssh host's
    missing = load_config("pendulum_sac_mlp", ["env.id=LiberoSpatial-v0",
                                               f"actor.python={tmp_path}/.venv-libero/bin/python"])
    with pytest.raises(ConfigError, match="scripts/setup.sh --libero"):
        placement.plan(missing)
