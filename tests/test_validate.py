"""The one validator: each bad input stops with file + id, or is skipped and counted by reason."""

import json
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from fracture_d2.data.check_coco import check_coco_file, validate_coco
from fracture_d2.data.errors import DataError
from fracture_d2.data.image_size import read_image_header
from fracture_d2.data.validate import Validator

from conftest import run_script


def _gray(h=40, w=30, seed=0):
    return (np.random.default_rng(seed).random((h, w)) * 255).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb_png(path, side=100_000):
    """A valid-looking PNG whose header claims side x side pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def make_images(root):
    """One file per case; returns file name -> (width, height) for the readable ones."""
    root.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "ok.png"), _gray())
    cv2.imwrite(str(root / "sixteen.png"), (_gray().astype(np.uint16) * 257))
    cv2.imwrite(str(root / "rgb.jpg"), cv2.cvtColor(_gray(), cv2.COLOR_GRAY2BGR))
    jpg = (root / "rgb.jpg").read_bytes()
    (root / "short.jpg").write_bytes(jpg[:-10])  # truncated, OpenCV still decodes it
    (root / "junk_after_eoi.jpg").write_bytes(jpg + b"trailing bytes")
    (root / "half.jpg").write_bytes(jpg[:300])  # the header is cut
    png = (root / "ok.png").read_bytes()
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    (root / "text.png").write_text("not an image")
    write_bomb_png(root / "bomb.png")
    sof = jpg.find(b"\xff\xc0")  # a JPEG whose frame header claims 60000 x 60000 pixels
    big = (60000).to_bytes(2, "big")
    (root / "bomb.jpg").write_bytes(jpg[: sof + 5] + big + big + jpg[sof + 9 :])
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: displayed width/height are swapped
    Image.fromarray(_gray(40, 30)).save(root / "rotated.jpg", exif=exif)
    return root


def coco(images, anns, cats=({"id": 1, "name": "fracture"},)):
    return {"images": list(images), "annotations": list(anns), "categories": list(cats)}


def img(i, name, w=30, h=40):
    return {"id": i, "file_name": name, "width": w, "height": h}


def ann(i, image_id, bbox, cat=1):
    return {"id": i, "image_id": image_id, "category_id": cat, "bbox": bbox}


# case -> (images, annotations, reason counted with --skip-invalid, text of the error)
CASES = {
    "missing": ([img(1, "nope.png")], [], "image_missing", "image file not found"),
    "unreadable": ([img(1, "text.png")], [], "image_unreadable", "not a readable image"),
    "corrupt_png": ([img(1, "cut.png")], [], "image_corrupt", "cannot be decoded"),
    # libjpeg decodes any JPEG whose header survives; cut into the header, it is unreadable
    "jpeg_header_cut": ([img(1, "half.jpg")], [], "image_unreadable", "not a readable image"),
    "bomb": (
        [img(1, "bomb.png", 100_000, 100_000)],
        [],
        "image_too_large",
        "far larger than any radiograph",
    ),
    "bomb_jpeg": ([img(1, "bomb.jpg")], [], "image_too_large", "far larger than any radiograph"),
    "dotdot": ([img(1, "../ok.png")], [], "image_path_escapes_root", "relative path inside"),
    "absolute": ([img(1, "/etc/ok.png")], [], "image_path_escapes_root", "relative path inside"),
    "windows": ([img(1, "C:\\ok.png")], [], "image_path_escapes_root", "relative path inside"),
    "size": ([img(1, "ok.png", 31, 40)], [], "image_size_mismatch", "declared size 31x40"),
    "dup_image_id": ([img(1, "ok.png"), img(1, "rgb.jpg")], [], "image_duplicate_id", "share"),
    "nan": ([img(1, "ok.png")], [ann(7, 1, [1, float("nan"), 5, 5])], "box_non_finite", "non-fi"),
    "empty": ([img(1, "ok.png")], [ann(7, 1, [1, 1, 0, 5])], "box_empty", "zero or negative"),
    "negative": ([img(1, "ok.png")], [ann(7, 1, [9, 1, -3, 5])], "box_empty", "zero or negative"),
    "outside": ([img(1, "ok.png")], [ann(7, 1, [20, 20, 30, 5])], "box_outside_image", "outside"),
    "dup_ann_id": (
        [img(1, "ok.png")],
        [ann(7, 1, [1, 1, 5, 5]), ann(7, 1, [2, 2, 5, 5])],
        "box_duplicate_id",
        "a second annotation",
    ),
    "unknown_image": ([img(1, "ok.png")], [ann(7, 9, [1, 1, 5, 5])], "box_unknown_image", "9"),
    "unknown_cat": ([img(1, "ok.png")], [ann(7, 1, [1, 1, 5, 5], 4)], "box_unknown_category", ""),
    "malformed": ([img(1, "ok.png")], [ann(7, 1, [1, 1, 5])], "box_malformed", "not 4 numbers"),
}


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    return make_images(tmp_path_factory.mktemp("val") / "images")


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_input_stops_with_file_and_id(case, image_root):
    images, anns, reason, text = CASES[case]
    with pytest.raises(DataError) as err:
        validate_coco(coco(images, anns), Validator(image_root), "x.json")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("x.json:") and text in msg and reason in msg
    where = "annotation id 7" if anns and reason.startswith("box") else "image id 1"
    if reason != "box_unknown_image":
        assert where in msg, msg


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_bad_input_is_counted_with_skip_invalid(case, image_root):
    images, anns, reason, _ = CASES[case]
    v = Validator(image_root, skip_invalid=True)
    clean = validate_coco(coco(images, anns), v, "x.json")
    assert v.skipped[reason] >= 1
    if reason.startswith("box") and reason not in ("box_unknown_image", "box_duplicate_id"):
        # a partly annotated image would teach that the lost fracture is background
        assert v.skipped["image_has_invalid_box"] == 1 and clean["images"] == []
    if reason == "box_duplicate_id":
        assert len(clean["images"]) == 0 and v.skipped["box_of_skipped_image"] == 1


def test_accepted_oddities_are_counted_not_rejected(image_root):
    images = [
        img(1, "ok.png"),
        img(2, "sixteen.png"),  # 16-bit PNG
        img(3, "short.jpg"),  # truncated, but OpenCV decodes it
        img(4, "junk_after_eoi.jpg"),  # bytes after EOI: harmless, no warning
        img(5, "rotated.jpg", 40, 30),  # EXIF rotated: displayed size
    ]
    anns = [ann(1, 1, [-1.5, 0, 10, 10]), ann(2, 2, [25, 35, 6.5, 6.5]), ann(3, 3, [1, 1, 5, 5])]
    v = Validator(image_root)
    clean = validate_coco(coco(images, anns), v, "x.json")
    assert [im["id"] for im in clean["images"]] == [1, 2, 3, 4, 5]
    assert v.warnings == {"image_truncated_decodable": 1, "box_clipped": 2}
    assert v.warning_files["image_truncated_decodable"] == ["short.jpg"]
    boxes = {a["id"]: a["bbox"] for a in clean["annotations"]}
    assert boxes[1] == [0.0, 0.0, 8.5, 10.0] and boxes[2] == [25.0, 35.0, 5.0, 5.0]
    assert read_image_header(image_root / "sixteen.png").bit_depth == 16
    gray = cv2.imread(str(image_root / "rotated.jpg"), cv2.IMREAD_GRAYSCALE)
    assert gray.shape == (30, 40)  # what the mapper reads matches the header size


def test_everything_at_once_counts_every_reason(image_root):
    images, anns = [], []
    for k, case in enumerate(sorted(CASES)):
        ims, ans, _, _ = CASES[case]
        shift = 100 * (k + 1)
        for im in ims:
            name = im["file_name"]
            if name == "ok.png":  # one file per case, so no entry is a duplicate file name
                name = f"ok_{k}_{im['id']}.png"
                (image_root / name).write_bytes((image_root / "ok.png").read_bytes())
            images.append({**im, "id": im["id"] + shift, "file_name": name})
        for a in ans:
            anns.append({**a, "id": a["id"] + shift, "image_id": a["image_id"] + shift})
    v = Validator(image_root, skip_invalid=True)
    clean = validate_coco(coco(images, anns), v, "x.json")
    expected = {}
    for _, _, reason, _ in CASES.values():
        expected[reason] = expected.get(reason, 0) + 1
    expected["image_duplicate_id"] = 2  # both images sharing the id
    expected["box_empty"] = 2  # "empty" and "negative"
    expected["image_path_escapes_root"] = 3
    expected["image_unreadable"] = 2
    expected["image_too_large"] = 2
    assert {k: v.skipped[k] for k in expected} == expected
    # images that lost a box are out, with their other boxes: nothing vanishes uncounted
    assert set(v.skipped) - set(expected) == {"image_has_invalid_box", "box_of_skipped_image"}
    assert len(clean["images"]) == 1  # only "unknown_image"'s own image is fine


def test_stand_alone_script(image_root, tmp_path):
    data = coco(
        [img(1, "ok.png"), img(2, "nope.png"), img(3, "rgb.jpg")],
        [ann(1, 1, [1, 1, 5, 5]), ann(2, 2, [1, 1, 5, 5]), ann(3, 3, [1, float("nan"), 4, 4])],
    )
    path = tmp_path / "export.json"
    path.write_text(json.dumps(data))
    proc = run_script(
        "datasets/validate_coco.py", "--json", path, "--image-root", image_root, check=False
    )
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "export.json:image id 2" in err and "nope.png" in err
    out, report = tmp_path / "clean.json", tmp_path / "report.json"
    run_script(
        "datasets/validate_coco.py",
        *("--json", path, "--image-root", image_root, "--skip-invalid"),
        *("--out", out, "--report", report),
    )
    clean, rep = json.loads(out.read_text()), json.loads(report.read_text())
    assert [im["id"] for im in clean["images"]] == [1]
    assert rep["skipped"] == {
        "box_non_finite": 1,
        "box_of_skipped_image": 1,
        "image_has_invalid_box": 1,
        "image_missing": 1,
    }
    # the clean file passes on its own
    assert check_coco_file(out, image_root)["skipped"] == {}
