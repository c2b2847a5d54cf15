"""Train MobileSpeech on tokenized Lhotse cuts: the token-model recipe of recipes/valle/train.py, with the same options
(the config's ``model_type: mobilespeech`` selects the model; its mask decoder, duration predictor and aligner train
together).

    accelerate launch recipes/mobilespeech/train.py --config recipes/mobilespeech/configs/mini.yaml \
        --train-cuts data/mini/cuts_train.jsonl.gz --valid-cuts data/mini/cuts_test.jsonl.gz \
        --codec codec/assets/languagecodec-mini --out-dir runs/mobilespeech_mini --resume
"""

import runpy
from pathlib import Path

if __name__ == "__main__":
    runpy.run_path(str(Path(__file__).resolve().parents[1] / "valle" / "train.py"), run_name="__main__")
