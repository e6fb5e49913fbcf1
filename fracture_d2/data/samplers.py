"""Training samplers for imbalanced radiograph data."""

from __future__ import annotations

import itertools

import torch
from detectron2.utils import comm
from torch.utils.data.sampler import Sampler


class NegativeCapTrainingSampler(Sampler):
    """Infinite sampler: each epoch has every positive image and at most ``ratio`` negatives per
    positive, drawn afresh each epoch (so over time every negative is seen).

    With ``image_label_share`` > 0 and image-label-only positives (``"annotated": false``) in
    the data, those images form a stream of their own that fills that share of the sampled
    images (every ``1 / share``-th one), and the cap counts boxed positives only. The share is
    a ceiling: where label-only images are fewer (a self-training student, whose teacher boxed
    most of them), they keep their share of an epoch rather than being repeated. Left to their
    natural share, a few boxed positives among many label-only ones reach the RPN and box head
    too rarely to learn from in a short schedule (measured: docs/supervision.md); fixed shares
    of box-labelled and image-labelled images per batch are what Detic and Unbiased Teacher do.

    Like Detectron2's ``TrainingSampler``, ranks take interleaved slices of one seeded stream.
    """

    def __init__(
        self,
        dataset_dicts: list,
        neg_pos_ratio: float,
        seed: int | None = None,
        image_label_share: float = 0.0,
    ):
        if neg_pos_ratio < 0:
            raise ValueError(f"DATALOADER.NEG_POS_RATIO must be >= 0, got {neg_pos_ratio}")
        if not 0 <= image_label_share < 1:
            raise ValueError(
                f"DATALOADER.IMAGE_LABEL_SHARE must be in [0, 1), got {image_label_share}"
            )
        # positives: boxed, or abnormal by their image label (boxes unknown)
        positive = [
            bool(d.get("annotations")) or d.get("image_label", 0) == 1 for d in dataset_dicts
        ]
        label_only = [not d.get("annotated", True) for d in dataset_dicts]
        own = [lo and image_label_share > 0 for lo in label_only]  # in a stream of their own
        self._label_only = [i for i, o in enumerate(own) if o]
        self._pos = [i for i, p in enumerate(positive) if p and not own[i]]
        self._neg = [i for i, p in enumerate(positive) if not p]
        if not self._pos and not self._label_only:
            raise ValueError("NegativeCapTrainingSampler: the training set has no positive images")
        cap = len(self._neg) if neg_pos_ratio == 0 else int(round(neg_pos_ratio * len(self._pos)))
        self._n_neg = min(len(self._neg), cap)
        if self._label_only and not self.epoch_size:  # the box-complete stream would be empty
            raise ValueError(
                "DATALOADER.IMAGE_LABEL_SHARE: the training set has no box-complete images to "
                "sample (no boxed positives, and negatives capped by NEG_POS_RATIO at 0 of them)"
            )
        n_label = len(self._label_only)
        natural = n_label / (n_label + self.epoch_size) if n_label else 0.0
        self._share = min(image_label_share, natural)
        self._seed = int(comm.shared_random_seed() if seed is None or seed < 0 else seed)
        self._rank, self._world_size = comm.get_rank(), comm.get_world_size()

    @property
    def epoch_size(self) -> int:
        """Box-complete images per epoch: the positives plus the capped number of negatives
        (plus, without a share of their own, the image-label-only positives)."""
        return len(self._pos) + self._n_neg

    @property
    def image_label_share(self) -> float:
        """The share of sampled images that are image-label-only positives (0: their own
        share of the data, in the same epochs as the others)."""
        return self._share

    def __iter__(self):
        yield from itertools.islice(self._infinite_indices(), self._rank, None, self._world_size)

    def _infinite_indices(self):
        g = torch.Generator()
        g.manual_seed(self._seed)
        boxed = self._box_complete(g)
        if not self._share:
            yield from boxed
            return
        labels = self._shuffled_epochs(self._label_only, g)
        for i in itertools.count():  # image i is label-only when i * share crosses an integer
            crossed = int((i + 1) * self._share) > int(i * self._share)
            yield next(labels) if crossed else next(boxed)

    def _box_complete(self, g):
        pos = torch.tensor(self._pos, dtype=torch.long)
        neg = torch.tensor(self._neg, dtype=torch.long)
        while True:
            negs = neg[torch.randperm(len(neg), generator=g)[: self._n_neg]]
            epoch = torch.cat([pos, negs])
            yield from epoch[torch.randperm(len(epoch), generator=g)].tolist()

    @staticmethod
    def _shuffled_epochs(indices: list, g):
        idx = torch.tensor(indices, dtype=torch.long)
        while True:
            yield from idx[torch.randperm(len(idx), generator=g)].tolist()
