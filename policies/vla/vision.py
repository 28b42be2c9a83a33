"""OpenVLA's vision side: ViT featurizers with timm's parameter names, their fusion, and the projector.

OpenVLA-7B (Prismatic "dinosiglip-vit-so-400m-224px") runs two ViTs on the same 224x224 image,
DINOv2 ViT-L/14 with 4 register tokens and SigLIP So400m/14, and concatenates their patch features
(1024 + 1152 = 2176 channels, 256 patches). Its checkpoint stores them under
``vision_backbone.featurizer.*`` and ``vision_backbone.fused_featurizer.*`` with timm's names
(``patch_embed.proj``, ``cls_token``, ``reg_token``, ``pos_embed``, ``blocks.<i>.norm1``,
``.attn.qkv``, ``.attn.proj``, ``.ls1.gamma``, ``.norm2``, ``.mlp.fc1``, ``.mlp.fc2``,
``.ls2.gamma``, ``norm``). timm is not a dependency: the ViT here is written out with those names.

Features are the output of the second-to-last block (OpenVLA calls timm's
``get_intermediate_layers(n={depth - 2})``), without the final norm and without the prefix (class
and register) tokens. The last block and ``norm`` are in the checkpoint but unused; SigLIP's
attention-pooling head (``attn_pool.*``) is in the checkpoint and not built here.

Pixel inputs: each featurizer has its own normalisation (DINOv2: ImageNet mean/std; SigLIP: 0.5/0.5),
so the fused model takes 6 channels, the image normalised twice, stacked (OpenVLA's processor does
the same).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SIGLIP_MEAN, SIGLIP_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ViTSpec:
    """The shape of one timm ViT featurizer and its input normalisation."""

    embed_dim: int
    depth: int
    num_heads: int
    mlp_hidden: int
    patch_size: int = 14
    image_size: int = 224
    class_token: bool = True
    reg_tokens: int = 0
    layer_scale: bool = False  # ls1/ls2 gammas (DINOv2)
    no_embed_class: bool = False  # position embeddings cover the patches only (timm's reg/DINOv2 variants)
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def __post_init__(self):
        if self.depth < 2:
            raise ValueError(f"a featurizer needs depth >= 2 (features come from the second-to-last block), "
                             f"got {self.depth}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


# The featurizers that OpenVLA's configs name (config.json: timm_model_ids), at OpenVLA's 224 px.
TIMM_VIT_SPECS: dict[str, ViTSpec] = {
    "vit_large_patch14_reg4_dinov2.lvd142m": ViTSpec(1024, 24, 16, 4096, class_token=True, reg_tokens=4,
                                                     layer_scale=True, no_embed_class=True),
    "vit_so400m_patch14_siglip_224": ViTSpec(1152, 27, 16, 4304, class_token=False, mean=SIGLIP_MEAN,
                                             std=SIGLIP_STD),
}


class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, spec: ViTSpec):
        super().__init__()
        self.norm1 = nn.LayerNorm(spec.embed_dim, eps=1e-6)
        self.attn = Attention(spec.embed_dim, spec.num_heads)
        self.ls1 = LayerScale(spec.embed_dim) if spec.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(spec.embed_dim, eps=1e-6)
        self.mlp = Mlp(spec.embed_dim, spec.mlp_hidden)
        self.ls2 = LayerScale(spec.embed_dim) if spec.layer_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, spec: ViTSpec):
        super().__init__()
        self.proj = nn.Conv2d(3, spec.embed_dim, spec.patch_size, stride=spec.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """A timm-named ViT whose forward gives the second-to-last block's patch tokens [B, patches, embed_dim]."""

    def __init__(self, spec: ViTSpec):
        super().__init__()
        self.spec = spec
        n_patches = (spec.image_size // spec.patch_size) ** 2
        self.patch_embed = PatchEmbed(spec)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.embed_dim)) if spec.class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, spec.reg_tokens, spec.embed_dim)) if spec.reg_tokens else None
        n_pos = n_patches + (0 if spec.no_embed_class or not spec.class_token else 1)
        self.pos_embed = nn.Parameter(torch.randn(1, n_pos, spec.embed_dim) * 0.02)
        self.blocks = nn.ModuleList(Block(spec) for _ in range(spec.depth))
        self.norm = nn.LayerNorm(spec.embed_dim, eps=1e-6)
        self.num_prefix_tokens = int(spec.class_token) + spec.reg_tokens

    def forward(self, images: Tensor) -> Tensor:
        x = self.patch_embed(images)
        b = x.shape[0]
        cls = [self.cls_token.expand(b, -1, -1)] if self.cls_token is not None else []
        reg = [self.reg_token.expand(b, -1, -1)] if self.reg_token is not None else []
        # timm's order: position embeddings added to the patches (and the class token unless no_embed_class),
        # then [cls, registers, patches].
        if self.spec.no_embed_class or not cls:
            x = torch.cat(cls + reg + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(cls + [x], dim=1) + self.pos_embed
            x = torch.cat([x[:, :1]] + reg + [x[:, 1:]], dim=1)
        for block in self.blocks[:-1]:
            x = block(x)
        return x[:, self.num_prefix_tokens:]


class PrismaticVisionBackbone(nn.Module):
    """One featurizer, or two fused along channels (``use_fused_vision_backbone``)."""

    def __init__(self, specs: list[ViTSpec]):
        super().__init__()
        if len(specs) not in (1, 2):
            raise ValueError(f"the vision backbone takes one or two featurizers, got {len(specs)}")
        if len({(s.image_size, s.patch_size) for s in specs}) != 1:
            raise ValueError("fused featurizers need the same image_size and patch_size to give the same patches")
        self.specs = list(specs)
        self.featurizer = VisionTransformer(specs[0])
        self.fused_featurizer = VisionTransformer(specs[1]) if len(specs) == 2 else None
        self.embed_dim = sum(s.embed_dim for s in specs)
        self.image_size = specs[0].image_size
        self.num_patches = (specs[0].image_size // specs[0].patch_size) ** 2

    def pixel_values(self, images: Tensor) -> Tensor:
        """uint8 images [B, H, W, 3] -> [B, 3 * featurizers, S, S]: resized ("resize-naive") and normalised."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {tuple(images.shape)}")
        x = images.permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True,
                              align_corners=False)
        parts = [(x - torch.tensor(s.mean).view(1, 3, 1, 1)) / torch.tensor(s.std).view(1, 3, 1, 1)
                 for s in self.specs]
        return torch.cat(parts, dim=1).to(next(self.parameters()).dtype)

    def forward(self, pixel_values: Tensor) -> Tensor:
        if self.fused_featurizer is None:
            return self.featurizer(pixel_values)
        first, second = torch.split(pixel_values, [3, 3], dim=1)
        return torch.cat([self.featurizer(first), self.fused_featurizer(second)], dim=2)


class Projector(nn.Module):
    """Patch features -> the LM's embedding width. ``fused-gelu-mlp``: fc1 (4x vision width) -> fc2 -> fc3;
    ``gelu-mlp``: fc1 -> fc2 (the names and shapes of OpenVLA's checkpoints)."""

    def __init__(self, arch_specifier: str, vision_dim: int, llm_dim: int):
        super().__init__()
        self.fused = arch_specifier.endswith("fused-gelu-mlp")
        if self.fused:
            self.fc1, self.fc2, self.fc3 = (nn.Linear(vision_dim, 4 * vision_dim), nn.Linear(4 * vision_dim, llm_dim),
                                            nn.Linear(llm_dim, llm_dim))
        elif arch_specifier.endswith("gelu-mlp"):
            self.fc1, self.fc2, self.fc3 = nn.Linear(vision_dim, llm_dim), nn.Linear(llm_dim, llm_dim), None
        else:
            raise ValueError(f"projector arch_specifier {arch_specifier!r} is not supported "
                             "(supported: ...gelu-mlp, ...fused-gelu-mlp)")
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        x = self.fc2(self.act(self.fc1(x)))
        return self.fc3(self.act(x)) if self.fc3 is not None else x
