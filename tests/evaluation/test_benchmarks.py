"""Benchmark loaders on tiny datasets in the official layouts, and the shared split helpers."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tests.evaluation.benchmark_fixtures import (
    CIRCO_IDS,
    CIRR_GALLERY_SIZE,
    FIQ_GALLERY,
    cirr_name,
    edit_json,
    make_circo,
    make_cirr,
    make_fashioniq,
    make_genecis,
    write_json,
)

from modeling_scot.evaluation.cir_data import MissingImagesError, check_images, crop_instance
from modeling_scot.evaluation.circo import load_circo
from modeling_scot.evaluation.cirr import load_cirr
from modeling_scot.evaluation.fashioniq import join_captions, load_fashioniq
from modeling_scot.evaluation.genecis import load_genecis
from modeling_scot.json_files import AnnotationError, read_json


@pytest.fixture
def cirr_root(tmp_path) -> Path:
    return make_cirr(tmp_path / "cirr")


@pytest.fixture
def fiq_root(tmp_path) -> Path:
    return make_fashioniq(tmp_path / "fashion-iq")


@pytest.fixture
def circo_root(tmp_path) -> Path:
    return make_circo(tmp_path / "CIRCO")


@pytest.fixture
def genecis_root(tmp_path) -> Path:
    return make_genecis(tmp_path / "genecis-data")


# ------------------------------------------------------------------------------------------------ CIRR


def test_cirr_val_follows_the_official_layout(cirr_root):
    split = load_cirr(cirr_root, "val")
    assert (split.benchmark, split.split, split.has_targets, split.remove_reference) == ("cirr", "val", True, True)
    assert split.gallery == tuple(cirr_name("val", column) for column in range(CIRR_GALLERY_SIZE))
    assert split.image_paths["dev-5-0-img1"] == cirr_root / "img_raw" / "dev" / "dev-5-0-img1.png"
    first = split.queries[0]
    assert (first.query_id, first.reference, first.target, first.positives) == (
        "101",
        "dev-0-0-img0",
        "dev-1-0-img1",
        ("dev-1-0-img1",),
    )
    assert first.subset[:2] == ("dev-0-0-img0", "dev-1-0-img1") and len(first.subset) == 6
    assert split.texts == ["change number 101", "change number 102", "change number 103", "change number 104"]
    assert split.reference_ids == ["dev-0-0-img0", "dev-5-0-img1", "dev-2-0-img0"]
    assert split.gallery_index["dev-30-0-img0"] == 30 and not split.has_query_galleries
    check_images(split)


def test_cirr_test1_has_no_targets_and_keeps_the_blank_caption(cirr_root):
    split = load_cirr(cirr_root, "test1")
    assert not split.has_targets
    blank = split.queries[0]
    assert (blank.query_id, blank.text, blank.captions) == ("27098", "", (" ",))
    assert (blank.target, blank.positives) == (None, ())
    assert blank.subset[0] == "test1-4-0-img0"


def test_cirr_train_keeps_the_numbered_subfolders(cirr_root):
    split = load_cirr(cirr_root, "train")
    assert split.image_paths["train-1-0-img1"] == cirr_root / "img_raw" / "train" / "34" / "train-1-0-img1.png"
    check_images(split)


def test_cirr_images_beside_the_annotation_folder_are_found(tmp_path):
    # CLIP4Cir/SEARLE layout: <root>/cirr/{captions,image_splits} and <root>/dev/...
    annotations = make_cirr(tmp_path / "cirr")
    shutil.move(annotations / "img_raw" / "dev", tmp_path / "dev")
    split = load_cirr(annotations, "val")
    assert split.image_paths["dev-3-0-img1"] == tmp_path / "dev" / "dev-3-0-img1.png"
    check_images(split)
    explicit = load_cirr(annotations, "val", image_root=tmp_path / "elsewhere")
    assert explicit.image_paths["dev-3-0-img1"] == tmp_path / "elsewhere" / "dev" / "dev-3-0-img1.png"


def test_missing_images_are_listed_before_any_model_work(cirr_root):
    for column in range(7):
        (cirr_root / "img_raw" / "dev" / f"{cirr_name('val', column)}.png").unlink()
    with pytest.raises(MissingImagesError) as caught:
        check_images(load_cirr(cirr_root, "val"), shown=5)
    message = str(caught.value)
    assert "cirr val: 7 of 60 image files are missing" in message
    assert str(cirr_root / "img_raw" / "dev" / "dev-0-0-img0.png") in message
    assert "... and 2 more" in message and message.count(".png") == 5


def test_cirr_rejects_unknown_split(cirr_root):
    with pytest.raises(ValueError, match="test1"):
        load_cirr(cirr_root, "test")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d[1].pop("caption"), r"entry 1 \(id 102\): field 'caption': missing"),
        (lambda d: d[2]["img_set"].update(members="dev-1"), r"entry 2 \(id 103\): field 'img_set.members': expected"),
        (lambda d: d[0].update(target_hard="dev-999"), r"entry 0 \(id 101\): field 'target_hard': image 'dev-999'"),
        (lambda d: d[3].update(pairid=101), r"entry 3 \(id 101\): field 'pairid': appears twice"),
        (lambda d: d[3].update(reference=True), r"entry 3 \(id 104\): field 'reference': expected str or int"),
        (lambda d: d.__setitem__(1, ["not", "an", "object"]), r"entry 1: expected an object, got list"),
        (lambda d: d[0].update(pairid=None), r"entry 0: field 'pairid': expected int or str, got NoneType"),
    ],
)
def test_malformed_cirr_entries_name_file_entry_and_field(cirr_root, change, expected):
    file = cirr_root / "captions" / "cap.rc2.val.json"
    edit_json(file, change)
    with pytest.raises(AnnotationError, match=expected) as caught:
        load_cirr(cirr_root, "val")
    assert str(file) in str(caught.value)


def test_unreadable_json_is_an_annotation_error(cirr_root, tmp_path):
    captions = cirr_root / "captions" / "cap.rc2.val.json"
    captions.write_text('[{"pairid": 1,', encoding="utf-8")
    with pytest.raises(AnnotationError, match="invalid JSON"):
        load_cirr(cirr_root, "val")
    write_json(captions, {"pairid": 1})
    with pytest.raises(AnnotationError, match="cap.rc2.val.json: expected a JSON list of entries, got dict"):
        load_cirr(cirr_root, "val")
    captions.unlink()
    with pytest.raises(AnnotationError, match="file not found"):
        load_cirr(cirr_root, "val")
    repeated = tmp_path / "repeated.json"
    repeated.write_text('{"a": 1, "b": {"c": 2, "c": 3}}', encoding="utf-8")
    with pytest.raises(AnnotationError, match="entry c: appears twice in one JSON object"):
        read_json(repeated)


def test_cirr_split_file_must_map_names_to_paths(cirr_root):
    edit_json(cirr_root / "image_splits" / "split.rc2.val.json", lambda d: d.update({"dev-0-0-img0": 3}))
    with pytest.raises(AnnotationError, match="split.rc2.val.json: entry dev-0-0-img0: expected a relative path"):
        load_cirr(cirr_root, "val")


# ------------------------------------------------------------------------------------------- FashionIQ


def test_join_captions_follows_searle_and_drops_empty_ones():
    assert join_captions(["is shorter.", "has a red belt? "]) == "is shorter and has a red belt"
    assert join_captions(["Is Blue", ""]) == "Is Blue"
    assert join_captions([" ,", "longer sleeves,"]) == "longer sleeves"


def test_fashioniq_val_keeps_the_reference_and_finds_png_and_jpg(fiq_root):
    split = load_fashioniq(fiq_root, "val", "dress")
    assert (split.benchmark, split.category, split.has_targets, split.remove_reference) == (
        "fashioniq",
        "dress",
        True,
        False,
    )
    assert split.gallery == tuple(FIQ_GALLERY)
    assert [q.query_id for q in split.queries] == ["dress-0", "dress-1", "dress-2"]
    assert split.texts == ["is shorter and has  a red belt", "Is blue", "longer sleeves"]
    assert split.queries[0].captions == ("is shorter.", "has  a red belt? ")
    assert (split.queries[1].reference, split.queries[1].target) == (FIQ_GALLERY[4], FIQ_GALLERY[11])
    assert split.image_paths[FIQ_GALLERY[0]].name == "B00DRESS00.png"
    assert split.image_paths[FIQ_GALLERY[1]].name == "B00DRESS01.jpg"
    check_images(split)


def test_fashioniq_test_has_no_targets(fiq_root):
    split = load_fashioniq(fiq_root, "test", "dress")
    assert not split.has_targets and split.queries[0].target is None and split.texts == ["is green and is plain"]


def test_fashioniq_errors(fiq_root):
    with pytest.raises(ValueError, match="category"):
        load_fashioniq(fiq_root, "val", "shoes")
    edit_json(fiq_root / "captions" / "cap.dress.val.json", lambda d: d[2].update(target="B00NOWHERE"))
    with pytest.raises(AnnotationError, match=r"entry 2: field 'target': image 'B00NOWHERE' is not in the split"):
        load_fashioniq(fiq_root, "val", "dress")
    edit_json(fiq_root / "captions" / "cap.dress.val.json", lambda d: d[0].update(captions="one"))
    with pytest.raises(AnnotationError, match=r"entry 0: field 'captions': expected list"):
        load_fashioniq(fiq_root, "val", "dress")


# ----------------------------------------------------------------------------------------------- CIRCO


def test_circo_val_uses_the_coco_unlabeled_list(circo_root):
    split = load_circo(circo_root, "val")
    assert split.gallery == tuple(str(image_id) for image_id in CIRCO_IDS)
    assert split.image_paths["1007"] == circo_root / "COCO2017_unlabeled" / "unlabeled2017" / "000000001007.jpg"
    first = split.queries[0]
    assert (first.query_id, first.reference, first.target) == ("0", "1000", "1007")
    assert first.positives == ("1007", "1021", "1140")
    assert (first.text, first.shared_concept, split.remove_reference) == ("shows 2 cats", "a cat", False)
    check_images(split)


def test_circo_test_has_no_ground_truth(circo_root):
    split = load_circo(circo_root, "test")
    assert not split.has_targets and [q.reference for q in split.queries] == ["1014", "1021"]


def test_circo_errors(circo_root):
    annotations = circo_root / "annotations" / "val.json"
    edit_json(annotations, lambda d: d[1].update(gt_img_ids=[1007]))
    with pytest.raises(AnnotationError, match=r"entry 1 \(id 1\): field 'gt_img_ids': does not contain target"):
        load_circo(circo_root, "val")
    edit_json(annotations, lambda d: d[0].update(reference_img_id=5))
    with pytest.raises(AnnotationError, match=r"entry 0 \(id 0\): field 'reference_img_id': image '5'"):
        load_circo(circo_root, "val")
    info = circo_root / "COCO2017_unlabeled" / "annotations" / "image_info_unlabeled2017.json"
    edit_json(info, lambda d: d["images"][3].pop("file_name"))
    with pytest.raises(AnnotationError, match=r"entry 3: field 'images.file_name': missing"):
        load_circo(circo_root, "val")


# --------------------------------------------------------------------------------------------- GeneCIS


def test_genecis_attribute_queries_rank_their_own_cropped_gallery(genecis_root):
    split = load_genecis(genecis_root, "focus_attribute")
    first, second = split.queries
    assert (first.reference, first.target, first.text) == ("11@10,5,10,4", "12@0,0,8,8", "colour")
    assert first.gallery == ("12@0,0,8,8", "12@20,2,5.5,6", "13@1,1,4,4", "11@10,5,10,4")
    assert second.gallery == ("12@20,2,5.5,6", "11@0,0,3,3", "12@0,0,8,8")  # the repeated target is dropped
    assert split.has_query_galleries and split.gallery == (*first.gallery, "11@0,0,3,3")
    assert split.crop_boxes["12@20,2,5.5,6"] == (20.0, 2.0, 5.5, 6.0)
    assert split.image_paths["13@1,1,4,4"] == genecis_root / "VG_100K_2" / "13.jpg"
    assert split.image_paths["11@10,5,10,4"] == genecis_root / "VG_100K_all" / "11.jpg"
    check_images(split)
    # box (10, 5, 10, 4) in a 40x20 image: left 10 - 7 = 3, top 5 - 2.8 = 2.2, right 3 + 17 = 20,
    # bottom 2.2 + 6.8 = 9 -> a 17x7 crop (2.2 rounds to 2) padded to a 17x17 black square
    assert split.open_image("11@10,5,10,4").size == (17, 17)


def test_crop_instance_centres_the_crop_on_a_black_square():
    from PIL import Image

    image = Image.new("RGB", (40, 20), (200, 100, 50))
    crop = crop_instance(image, (10, 5, 10, 4))
    assert crop.size == (17, 17)
    assert crop.getpixel((8, 0)) == (0, 0, 0) and crop.getpixel((8, 5)) == (200, 100, 50)
    assert crop.getpixel((8, 11)) == (200, 100, 50) and crop.getpixel((8, 12)) == (0, 0, 0)
    # a box at the corner is clipped to the image: left = top = 0, right = 0 + 1.7 * 30 = 51 -> 40
    assert crop_instance(image, (0, 0, 30, 10)).size == (40, 40)


def test_genecis_object_queries_use_coco_val2017(genecis_root):
    split = load_genecis(genecis_root, "change_object")
    assert split.queries[0].gallery == ("285", "632", "724") and split.crop_boxes == {}
    assert split.image_paths["785"] == genecis_root / "val2017" / "000000000785.jpg"
    assert split.open_image("785").size == (4, 4)
    check_images(split)


def test_genecis_errors(genecis_root):
    with pytest.raises(ValueError, match="focus_object"):
        load_genecis(genecis_root, "focus_colour")
    file = genecis_root / "genecis" / "focus_attribute.json"
    edit_json(file, lambda d: d[1]["gallery"][2].update(instance_bbox=[0, 0, 0, 3]))
    with pytest.raises(AnnotationError, match=r"entry 1: field 'gallery\[2\].instance_bbox': width and height"):
        load_genecis(genecis_root, "focus_attribute")
    write_json(file, [{"reference": {"image_id": 11}, "target": {}, "condition": "x", "gallery": []}])
    with pytest.raises(AnnotationError, match=r"entry 0: field 'target.image_id': missing"):
        load_genecis(genecis_root, "focus_attribute")
