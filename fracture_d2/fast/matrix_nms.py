"""Greedy NMS for many groups of boxes at once, as tensor operations (``FRACTURE.FAST.MATRIX_NMS``).

torchvision's NMS handles one set of boxes per call, and on a GPU each call ends in a serial
kernel and a host wait (the H200 profile in docs/speed.md: the RPN's per-image NMS was a quarter of
the GPU time of a training step of batch 16). :func:`nms_keep` computes the same result for a
whole (groups, boxes) tensor at once (every image and pyramid level of a batch, or every image
and class) from the pairwise-IoU matrix:

greedy NMS keeps box ``i`` (in descending score order) iff no *kept* box before it overlaps it by
more than the threshold. That recursion has one solution, and iterating it from "all kept"
(``keep = valid & ~any(S & keep)``, ``S[i, j]``: ``j`` before ``i`` and IoU > threshold) reaches
it: after ``t`` rounds every box whose decision depends on a chain of at most ``t`` earlier
decisions is final, and a round that changes nothing is the solution (the Jacobi form of
Cluster-NMS, Zheng et al. 2021). On the synthetic radiographs' RPN proposals 3-10 rounds
sufficed; the convergence check costs one host wait per ``check_every`` rounds.

The IoU uses torchvision's arithmetic (``inter / (area_i + area_j - inter)`` in the boxes'
dtype, suppression when strictly greater than the threshold), so the kept boxes are
torchvision's (tested); boxes with equal scores are ordered by index (torchvision's CPU kernel;
its CUDA kernel leaves ties unordered). Memory: ``groups x boxes^2`` booleans (80 MB for 16
images x 5 levels x 1000 boxes) plus the IoU of a chunk of groups at a time.
"""

from __future__ import annotations

import torch

# IoU entries computed at once (float32: 256 MB), so large batches are done in chunks of groups
CHUNK_ELEMENTS = 1 << 26

# Rounds before a caller first reads the convergence flag (with counts it reads anyway). On the
# demo model's RPN proposals (`tools/dev/nms_rounds.py`, docs/speed.md) a sizeable share of the
# image-level groups needs more than 6 rounds, and a batch of 16 has 80 groups, so 6 rounds
# would nearly always mean a second read.
FIRST_ROUNDS = 12


def _suppression(boxes: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """(G, K, K) bool: ``S[g, i, j]`` = ``j < i`` and IoU(i, j) > threshold (boxes in descending
    score order). Invalid boxes need no mask here: the iteration never keeps one, so it
    suppresses nothing, and whatever suppresses it, it stays dropped. In-place steps: the same
    arithmetic with fewer full-size temporaries."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    a, b = boxes.unsqueeze(-2), boxes.unsqueeze(-3)  # (G, K, 1, 4), (G, 1, K, 4)
    w = torch.minimum(a[..., 2], b[..., 2]).sub_(torch.maximum(a[..., 0], b[..., 0])).clamp_(min=0)
    h = torch.minimum(a[..., 3], b[..., 3]).sub_(torch.maximum(a[..., 1], b[..., 1])).clamp_(min=0)
    inter = w.mul_(h)
    iou = inter.div_((area[..., :, None] + area[..., None, :]).sub_(inter))
    k = boxes.shape[1]
    earlier = torch.ones(k, k, dtype=torch.bool, device=boxes.device).tril_(-1)
    return (iou > iou_threshold).logical_and_(earlier)


def _prepare(boxes, scores, valid, iou_threshold):
    """Score order of each group, the valid mask in that order and the suppression matrix."""
    g, k = scores.shape
    ranked = scores.masked_fill(~valid, float("-inf"))
    idx = torch.sort(ranked, dim=1, descending=True, stable=True).indices
    boxes = boxes.float()  # as Detectron2's batched_nms (half precision lacks the range)
    sorted_boxes = boxes.gather(1, idx[..., None].expand(-1, -1, 4))
    sorted_valid = valid.gather(1, idx)
    step = max(1, CHUNK_ELEMENTS // (k * k))
    suppress = torch.cat(
        [_suppression(sorted_boxes[s : s + step], iou_threshold) for s in range(0, g, step)]
    )
    return idx, sorted_valid, suppress


def _round(keep, sorted_valid, suppress):
    """One round: kept iff valid and no kept box before it suppresses it."""
    return sorted_valid & ~(suppress & keep[:, None, :]).any(dim=2)


class MatrixNMS:
    """The iteration of :func:`nms_keep` in steps, for callers that fold its convergence check
    into a host read they make anyway: ``MatrixNMS(boxes, scores, valid, threshold)``, then
    :meth:`rounds` (no host wait; returns a convergence flag on the device) and, if that flag
    is False, :meth:`finish` (checked rounds from where :meth:`rounds` stopped); :meth:`mask`
    gives the kept boxes in input order at any point."""

    def __init__(self, boxes, scores, valid, iou_threshold: float):
        self.valid = valid
        self.empty = scores.shape[0] == 0 or scores.shape[1] == 0
        if self.empty:
            self.keep = valid.clone()
            return
        self.idx, self.sorted_valid, self.suppress = _prepare(boxes, scores, valid, iou_threshold)
        self.keep = self.sorted_valid

    def rounds(self, n: int) -> torch.Tensor:
        """``n`` rounds (at least 1) without a host wait: a 0-d bool tensor, True iff the last
        round changed nothing, i.e. :meth:`mask` is greedy NMS's."""
        if self.empty:
            return torch.ones((), dtype=torch.bool, device=self.valid.device)
        previous = self.keep
        for _ in range(max(1, n)):
            previous, self.keep = self.keep, _round(self.keep, self.sorted_valid, self.suppress)
        return (self.keep == previous).all()

    def finish(self, check_every: int = 6) -> None:
        """Rounds until one changes nothing, checked on the host every ``check_every`` rounds
        (a host wait each)."""
        if self.empty:
            return
        for _ in range(self.keep.shape[1] + 1):  # at most k rounds: each fixes one more box
            if bool(self.rounds(check_every)):
                break

    def mask(self) -> torch.Tensor:
        """(G, K) bool: the boxes kept so far, in input order."""
        if self.empty:
            return self.keep
        return torch.zeros_like(self.valid).scatter_(1, self.idx, self.keep)


def nms_keep(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    valid: torch.Tensor,
    iou_threshold: float,
    check_every: int = 6,
) -> torch.Tensor:
    """Greedy NMS in every group: (G, K, 4) boxes, (G, K) scores and validity (invalid boxes are
    neither kept nor suppress others) -> (G, K) bool mask of the kept boxes, in input order.

    Equals ``torchvision.ops.nms`` run on each group's valid boxes. One host wait per
    ``check_every`` rounds of the iteration (see the module doc)."""
    nms = MatrixNMS(boxes, scores, valid, iou_threshold)
    nms.finish(check_every)
    return nms.mask()


def nms_keep_rounds(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    valid: torch.Tensor,
    iou_threshold: float,
    rounds: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`nms_keep` with a fixed number of rounds and no host wait (static shapes, for
    ``torch.compile`` / CUDA graphs): the keep mask and a 0-d bool tensor, True iff the last
    round changed nothing, i.e. the mask is greedy NMS's (else the caller must redo it)."""
    nms = MatrixNMS(boxes, scores, valid, iou_threshold)
    converged = nms.rounds(rounds)
    return nms.mask(), converged


def rounds_needed(
    boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """(G,) int64: per group, the rounds after which a round first changes nothing, i.e. the
    fewest ``rounds`` for which :func:`nms_keep_rounds` reports convergence on that group alone
    (a batch needs the maximum over its groups). For choosing :data:`FIRST_ROUNDS` /
    ``FRACTURE.FAST.NMS_ROUNDS`` (``tools/dev/nms_rounds.py``); one host read per round."""
    nms = MatrixNMS(boxes, scores, valid, iou_threshold)
    need = torch.ones(scores.shape[0], dtype=torch.int64, device=scores.device)
    if nms.empty:
        return need
    done = torch.zeros_like(need, dtype=torch.bool)
    for t in range(1, scores.shape[1] + 2):
        previous = nms.keep
        nms.rounds(1)
        same = (nms.keep == previous).all(dim=1)
        need = torch.where(same & ~done, t, need)
        done |= same
        if bool(done.all()):
            break
    return need
