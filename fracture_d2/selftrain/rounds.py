"""The self-training rounds as a list of tool commands (``tools/self_train.py``): a teacher, then
per round pseudo boxes from the latest model and a student trained on real + pseudo boxes."""

from __future__ import annotations

from fracture_d2.steps import train_command

from .pseudo_labels import PseudoRule


def self_training_steps(
    config_file: str,
    opts: list,
    train_set: str,
    out_dir,
    rounds: int,
    rule: PseudoRule,
    teacher: str | None = None,
    hidden: str | None = None,
) -> list[tuple[str, list[str]]]:
    """The commands of ``rounds`` self-training rounds, each ``(step name, argv)`` of a
    project tool: the teacher trained (unless ``teacher`` weights are given), then per round
    pseudo boxes for ``train_set`` from the latest model and a student trained on them.

    ``out_dir/round0`` holds the teacher, ``out_dir/round<r>`` the round's pseudo boxes and
    student. ``opts``: ``KEY VALUE`` overrides for every step."""
    if rounds < 1:
        raise ValueError(f"self-training needs at least one round, got {rounds}")
    rule.check()
    steps, opts = [], [str(o) for o in opts]
    weights = teacher
    if weights is None:
        run = f"{out_dir}/round0"
        steps.append(("teacher", train_command(config_file, run, opts)))
        weights = f"{run}/model_final.pth"
    for r in range(1, rounds + 1):
        run = f"{out_dir}/round{r}"
        boxes = f"{run}/pseudo_boxes.json"
        label = ["tools/pseudo_label.py", "--config-file", config_file, "--dataset", train_set]
        label += ["--out", boxes, "--floor", str(rule.floor), "--threshold", str(rule.threshold)]
        label += ["--round", str(r)] + (["--hidden", hidden] if hidden else [])
        steps.append((f"pseudo boxes {r}", label + [*opts, "MODEL.WEIGHTS", weights]))
        student = opts + ["FRACTURE.PSEUDO_BOXES", boxes]
        steps.append((f"student {r}", train_command(config_file, run, student)))
        weights = f"{run}/model_final.pth"
    return steps
