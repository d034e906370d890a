import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flowdisco.cli import COMMANDS, main

TINY = ["--threads", "1", "-q"]


def test_readme_main_job_runs_end_to_end_at_tiny_size(tmp_path):
    # The same entry point `make run` calls, as a subprocess, with tiny settings.
    exe = Path(sys.executable).parent / "flowdisco"
    run = tmp_path / "demo"
    out = subprocess.run([str(exe), "demo", "--steps", "40", "--rounds", "2", "--n-samples", "200", "--n-valid",
                          "50", "--run-dir", str(run), *TINY], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    for word in ("pre-trained", "rec-f", "actflow", "generable_coverage", "validity"):
        assert word in out.stdout
    for f in ("pretrained/config.json", "pretrained/model/flowdisco_model.json", "pretrained/model/model.safetensors",
              "pretrained/checkpoints/fit_state.json", "actflow/config.json", "actflow/metrics.jsonl",
              "actflow/state/LATEST.json", "rec-f/frames/round-00002.png", "generable_sets.png"):
        assert (run / f).is_file(), f
    cfg = json.loads((run / "pretrained" / "config.json").read_text())
    assert cfg["domain"] == "toy2d" and cfg["provenance"]["command"].startswith("flowdisco demo")
    rounds = [json.loads(line)["round"] for line in (run / "actflow" / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [0, 1, 2]


def test_main_job_expands_the_shipped_qm9_model_at_tiny_size(tmp_path):
    pytest.importorskip("rdkit", reason="the main job needs the chem extra (installed by `make test`)")
    from flowdisco.domains import get_domain

    assert get_domain("qm9").pretrained_model_path() is not None, "the QM9 model must ship with the package"
    exe = Path(sys.executable).parent / "flowdisco"
    run = tmp_path / "main"
    tiny = ["--set", "eval_samples=64", "--set", "eval_valid=8", "--set", "sampler_steps=5", "--set", "warmup_valid=4",
            "--set", "warmup_batch=64", "--set", "finetune_batch=8", "--set", 'surrogate_options={"max_steps": 20}']
    out = subprocess.run([str(exe), "expand", "qm9", "--rounds", "1", "--samples-per-round", "8", "--finetune-steps",
                          "2", "--eval-every", "1", *tiny, "--run-dir", str(run), *TINY], capture_output=True,
                         text=True, timeout=600, env={**os.environ, "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    for word in ("pre-trained", "actflow r1", "validity", "coverage", "vendi", "novelty", "n_new_unique",
                 "frechet_to_test", "found in the rounds:"):
        assert word in out.stdout, word
    # why the invalid samples failed, by the QM9 verifier's checks, in the output and in the report
    assert re.search(r"why invalid, pre-trained: \d+ of 64 invalid: \d+ (an atom over its valence|several fragments)",
                     out.stdout), out.stdout
    assert "why invalid, round 1:" in out.stdout and "Why samples were invalid" in (run / "report.html").read_text()
    for f in ("config.json", "metrics.jsonl", "state/LATEST.json", "plots/validity.png", "plots/coverage.png"):
        assert (run / f).is_file(), f
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["domain"] == "qm9" and cfg["model"]["network"] == "graph-mp"


def test_pretrain_sample_evaluate(tmp_path, capsys):
    run = tmp_path / "p"
    assert main(["pretrain", "toy2d", "--steps", "20", "--run-dir", str(run), *TINY]) == 0
    assert main(["sample", str(run), "-n", "30", "--steps", "10", "--out", str(tmp_path / "s"), *TINY]) == 0
    lines = (tmp_path / "s" / "designs.jsonl").read_text().splitlines()
    assert len(lines) == 30 and set(json.loads(lines[0])) == {"design", "valid"}
    # another domain for the model's samples must take designs of the model's shape
    assert main(["sample", str(run), "-n", "4", "--domain", "qm9", "--out", str(tmp_path / "q"), *TINY]) == 2
    assert "but domain 'qm9' uses (9, 43)" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert main(["evaluate", str(run), "--n-samples", "100", "--n-valid", "20", "--steps", "10",
                 "--json", str(tmp_path / "e.json"), *TINY]) == 0
    stats = json.loads((tmp_path / "e.json").read_text())
    assert 0 <= stats["validity"] <= 1 and stats["n_valid"] == 20
    # why the invalid ones failed: the toy gives no reason, so they are counted under the generic one
    assert sum(stats["rejections"].values()) == round(100 * (1 - stats["validity"]))
    assert set(stats["rejections"]) <= {"rejected by the verifier"}
    assert f"{sum(stats['rejections'].values())} of 100 invalid" in capsys.readouterr().out
    # the JSON says what was measured, on what, and how: enough to reproduce it
    saved = json.loads((run / "model" / "flowdisco_model.json").read_text())
    assert stats["model_sha256"] == saved["sha256"] and stats["domain"] == "toy2d"
    assert (stats["n_samples"], stats["steps"], stats["solver"]) == (100, 10, "euler")
    assert stats["provenance"]["command"].endswith("--json " + str(tmp_path / "e.json") + " " + " ".join(TINY))
    # an existing run is not overwritten without --resume; with --resume it continues (already done)
    assert main(["pretrain", "toy2d", "--steps", "20", "--run-dir", str(run), *TINY]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["pretrain", "toy2d", "--steps", "20", "--run-dir", str(run), "--resume", *TINY]) == 0


def test_resume_with_a_different_configuration_is_refused(tmp_path, capsys):
    run = tmp_path / "p"
    assert main(["pretrain", "toy2d", "--steps", "10", "--run-dir", str(run), *TINY]) == 0
    assert main(["pretrain", "toy2d", "--steps", "10", "--lr", "0.01", "--run-dir", str(run), "--resume",
                 *TINY]) == 2
    assert "configuration differs" in capsys.readouterr().err


def test_clear_errors(tmp_path, capsys):
    assert main(["pretrain", "nosuchdomain", "--run-dir", str(tmp_path / "x"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "unknown domain 'nosuchdomain'" in err and "toy2d" in err
    assert main(["evaluate", str(tmp_path / "missing"), *TINY]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["pretrain", "toy2d", "--steps", "-3", "--run-dir", str(tmp_path / "y"), *TINY]) == 2
    assert "steps" in capsys.readouterr().err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage: flowdisco" in capsys.readouterr().out


def test_expand_refuses_a_setting_given_by_its_flag_and_by_set(tmp_path, capsys):
    run = tmp_path / "x"
    assert main(["expand", "toy2d", "--samples-per-round", "4", "--set", "samples_per_round=16",
                 "--run-dir", str(run), *TINY]) == 2
    assert "samples_per_round is given twice" in capsys.readouterr().err and not run.exists()
    assert main(["expand", "toy2d", "--set", "seed=3", "--run-dir", str(run), *TINY]) == 2
    assert "own option for 'seed'" in capsys.readouterr().err


def test_pretrain_keeps_every_repeated_set_and_net(tmp_path):
    # `--set a=1 --set b=2` once kept only the last group: the earlier settings were dropped silently.
    run = tmp_path / "p"
    assert main(["pretrain", "toy2d", "--steps", "2", "--batch-size", "8", "--set", "schedule=cosine",
                 "--set", "warmup_steps=1", "grad_clip=2", "--net", "depth=1", "--net", "width=32",
                 "--run-dir", str(run), *TINY]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert (cfg["fit"]["schedule"], cfg["fit"]["warmup_steps"], cfg["fit"]["grad_clip"]) == ("cosine", 1, 2.0)
    assert cfg["network_kwargs"]["depth"] == 1 and cfg["network_kwargs"]["width"] == 32
