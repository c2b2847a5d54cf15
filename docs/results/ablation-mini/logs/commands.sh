#!/bin/bash
# How the committed mini report was produced (2026-12-01, one 2-core CPU, about 2 h 20 min wall clock).
# Stages that do not depend on each other ran as separate one-thread processes side by side:
#   R=(python recipes/ablation/run.py --config recipes/ablation/configs/mini_cpu.yaml --out-dir runs/ablation_mini)
#   "${R[@]}" --threads 1 --stages corpus data                          # data.log
#   "${R[@]}" --threads 1 --stages codec_mcrvq &                        # codec_mcrvq.log (2000 steps, 52 min)
#   "${R[@]}" --threads 1 --stages codec_rvq &                          # codec_rvq.log   (2000 steps, 52 min)
# then the script below (tokens, VALL-E and MobileSpeech pairs, eval). eval_reverse.py scored the zero-shot parts
# beside the eval stage in reverse order (eval_rev.log); the eval stage was then rerun to collect the cached parts,
# and `--stages report` wrote report.md.
. .venv/bin/activate   # from the repository root
R="python recipes/ablation/run.py --config recipes/ablation/configs/mini_cpu.yaml --out-dir runs/ablation_mini"
while pgrep -f "stages codec_" > /dev/null; do sleep 10; done
for s in tokens valle mobilespeech; do
  date; echo "== $s"
  $R --threads 1 --stages ${s}_mcrvq > logs/ablation_mini_${s}_mcrvq.log 2>&1 &
  $R --threads 1 --stages ${s}_rvq > logs/ablation_mini_${s}_rvq.log 2>&1 &
  wait
done
date; echo "== eval"
$R --threads 2 --stages eval > logs/ablation_mini_eval.log 2>&1
echo "eval rc=$?"; date
