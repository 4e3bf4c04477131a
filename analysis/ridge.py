"""Ridge regression on a weight matrix without copying it: Gram matrices built block by block in float32.

scikit-learn's ``Ridge`` wants its input in memory as float64: for 10,000 ResNet8s of 78k weights that is a 6 GB
copy of a 3 GB memory-mapped matrix per task. The closed form needs only the n x n (or P x P) Gram matrix of the
centred rows, so this builds that from row blocks of the (possibly memory-mapped) input and solves in float64: the
same fit as ``Ridge(alpha, fit_intercept=True)`` up to float32 rounding of the products, at a peak of about the
Gram matrix plus two blocks. The Gram matrix does not depend on alpha, so a sweep over alphas builds it once.
"""

from __future__ import annotations

import hashlib

import numpy as np

BLOCK_BYTES = 256 * 2**20  # one float32 row block; two are in memory at once
_GRAMS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}  # this process's last Gram matrices, by input and rows


def fingerprint(inputs: np.ndarray) -> str:
    """A cheap identity of a (possibly memory-mapped) matrix: a hash of every 97th row's first 4,096 entries."""
    return hashlib.sha256(np.ascontiguousarray(inputs[::97, :4096]).tobytes()).hexdigest()


class BlockRidge:
    """``fit(inputs, targets, rows)`` then ``predict(inputs, rows)``: ``inputs`` is read block by block."""

    def __init__(self, alpha: float) -> None:
        self.alpha = float(alpha)

    def _blocks(self, rows: np.ndarray, width: int) -> list[np.ndarray]:
        per = max(1, BLOCK_BYTES // (4 * width))
        return [rows[i : i + per] for i in range(0, len(rows), per)]

    def _centred(self, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.asarray(inputs[rows], np.float32) - self.mean_

    def fit(self, inputs: np.ndarray, targets: np.ndarray, rows: np.ndarray) -> BlockRidge:
        rows = np.asarray(rows)
        width = inputs.shape[1]
        blocks = self._blocks(rows, width)
        self.mean_, gram = self._gram(inputs, rows, blocks)
        y = np.asarray(targets[rows], np.float64)
        self.target_mean_ = float(y.mean())
        yc = y - self.target_mean_
        starts = np.cumsum([0, *map(len, blocks)])
        if len(rows) <= width:  # dual: coef = Xc^T (Xc Xc^T + alpha I)^-1 yc
            dual = np.linalg.solve(gram + self.alpha * np.eye(len(rows)), yc).astype(np.float32)
            coef = np.zeros(width, np.float64)
            for b, start in zip(blocks, starts, strict=False):
                coef += self._centred(inputs, b).T @ dual[start : start + len(b)]
        else:  # primal: coef = (Xc^T Xc + alpha I)^-1 Xc^T yc
            right = np.zeros(width, np.float64)
            for b, start in zip(blocks, starts, strict=False):
                right += self._centred(inputs, b).T @ yc[start : start + len(b)].astype(np.float32)
            coef = np.linalg.solve(gram + self.alpha * np.eye(width), right)
        self.coef_ = coef.astype(np.float32)
        return self

    def _gram(self, inputs: np.ndarray, rows: np.ndarray, blocks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Column means and the Gram matrix of the centred rows (n x n, or P x P when n > P). A worker that fits
        several alphas on the same rows (the stage's sweep) builds it once: the last two are kept."""
        key = (inputs.shape, hashlib.sha256(rows.tobytes()).hexdigest(), fingerprint(inputs))
        if key in _GRAMS:
            return _GRAMS[key]
        width = inputs.shape[1]
        total = np.zeros(width, np.float64)
        for b in blocks:
            total += np.asarray(inputs[b], np.float32).sum(0, dtype=np.float64)
        self.mean_ = (total / len(rows)).astype(np.float32)
        if len(rows) <= width:
            gram = np.zeros((len(rows), len(rows)), np.float64)
            starts = np.cumsum([0, *map(len, blocks)])
            for i, bi in enumerate(blocks):
                xi = self._centred(inputs, bi)
                for j in range(i, len(blocks)):
                    xj = xi if j == i else self._centred(inputs, blocks[j])
                    part = xi @ xj.T
                    gram[starts[i] : starts[i + 1], starts[j] : starts[j + 1]] = part
                    gram[starts[j] : starts[j + 1], starts[i] : starts[i + 1]] = part.T
        else:
            gram = np.zeros((width, width), np.float64)
            for b in blocks:
                xc = self._centred(inputs, b)
                gram += xc.T @ xc
        while len(_GRAMS) >= 2:
            _GRAMS.pop(next(iter(_GRAMS)))
        _GRAMS[key] = (self.mean_, gram)
        return self.mean_, gram

    def predict(self, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = [self._centred(inputs, b) @ self.coef_ for b in self._blocks(np.asarray(rows), inputs.shape[1])]
        return (np.concatenate(out) if out else np.zeros(0, np.float32)) + np.float32(self.target_mean_)
