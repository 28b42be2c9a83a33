"""Tiny, randomly initialised checkpoints in the published layouts, for tests and CPU-sized configs.

Nothing is downloaded: ``save_tiny_openvla`` writes what an OpenVLA-7B directory holds
(config.json with OpenVLA's fields and norm_stats, safetensors under the published key names,
dataset_statistics.json, a tokenizer) at a size that runs in milliseconds, with the vocabulary
convention kept: a text vocabulary of ``text_vocab_size`` ids whose last 256 are the action
tokens, one added <PAD> token right after it, the embedding rows padded to a multiple of 64.

The tokenizer is character-level (a BPE without merges over printable ASCII), so any instruction
tokenises and its ids stay below the action ids; the ids between are unused fillers, as rare
text tokens are in Llama 2's vocabulary.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models
from transformers import LlamaConfig, PreTrainedTokenizerFast

from policies.vla.configuration_openvla import OpenVLAConfig
from policies.vla.lora import LoRASettings, add_lora
from policies.vla.modeling_openvla import OpenVLAForActionPrediction
from policies.vla.oft_checkpoint import L1RegressionActionHead, ProprioProjector
from policies.vla.vision import IMAGENET_MEAN, IMAGENET_STD, SIGLIP_MEAN, SIGLIP_STD

TINY_TEXT_VOCAB = 512
TINY_NORM_STATS = {"zarl_put_on_plate": {"action": {
    "q01": [-0.05, -0.05, -0.05, -0.2, -0.2, -0.2, 0.0], "q99": [0.05, 0.05, 0.05, 0.2, 0.2, 0.2, 1.0],
    "mask": [True, True, True, True, True, True, False]}}}


def tiny_tokenizer(text_vocab_size: int = TINY_TEXT_VOCAB) -> PreTrainedTokenizerFast:
    specials = ["<unk>", "<s>", "</s>"]
    chars = [c for c in string.printable if c not in "\x0b\x0c\r"]
    n_fill = text_vocab_size - len(specials) - len(chars)
    if n_fill < 256:
        raise ValueError(f"text_vocab_size {text_vocab_size} leaves fewer than 256 ids for the action tokens")
    vocab = {t: i for i, t in enumerate(specials + chars + [f"<unused_{i}>" for i in range(n_fill)])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    backend.decoder = decoders.Fuse()  # characters join back without separators
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    tokenizer.add_special_tokens({"pad_token": "<PAD>"})  # id text_vocab_size, as OpenVLA's <PAD> is 32000
    return tokenizer


def tiny_openvla_config(fused: bool = True, hidden: int = 64, layers: int = 2, image_size: int = 28,
                        text_vocab_size: int = TINY_TEXT_VOCAB) -> OpenVLAConfig:
    """OpenVLA-7B's config with every width shrunk (2 ViTs of width 32, Llama of width `hidden`)."""
    dino = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "patch_size": 14, "image_size": image_size,
            "class_token": True, "reg_tokens": 4, "layer_scale": True, "no_embed_class": True,
            "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
    siglip = {"embed_dim": 48, "depth": 2, "num_heads": 2, "mlp_hidden": 64, "patch_size": 14,
              "image_size": image_size, "class_token": False, "mean": list(SIGLIP_MEAN), "std": list(SIGLIP_STD)}
    padded = -(-(text_vocab_size + 1) // 64) * 64
    text = LlamaConfig(vocab_size=padded, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512,
                       pad_token_id=text_vocab_size, bos_token_id=1, eos_token_id=2)
    return OpenVLAConfig(
        timm_model_ids=(["vit_large_patch14_reg4_dinov2.lvd142m", "vit_so400m_patch14_siglip_224"] if fused
                        else ["vit_large_patch14_reg4_dinov2.lvd142m"]),
        arch_specifier="no-align+fused-gelu-mlp" if fused else "no-align+gelu-mlp",
        use_fused_vision_backbone=fused, image_sizes=[image_size] * (2 if fused else 1),
        vision_specs=[dino, siglip] if fused else [dino], text_config=text, pad_token_id=text_vocab_size,
        text_vocab_size=text_vocab_size, norm_stats=TINY_NORM_STATS, value_head_hidden=[32, 16])


def save_tiny_openvla(directory: str | Path, seed: int = 0, fused: bool = True,
                      with_siglip_head: bool = True) -> Path:
    """Write a tiny random OpenVLA checkpoint directory; returns it.

    with_siglip_head: also write ``vision_backbone.fused_featurizer.attn_pool.*`` tensors, as the published
    checkpoint has them (the model ignores them on load).
    """
    directory = Path(directory)
    torch.manual_seed(seed)
    model = OpenVLAForActionPrediction(tiny_openvla_config(fused=fused))
    # Published checkpoints have no value head; a saved policy does. Drop it, as the published layout lacks it.
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("value_head.")}
    if fused and with_siglip_head:
        width = model.config.vision_specs[1]["embed_dim"]
        state.update({"vision_backbone.fused_featurizer.attn_pool.latent": torch.randn(1, 1, width),
                      "vision_backbone.fused_featurizer.attn_pool.q.weight": torch.randn(width, width)})
    model.save_pretrained(directory, state_dict=state)
    tiny_tokenizer(model.config.text_vocab_size).save_pretrained(directory)
    (directory / "dataset_statistics.json").write_text(json.dumps(model.config.norm_stats, indent=2))
    return directory


def save_tiny_oft(directory: str | Path, seed: int = 0, proprio_dim: int = 8, step: int = 50000) -> Path:
    """A tiny OFT directory (oft_checkpoint.py): the OpenVLA files, OFT's two heads as DDP-saved .pt state dicts
    (``module.`` prefixes), and a peft ``lora_adapter/``."""
    directory = save_tiny_openvla(directory, seed=seed)
    cfg = OpenVLAConfig.from_pretrained(directory)
    width = cfg.text_config.hidden_size
    torch.manual_seed(seed + 1)
    head = L1RegressionActionHead(width, hidden_dim=width, action_dim=cfg.action_dim)
    proprio = ProprioProjector(proprio_dim, width)
    for name, module in (("action_head", head), ("proprio_projector", proprio)):
        torch.save({f"module.{k}": v for k, v in module.state_dict().items()},
                   directory / f"{name}--{step}_checkpoint.pt")
    base = OpenVLAForActionPrediction.from_pretrained(directory)
    add_lora(base, LoRASettings(rank=4, alpha=8, init=False)).save_pretrained(directory / "lora_adapter")
    return directory
