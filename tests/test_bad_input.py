"""Bad input: one clear error line naming the problem and the fix, and nothing written to disk."""

import contextlib
import gzip

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowdisco.cli import main
from flowdisco.datafiles import DataFileError, read_designs, read_sequence_file, read_smiles_file
from flowdisco.expand.loop import ExpandConfig
from flowdisco.flow.fit import FitConfig
from flowdisco.io import CheckpointError, load_state, save_state

ALPHABET = "ACDEFGHIKLMNPQRSTVWY"


def write(tmp_path, name, content):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


@pytest.mark.parametrize(("name", "content", "match"), [
    ("mols.csv", "", "empty"),
    ("mols.csv", "id,mol\n1,CCO\n", "no 'smiles' column .*id, mol.*name the column"),
    ("mols.csv", "smiles\nCCO\nC1CC\nc1ccccc1\nnot-a-molecule\n", r"2 of 4 SMILES .*line 3: 'C1CC'.*line 5"),
    ("mols.smi", "# only a comment\n\n", "holds no designs"),
    ("mols.csv.gz", b"not gzip at all", "gzip"),
    ("mols.smi", b"\xff\xfe\x00binary", "UTF-8"),
    ("missing.csv", None, "not found"),
])
def test_bad_smiles_files_name_the_problem(tmp_path, name, content, match):
    path = write(tmp_path, name, content) if content is not None else tmp_path / name
    with pytest.raises(DataFileError, match=match) as err:
        read_smiles_file(path)
    assert "\n" not in str(err.value)


def test_good_smiles_files_in_every_format(tmp_path):
    want = ["CCO", "c1ccccc1", "CC(=O)O"]
    files = [write(tmp_path, "a.csv", "name,SMILES\nx,CCO\ny,c1ccccc1\nz,CC(=O)O\n"),
             write(tmp_path, "b.smi", "CCO ethanol\nc1ccccc1\tbenzene\n# comment\nCC(=O)O\n"),
             write(tmp_path, "c.tsv.gz", gzip.compress(b"smiles\tid\nCCO\t1\nc1ccccc1\t2\nCC(=O)O\t3\n"))]
    for f in files:
        assert read_smiles_file(f) == want


@pytest.mark.parametrize(("content", "match"), [
    (">a\nACDEFGHIK\n>b\nACDXZK\n", r"1 of 2 sequences .*unknown residue\(s\) XZ.*use only"),
    (">a\nAC\n", "length 2, outside 5..50"),
    ("ACDEFG\n>a\nACDEFG\n", "before any '>' header"),
])
def test_bad_sequence_files_name_the_problem(tmp_path, content, match):
    with pytest.raises(DataFileError, match=match):
        read_sequence_file(write(tmp_path, "s.fasta", content), ALPHABET, 5, 50)


def test_cli_bad_data_file_is_one_error_line_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = write(tmp_path, "peps.csv", "sequence\nKLLKKLLKKL\nKLBJKK\n")
    run_dir = tmp_path / "run"
    assert main(["pretrain", "peptides", "--data", str(bad), "--steps", "2", "--run-dir", str(run_dir), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown residue(s) BJ" in err and "line 3" in err
    assert not run_dir.exists() and not (tmp_path / "runs").exists()
    assert main(["expand", "toy2d", "--data", str(bad), "--run-dir", str(run_dir), "-q"]) == 2
    assert "does not take option(s) data_file" in capsys.readouterr().err
    assert not run_dir.exists()


def test_user_sequences_train_a_peptide_model(tmp_path):
    import flowdisco as fd
    from flowdisco.domains import get_domain

    seqs = ["KLLKKLLKKL", "GIGKFLHSAKKFGKAFVGEIMNS", "RRWWRRWWRR", "FLPLIGRVLSGIL", "KWKLFKKIEKVGQNIR"] * 4
    path = write(tmp_path, "mine.txt", "\n".join(seqs) + "\n")
    dom = get_domain("peptides-discrete", data_file=str(path))
    assert set(dom.splits()["train"]) <= set(seqs)
    model = fd.pretrain(dom, steps=3, run_dir=tmp_path / "run", progress=False, batch_size=4)
    cfg = __import__("json").loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["data_file"]["path"] == str(path) and len(cfg["data_file"]["sha256"]) == 64
    assert model.shape == dom.shape


def test_a_kill_between_state_files_leaves_the_previous_state_whole(tmp_path):
    save_state(tmp_path, "s", {"step": 1, "w": torch.ones(3)})
    save_state(tmp_path, "s", {"step": 2, "w": torch.full((3,), 2.0)})
    assert load_state(tmp_path, "s")["step"] == 2
    assert len(list(tmp_path.glob("s*.safetensors"))) == 1  # the older tensors were removed
    # a third save killed after its tensors file: the JSON still names (and checks) step 2's tensors
    (tmp_path / "s-0123456789abcdef.safetensors").write_bytes(b"half a file")
    assert load_state(tmp_path, "s")["step"] == 2
    (tmp_path / "s.json").write_text('{"skeleton": {}, "tensors": "../../etc/passwd"}')
    with pytest.raises(CheckpointError, match="bad tensors file name"):
        load_state(tmp_path, "s")


# ---------------------------------------------------------------------------------------- fuzz
lines = st.lists(st.one_of(st.sampled_from(["CCO", "c1ccccc1", "C1CC", "smiles", "", "#x", "N#N", "[Na+].[Cl-]",
                                            "sequence", "KLLKKLLKKL", ">h", "ACDXK", "a,b", '"', "\t"]),
                           st.text(max_size=12)), max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=lines, suffix=st.sampled_from([".csv", ".tsv", ".smi", ".fasta", ".txt", ".csv.gz"]),
       raw=st.binary(max_size=40), use_raw=st.booleans())
def test_fuzz_data_files_give_designs_or_a_clear_error(tmp_path, body, suffix, raw, use_raw):
    content = raw if use_raw else "\n".join(body).encode("utf-8", "surrogatepass")
    if suffix.endswith(".gz") and not use_raw:
        content = gzip.compress(content)
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(content)
    for read in (read_smiles_file, lambda p: read_sequence_file(p, ALPHABET, 3, 30)):
        try:
            out = read(path)
        except DataFileError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert out and all(isinstance(s, str) and s for s in out)
    with contextlib.suppress(DataFileError):
        read_designs(path, "smiles")


config_values = st.one_of(st.none(), st.booleans(), st.integers(-5, 5000), st.floats(allow_nan=True),
                          st.text(max_size=6))


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from([f for f in ExpandConfig.__dataclass_fields__ if f != "surrogate_options"]),
       value=config_values)
def test_fuzz_expand_settings_are_accepted_or_refused_with_a_value_error(field, value):
    cfg = ExpandConfig(**{field: value})
    try:
        cfg.validate()
    except (ValueError, TypeError) as e:  # TypeError: a string where a number belongs (compared with ≥)
        assert str(e)


@settings(max_examples=200, deadline=None)
@given(field=st.sampled_from(["steps", "batch_size", "lr", "grad_clip", "schedule", "grad_shards",
                              "negative_scale", "weight_decay", "warmup_steps"]), value=config_values)
def test_fuzz_fit_settings_are_accepted_or_refused_with_a_value_error(field, value):
    try:
        FitConfig(**{field: value}).validate()
    except (ValueError, TypeError) as e:
        assert str(e)
