"""Ridge regression on a weight matrix without copying it: Gram matrices built block by block in float32.

scikit-learn's ``Ridge`` wants its input in memory as float64: for 10,000 ResNet8s of 78k weights that is a 6 GB
copy of a 3 GB memory-mapped matrix per task. The closed form needs only the n x n (or P x P) Gram matrix of the
centred rows, so this builds that from row blocks of the (possibly memory-mapped) input and solves in float64: the
same fit as ``Ridge(alpha, fit_intercept=True)`` up to float32 rounding of the products, at a peak of about the
Gram matrix plus two blocks.
"""

from __future__ import annotations

import numpy as np

BLOCK_BYTES = 256 * 2**20  # one float32 row block; two are in memory at once


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
        width = inputs.shape[1]
        blocks = self._blocks(np.asarray(rows), width)
        total = np.zeros(width, np.float64)
        for b in blocks:
            total += np.asarray(inputs[b], np.float32).sum(0, dtype=np.float64)
        self.mean_ = (total / len(rows)).astype(np.float32)
        y = np.asarray(targets[rows], np.float64)
        self.target_mean_ = float(y.mean())
        yc = y - self.target_mean_
        if len(rows) <= width:  # dual: coef = Xc^T (Xc Xc^T + alpha I)^-1 yc
            gram = np.zeros((len(rows), len(rows)), np.float64)
            starts = np.cumsum([0, *map(len, blocks)])
            for i, bi in enumerate(blocks):
                xi = self._centred(inputs, bi)
                for j in range(i, len(blocks)):
                    xj = xi if j == i else self._centred(inputs, blocks[j])
                    part = xi @ xj.T
                    gram[starts[i] : starts[i + 1], starts[j] : starts[j + 1]] = part
                    gram[starts[j] : starts[j + 1], starts[i] : starts[i + 1]] = part.T
            dual = np.linalg.solve(gram + self.alpha * np.eye(len(rows)), yc)
            coef = np.zeros(width, np.float64)
            for b, start in zip(blocks, starts, strict=False):
                coef += self._centred(inputs, b).T @ dual[start : start + len(b)].astype(np.float32)
        else:  # primal: coef = (Xc^T Xc + alpha I)^-1 Xc^T yc
            gram = np.zeros((width, width), np.float64)
            right = np.zeros(width, np.float64)
            start = 0
            for b in blocks:
                xc = self._centred(inputs, b)
                gram += xc.T @ xc
                right += xc.T @ yc[start : start + len(b)].astype(np.float32)
                start += len(b)
            coef = np.linalg.solve(gram + self.alpha * np.eye(width), right)
        self.coef_ = coef.astype(np.float32)
        return self

    def predict(self, inputs: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = [self._centred(inputs, b) @ self.coef_ for b in self._blocks(np.asarray(rows), inputs.shape[1])]
        return (np.concatenate(out) if out else np.zeros(0, np.float32)) + np.float32(self.target_mean_)
