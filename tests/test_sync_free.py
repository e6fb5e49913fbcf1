"""Sync-free label assignment (fracture_d2.engine.sync_free) against Detectron2's own."""

import pytest
import torch
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.sampling import subsample_labels

from fracture_d2.engine.sync_free import SyncFreeMatcher, make_sync_free, sample_mask

MATCHERS = [  # Detectron2's defaults: RPN (low-quality matches on) and ROI heads
    ([0.3, 0.7], [0, -1, 1], True),
    ([0.5], [0, 1], False),
]


def random_iou(g: torch.Generator, m: int, n: int) -> torch.Tensor:
    q = torch.rand(m, n, generator=g)
    q[q < 0.5] = 0.0  # many zero overlaps, as in real IoU matrices
    if m and n:
        q[:, n // 2] = q.max(dim=1).values  # ties for the best match
    return q


@pytest.mark.parametrize("thresholds,labels,low_quality", MATCHERS)
def test_matcher_identical(thresholds, labels, low_quality):
    g = torch.Generator().manual_seed(0)
    ref = Matcher(thresholds, labels, allow_low_quality_matches=low_quality)
    new = SyncFreeMatcher.like(ref)
    for m, n in [(1, 50), (3, 200), (7, 1000), (0, 30), (2, 0)]:
        for _ in range(5):
            q = random_iou(g, m, n)
            for a, b in zip(ref(q), new(q), strict=True):
                assert a.dtype == b.dtype and torch.equal(a, b)
    with pytest.raises(AssertionError):
        new(torch.tensor([[0.5, -0.1]]))


def test_sample_mask_sizes_and_uniformity():
    g = torch.Generator().manual_seed(1)
    for n, p_pos in [(1000, 0.01), (1000, 0.5), (300, 0.9), (40, 0.1)]:
        labels = torch.full((n,), -1, dtype=torch.int8)
        u = torch.rand(n, generator=g)
        labels[u < 0.6] = 0
        labels[u < p_pos] = 1
        pos_idx, neg_idx = subsample_labels(labels, 256, 0.5, 0)
        torch.manual_seed(2)
        pos, neg = sample_mask(labels, 256, 0.5, 0)
        assert int(pos.sum()) == pos_idx.numel() and int(neg.sum()) == neg_idx.numel()
        assert bool((labels[pos] == 1).all()) and bool((labels[neg] == 0).all())
    # each of 100 positives is drawn with probability 0.3 (30 of 100 per draw)
    labels = torch.tensor([1] * 100 + [0] * 500, dtype=torch.int8)
    counts = torch.zeros(100)
    torch.manual_seed(3)
    for _ in range(2000):
        pos, _neg = sample_mask(labels, 60, 0.5, 0)
        counts += pos[:100].float()
    assert counts.sum() == 2000 * 30
    freq = counts / 2000  # binomial sd ~0.01 per entry
    assert float((freq - 0.3).abs().max()) < 0.05


def test_make_sync_free_model_trains_and_keeps_roi_draws(tmp_path):
    from detectron2.modeling import build_model

    from fracture_d2.config import get_fracture_cfg

    cfg = get_fracture_cfg()
    cfg.merge_from_file("configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml")
    cfg.MODEL.DEVICE = "cpu"
    torch.manual_seed(0)
    model = build_model(cfg)
    ref_roi = model.roi_heads._sample_proposals
    make_sync_free(model)
    assert isinstance(model.proposal_generator.anchor_matcher, SyncFreeMatcher)
    assert isinstance(model.roi_heads.proposal_matcher, SyncFreeMatcher)
    # the ROI heads' sampling: same indices and classes for the same random state
    g = torch.Generator().manual_seed(4)
    matched_idxs = torch.randint(0, 3, (400,), generator=g)
    matched_labels = torch.randint(-1, 2, (400,), generator=g).to(torch.int8)
    gt_classes = torch.zeros(3, dtype=torch.int64)
    for args in [
        (matched_idxs, matched_labels, gt_classes),
        (matched_idxs, matched_labels, gt_classes[:0]),
    ]:
        torch.manual_seed(5)
        a = ref_roi(*args)
        torch.manual_seed(5)
        b = model.roi_heads._sample_proposals(*args)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    # the RPN's anchor sampling: as many 1s and 0s as Detectron2's, only where they were
    rpn = model.proposal_generator
    labels = torch.randint(-1, 2, (5000,), generator=g).to(torch.int8)
    pos_idx, neg_idx = subsample_labels(labels, rpn.batch_size_per_image, rpn.positive_fraction, 0)
    out = rpn._subsample_labels(labels.clone())
    assert int((out == 1).sum()) == pos_idx.numel() and int((out == 0).sum()) == neg_idx.numel()
    assert bool((labels[out == 1] == 1).all()) and bool((labels[out == 0] == 0).all())
    # a training step runs and gives finite losses
    from detectron2.structures import Boxes, Instances

    inst = Instances((128, 160))
    inst.gt_boxes = Boxes(torch.tensor([[20.0, 30.0, 60.0, 70.0], [90.0, 10.0, 120.0, 50.0]]))
    inst.gt_classes = torch.zeros(2, dtype=torch.int64)
    empty = Instances((128, 160))
    empty.gt_boxes = Boxes(torch.zeros(0, 4))
    empty.gt_classes = torch.zeros(0, dtype=torch.int64)
    batch = [
        {"image": torch.rand(3, 128, 160) * 255, "instances": inst},
        {"image": torch.rand(3, 128, 160) * 255, "instances": empty},
    ]
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage(0):
        losses = model(batch)
    assert set(losses) >= {"loss_rpn_cls", "loss_cls"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
