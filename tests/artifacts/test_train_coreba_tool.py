"""scripts/train_coreba.py: the ablation's shards split the grid and their results merge."""

import argparse
import json

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def tool():
    return load_script("scripts/train_coreba.py")


def test_parse_shard(tool):
    assert tool.parse_shard("1/3") == (1, 3)
    for bad in ["3/3", "-1/2", "x", "1/0", "1-2"]:
        with pytest.raises(argparse.ArgumentTypeError, match="shard"):
            tool.parse_shard(bad)


@pytest.mark.parametrize("count", [1, 2, 3])
def test_shards_cover_the_grid_exactly_once(tool, count):
    positions = range(31)  # 10 variants x 3 seeds + 1
    owners = [[i for i in range(count) if tool.in_shard(p, (i, count))] for p in positions]
    assert all(len(o) == 1 for o in owners)
    assert all(tool.in_shard(p, None) for p in positions)


def test_results_of_every_shard_file_are_read(tool, tmp_path):
    rows = {
        "coreba_ablation_runs.jsonl": [{"key": "a", "test": 1}],
        "coreba_ablation_runs.0of2.jsonl": [{"key": "b", "test": 2}],
        "coreba_ablation_runs.1of2.jsonl": [{"key": "c", "test": 3}, {"key": "a", "test": 1}],
        "unrelated.jsonl": [{"key": "z", "test": 0}],
    }
    for name, lines in rows.items():
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in lines))
    files = tool.runs_files(tmp_path)
    assert [f.name for f in files] == sorted(n for n in rows if n.startswith("coreba"))
    assert sorted(tool.load_done(files)) == ["a", "b", "c"]


def test_committed_results_come_from_the_committed_tiny_clip():
    """Every committed file computed on tiny-CLIP features names the checkpoint it used."""
    import pandas as pd

    from course_lib.clip.checkpoint import read_manifest
    from course_lib.env import data_dir

    sha = read_manifest(data_dir() / "tiny_clip.safetensors")
    for stem in ("coreba_toy", "coreba_toy_motion", "coreba_toy_words"):
        info = json.loads((data_dir() / f"{stem}.json").read_text())
        assert info["clip_identity"].split("|")[1] == sha, stem
    ablation = pd.read_csv(data_dir() / "coreba_ablation.csv", dtype={"clip weights": str})
    assert set(ablation["clip weights"]) == {sha[:16]}
    for name in ("corpus_eval.csv", "corpus_eval_coreba.csv", "corpus_eval_coreba_exhaustive.csv"):
        table = pd.read_csv(data_dir() / "bench" / name, dtype={"clip_weights": str})
        assert set(table["clip_weights"]) == {sha[:16]}, name


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["clip+motion", "clip+motion+words"])
def test_motion_run_saves_a_checkpoint_only_its_features_load(tool, tmp_path, kind):
    """``--features clip+motion[+words]``: wider inputs, both baselines stored, kind checked."""
    from course_lib.clip import ClipEncoder
    from course_lib.clip.motion import DESCRIPTOR_PER_CELL
    from course_lib.experiments.ch05_coreba_toy import load_toy_checkpoint, toy_features

    stem = tmp_path / "motion"
    sizes = ["--train-videos", "2", "--val-videos", "1", "--test-videos", "1", "--epochs", "1"]
    status = tool.main(
        ["--features", kind, *sizes, "--d", "16", "--threads", "2", "--out", str(stem)]
        + ["--cache", str(tmp_path / "cache")]
    )
    assert status == 1  # one epoch on two videos does not meet the 15-point target
    info = json.loads(stem.with_suffix(".json").read_text())
    assert info["video_features"] == kind and info["sizes"]["features"] == kind
    assert info["baseline_moving_view_test_metrics"] != info["baseline_test_metrics"]
    encoder = ClipEncoder.tiny(device="cpu", progress=False)
    width = 2 * encoder.embed_dim + 9 * DESCRIPTOR_PER_CELL
    words = 2 if kind.endswith("+words") else 1  # query tokens [CLIP token, word embedding]
    assert info["model_config"]["d_v"] == width
    assert info["model_config"]["d_t"] == words * encoder.embed_dim
    from course_lib.toyworld import moment_records

    records = moment_records("test", 1, seed=0)
    for other_kind in ("clip", "clip+motion", "clip+motion+words"):
        features = toy_features(encoder, records, other_kind, cache_root=tmp_path / "cache")
        loads = load_toy_checkpoint(features, stem=stem) is not None
        assert loads == (other_kind == kind), other_kind
    # motion features computed with other settings do not fit the checkpoint either
    from course_lib.experiments.ch05_coreba_toy import feature_class

    assert info["motion_settings"]["threshold"] == 24
    other = feature_class(kind)(encoder, records, cache_root=tmp_path / "cache", threshold=10)
    assert load_toy_checkpoint(other, stem=stem) is None
