"""OpenVLA's action tokenizer: continuous actions <-> the last 256 ids of the language model's vocabulary.

The convention (it must match bit for bit, or a published checkpoint's tokens mean other actions):

* ``bins = linspace(-1, 1, n_bins)`` with ``n_bins = 256``: 256 edges, hence 255 bins and 255 bin
  centres ``(bins[i] + bins[i + 1]) / 2``.
* encode: ``token = vocab_size - digitize(clip(a, -1, 1), bins)``. ``np.digitize`` returns 1..256
  (256 only for a == 1 exactly, the right edge), so tokens lie in ``[vocab_size - 256, vocab_size - 1]``:
  the last 256 ids of the text vocabulary (``vocab_size`` is the tokenizer's, 32000 for Llama 2,
  not the padded embedding size). Rare text tokens are reused as action tokens.
* decode: ``index = clip(vocab_size - token - 1, 0, n_bins - 2)``, ``a = centres[index]``. The clip
  makes every id decodable: ``vocab_size - 256`` (from a == 1) falls into the top bin, and an id
  outside the action range decodes to the nearest end bin instead of indexing out of the table.
* un-normalisation, per dimension, from the data set's 1st/99th percentiles:
  ``0.5 (a + 1)(q99 - q01) + q01`` where the mask is true; dims whose mask is false (the gripper in
  OpenVLA's statistics) keep the normalised value.

Encoding clips at both ends, so an action outside [-1, 1] becomes the end bin's token.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

N_BINS = 256


@dataclass(frozen=True)
class ActionStats:
    """One data set's action statistics (the ``action`` entry of OpenVLA's ``norm_stats``)."""

    q01: np.ndarray
    q99: np.ndarray
    mask: np.ndarray  # true: un-normalise this dim; false: leave it as the policy gave it

    def __post_init__(self):
        q01, q99 = np.asarray(self.q01, np.float64), np.asarray(self.q99, np.float64)
        mask = np.asarray(self.mask, bool)
        if q01.ndim != 1 or q01.shape != q99.shape or q01.shape != mask.shape:
            raise ValueError(f"action statistics need 1-D q01, q99 and mask of one length, got shapes "
                             f"{q01.shape}, {q99.shape}, {mask.shape}")
        if not (np.isfinite(q01).all() and np.isfinite(q99).all()):
            raise ValueError("action statistics q01/q99 must be finite")
        if (q99 < q01).any():
            raise ValueError(f"action statistics have q99 < q01 in dims {np.nonzero(q99 < q01)[0].tolist()}")
        object.__setattr__(self, "q01", q01)
        object.__setattr__(self, "q99", q99)
        object.__setattr__(self, "mask", mask)

    @classmethod
    def from_norm_stats(cls, norm_stats: Mapping, dataset: str | None = None) -> ActionStats:
        """From OpenVLA's ``norm_stats`` / ``dataset_statistics.json``: {dataset: {"action": {"q01", "q99", "mask"}}}.

        ``dataset`` may be omitted when the statistics hold exactly one data set. A missing mask means all dims.
        """
        if dataset is None:
            if len(norm_stats) != 1:
                raise ValueError(f"the statistics hold {len(norm_stats)} data sets ({', '.join(norm_stats)}): "
                                 "name the one to un-normalise with")
            dataset = next(iter(norm_stats))
        if dataset not in norm_stats:
            raise KeyError(f"no statistics for data set {dataset!r}; they have {', '.join(norm_stats)}")
        action = norm_stats[dataset].get("action")
        if action is None or "q01" not in action or "q99" not in action:
            raise ValueError(f"the statistics of {dataset!r} have no action q01/q99")
        q01 = np.asarray(action["q01"], np.float64)
        return cls(q01=q01, q99=np.asarray(action["q99"]), mask=np.asarray(action.get("mask", np.ones_like(q01, bool))))

    @classmethod
    def from_actions(cls, actions: np.ndarray, mask: np.ndarray | None = None) -> ActionStats:
        """A data set's statistics from its actions [N, dims]: per-dim 1st/99th percentiles (OpenVLA's
        ``q01``/``q99``); ``mask`` defaults to every dim but the last (OpenVLA leaves the gripper as it is)."""
        actions = np.asarray(actions, np.float64)
        if actions.ndim != 2 or len(actions) == 0:
            raise ValueError(f"action statistics need actions [N >= 1, dims], got shape {actions.shape}")
        if mask is None:
            mask = np.arange(actions.shape[1]) < actions.shape[1] - 1
        return cls(q01=np.quantile(actions, 0.01, axis=0), q99=np.quantile(actions, 0.99, axis=0), mask=mask)

    def to_norm_stats(self, dataset: str) -> dict:
        """OpenVLA's ``norm_stats`` layout ({dataset: {"action": {"q01", "q99", "mask"}}}), JSON-ready."""
        return {dataset: {"action": {"q01": self.q01.tolist(), "q99": self.q99.tolist(), "mask": self.mask.tolist()}}}

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """The data set's actions [..., dims] -> [-1, 1] (OpenVLA's training-time normalisation, clipped), the
        inverse of ``unnormalize`` inside [q01, q99]; dims with mask false stay as they are."""
        actions = np.asarray(actions, np.float64)
        if actions.shape[-1] != len(self.q01):
            raise ValueError(f"actions have {actions.shape[-1]} dims, the statistics {len(self.q01)}")
        # OpenVLA's 1e-8: a dim constant in the data (q99 == q01) maps to -1 instead of dividing by zero
        scaled = np.clip(2.0 * (actions - self.q01) / (self.q99 - self.q01 + 1e-8) - 1.0, -1.0, 1.0)
        return np.where(self.mask, scaled, actions)

    def unnormalize(self, normalized: np.ndarray) -> np.ndarray:
        """[..., dims] in [-1, 1] -> the data set's action units."""
        normalized = np.asarray(normalized, np.float64)
        if normalized.shape[-1] != len(self.q01):
            raise ValueError(f"actions have {normalized.shape[-1]} dims, the statistics {len(self.q01)}")
        scaled = 0.5 * (normalized + 1.0) * (self.q99 - self.q01) + self.q01
        return np.where(self.mask, scaled, normalized)


class ActionTokenizer:
    """Encode normalised actions to token ids and decode them back, OpenVLA's convention (module docstring)."""

    def __init__(self, vocab_size: int, n_bins: int = N_BINS):
        if n_bins < 2 or vocab_size < n_bins:
            raise ValueError(f"an action tokenizer needs 2 <= n_bins <= vocab_size, got n_bins {n_bins}, "
                             f"vocab_size {vocab_size}")
        self.vocab_size, self.n_bins = int(vocab_size), int(n_bins)
        self.bins = np.linspace(-1.0, 1.0, self.n_bins)
        self.bin_centers = (self.bins[:-1] + self.bins[1:]) / 2.0

    @property
    def first_action_id(self) -> int:
        """The lowest action token id; the action ids are first_action_id .. vocab_size - 1."""
        return self.vocab_size - self.n_bins

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """Normalised actions (any shape) -> int64 token ids of the same shape; values outside [-1, 1] clipped."""
        actions = np.asarray(actions, np.float64)
        if not np.isfinite(actions).all():
            raise ValueError("actions to tokenize must be finite (NaN or inf found)")
        return (self.vocab_size - np.digitize(np.clip(actions, -1.0, 1.0), self.bins)).astype(np.int64)

    def decode(self, token_ids: np.ndarray) -> np.ndarray:
        """Token ids -> normalised actions (bin centres); ids outside the action range map to the nearest end bin."""
        index = np.clip(self.vocab_size - np.asarray(token_ids, np.int64) - 1, 0, self.n_bins - 2)
        return self.bin_centers[index]
