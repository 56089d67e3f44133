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


def _train_small_bpe():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    from groot.model.tokenizer import QWEN_SPLIT_PATTERN

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
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
