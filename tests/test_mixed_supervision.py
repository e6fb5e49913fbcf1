"""Training from image labels: box fraction, the mixed-supervision model's losses and gradients,
pseudo boxes (rule, file checks, overlay), image scores from the head, and the tools."""

import json
import shutil

import pytest
import torch
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from fracture_d2.config import get_fracture_cfg
from fracture_d2.data.box_fraction import keep_box_fraction
from fracture_d2.data.errors import DataError
from fracture_d2.data.pseudo_boxes import apply_pseudo_boxes, read_pseudo_boxes, select_boxes
from fracture_d2.evaluation.scores import image_score

from conftest import run_script

MIXED = "configs/quick_schedules/faster_rcnn_R_18_FPN_mixed_smoke.yaml"
SIZE = (96, 128)


def toy_coco(n_pos=40, n_neg=10, parts=("XR_HAND", "XR_WRIST")):
    images, anns = [], []
    for i in range(n_pos + n_neg):
        positive = i < n_pos
        images.append(
            {
                "id": i + 1,
                "file_name": f"{i}.png",
                "width": 64,
                "height": 64,
                "body_part": parts[i % len(parts)],
                "image_label": int(positive),
                "annotated": True,
            }
        )
        if positive:
            anns += [
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [1, 2, 10, 12],
                    "area": 120,
                    "iscrowd": 0,
                }
            ] * (1 + i % 2)
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "fracture"}]}


def test_box_fraction_is_seeded_and_keeps_every_box_somewhere():
    coco = toy_coco()
    kept, hidden, counts = keep_box_fraction(coco, 0.1, seed=3)
    again, _, _ = keep_box_fraction(coco, 0.1, seed=3)
    other, _, _ = keep_box_fraction(coco, 0.1, seed=4)
    assert kept == again and kept != other
    boxed = {a["image_id"] for a in kept["annotations"]}
    assert len(boxed) == counts["boxed_positives"] == 4  # 2 of 20 per body part
    assert len(kept["annotations"]) + len(hidden["annotations"]) == len(coco["annotations"])
    unboxed = [im for im in kept["images"] if not im["annotated"]]
    assert len(unboxed) == 36 and all(im["image_label"] == 1 for im in unboxed)
    assert {im["id"] for im in hidden["images"]} == {im["id"] for im in unboxed}
    assert len(kept["images"]) == 50  # negatives and all positives stay
    assert keep_box_fraction(coco, 1.0)[2]["image_label_only_positives"] == 0
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(DataError, match="box fraction must be in \\(0, 1\\]"):
            keep_box_fraction(coco, bad)


def test_pseudo_box_rule_keeps_exactly_the_boxes_it_says():
    assert select_boxes([0.3, 0.9, 0.6, 0.1], floor=0.05, threshold=0.5).tolist() == [1, 2]
    # none above the threshold: the best alone, if it clears the floor
    assert select_boxes([0.2, 0.04, 0.3], floor=0.05, threshold=0.5).tolist() == [2]
    assert select_boxes([0.02, 0.04], floor=0.05, threshold=0.5).tolist() == []
    assert select_boxes([], floor=0.05, threshold=0.5).tolist() == []
    assert select_boxes([0.7, 0.7, 0.2], floor=0.5, threshold=0.6).tolist() == [0, 1]


def _pseudo_file(tmp_path, dataset="ds_train", classes=("fracture",), image_id=7):
    coco = {
        "info": {"pseudo_boxes": {"dataset": dataset, "classes": list(classes)}},
        "images": [{"id": image_id, "file_name": "x.png", "width": 64, "height": 64}],
        "annotations": [
            {
                "id": 1,
                "image_id": image_id,
                "category_id": 1,
                "bbox": [1.0, 2.0, 10.0, 12.0],
                "score": 0.8,
                "pseudo": True,
            }
        ],
        "categories": [{"id": i, "name": c} for i, c in enumerate(classes, 1)],
    }
    path = tmp_path / "pseudo.json"
    path.write_text(json.dumps(coco))
    return path


def test_pseudo_boxes_overlay_and_their_errors(tmp_path):
    classes = {"ds_train": ["fracture"]}.__getitem__
    dicts = [
        {"image_id": 7, "annotated": False, "image_label": 1, "annotations": []},
        {
            "image_id": 8,
            "annotated": True,
            "image_label": 1,
            "annotations": [{"bbox": [0, 0, 1, 1]}],
        },
    ]
    path = _pseudo_file(tmp_path)
    dataset, boxes = read_pseudo_boxes(path, ["ds_train"], classes)
    assert dataset == "ds_train" and apply_pseudo_boxes(dicts, boxes, path) == 1
    assert dicts[0]["annotated"] and dicts[0]["pseudo"]
    assert dicts[0]["annotations"][0]["bbox"] == [1.0, 2.0, 10.0, 12.0]
    with pytest.raises(DataError, match="made for dataset 'other_train'"):
        read_pseudo_boxes(_pseudo_file(tmp_path, "other_train"), ["ds_train"], classes)
    with pytest.raises(DataError, match="classes"):
        read_pseudo_boxes(_pseudo_file(tmp_path, classes=("crack",)), ["ds_train"], classes)
    for image_id, why in ((9, "not in the training dataset"), (8, "not an image-label-only")):
        path = _pseudo_file(tmp_path, image_id=image_id)
        with pytest.raises(DataError, match=f"pseudo.json: image {image_id} is {why}"):
            apply_pseudo_boxes(dicts, read_pseudo_boxes(path, ["ds_train"], classes)[1], path)
    (tmp_path / "plain.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataError, match="not a pseudo-box file"):
        read_pseudo_boxes(tmp_path / "plain.json", ["ds_train"], classes)


def test_image_scores_from_the_head():
    assert image_score([0.2, 0.6], "head", head=0.9) == 0.9
    assert image_score([0.2, 0.6], "mean_head_max", head=0.9) == pytest.approx(0.75)
    assert image_score([], "mean_head_max", head=0.4) == pytest.approx(0.2)
    with pytest.raises(ValueError, match="needs the image-level head"):
        image_score([0.5], "head")


@pytest.fixture(scope="module")
def mixed_model():
    cfg = get_fracture_cfg()
    cfg.merge_from_file(MIXED)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.RESNETS.NORM = "FrozenBN"  # no batch statistics: images do not mix in the backbone
    torch.manual_seed(0)
    return build_model(cfg).train()


def _input(kind: str, g: torch.Generator) -> dict:
    inst = Instances(SIZE)
    boxes = torch.tensor([[20.0, 30.0, 60.0, 70.0]]) if kind == "boxed" else torch.zeros(0, 4)
    inst.gt_boxes, inst.gt_classes = Boxes(boxes), torch.zeros(len(boxes), dtype=torch.int64)
    image = (torch.rand(3, *SIZE, generator=g) * 255).requires_grad_(True)
    return {
        "image": image,
        "instances": inst,
        "annotated": kind != "label_only",
        "image_label": int(kind != "negative"),
    }


def test_label_only_positive_feeds_the_image_head_only(mixed_model):
    """An image-label-only positive gives zero RPN / box-head gradient and a nonzero image-level
    loss gradient; a boxed positive and a negative train both."""
    g = torch.Generator().manual_seed(1)
    batch = [_input(k, g) for k in ("boxed", "label_only", "negative")]
    with EventStorage(0):
        losses = mixed_model(batch)
    box_loss = sum(v for k, v in losses.items() if k != "loss_image_cls")
    assert set(losses) == {
        "loss_image_cls",
        "loss_rpn_cls",
        "loss_rpn_loc",
        "loss_cls",
        "loss_box_reg",
    }
    assert float(losses["loss_image_cls"].detach()) > 0 and float(box_loss.detach()) > 0
    images = [x["image"] for x in batch]
    box_grads = torch.autograd.grad(box_loss, images, retain_graph=True, allow_unused=True)
    head_grads = torch.autograd.grad(losses["loss_image_cls"], images)
    assert box_grads[1] is None or not box_grads[1].any()  # the label-only positive
    assert box_grads[0].abs().sum() > 0 and box_grads[2].abs().sum() > 0
    assert all(h.abs().sum() > 0 for h in head_grads)


def test_a_batch_without_boxed_images_trains_the_head(mixed_model):
    g = torch.Generator().manual_seed(2)
    with EventStorage(0):
        losses = mixed_model([_input("label_only", g), _input("label_only", g)])
    sum(losses.values()).backward()
    assert float(losses["loss_rpn_cls"]) == 0.0 and float(losses["loss_image_cls"]) > 0
    assert mixed_model.image_head.cls.weight.grad.abs().sum() > 0
    mixed_model.zero_grad()


def test_inference_gives_the_head_probability(mixed_model):
    mixed_model.eval()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        out = mixed_model([{"image": torch.rand(3, *SIZE, generator=g) * 255}] * 2)
    mixed_model.train()
    assert len(out) == 2 and all(0.0 < float(o["image_score"]) < 1.0 for o in out)
    assert "instances" in out[0]


def test_image_head_is_normalized_and_cannot_die(mixed_model):
    """GroupNorm after the head's convolution (MODEL.IMAGE_HEAD.NORM, the default): without it
    the head of the supervision benchmark died (every ReLU output 0, one probability for every
    image). A shift of the convolution's output that kills the plain head leaves it unchanged."""
    from fracture_d2.modeling.image_head import ImageLabelHead

    assert isinstance(mixed_model.image_head.conv.norm, torch.nn.GroupNorm)
    names, channels = ("p3", "p4"), 64
    g = torch.Generator().manual_seed(4)
    feats = {k: torch.randn(4, channels, 8, 8, generator=g) for k in names}
    torch.manual_seed(0)
    plain = ImageLabelHead(in_features=names, in_channels=channels, norm="")
    normed = ImageLabelHead(in_features=names, in_channels=channels)
    assert plain.conv.norm is None
    with torch.no_grad():
        assert plain(feats).std() > 0
        plain.conv.bias.fill_(-100.0)
        assert plain(feats).std() == 0  # dead: one logit for every image
        before = normed(feats)
        normed.conv.bias = torch.nn.Parameter(torch.full((channels,), -100.0))
        after = normed(feats)
    assert after.std() > 0 and torch.allclose(before, after, atol=1e-4)


@pytest.fixture(scope="module")
def mixed_root(datasets_root, tmp_path_factory):
    """A copy of the synthetic datasets root, for the box-fraction files written into it."""
    root = tmp_path_factory.mktemp("mixed_root")
    shutil.copytree(datasets_root / "mura_synthetic", root / "mura_synthetic", symlinks=True)
    return root


def test_make_box_fraction_tool(mixed_root):
    env = {"DETECTRON2_DATASETS": str(mixed_root)}
    args = ["datasets/make_box_fraction.py", "--dataset", "mura_synthetic_train"]
    out = run_script(*args, "--fraction", 0.3, "--seed", 1, env=env).stdout
    ann = mixed_root / "mura_synthetic" / "annotations"
    kept = json.loads((ann / "mura_synthetic_train_box30_s1.json").read_text())
    hidden = json.loads((ann / "mura_synthetic_train_box30_s1_hidden.json").read_text())
    assert "registered as mura_synthetic_train_box30_s1" in out
    # the hidden file: the label-only positives with their real boxes (complete there)
    assert {a["image_id"] for a in hidden["annotations"]} == {im["id"] for im in hidden["images"]}
    assert sum(not im["annotated"] for im in kept["images"]) == len(hidden["images"])
    bad = run_script(*args, "--fraction", 1.2, env=env, check=False)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: --box-fraction: box fraction must be in (0, 1], got 1.2"
    ]


def test_train_mixed_then_pseudo_label_then_student(mixed_root, tmp_path):
    """The mixed model trains on boxed, label-only and negative images (the GeneralizedRCNN
    leaves the label-only ones out), its evaluation uses the head's scores, and one
    self-training round boxes the label-only positives and trains a student on them."""
    env = {"DETECTRON2_DATASETS": str(mixed_root)}
    train = "mura_synthetic_train_box30_s1"
    if not (mixed_root / "mura_synthetic" / "annotations" / f"{train}.json").is_file():
        run_script(
            "datasets/make_box_fraction.py",
            "--dataset",
            "mura_synthetic_train",
            "--fraction",
            0.3,
            "--seed",
            1,
            env=env,
        )
    opts = ["DATASETS.TRAIN", f"('{train}',)", "SOLVER.MAX_ITER", 2, "FRACTURE.EVAL.BOOTSTRAP", 0]
    proc = run_script(
        "tools/self_train.py",
        "--config-file",
        MIXED,
        "--output-dir",
        tmp_path,
        "--rounds",
        1,
        "--floor",
        0.0,
        "--threshold",
        0.5,
        "--hidden",
        f"{train}_hidden",
        *opts,
        env=env,
    )
    teacher_log = (tmp_path / "round0" / "log.txt").read_text()
    assert "image-label-only positive" in teacher_log and "left out" not in teacher_log
    heads = json.loads(
        next((tmp_path / "round0" / "inference").glob("*/image_head_scores.json")).read_text()
    )
    assert heads and all(0.0 <= p <= 1.0 for p in heads.values())
    metrics = [json.loads(line) for line in open(tmp_path / "round0" / "metrics.json")]
    assert any("fracture/image_auroc" in r for r in metrics)
    pseudo = json.loads((tmp_path / "round1" / "pseudo_boxes.json").read_text())
    counts = pseudo["info"]["pseudo_boxes"]["counts"]
    # floor 0: every label-only positive with a detection gets its best box
    assert counts["images_with_pseudo_boxes"] == len(pseudo["images"]) > 0
    assert "precision" in counts["against_real_boxes"]
    assert "pseudo boxes for" in (tmp_path / "round1" / "log.txt").read_text()
    assert (tmp_path / "round1" / "model_final.pth").is_file() and "student 1" in proc.stdout
    plain = run_script(
        "tools/train_net.py",
        "--config-file",
        "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml",
        *opts,
        "OUTPUT_DIR",
        tmp_path / "plain",
        env=env,
    )
    assert "left out" in (tmp_path / "plain" / "log.txt").read_text(), plain.stdout[-2000:]


def test_supervision_benchmark_arms_and_table(tmp_path):
    """The benchmark's arms train the same schedule on the right data and architecture; the
    table reports means, spreads and the goals from the runs."""
    from fracture_d2.selftrain import PseudoRule
    from fracture_d2.selftrain.benchmark import arm_steps, summary_table

    data = {"full": "s_train", "partial": "s_train_box10_s0", "test": "s_test_all"}
    steps = {
        arm: arm_steps(arm, MIXED, 0, data, tmp_path, ["SOLVER.MAX_ITER", 9], 1, PseudoRule())
        for arm in ("box_only", "mixed", "pseudo", "all_boxes")
    }
    flat = {arm: " ".join(" ".join(cmd) for _, cmd in s[0]) for arm, s in steps.items()}
    assert "GeneralizedRCNN" in flat["box_only"] and "('s_train_box10_s0',)" in flat["box_only"]
    assert "GeneralizedRCNN" in flat["all_boxes"] and "('s_train',)" in flat["all_boxes"]
    assert "MixedSupervisionRCNN" in flat["mixed"] and "SOLVER.MAX_ITER 9" in flat["mixed"]
    assert f"MODEL.WEIGHTS {tmp_path}/seed0/mixed/model_final.pth" in flat["pseudo"]
    assert "FRACTURE.PSEUDO_BOXES" in flat["pseudo"] and steps["pseudo"][1].name == "round1"
    runs = [
        {"arm": a, "seed": s, "ap50": ap + s, "froc": 0.5, "image_auroc": auc, "study_kappa": 0.2}
        for a, ap, auc in (("box_only", 40, 0.8), ("pseudo", 50, 0.85), ("all_boxes", 60, 0.9))
        for s in (0, 2)
    ]
    table = summary_table(runs, 0.1)
    assert "| box_only | 2 | 41.0 ± 1.4 |" in table
    assert "pseudo recovers 10.0 (50%; goal >= 50%)" in table
    assert "image AUROC pseudo 0.850 vs box_only 0.800: goal met" in table
