"""BlockRidge: scikit-learn's Ridge fit, from row blocks of a memory-mapped matrix, without a float64 copy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from symzoo.analysis import ridge as ridge_module
from symzoo.analysis.ridge import BlockRidge


@pytest.mark.parametrize("n, width", [(150, 400), (400, 30)])  # dual (n < width) and primal forms
def test_block_ridge_is_sklearns_ridge(tmp_path, monkeypatch, n, width):
    monkeypatch.setattr(ridge_module, "BLOCK_BYTES", 4 * width * 17)  # 17-row blocks: many, uneven
    monkeypatch.setattr(ridge_module, "_GRAMS", {})
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((n, width)) + 2).astype(np.float32)
    y = x[:, :4].sum(1) * 0.1 + rng.standard_normal(n) * 0.05
    np.save(tmp_path / "x.npy", x)
    mapped = np.load(tmp_path / "x.npy", mmap_mode="r")  # as the metanet stage hands it over
    train, test = rng.permutation(n)[: n // 2], np.arange(n // 2, n)
    for alpha in (0.1, 10.0):
        reference = Ridge(alpha=alpha).fit(x[train].astype(np.float64), y[train])
        ours = BlockRidge(alpha).fit(mapped, y, train)
        np.testing.assert_allclose(ours.coef_, reference.coef_, atol=1e-5, rtol=1e-4)
        np.testing.assert_allclose(ours.predict(mapped, test), reference.predict(x[test]), atol=1e-5)
    assert len(ridge_module._GRAMS) == 1  # the second alpha reused the first one's Gram matrix
