"""The batched heads (fracture_d2.fast: BatchedRPN, BatchedROIHeads) against Detectron2's
per-image code."""

import copy

import pytest
import torch
from detectron2.modeling.matcher import Matcher
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.sampling import subsample_labels
from detectron2.structures import Boxes, Instances, pairwise_iou
from detectron2.utils.events import EventStorage
from fast_utils import batched as batched_copy
from fast_utils import smoke_cfg, stock_model
from rpn_utils import find_top_proposals
from sync_utils import HostReads, OpNames

from fracture_d2.fast.padded import match_batched, pad_boxes, pairwise_iou_batched, sample_mask
from fracture_d2.fast.roi_heads import GT_LOGIT

SIZE = (128, 160)  # (h, w) of every test image


def random_boxes(g: torch.Generator, n: int, h: int = SIZE[0], w: int = SIZE[1]) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 4 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    return torch.cat([xy, xy + wh], dim=1)


def near(g: torch.Generator, boxes: torch.Tensor, k: int) -> torch.Tensor:
    """``k`` jittered copies of each box: overlaps of every quality."""
    rep = boxes.repeat_interleave(k, dim=0)
    return rep + torch.randn(rep.shape, generator=g) * 6


def gt_list(g: torch.Generator, counts=(2, 0, 5, 1)) -> list:
    return [random_boxes(g, n) for n in counts]


@pytest.fixture(scope="module")
def model():
    return stock_model()


def test_iou_and_matchers_identical():
    g = torch.Generator().manual_seed(0)
    gts = gt_list(g)
    props = [torch.cat([near(g, b, 30), random_boxes(g, 200)]) for b in gts]
    gt, valid = pad_boxes(gts, "cpu")
    assert gt.shape == (4, 5, 4) and valid.sum(1).tolist() == [2, 0, 5, 1]
    boxes, _ = pad_boxes(props, "cpu")
    iou = pairwise_iou_batched(gt, boxes)
    shared = pairwise_iou_batched(gt, props[0])  # one set of boxes for every image (anchors)
    for matcher in (Matcher([0.3, 0.7], [0, -1, 1], True), Matcher([0.5], [0, 1], False)):
        matches, labels = match_batched(matcher, iou, valid)
        for i, (gt_i, props_i) in enumerate(zip(gts, props, strict=True)):
            ref = pairwise_iou(Boxes(gt_i), Boxes(props_i))
            n = len(props_i)
            assert torch.equal(iou[i, : len(gt_i), :n], ref)
            assert torch.equal(shared[i, : len(gt_i)], pairwise_iou(Boxes(gt_i), Boxes(props[0])))
            ref_matches, ref_labels = matcher(ref)
            assert torch.equal(labels[i, :n], ref_labels)
            if len(gt_i):  # Detectron2 gives index 0 to every box of an image without gt
                assert torch.equal(matches[i, :n], ref_matches)
    empty_gt, empty_valid = pad_boxes([torch.zeros(0, 4)] * 2, "cpu")
    empty_iou = pairwise_iou_batched(empty_gt, props[0])
    m, lab = match_batched(Matcher([0.5], [0, 1]), empty_iou, empty_valid)
    assert m.shape == lab.shape == (2, len(props[0])) and bool((lab == 0).all())


def test_batched_sample_mask_rows():
    g = torch.Generator().manual_seed(1)
    labels = torch.full((3, 2000), -1, dtype=torch.int8)
    u = torch.rand(3, 2000, generator=g)
    labels[u < 0.7] = 0
    for row, p_pos in enumerate([0.002, 0.2, 0.6]):
        labels[row, u[row] < p_pos] = 1
    torch.manual_seed(0)
    pos, neg = sample_mask(labels, 256, 0.5, 0)
    for row in range(3):
        pos_idx, neg_idx = subsample_labels(labels[row], 256, 0.5, 0)
        assert int(pos[row].sum()) == pos_idx.numel() and int(neg[row].sum()) == neg_idx.numel()
        assert bool((labels[row][pos[row]] == 1).all()) and bool((labels[row][neg[row]] == 0).all())
    # uniform within a row: each of 100 positives drawn with probability 30/100
    labels = torch.tensor([[1] * 100 + [0] * 500] * 4, dtype=torch.int8)
    counts = torch.zeros(4, 100)
    for _ in range(500):
        p, _n = sample_mask(labels, 60, 0.5, 0)
        counts += p[:, :100].float()
    freq = counts / 500  # binomial sd ~0.02 per entry
    assert counts.sum() == 4 * 500 * 30 and float((freq - 0.3).abs().max()) < 0.1


def test_rpn_anchor_labels_match_detectron2(model):
    rpn = model.proposal_generator
    stock = copy.deepcopy(rpn)
    stock._subsample_labels = lambda label: label  # Detectron2's labels before sampling
    batched = batched_copy(model).proposal_generator
    g = torch.Generator().manual_seed(2)
    anchors = [Boxes(random_boxes(g, 3000)), Boxes(random_boxes(g, 800))]
    gts = gt_list(g)
    insts = []
    for b in gts:
        inst = Instances(SIZE)
        inst.gt_boxes = Boxes(b)
        insts.append(inst)
    full, full_boxes = stock.label_and_sample_anchors(anchors, insts)
    labels, boxes = batched.label_and_sample_anchors(anchors, insts)
    assert labels.shape == (4, 3800) and boxes.shape == (4, 3800, 4)
    for i in range(4):
        pos_idx, neg_idx = subsample_labels(
            full[i], rpn.batch_size_per_image, rpn.positive_fraction, 0
        )
        pos, neg = labels[i] == 1, labels[i] == 0
        assert int(pos.sum()) == pos_idx.numel() and int(neg.sum()) == neg_idx.numel()
        assert bool((full[i][pos] == 1).all()) and bool((full[i][neg] == 0).all())
        assert torch.equal(boxes[i][pos], full_boxes[i][pos])
    assert int((labels[1] == 1).sum()) == 0 and not boxes[1].any()  # the image without gt
    assert int((labels == 1).sum()) > 10  # the other images have positives

    # losses: the same values and gradients as Detectron2's on the same targets
    logits = [torch.randn(4, 3000, generator=g), torch.randn(4, 800, generator=g)]
    deltas = [torch.randn(4, 3000, 4, generator=g), torch.randn(4, 800, 4, generator=g)]
    for t in logits + deltas:
        t.requires_grad_(True)
    with EventStorage(0):
        ref = stock.losses(anchors, logits, list(labels), deltas, list(boxes))
        ref_grads = torch.autograd.grad(sum(ref.values()), logits + deltas)
        out = batched.losses(anchors, logits, labels, deltas, boxes)
        grads = torch.autograd.grad(sum(out.values()), logits + deltas)
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], rtol=1e-5, atol=1e-7)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_find_top_proposals_identical():
    g = torch.Generator().manual_seed(3)
    sizes = [SIZE, (100, 120), (64, 64)]
    proposals, logits = [], []
    for n in (900, 300, 40):
        boxes = torch.stack([random_boxes(g, n, 140, 170) - 10 for _ in sizes])
        boxes[:, ::7, 2] = boxes[:, ::7, 0]  # empty boxes
        proposals.append(boxes)
        logits.append(torch.randn(len(sizes), n, generator=g))
    proposals[0][1, 5, 0] = float("nan")
    logits[1][2, 3] = float("inf")
    args = (proposals, logits, sizes, 0.7, 500, 300, 0.0)
    ref = find_top_rpn_proposals(*args, False)
    out = find_top_proposals(*args, False)
    for a, b in zip(ref, out, strict=True):
        assert a.image_size == b.image_size and len(a) == len(b) > 0
        assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)
        assert torch.equal(a.objectness_logits, b.objectness_logits)
    with pytest.raises(FloatingPointError):
        find_top_proposals(*args, True)


def test_roi_sampling_matches_detectron2(model):
    roi = model.roi_heads
    batched = batched_copy(model).roi_heads
    g = torch.Generator().manual_seed(4)
    gts = gt_list(g)
    proposals, targets = [], []
    for b in gts:
        p = Instances(SIZE)
        p.proposal_boxes = Boxes(torch.cat([near(g, b, 20), random_boxes(g, 150)]))
        p.objectness_logits = torch.randn(len(p.proposal_boxes), generator=g)
        proposals.append(p)
        t = Instances(SIZE)
        t.gt_boxes = Boxes(b)
        t.gt_classes = torch.randint(0, roi.num_classes, (len(b),), generator=g)
        targets.append(t)
    with EventStorage(0):
        ref = roi.label_and_sample_proposals(proposals, targets)
        with HostReads() as reads:
            out = batched.label_and_sample_proposals(proposals, targets)
    assert reads.count == 1  # the sample sizes, for the whole batch
    bg = roi.num_classes
    assert sum(int((o.gt_classes != bg).sum()) for o in out) > 10  # foreground was sampled
    for r, o, t in zip(ref, out, targets, strict=True):
        assert len(o) == len(r)
        assert int((o.gt_classes == bg).sum()) == int((r.gt_classes == bg).sum())
        # every sampled box carries the class and box Detectron2 assigns it
        iou = pairwise_iou(t.gt_boxes, o.proposal_boxes)
        matches, labels = roi.proposal_matcher(iou)
        if len(t):
            want = t.gt_classes[matches].masked_fill(labels == 0, bg)
            assert torch.equal(o.gt_classes, want)
            fg = o.gt_classes != bg
            assert torch.equal(o.gt_boxes.tensor[fg], t.gt_boxes.tensor[matches][fg])
        else:
            assert bool((o.gt_classes == bg).all()) and not o.has("gt_boxes")
    # each sampled row is one of the image's proposals with its logit, or one of its ground-truth
    # boxes (appended, as Detectron2 does) with Detectron2's ground-truth logit
    for p, o, t in zip(proposals, out, targets, strict=True):
        rows = torch.cat([p.proposal_boxes.tensor, t.gt_boxes.tensor])
        logits = torch.cat([p.objectness_logits, torch.full((len(t),), GT_LOGIT)])
        same = (o.proposal_boxes.tensor[:, None] == rows[None]).all(dim=2)
        assert bool(same.any(dim=1).all())
        assert torch.equal(o.objectness_logits, logits[same.float().argmax(dim=1)])
    assert any(bool((o.objectness_logits == GT_LOGIT).any()) for o in out)

    # the read above also carried the pooler's boxes per level: pooling the sampled boxes
    # waits for nothing more and gives Detectron2's features; the counts serve that call only
    g = torch.Generator().manual_seed(7)
    feats = [torch.randn(4, 8, SIZE[0] // s, SIZE[1] // s, generator=g) for s in (4, 8, 16, 32)]
    sampled_boxes = [o.proposal_boxes for o in out]
    ref_pooled = roi.box_pooler(feats, sampled_boxes)
    with HostReads() as reads:
        pooled = batched.box_pooler(feats, sampled_boxes)
    assert reads.count == 0 and torch.equal(pooled, ref_pooled)
    with HostReads() as reads:
        pooled = batched.box_pooler(feats, sampled_boxes)
    assert reads.count == 1 and torch.equal(pooled, ref_pooled)
    with EventStorage(0):  # other boxes than the sampled ones: counted by the pooler
        batched.label_and_sample_proposals(proposals, targets)
    other = [Boxes(b.tensor.clone()) for b in sampled_boxes]
    with HostReads() as reads:
        pooled = batched.box_pooler(feats, other)
    assert reads.count == 1 and torch.equal(pooled, ref_pooled)

    # targets with other fields (masks, keypoints, ...) take Detectron2's own path
    for t in targets:
        t.gt_extra = torch.arange(len(t))
    with EventStorage(0):
        out = batched.label_and_sample_proposals(proposals, targets)
    assert all(o.has("gt_extra") for o, t in zip(out, targets, strict=True) if len(t))


def test_box_losses_match_detectron2(model):
    roi = model.roi_heads
    batched = batched_copy(model).roi_heads.box_predictor
    g = torch.Generator().manual_seed(5)
    proposals = []
    for n_gt in (3, 0):
        p = Instances(SIZE)
        p.proposal_boxes = Boxes(random_boxes(g, 40))
        p.gt_classes = torch.randint(0, roi.num_classes + 1, (40,), generator=g)
        if n_gt:
            p.gt_boxes = Boxes(near(g, random_boxes(g, 1), 40))
        else:
            p.gt_classes[:] = roi.num_classes
        proposals.append(p)
    k = roi.num_classes
    for agnostic in (False, True):
        scores = torch.randn(80, k + 1, generator=g, requires_grad=True)
        deltas = torch.randn(80, 4 if agnostic else 4 * k, generator=g, requires_grad=True)
        with EventStorage(0):
            ref = roi.box_predictor.losses((scores, deltas), proposals)
            out = batched.losses((scores, deltas), proposals)
        for name in ref:
            torch.testing.assert_close(out[name], ref[name], rtol=1e-5, atol=1e-7)
        ref_grads = torch.autograd.grad(sum(ref.values()), (scores, deltas))
        grads = torch.autograd.grad(sum(out.values()), (scores, deltas))
        for a, b in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert float(ref["loss_box_reg"].detach()) > 0


def test_pooler_identical(model):
    ref = model.roi_heads.box_pooler
    pooler = batched_copy(model).roi_heads.box_pooler
    assert len(ref.level_poolers) > 1
    g = torch.Generator().manual_seed(6)
    feats = [
        torch.randn(2, 8, SIZE[0] // s, SIZE[1] // s, generator=g, requires_grad=True)
        for s in (4, 8, 16, 32)
    ]
    # sides 20 to 600 px: every pyramid level (canonical 224 px at P4), in mixed order
    sides = torch.tensor([20.0, 150.0, 300.0, 600.0]).repeat(10)[torch.randperm(40, generator=g)]
    corners = torch.rand(40, 2, generator=g) * 60
    mixed = torch.cat([corners, corners + sides[:, None]], dim=1)
    # and one box with an inverted side (negative area): at no level, features zero
    inverted = torch.tensor([[50.0, 10.0, 40.0, 60.0]])
    boxes = [Boxes(mixed), Boxes(torch.cat([random_boxes(g, 25), inverted]))]
    levels = assign_boxes_to_levels(boxes, ref.min_level, ref.max_level, 224, 4)
    assert levels[:-1].unique().numel() == 4 and levels[-1] not in range(4)
    a = ref(feats, boxes)
    with HostReads() as reads, OpNames() as ops:
        b = pooler(feats, boxes)
    assert a.shape[0] == 66 and torch.equal(a, b) and not b[-1].any()
    # one host read for the boxes per level; no bincount (on a GPU it reads min and max first)
    assert reads.count == 1 and "bincount" not in ops.names
    ga = torch.autograd.grad(a.square().sum(), feats)
    gb = torch.autograd.grad(b.square().sum(), feats)
    for x, y in zip(ga, gb, strict=True):
        torch.testing.assert_close(x, y)


def test_batched_model_trains(model):
    m = batched_copy(model, METRICS_PERIOD=2)
    inst = Instances(SIZE)
    inst.gt_boxes = Boxes(torch.tensor([[20.0, 30.0, 60.0, 70.0], [90.0, 10.0, 120.0, 50.0]]))
    inst.gt_classes = torch.zeros(2, dtype=torch.int64)
    empty = Instances(SIZE)
    empty.gt_boxes = Boxes(torch.zeros(0, 4))
    empty.gt_classes = torch.zeros(0, dtype=torch.int64)
    batch = [{"image": torch.rand(3, *SIZE) * 255, "instances": x} for x in (inst, empty)]
    m.train()
    for it in range(2):
        with EventStorage(it) as storage:
            losses = m(batch)
            logged = set(storage.histories())
        assert set(losses) >= {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg"}
        assert all(torch.isfinite(v) for v in losses.values())
        sum(losses.values()).backward()
        assert ("rpn/num_pos_anchors" in logged) == (it == 1)  # every 2nd iteration only
    m.eval()
    with torch.no_grad():
        (pred,) = m([{"image": batch[0]["image"]}])
    assert pred["instances"].pred_boxes.tensor.shape[1] == 4


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


def test_switches_off_give_detectron2s_model_exactly(model):
    """With both switches off the batched heads are Detectron2's: the same losses in training
    (same random draws) and the same detections; the switches' auto default follows the
    device policy (off where not measured faster)."""
    from fracture_d2.fast.policy import switch_on

    off = batched_copy(model, BATCHED_HEADS=False, MATRIX_NMS=False)
    inst = Instances(SIZE)
    inst.gt_boxes = Boxes(torch.tensor([[20.0, 30.0, 60.0, 70.0]]))
    inst.gt_classes = torch.zeros(1, dtype=torch.int64)
    batch = [{"image": torch.rand(3, *SIZE) * 255, "instances": inst}]
    ref_model = copy.deepcopy(model).train()
    off.train()
    with EventStorage(0):
        torch.manual_seed(5)
        ref = ref_model(batch)
        torch.manual_seed(5)
        out = off(batch)
    assert ref.keys() == out.keys() and all(torch.equal(ref[k], out[k]) for k in ref)
    ref_model.eval(), off.eval()
    with torch.no_grad():
        a, b = ref_model(batch)[0]["instances"], off(batch)[0]["instances"]
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor) and torch.equal(a.scores, b.scores)
    # auto is off where not measured faster: the CPU (docs/speed.md "Defaults"), GPUs (not yet)
    for device, training in (("cpu", False), ("cpu", True), ("cuda:0", True), ("cuda", False)):
        assert not switch_on("BATCHED_HEADS", None, device, training)
        assert not switch_on("MATRIX_NMS", None, device, training)
    assert switch_on("BATCHED_HEADS", True, "cuda", False) and not switch_on(
        "MATRIX_NMS", False, "cpu", False
    )
    assert smoke_cfg().MODEL.ROI_HEADS.NAME == "BatchedROIHeads"
