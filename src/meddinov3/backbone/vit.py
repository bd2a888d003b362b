"""The DINOv3 vision transformer.

Token sequence: [CLS, storage tokens, patch tokens]. RoPE rotates patch tokens only. Attribute
and parameter names follow the official checkpoints so that their state dicts load unchanged.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from meddinov3.backbone.config import BackboneConfig
from meddinov3.backbone.layers import Block, LayerScale, LinearKMaskedBias, PatchEmbed, make_norm
from meddinov3.backbone.rope import RopePositionEmbedding, rope_periods
from meddinov3.backbone.config import ROPE_DTYPES


class DinoVisionTransformer(nn.Module):
    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        self.embed_dim = self.num_features = config.embed_dim
        self.n_blocks = config.depth
        self.num_heads = config.num_heads
        self.patch_size = config.patch_size
        self.n_storage_tokens = config.n_storage_tokens

        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, config.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.embed_dim))
        if config.n_storage_tokens > 0:
            self.storage_tokens = nn.Parameter(torch.zeros(1, config.n_storage_tokens, config.embed_dim))
        self.mask_token = nn.Parameter(torch.zeros(1, config.embed_dim))
        self.rope_embed = RopePositionEmbedding(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        # With untied norms, `norm` handles patch tokens only, `cls_norm` CLS + storage tokens, and
        # `local_cls_norm` the CLS + storage tokens of local crops during training.
        self.norm = make_norm(config)
        self.cls_norm = make_norm(config) if config.untie_cls_and_patch_norms else None
        self.local_cls_norm = make_norm(config) if config.untie_global_and_local_cls_norm else None
        self.init_weights()

    def init_weights(self) -> None:
        """DINOv3's random initialisation (used for training from scratch)."""
        nn.init.normal_(self.cls_token, std=0.02)
        if self.n_storage_tokens > 0:
            nn.init.normal_(self.storage_tokens, std=0.02)
        nn.init.zeros_(self.mask_token)
        with torch.no_grad():
            self.rope_embed.periods.copy_(rope_periods(self.config, ROPE_DTYPES[self.config.rope_dtype]))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
                if isinstance(module, LinearKMaskedBias) and module.bias is not None:
                    o = module.out_features
                    module.bias_mask.fill_(1)
                    module.bias_mask[o // 3 : 2 * o // 3] = 0
            elif isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
                module.reset_parameters()
            elif isinstance(module, (LayerScale, PatchEmbed)):
                module.reset_parameters()

    def prepare_tokens(self, x: Tensor, masks: Tensor | None = None) -> tuple[Tensor, tuple[int, int]]:
        """Patch-embed, replace masked patches by the mask token, prepend CLS and storage tokens."""
        x = self.patch_embed(x)
        b, h, w, _ = x.shape
        x = x.flatten(1, 2)
        if masks is not None:
            x = torch.where(masks.unsqueeze(-1), self.mask_token.to(x.dtype).unsqueeze(0), x)
            cls_token = self.cls_token
        else:
            # Keeps the mask token in the autograd graph so DDP sees every parameter used.
            cls_token = self.cls_token + 0 * self.mask_token
        prefix = [cls_token.expand(b, -1, -1)]
        if self.n_storage_tokens > 0:
            prefix.append(self.storage_tokens.expand(b, -1, -1))
        return torch.cat(prefix + [x], dim=1), (h, w)

    def _run_blocks(self, x: Tensor, hw: tuple[int, int], keep: Sequence[int] = ()) -> tuple[Tensor, list[Tensor]]:
        kept = []
        for i, block in enumerate(self.blocks):
            # Recomputed per block on purpose: in training each block draws its own RoPE augmentation.
            x = block(x, self.rope_embed(*hw))
            if i in keep:
                kept.append(x)
        return x, kept

    def _split_normed(self, x: Tensor, local_crops: bool = False) -> tuple[Tensor, Tensor]:
        """Final norm(s); returns (normed CLS + storage tokens, normed patch tokens)."""
        n_prefix = self.n_storage_tokens + 1
        if self.cls_norm is None and self.local_cls_norm is None:
            x_norm = self.norm(x)
            return x_norm[:, :n_prefix], x_norm[:, n_prefix:]
        if local_crops and self.local_cls_norm is not None and self.training:
            prefix = self.local_cls_norm(x[:, :n_prefix])
        elif self.cls_norm is not None:
            prefix = self.cls_norm(x[:, :n_prefix])
        else:
            prefix = self.norm(x[:, :n_prefix])
        return prefix, self.norm(x[:, n_prefix:])

    def forward_features(
        self, x: Tensor | list[Tensor], masks: Tensor | list[Tensor | None] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Normed CLS, storage and patch tokens, plus the pre-norm sequence.

        A list of crops (DINOv3 pretraining: [global crops, local crops]) gives a list of outputs;
        the second entry counts as local crops for the untied local CLS norm.
        """
        if isinstance(x, Tensor):
            return self._forward_one(x, masks, local_crops=False)
        masks = masks if masks is not None else [None] * len(x)
        return [self._forward_one(t, m, local_crops=i == 1) for i, (t, m) in enumerate(zip(x, masks))]

    def _forward_one(self, x: Tensor, masks: Tensor | None, local_crops: bool) -> dict[str, Tensor]:
        tokens, hw = self.prepare_tokens(x, masks)
        tokens, _ = self._run_blocks(tokens, hw)
        prefix, patches = self._split_normed(tokens, local_crops)
        return {
            "x_norm_clstoken": prefix[:, 0],
            "x_storage_tokens": prefix[:, 1:],
            "x_norm_patchtokens": patches,
            "x_prenorm": tokens,
            "masks": masks,
        }

    def get_intermediate_layers(
        self,
        x: Tensor,
        n: int | Sequence[int] = 1,
        reshape: bool = False,
        return_class_token: bool = False,
        return_extra_tokens: bool = False,
        norm: bool = True,
    ) -> tuple:
        """Outputs of chosen blocks: `n` an int takes the last n blocks, a sequence names blocks."""
        take = list(range(self.n_blocks - n, self.n_blocks)) if isinstance(n, int) else list(n)
        bad = [i for i in take if not 0 <= i < self.n_blocks]
        if bad:
            raise ValueError(f"block indices {bad} out of range for a {self.n_blocks}-block backbone")
        tokens, hw = self.prepare_tokens(x)
        _, outputs = self._run_blocks(tokens, hw, keep=take)
        n_prefix = self.n_storage_tokens + 1
        if norm:
            outputs = [torch.cat(self._split_normed(out), dim=1) for out in outputs]
        cls_tokens = [out[:, 0] for out in outputs]
        extra_tokens = [out[:, 1:n_prefix] for out in outputs]
        patches = [out[:, n_prefix:] for out in outputs]
        if reshape:
            b = x.shape[0]
            h, w = hw
            patches = [p.reshape(b, h, w, -1).permute(0, 3, 1, 2).contiguous() for p in patches]
        parts = [patches]
        if return_class_token:
            parts.append(cls_tokens)
        if return_extra_tokens:
            parts.append(extra_tokens)
        return tuple(patches) if len(parts) == 1 else tuple(zip(*parts))

    def forward(self, x: Tensor, masks: Tensor | None = None) -> Tensor:
        return self.forward_features(x, masks)["x_norm_clstoken"]
