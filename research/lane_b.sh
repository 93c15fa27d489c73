#!/usr/bin/env bash
set -u
snap=/tmp/snapdiag
export PYTHONPATH=$snap OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
PY=/work/main/.venv/bin/python
LOG=/work/research/docs/diagnosis_log.jsonl
run() { $PY -c "import torch; torch.set_num_threads(1); import runpy, sys; sys.argv=['diagnose_benchmark.py', *sys.argv[1:]]; runpy.run_path('$snap/scripts/diagnose_benchmark.py', run_name='__main__')" --log $LOG "$@"; }
run --benchmark categories --models prototype --seed 0 --design "categories v2: class appearance + 200 generated classes" > /work/research/research/lane_b1.txt 2>&1
run --benchmark categories --models dpcn,prototype,prior --seed 2 --no-oracle --design "categories v2, training seed 2" > /work/research/research/lane_b3.txt 2>&1
