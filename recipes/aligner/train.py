"""Train the phoneme aligner as a stage of its own on tokenized Lhotse cuts: the token-model recipe of
recipes/valle/train.py, with the same options (the config's model type ``aligner`` selects it). It learns from every
cut (forward-sum loss) and is supervised by the exact durations of the synthetic espeak-ng speakers where the cuts have
them. Then recipes/aligner/label.py stores its durations with the cuts that have none.

    accelerate launch recipes/aligner/train.py --config recipes/aligner/configs/mini.yaml \
        --train-cuts data/mini/cuts_train.jsonl.gz --valid-cuts data/mini/cuts_test.jsonl.gz \
        --codec codec/assets/languagecodec-mini --out-dir runs/aligner_mini --resume
"""

from toolkit.runs import run_cli
from tts.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__))
