"""A small CLIP-style BPE tokenizer trained in memory, so models can be built offline (tests, benchmark).

The real CLIP vocabulary (49,408 tokens) is a download; what the benchmark and the tests need is only a
tokenizer that behaves like transformers' `CLIPTokenizer` (same normalisation, word-final `</w>` tokens,
77-token window), so prompts tokenise, pad and window exactly as they do with a real model.
"""

from __future__ import annotations

import itertools
import json

from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
WINDOW = 77  #: the CLIP text window real Stable Diffusion models use
_SUBJECTS = ["castle", "cat", "dog", "forest", "city", "robot", "portrait", "mountain", "ship", "garden"]
_STYLES = ["at dusk", "in the rain", "oil painting", "watercolor", "photo", "neon", "misty", "golden hour"]
_EXTRAS = ["fog", "people", "blurry", "text", "a red apple", "ocean waves", "highly detailed", "4k"]
_CORPUS = [f"a {s} {t}, {e}" for s, t, e in itertools.product(_SUBJECTS, _STYLES, _EXTRAS)]


def build_clip_tokenizer(vocab_size: int = 600) -> CLIPTokenizer:
    """Train a small CLIP-style byte-level BPE (words end in `</w>`) in memory; the pipeline saves it."""
    bpe = Tokenizer(models.BPE(unk_token=EOS, end_of_word_suffix="</w>"))
    # Same normalisation and pre-tokenisation as transformers' CLIPTokenizer, so merges apply identically.
    bpe.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""),
                behavior="removed",
                invert=True,
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, EOS],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    vocab: dict[str, int] = dict(state["vocab"])
    # Every byte must also exist as a word-final token, as in the real CLIP vocabulary, so no text is <unk>.
    for char in sorted(alphabet):
        vocab.setdefault(char + "</w>", len(vocab))
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in state["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=WINDOW)
