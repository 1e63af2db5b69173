"""CSV lists saved by spreadsheets: a UTF-8 byte-order mark, and files that are not UTF-8."""
from __future__ import annotations

import pytest

from tests.unicom.train import fake_train_trees as trees
from unicom.datasets.base import LayoutError
from unicom.datasets.csv_list import read
from unicom.train.cli import main as train_main


def test_a_utf8_bom_is_not_part_of_the_header_or_the_first_path(tmp_path):
    csv_file = trees.csv_list(tmp_path)
    csv_file.write_bytes(b"\xef\xbb\xbf" + csv_file.read_bytes())  # "CSV UTF-8" from a spreadsheet
    parts = read(csv_file)
    assert parts["train"].labels[0] == "0" and parts["train"].paths[0] == str(tmp_path / "img" / "0_0.jpg")
    no_header = tmp_path / "plain.csv"
    no_header.write_bytes("\ufeffimg/0_0.jpg,0,train\n".encode("utf-8"))
    assert read(no_header)["train"].paths == [str(tmp_path / "img" / "0_0.jpg")]


def test_a_latin1_csv_names_the_file_and_line(tmp_path, capsys):
    trees.csv_list(tmp_path)
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("path,label,split\nimg/0_0.jpg,0,train\nimg/0_1.jpg,caf\u00e9,train\n".encode("latin-1"))
    with pytest.raises(LayoutError, match=r"latin1\.csv:3: byte 0xe9 is not UTF-8 .*re-save the file as UTF-8"):
        read(bad)
    assert train_main(["--dataset", "csv", "--data-root", str(bad), "--output", str(tmp_path / "run"),
                       "train.device=cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("unicom-train: ") and f"{bad}:3: byte 0xe9 is not UTF-8" in err
