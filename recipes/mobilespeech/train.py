"""Train MobileSpeech on tokenized Lhotse cuts: the token-model recipe of recipes/valle/train.py, with the same options
(the config's model_type: mobilespeech selects the model; its mask decoder, duration predictor and aligner train
together).

    accelerate launch recipes/mobilespeech/train.py --config recipes/mobilespeech/configs/mini.yaml \
        --train-cuts data/mini/cuts_train.jsonl.gz --valid-cuts data/mini/cuts_test.jsonl.gz \
        --codec codec/assets/languagecodec-mini --out-dir runs/mobilespeech_mini --resume
"""

from toolkit.runs import run_cli
from tts.training import main

if __name__ == "__main__":
    run_cli(lambda: main(__doc__))
