"""Camera-label conversion (official dataset.json <-> MMagic annotation JSON)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from eg3d_core.apps.datasets import convert_labels
from eg3d_core.errors import InputError, OutputError
from eg3d_core.labels import parse_labels, read_labels


def label(k: float) -> list[float]:
    return [k + i / 7 for i in range(25)]


def official(n: int = 3) -> dict:
    return {"labels": [[f"img{i:05d}.png", label(i)] for i in range(n)]}


def test_round_trip(tmp_path: Path) -> None:
    src, mid, back = tmp_path / "dataset.json", tmp_path / "mm.json", tmp_path / "back.json"
    src.write_text(json.dumps(official()))
    assert convert_labels(src, mid) == ("official", "mmagic", 3)
    mm = json.loads(mid.read_text())
    assert list(mm) == ["img00000.png", "img00001.png", "img00002.png"] and mm["img00002.png"] == label(2)
    assert convert_labels(mid, back) == ("mmagic", "official", 3)
    assert json.loads(back.read_text()) == official()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back.json", "dataset.json", "mm.json"]


def test_ints_become_floats_and_mmagic_name_labels_is_not_official() -> None:
    layout, labels = parse_labels({"labels": [0] * 25})
    assert layout == "mmagic" and labels == [("labels", [0.0] * 25)]
    assert isinstance(labels[0][1][0], float)


@pytest.mark.parametrize(("entries", "message"), [
    ([["a.png", label(0)], ["b.png", label(1)[:24]], ["c.png", [1]]], r"entry 1 \('b.png'\): the label has 24 values"),
    ([["a.png", label(0)], [7, label(1)]], r"entry 1 \(no valid name\): the name must be a string"),
    ([["a.png", label(0)], ["b.png", [*label(1)[:3], float("nan"), *label(1)[4:]]]], r"entry 1 \('b.png'\): value 3"),
    ([["a.png", [*label(0)[:24], "1"]]], r"entry 0 \('a.png'\): value 24 is not a finite number"),
    ([["a.png", [*label(0)[:24], True]]], r"entry 0 \('a.png'\): value 24"),
    ([["a.png", label(0)], ["b.png", label(1)], ["a.png", label(2)]],
     r"entry 2 \('a.png'\): duplicate name \(first at entry 0\)"),
    ([["a.png", label(0)], ["b.png"]], r"entry 1 \('b.png'\): expected \[name, \[25 numbers\]\]"),
    ([["a.png", label(0)], ["b.png", {"x": 1}]], r"entry 1 \('b.png'\): the label must be a list"),
])
def test_bad_entries_are_refused_naming_the_first(tmp_path: Path, entries: list, message: str) -> None:
    src, dst = tmp_path / "dataset.json", tmp_path / "out.json"
    src.write_text(json.dumps({"labels": entries}))  # json writes NaN as a bare NaN, which Python's parser accepts
    with pytest.raises(InputError, match=message) as info:
        convert_labels(src, dst)
    assert "\n" not in str(info.value) and str(src) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset.json"]


@pytest.mark.parametrize(("text", "message"), [
    ("{", "not valid JSON"), ("[1, 2]", "expected a JSON object"), ('{"labels": null}', "no labels"),
    ("{}", "no labels"), ('{"labels": []}', "no labels"), ('{"a.png": [1, 2]}', r"entry 0 \('a.png'\): the label has 2"),
])
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    src = tmp_path / "in.json"
    src.write_text(text)
    with pytest.raises(InputError, match=message):
        read_labels(src)


def test_existing_output_is_kept_when_refused(tmp_path: Path) -> None:
    src, dst = tmp_path / "dataset.json", tmp_path / "out.json"
    dst.write_text("previous")
    src.write_text(json.dumps({"labels": [["a.png", label(0)[:3]]]}))
    with pytest.raises(InputError):
        convert_labels(src, dst)
    assert dst.read_text() == "previous"
    with pytest.raises(InputError, match="cannot read"):
        convert_labels(tmp_path / "missing.json", dst)
    src.write_text(json.dumps(official(1)))
    with pytest.raises(OutputError, match="cannot write"):
        convert_labels(src, tmp_path / "no" / "dir" / "out.json")
