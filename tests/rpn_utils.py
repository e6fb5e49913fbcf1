"""Detectron2's ``find_top_rpn_proposals`` inputs -> the project's batched proposal selection."""

import torch
from detectron2.layers import cat

from fracture_d2.fast.proposals import select_proposals


def find_top_proposals(
    proposals,
    pred_objectness_logits,
    image_sizes,
    nms_thresh,
    pre_nms_topk,
    post_nms_topk,
    min_box_size,
    training,
    matrix_nms=False,
):
    """``find_top_rpn_proposals``'s per-level top-k of decoded proposals, then
    :func:`select_proposals` (the project decodes after the top-k; this compares the selection
    on Detectron2's own inputs)."""
    batch = torch.arange(len(image_sizes), device=proposals[0].device)
    boxes, scores = [], []
    for boxes_i, logits_i in zip(proposals, pred_objectness_logits, strict=True):
        top_scores, top_idx = logits_i.topk(min(logits_i.shape[1], pre_nms_topk), dim=1)
        boxes.append(boxes_i[batch[:, None], top_idx])
        scores.append(top_scores)
    sizes = [x.shape[1] for x in scores]
    return select_proposals(
        cat(boxes, dim=1),
        cat(scores, dim=1),
        sizes,
        image_sizes,
        nms_thresh,
        post_nms_topk,
        min_box_size,
        training,
        matrix_nms,
    )
