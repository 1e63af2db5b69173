"""Train splits on top of the fake official trees of ``tests/retrieval_eval/fake_trees.py``:
each builder makes the test-split tree there, then adds the layout's training list and images
(a few classes, a few 24×20 JPEGs each). Returns the root to pass as ``--data-root``."""
from __future__ import annotations

from pathlib import Path

from tests.retrieval_eval import fake_trees as fake

PER_CLASS = 4


def sop(root: Path) -> Path:
    d = fake.sop(root)
    lines = ["image_id class_id super_class_id path"]
    for i, c in enumerate([c for c in (1, 2, 3) for _ in range(PER_CLASS)], start=1):
        rel = f"bicycle_final/{c}_{i}.JPG"
        fake.jpeg(d / rel, 100 + i)
        lines.append(f"{i} {c} 1 {rel}")
    (d / "Ebay_train.txt").write_text("\n".join(lines) + "\n")
    return root


def inshop(root: Path) -> Path:
    d = fake.inshop(root)
    part = d / "Eval" / "list_eval_partition.txt"
    lines = part.read_text().splitlines()
    for item in ("id_00000020", "id_00000021", "id_00000022"):
        for j in range(PER_CLASS):
            rel = f"img/MEN/Tees/{item}/{j:02d}_front.jpg"
            fake.jpeg(d / "Img" / rel, hash((item, j)) % 1000)
            lines.append(f"{rel} {item} train")
    lines[0] = str(len(lines) - 2)
    part.write_text("\n".join(lines) + "\n")
    return root


def inaturalist(root: Path) -> Path:
    d = fake.inaturalist(root)
    rels = [f"train_val2018/Insecta/{c}/{j}.jpg" for c in (700, 701, 702) for j in range(PER_CLASS)]
    for i, rel in enumerate(rels):
        fake.jpeg(d / rel, 200 + i)
    (d / "Inat_dataset_splits" / "Inaturalist_train_set1.txt").write_text("\n".join(rels) + "\n")
    return root


def cub(root: Path) -> Path:
    fake.cub(root, classes=(1, 2, 100, 101, 150, 200), per_class=PER_CLASS)
    return root


def cars(root: Path) -> Path:
    fake.cars(root, classes=(1, 2, 98, 99, 150, 196), per_class=PER_CLASS)
    return root


def gldv2(root: Path) -> Path:
    fake.gldv2(root)
    rows = ["landmark_id,images"]
    for landmark in (5, 6, 7):
        ids = [f"f{landmark}{j:02d}a0000000000" for j in range(PER_CLASS)]
        for i, x in enumerate(ids):
            fake.jpeg(root / "train" / x[0] / x[1] / x[2] / f"{x}.jpg", 300 + 10 * landmark + i)
        rows.append(f"{landmark},{' '.join(ids)}")
    (root / "train_clean.csv").write_text("\n".join(rows) + "\n")
    return root


def image_folder(root: Path, classes=("cat", "dog", "owl"), per_class: int = PER_CLASS) -> Path:
    for c in classes:
        for j in range(per_class):
            fake.jpeg(root / c / f"{c}_{j}.jpg", hash((c, j)) % 1000)
    return root


def csv_list(root: Path, classes: int = 3, per_class: int = PER_CLASS) -> Path:
    """``root/list.csv`` with ``path,label,split`` rows: train rows and test rows."""
    rows = ["path,label,split"]
    for c in range(classes):
        for j in range(per_class):
            rel = f"img/{c}_{j}.jpg"
            fake.jpeg(root / rel, 400 + 10 * c + j)
            rows.append(f"{rel},{c},{'train' if j < per_class - 1 else 'test'}")
    (root / "list.csv").write_text("\n".join(rows) + "\n")
    return root / "list.csv"


LAYOUTS = {"sop": sop, "inshop": inshop, "inaturalist": inaturalist, "cub": cub, "cars": cars, "gldv2": gldv2}
