"""Training data from HDF5 products: deterministic splits and batched, shardable reads.

A :class:`ProductDataset` serves whole batches (``dataset[indices]``), read with
one sorted h5py selection per array rather than one read per sample, which is
what chunked, compressed products need. :class:`EpochBatches` yields the batch
index lists of one epoch for one rank; its order is a pure function of
``(seed, epoch)``, so a run resumed mid-epoch replays exactly the same batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from skysift.errors import ProductError
from skysift.io import open_product

__all__ = ["EpochBatches", "ProductDataset", "split_indices"]

#: Products smaller than this are read into memory once per process.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


def split_indices(
    n_samples: int, val_fraction: float, test_fraction: float, seed: int, groups: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Deterministic train/val/test split of ``range(n_samples)``.

    Parameters
    ----------
    n_samples : int
        Number of samples.
    val_fraction, test_fraction : float
        Held-out fractions.
    seed : int
        Seed of the permutation.
    groups : numpy.ndarray, optional
        Samples sharing a group value (e.g. GW samples made from one waveform)
        always land in the same split, so nothing leaks between splits; the
        fractions then apply to groups. Negative integer ids mean no group.

    Returns
    -------
    dict
        ``train``, ``val`` and ``test`` index arrays, each sorted, disjoint and
        together covering every sample.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"bad split fractions val={val_fraction}, test={test_fraction}")
    if groups is not None:
        groups = np.asarray(groups)
        if groups.dtype.kind in "iu":
            # Negative ids mean "no group" (e.g. noise-only GW samples): each is its own group.
            ungrouped = groups < 0
            groups = groups.astype(np.int64)
            groups[ungrouped] = groups.max(initial=0) + 1 + np.arange(ungrouped.sum())
        unique, inverse = np.unique(groups, return_inverse=True)
        group_splits = split_indices(len(unique), val_fraction, test_fraction, seed)
        return {name: np.flatnonzero(np.isin(inverse, chosen)) for name, chosen in group_splits.items()}
    order = np.random.default_rng([seed, 0x5B117]).permutation(n_samples)
    n_val = int(round(val_fraction * n_samples))
    n_test = int(round(test_fraction * n_samples))
    return {
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
        "train": np.sort(order[n_val + n_test :]),
    }


class ProductDataset(torch.utils.data.Dataset):
    """Batches of model inputs and labels from an HDF5 product.

    ``dataset[indices]`` returns ``(inputs, labels)``: a tuple of float32
    tensors, one per name in ``inputs``, each shaped ``(len(indices), ...)``,
    and float32 labels (or None when the product has no label column).

    Parameters
    ----------
    path : str or path-like
        HDF5 product.
    inputs : sequence of str
        Array names under ``/data`` fed to the model, in order.
    label : str
        Column under ``/samples`` holding 0/1 labels.
    in_memory : bool, optional
        Load the arrays once; by default when they total under 2 GiB.

    Raises
    ------
    ProductError
        If an input array or the label column is missing (the message names
        the file and what it holds).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        inputs: Sequence[str],
        label: str = "label",
        *,
        in_memory: bool | None = None,
    ) -> None:
        self.path = Path(path)
        self.inputs = tuple(inputs)
        self.label = label
        with open_product(self.path) as product:
            missing = [name for name in self.inputs if name not in product.arrays]
            if missing:
                raise ProductError(
                    f"{self.path}: no array(s) {', '.join(missing)}; it has {', '.join(product.arrays) or 'none'}"
                )
            self.n_samples = len(product)
            self.sample_shapes = {name: product.arrays[name].shape[1:] for name in self.inputs}
            total = sum(product.arrays[name].size * product.arrays[name].dtype.itemsize for name in self.inputs)
            table = product.read_table()
            self.has_labels = label in table.colnames
            self.labels = np.asarray(table[label], dtype=np.float32) if self.has_labels else None
            self.table = table
        self.in_memory = total < IN_MEMORY_LIMIT_BYTES if in_memory is None else in_memory
        self._arrays: dict[str, np.ndarray] | None = None
        self._file: h5py.File | None = None

    def __len__(self) -> int:
        return self.n_samples

    def _load(self) -> None:
        if self.in_memory:
            with h5py.File(self.path, "r") as handle:
                self._arrays = {name: handle["data"][name][()] for name in self.inputs}
        else:
            # Opened lazily, so each DataLoader worker process gets its own handle.
            self._file = h5py.File(self.path, "r")

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """Read the arrays of ``indices`` (any order) as numpy arrays."""
        if self._arrays is None and self._file is None:
            self._load()
        indices = np.asarray(indices, dtype=np.int64)
        if self._arrays is not None:
            return tuple(self._arrays[name][indices] for name in self.inputs)
        order = np.argsort(indices, kind="stable")
        sorted_indices = indices[order]
        unique, inverse = np.unique(sorted_indices, return_inverse=True)
        inverse_order = np.empty_like(order)
        inverse_order[order] = np.arange(order.size)
        batches = []
        for name in self.inputs:
            values = self._file["data"][name][unique]  # h5py needs increasing indices
            batches.append(values[inverse][inverse_order])
        return tuple(batches)

    def __getitem__(self, indices: Sequence[int] | np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        arrays = self.read(indices)
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)
        labels = None if self.labels is None else torch.from_numpy(self.labels[indices])
        return tensors, labels

    def __getstate__(self) -> dict:
        # h5py handles cannot be pickled into worker processes; reopen there.
        state = dict(self.__dict__)
        state["_file"] = None
        return state


class EpochBatches(torch.utils.data.Sampler):
    """Index batches of one epoch for one rank, resumable at any step.

    The epoch's permutation of ``indices`` comes from ``(seed, epoch)``; it is
    padded by wrapping so every step is full, and rank ``r`` takes the ``r``-th
    contiguous part of each global batch. Each rank's batch has
    ``global_batch_size // world_size`` samples, so one step of ``w`` ranks sees
    the same samples as one step of a single process with the global batch.

    Parameters
    ----------
    indices : numpy.ndarray
        Sample indices to draw from (e.g. the training split).
    global_batch_size : int
        Samples per optimisation step summed over ranks.
    seed, epoch : int
        Determine the order.
    rank, world_size : int
        This process and the number of processes.
    start_step : int
        Skip this many batches (resuming mid-epoch).
    shuffle : bool
        Permute (training) or keep order (evaluation).
    max_steps : int
        Stop after this many steps (0: all).
    """

    def __init__(
        self,
        indices: np.ndarray,
        global_batch_size: int,
        *,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        shuffle: bool = True,
        max_steps: int = 0,
    ) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by {world_size} processes")
        self.indices = np.asarray(indices)
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start_step = start_step
        self.shuffle = shuffle
        n_steps = -(-len(self.indices) // global_batch_size)
        self.n_steps = min(n_steps, max_steps) if max_steps else n_steps

    def __len__(self) -> int:
        return max(0, self.n_steps - self.start_step)

    def __iter__(self) -> Iterator[np.ndarray]:
        order = self.indices
        if self.shuffle:
            order = order[np.random.default_rng([self.seed, self.epoch]).permutation(len(order))]
        needed = self.n_steps * self.global_batch_size
        if needed > len(order):  # wrap so every step is full on every rank
            order = np.resize(order, needed)
        for step in range(self.start_step, self.n_steps):
            batch = order[step * self.global_batch_size : (step + 1) * self.global_batch_size]
            yield batch[self.rank * self.local_batch_size : (self.rank + 1) * self.local_batch_size]
