#!/bin/bash
# Builds .devcarry/ (ignored by git) for the lent GPU machine, which has CUDA PyTorch but no RDKit,
# no package index and a 64 MiB limit on what travels with the working tree:
#   rdkit_fcd.tar.xz  RDKit and fcd_torch wheels for CPython 3.12, unpacked (≈ 28 MB)
#   datapkgs.tar.xz   qm9pack's SMILES column and molsets' MOSES files, as import-free packages (≈ 12 MB)
# Run here with the project's .venv installed; then `run` with carry [".devcarry"] and start the
# command with `source benchmarks/gpu/setup.sh`.
set -eu
cd "$(dirname "$0")/../.."
EXCLUDE=$(git rev-parse --git-path info/exclude); mkdir -p "$(dirname "$EXCLUDE")"
grep -qx "/.devcarry/" "$EXCLUDE" 2>/dev/null || echo "/.devcarry/" >> "$EXCLUDE"
S=$(.venv/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
T=$(mktemp -d); mkdir -p .devcarry
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d $T/whl rdkit==2026.9.1 fcd_torch==1.0.7
mkdir $T/site && for w in $T/whl/*.whl; do (cd $T/site && unzip -q "$w"); done
tar -cf - -C $T/site . | xz -9 -T2 > .devcarry/rdkit_fcd.tar.xz
mkdir -p $T/dp/qm9pack/data $T/dp/moses/dataset/data $T/dp/moses/metrics
touch $T/dp/qm9pack/__init__.py $T/dp/moses/__init__.py
cp $S/moses/metrics/mcf.csv $S/moses/metrics/wehi_pains.csv $T/dp/moses/metrics/
cp $S/moses/dataset/data/train.csv.gz $S/moses/dataset/data/test.csv.gz $T/dp/moses/dataset/data/
.venv/bin/python - "$S" "$T" <<'PY'
import sys
import pandas as pd
site, tmp = sys.argv[1:3]
for i in (1, 2, 3):  # flowdisco reads only the SMILES column, in file order
    pd.read_csv(f"{site}/qm9pack/data/qm9_part{i}.csv", usecols=["SMILES"]).to_csv(
        f"{tmp}/dp/qm9pack/data/qm9_part{i}.csv", index=False)
PY
tar -cf - -C $T/dp qm9pack moses | xz -9 -T2 > .devcarry/datapkgs.tar.xz
rm -rf $T; ls -la .devcarry
