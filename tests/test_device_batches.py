"""Training batches copied to the GPU without host waits (``DATALOADER.PIN_MEMORY`` on a GPU):
checked on the ``meta`` device, where tensors move without data."""

import torch
from detectron2.structures import Boxes, Instances

from fracture_d2.config import get_fracture_cfg
from fracture_d2.data.register import register_all
from fracture_d2.engine.trainer import Trainer
from fracture_d2.fast.device import DeviceBatches, batch_to_device, to_device_async

SMOKE = "configs/quick_schedules/faster_rcnn_R_18_FPN_smoke.yaml"


def test_batch_to_device_moves_every_tensor_and_keeps_the_rest():
    inst = Instances((20, 30))
    inst.gt_boxes = Boxes(torch.tensor([[1.0, 2.0, 10.0, 12.0]]))
    inst.gt_classes = torch.tensor([0])
    batch = [
        {
            "image": torch.zeros(3, 20, 30, dtype=torch.uint8),
            "instances": inst,
            "file_name": "a.png",
            "height": 20,
            "aug_dropped_boxes": 1,
        },
        {"image": torch.zeros(3, 20, 30, dtype=torch.uint8), "file_name": "b.png"},
    ]
    out = batch_to_device(batch, "meta")
    assert len(out) == 2 and out[0]["image"].device.type == "meta"
    moved = out[0]["instances"]
    assert isinstance(moved.gt_boxes, Boxes) and moved.gt_boxes.tensor.device.type == "meta"
    assert moved.gt_classes.device.type == "meta" and moved.image_size == (20, 30)
    assert out[0]["file_name"] == "a.png" and out[0]["height"] == 20
    assert out[0]["aug_dropped_boxes"] == 1 and out[1]["file_name"] == "b.png"
    # the loader's batch itself is left as it was
    assert batch[0]["image"].device.type == "cpu" and inst.gt_boxes.tensor.device.type == "cpu"
    cpu = torch.ones(2)
    assert to_device_async(cpu, "cpu") is cpu  # nothing to copy


def test_trainer_loader_on_gpu_with_pinned_memory(datasets_root):
    register_all(datasets_root)
    cfg = get_fracture_cfg()
    cfg.merge_from_file(SMOKE)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.MODEL.DEVICE = "cpu"
    cfg.DATALOADER.PIN_MEMORY = True
    loader = Trainer.build_train_loader(cfg)
    assert not isinstance(loader, DeviceBatches)  # on a CPU the model reads the batch in place
    batch = next(iter(loader))
    assert len(batch) == cfg.SOLVER.IMS_PER_BATCH and "instances" in batch[0]
    on_meta = next(iter(DeviceBatches(loader, "meta")))
    assert all(d["image"].device.type == "meta" for d in on_meta)
    assert all(d["instances"].gt_boxes.tensor.device.type == "meta" for d in on_meta)

    cfg.MODEL.DEVICE = "cuda"  # built, not iterated: this machine may have no GPU
    gpu = Trainer.build_train_loader(cfg)
    assert isinstance(gpu, DeviceBatches) and gpu.device == torch.device("cuda")
    cfg.DATALOADER.PIN_MEMORY = False
    assert not isinstance(Trainer.build_train_loader(cfg), DeviceBatches)
