"""scripts/eval_coreba.py: a committed checkpoint scored on a fresh draw of toy test videos."""

import json
import shutil

import pytest
from conftest import load_script

from course_lib.env import data_dir


@pytest.fixture(scope="module")
def tool():
    return load_script("scripts/eval_coreba.py")


def test_json_line_holds_both_methods_on_the_drawn_videos(tool, tmp_path, capsys):
    result = tool.main(["--seed", "3", "--videos", "2", "--json", "--cache", str(tmp_path)])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["seed"] == 3 and line["videos"] == 2 and line["queries"] == result["queries"] > 0
    assert line["encoder"] == "video"
    for name in ("model", "baseline"):
        assert 0 <= line[name]["MR-full-mAP"] <= 100
        assert line[name]["HL-min-VeryGood-Hit1"] == result[name]["HL-min-VeryGood-Hit1"]


def test_a_checkpoint_recorded_for_other_features_is_refused(tool, tmp_path):
    # the committed video-encoder checkpoint, its json claiming the frame CLIP's features
    stem = tmp_path / "claims_tiny"
    shutil.copy(data_dir() / "coreba_toy.safetensors", stem.with_suffix(".safetensors"))
    manifest = (data_dir() / "coreba_toy.sha256").read_text()
    stem.with_suffix(".sha256").write_text(manifest.replace("coreba_toy.", "claims_tiny."))
    info = json.loads((data_dir() / "coreba_toy.json").read_text())
    stem.with_suffix(".json").write_text(json.dumps(info))
    assert (
        tool.evaluate_checkpoint(stem, 0, 1, tmp_path / "c")["encoder"] == "video"
    )  # the copy loads
    stem.with_suffix(".json").write_text(json.dumps(info | {"encoder": "tiny"}))
    with pytest.raises(SystemExit, match="does not fit the features of the tiny encoder"):
        tool.main(["--checkpoint", str(stem), "--videos", "1", "--cache", str(tmp_path / "c")])
