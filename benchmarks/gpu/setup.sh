# Sourced at the start of every command on the lent GPU machine (see benchmarks/gpu/README.md):
# unpacks RDKit + fcd_torch (cp312) and the slimmed QM9/MOSES data packages carried in .devcarry/,
# and puts flowdisco's sources on the path (the machine's own python3 holds CUDA PyTorch).
set -u
mkdir -p /tmp/site
for f in .devcarry/*.tar.xz; do tar -xJf "$f" -C /tmp/site || exit 1; done
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 FLOWDISCO_CACHE=/tmp/fdcache
export FD="python3 -m flowdisco.cli"
python3 -c "import torch, rdkit, fcd_torch; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'rdkit', rdkit.__version__)"
