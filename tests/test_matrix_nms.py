"""Batched NMS (fracture_d2.fast.matrix_nms) and the RPN / box-predictor inference built on it,
against torchvision's NMS and Detectron2's per-image code."""

import pytest
import torch
import torchvision
from detectron2.modeling.proposal_generator.proposal_utils import find_top_rpn_proposals
from detectron2.modeling.roi_heads.fast_rcnn import fast_rcnn_inference
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage
from fast_utils import batched, stock_model
from rpn_utils import find_top_proposals
from sync_utils import HostReads

from fracture_d2.fast.detections import fast_rcnn_inference_batched
from fracture_d2.fast.matrix_nms import nms_keep
from fracture_d2.speedbench.measure import OpCounter, count_ops


def clustered_boxes(g: torch.Generator, groups: int, n: int, spread: float = 6.0) -> torch.Tensor:
    """(groups, n, 4) boxes around 10 centres per group: overlaps of every degree."""
    centres = torch.rand(groups, 10, 2, generator=g) * 150
    pick = torch.randint(0, 10, (groups, n), generator=g)
    xy = centres.gather(1, pick[..., None].expand(-1, -1, 2))
    xy = xy + torch.randn(groups, n, 2, generator=g) * spread
    wh = 8 + torch.rand(groups, n, 2, generator=g) * 30
    return torch.cat([xy - wh / 2, xy + wh / 2], dim=-1)


def torchvision_keep(boxes, scores, valid, threshold):
    keep = torch.zeros_like(valid)
    for i in range(len(boxes)):
        idx = valid[i].nonzero()[:, 0]
        keep[i, idx[torchvision.ops.nms(boxes[i, idx], scores[i, idx], threshold)]] = True
    return keep


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_keep_equals_torchvision(threshold):
    g = torch.Generator().manual_seed(int(threshold * 10))
    for n in (1, 7, 300):
        boxes = clustered_boxes(g, 5, n)
        scores = torch.randint(0, 40, (5, n), generator=g).float() / 40  # many ties
        valid = torch.rand(5, n, generator=g) > 0.15
        valid[0] = False  # a group without boxes
        keep = nms_keep(boxes, scores, valid, threshold)
        assert torch.equal(keep, torchvision_keep(boxes, scores, valid, threshold))
        assert not keep[0].any() and not (keep & ~valid).any()


def test_nms_keep_long_chain_needs_many_rounds():
    """Boxes in a row, each overlapping only its neighbours, scores falling along the row: greedy
    NMS keeps every other box, and each decision waits for the one before it (30 rounds), so
    stopping after any fixed number of convergence checks would be wrong."""
    n = 30
    x = torch.arange(n, dtype=torch.float32) * 3.0
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)[None]
    scores = torch.linspace(1.0, 0.1, n)[None]
    valid = torch.ones(1, n, dtype=torch.bool)
    # neighbours: IoU 7/13 = 0.54 > 0.5; two apart: 4/16 = 0.25
    keep = nms_keep(boxes, scores, valid, 0.5, check_every=2)
    expected = torch.zeros(1, n, dtype=torch.bool)
    expected[0, ::2] = True
    assert torch.equal(keep, expected)
    assert torch.equal(keep, torchvision_keep(boxes, scores, valid, 0.5))


def test_rounds_needed_is_where_fixed_rounds_converge():
    """rounds_needed (tools/dev/nms_rounds.py) per group = the fewest rounds for which
    nms_keep_rounds reports convergence, and its result is then greedy NMS's."""
    from fracture_d2.fast.matrix_nms import nms_keep_rounds, rounds_needed

    g = torch.Generator().manual_seed(11)
    boxes = clustered_boxes(g, 6, 200, spread=3.0)
    scores = torch.rand(6, 200, generator=g)
    valid = torch.rand(6, 200, generator=g) > 0.1
    valid[2] = False  # no boxes: 1 round
    n = 30  # the long chain of the test above as a 7th group
    x = torch.arange(n, dtype=torch.float32) * 3.0
    chain = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)
    boxes = torch.cat([boxes, torch.cat([chain, torch.zeros(170, 4)])[None]])
    scores = torch.cat([scores, torch.cat([torch.linspace(1.0, 0.1, n), torch.zeros(170)])[None]])
    valid = torch.cat([valid, (torch.arange(200) < n)[None]])
    need = rounds_needed(boxes, scores, valid, 0.5)
    assert need[2] == 1 and need[6] > 12 and need.max() == need[6]
    for i, t in enumerate(need.tolist()):
        one = (boxes[i : i + 1], scores[i : i + 1], valid[i : i + 1], 0.5)
        keep, converged = nms_keep_rounds(*one, t)
        assert bool(converged) and torch.equal(keep, torchvision_keep(*one))
        if t > 1:
            assert not bool(nms_keep_rounds(*one, t - 1)[1])


def test_find_top_proposals_matrix_nms_matches_detectron2():
    g = torch.Generator().manual_seed(5)
    sizes = [(128, 160), (100, 120), (64, 64)]
    proposals, logits = [], []
    for n in (900, 300, 40):
        boxes = torch.cat([clustered_boxes(g, 1, n) for _ in sizes]) - 10
        boxes[:, ::7, 2] = boxes[:, ::7, 0]  # empty boxes
        proposals.append(boxes)
        logits.append(torch.randn(len(sizes), n, generator=g))
    proposals[0][1, 5, 0] = float("nan")
    logits[1][2, 3] = float("inf")
    for post in (50, 1000):  # cut by post_nms_topk / every kept box
        args = (proposals, logits, sizes, 0.7, 500, post, 0.0)
        ref = find_top_rpn_proposals(*args, False)
        out = find_top_proposals(*args, False, matrix_nms=True)
        for a, b in zip(ref, out, strict=True):
            assert a.image_size == b.image_size and len(a) == len(b) > 0
            assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)
            assert torch.equal(a.objectness_logits, b.objectness_logits)
    assert len(out[0]) < 1000  # NMS removed boxes


def test_matrix_nms_proposals_one_host_read_and_divergence():
    """With the matrix NMS the proposal selection reads the device once when the NMS converges
    within its first rounds: the convergence flag, the divergence flag (training) and the counts
    together; a diverged training run still stops as Detectron2's does."""
    g = torch.Generator().manual_seed(6)
    sizes = [(128, 160), (100, 120)]
    proposals = [torch.stack([clustered_boxes(g, 1, n)[0] - 10 for _ in sizes]) for n in (400, 60)]
    logits = [torch.randn(len(sizes), n, generator=g) for n in (400, 60)]
    args = (proposals, logits, sizes, 0.7, 500, 300, 0.0)
    for training in (False, True):
        ref = find_top_rpn_proposals(*args, training)
        with HostReads() as reads:
            out = find_top_proposals(*args, training, matrix_nms=True)
        assert reads.count == 1
        for a, b in zip(ref, out, strict=True):
            assert len(a) == len(b) > 0
            assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)
    logits[1][0, 3] = float("nan")
    with pytest.raises(FloatingPointError, match="diverged"):
        find_top_proposals(*args, True, matrix_nms=True)
    assert len(find_top_proposals(*args, False, matrix_nms=True)[0]) > 0  # inference: dropped


def test_matrix_nms_proposals_long_chain():
    """A chain of 30 suppressions (see above) outlasts the first rounds: the selection goes on
    with checked rounds and still returns Detectron2's proposals."""
    from fracture_d2.fast.matrix_nms import FIRST_ROUNDS

    n = 30
    x = torch.arange(n, dtype=torch.float32) * 3.0
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)[None]
    logits = torch.linspace(1.0, 0.1, n)[None]
    args = ([boxes], [logits], [(50, 200)], 0.5, 100, 100, 0.0, False)
    ref = find_top_rpn_proposals(*args)[0]
    with HostReads() as reads:
        out = find_top_proposals(*args, matrix_nms=True)[0]
    assert len(out) == 15 and reads.count > 2  # 1 + the checks + 1 more read of the counts
    assert torch.equal(ref.proposal_boxes.tensor, out.proposal_boxes.tensor)
    assert n // 2 > FIRST_ROUNDS


@pytest.mark.parametrize("to_host", [False, True])
@pytest.mark.parametrize("agnostic", [False, True])
@pytest.mark.parametrize("topk", [5, -1])
def test_fast_rcnn_inference_batched_matches_detectron2(agnostic, topk, to_host):
    g = torch.Generator().manual_seed(7)
    classes, shapes, lengths = 3, [(120, 150), (90, 200), (100, 100), (80, 80)], [60, 25, 0, 40]
    boxes, scores = [], []
    for n in lengths:
        b = clustered_boxes(g, 1 if agnostic else classes, n, spread=4.0).permute(1, 0, 2)
        boxes.append(b.reshape(n, 4 * b.shape[1]) - 5)  # some outside the image: clipped
        scores.append(torch.softmax(torch.randn(n, classes + 1, generator=g) * 2, dim=1))
    boxes[0][3, 1] = float("inf")
    scores[1][4, 0] = float("nan")
    args = (boxes, scores, shapes, 0.05, 0.5, topk)
    ref, ref_idx = fast_rcnn_inference(*args)
    with HostReads() as reads:
        out, out_idx = fast_rcnn_inference_batched(*args, to_host=to_host)
    # one read: the counts and the NMS's convergence flag (with to_host one copy of everything,
    # then two reads of host tensors)
    assert reads.count == (2 if to_host else 1)
    assert sum(len(r) for r in ref) > 10
    for a, b, ia, ib, x, s in zip(ref, out, ref_idx, out_idx, boxes, scores, strict=True):
        assert a.image_size == b.image_size and len(a) == len(b)
        assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.equal(a.scores, b.scores)
        assert torch.equal(a.pred_classes, b.pred_classes)
        # Detectron2's indices count the finite rows only; these index the RoIs given
        finite = (torch.isfinite(x).all(1) & torch.isfinite(s).all(1)).nonzero()[:, 0]
        assert torch.equal(finite[ia], ib)


def test_fast_rcnn_inference_batched_without_rois_to_host():
    """No RoIs at all: Detectron2's per-image code, its (empty) results."""
    args = ([torch.zeros(0, 8)] * 2, [torch.zeros(0, 3)] * 2)
    out, kept = fast_rcnn_inference_batched(*args, [(10, 10)] * 2, 0.05, 0.5, 100, to_host=True)
    assert [len(r) for r in out] == [0, 0] and [len(k) for k in kept] == [0, 0]


@pytest.mark.parametrize("to_host", [False, True])
def test_fast_rcnn_inference_batched_long_chain(to_host):
    n = 30  # the chain of test_nms_keep_long_chain_needs_many_rounds, as one image's RoIs
    x = torch.arange(n, dtype=torch.float32) * 3.0
    boxes = torch.stack([x, torch.zeros(n), x + 10, torch.full((n,), 10.0)], dim=1)
    probs = torch.linspace(0.9, 0.3, n)
    scores = torch.stack([probs, 1 - probs], dim=1)  # one class + background
    args = ([boxes], [scores], [(50, 200)], 0.05, 0.5, 100)
    ref, _ = fast_rcnn_inference(*args)
    out, _ = fast_rcnn_inference_batched(*args, to_host=to_host)  # not converged at first
    assert len(out[0]) == len(ref[0]) == 15
    assert torch.equal(out[0].pred_boxes.tensor, ref[0].pred_boxes.tensor)


@pytest.mark.parametrize("matrix", [False, True])
def test_rpn_proposals_identical(matrix):
    """The batched RPN inference (top-k before one decode, cached anchors, either NMS) gives
    Detectron2's proposals bit for bit."""
    from detectron2.structures import ImageList

    model = stock_model().eval()
    rpn = batched(model, MATRIX_NMS=matrix).proposal_generator
    g = torch.Generator().manual_seed(2)
    for h, w in ((128, 160), (96, 128), (128, 160)):  # the third takes the anchors from the cache
        images = ImageList.from_tensors([torch.rand(3, h, w, generator=g) * 255] * 2, 32)
        images.image_sizes[1] = (h - 20, w - 10)  # clipped differently
        with torch.no_grad():
            features = model.backbone(images.tensor)
            ref, _ = model.proposal_generator(images, features)
            out, _ = rpn(images, features)
        for a, b in zip(ref, out, strict=True):
            assert len(a) == len(b) > 10
            assert torch.equal(a.proposal_boxes.tensor, b.proposal_boxes.tensor)
            assert torch.equal(a.objectness_logits, b.objectness_logits)


@pytest.mark.parametrize("batched_heads", [False, True])
def test_matrix_nms_model_predicts_like_stock(batched_heads):
    """The matrix NMS, with or without the rest of the batched heads, predicts as Detectron2's
    model."""
    torch.manual_seed(0)
    stock = stock_model().eval()
    stock.roi_heads.box_predictor.test_score_thresh = 0.0  # a random model: keep everything
    fast = batched(stock, BATCHED_HEADS=batched_heads, MATRIX_NMS=True)
    fast.roi_heads.box_predictor.test_score_thresh = 0.0
    images = [{"image": torch.rand(3, 128, 160) * 255}, {"image": torch.rand(3, 96, 128) * 255}]
    with torch.no_grad():
        ref, out = stock(images), fast(images)
    for a, b in zip(ref, out, strict=True):
        a, b = a["instances"], b["instances"]
        assert len(a) == len(b) > 0
        assert torch.allclose(a.pred_boxes.tensor, b.pred_boxes.tensor)
        assert torch.allclose(a.scores, b.scores)
        assert torch.equal(a.pred_classes, b.pred_classes)


def test_op_counter_counts_forward_and_backward():
    x = torch.ones(3, requires_grad=True)
    assert count_ops(lambda: x + 1) == 1
    with OpCounter() as forward_only:
        y = (x * 2).sum()
    with OpCounter() as both:
        (x * 2).sum().backward()
    assert forward_only.count == 2 and both.count > 4 and torch.equal(x.grad, torch.full((3,), 2.0))
    del y

    def fails():
        raise RuntimeError("refuses to run under a dispatch mode")

    assert count_ops(fails) is None  # logged; the benchmark keeps its timings


def training_models_and_batch(images: int, seed: int):
    """The smoke model in training mode, stock and with both switches (same weights), and a
    batch of ``images`` with 0, 1 or 2 clustered ground-truth boxes each."""
    stock = stock_model().train()
    fast = batched(stock, MATRIX_NMS=True, METRICS_PERIOD=20)
    g = torch.Generator().manual_seed(seed)
    batch = []
    for n in range(images):
        inst = Instances((96, 128))
        inst.gt_boxes = Boxes(clustered_boxes(g, 1, n % 3)[0] + 40)
        inst.gt_classes = torch.zeros(n % 3, dtype=torch.int64)
        batch.append({"image": torch.rand(3, 96, 128, generator=g) * 255, "instances": inst})
    return stock, fast, batch


def test_batched_heads_and_matrix_nms_dispatch_fewer_operators():
    """At batch 8 the per-image loops dominate a training step's operators (each a kernel launch
    on a GPU, docs/speed.md): the switches more than halve the forward + backward's count."""
    stock, fast, batch = training_models_and_batch(8, seed=1)

    def step(model):
        with EventStorage(0):
            sum(model(batch).values()).backward()

    ops = {name: count_ops(step, m) for name, m in (("stock", stock), ("fast", fast))}
    assert ops["fast"] < 0.5 * ops["stock"], ops  # measured: 1409 vs 3410
