"""Keeps the learner's updates and the actors' env steps at a fixed ratio.

Without it, the number of updates per env step depends on how fast this
machine's learner is relative to its actors, and so do the results. With it,
a slow learner makes the actors wait (their credits are withheld), and a fast
learner waits for data, whatever the hardware.

debt = (inserted - min_size) * updates_per_step - updates
  - actors may insert while debt <= slack_steps * updates_per_step
  - the learner may update while debt > 0 (it never trains ahead of the data)
Both can never be blocked at once, so the system cannot deadlock.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class RateLimiter:
    updates_per_step: float
    min_size: int
    slack_steps: int
    inserted: int = 0  # env steps (transitions) accepted
    updates: int = 0  # learner updates served (one batch = one critic update)

    @property
    def enabled(self) -> bool:
        return self.updates_per_step > 0

    def debt(self) -> float:
        return (self.inserted - self.min_size) * self.updates_per_step - self.updates

    def can_insert(self) -> bool:
        if not self.enabled or self.inserted < self.min_size:
            return True
        return self.debt() <= self.slack_steps * self.updates_per_step

    def can_sample(self) -> bool:
        if self.inserted < self.min_size:
            return False
        return not self.enabled or self.debt() > 0

    def state(self) -> dict:
        return {"inserted": self.inserted, "updates": self.updates}
