"""Run configuration: typed schema, YAML presets, and ``key=value`` overrides.

A run is described by one tree of settings. Its shape and defaults live in the
dataclasses below, plus the sections the run's pipeline declares (its algorithm's
and policy's, e.g. ``sac`` and ``policy``): the caller passes them in, so this
module knows no algorithm and imports no role package. The presets in
``configs/*.yaml`` only change values. On the command line,
``key=value`` overrides any leaf, e.g. ``actor.num_actors=2 sac.batch_size=128``.
An unknown key is an error that names the closest valid key, because a typo
that is silently ignored costs a day of training.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, List, Mapping, Optional

from omegaconf import DictConfig, ListConfig, OmegaConf

from core import rules as R

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class RunnerConfig:
    RULES: ClassVar[dict] = {
        "max_env_steps": R.count(1, 10**15), "max_wall_s": R.SECONDS, "seed": R.count(0, 2**32 - 1),
        "checkpoint_every_updates": R.count(1), "keep_checkpoints": R.count(1, 1000),
        "log_every_s": R.Range(0, 3600, lo_open=True), "stop_grace_s": R.SECONDS,
        "shutdown_timeout_s": R.POSITIVE_SECONDS}

    run_dir: Optional[str] = None  # default: runs/<preset>-<timestamp>
    max_env_steps: int = 20_000  # total over all actors; the run ends when replay has seen this many
    max_wall_s: float = 0.0  # 0 = no wall-clock limit
    seed: int = 0
    resume: bool = False  # continue from the newest intact checkpoint and replay snapshot in run_dir
    checkpoint_every_updates: int = 5_000
    keep_checkpoints: int = 2  # the newest N are kept, so a damaged newest one has a good predecessor
    # Filled by the launcher, new for every launch. A learner or replay service restarted after a crash sees
    # its own launch's checkpoint / snapshot and resumes from it even without runner.resume.
    run_id: str = ""
    log_every_s: float = 5.0  # how often each role reports its counters
    stop_grace_s: float = 60.0  # at the normal end of a run: time for the last step and final checkpoint
    shutdown_timeout_s: float = 7.0  # roles get this long to stop (then SIGTERM, then SIGKILL 2 s later)


@dataclass
class EnvConfig:
    RULES: ClassVar[dict] = {"num_envs": R.count(1, 65_536), "max_episode_steps": R.Range(1, R.BIG, integer=True, optional=True),
                             "workers": R.count(1, 4096)}

    id: str = "Pendulum-v1"
    num_envs: int = 1  # environments stepped together in each actor process
    max_episode_steps: Optional[int] = None  # None = the registered default
    kwargs: dict = field(default_factory=dict)  # passed to gymnasium.make
    # Processes the copies step in, side by side (envs/process_vector.py), at most one per copy; 1: in the calling
    # process. For rendering envs whose steps cost milliseconds each, e.g. `eval_env.workers` for a fast evaluator.
    workers: int = 1


@dataclass
class ActorConfig:
    RULES: ClassVar[dict] = {
        "num_actors": R.count(1, 4096), "chunk_len": R.count(1, 1_000_000), "random_steps": R.count(0),
        "credits": R.count(1, 10_000), "heartbeat_s": R.Range(0, 3600, lo_open=True), "pipeline_stages": R.OneOf((1, 2)),
        "weights_poll_s": R.Range(0, 10, lo_open=True), "resend_buffer_mb": R.at_least(0, 10**7)}

    num_actors: int = 1
    chunk_len: int = 64  # env steps per trajectory chunk sent to replay
    device: str = "cpu"  # "cpu", "cuda", "cuda:i" or "auto"; actor i uses devices[i] when given
    devices: list = field(default_factory=list)
    random_steps: int = 1_000  # uniform random actions per actor before the policy acts
    credits: int = 2  # chunks an actor may have in flight before it waits for the replay service
    heartbeat_s: float = 1.0
    # 2: the envs form two groups that take turns, one stepping on the CPU while the policy computes the other's
    # actions on the GPU (what RLinf's examples call pipeline_stage_num); env.num_envs must be even. 1 on a CPU-only actor.
    pipeline_stages: int = 1
    weights_poll_s: float = 0.01  # how often the env loop looks at its sockets (weights, credits, heartbeats)
    # Chunks the replay service stored but has not yet written to a snapshot are kept (up to this many MB)
    # and resent if the service restarts from its snapshot: a replay crash then loses no data.
    resend_buffer_mb: float = 256.0
    # Same-host actors leave a chunk's large arrays (camera frames) in a shared-memory slot (/dev/shm) instead of
    # sending them through the socket: one copy instead of three (wire/shared_memory.py). Used only once the replay
    # service has shown it can read the actor's segment; otherwise, and for small chunks, ordinary frames.
    shared_memory: bool = True
    # The interpreter of the actor and evaluator processes (a path, relative to the project's root or absolute;
    # on an ssh host, to its workdir). "" = the one the env needs (LiberoSpatial-v0: .venv-libero/bin/python, the
    # LIBERO venv; envs.role_python), else the launcher's own.
    python: str = ""


@dataclass
class RateLimitConfig:
    """Keeps the update-to-data ratio fixed, whatever the machine's speed (like Reverb's SampleToInsertRatio)."""

    RULES: ClassVar[dict] = {"updates_per_step": R.at_least(0, 10**6), "slack_steps": R.count(0)}

    updates_per_step: float = 1.0  # critic updates per env step; 0 disables the limiter
    slack_steps: int = 2_000  # how far actors may run ahead of the learner (and the learner ahead of data)


@dataclass
class ReplayConfig:
    RULES: ClassVar[dict] = {
        "capacity": R.count(1, 10**13), "capacity_gb": R.at_least(0, 10**6), "min_size": R.count(1),
        "prefetch": R.count(1, 1024), "heartbeat_timeout_s": R.POSITIVE_SECONDS, "rollout_timeout_s": R.POSITIVE_SECONDS,
        "snapshot_every_s": R.SECONDS, "keep_snapshots": R.count(1, 1000), "max_actors": R.count(1, 65_536),
        "max_pending_samples": R.count(1, 1_000_000), "max_batch_size": R.count(1, 2**31),
        "rows_max_mb": R.Range(1, 400)}

    capacity: int = 1_000_000  # transitions
    capacity_gb: float = 0.0  # > 0: capacity derived from this memory budget instead
    min_size: int = 1_000  # transitions stored before the first batch is served
    prefetch: int = 4  # batch requests the learner keeps in flight
    rate_limit: RateLimitConfig = field(default_factory=RateLimitConfig)
    heartbeat_timeout_s: float = 10.0  # an actor silent this long is considered gone
    rollout_timeout_s: float = 60.0  # on-policy: after the first actor's rollout, how long to wait for the others
    snapshot_every_s: float = 300.0  # buffer snapshot to <run_dir>/replay/ this often; 0 = only on exit
    snapshot_on_exit: bool = True  # (an exit snapshot cut short by the shutdown timeout leaves the previous one)
    # Periodic snapshots are written by a forked child from a copy-on-write view of the buffer, while the service
    # keeps serving (replay/snapshot.py); false writes them in the service's loop, which stops it meanwhile.
    background_snapshots: bool = True
    keep_snapshots: int = 2
    # Bounds against misbehaving peers: registered actors, queued sample requests, batch size per request.
    max_actors: int = 256
    max_pending_samples: int = 64
    max_batch_size: int = 65_536
    # A learner with its own copy of the buffer (learner.batch_source=device) gets the new rows with each reply, at
    # most this many MB of them (it catches up over several replies after a restart; a message may hold 512 MB).
    rows_max_mb: float = 256.0


@dataclass
class LearnerConfig:
    RULES: ClassVar[dict] = {"num_threads": R.count(0, 4096), "publish_every": R.count(1), "amp": R.OneOf(("none", "bf16")),
                             "batch_source": R.OneOf(("auto", "device", "service")), "world_size": R.count(1, 1024)}

    device: str = "auto"  # "auto" picks cuda:0 when there is a GPU
    # On-policy: data-parallel ranks of the update (learner/distributed.py), one process each; on GPUs rank r runs
    # on learner.device's GPU + r (nccl), on the CPU they share the learner's threads (gloo).
    world_size: int = 1
    num_threads: int = 0  # torch CPU threads; 0 = leave one core to the other roles
    publish_every: int = 30  # learner steps between weight publications
    # torch.compile the SAC networks (in place, fixed shapes): faster updates on a GPU after a slow first minute
    # of compiling; needs a C++ compiler on a CPU-only machine.
    compile: bool = False
    amp: str = "none"  # "none" | "bf16"
    # Off-policy, where the learner's batches are sampled. "device": from a copy of the replay buffer in the
    # learner's device memory, kept current with the rows the replay service stores (about one transition per
    # update), so no batch crosses the host (the vision preset's are 50 MB each, 4 per learner step); it needs the
    # buffer's size free on the device (replay.capacity_gb). "service": the replay service samples and sends each
    # batch. "auto": device when the learner runs on a GPU; on a CPU the service's sampling runs in parallel on
    # another core, which is faster than sampling in the learner's own loop.
    batch_source: str = "auto"  # "auto" | "device" | "service"


@dataclass
class EvalConfig:
    RULES: ClassVar[dict] = {"every_updates": R.count(1), "episodes": R.count(1, 10**6), "num_envs": R.count(1, 65_536),
             "final_timeout_s": R.SECONDS}

    every_updates: int = 2_000  # evaluate the newest weights after this many learner updates
    episodes: int = 10
    num_envs: int = 5
    video: bool = False
    enabled: bool = True
    final_timeout_s: float = 300.0  # at the end of a run, how long the final evaluation may take


@dataclass
class LoggingConfig:
    RULES: ClassVar[dict] = {"wandb": R.OneOf(("offline", "online", "disabled")), "console_every_s": R.Range(0, 3600, lo_open=True)}

    wandb: str = "offline"  # "offline" | "online" | "disabled"
    project: str = "zarl"
    tensorboard: bool = True
    console_every_s: float = 5.0
    progress_bar: bool = True


@dataclass
class NetworkConfig:
    RULES: ClassVar[dict] = {"transport": R.OneOf(("auto", "tcp", "ipc"))}

    host: str = "127.0.0.1"  # address the services bind to / connect to
    # "auto": ipc:// sockets in an owner-only (0700) directory when every role runs on this machine (launch.mode
    # local or tmux, without security.curve), else TCP, authenticated with CurveZMQ unless
    # security.plain_tcp=true. The launcher writes the resolved choice into the run's config.yaml.
    transport: str = "auto"  # "auto" | "tcp" | "ipc"
    ipc_dir: str = ""  # filled by the launcher with ipc: the owner-only directory of the sockets
    # Filled by the ssh launcher: endpoints that stay on one host in a run over several (replay_learner when the
    # replay service and the learner share a host): ipc:// in <run_dir>/sockets there, not TCP with Curve.
    ipc_endpoints: list = field(default_factory=list)
    ports: dict = field(default_factory=dict)  # filled by the launcher: role endpoint -> port
    # Filled by the launcher when roles run on several hosts (from launch.placement): endpoint owner
    # (replay, learner, launcher) -> the address the other hosts connect to. Empty: everything on this host.
    hosts: dict = field(default_factory=dict)


@dataclass
class ActorHostGroup:
    """Some of the run's actors, on one host."""

    RULES: ClassVar[dict] = {"count": R.count(1, 4096)}

    host: str = ""  # a host of launch.hosts_file (ssh), a Ray node address (ray); "" = the launcher's machine
    count: int = 1
    devices: list = field(default_factory=list)  # actor j of the group uses devices[j % len]; empty = actor.device


@dataclass
class PlacementConfig:
    """Which host runs each role, and the device each actor is pinned to; one description for every launch mode."""

    replay: str = ""  # host names as in ActorHostGroup.host; "" = the launcher's machine
    learner: str = ""
    evaluator: str = ""
    actors: List[ActorHostGroup] = field(default_factory=list)  # empty: actor.num_actors here, on actor.devices
    launcher_host: str = ""  # how the other hosts reach the launcher: a host of the hosts file or an address


@dataclass
class LaunchConfig:
    RULES: ClassVar[dict] = {
        "mode": R.OneOf(("local", "tmux", "ssh", "ray")), "restart_actors": R.count(0, 10**6),
        "restart_services": R.count(0, 10**6), "restart_backoff_s": R.Range(0, 3600),
        "ray_cpus_per_role": R.Range(0, 4096, lo_open=True)}

    mode: str = "local"  # "local" | "tmux" | "ssh" | "ray"
    wait: bool = True
    restart_actors: int = 3  # how often a crashed actor is restarted
    restart_services: int = 2  # how often a crashed replay service or learner is restarted, in pipelines whose
    # services resume from their snapshot / checkpoint (the builder's services_resume: SAC)
    restart_backoff_s: float = 1.0
    placement: PlacementConfig = field(default_factory=PlacementConfig)
    hosts_file: Optional[str] = None  # ssh: YAML describing how to reach each host (see docs/launch.md)
    tmux_session: str = ""  # tmux: session name; "" = zarl-<run directory name>
    ray_address: str = ""  # ray: "" = a private Ray instance on this machine; "auto" or "HOST:PORT" = a cluster
    ray_cpus_per_role: float = 1.0  # ray: CPUs each role process reserves from Ray's scheduler


@dataclass
class SecurityConfig:
    """CurveZMQ on every socket of the run: peers authenticate with key pairs and all traffic is encrypted."""

    curve: bool = False  # the launcher turns it on for TCP unless plain_tcp (see network.transport)
    # TCP without authentication: any local process (any user of the machine) can then send the run's services
    # well-formed messages. Only when asked for, with a warning.
    plain_tcp: bool = False
    keys_dir: str = ""  # "" = <run_dir>/keys, made by the launcher for this run (python -m launch.keys DIR makes one)
    client: str = "client"  # the key pair roles' client sockets use: <keys_dir>/clients/<client>.key_secret


@dataclass
class RunConfig:
    name: str = "unnamed"
    algo: str = "sac"  # the pipeline, by its registered name (pipelines/__init__.py): "sac" | "ppo" | "grpo" | ...
    # Modules (dotted names) or .py files imported by the launcher and every role before `algo` is looked up: an
    # algorithm defined outside this package registers its pipeline there (pipelines.register).
    imports: list = field(default_factory=list)
    runner: RunnerConfig = field(default_factory=RunnerConfig)
    env: EnvConfig = field(default_factory=EnvConfig)
    eval_env: dict = field(default_factory=dict)  # overrides of env for evaluation (e.g. kwargs)
    actor: ActorConfig = field(default_factory=ActorConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)

    def __reduce__(self):
        # A run's class is made at run time (run_schema), so pickle cannot find it by name: it travels as its
        # sections and its values (the learner's rank processes receive the run's config so).
        common = {f.name for f in dataclasses.fields(RunConfig)}
        sections = tuple((f.name, f.type) for f in dataclasses.fields(self) if f.name not in common)
        return _typed_run_config, (sections, {f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def _typed_run_config(sections: tuple, values: dict) -> RunConfig:
    return run_schema(dict(sections))(**values)


class ConfigError(ValueError):
    """A configuration problem, with a message that says how to fix it."""


def available_presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def _leaf_keys(node: Any, prefix: str = "") -> list[str]:
    keys = []
    if isinstance(node, DictConfig):
        for k in node.keys():
            path = f"{prefix}{k}"
            keys.append(path)
            keys.extend(_leaf_keys(node[k], path + "."))
    return keys


def _check_key(schema: DictConfig, key: str) -> None:
    """Raise ConfigError when `key` is not in the schema, naming the closest valid key.

    Keys under a free-form dict (env.kwargs, network.ports) are accepted as they are.
    """
    node: Any = schema
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, DictConfig) and OmegaConf.get_type(node) is dict:
            return  # a free-form mapping: any key is valid below this point
        if not isinstance(node, DictConfig) or part not in node:
            valid = _leaf_keys(schema)
            close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'.{hint}")
        node = node[part]


def _check_tree(schema: DictConfig, tree: DictConfig, prefix: str = "") -> None:
    for k in tree.keys():
        path = f"{prefix}{k}"
        _check_key(schema, path)
        sub = tree[k]
        target = OmegaConf.select(schema, path)
        if isinstance(sub, DictConfig) and isinstance(target, DictConfig) and OmegaConf.get_type(target) is not dict:
            _check_tree(schema, sub, path + ".")


def parse_overrides(overrides: list[str]) -> list[str]:
    for item in overrides:
        if "=" not in item or item.startswith("="):
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. actor.num_actors=2)")
    return list(overrides)


Sections = Mapping[str, type]  # config section name -> its dataclass
# What the caller adds to the schema, from the run's `algo` and `imports` (launch/run_config.py asks the pipeline).
SectionsFor = Callable[[str, List[str]], Sections]
_schemas: dict[tuple, type] = {}


def run_schema(sections: Sections) -> type:
    """RunConfig with `sections` added as fields: one dataclass, so OmegaConf.to_object gives the whole run typed."""
    if not sections:
        return RunConfig
    key = tuple(sections.items())
    if key not in _schemas:
        taken = {f.name for f in dataclasses.fields(RunConfig)} & set(sections)
        if taken:
            raise ConfigError(f"config sections {sorted(taken)} are already part of every run's config")
        fields = [(name, cls, field(default_factory=cls)) for name, cls in sections.items()]
        _schemas[key] = dataclasses.make_dataclass("RunConfig", fields, bases=(RunConfig,))
    return _schemas[key]


def _head(tree: DictConfig, overrides: list[str]) -> tuple[str, list[str]]:
    """`algo` and `imports` as the schema default, the preset and the overrides set them (before the schema)."""
    head = OmegaConf.structured(RunConfig)
    picked = [item for item in overrides if item.split("=", 1)[0] in ("algo", "imports")]
    try:
        head = OmegaConf.merge(head, {k: tree[k] for k in ("algo", "imports") if k in tree},
                               OmegaConf.from_dotlist(picked))
    except Exception as e:
        raise ConfigError(f"invalid config value: {e}") from None
    return str(head.algo), [str(m) for m in head.imports]


def load_config(preset: str | os.PathLike, overrides: list[str] | None = None,
                sections: SectionsFor | None = None) -> DictConfig:
    """Schema defaults <- preset YAML <- command-line overrides, validated at each step.

    `sections(algo, imports)` names the config sections the run's pipeline adds (none without it).
    """
    overrides = parse_overrides(list(overrides or []))
    path = Path(preset)
    if not path.suffix:
        path = CONFIG_DIR / f"{preset}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(str(preset), available_presets(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(f"no config preset '{preset}' (looked for {path}).{hint} Available: {', '.join(available_presets())}")
    preset_tree = OmegaConf.load(path)
    if not isinstance(preset_tree, DictConfig):
        raise ConfigError(f"{path} must hold a mapping at the top level")
    schema = OmegaConf.structured(run_schema(sections(*_head(preset_tree, overrides)) if sections else {}))
    _check_tree(schema, preset_tree)
    for item in overrides:
        _check_key(schema, item.split("=", 1)[0])
    try:
        cfg = OmegaConf.merge(schema, preset_tree, OmegaConf.from_dotlist(overrides))
    except Exception as e:  # type errors such as actor.num_actors=abc
        raise ConfigError(_type_error(e, schema, overrides)) from None
    if cfg.name == "unnamed":
        cfg.name = path.stem
    check_rules(cfg)
    validate(cfg)
    return cfg


def _type_error(e: Exception, schema: DictConfig, overrides: list[str]) -> str:
    """One line for an OmegaConf type error: the key, the value given and what the key allows."""
    key = str(getattr(e, "full_key", "") or "")
    given = {k: v for k, _, v in (item.partition("=") for item in overrides)}
    value = given.get(key, getattr(e, "value", None))
    rule = rule_for(schema, key) if key else None
    node = OmegaConf.select(schema, key, default=None) if key else None
    allowed = rule.describe() if rule is not None else {
        bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(type(node), "")
    if not key:
        return "invalid config value: " + " ".join(str(e).split())  # no key to name: the message, on one line
    return f"invalid config value: {key}={'' if value is None else value}: must be {allowed or 'of the schema type'}"


def rule_for(cfg: DictConfig, key: str):
    """The rule (core/rules.py) of a dotted key, from the RULES of the dataclass that declares it; None: no rule."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None) if parent_key else cfg
    if not isinstance(parent, DictConfig):
        return None
    cls = OmegaConf.get_type(parent)
    return getattr(cls, "RULES", {}).get(leaf) if dataclasses.is_dataclass(cls) else None


def _show(value: Any) -> str:
    if isinstance(value, (DictConfig, ListConfig)):
        value = OmegaConf.to_container(value)
    return "null" if value is None else str(value)


def check_rules(node: Any, prefix: str = "") -> None:
    """Every key with a rule (each section dataclass's RULES) holds an allowed value, else one line:
    `key=value: must be ...`."""
    if isinstance(node, ListConfig):
        for i, item in enumerate(node):
            check_rules(item, f"{prefix}[{i}]")
        return
    if not isinstance(node, DictConfig):
        return
    cls = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(cls):
        return
    table = getattr(cls, "RULES", {})
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        value = node[f.name]
        rule = table.get(f.name)
        if rule is not None:
            plain = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
            problem = rule.problem(plain)
            if problem:
                raise ConfigError(f"{key}={_show(value)}: must be {problem}")
        check_rules(value, key)


def require(cond: bool, msg: str) -> None:
    """A config check: ConfigError(msg) unless `cond` (for validate() here and the pipelines' own checks)."""
    if not cond:
        raise ConfigError(msg)


def validate(cfg: DictConfig) -> None:
    """Checks across keys, after every key passed its own rule (check_rules); the pipeline's sections are
    checked by its builder."""
    require(cfg.env.num_envs % cfg.actor.pipeline_stages == 0,
            f"env.num_envs={cfg.env.num_envs} does not split into actor.pipeline_stages={cfg.actor.pipeline_stages} "
            "equal env groups")
    if cfg.replay.capacity_gb <= 0:  # (a budget in GB: the capacity follows from the spec, checked at registration)
        require(cfg.replay.capacity >= cfg.replay.min_size,
                f"replay.capacity={cfg.replay.capacity}: must be >= replay.min_size={cfg.replay.min_size} (the buffer "
                "must hold what it waits for before the first batch)")
    require(cfg.replay.max_pending_samples >= cfg.replay.prefetch,
            f"replay.max_pending_samples={cfg.replay.max_pending_samples}: must be >= replay.prefetch="
            f"{cfg.replay.prefetch} (the learner's requests in flight)")
    require(cfg.actor.heartbeat_s < cfg.replay.heartbeat_timeout_s,
            f"actor.heartbeat_s={cfg.actor.heartbeat_s}: must be < replay.heartbeat_timeout_s="
            f"{cfg.replay.heartbeat_timeout_s} (else every actor is dropped as silent)")
    require(cfg.launch.mode != "ssh" or bool(cfg.launch.hosts_file),
            "launch.mode=ssh needs launch.hosts_file=PATH (a YAML file saying how to reach each host)")
    if cfg.network.transport == "ipc":
        require(not cfg.network.hosts, "network.transport=ipc: must be tcp or auto when roles run on several hosts")


def save_config(cfg: DictConfig, path: str | os.PathLike) -> None:
    Path(path).write_text(OmegaConf.to_yaml(cfg))


def read_run_config(run_dir: str | os.PathLike, sections: SectionsFor | None = None) -> DictConfig:
    """The resolved config a launcher wrote into the run directory (what every role reads)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist: start roles through launch/, which writes it")
    tree = OmegaConf.load(path)
    schema = run_schema(sections(*_head(tree, [])) if sections else {})
    return OmegaConf.merge(OmegaConf.structured(schema), tree)
