"""--release-counts plans a tree with exactly the public MURA-v1.1 release's counts."""

from collections import Counter, defaultdict

from fracture_d2.data.synth_mura_release import (
    MAX_IMAGES_PER_STUDY,
    RELEASE_COUNTS,
    RELEASE_PATIENTS,
    plan_release,
)


def test_release_counts_exactly():
    images, studies = plan_release(seed=0)
    assert len(images) == 40005 and len(studies) == 14656
    for split in ("train", "valid"):
        labels = Counter((s.split("/")[2][3:], lab) for sp, s, lab in studies if sp == split)
        per_part = Counter(s.split("/")[2][3:] for s, _, _, _ in images if f"/{split}/" in s)
        for part, (neg, pos, n_images) in RELEASE_COUNTS[split].items():
            assert (labels[(part, 0)], labels[(part, 1)], per_part[part]) == (neg, pos, n_images)
        owners = defaultdict(set)
        for _, s, _ in (st for st in studies if st[0] == split):
            owners[s.split("/")[3]].add(s.split("/")[2])
        assert len(owners) == RELEASE_PATIENTS[split]
        assert any(len(parts) > 1 for parts in owners.values())  # the release's quirk
    per_study = Counter(s for s, _, _, _ in images)
    assert max(per_study.values()) <= MAX_IMAGES_PER_STUDY and min(per_study.values()) >= 1
    assert sum(RELEASE_PATIENTS.values()) == 11967  # + 206 hidden-test patients = 12,173
    train = sum(v[2] for v in RELEASE_COUNTS["train"].values())
    assert (train, 40005 - train) == (36808, 3197)
    assert plan_release(seed=0) == (images, studies)  # deterministic
