#!/usr/bin/env bash
# Runs every benchmark in full, one after the other (nothing else should be running), then
# assembles benchmarks/RESULTS.md from the per-benchmark result files.
# The peers grad-cam, zennit and quantus import torchvision, which needs the torch build it was
# made for: run in an environment with a matching pair, e.g.
#   python3 -m venv .venv-bench && . .venv-bench/bin/activate
#   pip install torch==2.14.1 torchvision==0.29.1 && pip install --no-deps cross-domain-saliency-maps
#   pip install -e ".[test]" torch==2.14.1 torchvision==0.29.1
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 PYTHONUNBUFFERED=1
benches=("${@:-core domains cam cam_more perturbation feature_groups metrics quantus_families modbp classrel attention datasets overhead}")
for b in ${benches[@]}; do
  echo "=== bench_$b ($(date -u +%H:%M:%S))"
  if [ "$b" = attention ]; then
    python "benchmarks/bench_$b.py" --out benchmarks/results_attention.md
  elif [ "$b" = quantus_families ]; then
    python "benchmarks/bench_$b.py" && python benchmarks/profile_quantus_families.py
  else
    python "benchmarks/bench_$b.py"
  fi
done
{
  echo "# Benchmark results"
  echo
  echo "Measured by \`bash benchmarks/run_all.sh\` on $(date -u +%Y-%m-%d), one benchmark after the other"
  echo "on an otherwise idle machine: $(nproc) CPU cores ($(python -c 'import platform; print(platform.processor() or platform.machine())')),"
  echo "torch $(python -c 'import torch; print(torch.__version__)'), 2 threads, no GPU. Every ratio compares"
  echo "timings taken in the same run. The \"bare limit\" is the model's own forward(+backward) cost"
  echo "over the same number of rows."
  echo
  for b in core domains cam cam_more perturbation feature_groups metrics modbp classrel attention quantus_families quantus_profile datasets keras overhead engine_split overhead_15; do
    f="benchmarks/results_$b.md"
    if [ -f "$f" ]; then cat "$f"; echo; fi
  done
} > benchmarks/RESULTS.md
echo "wrote benchmarks/RESULTS.md"
# benchmarks/bench_keras.py runs in the TensorFlow environment of .ci/run (.venv-tf):
#   .venv-tf/bin/python benchmarks/bench_keras.py   (writes results_keras.md, assembled above)
