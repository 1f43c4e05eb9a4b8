"""Prompt → text-encoder embeddings, whole: long prompts are encoded in windows and concatenated.

CLIP reads 77 tokens (75 plus start and end). A longer prompt is split into windows of 75 tokens, each
encoded with its own start/end/padding and the results joined along the sequence axis (the UNet's
cross-attention accepts any length), as AUTOMATIC1111 does. Up to `MAX_PROMPT_CHUNKS` windows are read;
anything beyond is reported in a warning, never silently cut. The positive and negative prompt of one
request are padded to the same number of windows with empty windows.

A one-window prompt gives exactly the tensors diffusers' own `encode_prompt` gives (same token ids, same
layer: the last hidden state for SD 1.x/2.x; the penultimate hidden states of both encoders, concatenated,
plus the second encoder's pooled projection for SDXL; zeros for an empty SDXL negative prompt when the
model asks for it with `force_zeros_for_empty_prompt`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from bot.engine.prompt import MAX_PROMPT_CHUNKS


@dataclass
class Encoded:
    """One request's conditioning, batch dimension 1."""

    positive: torch.Tensor  #: (1, windows × 77, width)
    negative: torch.Tensor | None  #: same shape; None without classifier-free guidance
    pooled: torch.Tensor | None  #: SDXL: (1, projection width)
    negative_pooled: torch.Tensor | None
    warnings: list[str]


class PromptEncoder:
    """Encodes prompts with a loaded pipeline's tokenizer(s) and text encoder(s)."""

    def __init__(self, pipe: Any, *, sdxl: bool) -> None:
        pairs = [(pipe.tokenizer, pipe.text_encoder)]
        if sdxl:
            pairs.append((pipe.tokenizer_2, pipe.text_encoder_2))
        self.pairs = [(tok, enc) for tok, enc in pairs if tok is not None and enc is not None]
        self.sdxl = sdxl
        self.zero_empty_negative = sdxl and bool(pipe.config.get("force_zeros_for_empty_prompt", False))
        self.dtype = self.pairs[-1][1].dtype  # diffusers casts to the last encoder's dtype too

    def encode(self, prompt: str, negative: str, *, guidance: bool) -> Encoded:
        """Embeddings for one request; `guidance` says whether the negative side is needed at all."""
        prompt_ids = self._token_ids(prompt)
        negative_ids = self._token_ids(negative) if guidance else [[] for _ in self.pairs]
        windows = max(self._windows(prompt_ids), self._windows(negative_ids) if guidance else 1)
        warnings = [
            message
            for label, ids in (("prompt", prompt_ids), ("negative prompt", negative_ids))
            if (message := self._dropped(label, ids[0]))
        ]
        positive, pooled = self._embed(prompt_ids, windows)
        negative_embeds = negative_pooled = None
        if guidance and not negative and self.zero_empty_negative:
            negative_embeds = torch.zeros_like(positive)
            negative_pooled = torch.zeros_like(pooled) if pooled is not None else None
        elif guidance:
            negative_embeds, negative_pooled = self._embed(negative_ids, windows)
        return Encoded(positive, negative_embeds, pooled, negative_pooled, warnings)

    def _token_ids(self, text: str) -> list[list[int]]:
        return [
            tokenizer(text, add_special_tokens=False, truncation=False, verbose=False).input_ids
            for tokenizer, _ in self.pairs
        ]

    def _windows(self, ids: list[list[int]]) -> int:
        tokenizers = [tokenizer for tokenizer, _ in self.pairs]
        longest = max(
            math.ceil(len(seq) / (tok.model_max_length - 2)) for seq, tok in zip(ids, tokenizers, strict=True)
        )
        return min(MAX_PROMPT_CHUNKS, max(1, longest))

    def _dropped(self, label: str, ids: list[int]) -> str | None:
        tokenizer = self.pairs[0][0]
        limit = MAX_PROMPT_CHUNKS * (tokenizer.model_max_length - 2)
        if len(ids) <= limit:
            return None
        dropped = tokenizer.decode(ids[limit:]).strip()
        return (
            f"The {label} is {len(ids)} tokens; the model reads {limit}, so the last {len(ids) - limit} "
            f"were dropped: “{dropped}”."
        )

    def _embed(self, ids: list[list[int]], windows: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        for seq, (tokenizer, encoder) in zip(ids, self.pairs, strict=True):
            batch, mask = (t.to(encoder.device) for t in self._window_ids(tokenizer, seq, windows))
            if self.sdxl:
                output = encoder(batch, output_hidden_states=True)
                if output[0].ndim == 2:  # the projection model's pooled `text_embeds`
                    pooled = output[0][:1]  # the first window speaks for the whole prompt, as in A1111
                states = output.hidden_states[-2]
            else:
                use_mask = getattr(encoder.config, "use_attention_mask", False)
                states = encoder(batch, attention_mask=mask if use_mask else None)[0]
            hidden.append(states.reshape(1, -1, states.shape[-1]))
        embeds = torch.cat(hidden, dim=-1).to(self.dtype)
        return embeds, pooled.to(self.dtype) if pooled is not None else None

    @staticmethod
    def _window_ids(tokenizer: Any, ids: list[int], windows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`windows` rows of [start, ≤75 tokens, end, padding] and their attention masks: the same ids
        diffusers makes for a one-window prompt."""
        size = tokenizer.model_max_length
        content = size - 2
        rows, masks = [], []
        for index in range(windows):
            part = ids[index * content : (index + 1) * content]
            row = [tokenizer.bos_token_id, *part, tokenizer.eos_token_id]
            rows.append(row + [tokenizer.pad_token_id] * (size - len(row)))
            masks.append([1] * len(row) + [0] * (size - len(row)))
        return torch.tensor(rows, dtype=torch.long), torch.tensor(masks, dtype=torch.long)
