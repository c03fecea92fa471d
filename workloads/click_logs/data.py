"""Synthetic click logs in Criteo's layout, drawn from a known click model.

Every reference "fake" Criteo generator (MLPerf quickgen, the dlrm repo's random mode,
torchrec's RandomRecDataset) draws random labels: AUC 0.5, nothing to measure. Here the
labels come from a fixed logistic click model, so a trained DLRM has a real, stable AUC:

* 13 integer dense features, Criteo-like counts (log-normal, ~10% missing = 0, feature 1
  sometimes negative as Criteo's I2 is), preprocessed as MLPerf's DLRM v1:
  ``log(max(x, 0) + 1)``;
* 26 categorical features over small vocabularies, indices drawn from a bounded Zipf law
  (closed-form inverse CDF: fast and vectorised), hot rows at low indices;
* logit = bias + dense weights + a bump on one dense feature + per-category effects of
  14 informative features (12 are pure noise) + a rank-4 dot interaction between two
  categorical features (what DLRM's dot interaction can represent) + a dense slope that
  depends on a category; label ~ Bernoulli(sigmoid(logit)).

The click model (its parameters) is fixed by ``WORLD_SEED``; a data set is a draw from
it by its own seed (training draws and the evaluation draw use different seeds). Drawing
is a pure function of (world seed, data seed, pair count): ~0.2 s per 262,144 pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workloads.tasks.recommendation import NUM_DENSE, NUM_SPARSE, preprocess_dense

# Vocabulary sizes per categorical feature (total 6,000 rows): small enough that three
# trained models ship in under 3 MB, varied as Criteo's are (a few large, many tiny).
VOCAB = (1000, 800, 600, 500, 400, 400, 300, 300, 250, 200, 200, 150, 150,
         120, 100, 100, 80, 60, 50, 40, 30, 20, 10, 6, 3, 2)
WORLD_SEED = 20261101  # the click model itself: change it and every shipped AUC changes
EVAL_SEED = 23         # the evaluation draw ("day 23", as MLPerf evaluates Criteo's last day)
TRAIN_SEED = 1000      # training draws use TRAIN_SEED + epoch: never the evaluation draw
INFORMATIVE = 14       # categorical features with an effect; the rest are noise
INTERACTION = (2, 7)   # features whose factors interact (rank INTERACTION_RANK)
INTERACTION_RANK = 4
SLOPE_FEATURE = 5      # the category of this feature sets the slope of dense feature 0


@dataclass
class ClickLogs:
    """Pairs in Criteo's layout: raw integer dense counts, categorical indices, labels."""

    dense_raw: np.ndarray   # int64 [N, 13]
    sparse: np.ndarray      # int64 [N, 26], feature f in [0, VOCAB[f])
    labels: np.ndarray      # float32 [N], 0 or 1
    probability: np.ndarray  # float32 [N]: the click model's own probability (Bayes score)

    @property
    def dense(self) -> np.ndarray:
        return preprocess_dense(self.dense_raw)

    def __len__(self) -> int:
        return len(self.labels)


class ClickModel:
    """The known click model; its parameters are a pure function of ``seed``."""

    def __init__(self, seed: int = WORLD_SEED):
        self.seed = int(seed)
        rng = np.random.default_rng(seed)
        self.dense_mu = rng.uniform(0.5, 4.0, NUM_DENSE)
        self.dense_sigma = rng.uniform(0.6, 1.6, NUM_DENSE)
        self.zipf_s = rng.uniform(1.05, 1.4, NUM_SPARSE)
        self.dense_w = rng.normal(0.0, 0.25, NUM_DENSE)
        # Standardise the log features inside the logit, so weights are comparable.
        self.dense_center = self.dense_mu
        self.dense_scale = self.dense_sigma
        # Per-category effects: informative features get a scale, the rest exactly zero.
        scales = np.zeros(NUM_SPARSE)
        informative = rng.permutation(NUM_SPARSE)[:INFORMATIVE]
        scales[informative] = rng.uniform(0.2, 0.6, INFORMATIVE)
        self.effects = [rng.normal(0.0, scales[f], VOCAB[f]) for f in range(NUM_SPARSE)]
        a, b = INTERACTION
        self.factor_a = rng.normal(0.0, 0.5, (VOCAB[a], INTERACTION_RANK))
        self.factor_b = rng.normal(0.0, 0.5, (VOCAB[b], INTERACTION_RANK))
        self.slope = rng.normal(0.0, 0.4, VOCAB[SLOPE_FEATURE])
        self.bias = -2.6  # a click rate around 25%, as in Criteo's Kaggle set

    # --- drawing ---------------------------------------------------------------------
    def _categorical(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Bounded Zipf indices by the closed-form inverse CDF of its continuous law."""
        u = rng.random((n, NUM_SPARSE))
        vocab = np.asarray(VOCAB, np.float64)
        one_minus_s = 1.0 - self.zipf_s
        top = (vocab + 1.0) ** one_minus_s - 1.0
        x = (1.0 + u * top) ** (1.0 / one_minus_s)
        return np.minimum(x.astype(np.int64) - 1, np.asarray(VOCAB) - 1)

    def _dense_raw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        z = rng.standard_normal((n, NUM_DENSE))
        raw = np.floor(np.exp(self.dense_mu + self.dense_sigma * z)).astype(np.int64) - 1
        np.maximum(raw, 0, out=raw)
        raw[rng.random((n, NUM_DENSE)) < 0.1] = 0  # missing field: an empty TSV field is 0
        negative = rng.random(n) < 0.05
        raw[negative, 1] = -rng.integers(1, 4, int(negative.sum()))  # Criteo's I2 dips below 0
        return raw

    def logit(self, dense_raw: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        x = (preprocess_dense(dense_raw) - self.dense_center) / self.dense_scale
        logit = self.bias + x @ self.dense_w
        logit += 0.8 * np.exp(-0.5 * (x[:, 3] - 0.5) ** 2)  # a bump: not linear in the input
        for f in range(NUM_SPARSE):
            logit += self.effects[f][sparse[:, f]]
        a, b = INTERACTION
        logit += np.einsum("nk,nk->n", self.factor_a[sparse[:, a]], self.factor_b[sparse[:, b]])
        logit += self.slope[sparse[:, SLOPE_FEATURE]] * x[:, 0]
        return logit

    def draw(self, n: int, seed: int) -> ClickLogs:
        """``n`` pairs, a pure function of (this model, ``seed``)."""
        if n < 1:
            raise ValueError(f"click_logs: a draw needs at least one pair, got {n}")
        rng = np.random.default_rng([self.seed, int(seed)])
        dense_raw = self._dense_raw(rng, n)
        sparse = self._categorical(rng, n)
        p = 1.0 / (1.0 + np.exp(-self.logit(dense_raw, sparse)))
        labels = (rng.random(n) < p).astype(np.float32)
        return ClickLogs(dense_raw, sparse, labels, p.astype(np.float32))
