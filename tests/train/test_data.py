"""Chunk-aware epochs: one batch order whether a product is read in memory or streamed by chunks."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
import torch

from skysift.io import write_product
from skysift.provenance import Provenance
from skysift.train.data import ChunkStream, EpochBatches, ProductDataset, epoch_loader, split_indices

N_SAMPLES = 1000


@pytest.fixture(scope="module")
def strain_product(tmp_path_factory):
    """GW-like samples (2 x 2048 float32, 16 KiB): 64 per chunk, 16 chunks."""
    rng = np.random.default_rng(4)
    strain = rng.normal(0, 1, (N_SAMPLES, 2, 2048)).astype(np.float32)
    strain[:, 0, 0] = np.arange(N_SAMPLES)  # each sample names itself
    labels = rng.integers(0, 2, N_SAMPLES).astype(np.int8)
    return write_product(tmp_path_factory.mktemp("ooc") / "strain.h5", product_type="training-set",
                         provenance=Provenance.collect(rule="test", config={}), arrays={"strain": strain},
                         table={"label": labels})


@pytest.fixture(scope="module")
def old_layout_product(strain_product, tmp_path_factory):
    """The same data as written before: gzip level 4, 23-sample chunks (not a power of two)."""
    path = tmp_path_factory.mktemp("old") / "strain-old.h5"
    shutil.copy(strain_product, path)
    with h5py.File(path, "r+") as handle:
        values = handle["data/strain"][()]
        attrs = dict(handle["data/strain"].attrs)
        del handle["data/strain"]
        dataset = handle["data"].create_dataset("strain", data=values, chunks=(23, 2, 2048), maxshape=(None, 2, 2048),
                                                compression="gzip", compression_opts=4, shuffle=True)
        dataset.attrs.update(attrs)
    return path


def _batches(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(inputs[0].clone(), labels.clone()) for inputs, labels in loader]


def _sampler(dataset: ProductDataset, indices: np.ndarray, **kwargs) -> EpochBatches:
    options = dict(seed=7, epoch=2, block_size=dataset.block_size, window_blocks=3) | kwargs
    return EpochBatches(indices, options.pop("batch_size", 48), **options)


def test_writer_chunks_are_powers_of_two_and_data_unchanged(strain_product):
    with h5py.File(strain_product, "r") as handle:
        dataset = handle["data/strain"]
        assert dataset.chunks == (64, 2, 2048) and dataset.compression == "gzip" and dataset.shuffle
        assert dataset.compression_opts == 1
    rng = np.random.default_rng(4)  # the fixture's draws: the product holds exactly what was written
    expected = rng.normal(0, 1, (N_SAMPLES, 2, 2048)).astype(np.float32)
    expected[:, 0, 0] = np.arange(N_SAMPLES)
    (strain,), _ = ProductDataset(strain_product, ("strain",), in_memory=False)[np.arange(N_SAMPLES)]
    assert np.array_equal(strain.numpy(), expected)


def test_epoch_sees_every_sample_once_in_chunk_windows():
    indices = split_indices(N_SAMPLES, 0.2, 0.1, seed=1)["train"]
    sampler = EpochBatches(indices, 32, seed=3, epoch=0, block_size=64, window_blocks=2)
    order = np.concatenate(list(sampler))
    assert len(order) == sampler.n_steps * 32 == -(-len(indices) // 32) * 32
    assert sorted(order[: len(indices)]) == sorted(indices)  # each once, then the wrap of the last batch
    assert np.array_equal(order[len(indices) :], order[: len(order) - len(indices)])
    start = 0
    for window in sampler.windows():  # each window draws on at most window_blocks chunks
        assert len(np.unique(window // 64)) <= 2
        assert np.array_equal(order[start : start + len(window)], window)
        start += len(window)
    other_epoch = np.concatenate(list(EpochBatches(indices, 32, seed=3, epoch=1, block_size=64, window_blocks=2)))
    assert not np.array_equal(order, other_epoch)


def test_ranks_take_disjoint_chunks_and_equal_steps():
    indices = np.arange(N_SAMPLES)
    ranks = [EpochBatches(indices, 64, seed=3, epoch=0, rank=r, world_size=2, block_size=64, window_blocks=2) for r in (0, 1)]
    seen = [np.concatenate(list(sampler)) for sampler in ranks]
    assert ranks[0].n_steps == ranks[1].n_steps and all(len(s) == ranks[0].n_steps * 32 for s in seen)
    assert not set(np.unique(seen[0] // 64)) & set(np.unique(seen[1] // 64))
    assert set(np.concatenate(seen)) == set(indices)
    tiny = [list(EpochBatches(np.arange(10), 4, seed=0, epoch=0, rank=r, world_size=2, block_size=64)) for r in (0, 1)]
    assert set(np.concatenate(tiny[0] + tiny[1])) == set(range(10))  # fewer chunks than ranks: chunks are shared


@pytest.mark.parametrize("num_workers", [0, 2])
def test_streamed_batches_equal_in_memory_batches(strain_product, num_workers):
    indices = split_indices(N_SAMPLES, 0.15, 0.15, seed=2)["train"]
    eager = ProductDataset(strain_product, ("strain",), in_memory=True)
    lazy = ProductDataset(strain_product, ("strain",), memory_limit_bytes=eager.nbytes // 4)
    assert eager.in_memory and not lazy.in_memory
    expected = _batches(epoch_loader(eager, _sampler(eager, indices)))
    streamed = _batches(epoch_loader(lazy, _sampler(lazy, indices), num_workers=num_workers))
    assert isinstance(epoch_loader(lazy, _sampler(lazy, indices)), ChunkStream)
    assert len(streamed) == len(expected) == len(_sampler(lazy, indices))
    for (inputs, labels), (expected_inputs, expected_labels) in zip(streamed, expected):
        assert torch.equal(inputs, expected_inputs) and torch.equal(labels, expected_labels)
    # the samples are the ones the sampler names (sample i carries i in its first value)
    for (inputs, _), batch in zip(streamed, _sampler(lazy, indices)):
        assert np.array_equal(inputs[:, 0, 0].numpy().astype(np.int64), batch)


def test_resume_mid_epoch_replays_the_remaining_batches(strain_product):
    indices = split_indices(N_SAMPLES, 0.15, 0.15, seed=2)["train"]
    lazy = ProductDataset(strain_product, ("strain",), in_memory=False)
    whole = _batches(epoch_loader(lazy, _sampler(lazy, indices, rank=1, world_size=2)))
    resumed = _batches(epoch_loader(lazy, _sampler(lazy, indices, rank=1, world_size=2, start_step=5), num_workers=1))
    assert len(resumed) == len(whole) - 5
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(resumed, whole[5:]))


def test_old_layout_product_streams_the_same_batches(strain_product, old_layout_product):
    indices = split_indices(N_SAMPLES, 0.15, 0.15, seed=2)["train"]
    old = ProductDataset(old_layout_product, ("strain",), in_memory=False)
    old_in_memory = ProductDataset(old_layout_product, ("strain",), in_memory=True)
    assert old.block_size == 23
    streamed = _batches(epoch_loader(old, _sampler(old, indices), num_workers=1))
    expected = _batches(epoch_loader(old_in_memory, _sampler(old_in_memory, indices)))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(streamed, expected))
    # evaluation order: indices as given, a short last batch
    evaluation = EpochBatches(indices, 100, seed=0, epoch=0, shuffle=False, block_size=23, window_blocks=4)
    inputs = torch.cat([batch[0][0] for batch in epoch_loader(old, evaluation)])
    assert np.array_equal(inputs[:, 0, 0].numpy().astype(np.int64), indices)
