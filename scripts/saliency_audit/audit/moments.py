"""Streaming first and second moments of activation vectors, mergeable across shards.

Each shard keeps (count, mean, M2 = sum of outer products of deviations) in
float64 and updates them batch by batch; shards merge with the pairwise formula
of Chan, Golub and LeVeque (1979). This carries the same information as
(n, sum x, sum x x^T) without the cancellation of subtracting n mean mean^T.
"""

import os
from dataclasses import dataclass

import numpy as np

from saliency_audit.runtime.atomic_io import atomic_path


@dataclass
class Moments:
    count: int
    mean: np.ndarray  # F
    m2: np.ndarray  # F x F

    @classmethod
    def empty(cls, n_features: int) -> "Moments":
        return cls(0, np.zeros(n_features), np.zeros((n_features, n_features)))

    @classmethod
    def of(cls, x: np.ndarray) -> "Moments":
        x = np.asarray(x, dtype=np.float64)
        mean = x.mean(axis=0)
        centred = x - mean
        return cls(len(x), mean, centred.T @ centred)

    def merge(self, other: "Moments") -> "Moments":
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * (other.count / count)
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.count * other.count / count)
        return Moments(count, mean, m2)

    def covariance(self) -> np.ndarray:
        """Unbiased covariance (n - 1), as scikit-learn's PCA uses."""
        return self.m2 / max(self.count - 1, 1)

    def save(self, path: str | os.PathLike) -> None:
        with atomic_path(path) as tmp:
            np.savez(tmp, count=self.count, mean=self.mean, m2=self.m2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Moments":
        with np.load(path) as data:
            return cls(int(data["count"]), data["mean"], data["m2"])
