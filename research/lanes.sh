#!/usr/bin/env bash
# Two single-threaded lanes of diagnosis runs on a frozen copy of the code (the worktree keeps changing).
set -u
snap=/tmp/snapdiag
rm -rf $snap && mkdir -p $snap && cp -r /work/research/dpcn_lite /work/research/data_utils /work/research/scripts /work/research/docs $snap/
export PYTHONPATH=$snap OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=/work/main/.venv/bin/python
LOG=/work/research/docs/diagnosis_log.jsonl
run() { $PY -c "import torch; torch.set_num_threads(1); import runpy, sys; sys.argv=['diagnose_benchmark.py', *sys.argv[1:]]; runpy.run_path('$snap/scripts/diagnose_benchmark.py', run_name='__main__')" --log $LOG "$@"; }
lane_a() {
  run --benchmark categories --models dpcn --seed 0 --design "categories v2: class appearance + 200 generated classes" > /work/research/research/lane_a1.txt 2>&1
  run --benchmark categories --models dpcn,prototype --seed 1 --no-oracle --design "categories v2, training seed 1" > /work/research/research/lane_a2.txt 2>&1
}
lane_b() {
  run --benchmark categories --models prototype,prior --seed 0 --design "categories v2: class appearance + 200 generated classes" > /work/research/research/lane_b1.txt 2>&1
  run --benchmark shapes --models prototype,dpcn --seed 0 --no-oracle --design "shapes v1 as shipped (silhouettes only)" > /work/research/research/lane_b2.txt 2>&1
  run --benchmark categories --models dpcn,prototype --seed 2 --no-oracle --design "categories v2, training seed 2" > /work/research/research/lane_b3.txt 2>&1
}
lane_a & lane_b & wait
