#!/usr/bin/env bash
# Installs the PyTorch build that fits this machine into the given Python, before anything
# else asks for torch, so that a CPU-only machine never pulls multi-GB CUDA wheels.
#   TORCH_SPEC   what to install on a machine without a GPU (default torch==2.13.0, the CPU
#                build this workplace keeps on local disk)
#   TORCH_INDEX  optional index for it elsewhere (e.g. https://download.pytorch.org/whl/cpu)
set -euo pipefail
py=${1:?usage: install_torch.sh PYTHON}
if "$py" -c "import torch" 2>/dev/null; then
  exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  echo "install_torch: NVIDIA GPU found, installing the default (CUDA) torch build"
  "$py" -m pip install "torch>=2.1"
else
  spec=${TORCH_SPEC:-torch==2.13.0}
  echo "install_torch: no GPU, installing $spec (CPU build)"
  if [ -n "${TORCH_INDEX:-}" ]; then
    "$py" -m pip install "$spec" --index-url "$TORCH_INDEX"
  else
    "$py" -m pip install "$spec"
  fi
fi
"$py" -c "import torch; print('install_torch: torch', torch.__version__, 'cuda', torch.version.cuda)"
