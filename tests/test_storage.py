"""Schema version 3 on disk: one variant per row group, uncompressed weights checked by row checksums, reads that
touch only what they need, and zoos written by versions 1 and 2 still open and read the same. No Ray: shards come
from ``pipelines.shard``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import write_zoo

from symzoo.zoo.config import validate
from symzoo.zoo.store import (
    MODELS,
    ROW_GROUP_SIZE,
    file_sha256,
    open_zoo,
    read_manifest,
    write_manifest,
    write_parquet_atomically,
)

CONFIG = {
    "name": "storage",
    "seed": 5,
    "data": {"name": "digits", "train_per_class": 10},
    "variants": ["standard", "w_asym", "sigma_asym"],
    "networks": 12,
    "hyperparameters": {"epochs": 1},
    "training": {"batch_size": 50, "warmup_epochs": 0.5, "augment": {"flip": False, "cutout": 0}, "amp": False},
    "execution": {"networks_per_shard": 18},
}


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("storage") / "zoo"
    write_zoo(out, validate(CONFIG))
    return out


def test_no_row_group_holds_two_variants(zoo_dir):
    for path in sorted((zoo_dir / MODELS).glob("*.parquet")):
        shard = pq.ParquetFile(path)
        assert shard.schema_arrow.metadata[b"symzoo.schema_version"] == b"3"
        per_group = [
            set(shard.read_row_group(i, columns=["variant"])["variant"].to_pylist())
            for i in range(shard.num_row_groups)
        ]
        assert all(len(v) == 1 for v in per_group)
        assert shard.num_row_groups >= 3  # 18 networks of 3 variants: at least one group each


def test_weights_are_stored_uncompressed_and_scalars_compressed(zoo_dir):
    metadata = pq.ParquetFile(next((zoo_dir / MODELS).glob("*.parquet"))).metadata
    group = metadata.row_group(0)
    codecs = {
        group.column(j).path_in_schema.split(".")[0]: group.column(j).compression for j in range(group.num_columns)
    }
    assert codecs["weights_final"] == "UNCOMPRESSED" and codecs["weights_init"] == "UNCOMPRESSED"
    assert codecs["checksum_weights_final"] == "UNCOMPRESSED" and codecs["checksum_weights_init"] == "UNCOMPRESSED"
    assert codecs["test_acc"] == "ZSTD" and codecs["variant"] == "ZSTD"


def count_row_groups_read(monkeypatch) -> list[int]:
    """Every row group whose weights ``ParquetFile.read_row_groups`` is asked for, across calls."""
    read: list[int] = []
    original = pq.ParquetFile.read_row_groups

    def counting(self, row_groups, columns=None, *args, **kwargs):
        if columns is None or any(c.startswith("weights_") for c in columns):
            read.extend(row_groups)
        return original(self, row_groups, columns, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_groups", counting)
    return read


def test_one_variant_reads_only_its_row_groups(zoo_dir, monkeypatch):
    zoo = open_zoo(zoo_dir)
    total = sum(pq.ParquetFile(p).num_row_groups for p in zoo.shards)
    own = sum(
        1
        for p in zoo.shards
        for i in range(pq.ParquetFile(p).num_row_groups)
        if pq.ParquetFile(p).read_row_group(i, columns=["variant"])["variant"][0].as_py() == "w_asym"
    )
    assert len(zoo.frame) == 36  # the metadata is read once, before counting
    read = count_row_groups_read(monkeypatch)
    weights = zoo.weights("final", variant="w_asym")
    assert len(read) == own and own < total / 2
    assert weights.shape == (12, zoo.n_params) and np.isfinite(weights).all()
    read.clear()
    zoo.weights("final", model_ids=[1])  # one network: the one row group holding it
    assert len(read) == 1


def test_variant_and_id_reads_match_the_whole_matrix(zoo_dir):
    zoo = open_zoo(zoo_dir)
    frame, everything = zoo.frame, zoo.weights("init")
    for variant in ("standard", "w_asym", "sigma_asym"):
        rows = (frame["variant"] == variant).to_numpy()
        np.testing.assert_array_equal(zoo.weights("init", variant=variant), everything[rows])
    np.testing.assert_array_equal(zoo.weights("init", model_ids=[30, 2, 17]), everything[[2, 17, 30]])


def rewrite_as_version(zoo_dir: Path, version: int) -> None:
    """Each shard as an older schema wrote it, without the checksum columns; the manifest's checksums follow.
    Version 1: rows in plan order (variants mixed within row groups), every column zstd. Version 2: the same rows
    and row groups as now."""
    manifest = read_manifest(zoo_dir)
    for path in sorted((zoo_dir / MODELS).glob("*.parquet")):
        table = pq.read_table(path)
        table = table.drop_columns([n for n in table.column_names if n.startswith("checksum_")])
        table = table.replace_schema_metadata(dict(table.schema.metadata) | {b"symzoo.schema_version": b"%d" % version})
        if version == 1:
            pq.write_table(
                table.sort_by("model_id"), path, compression="zstd", row_group_size=4, write_page_checksum=True
            )
        else:
            write_parquet_atomically(path, table, ROW_GROUP_SIZE, split_by="variant")
        manifest["shards"][path.name] = file_sha256(path)
    manifest["schema_version"] = version
    write_manifest(zoo_dir, manifest)


def test_a_version_1_zoo_opens_and_reads_the_same(zoo_dir, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(zoo_dir, old)
    rewrite_as_version(old, 1)
    mixed = pq.ParquetFile(next((old / MODELS).glob("*.parquet"))).read_row_group(0, columns=["variant"])
    assert len(set(mixed["variant"].to_pylist())) > 1  # the old layout really mixes variants
    new, legacy = open_zoo(zoo_dir), open_zoo(old)
    legacy.verify(checksums=True)
    assert legacy.frame.drop(columns=["history_train_loss", "history_train_acc"]).equals(
        new.frame.drop(columns=["history_train_loss", "history_train_acc"])
    )
    for variant in ("standard", "sigma_asym"):
        np.testing.assert_array_equal(
            legacy.weights("final", variant=variant, trainable_only=True),
            new.weights("final", variant=variant, trainable_only=True),
        )
    np.testing.assert_array_equal(legacy.weights("init", model_ids=[4, 5]), new.weights("init", model_ids=[4, 5]))


def test_a_future_schema_version_is_named(zoo_dir, tmp_path):
    import shutil

    from symzoo.errors import ZooError

    future = tmp_path / "future"
    shutil.copytree(zoo_dir, future)
    path = next((future / MODELS).glob("*.parquet"))
    table = pq.read_table(path)
    pq.write_table(table.replace_schema_metadata(dict(table.schema.metadata) | {b"symzoo.schema_version": b"4"}), path)
    with pytest.raises(ZooError, match="schema version b'4', this symzoo reads versions 1, 2 and 3"):
        open_zoo(future)


def test_a_rerun_with_nothing_to_do_starts_no_ray(zoo_dir, tmp_path):
    import ray
    import yaml

    from symzoo.pipelines.generate import generate

    config = tmp_path / "storage.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    assert not ray.is_initialized()
    report = generate(config, zoo_dir, show_progress=False)
    assert report.ok and report.done == [] and len(report.skipped) == 2
    assert not ray.is_initialized()  # every shard was checked against the plan and its checksum, without Ray


def test_stored_rows_name_only_the_shards_that_hold_them_and_read_as_zoo_weights(zoo_dir):
    zoo = open_zoo(zoo_dir)
    ids = [0, 5, 20, 35]  # three shards of 18
    rows = zoo.stored_rows(model_ids=ids)
    assert [p.name for p, _ in rows.parts] == ["part-00000.parquet", "part-00001.parquet"]
    assert rows.model_ids.tolist() == ids and len(rows) == 4
    np.testing.assert_array_equal(rows.read("final"), zoo.weights("final", model_ids=ids))
    whole = zoo.stored_rows(variant="sigma_asym")
    assert len(whole) == 12 and not whole.by_id and whole.variants == {"sigma_asym"}


def test_a_variant_cache_streams_to_disk_and_equals_the_in_memory_read(zoo_dir, tmp_path):
    """The metanet stage's cache, built a row group at a time by positional writes, is the matrix and finiteness
    of ``Zoo.weights(trainable_only=True)``, and its StatNN statistics equal a direct computation."""
    from symzoo.zoo.weight_cache import VariantCache, rows_finite, statnn_features

    zoo = open_zoo(zoo_dir)
    expected = zoo.weights("final", variant="w_asym", trainable_only=True)
    cache = VariantCache.of(zoo, "w_asym", "final", tmp_path)
    finite = cache.ensure(("flat", "stats"))  # opens the zoo from its location, as a worker does
    np.testing.assert_array_equal(np.load(cache.path("flat")), expected)
    np.testing.assert_array_equal(finite, rows_finite(expected))
    np.testing.assert_allclose(cache.matrix("stats"), statnn_features(expected, zoo.layout("w_asym")), rtol=1e-6)
    stamp = cache.path("flat").stat().st_mtime_ns
    np.testing.assert_array_equal(cache.ensure(("flat", "stats"), zoo), finite)  # found, not rebuilt
    assert cache.path("flat").stat().st_mtime_ns == stamp and isinstance(cache.matrix("flat"), np.memmap)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == sorted(
        cache.path(k).name for k in ("flat", "finite", "stats")
    )


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "overwritten":  # same size, same header: bytes in the middle of the matrix
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(64)
    elif how == "truncated":
        data = data[: len(data) - 100]
    elif how == "emptied":
        data = bytearray()
    elif how == "header":
        data[10:30] = b"x" * 20
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["overwritten", "truncated", "emptied", "header"])
@pytest.mark.parametrize("kind", ["flat", "finite", "stats"])
def test_a_damaged_cache_file_is_rebuilt_not_served(zoo_dir, tmp_path, kind, how):
    """The cache lives on a local disk outside the zoo's checks: each file carries a digest, and one that no longer
    matches it (whatever the damage) is rebuilt from the zoo, in the same call, never read as data."""
    from symzoo.zoo import weight_cache
    from symzoo.zoo.weight_cache import VariantCache

    zoo = open_zoo(zoo_dir)
    cache = VariantCache.of(zoo, "w_asym", "final", tmp_path)
    cache.ensure(("flat", "stats"), zoo)
    good = {k: np.load(cache.path(k)) for k in ("flat", "finite", "stats")}
    _damage(cache.path(kind), how)
    weight_cache._VERIFIED.clear()  # as a new process finds it
    np.testing.assert_array_equal(cache.ensure(("flat", "stats"), zoo), good["finite"])
    for k, expected in good.items():
        np.testing.assert_array_equal(np.load(cache.path(k)), expected)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_cache_build_that_fails_leaves_no_temporary(zoo_dir, tmp_path, monkeypatch):
    from symzoo.zoo.store import StoredRows
    from symzoo.zoo.weight_cache import VariantCache

    def broken(*args, **kwargs):
        raise OSError("disk went away")

    monkeypatch.setattr(StoredRows, "read_into", broken)
    zoo = open_zoo(zoo_dir)
    with pytest.raises(OSError, match="disk went away"):
        VariantCache.of(zoo, "standard", "final", tmp_path).ensure(("flat",), zoo)
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_cache_folder_that_is_a_file_is_one_line(zoo_dir, tmp_path):
    from symzoo.errors import ZooError
    from symzoo.zoo.weight_cache import VariantCache

    (tmp_path / "cache").write_text("a file")
    with pytest.raises(ZooError, match="cache folder .* is a file; pass a folder"):
        VariantCache.of(open_zoo(zoo_dir), "standard", "final", tmp_path / "cache").ensure(("flat",))


def test_rebasin_alignment_permutes_each_standard_network_onto_one_reference(zoo_dir, tmp_path):
    """``metanet.align: rebasin``'s input: every network is the same function as stored, and closer to the
    reference than before; the reference is unchanged; a variant without permutation symmetry is refused."""
    import torch

    from symzoo.analysis.metanet_inputs import ensure_inputs
    from symzoo.errors import ZooError
    from symzoo.zoo.weight_cache import VariantCache

    zoo = open_zoo(zoo_dir)
    cache = VariantCache.of(zoo, "standard", "final", tmp_path)
    ensure_inputs(cache, ("flat", "aligned"))
    flat, aligned = np.load(cache.path("flat")), np.load(cache.path("aligned"))
    np.testing.assert_array_equal(aligned[0], flat[0])  # the reference: the first finite network
    assert (flat[1:] @ flat[0]).sum() < (aligned[1:] @ flat[0]).sum()
    data = zoo.dataset()
    x = data.normalize(data.x_test[:128]).double()
    ids = zoo.frame.loc[zoo.frame["variant"] == "standard", "model_id"].to_numpy()
    for row in (1, 5):
        model = zoo.model(int(ids[row])).double()
        with torch.no_grad():
            before = model(x)
            zoo.layout("standard").load_into(model, torch.from_numpy(aligned[row]).double())
            assert not np.array_equal(aligned[row], flat[row])
            assert float((model(x) - before).abs().max()) < 1e-9
    with pytest.raises(ZooError, match="w_asym networks have no permutation symmetry to align"):
        ensure_inputs(VariantCache.of(zoo, "w_asym", "final", tmp_path), ("aligned",))


def test_a_version_2_zoo_opens_reads_the_same_and_its_damage_is_caught_by_page_crcs(zoo_dir, tmp_path):
    import shutil

    from symzoo.errors import ZooError

    old = tmp_path / "v2"
    shutil.copytree(zoo_dir, old)
    rewrite_as_version(old, 2)
    legacy, new = open_zoo(old), open_zoo(zoo_dir)
    legacy.verify(checksums=True)
    for variant in ("standard", "w_asym", None):
        np.testing.assert_array_equal(legacy.weights("final", variant=variant), new.weights("final", variant=variant))
    path = sorted((old / MODELS).glob("*.parquet"))[0]
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.to_arrow_schema().get_field_index("weights_final")
    start = meta.row_group(0).column(column).data_page_offset + 64
    data = bytearray(path.read_bytes())
    data[start] ^= 0x01  # one bit of one stored float
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match=r"corrupt file .*part-00000.parquet"):
        open_zoo(old).weights("final")


def test_row_checksums_catch_a_flipped_bit_anywhere_and_a_moved_block():
    from symzoo.zoo.store import row_checksums

    rng = np.random.default_rng(0)
    rows = rng.standard_normal((3, 5000)).astype(np.float32)  # 4 full 4 KiB blocks and a tail
    base = row_checksums(rows)
    assert base.dtype == np.uint64 and len(set(base.tolist())) == 3
    words = rows.view(np.uint32)
    for word in (0, 1023, 1024, 4095, 4999):
        for bit in (0, 17, 31):
            damaged = words.copy()
            damaged[1, word] ^= np.uint32(1 << bit)
            sums = row_checksums(damaged.view(np.float32))
            assert sums[1] != base[1] and sums[0] == base[0] and sums[2] == base[2]
    swapped = rows.copy()
    swapped[0, :1024], swapped[0, 1024:2048] = rows[0, 1024:2048], rows[0, :1024]
    assert row_checksums(swapped)[0] != base[0]
    zeroed = rows.copy()
    zeroed[2, 2048:3072] = 0
    assert row_checksums(zeroed)[2] != base[2]
    assert (row_checksums(rows[:, ::-1].copy()) != base).all()  # order matters within a row too


def test_a_damaged_weight_fails_its_row_checksum_naming_the_network(zoo_dir, tmp_path):
    import shutil

    from symzoo.errors import ZooError

    damaged = tmp_path / "damaged"
    shutil.copytree(zoo_dir, damaged)
    zoo = open_zoo(damaged)
    path = zoo.shards[1]
    meta = pq.ParquetFile(path).metadata
    column = meta.schema.to_arrow_schema().get_field_index("weights_init")
    start = meta.row_group(1).column(column).data_page_offset + 200
    data = bytearray(path.read_bytes())
    data[start] ^= 0x80
    path.write_bytes(bytes(data))
    first_id = int(pq.ParquetFile(path).read_row_group(1, columns=["model_id"])["model_id"][0].as_py())
    with pytest.raises(ZooError, match=rf"corrupt file .*part-00001.parquet \(weights_init of model_id {first_id} "):
        zoo.weights("init")
    np.testing.assert_array_equal(zoo.weights("final"), open_zoo(zoo_dir).weights("final"))  # other columns read
