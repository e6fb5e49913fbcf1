"""The project's model parts, registered with Detectron2's registries and chosen by name in
the configs (as Detectron2's own ``detectron2.modeling`` registers its built-ins on import):

- ``BatchedRPN`` (``MODEL.PROPOSAL_GENERATOR.NAME``) and ``BatchedROIHeads``
  (``MODEL.ROI_HEADS.NAME``): Detectron2's RPN and ROI heads, batched where the
  ``FRACTURE.FAST`` switches say (:mod:`fracture_d2.fast`).

:mod:`fracture_d2.config` imports this package, so every config made by
``get_fracture_cfg`` / ``add_fracture_config`` can be built into a model.
"""

from fracture_d2.fast.roi_heads import BatchedROIHeads
from fracture_d2.fast.rpn import BatchedRPN

from .image_head import ImageLabelHead
from .mixed_rcnn import MixedSupervisionRCNN

__all__ = ["BatchedROIHeads", "BatchedRPN", "ImageLabelHead", "MixedSupervisionRCNN"]
