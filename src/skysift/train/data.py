"""Training data from HDF5 products: deterministic splits, chunk-aware epochs, streamed reads.

A product is read one of two ways, in one batch order:

* **in memory**, when its input arrays total less than the memory limit
  (``train.memory_limit_gib``, 2 GiB by default): the arrays are loaded once per
  process and each batch is gathered from them;
* **out of core** otherwise (:class:`ChunkStream`): DataLoader worker processes read
  whole HDF5 chunks, a shuffle window of them at a time, decompress them and
  gather the window's samples in the epoch's order; the training process only
  cuts the decoded windows into batches. Each chunk of the product is
  decompressed once per epoch, where reading random samples decompressed a
  whole chunk for every sample (0.71 s per batch of 128 on the 48,000-sample
  GW product, about 180 samples/s).

:class:`EpochBatches` defines that order as a pure function of the seed, the
epoch, the product's chunk layout, the shuffle window and the number of
ranks, whatever the path and the number of DataLoader workers, so a run
resumed mid-epoch replays exactly the batches it would have seen.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from skysift.errors import ProductError
from skysift.io import open_product

__all__ = ["ChunkStream", "EpochBatches", "ProductDataset", "epoch_loader", "split_indices"]

#: Products whose input arrays total less than this are read into memory once
#: per process (the default of ``train.memory_limit_gib``).
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3
#: Samples per block where an input array is stored without chunks (1 MiB of samples, as the writer aims for).
_UNCHUNKED_BLOCK_BYTES = 1 << 20
#: Salt of the epoch-order generators (kept apart from the split's).
_ORDER_SALT = 0xC4A0C


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


def _block_size(datasets: Iterable[h5py.Dataset]) -> int:
    """Samples per chunk along the sample axis shared by ``datasets`` (the unit of chunk-aware reads).

    skysift writes power-of-two chunk rows, so the largest divides by all the
    others and a block of it covers whole chunks of every array. Older
    products with other row counts still read correctly: a chunk of a smaller
    array that straddles two blocks is decompressed by both.
    """
    rows = []
    for dataset in datasets:
        if dataset.chunks is not None:
            rows.append(int(dataset.chunks[0]))
        else:
            sample_bytes = max(1, int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize)
            rows.append(max(1, _UNCHUNKED_BLOCK_BYTES // sample_bytes))
    return max(rows, default=1)


class ProductDataset(torch.utils.data.Dataset):
    """Batches of model inputs and labels from an HDF5 product.

    ``dataset[indices]`` returns ``(inputs, labels)``: a tuple of float32
    tensors, one per name in ``inputs``, each shaped ``(len(indices), ...)``,
    and float32 labels (or None when the product has no label column).
    :meth:`read_window` reads many samples by whole chunks, which is what
    :class:`ChunkStream` uses for products larger than memory.

    Parameters
    ----------
    path : str or path-like
        HDF5 product.
    inputs : sequence of str
        Array names under ``/data`` fed to the model, in order.
    label : str
        Column under ``/samples`` holding 0/1 labels.
    in_memory : bool, optional
        Load the arrays once; by default when they total less than
        ``memory_limit_bytes``.
    memory_limit_bytes : int
        Size of the input arrays (uncompressed) up to which they are loaded.

    Attributes
    ----------
    block_size : int
        Samples per chunk along the sample axis (see :func:`_block_size`).
    sample_nbytes : int
        Uncompressed bytes of one sample's inputs.
    nbytes : int
        Uncompressed bytes of all inputs.

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
        memory_limit_bytes: int = IN_MEMORY_LIMIT_BYTES,
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
            arrays = [product.arrays[name] for name in self.inputs]
            self.n_samples = len(product)
            self.sample_shapes = {name: array.shape[1:] for name, array in zip(self.inputs, arrays)}
            self.sample_nbytes = sum(int(np.prod(a.shape[1:], dtype=np.int64)) * a.dtype.itemsize for a in arrays)
            self.block_size = _block_size(arrays)
            table = product.read_table()
            self.has_labels = label in table.colnames
            self.labels = np.asarray(table[label], dtype=np.float32) if self.has_labels else None
            self.table = table
        self.nbytes = self.n_samples * self.sample_nbytes
        self.in_memory = self.nbytes < memory_limit_bytes if in_memory is None else in_memory
        self._arrays: dict[str, np.ndarray] | None = None
        self._file: h5py.File | None = None
        self._file_pid = 0

    def __len__(self) -> int:
        return self.n_samples

    def window_blocks(self, buffer_bytes: float) -> int:
        """Blocks in a shuffle window of at most ``buffer_bytes`` of decoded inputs (at least one)."""
        return max(1, int(buffer_bytes // max(1, self.block_size * self.sample_nbytes)))

    def _handle(self) -> h5py.File:
        # h5py handles do not survive fork: a DataLoader worker opens its own.
        if self._file is None or self._file_pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._file_pid = os.getpid()
        return self._file

    def load(self) -> dict[str, np.ndarray] | None:
        """Read the inputs into memory if the dataset is in memory (once); the arrays by name, or None."""
        if self.in_memory and self._arrays is None:
            with h5py.File(self.path, "r") as handle:
                self._arrays = {name: handle["data"][name][()] for name in self.inputs}
        return self._arrays

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, ...]:
        """Read the arrays of ``indices`` (any order) as numpy arrays, one h5py selection per array.

        Out of core, each sample costs the decompression of its chunk: use
        :meth:`read_window` for many samples.
        """
        indices = np.asarray(indices, dtype=np.int64)
        memory = self.load()
        if memory is not None:
            return tuple(memory[name][indices] for name in self.inputs)
        order = np.argsort(indices, kind="stable")
        unique, inverse = np.unique(indices[order], return_inverse=True)
        inverse_order = np.empty_like(order)
        inverse_order[order] = np.arange(order.size)
        data = self._handle()["data"]
        return tuple(data[name][unique][inverse][inverse_order] for name in self.inputs)  # h5py needs increasing indices

    def read_window(self, indices: np.ndarray, out: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, ...]:
        """Read the arrays of ``indices`` (any order) by whole chunks.

        The blocks holding ``indices`` are read with one contiguous selection
        per run of consecutive blocks, so every chunk is decompressed once;
        the samples are then gathered in the order of ``indices``.

        Parameters
        ----------
        indices : numpy.ndarray
            Sample indices.
        out : sequence of numpy.ndarray, optional
            Where to gather, one array per input shaped ``(len(indices), ...)``
            (e.g. shared memory a DataLoader worker hands over without a copy).

        Returns
        -------
        tuple of numpy.ndarray
            ``out`` when given.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if out is None:
            out = [None] * len(self.inputs)
        memory = self.load()
        if memory is not None:
            return tuple(_gather(memory[name], indices, target) for name, target in zip(self.inputs, out))
        size = self.block_size
        blocks, block_of = np.unique(indices // size, return_inverse=True)
        # Consecutive blocks form one selection: fewer, longer HDF5 reads.
        run_starts = np.flatnonzero(np.diff(blocks, prepend=-2) != 1)
        run_stops = np.append(run_starts[1:], len(blocks))
        rows = block_of * size + indices % size  # row of each sample in the buffer of read blocks
        data = self._handle()["data"]
        gathered = []
        for name, target in zip(self.inputs, out):
            dataset = data[name]
            buffer = np.empty((len(blocks) * size, *dataset.shape[1:]), dtype=dataset.dtype)
            for first, stop in zip(run_starts, run_stops):
                start_row = int(blocks[first]) * size
                stop_row = min(int(blocks[stop - 1] + 1) * size, self.n_samples)
                dataset.read_direct(buffer, np.s_[start_row:stop_row], np.s_[first * size : first * size + stop_row - start_row])
            gathered.append(_gather(buffer, rows, target))
        return tuple(gathered)

    def __getitem__(self, indices: Sequence[int] | np.ndarray) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        indices = np.atleast_1d(np.asarray(indices, dtype=np.int64))
        arrays = self.read(indices)
        tensors = tuple(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in arrays)
        return tensors, self.labels_of(indices)

    def labels_of(self, indices: np.ndarray) -> torch.Tensor | None:
        """float32 labels of ``indices`` (None without a label column)."""
        return None if self.labels is None else torch.from_numpy(self.labels[np.asarray(indices, dtype=np.int64)])

    def __getstate__(self) -> dict:
        # h5py handles cannot be pickled into worker processes; reopen there.
        state = dict(self.__dict__)
        state["_file"] = None
        return state


def _gather(source: np.ndarray, rows: np.ndarray, target: np.ndarray | None) -> np.ndarray:
    """``source[rows]`` as float32, into ``target`` when given (one copy either way)."""
    if target is None:
        return np.ascontiguousarray(source[rows], dtype=np.float32)
    if source.dtype == target.dtype:
        np.take(source, rows, axis=0, out=target)
    else:
        target[...] = source[rows]
    return target


class EpochBatches(torch.utils.data.Sampler):
    """Index batches of one epoch for one rank in chunk-aware order, resumable at any step.

    Training order (``shuffle=True``), a pure function of ``(seed, epoch)``,
    the layout (``block_size``, ``window_blocks``) and ``world_size``:

    1. the indices are grouped into blocks of ``block_size`` consecutive
       samples (the product's chunks along the sample axis);
    2. the blocks are permuted and dealt round-robin to the ranks, so each
       rank reads a disjoint shard of the chunks;
    3. each rank's blocks form consecutive windows of ``window_blocks``
       blocks (the shuffle buffer), and the samples of each window are
       permuted;
    4. the concatenated windows are cut into batches of
       ``global_batch_size // world_size``; every rank makes the same number
       of steps, that of the longest shard, a shorter shard wrapping round to
       its own beginning (as does the last, partial batch of one process).

    Every sample is thus seen once per epoch, apart from the wrapped ones,
    and a window's chunks are decompressed once (:class:`ChunkStream`). A
    sample's batch-mates come from its window, so the window should be much
    larger than any run of similar samples in the product's order.
    Evaluation order (``shuffle=False``) is ``indices`` as given, one rank,
    the last batch short.

    Parameters
    ----------
    indices : numpy.ndarray
        Sample indices to draw from (e.g. the training split); distinct.
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
    block_size : int
        Samples per chunk along the sample axis
        (:attr:`ProductDataset.block_size`); halved while the ranks
        outnumber the blocks of a small split.
    window_blocks : int
        Blocks shuffled together (:meth:`ProductDataset.window_blocks`).

    Raises
    ------
    ValueError
        If the global batch does not divide among the ranks, the split has
        fewer samples than there are ranks, or evaluation order is asked of
        several ranks.
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
        block_size: int = 1,
        window_blocks: int = 1,
    ) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"global batch size {global_batch_size} is not divisible by {world_size} processes")
        if not shuffle and world_size != 1:
            raise ValueError("evaluation order (shuffle=False) is for one process")
        if block_size < 1 or window_blocks < 1:
            raise ValueError(f"block_size ({block_size}) and window_blocks ({window_blocks}) must be positive")
        self.indices = np.asarray(indices, dtype=np.int64)
        if len(self.indices) < world_size:
            raise ValueError(f"{len(self.indices)} samples cannot be shared among {world_size} processes")
        self.global_batch_size = global_batch_size
        self.local_batch_size = global_batch_size // world_size
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start_step = start_step
        self.shuffle = shuffle
        self.window_blocks = window_blocks
        if shuffle:
            self.block_size, self._windows, longest = self._shuffled_windows(block_size)
            n_steps = -(-longest // self.local_batch_size)
        else:
            self.block_size = block_size
            # A window spans window_blocks blocks, however sparse the indices are in them.
            block_of = self.indices // block_size
            block_number = np.cumsum(np.r_[True, block_of[1:] != block_of[:-1]]) - 1 if len(block_of) else block_of
            self._windows = np.split(self.indices, np.flatnonzero(np.diff(block_number // window_blocks)) + 1)
            n_steps = -(-len(self.indices) // self.local_batch_size)
        self.n_steps = min(n_steps, max_steps) if max_steps else n_steps

    def _shuffled_windows(self, block_size: int) -> tuple[int, list[np.ndarray], int]:
        """(block size used, this rank's windows, samples of the longest rank's shard)."""
        order = np.sort(self.indices)
        while True:
            block_ids, first = np.unique(order // block_size, return_index=True)
            if len(block_ids) >= self.world_size or block_size == 1:
                break
            block_size //= 2  # a split smaller than one chunk per rank: share chunks
        bounds = np.append(first, len(order))
        counts = np.diff(bounds)
        permuted = np.random.default_rng([self.seed, self.epoch, _ORDER_SALT]).permutation(len(block_ids))
        longest = max(int(counts[permuted[r :: self.world_size]].sum()) for r in range(self.world_size))
        mine = permuted[self.rank :: self.world_size]
        windows = []
        for number, start in enumerate(range(0, len(mine), self.window_blocks)):
            samples = np.concatenate([order[bounds[b] : bounds[b + 1]] for b in mine[start : start + self.window_blocks]])
            generator = np.random.default_rng([self.seed, self.epoch, _ORDER_SALT, self.rank, number])
            windows.append(samples[generator.permutation(len(samples))])
        return block_size, windows, longest

    def __len__(self) -> int:
        return max(0, self.n_steps - self.start_step)

    def windows(self) -> list[np.ndarray]:
        """The sample indices of the remaining steps, as whole or partial shuffle windows in order.

        Their concatenation is the concatenation of the batches that
        iteration yields (wrapped samples included, as a last piece), which is
        what lets :class:`ChunkStream` read window by window and still give
        the batches of the in-memory path.
        """
        start = self.start_step * self.local_batch_size
        stop = self.n_steps * self.local_batch_size if self.shuffle else min(len(self.indices), self.n_steps * self.local_batch_size)
        pieces, position = [], 0
        for window in self._windows:
            low, high = max(position, start), min(position + len(window), stop)
            if low < high:
                pieces.append(window[low - position : high - position])
            position += len(window)
        if stop > position:  # wrap round to the shard's beginning so every step is full
            pieces.append(np.resize(np.concatenate(self._windows), stop)[max(position, start) :])
        return pieces

    def __iter__(self) -> Iterator[np.ndarray]:
        pieces = self.windows()
        order = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
        for start in range(0, len(order), self.local_batch_size):
            yield order[start : start + self.local_batch_size]


class _WindowReader(torch.utils.data.IterableDataset):
    """Reads shuffle windows in order; DataLoader worker ``k`` of ``n`` reads windows ``k, k + n, ...``.

    The DataLoader takes one item from each worker in turn, so the windows
    come back in order whatever the number of workers.
    """

    def __init__(self, dataset: ProductDataset, windows: list[np.ndarray]) -> None:
        self.dataset, self.windows = dataset, windows

    def __iter__(self) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
        info = torch.utils.data.get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        for number in range(worker, len(self.windows), n_workers):
            indices = self.windows[number]
            tensors = [torch.empty((len(indices), *self.dataset.sample_shapes[name]), dtype=torch.float32) for name in self.dataset.inputs]
            if info is not None:  # decode straight into shared memory: no copy on the way to the trainer
                tensors = [tensor.share_memory_() for tensor in tensors]
            self.dataset.read_window(indices, out=[tensor.numpy() for tensor in tensors])
            yield torch.from_numpy(indices), tuple(tensors)


class ChunkStream:
    """The batches of an :class:`EpochBatches` read window by window (the out-of-core path).

    Worker processes read and decompress whole shuffle windows
    (:meth:`ProductDataset.read_window`) while the model trains; the training
    process cuts them into batches, views of one window except where a batch
    straddles two. The batches are those of ``dataset[batch]`` for each
    batch of the sampler, whatever ``num_workers``.

    Parameters
    ----------
    dataset : ProductDataset
        The product.
    sampler : EpochBatches
        Order and batch size.
    num_workers : int
        DataLoader worker processes (0: read in this process).
    pin_memory : bool
        Pin the windows for asynchronous copies to the GPU.
    prefetch_windows : int
        Windows each worker reads ahead.
    """

    def __init__(
        self, dataset: ProductDataset, sampler: EpochBatches, *, num_workers: int = 0, pin_memory: bool = False,
        prefetch_windows: int = 2,
    ) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.num_workers, self.pin_memory, self.prefetch_windows = num_workers, pin_memory, prefetch_windows

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
        windows = self.sampler.windows()
        workers = min(self.num_workers, len(windows))
        loader = torch.utils.data.DataLoader(
            _WindowReader(self.dataset, windows), batch_size=None, num_workers=workers, pin_memory=self.pin_memory,
            prefetch_factor=self.prefetch_windows if workers else None,
        )
        size = self.sampler.local_batch_size
        pending: list[tuple[torch.Tensor, tuple[torch.Tensor, ...]]] = []
        n_pending = 0
        for indices, arrays in loader:
            offset = 0
            while offset < len(indices):
                take = min(size - n_pending, len(indices) - offset)
                piece = (indices[offset : offset + take], tuple(a[offset : offset + take] for a in arrays))
                offset += take
                if take == size:  # a whole batch inside one window: views, no copy
                    yield self._batch(*piece)
                    continue
                pending.append(piece)
                n_pending += take
                if n_pending == size:
                    yield self._joined(pending)
                    pending, n_pending = [], 0
        if pending:  # evaluation order: a short last batch
            yield self._joined(pending)

    def _joined(self, pieces: list[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        indices = torch.cat([piece[0] for piece in pieces])
        arrays = tuple(torch.cat(parts) for parts in zip(*(piece[1] for piece in pieces)))
        if self.pin_memory:
            arrays = tuple(a.pin_memory() for a in arrays)
        return self._batch(indices, arrays)

    def _batch(self, indices: torch.Tensor, arrays: tuple[torch.Tensor, ...]) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        return arrays, self.dataset.labels_of(indices.numpy())


def epoch_loader(
    dataset: ProductDataset, sampler: EpochBatches, *, num_workers: int = 0, pin_memory: bool = False
) -> Iterable[tuple[tuple[torch.Tensor, ...], torch.Tensor | None]]:
    """The batches of ``sampler`` as ``(inputs, labels)``, in memory or streamed by chunks.

    An in-memory product is gathered batch by batch in this process (there is
    nothing to decompress, and workers would copy every batch once more); a
    larger one is streamed by :class:`ChunkStream` with ``num_workers``
    workers. Both give the same batches.
    """
    if dataset.in_memory:
        return torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=0, pin_memory=pin_memory)
    return ChunkStream(dataset, sampler, num_workers=num_workers, pin_memory=pin_memory)
