"""Host waits per step on the simulated GPU of tests/sim_cuda.py, stock against the project's
switches: the table in README "Host waits left". Run from the repository root:

    python tests/count_waits.py            # batches 4 and 16, the predictor on 2 images
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from detectron2.checkpoint import DetectionCheckpointer  # noqa: E402
from detectron2.modeling import build_model  # noqa: E402
from detectron2.utils.events import EventStorage  # noqa: E402
from sim_cuda import SimDevice  # noqa: E402
from test_matrix_nms import training_models_and_batch  # noqa: E402

from fracture_d2.engine.speed import async_input_copies, batch_to_device  # noqa: E402
from fracture_d2.inference import BatchPredictor, load_cfg  # noqa: E402

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def model_waits(images: int) -> dict:
    """Training step (the second, anchors cached) and inference of the smoke model."""
    out = {}
    stock, fast, batch = training_models_and_batch(images, seed=2)
    for name, model in (("stock", stock), ("project", fast)):
        with SimDevice("meta") as sim:
            model.to("meta")
            inputs = batch_to_device(batch, "meta")  # the PIN_MEMORY loader's copies
            for it in (1, 2):
                sim.reset()
                with EventStorage(it):
                    sum(model(inputs).values()).backward()
            waits = dict(sim.waits)
            waits.pop("unpinned_host_to_device", None)  # pinned on a CUDA device
            out["training", name] = waits
    stock, fast, batch = training_models_and_batch(images, seed=2)
    async_input_copies(fast)
    inputs = [{"image": b["image"]} for b in batch]
    for name, model in (("stock", stock), ("project", fast)):
        model.eval().roi_heads.box_predictor.test_score_thresh = 0.0
        with SimDevice("cuda") as sim, torch.no_grad():
            model.to("cuda")
            sim.reset()
            model(inputs)
            out["inference", name] = dict(sim.waits)
    return out


def predictor_waits() -> dict:
    torch.manual_seed(0)
    folder = tempfile.mkdtemp()
    DetectionCheckpointer(build_model(load_cfg(SMOKE)), save_dir=folder).save("model")
    opts = ["MODEL.WEIGHTS", os.path.join(folder, "model.pth"), "DATALOADER.PIN_MEMORY", True]
    opts += ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0, "MODEL.DEVICE", "cuda"]
    grays = [(np.random.RandomState(k).rand(90, 120) * 255).astype(np.uint8) for k in range(2)]
    out = {}
    for name, switches in (
        ("project defaults", []),
        (
            "BATCHED_HEADS + MATRIX_NMS",
            ["FRACTURE.FAST.BATCHED_HEADS", True, "FRACTURE.FAST.MATRIX_NMS", True],
        ),
        ("STATIC_INFERENCE", ["FRACTURE.FAST.STATIC_INFERENCE", True]),
    ):
        with SimDevice("cuda") as sim:
            predictor = BatchPredictor(load_cfg(SMOKE, opts + switches))
            sim.reset()  # loading the weights copied them over
            predictor(grays)
            out[name] = dict(sim.waits)
    return out


def main() -> None:
    for images in (4, 16):
        for (step, name), waits in model_waits(images).items():
            print(f"batch {images:2d} {step:9s} {name:7s}: {sum(waits.values()):4d} {waits}")
    for name, waits in predictor_waits().items():
        print(f"predictor, 2 images, {name}: {sum(waits.values())} {waits}")


if __name__ == "__main__":
    main()
