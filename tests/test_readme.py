"""The README's examples run as written."""

import re
from pathlib import Path

README = (Path(__file__).parent.parent / "README.md").read_text()


def test_readme_starts_with_exactly_the_two_setup_commands():
    first_block = re.match(r"```bash\n(.*?)```", README, re.S)
    assert first_block, "the README must open with the command block"
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make run", "make test"]


def test_custom_domain_example_runs_and_actflow_beats_rec_f(capsys):
    section = README[README.index("### Your own domain"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert len(code.strip().splitlines()) < 40
    namespace: dict = {}
    exec(compile(code, "README custom-domain example", "exec"), namespace)
    out = capsys.readouterr().out
    assert "coverage" in out
    table = namespace["table"]
    assert table["actflow"]["coverage"] > table["rec-f"]["coverage"]
    assert table["actflow"]["validity"] > 0.8


def test_agd_example_runs_at_a_tiny_budget(tmp_path, monkeypatch):
    section = README[README.index("## Adapter Guidance Distillation"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    for big, small in (("per_class=100", "per_class=2"), ("steps=5000", "steps=20"), ("steps=50", "steps=4")):
        assert big in code
        code = code.replace(big, small)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README AGD example", "exec"), namespace)
    assert namespace["images"].shape == (100, 1, 8, 8)
    assert (tmp_path / "runs/agd/offset/adapters.safetensors").is_file()
