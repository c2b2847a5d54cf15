"""Train VALL-E (AR and NAR stages) on tokenized Lhotse cuts, on one process, several CPU processes or many GPUs.

    accelerate launch recipes/valle/train.py --config recipes/valle/configs/mini.yaml \
        --train-cuts data/mini/cuts_train.jsonl.gz --valid-cuts data/mini/cuts_test.jsonl.gz \
        --codec codec/assets/languagecodec-mini --out-dir runs/valle_mini --resume

The symbol table defaults to symbols.json beside the training cuts; --codec is what the cuts were tokenized with
(its sizes set the model's; the release records it). Stages one at a time: --set train.stages=[ar] (then [nar] in
another run directory) and merge them with export.py. Two CPU processes: ACCELERATE_USE_CPU=1 accelerate launch
--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no recipes/valle/train.py ...
Checkpoints: <out-dir>/checkpoints/step-*/ (last N kept); --resume continues from the latest one exactly.
At the end the model is exported to <out-dir>/release.
"""

from toolkit.runs import run_cli
from tts.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__))
