"""Tokenizers: a built-in byte-level tokenizer (small presets, no download) and the Qwen3 / Eagle BPE.

Both expose `encode(text) -> list[int]`, `decode(ids) -> str`, `pad_token_id`, `image_token_id`,
`save(directory)`, and recognise the chat / image special tokens written literally in the text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from groot.errors import CheckpointError

IMAGE_TOKEN = "<IMG_CONTEXT>"
EAGLE_PROCESSOR_REPO = "lerobot/eagle2hg-processor-groot-n1p5"
QWEN3_FILES = ("vocab.json", "merges.txt", "added_tokens.json", "tokenizer_config.json")
QWEN3_DEFAULT_PAD = "<|endoftext|>"
# Qwen2/3 pre-tokenization: contractions, letter runs, single digits, punctuation runs, newlines, spaces
QWEN_SPLIT_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                      r"|\s*[\r\n]+|\s+(?!\S)|\s+")


class ByteTokenizer:
    """UTF-8 bytes are ids 0..255; the special tokens follow (ARCHITECTURE.md)."""

    kind = "bytes"
    special_tokens = ("<|pad|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", IMAGE_TOKEN)

    def __init__(self) -> None:
        self._special_ids = {tok: 256 + i for i, tok in enumerate(self.special_tokens)}
        self._special_split = re.compile("(" + "|".join(re.escape(t) for t in self.special_tokens) + ")")
        self.pad_token_id = self._special_ids["<|pad|>"]
        self.image_token_id = self._special_ids[IMAGE_TOKEN]
        self.vocab_size = 256 + len(self.special_tokens)

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._special_split.split(text):
            special = self._special_ids.get(piece)
            ids.extend([special] if special is not None else piece.encode("utf-8"))
        return ids

    def decode(self, ids: list[int]) -> str:
        out, pending = [], bytearray()
        for i in ids:
            if i < 256:
                pending.append(i)
                continue
            out.append(pending.decode("utf-8", errors="replace"))
            pending.clear()
            out.append(self.special_tokens[i - 256])
        out.append(pending.decode("utf-8", errors="replace"))
        return "".join(out)

    def save(self, directory: str | Path) -> None:
        """Writes `byte_tokenizer.json` describing the ids (the tokenizer itself is built in)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        description = {"kind": self.kind, "bytes": [0, 255], "special_tokens": self._special_ids}
        (directory / "byte_tokenizer.json").write_text(json.dumps(description, indent=2))

    save_pretrained = save  # the name the checkpoint writer looks for


class Qwen3Tokenizer:
    """The Qwen3 byte-level BPE with Eagle's added tokens, run by the `tokenizers` library."""

    kind = "qwen3"

    def __init__(self, tokenizer, pad_token: str = QWEN3_DEFAULT_PAD, source: str = "tokenizer"):
        self._tok = tokenizer
        self.pad_token = pad_token
        self.pad_token_id = self._required_id(pad_token, source)
        self.image_token_id = self._required_id(IMAGE_TOKEN, source)
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)

    def _required_id(self, token: str, source: str) -> int:
        token_id = self._tok.token_to_id(token)
        if token_id is None:
            raise CheckpointError(source, token, "a token present in the vocabulary", "no such token")
        return token_id

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(ids, skip_special_tokens=False)

    def save(self, directory: str | Path) -> None:
        """Writes `tokenizer.json` (the whole tokenizer) and `tokenizer_config.json` (pad token)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._tok.save(str(directory / "tokenizer.json"))
        config = {"pad_token": self.pad_token, "padding_side": "left"}
        (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2))

    save_pretrained = save  # the name the checkpoint writer looks for


def load_tokenizer(kind: str, model_dir: str | Path | None = None) -> ByteTokenizer | Qwen3Tokenizer:
    """kind "bytes": the built-in byte tokenizer. kind "qwen3": from `model_dir/tokenizer.json`, else
    `model_dir/{vocab.json, merges.txt, added_tokens.json}`, else downloaded from the hub
    (`lerobot/eagle2hg-processor-groot-n1p5`)."""
    if kind == "bytes":
        return ByteTokenizer()
    if kind != "qwen3":
        raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'bytes' or 'qwen3'")
    directory = Path(model_dir) if model_dir is not None else None
    if directory is not None and (directory / "tokenizer.json").is_file():
        return _qwen3_from_tokenizer_json(directory)
    if directory is not None and all((directory / f).is_file() for f in ("vocab.json", "merges.txt")):
        return _qwen3_from_vocab_files(directory)
    return _qwen3_from_vocab_files(_download_qwen3_files())


def _pad_token(directory: Path) -> str:
    config_path = directory / "tokenizer_config.json"
    if not config_path.is_file():
        return QWEN3_DEFAULT_PAD
    pad = json.loads(config_path.read_text()).get("pad_token") or QWEN3_DEFAULT_PAD
    return pad["content"] if isinstance(pad, dict) else pad


def _qwen3_from_tokenizer_json(directory: Path) -> Qwen3Tokenizer:
    from tokenizers import Tokenizer

    path = directory / "tokenizer.json"
    return Qwen3Tokenizer(Tokenizer.from_file(str(path)), _pad_token(directory), source=str(path))


def _qwen3_from_vocab_files(directory: Path) -> Qwen3Tokenizer:
    """Assemble the Qwen2/3 fast tokenizer: NFC, regex split + byte-level, BPE, added tokens."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    tok = Tokenizer(models.BPE.from_file(str(directory / "vocab.json"), str(directory / "merges.txt")))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    added_path = directory / "added_tokens.json"
    added = json.loads(added_path.read_text()) if added_path.is_file() else {}
    for token, expected_id in sorted(added.items(), key=lambda item: item[1]):
        tok.add_special_tokens([AddedToken(token, special=True, normalized=False)])
        if tok.token_to_id(token) != expected_id:
            raise CheckpointError(added_path, token, f"id {expected_id} (ids must follow the vocabulary)",
                                  tok.token_to_id(token))
    return Qwen3Tokenizer(tok, _pad_token(directory), source=str(directory))


def _download_qwen3_files() -> Path:
    """Fetch the Eagle processor's tokenizer files into the hub cache; returns their directory."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        paths = [Path(hf_hub_download(EAGLE_PROCESSOR_REPO, name)) for name in QWEN3_FILES]
    except (OSError, HfHubHTTPError) as err:
        raise CheckpointError(
            f"hub:{EAGLE_PROCESSOR_REPO}", None,
            f"downloadable tokenizer files {list(QWEN3_FILES)} (offline? pass a model_dir holding "
            "tokenizer.json or vocab.json + merges.txt + added_tokens.json, or use tokenizer='bytes')",
            f"{type(err).__name__}: {err}") from err
    return paths[0].parent
