"""Training samplers for imbalanced radiograph data."""

from __future__ import annotations

import itertools

import torch
from detectron2.utils import comm
from torch.utils.data.sampler import Sampler


class NegativeCapTrainingSampler(Sampler):
    """Infinite sampler: each epoch has every positive image and at most ``ratio`` negatives per
    positive, drawn afresh each epoch (so over time every negative is seen).

    Like Detectron2's ``TrainingSampler``, ranks take interleaved slices of one seeded stream.
    """

    def __init__(self, dataset_dicts: list, neg_pos_ratio: float, seed: int | None = None):
        if neg_pos_ratio <= 0:
            raise ValueError(f"DATALOADER.NEG_POS_RATIO must be > 0, got {neg_pos_ratio}")
        # positives: boxed, or abnormal by their image label (boxes unknown)
        positive = [
            bool(d.get("annotations")) or d.get("image_label", 0) == 1 for d in dataset_dicts
        ]
        self._pos = [i for i, p in enumerate(positive) if p]
        self._neg = [i for i, p in enumerate(positive) if not p]
        if not self._pos:
            raise ValueError("NegativeCapTrainingSampler: the training set has no positive images")
        self._n_neg = min(len(self._neg), int(round(neg_pos_ratio * len(self._pos))))
        self._seed = int(comm.shared_random_seed() if seed is None or seed < 0 else seed)
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()

    @property
    def epoch_size(self) -> int:
        """Images per epoch: all positives plus the capped number of negatives."""
        return len(self._pos) + self._n_neg

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        pos, neg = torch.tensor(self._pos), torch.tensor(self._neg, dtype=torch.long)
        while True:
            negs = neg[torch.randperm(len(neg), generator=g)[: self._n_neg]]
            epoch = torch.cat([pos, negs])
            yield from epoch[torch.randperm(len(epoch), generator=g)].tolist()
