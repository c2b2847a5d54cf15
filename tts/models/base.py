"""The token-model contract: what training, releases, export and the synthesizer need of a model, and nothing more.

A token model is an ``nn.Module`` subclass of ``TokenModel`` that:

- names itself (``name``, the ``model_type`` of configs and releases) and its config class (``paper``/``mini``/``tiny``
  presets, ``to_dict``/``from_dict``), and lists the stages it can train (``all_stages``);
- returns its losses with token metrics for a ``TokenBatch`` (``forward(batch, generator)``), drawing whatever it draws
  (VALL-E's NAR codebook, MobileSpeech's masks) from ``generator`` so that a resumed run repeats an unbroken one;
- lists the outputs of a validation batch (``validation_outputs``), each drawn the same way at every validation;
- generates codes for a ``GenerationRequest`` (``generate``).

Adding a model means writing its file and one line in ``tts.models.registry``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Dict, FrozenSet, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from tts.models.sampling import SamplingConfig

IGNORE = -100  # target of positions without a loss


@dataclass
class StageOutput:
    """Loss and metrics of one output on one batch (token-level cross-entropy, top-1 and top-10 accuracy; outputs in
    ``TokenModel.loss_only`` carry zeros as accuracies)."""

    loss: torch.Tensor
    accuracy: torch.Tensor
    top10: torch.Tensor
    tokens: int


def lengths_mask(lengths: torch.Tensor, size: int) -> torch.Tensor:
    """``[B, size]``: True at the positions below each item's length."""
    return torch.arange(size, device=lengths.device)[None] < lengths[:, None]


def token_metrics(logits: torch.Tensor, targets: torch.Tensor,
                  neighbours: Optional[torch.Tensor] = None, neighbour_weight: float = 0.0) -> StageOutput:
    """Cross-entropy, top-1 and top-10 accuracy over the positions whose target is not ``IGNORE``.

    With ``neighbours`` (``[..., k]`` token ids per position, e.g. the target's k nearest codewords), the loss is
    the cross-entropy against a target that gives ``neighbour_weight`` of its probability to them, evenly, and the
    rest to the target token; the accuracies stay those of the exact token.
    """
    valid = targets != IGNORE
    if neighbours is None or neighbour_weight == 0:
        loss = F.cross_entropy(logits[valid], targets[valid])
    else:
        logp = logits[valid].float().log_softmax(-1)
        exact = logp.gather(-1, targets[valid][:, None])[:, 0]
        near = logp.gather(-1, neighbours[valid]).mean(-1)
        loss = -((1.0 - neighbour_weight) * exact + neighbour_weight * near).mean()
    with torch.no_grad():
        top = logits[valid].topk(min(10, logits.shape[-1]), dim=-1).indices
        t = targets[valid][:, None]
        acc, top10 = (top[:, :1] == t).float().mean(), (top == t).any(-1).float().mean()
    return StageOutput(loss, acc, top10, int(valid.sum()))


@dataclass
class GenerationRequest:
    """Several texts in one voice.

    Attributes:
        phonemes: per text, the phoneme ids the model reads: the prompt's transcript, a word boundary and the text for
            models that ``needs_prompt_text``, the text alone for the others.
        target_phonemes: per text, how many of those ids belong to the text (sets length limits).
        prompt: ``[K, Tp]`` codes of the acoustic prompt.
        frame_rate: the codec's frames per second.
        sampling: sampling settings (``greedy`` for argmax).
        steps: decoding rounds, for models that decode in rounds.
        speed: speaking-rate factor, for models that predict durations.
        generator: the random source (``None``: the global one).
    """

    phonemes: Sequence[torch.Tensor]
    target_phonemes: Sequence[int]
    prompt: torch.Tensor
    frame_rate: float
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    steps: int = 16
    speed: float = 1.0
    generator: Optional[torch.Generator] = None

    def padded(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """The phonemes as ``[B, P]`` (zero-padded) and their lengths ``[B]``, on the prompt's device."""
        device = self.prompt.device
        lens = torch.tensor([p.numel() for p in self.phonemes], device=device)
        padded = nn.utils.rnn.pad_sequence([p.to(device) for p in self.phonemes], batch_first=True)
        return padded, lens


class TokenModel(nn.Module):
    """Base class of the token models; see the module docstring for the contract.

    Class attributes:
        name: the model type in configs and releases.
        config_class: its config dataclass (``paper``, ``mini``, ``tiny``, ``to_dict``, ``from_dict``).
        all_stages: what a run can train; by default all of them.
        separable_stages: stages can be trained in separate runs and merged at export (the weights of stage ``s``
            are those under ``s.``).
        needs_prompt_text: generation reads the prompt's transcript.
        supports_speed: generation follows ``GenerationRequest.speed`` (the others ignore it); a model may make it a
            property of its config.
        supports_guidance: generation follows ``SamplingConfig.guidance`` (classifier-free guidance by the text); a
            model may make it a property of its config.
        supports_steps: generation follows ``GenerationRequest.steps`` (rounds of parallel decoding); the others
            decode one frame at a time and ignore it.
        joint_sequence: phonemes and audio frames are one sequence to the transformer (so padding both pads it).
        loss_only: outputs that have a loss but no token accuracies.
        progress_keys: training metrics shown on the progress bar.
        synthesizes: ``generate`` makes speech codes (the synthesizer offers the model).
        validates_prompt_free: validation also scores ``prompt_free_outputs`` on batches prompted by other utterances.
    """

    name: ClassVar[str]
    config_class: ClassVar[type]
    all_stages: ClassVar[Tuple[str, ...]]
    separable_stages: ClassVar[bool] = False
    needs_prompt_text: ClassVar[bool] = False
    supports_speed: ClassVar[bool] = False
    supports_guidance: ClassVar[bool] = False
    supports_steps: ClassVar[bool] = False
    joint_sequence: ClassVar[bool] = False
    loss_only: ClassVar[FrozenSet[str]] = frozenset()
    progress_keys: ClassVar[Tuple[str, ...]] = ()
    synthesizes: ClassVar[bool] = True
    validates_prompt_free: ClassVar[bool] = False

    config: object
    stages: Tuple[str, ...]

    @classmethod
    def build(cls, config, stages: Optional[Sequence[str]] = None) -> "TokenModel":
        """The model for ``config`` training ``stages`` (default: all)."""
        raise NotImplementedError

    @classmethod
    def check_stages(cls, stages: Sequence[str]) -> Tuple[str, ...]:
        """``stages`` in canonical order; a ``ValueError`` unless they are a non-empty subset of ``all_stages``."""
        if not stages or set(stages) - set(cls.all_stages):
            raise ValueError(f"stages of a {cls.name} model are a non-empty subset of {list(cls.all_stages)}, got "
                             f"{list(stages)}")
        return tuple(s for s in cls.all_stages if s in stages)

    @classmethod
    def unused_parameters(cls, stages: Sequence[str]) -> bool:
        """Whether a training step leaves some parameters without a gradient (DDP must then look for them)."""
        return False

    def needs_codebooks(self) -> bool:
        """Whether training needs the codec's codewords (``use_codebooks``) before the first step."""
        return False

    def use_codebooks(self, codebooks: torch.Tensor) -> None:
        """Take the codec's codewords ``[K, C, D]`` (layer, token, latent channel) for training."""

    def forward(self, batch, generator: Optional[torch.Generator] = None) -> Dict[str, StageOutput]:
        raise NotImplementedError

    def validation_outputs(self, batch, index: int) -> List[Dict[str, StageOutput]]:
        """The outputs on validation batch number ``index``, drawn the same way at every validation; the trainer
        weights each by its token count."""
        return [self(batch, generator=torch.Generator().manual_seed(index))]

    def prompt_free_outputs(self, batch) -> Dict[str, StageOutput]:
        """Outputs on a validation batch prompted by other utterances of its speakers, nothing of the targets visible
        (``validates_prompt_free`` models)."""
        return {}

    def generate(self, request: GenerationRequest) -> List[torch.Tensor]:
        """Codes ``[K, T_i]`` per text of the request."""
        raise NotImplementedError
