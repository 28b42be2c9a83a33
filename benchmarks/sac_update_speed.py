"""SAC learner-step speed in a bare loop (no processes, no sockets), for a config's networks.

    python benchmarks/sac_update_speed.py frankasim_sac_cnn [--seconds 3] [--rounds 2] [--json] [--out F.json]
                                          [--phases eager compiled reduce-overhead] [key=value ...]

Builds the config's agent on the learner device and feeds it random batches of the right shapes already on
the device. Two things are measured, in alternating rounds within one run:

* the ratio the issue asks for: the shipped learner step (``learner.sac.SAC.update``, what the learner
  process runs: NaN/Inf skip on the device, gradient norms, every metric copied to the host once per step)
  against the bare PyTorch step of the same update (`BareStep` below: the same networks, losses, optimisers
  and target averaging written plainly, with no check, no metric and no host sync), eager and compiled
  (``learner.compile``'s per-network torch.compile);
* the GPU levers of the shipped step: TF32 matmuls (``sac.tf32_matmul``), the whole step as one CUDA
  graph (``sac.cuda_graph``), and torch.compile(mode="reduce-overhead") (CUDA graphs per network).

A CUDA-graphed step is checked against the same step run eagerly before it is timed: from the same weights
and random-number state, a few steps of each, and the difference of the trained weights relative to how far
the steps moved them (`graph_check`). On a CPU only the eager pair runs (a smoke test).
The last line (with --json) is one JSON object; ``pipeline_overrides`` there is the fastest checked
combination for a whole run, counting the compile time as paid once at the start of a run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from core.devices import learner_cpu_threads, resolve_device  # noqa: E402
from envs import make_vector_env  # noqa: E402
from launch.run_config import load_config  # noqa: E402
from learner.augment import random_shift  # noqa: E402
from learner.configs import SACConfig  # noqa: E402
from learner.device_replay import resolved_batch_source  # noqa: E402
from learner.sac import SAC, concat_batches, split_batches  # noqa: E402
from policies.sac_agent import SACAgent  # noqa: E402

# Critic updates one run of the preset needed to first reach 0.8 success (22.5k and 28.7k env steps at one
# update per env step, 2026-12-01 on an H200): used only to weigh compile time against speed when choosing
# `pipeline_overrides`.
UPDATES_TO_SOLVE = 22_000


def stored_map_shapes(cfg, agent: SACAgent, device: torch.device) -> dict | None:
    """The encoder's per-camera map shapes where the learner process would sample batches of stored feature maps
    (sac.stored_features with the learner's copy of the buffer, learner/device_replay.py), else None."""
    stored = cfg.sac.stored_features and resolved_batch_source(cfg.learner.batch_source, device) == "device"
    return dict(agent.encoder.map_shapes) if stored else None


def random_batch(space, action_dim: int, batch_size: int, device: torch.device, map_shapes: dict | None = None) -> dict:
    """A batch as the learner gets it; with `map_shapes`, as the learner's copy serves it with stored maps."""
    def sample_obs():
        if hasattr(space, "spaces"):
            return {k: (torch.randint(0, 256, (batch_size, *s.shape), dtype=torch.uint8, device=device)
                        if s.dtype == np.uint8 else torch.randn(batch_size, *s.shape, device=device))
                    for k, s in space.spaces.items()}
        return torch.randn(batch_size, *space.shape, device=device)

    batch = {"obs": sample_obs(), "next_obs": sample_obs(),
             "action": torch.rand(batch_size, action_dim, device=device) * 2 - 1,
             "reward": torch.randn(batch_size, device=device),
             "terminated": torch.zeros(batch_size, dtype=torch.bool, device=device)}
    if map_shapes:
        for key in ("obs_maps", "next_obs_maps"):
            batch[key] = {cam: torch.randn(batch_size, *shape, device=device) for cam, shape in map_shapes.items()}
    return batch


def make_agent(cfg, seed: int = 0, compile_mode: str | None = "config"):
    """(agent, sac_cfg, action_dim, space, device): the learner process's agent for `cfg`, compiled as
    learner.compile says ("config"), not at all (None) or with that torch.compile mode."""
    device = torch.device(resolve_device(cfg.learner.device))
    if device.type == "cpu":
        torch.set_num_threads(learner_cpu_threads(cfg.learner.num_threads))
    env = make_vector_env(cfg.env, num_envs=1)
    space, action_dim = env.single_observation_space, int(np.prod(env.single_action_space.shape))
    env.close()
    sac_cfg, policy_cfg = OmegaConf.to_object(cfg.sac), OmegaConf.to_object(cfg.policy)
    agent = SACAgent(space, action_dim, policy_cfg, sac_cfg.num_q, seed=seed).to(device)
    if compile_mode == "config":
        if cfg.learner.compile:  # as the learner process does
            agent.compile_networks()
    elif compile_mode is not None:
        agent.compile_networks(mode=None if compile_mode == "default" else compile_mode)
    return agent, sac_cfg, action_dim, space, device


def build_update(cfg, amp: str, seed: int = 0) -> tuple[SAC, list[dict], torch.device]:
    """The learner process's SAC update for `cfg` (agent, config, device, CPU threads, compile), with random
    batches already on the device, warmed up; returns (sac, batches, device)."""
    agent, sac_cfg, action_dim, space, device = make_agent(cfg, seed)
    sac = SAC(agent, action_dim, sac_cfg, device, amp=amp)
    maps = stored_map_shapes(cfg, agent, device)
    batches = [random_batch(space, action_dim, sac_cfg.batch_size, device, maps) for _ in range(sac_cfg.critic_actor_ratio)]
    for _ in range(5):  # a CUDA-graphed update captures at its 4th step
        sac.update(batches)
    return sac, batches, device


class BareStep:
    """The shipped learner step's computation written as plain PyTorch, for the same agent.

    Same augmentation, one frozen-backbone pass over all images (none with stored maps in the batches,
    sac.stored_features), critic updates on each batch (random
    subset of target heads, min, bootstrap on termination only), actor and temperature updates, Polyak
    averaging; fused Adam. Left out: the NaN/Inf check and skip, gradient norms, metrics, the host sync.
    """

    def __init__(self, agent: SACAgent, action_dim: int, cfg: SACConfig, device: torch.device):
        self.agent, self.cfg, self.device = agent, cfg, device
        self.target_entropy = -float(action_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.raw_alpha = torch.tensor(float(torch.log(torch.expm1(torch.tensor(cfg.init_temperature)))),
                                      device=device, requires_grad=True)
        trainable_encoder = [p for p in agent.encoder.parameters() if p.requires_grad]
        self.critic_opt = torch.optim.Adam(list(agent.critic.parameters()) + trainable_encoder, lr=cfg.critic_lr,
                                           fused=True)
        self.actor_opt = torch.optim.Adam(agent.actor.parameters(), lr=cfg.actor_lr, fused=True)
        self.alpha_opt = torch.optim.Adam([self.raw_alpha], lr=cfg.temperature_lr, fused=True)
        self.online = [p for p in list(agent.critic.parameters()) + list(agent.encoder.parameters()) if p.requires_grad]
        self.target = [t for p, t in zip(list(agent.critic.parameters()) + list(agent.encoder.parameters()),
                                         list(agent.target_critic.parameters()) + list(agent.target_encoder.parameters()))
                       if p.requires_grad]

    def shift(self, obs):
        if not isinstance(obs, dict) or self.cfg.augment_pad <= 0:
            return obs
        return {k: random_shift(v, pad=self.cfg.augment_pad) if v.dtype == torch.uint8 and v.dim() == 4 else v
                for k, v in obs.items()}

    def __call__(self, batches: list[dict]) -> None:
        cfg, agent = self.cfg, self.agent
        if "obs_maps" in batches[0]:  # stored maps: no augmentation or backbone pass in the step
            observations = [b["obs"] for b in batches] + [b["next_obs"] for b in batches]
            features = [b["obs_maps"] for b in batches] + [b["next_obs_maps"] for b in batches]
        else:
            observations = [self.shift(b["obs"]) for b in batches] + [self.shift(b["next_obs"]) for b in batches]
            features = split_batches(agent.encoder.precompute(concat_batches(observations)), len(observations))
        alpha = F.softplus(self.raw_alpha)
        for i, batch in enumerate(batches):
            obs, next_obs = observations[i], observations[len(batches) + i]
            pre, next_pre = features[i], features[len(batches) + i]
            with torch.no_grad():
                next_action, next_logp = agent.actor(agent.encoder(next_obs, next_pre))
                subset = torch.rand(cfg.num_q, device=self.device).argsort()[: cfg.num_min_q]
                next_q = agent.target_critic(agent.target_encoder(next_obs, next_pre), next_action)[subset].min(0).values
                if cfg.backup_entropy:
                    next_q = next_q - alpha * next_logp
                target = batch["reward"] + cfg.gamma * (1.0 - batch["terminated"].float()) * next_q
            q = agent.critic(agent.encoder(obs, pre), batch["action"])
            loss = F.mse_loss(q, target.expand_as(q), reduction="none").mean(1).sum()
            self.critic_opt.zero_grad(set_to_none=True)
            loss.backward()
            self.critic_opt.step()
        feats = agent.encoder(obs, pre).detach()
        action, logp = agent.actor(feats)
        q_pi = agent.critic(feats, action)
        q_pi = q_pi.mean(0) if cfg.actor_q == "mean" else q_pi.min(0).values
        actor_loss = (alpha.detach() * logp - q_pi).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        alpha_loss = (F.softplus(self.raw_alpha) * (-logp.detach() - self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target, self.online, cfg.tau)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def steps_per_s(fn, batch_sets: list, device: torch.device, seconds: float) -> float:
    _sync(device)
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(batch_sets[steps % len(batch_sets)])
        steps += 1
    _sync(device)
    return steps / (time.perf_counter() - t0)


def trained_params(agent: SACAgent) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in agent.parameters() if p.requires_grad])


def graph_check(agent: SACAgent, reference: SAC, graphed: SAC, batch_sets: list, steps: int = 7) -> float:
    """||w_graph - w_eager|| / ||w_eager - w_0|| after `steps` learner steps of each from the same weights and
    random-number state (the graphed one warms up, captures and replays within them): ~0 when they agree."""
    device = agent.critic.layers[0].weight.device
    start = {k: v.clone() for k, v in agent.state_dict().items()}
    rng = torch.cuda.get_rng_state(device)
    w0 = trained_params(agent)
    for i in range(steps):
        reference.update(batch_sets[i % len(batch_sets)])
    w_ref = trained_params(agent)
    agent.load_state_dict(start)
    torch.cuda.set_rng_state(rng, device)
    for i in range(steps):
        graphed.update(batch_sets[i % len(batch_sets)])
    w_graph = trained_params(agent)
    return float((w_graph - w_ref).norm() / (w_ref - w0).norm().clamp_min(1e-30))


def set_tf32(on: bool) -> None:
    torch.set_float32_matmul_precision("high" if on else "highest")


class Bench:
    def __init__(self, cfg, seconds: float, rounds: int, deadline: float, save=lambda rows: None):
        self.cfg, self.seconds, self.rounds, self.deadline = cfg, seconds, rounds, deadline
        self.rows: list[dict] = []
        self.save = save  # called with the rows after each one, so a run stopped from outside keeps its figures

    def time_left(self) -> float:
        return self.deadline - time.time()

    def measure(self, label: dict, sides: dict, batch_sets: list, device: torch.device, ratio: int) -> dict:
        """Alternating rounds of each side; critic updates/s, median over rounds; `shipped/bare` per round."""
        per_side: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(self.rounds):
            for name, fn in sides.items():
                per_side[name].append(steps_per_s(fn, batch_sets, device, self.seconds) * ratio)
        row = {**label, **{f"{k}_updates_per_s": statistics.median(v) for k, v in per_side.items()},
               "rounds": per_side}
        if "shipped" in per_side and "bare" in per_side:
            row["ratio_shipped_vs_bare"] = statistics.median(s / b for s, b in zip(per_side["shipped"], per_side["bare"]))
        self.rows.append(row)
        self.save(self.rows)
        print(json.dumps({k: v for k, v in row.items() if k != "rounds"}), flush=True)
        return row

    def phase(self, compile_mode: str | None) -> None:
        """Eager (None) or compiled agent: shipped vs bare, then TF32 and whole-step CUDA graph levers."""
        cfg = self.cfg
        name = {None: "eager", "default": "compiled"}.get(compile_mode, compile_mode)
        set_tf32(False)
        t0 = time.time()
        agent, sac_cfg, action_dim, space, device = make_agent(cfg, cfg.runner.seed, compile_mode)
        maps = stored_map_shapes(cfg, agent, device)
        batch_sets = [[random_batch(space, action_dim, sac_cfg.batch_size, device, maps)
                       for _ in range(sac_cfg.critic_actor_ratio)] for _ in range(2)]
        ratio = sac_cfg.critic_actor_ratio
        gpu = device.type == "cuda"
        tf32_values = (False, True) if gpu else (False,)
        for tf32 in tf32_values:
            if self.time_left() < 30:
                print(f"# {name}: deadline reached, tf32={tf32} left out", flush=True)
                return
            set_tf32(tf32)
            plain_cfg = SACConfig(**{**sac_cfg.__dict__, "cuda_graph": False, "tf32_matmul": tf32})
            shipped = SAC(agent, action_dim, plain_cfg, device, amp=cfg.learner.amp)
            bare = BareStep(agent, action_dim, plain_cfg, device)
            t1 = time.time()
            for _ in range(3):  # compiles on the first calls (and again where a TF32 switch invalidates kernels)
                shipped.update(batch_sets[0])
                bare(batch_sets[0])
            _sync(device)
            warm = time.time() - t1
            label = {"phase": name, "compile": compile_mode, "tf32_matmul": tf32, "cuda_graph": False,
                     "warmup_s": round(warm + (t1 - t0 if tf32 is False else 0.0), 1)}
            self.measure(label, {"shipped": shipped.update, "bare": bare}, batch_sets, device, ratio)
            del bare
            if not gpu:
                continue
            if compile_mode == "reduce-overhead":
                continue  # CUDA graphs already (per network); a manual capture around them is not tried
            graph_cfg = SACConfig(**{**plain_cfg.__dict__, "cuda_graph": True})
            try:
                graphed = SAC(agent, action_dim, graph_cfg, device, amp=cfg.learner.amp)
                check = graph_check(agent, SAC(agent, action_dim, plain_cfg, device, amp=cfg.learner.amp),
                                    graphed, batch_sets)
                label = {"phase": name, "compile": compile_mode, "tf32_matmul": tf32, "cuda_graph": True,
                         "graph_check": check, "graph_ok": check < 1e-2}
                self.measure(label, {"shipped": graphed.update}, batch_sets, device, ratio)
                del graphed
            except Exception as e:  # record and go on: the other variants still get measured
                self.rows.append({"phase": name, "compile": compile_mode, "tf32_matmul": tf32, "cuda_graph": True,
                                  "error": f"{type(e).__name__}: {e}"[:2000]})
                self.save(self.rows)
                print(f"# {name} tf32={tf32} cuda_graph: {type(e).__name__}: {e}"[:2000], flush=True)
            del shipped
            torch.cuda.empty_cache()

    def reduce_overhead(self) -> None:
        """torch.compile(mode="reduce-overhead") networks with TF32 matmuls, shipped step."""
        cfg = self.cfg
        set_tf32(True)
        t0 = time.time()
        try:
            agent, sac_cfg, action_dim, space, device = make_agent(cfg, cfg.runner.seed, "reduce-overhead")
            maps = stored_map_shapes(cfg, agent, device)
            batch_sets = [[random_batch(space, action_dim, sac_cfg.batch_size, device, maps)
                           for _ in range(sac_cfg.critic_actor_ratio)] for _ in range(2)]
            sac = SAC(agent, action_dim, SACConfig(**{**sac_cfg.__dict__, "cuda_graph": False, "tf32_matmul": True}),
                      device, amp=cfg.learner.amp)

            def step(batches):
                torch.compiler.cudagraph_mark_step_begin()
                return sac.update(batches)
            for _ in range(4):
                step(batch_sets[0])
            _sync(device)
            label = {"phase": "reduce-overhead", "compile": "reduce-overhead", "tf32_matmul": True,
                     "cuda_graph": False, "warmup_s": round(time.time() - t0, 1)}
            self.measure(label, {"shipped": step}, batch_sets, device, sac_cfg.critic_actor_ratio)
        except Exception as e:
            self.rows.append({"phase": "reduce-overhead", "error": f"{type(e).__name__}: {e}"[:2000]})
            self.save(self.rows)
            print(f"# reduce-overhead: {type(e).__name__}: {e}"[:2000], flush=True)


def choose_pipeline(rows: list[dict]) -> dict:
    """The checked combination with the shortest (compile time + UPDATES_TO_SOLVE / critic updates/s)."""
    best = None
    compile_s = {r["phase"]: r.get("warmup_s", 0.0) for r in rows if not r.get("tf32_matmul") and not r.get("cuda_graph")
                 and "warmup_s" in r}
    for r in rows:
        if "shipped_updates_per_s" not in r or r.get("phase") not in ("eager", "compiled"):
            continue
        if r.get("cuda_graph") and not r.get("graph_ok"):
            continue
        cost = compile_s.get(r["phase"], 0.0) + UPDATES_TO_SOLVE / r["shipped_updates_per_s"]
        if best is None or cost < best[0]:
            best = (cost, r)
    if best is None:
        return {}
    r = best[1]
    overrides = [f"learner.compile={'true' if r['phase'] == 'compiled' else 'false'}",
                 f"sac.tf32_matmul={'true' if r['tf32_matmul'] else 'false'}",
                 f"sac.cuda_graph={'true' if r['cuda_graph'] else 'false'}"]
    return {"estimated_s": round(best[0], 1), "updates_per_s": r["shipped_updates_per_s"], "overrides": overrides}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--seconds", type=float, default=3.0, help="per round and side")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--phases", nargs="+", default=["eager", "compiled", "reduce-overhead"])
    parser.add_argument("--max-s", type=float, default=1e9, help="stop starting new measurements after this")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", default="")
    args, overrides = parser.parse_known_args()
    cfg = load_config(args.config, overrides)
    torch.manual_seed(cfg.runner.seed)
    gpu = torch.cuda.is_available() and str(cfg.learner.device) != "cpu"
    device_name = torch.cuda.get_device_name(0) if gpu else "cpu"
    head = {"config": args.config, "overrides": overrides, "device": device_name, "torch": torch.__version__,
            "batch_size": cfg.sac.batch_size, "critic_actor_ratio": cfg.sac.critic_actor_ratio,
            "seconds_per_round": args.seconds, "rounds": args.rounds}

    def save(rows: list[dict]) -> None:
        if args.out:
            Path(args.out).write_text(json.dumps({**head, "results": rows, "pipeline_overrides": choose_pipeline(rows)},
                                                 indent=1))
    bench = Bench(cfg, args.seconds, args.rounds, time.time() + args.max_s, save)
    for phase in args.phases:
        if bench.time_left() < 60:
            print(f"# deadline: phase {phase} left out", flush=True)
            continue
        if phase == "eager":
            bench.phase(None)
        elif phase == "compiled" and gpu:
            bench.phase("default")
        elif phase == "reduce-overhead" and gpu:
            bench.reduce_overhead()
    print(f"\n{device_name}: critic updates/s (batch {cfg.sac.batch_size}, {cfg.sac.critic_actor_ratio} per learner step)")
    print(f"{'phase':<16s} {'tf32':>5s} {'graph':>5s} {'shipped':>8s} {'bare':>8s} {'ratio':>6s}  note")
    for r in bench.rows:
        if "error" in r:
            print(f"{r['phase']:<16s} {str(r.get('tf32_matmul', '')):>5s} {str(r.get('cuda_graph', '')):>5s} "
                  f"error: {r['error'][:80]}")
            continue
        note = f"check {r['graph_check']:.1e}" if "graph_check" in r else f"warm-up {r.get('warmup_s', 0):.0f} s"
        bare = f"{r['bare_updates_per_s']:8.1f}" if "bare_updates_per_s" in r else f"{'-':>8s}"
        ratio = f"{r['ratio_shipped_vs_bare']:6.3f}" if "ratio_shipped_vs_bare" in r else f"{'-':>6s}"
        print(f"{r['phase']:<16s} {str(r['tf32_matmul']):>5s} {str(r['cuda_graph']):>5s} "
              f"{r['shipped_updates_per_s']:8.1f} {bare} {ratio}  {note}")
    result = {**head, "results": bench.rows, "pipeline_overrides": choose_pipeline(bench.rows)}
    save(bench.rows)
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
