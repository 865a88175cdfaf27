"""Generate CREST-shaped checkpoints offline: for tests, benchmarks and an air-gapped demo.

Hugging Face is not reachable everywhere crest-proxy is built, so tests and benchmarks generate their
own ``XLMRobertaForSequenceClassification`` checkpoints with a tokenizer trained on the spot:

* ``build_trigger_model`` hand-sets the weights of a small but real transformer so that P(unsafe) is ~1
  exactly when one of the trigger words occurs anywhere in the input, and ~0 otherwise. That makes
  window, batching and backend-agreement tests exact.
* ``build_random_model`` makes a randomly initialised model; with ``shape="xlm-roberta-base"`` it costs
  exactly what CREST-Base costs, which is what every speed figure uses.

torch, transformers and tokenizers are imported lazily (only when a model is built).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TRIGGERS: tuple[str, ...] = ("kaboom", "zarquon")

# XLM-R's special-token order: <s>=0, <pad>=1, </s>=2, <unk>=3; <mask> is last in the real vocabulary.
_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]

_CORPUS = """
The quick brown fox jumps over the lazy dog. How are you today? I would like a summary of this report.
Please translate the following sentence into French. What is the weather like in Paris tomorrow?
Le renard brun saute par-dessus le chien paresseux. Bonjour, comment allez-vous ?
Der schnelle braune Fuchs springt über den faulen Hund. Wie geht es dir heute?
El rápido zorro marrón salta sobre el perro perezoso. ¿Cómo estás hoy?
Быстрая коричневая лиса прыгает через ленивую собаку. Как дела?
今日はいい天気ですね。東京へ行きます。猫が好きです！本当ですか？
我今天很好。你叫什么名字？这是一个测试。天气很好！
आज मौसम अच्छा है। मैं घर जा रहा हूँ। क्या आप ठीक हैं॥
আমি ভাত খাই। তুমি কেমন আছ। আজ বৃষ্টি হবে।
مرحبا كيف حالك؟ أنا بخير۔ هذا اختبار.
สวัสดีครับ วันนี้อากาศดีมาก ผมชอบกินข้าว
Habari yako? Ninapenda kusoma vitabu. Leo ni siku nzuri.
Write a poem about the sea. Explain how transformers work. List three colours.
"""


_ASCII = "()[]{}<>!?.,;:'\"-_/\\@#$%^&*+=~`| 0123456789 abcdefghijklmnopqrstuvwxyz"


def train_tokenizer(out_dir: str | Path, *, vocab_size: int = 800, extra_words: Iterable[str] = ()) -> Any:
    """Train a small tokenizer in XLM-R's format (Metaspace pieces, <s> … </s>) and save it to ``out_dir``.

    BPE rather than XLM-R's Unigram: on a corpus this small the Unigram trainer never keeps whole
    words, and the trigger model needs each trigger word to be exactly one piece.
    """
    from tokenizers import (
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import XLMRobertaTokenizerFast

    extra = list(extra_words)
    # Repeating the extra words makes the trainer merge each into one whole piece ("▁word").
    corpus = _CORPUS.strip().splitlines() + [" ".join(extra * 50)] * 20 + [_ASCII]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    # Lower-casing and splitting punctuation make "KABOOM!" and "(kaboom)" trigger like "kaboom". Newlines and
    # tabs become spaces, as XLM-R's SentencePiece normalizer (nmt_nfkc) does: "Steps:\nkaboom" is two words.
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFKC(), normalizers.Replace(Regex(r"\s"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Punctuation(), pre_tokenizers.Metaspace(prepend_scheme="always", split=True)]
    )
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=_SPECIALS[:4], show_progress=False)
    tok.train_from_iterator(corpus, trainer=trainer)
    tok.add_special_tokens(["<mask>"])
    bos, eos = tok.token_to_id("<s>"), tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)]
    )
    fast = XLMRobertaTokenizerFast(tokenizer_object=tok, model_max_length=512)
    fast.save_pretrained(str(out_dir))
    return fast


def _config(vocab_size: int, shape: str, **overrides: Any) -> Any:
    from transformers import XLMRobertaConfig

    sizes = _SHAPES[shape]
    kwargs: dict[str, Any] = dict(
        vocab_size=vocab_size,
        max_position_embeddings=514,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        num_labels=2,
        id2label={0: "safe", 1: "unsafe"},
        label2id={"safe": 0, "unsafe": 1},
        **sizes,
    )
    kwargs.update(overrides)
    return XLMRobertaConfig(**kwargs)


_SHAPES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
    "small": dict(hidden_size=128, num_hidden_layers=4, num_attention_heads=4, intermediate_size=512),
    "xlm-roberta-base": dict(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072
    ),
}


def build_random_model(
    out_dir: str | Path, *, shape: str = "xlm-roberta-base", seed: int = 0, vocab_size: int | None = None
) -> Path:
    """Save a randomly initialised CREST-shaped classifier (and a small trained tokenizer) to ``out_dir``."""
    import torch
    from transformers import XLMRobertaForSequenceClassification

    out = Path(out_dir)
    tokenizer = train_tokenizer(out)
    vocab = vocab_size or (250002 if shape == "xlm-roberta-base" else len(tokenizer))
    torch.manual_seed(seed)
    model = XLMRobertaForSequenceClassification(_config(vocab, shape)).eval()
    model.save_pretrained(str(out))
    return out


def build_trigger_model(
    out_dir: str | Path,
    *,
    triggers: Sequence[str] = DEFAULT_TRIGGERS,
    shape: str = "tiny",
    id2label: dict[int, str] | None = None,
) -> Path:
    """Save a real XLM-R classifier whose P(unsafe) is ~1 iff a trigger word occurs in the text.

    How: dimension 1 of the embedding flags trigger tokens; in layer 0, one attention head of the <s>
    token attends (almost) only to flagged tokens and copies the flag into dimension 2; every other
    sub-layer is zeroed so the residual stream passes through; the classification head reads
    dimension 2 of <s>. Works at any position within a 512-token window.
    """
    out = Path(out_dir)
    tokenizer = train_tokenizer(out, extra_words=triggers)
    trigger_ids = _single_token_ids(tokenizer, triggers)
    labels = id2label or {0: "safe", 1: "unsafe"}
    config = _config(len(tokenizer), shape, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = _hand_set(config, trigger_ids, tokenizer, unsafe_index=_unsafe_index(labels))
    model.save_pretrained(str(out))
    meta = {"kind": "trigger", "triggers": list(triggers), "trigger_ids": trigger_ids}
    (out / "synthetic.json").write_text(json.dumps(meta, indent=2))
    return out


def _unsafe_index(labels: dict[int, str]) -> int:
    for idx, name in labels.items():
        if name.lower() in {"unsafe", "label_1", "harmful", "toxic"}:
            return idx
    return 1


def _single_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    ids = []
    for word in words:
        pieces = tokenizer.tokenize(" " + word)
        if len(pieces) != 1:
            raise ValueError(f"trigger {word!r} is not a single token: {pieces}")
        ids.append(tokenizer.convert_tokens_to_ids(pieces[0]))
    return ids


def _hand_set(config: Any, trigger_ids: list[int], tokenizer: Any, *, unsafe_index: int) -> Any:
    import torch
    from transformers import XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.fill_(1.0)
        _set_embeddings(model, trigger_ids)
        _set_trigger_attention(model, config)
        _set_head(model, tokenizer, trigger_ids, unsafe_index)
    return model


def _set_embeddings(model: Any, trigger_ids: list[int]) -> None:
    words = model.roberta.embeddings.word_embeddings.weight
    words[:, 0] = 1.0  # a constant component keeps LayerNorm well defined for every token
    words[trigger_ids, 1] = 1.0  # the trigger flag


def _set_trigger_attention(model: Any, config: Any) -> None:
    head_dim = config.hidden_size // config.num_attention_heads
    attn = model.roberta.encoder.layer[0].attention
    # After the embedding LayerNorm, dim 1 is ~-0.18 for ordinary tokens and ~+3.9 for trigger tokens.
    # A constant query times a key proportional to dim 1 puts nearly all attention on trigger tokens.
    attn.self.query.bias[0] = 8.0
    attn.self.key.weight[0, 1] = 8.0 * math.sqrt(head_dim) / 4.0
    attn.self.value.weight[0, 1] = 1.0
    attn.self.value.bias[0] = _ordinary_dim1(config.hidden_size) * -1.0
    attn.output.dense.weight[2, 0] = 2.0


def _ordinary_dim1(hidden: int) -> float:
    """Value of dim 1 after LayerNorm for an ordinary token embedding (1, 0, 0, ...)."""
    mean = 1.0 / hidden
    var = ((1 - mean) ** 2 + (hidden - 1) * mean**2) / hidden
    return -mean / math.sqrt(var + 1e-5)


def _set_head(model: Any, tokenizer: Any, trigger_ids: list[int], unsafe_index: int) -> None:
    head = model.classifier
    head.dense.weight[0, 2] = 1.0
    head.out_proj.weight[unsafe_index, 0] = 6.0
    head.out_proj.weight[1 - unsafe_index, 0] = -6.0
    # Put the decision boundary halfway between a text with and without a trigger.
    trigger_word = tokenizer.convert_ids_to_tokens(trigger_ids[0]).lstrip("\u2581")
    plain = _cls_dim2(model, tokenizer("hello world", return_tensors="pt"))
    flagged = _cls_dim2(model, tokenizer("hello " + trigger_word, return_tensors="pt"))
    if not flagged > plain + 1.0:
        raise RuntimeError(f"hand-set trigger model failed to separate ({plain:.3f} vs {flagged:.3f})")
    head.dense.bias[0] = -(plain + flagged) / 2.0
    head.dense.weight[0, 2] = 4.0 / (flagged - plain)
    head.dense.bias[0] *= 4.0 / (flagged - plain)


def _cls_dim2(model: Any, enc: Any) -> float:
    out = model.roberta(**enc)
    return float(out.last_hidden_state[0, 0, 2])
