"""Training data: files (parquet, jsonl/json, csv) → rows → tokenized examples with loss masks.

Every row keeps its origin (file and 1-based row number; for jsonl and csv the row number is the line's data row),
so a bad row is reported as ``data.jsonl: row 7: column 'response' ...`` rather than a stack trace from deep
inside the trainer.
"""

from __future__ import annotations

import csv
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaito.runtime.tuning.config import DatasetConfig

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase

FORMATS = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "json", ".csv": "csv"}
"""File suffix → format. ``.json`` holds either a JSON array of objects or JSON lines."""

CHAT_ROLES = ("system", "user", "assistant", "tool")
"""Roles accepted in ``messages`` (OpenAI chat format)."""

IGNORE_INDEX = -100
"""Label of tokens the loss ignores (PyTorch ``CrossEntropyLoss`` default ``ignore_index``)."""


class DatasetError(ValueError):
    """The training data is missing, empty or malformed; the message names the file, row and column."""


@dataclass(frozen=True)
class Row:
    """One record and where it came from."""

    values: dict[str, Any]
    source: str
    """``<file name>: row <n>`` (1-based data rows)."""


@dataclass(frozen=True)
class Example:
    """One tokenized training example: ``input_ids`` and ``labels`` of equal length (``-100`` = not trained on)."""

    input_ids: list[int]
    labels: list[int]


@dataclass(frozen=True)
class Splits:
    """Train and eval examples after shuffle and split, plus which row shape was detected."""

    train: list[Example]
    eval: list[Example]
    shape: str
    """``"messages"``, ``"prompt_response"`` or ``"text"``."""


def find_files(data_dir: str | Path, cfg: DatasetConfig) -> list[Path]:
    """List the dataset files: ``cfg.dataset_path`` (file or directory, relative to ``data_dir``) or ``data_dir``.

    In a directory, every file with a known suffix (or, with ``dataset_extension``, every regular file not
    starting with ``.``) is used, sorted by name.

    Raises:
        DatasetError: the path does not exist or holds no dataset file.
    """
    base = Path(data_dir)
    target = base / cfg.dataset_path if cfg.dataset_path else base
    if not target.exists():
        raise DatasetError(
            f"DatasetConfig.dataset_path: {target} does not exist; put the data there (the downloader writes to "
            "/mnt/data) or fix dataset_path"
        )
    if target.is_file():
        return [target]
    files = sorted(
        p
        for p in target.iterdir()
        if p.is_file() and not p.name.startswith(".") and (cfg.dataset_extension or p.suffix.lower() in FORMATS)
    )
    if not files:
        raise DatasetError(
            f"{target}: no dataset files (.parquet, .jsonl, .json, .csv); for files without a suffix set "
            "DatasetConfig.dataset_extension"
        )
    return files


def read_rows(path: Path, extension: str | None = None) -> list[Row]:
    """Read one file into rows.

    Args:
        path: a parquet, jsonl, json or csv file.
        extension: format override (``DatasetConfig.dataset_extension``); else from the suffix.

    Raises:
        DatasetError: unknown format, empty file, or a malformed row (with its row number).
    """
    fmt = (extension or "").lstrip(".") or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DatasetError(f"{path.name}: unknown format; use .parquet, .jsonl, .json or .csv or set dataset_extension")
    if path.stat().st_size == 0:
        raise DatasetError(f"{path.name}: the file is empty; it needs at least one row")
    if fmt == "parquet":
        rows = _read_parquet(path)
    elif fmt == "csv":
        rows = _read_csv(path)
    else:
        rows = _read_json(path)
    if not rows:
        raise DatasetError(f"{path.name}: the file has no rows")
    return rows


def _read_parquet(path: Path) -> list[Row]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        records = pq.read_table(path).to_pylist()
    except (pa.ArrowException, OSError) as e:
        raise DatasetError(f"{path.name}: not a readable parquet file: {e}") from e
    return [Row(r, f"{path.name}: row {i}") for i, r in enumerate(records, start=1)]


def _read_csv(path: Path) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    reader = csv.reader(text.splitlines(keepends=True))
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path.name}: the file is empty; it needs a header line and at least one row") from None
    except csv.Error as e:
        raise DatasetError(f"{path.name}: line 1: malformed CSV header: {e}") from e
    rows: list[Row] = []
    n = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DatasetError(f"{path.name}: line {reader.line_num}: malformed CSV: {e}") from e
        if not fields:
            continue
        n += 1
        if len(fields) != len(header):
            raise DatasetError(
                f"{path.name}: row {n} (line {reader.line_num}): {len(fields)} fields, but the header has "
                f"{len(header)} ({', '.join(header)}); quote values that contain commas"
            )
        rows.append(Row(dict(zip(header, fields, strict=True)), f"{path.name}: row {n}"))
    return rows


def _read_json(path: Path) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    stripped = text.lstrip()
    if not stripped:
        raise DatasetError(f"{path.name}: the file is empty; it needs at least one row")
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path.name}: line {e.lineno}: malformed JSON: {e.msg}") from e
        rows = []
        for i, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise DatasetError(f"{path.name}: row {i}: expected a JSON object, got {type(item).__name__}")
            rows.append(Row(item, f"{path.name}: row {i}"))
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{path.name}: row {lineno}: malformed JSON line: {e.msg} (column {e.colno})") from e
        if not isinstance(item, dict):
            raise DatasetError(f"{path.name}: row {lineno}: expected a JSON object, got {type(item).__name__}")
        rows.append(Row(item, f"{path.name}: row {lineno}"))
    return rows


def detect_shape(rows: Sequence[Row], cfg: DatasetConfig) -> str:
    """Pick the row shape from the first row's columns: messages, then prompt/response, then text.

    Raises:
        DatasetError: none of the three column sets is present (names the columns found and the ones expected).
    """
    cols = set(rows[0].values)
    if cfg.messages_column in cols:
        return "messages"
    if cfg.context_column in cols or cfg.response_column in cols:
        missing = [c for c in (cfg.context_column, cfg.response_column) if c not in cols]
        if missing:
            raise DatasetError(
                f"{rows[0].source}: missing column {missing[0]!r} (prompt/response rows need both "
                f"{cfg.context_column!r} and {cfg.response_column!r}; found {', '.join(sorted(cols))}); "
                "rename the column or set DatasetConfig.context_column/response_column"
            )
        return "prompt_response"
    if cfg.text_column in cols:
        return "text"
    raise DatasetError(
        f"{rows[0].source}: no usable columns (found {', '.join(sorted(map(str, cols))) or 'none'}); expected "
        f"{cfg.messages_column!r} (chat), {cfg.context_column!r}+{cfg.response_column!r}, or {cfg.text_column!r}; "
        "rename the columns or set the DatasetConfig *_column keys"
    )


def _text(row: Row, column: str) -> str:
    if column not in row.values:
        raise DatasetError(f"{row.source}: missing column {column!r}")
    value = row.values[column]
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise DatasetError(f"{row.source}: column {column!r} is empty")
    if not isinstance(value, str):
        raise DatasetError(f"{row.source}: column {column!r} must be text, got {type(value).__name__}")
    if not value.strip():
        raise DatasetError(f"{row.source}: column {column!r} is empty")
    return value


def _messages(row: Row, column: str) -> list[dict[str, str]]:
    if column not in row.values:
        raise DatasetError(f"{row.source}: missing column {column!r}")
    raw = row.values[column]
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as e:
            raise DatasetError(f"{row.source}: column {column!r} is not a JSON list of messages: {e.msg}") from e
    if hasattr(raw, "tolist"):  # numpy arrays from pandas-written parquet
        raw = raw.tolist()
    if not isinstance(raw, list) or not raw:
        raise DatasetError(f"{row.source}: column {column!r} must be a non-empty list of {{role, content}} messages")
    out: list[dict[str, str]] = []
    for i, m in enumerate(raw):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DatasetError(f"{row.source}: column {column!r}: message {i} needs string 'role' and 'content'")
        if m["role"] not in CHAT_ROLES:
            raise DatasetError(
                f"{row.source}: column {column!r}: message {i} has role {m['role']!r}; use one of "
                f"{', '.join(CHAT_ROLES)}"
            )
        out.append({"role": m["role"], "content": m["content"]})
    if not any(m["role"] == "assistant" for m in out):
        raise DatasetError(f"{row.source}: column {column!r}: no assistant message to learn from")
    return out


def tokenize_row(row: Row, shape: str, tokenizer: PreTrainedTokenizerBase, cfg: DatasetConfig) -> Example:
    """Turn one row into an :class:`Example`.

    Chat and prompt/response rows are rendered with the tokenizer's chat template (the same template the inference
    server applies to ``/v1/chat/completions``), and with ``loss_on_response_only`` only the assistant turns are
    trained on. Text rows are trained on whole, with the EOS token appended.

    Raises:
        DatasetError: a missing or empty column, or a malformed message list.
    """
    if shape == "text":
        text = _text(row, cfg.text_column)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = [*ids, tokenizer.eos_token_id]
        ids = ids[: cfg.max_seq_length]
        return Example(list(ids), list(ids))
    if shape == "prompt_response":
        messages = [
            {"role": "user", "content": _text(row, cfg.context_column)},
            {"role": "assistant", "content": _text(row, cfg.response_column)},
        ]
    else:
        messages = _messages(row, cfg.messages_column)
    return _tokenize_chat(messages, tokenizer, cfg)


def _render(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt))


def _tokenize_chat(messages: list[dict[str, str]], tokenizer: PreTrainedTokenizerBase, cfg: DatasetConfig) -> Example:
    if getattr(tokenizer, "chat_template", None):
        full = _render(tokenizer, messages, False)
        spans: list[tuple[int, int]] = []
        for i, m in enumerate(messages):
            if m["role"] != "assistant":
                continue
            before = _render(tokenizer, messages[:i], True) if i else ""
            upto = _render(tokenizer, messages[: i + 1], False)
            if not (full.startswith(upto) and upto.startswith(before)):
                spans = [(0, len(full))]  # a template that is not prefix-stable: train on everything
                break
            spans.append((len(before), len(upto)))
    else:
        # No chat template: "prompt\nresponse<eos>", responses trained on.
        parts: list[str] = []
        spans = []
        pos = 0
        for m in messages:
            piece = m["content"] + "\n"
            if m["role"] == "assistant":
                piece = m["content"] + (tokenizer.eos_token or "") + "\n"
                spans.append((pos, pos + len(piece)))
            parts.append(piece)
            pos += len(piece)
        full = "".join(parts)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = list(enc["input_ids"])
    offsets: list[tuple[int, int]] = list(enc["offset_mapping"])
    if cfg.loss_on_response_only:
        labels = [
            tok if any(start <= off[0] < end for start, end in spans) else IGNORE_INDEX
            for tok, off in zip(ids, offsets, strict=True)
        ]
    else:
        labels = list(ids)
    return Example(ids[: cfg.max_seq_length], labels[: cfg.max_seq_length])


def load_dataset(
    data_dir: str | Path, cfg: DatasetConfig, tokenizer: PreTrainedTokenizerBase, files: Iterable[Path] | None = None
) -> Splits:
    """Read, validate, tokenize, shuffle and split the training data.

    Args:
        data_dir: the directory ``DatasetConfig.dataset_path`` is relative to (``/mnt/data`` in the Job).
        cfg: the parsed ``DatasetConfig``.
        tokenizer: the model's tokenizer (its chat template renders chat rows).
        files: explicit files instead of :func:`find_files`.

    Raises:
        DatasetError: no files, an empty file, a malformed row, or a row that leaves nothing to train on.
    """
    paths = list(files) if files is not None else find_files(data_dir, cfg)
    rows: list[Row] = []
    for p in paths:
        rows.extend(read_rows(p, cfg.dataset_extension))
    shape = detect_shape(rows, cfg)
    examples = []
    for row in rows:
        ex = tokenize_row(row, shape, tokenizer, cfg)
        if all(label == IGNORE_INDEX for label in ex.labels):
            raise DatasetError(
                f"{row.source}: nothing to train on after truncation to DatasetConfig.max_seq_length="
                f"{cfg.max_seq_length} tokens; shorten the prompt or raise max_seq_length"
            )
        examples.append(ex)
    if cfg.shuffle_dataset:
        random.Random(cfg.shuffle_seed).shuffle(examples)
    n_train = max(1, round(len(examples) * cfg.train_test_split))
    return Splits(train=examples[:n_train], eval=examples[n_train:], shape=shape)


class CausalCollator:
    """Pad examples into a batch: ``input_ids`` (pad token), ``attention_mask`` (0 on padding), ``labels`` (-100).

    Also counts the real (non-padding) tokens it has batched, which the progress reporter turns into tokens/s.
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None) -> None:
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of
        self.tokens_seen = 0

    def __call__(self, batch: Sequence[Example | dict[str, Any]]) -> dict[str, Any]:
        import torch

        items = [b if isinstance(b, Example) else Example(list(b["input_ids"]), list(b["labels"])) for b in batch]
        length = max(len(e.input_ids) for e in items)
        if self.pad_to_multiple_of:
            length = -(-length // self.pad_to_multiple_of) * self.pad_to_multiple_of
        ids, mask, labels = [], [], []
        for e in items:
            pad = length - len(e.input_ids)
            ids.append(e.input_ids + [self.pad_token_id] * pad)
            mask.append([1] * len(e.input_ids) + [0] * pad)
            labels.append(e.labels + [IGNORE_INDEX] * pad)
            self.tokens_seen += len(e.input_ids)
        return {
            "input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long),
        }
