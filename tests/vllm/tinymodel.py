"""Makes the tiny Llama that real vLLM serves in the contract tests; run by vLLM's python.

Nothing is downloaded: the architecture is a ``LlamaConfig`` written here (hidden size
128, 2 layers, 4 heads, a 512-token context), the weights are random with a fixed seed,
and the tokenizer is a 4,096-token byte-level BPE trained with ``tokenizers`` on source
files of the interpreter's own standard library. The result (~3 MB) is a Hugging Face
directory with a chat template, so ``vllm serve DIR`` serves chat and completions.

Usage: ``python tinymodel.py OUT_DIR``; it writes into ``OUT_DIR`` and nothing else.
The caller caches the directory by this file's digest (tests/vllm/conftest.py).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

CONTEXT = 512
VOCAB = 4096
SPECIALS = ["<unk>", "<s>", "</s>"]
# A template in the Llama-2 style, small enough to read: vLLM's chat endpoint renders it.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "{{ '[' + m['role'] + '] ' + m['content'] + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '[assistant] ' }}{% endif %}"
)


def training_text() -> list[str]:
    """Files of the standard library: the same text wherever this Python is installed."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [str(p) for p in sorted((stdlib / "email").glob("*.py"))]


def tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    bpe.train(training_text(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        model_max_length=CONTEXT,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)


def model(out: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=CONTEXT,
        bos_token_id=1,
        eos_token_id=2,
        torch_dtype="bfloat16",
    )
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)


def main(argv: list[str]) -> int:
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    tokenizer(out)
    model(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
