"""Multi-label fixtures in the exact on-disk formats of their releases: a user's CSV folder,
VOC-MLT / COCO-MLT (the DB-loss release's ``img_id`` lists over VOC XML / COCO instances JSON)
and ChestX-ray14 (``Data_Entry_2017.csv`` + ``train_val_list.txt`` / ``test_list.txt``).

Every image is a flat-colour JPEG (PNG for ChestX-ray14) whose colour codes its index
(``fake_datasets.code_colour(0, index)``), so a batch can be traced back to its rows.
"""

import json
import os

from fake_datasets import code_colour, write_jpeg

from ltlight.data.files.voc_coco_mlt import VOC_CLASSES

# -- a user's multi-label CSV -----------------------------------------------------------------
CLASSES = ("cat", "dog", "owl")
#: The classes of each training image: cat is the head, owl the tail; one image has none.
TRAIN_SETS = [
    {"cat"}, {"cat"}, {"cat", "dog"}, {"cat"}, {"cat", "dog"}, {"dog"}, {"cat", "owl"}, set(),
    {"cat"}, {"dog", "owl"}, {"cat"}, {"cat", "dog"},
]  # fmt: skip
TEST_SETS = [{"cat"}, {"dog"}, {"owl"}, {"cat", "dog"}, set(), {"owl", "cat"}]


def write_multilabel_csvs(root: str, form: str = "names") -> dict[str, str]:
    """Images ``root/images/<split>_<i>.jpg`` and ``train.csv`` / ``test.csv`` in one form:
    ``"names"`` / ``"indices"`` (``path,labels`` with ``|``) or ``"wide"`` (``path,cat,dog,owl``).
    Returns the CSV paths by split."""
    csvs = {}
    index = 0
    for split, sets in (("train", TRAIN_SETS), ("test", TEST_SETS)):
        rows = []
        for i, classes in enumerate(sets):
            path = f"images/{split}_{i}.jpg"
            write_jpeg(os.path.join(root, path), code_colour(0, index))
            index += 1
            ordered = [c for c in CLASSES if c in classes]
            if form == "names":
                rows.append(f"{path},{'|'.join(ordered)}")
            elif form == "indices":
                rows.append(f"{path},{'|'.join(str(CLASSES.index(c)) for c in ordered)}")
            else:
                rows.append(",".join([path, *("1" if c in classes else "0" for c in CLASSES)]))
        header = "path,labels" if form != "wide" else "path," + ",".join(CLASSES)
        csvs[split] = os.path.join(root, f"{split}_{form}.csv")
        with open(csvs[split], "w") as f:
            f.write("\n".join([header, *rows]) + "\n")
    return csvs


# -- VOC-MLT ----------------------------------------------------------------------------------
VOC_XML = """<annotation>
	<folder>{folder}</folder>
	<filename>{image_id}.jpg</filename>
	<source>
		<database>The VOC2007 Database</database>
		<annotation>PASCAL VOC2007</annotation>
		<image>flickr</image>
	</source>
	<size>
		<width>{width}</width>
		<height>{height}</height>
		<depth>3</depth>
	</size>
	<segmented>0</segmented>
{objects}</annotation>
"""
VOC_OBJECT = """	<object>
		<name>{name}</name>
		<pose>Unspecified</pose>
		<truncated>0</truncated>
		<difficult>{difficult}</difficult>
		<bndbox>
			<xmin>1</xmin>
			<ymin>1</ymin>
			<xmax>20</xmax>
			<ymax>20</ymax>
		</bndbox>
	</object>
"""
#: (image id, objects as (name, difficult), width, height); the 20×20 one is below 32 pixels.
VOC_TRAIN = [
    ("2008_000023", [("person", 0), ("bottle", 0), ("person", 1)], 500, 375),
    ("2008_000028", [("car", 0)], 375, 500),
    ("2010_002361", [("person", 0), ("dog", 1)], 500, 333),
    ("2011_000999", [("car", 0)], 20, 20),
]
VOC_TEST = [
    ("000001", [("dog", 0), ("person", 0)], 353, 500),
    ("000002", [("train", 0)], 335, 500),
    ("000004", [("car", 1)], 500, 406),
]


def _write_voc(voc_dir: str, images: list, list_path: str) -> None:
    os.makedirs(os.path.join(voc_dir, "Annotations"), exist_ok=True)
    for k, (image_id, objects, width, height) in enumerate(images):
        write_jpeg(os.path.join(voc_dir, "JPEGImages", f"{image_id}.jpg"), code_colour(0, k))
        body = "".join(VOC_OBJECT.format(name=n, difficult=d) for n, d in objects)
        xml = VOC_XML.format(
            folder=os.path.basename(voc_dir),
            image_id=image_id,
            width=width,
            height=height,
            objects=body,
        )
        with open(os.path.join(voc_dir, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(xml)
    os.makedirs(os.path.dirname(list_path), exist_ok=True)
    with open(list_path, "w") as f:
        f.write("".join(f"{image_id}\n" for image_id, *_ in images))


#: A training image with every VOC class, so that no class lacks a positive (``complete``).
VOC_EVERY_CLASS = ("2012_004242", [(name, 0) for name in VOC_CLASSES], 500, 375)


def write_voc_mlt(root: str, complete: bool = False) -> str:
    """``root`` = VOCdevkit: ``VOC2012/``, ``VOC2007/`` and ``longtail2012/img_id.txt``."""
    train = [*VOC_TRAIN, VOC_EVERY_CLASS] if complete else VOC_TRAIN
    _write_voc(
        os.path.join(root, "VOC2012"), train, os.path.join(root, "longtail2012", "img_id.txt")
    )
    voc2007 = os.path.join(root, "VOC2007")
    _write_voc(voc2007, VOC_TEST, os.path.join(voc2007, "ImageSets", "Main", "test.txt"))
    return root


# -- COCO-MLT ---------------------------------------------------------------------------------
#: COCO's category ids have gaps (1 … 90 for 80 classes); a few of them, in a shuffled order.
COCO_CATEGORIES = [(18, "dog"), (1, "person"), (3, "car"), (90, "toothbrush"), (44, "bottle")]
#: image id → [(category id, bbox, area, extra)]; the boxes that do not count are marked.
COCO_TRAIN = {
    554625: [(1, [10, 10, 50, 80], 3000.0, {}), (18, [5, 5, 20, 20], 300.0, {})],
    118113: [(3, [0, 0, 30, 30], 700.0, {}), (90, [0, 0, 0.5, 10], 4.0, {})],  # w < 1
    281534: [(44, [1, 1, 10, 10], 0.0, {}), (1, [2, 2, 40, 40], 1200.0, {"iscrowd": 1})],
    384213: [(90, [3, 3, 8, 8], 50.0, {"ignore": True}), (18, [1, 1, 9, 9], 60.0, {})],
    272688: [(90, [3, 3, 8, 8], 50.0, {})],
}
COCO_TRAIN_LIST = [554625, 118113, 281534, 384213, 272688]
COCO_VAL = {
    139: [(1, [0, 0, 40, 40], 900.0, {}), (44, [0, 0, 10, 10], 80.0, {})],
    285: [],  # an image without annotations stays in the test split
    632: [(18, [0, 0, 30, 30], 500.0, {}), (3, [0, 0, 20, 20], 300.0, {})],
}


def _coco_json(path: str, images: dict, folder: str) -> None:
    entries, boxes = [], []
    for k, (image_id, objects) in enumerate(images.items()):
        name = f"{image_id:012d}.jpg"
        write_jpeg(os.path.join(folder, name), code_colour(0, k))
        entries.append(
            {"license": 1, "file_name": name, "coco_url": "", "height": 40, "width": 50,
             "date_captured": "2013-11-14 17:02:52", "flickr_url": "", "id": image_id}
        )  # fmt: skip
        for category_id, bbox, area, extra in objects:
            box = {"segmentation": [[0, 0, 1, 1]], "area": area, "iscrowd": 0,
                   "image_id": image_id, "bbox": bbox, "category_id": category_id,
                   "id": 1000 * image_id + len(boxes)}  # fmt: skip
            boxes.append(box | extra)
    categories = [{"supercategory": "thing", "id": i, "name": n} for i, n in COCO_CATEGORIES]
    data = {"info": {"year": 2017}, "licenses": [], "images": entries, "annotations": boxes,
            "categories": categories}  # fmt: skip
    with open(path, "w") as f:
        json.dump(data, f)


#: A training image with every category (``complete``).
COCO_EVERY_CLASS = {7: [(i, [0, 0, 10, 10], 100.0, {}) for i, _ in COCO_CATEGORIES]}


def write_coco_mlt(root: str, complete: bool = False) -> str:
    """``root``: ``train2017/``, ``val2017/``, ``annotations/instances_{train,val}2017.json``
    and ``longtail2017/img_id.pkl`` (a text file of ids, as in the release)."""
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    train = COCO_TRAIN | COCO_EVERY_CLASS if complete else COCO_TRAIN
    _coco_json(
        os.path.join(root, "annotations", "instances_train2017.json"),
        train,
        os.path.join(root, "train2017"),
    )
    _coco_json(
        os.path.join(root, "annotations", "instances_val2017.json"),
        COCO_VAL,
        os.path.join(root, "val2017"),
    )
    os.makedirs(os.path.join(root, "longtail2017"), exist_ok=True)
    with open(os.path.join(root, "longtail2017", "img_id.pkl"), "w") as f:
        f.write("".join(f"{i}\n" for i in [*COCO_TRAIN_LIST, *(7,) * complete]))
    return root


# -- ChestX-ray14 -----------------------------------------------------------------------------
CXR_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
CXR_ALL = "|".join(
    ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
     "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
     "Hernia"]
)  # fmt: skip
#: (image, findings, patient); patients 5-6 are the test split's. Patients 7-9 have every
#: finding, so a carve of one patient leaves every class a positive training image.
CXR_ROWS = [
    ("00000001_000.png", "Cardiomegaly", 1),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1),
    ("00000002_000.png", "No Finding", 2),
    ("00000003_000.png", "Hernia", 3),
    ("00000003_001.png", "Atelectasis|Effusion|Hernia", 3),
    ("00000004_000.png", "Infiltration", 4),
    ("00000004_001.png", "Mass|Nodule|Pneumonia|Pneumothorax|Consolidation|Edema", 4),
    ("00000004_002.png", "Fibrosis|Pleural_Thickening|Atelectasis|Effusion", 4),
    ("00000005_000.png", "No Finding", 5),
    ("00000006_000.png", "Effusion|Infiltration", 6),
    ("00000007_000.png", CXR_ALL, 7),
    ("00000008_000.png", CXR_ALL, 8),
    ("00000009_000.png", CXR_ALL, 9),
]
CXR_TEST_PATIENTS = (5, 6)


def write_chestxray14(root: str) -> str:
    """``root``: ``Data_Entry_2017.csv``, ``train_val_list.txt``, ``test_list.txt``, ``images/``."""
    from PIL import Image

    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    lines = [CXR_HEADER]
    for k, (name, findings, patient) in enumerate(CXR_ROWS):
        Image.new("L", (40, 40), 8 * k + 4).save(os.path.join(root, "images", name))
        lines.append(f"{name},{findings},{k % 3},{patient},58,M,PA,2682,2749,0.143,0.143")
    with open(os.path.join(root, "Data_Entry_2017.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(root, "train_val_list.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n, _, p in CXR_ROWS if p not in CXR_TEST_PATIENTS))
    with open(os.path.join(root, "test_list.txt"), "w") as f:
        f.write("".join(f"{n}\n" for n, _, p in CXR_ROWS if p in CXR_TEST_PATIENTS))
    return root
