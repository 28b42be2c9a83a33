"""Alarms for a dead learning signal: cheap checks on every update's metrics, warned in the console and counted
in the metrics, so that a run that cannot learn says so in minutes instead of hours.

RLinf's users report runs that trained for hours with no signal (one lost 8 hours): the PPO ratio stayed
exactly 1 (the behaviour log-probs were recomputed by the learner, or nothing reached the optimiser), every
advantage was 0 (all GRPO groups uniform; rewards all 0 with a critic at 0), or no episode ever succeeded.
Each condition counts the updates in a row where it held; after ``after`` of them its flag goes to 1 and the
console gets one warning (and one more when it clears). The metrics hold the counts and the flags:

    alarm/ratio_one_updates, alarm/ratio_one          the ratio was exactly 1 in every minibatch after the
                                                      update's first (an update of one gradient step has
                                                      ratio 1 by construction: neither counted nor reset)
    alarm/zero_advantage_updates, alarm/zero_advantage  every advantage trained on was exactly 0
    alarm/no_success_rollouts, alarm/no_success       no episode of the rollout succeeded (a rollout where no
                                                      episode ended neither counts nor resets)
"""
from __future__ import annotations

import logging

CONDITIONS = {
    "ratio_one": "the PPO ratio stayed exactly 1 (behaviour log-probs recomputed, or the policy does not change)",
    "zero_advantage": "every advantage was 0 (all groups uniform, or no reward and a constant critic)",
    "no_success": "no episode succeeded",
}


class DeadSignalAlarms:
    def __init__(self, after: int, log: logging.Logger):
        if after < 1:
            raise ValueError(f"dead-signal alarms need after >= 1, got {after}")
        self.after, self.log = int(after), log
        self.streak = {name: 0 for name in CONDITIONS}
        self.raised = {name: False for name in CONDITIONS}

    def _observe(self, name: str, held: bool | None) -> None:
        if held is None:  # not measurable this update
            return
        self.streak[name] = self.streak[name] + 1 if held else 0
        raised = self.streak[name] >= self.after
        if raised and not self.raised[name]:
            unit = "rollouts" if name == "no_success" else "updates"
            self.log.warning(f"dead learning signal: {CONDITIONS[name]} for {self.streak[name]} {unit} in a row")
        elif self.raised[name] and not raised:
            self.log.info(f"dead-signal alarm cleared: {name}")
        self.raised[name] = raised

    def observe(self, metrics: dict, episodes_done: int, episodes_succeeded: int) -> dict[str, float]:
        """One update's metrics (learner/ppo.py's names) and its rollout's episode counts -> the alarm metrics."""
        dev = metrics.get("train/actor/ratio_max_dev")
        self._observe("ratio_one", None if dev is None else dev == 0.0)
        adv = metrics.get("rollout/advantages_abs_max")
        self._observe("zero_advantage", None if adv is None else adv == 0.0)
        self._observe("no_success", None if episodes_done == 0 else episodes_succeeded == 0)
        out = {}
        for name in CONDITIONS:
            unit = "rollouts" if name == "no_success" else "updates"
            out[f"alarm/{name}_{unit}"] = float(self.streak[name])
            out[f"alarm/{name}"] = float(self.raised[name])
        return out
