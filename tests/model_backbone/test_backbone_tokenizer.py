"""Byte tokenizer, Qwen3 tokenizer loading (from a small BPE built here) and special-token handling."""

from __future__ import annotations

import json

import pytest

from groot.errors import CheckpointError
from groot.model.tokenizer import ByteTokenizer, load_tokenizer

tokenizers = pytest.importorskip("tokenizers")

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>"]
CORPUS = ["You are a helpful assistant.", "pick up the red block and place it in the bowl",
          "system user assistant image", "open the drawer, then close it!"] * 20


def test_byte_tokenizer_ids_and_special_tokens():
    tok = load_tokenizer("bytes")
    assert (tok.pad_token_id, tok.image_token_id) == (256, 261)
    ids = tok.encode("<|im_start|>hé<img><IMG_CONTEXT><IMG_CONTEXT></img><|im_end|><|pad|>")
    assert ids == [257, ord("h"), 0xC3, 0xA9, 259, 261, 261, 260, 258, 256]
    assert tok.encode("<IMG_CONTEXT") == list(b"<IMG_CONTEXT")  # incomplete token stays bytes
    text = "<image 1><img><IMG_CONTEXT></img>Stack ü!"
    assert tok.decode(tok.encode(text)) == text


def test_byte_tokenizer_save_describes_ids(tmp_path):
    ByteTokenizer().save(tmp_path / "tok")
    saved = json.loads((tmp_path / "tok" / "byte_tokenizer.json").read_text())
    assert saved["special_tokens"]["<IMG_CONTEXT>"] == 261


def _train_small_bpe(corpus=CORPUS):
    """A small byte-level BPE (vocab + merges) learnt from CORPUS; how it splits words while learning is
    the library's GPT-2 default, so nothing of groot's own pre-tokenization goes into the vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    return tok


def _check_special_handling(tok):
    ids = tok.encode("<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>pick up<|im_end|>")
    assert ids[0] == tok._tok.token_to_id("<|im_start|>")
    assert ids.count(tok.image_token_id) == 2
    assert tok._tok.token_to_id("<img>") in ids and tok._tok.token_to_id("</img>") in ids
    assert tok.decode(ids) == "<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>pick up<|im_end|>"
    assert tok.pad_token_id == tok._tok.token_to_id("<|endoftext|>")


def test_qwen3_from_tokenizer_json(tmp_path):
    from tokenizers import AddedToken

    bpe = _train_small_bpe()
    bpe.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    bpe.save(str(tmp_path / "tokenizer.json"))
    tok = load_tokenizer("qwen3", tmp_path)
    _check_special_handling(tok)
    tok.save(tmp_path / "copy")
    again = load_tokenizer("qwen3", tmp_path / "copy")
    text = "open the drawer<|im_end|>"
    assert again.encode(text) == tok.encode(text) and again.pad_token_id == tok.pad_token_id


def test_qwen3_from_vocab_merges_and_added_tokens(tmp_path):
    bpe = _train_small_bpe()
    bpe.model.save(str(tmp_path))  # vocab.json + merges.txt
    base = bpe.get_vocab_size()
    (tmp_path / "added_tokens.json").write_text(json.dumps({t: base + i for i, t in enumerate(SPECIALS)}))
    tok = load_tokenizer("qwen3", tmp_path)
    _check_special_handling(tok)
    assert tok.image_token_id == base + SPECIALS.index("<IMG_CONTEXT>")
    assert tok.encode("pick up the red block") == bpe.encode("pick up the red block").ids


# digit runs, space runs and newline runs: the vocabulary learns merges across the boundaries that the Qwen2
# pre-tokenizer draws (single digits, "\s+(?!\S)", newline groups), so a wrong split shows up as other ids
PARITY_CORPUS = CORPUS + ["step 2024: 1234 items, 99 boxes, 12 34 56 78 90, 3.14159",
                          "a    b\n\n\nc  \n  d\r\n\r\ne \t\t f", "SOK SOK LLO"] * 20
PARITY_TEXTS = [
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "<image 1><img><IMG_CONTEXT><IMG_CONTEXT></img>pick up the red block<|im_end|>\n<|im_start|>assistant\n",
    "I'M SURE you'll like it; DON'T we've 12345 items, 3.14 and 1,000! IT'SOK, WE'LLO",  # contractions
    "  leading spaces,   runs   of spaces \t tabs\n\n\nnewlines\r\n and trailing   ",
    "caf\u0065\u0301 vs café, ünïcödé, 北京, emoji 😀 and <IMG_CONTEXT without closing",  # NFC, bytes
    "open the drawer,then close it!!! ...---",
    "step 2024: 1234 items a    b\n\n\nc  \n  d\r\n\r\ne \t\t f",
]


def test_qwen3_matches_transformers_qwen2_fast_tokenizer(tmp_path):
    """Both tokenizers are built from the same generated vocab.json / merges.txt / added tokens; the
    reference is transformers' own Qwen2 fast tokenizer (its pre-tokenizer regex, NFC, byte-level BPE)."""
    transformers = pytest.importorskip("transformers")
    bpe = _train_small_bpe(PARITY_CORPUS)
    bpe.model.save(str(tmp_path))
    added = {token: bpe.get_vocab_size() + i for i, token in enumerate(SPECIALS)}
    (tmp_path / "added_tokens.json").write_text(json.dumps(added))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "Qwen2Tokenizer", "pad_token": "<|endoftext|>", "eos_token": "<|im_end|>",
        "bos_token": None, "unk_token": None,
        "added_tokens_decoder": {str(i): {"content": token, "special": True, "normalized": False,
                                          "lstrip": False, "rstrip": False, "single_word": False}
                                 for token, i in added.items()}}))
    reference = transformers.Qwen2TokenizerFast.from_pretrained(str(tmp_path))
    assert reference.convert_tokens_to_ids(SPECIALS) == list(added.values())
    ours = load_tokenizer("qwen3", tmp_path)
    ours.save(tmp_path / "saved")
    saved = load_tokenizer("qwen3", tmp_path / "saved")  # the tokenizer.json groot writes to checkpoints
    for text in PARITY_TEXTS:
        expected = reference.encode(text, add_special_tokens=False)
        assert ours.encode(text) == expected, text
        assert saved.encode(text) == expected, text
        assert ours.decode(expected) == reference.decode(expected, skip_special_tokens=False), text
    assert ours.pad_token_id == reference.pad_token_id
    assert ours.image_token_id == reference.convert_tokens_to_ids("<IMG_CONTEXT>")


def test_qwen3_rejects_added_token_ids_that_do_not_follow_vocab(tmp_path):
    bpe = _train_small_bpe()
    bpe.model.save(str(tmp_path))
    (tmp_path / "added_tokens.json").write_text(json.dumps({"<IMG_CONTEXT>": 151669}))
    with pytest.raises(CheckpointError, match="151669"):
        load_tokenizer("qwen3", tmp_path)


def test_qwen3_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*args, **kwargs):
        raise LocalEntryNotFoundError("no connection")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(CheckpointError, match="offline"):
        load_tokenizer("qwen3", tmp_path)  # empty dir -> falls back to the hub


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        load_tokenizer("sentencepiece")
