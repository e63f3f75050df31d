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


def test_committed_results_come_from_the_committed_encoders():
    """The checkpoint, its ablation and the corpus tables that localise with it share its encoder."""
    import pandas as pd

    from course_lib.clip.checkpoint import read_manifest
    from course_lib.env import data_dir

    weights = {name: read_manifest(data_dir() / f"{stem}.safetensors")
               for name, stem in (("tiny", "tiny_clip"), ("video", "video_clip"))}  # fmt: skip
    info = json.loads((data_dir() / "coreba_toy.json").read_text())
    sha = weights[info["encoder"]]
    assert info["clip_identity"].split("|")[1] == sha
    ablation = pd.read_csv(data_dir() / "coreba_ablation.csv", dtype={"clip weights": str})
    assert set(ablation["clip weights"]) == {sha[:16]}
    for name in ("corpus_eval.csv", "corpus_eval_coreba.csv", "corpus_eval_coreba_exhaustive.csv"):
        table = pd.read_csv(data_dir() / "bench" / name, dtype={"clip_weights": str})
        assert set(table["clip_weights"]) == {sha[:16]}, name


@pytest.mark.slow
def test_a_run_saves_a_checkpoint_only_its_encoders_features_load(tool, tmp_path):
    """The default run reads the video encoder; its checkpoint refuses the frame CLIP's features."""
    from course_lib.clip.clip_encoder import committed_encoder
    from course_lib.experiments.ch05_coreba_toy import load_toy_checkpoint, toy_features
    from course_lib.toyworld import moment_records

    stem = tmp_path / "coreba"
    sizes = ["--train-videos", "2", "--val-videos", "1", "--test-videos", "1", "--epochs", "1"]
    status = tool.main(
        [*sizes, "--d", "16", "--threads", "2", "--out", str(stem), "--cache", str(tmp_path / "c")]
    )
    assert status == 1  # one epoch on two videos does not meet the 15-point target
    info = json.loads(stem.with_suffix(".json").read_text())
    assert info["encoder"] == "video" and info["sizes"]["encoder"] == "video"
    assert info["train_seconds"] >= info["call_seconds"] > 0
    records = moment_records("test", 1, seed=0)
    for name in ("video", "tiny"):
        encoder = committed_encoder(name, device="cpu", progress=False)
        features = toy_features(encoder, records, cache_root=tmp_path / "c")
        assert (load_toy_checkpoint(features, stem=stem) is not None) == (name == "video"), name
        if name == "video":
            assert info["model_config"]["d_v"] == info["model_config"]["d_t"] == encoder.embed_dim


def test_a_table_needs_a_finished_run_of_every_variant(tool, tmp_path):
    args = tool.parse_args(["--ablation", "--finished-only", "--csv", str(tmp_path / "t.csv")])
    assert args.finished_only
    variants = tool.ablation_variants()
    first = tool.config_key(variants[0][2])
    run = {"test": dict.fromkeys(tool.REPORTED, 1.0), "parameters": 10, "seconds": 1.0}
    with pytest.raises(SystemExit, match="no finished run of ablation variant '\\+BAT'"):
        tool.write_table(args, variants, {first: [run]}, dict.fromkeys(tool.REPORTED, 0.0), "m|abc")
    assert not (tmp_path / "t.csv").exists()
