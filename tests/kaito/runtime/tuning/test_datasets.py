"""Dataset loading: formats, row shapes, loss masks, and errors that name the file, row and column."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from kaito.runtime.tuning.config import DatasetConfig
from kaito.runtime.tuning.datasets import IGNORE_INDEX, CausalCollator, DatasetError, load_dataset

ROWS = [{"prompt": f"Question {i}?", "response": f"Answer number {i}."} for i in range(10)]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _trained_text(tokenizer: Any, ex: Any) -> str:
    return str(tokenizer.decode([t for t in ex.labels if t != IGNORE_INDEX]))


@pytest.mark.parametrize("name", ["data.parquet", "data.jsonl", "data.csv"])
def test_every_format_yields_the_same_examples(tmp_path: Path, tokenizer: Any, name: str) -> None:
    _write(tmp_path / name, ROWS)
    splits = load_dataset(tmp_path, DatasetConfig(shuffle_dataset=False), tokenizer)

    assert splits.shape == "prompt_response"
    assert len(splits.train) == 10
    first = splits.train[0]
    assert tokenizer.decode(first.input_ids).count("Question 0?") == 1
    # Only the assistant's answer (and the template's end-of-turn) is trained on, not the question.
    assert _trained_text(tokenizer, first).startswith("Answer number 0.")
    assert "Question 0" not in _trained_text(tokenizer, first)


def test_chat_messages_train_on_every_assistant_turn_only(tmp_path: Path, tokenizer: Any) -> None:
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of Zorblax?"},
        {"role": "assistant", "content": "Quillmoor."},
    ]
    _write(tmp_path / "chat.jsonl", [{"messages": messages}])

    ex = load_dataset(tmp_path, DatasetConfig(), tokenizer).train[0]

    trained = _trained_text(tokenizer, ex)
    assert "Hello." in trained and "Quillmoor." in trained
    assert "Hi" not in trained.replace("Hello", "") and "terse" not in trained and "Zorblax" not in trained


def test_chat_messages_from_parquet(tmp_path: Path, tokenizer: Any) -> None:
    msgs = [{"role": "user", "content": "Ping"}, {"role": "assistant", "content": "Pong."}]
    _write(tmp_path / "chat.parquet", [{"messages": msgs}, {"messages": msgs}])
    splits = load_dataset(tmp_path, DatasetConfig(), tokenizer)
    assert splits.shape == "messages" and len(splits.train) == 2
    assert _trained_text(tokenizer, splits.train[0]).startswith("Pong.")


def test_text_rows_train_on_everything_plus_eos(tmp_path: Path, tokenizer: Any) -> None:
    _write(tmp_path / "t.jsonl", [{"text": "Zorblax is a planet."}])
    ex = load_dataset(tmp_path, DatasetConfig(), tokenizer).train[0]
    assert ex.labels == ex.input_ids
    assert ex.input_ids[-1] == tokenizer.eos_token_id


def test_shuffle_is_seeded_and_split_keeps_the_train_fraction(tmp_path: Path, tokenizer: Any) -> None:
    _write(tmp_path / "d.jsonl", ROWS)
    cfg = DatasetConfig(train_test_split=0.8, shuffle_seed=7)
    a = load_dataset(tmp_path, cfg, tokenizer)
    b = load_dataset(tmp_path, cfg, tokenizer)
    unshuffled = load_dataset(tmp_path, DatasetConfig(train_test_split=0.8, shuffle_dataset=False), tokenizer)

    assert (len(a.train), len(a.eval)) == (8, 2)
    assert a == b
    assert a.train != unshuffled.train


def test_custom_column_names(tmp_path: Path, tokenizer: Any) -> None:
    _write(tmp_path / "d.jsonl", [{"Context": "Q?", "Response": "A."}])
    splits = load_dataset(tmp_path, DatasetConfig(context_column="Context", response_column="Response"), tokenizer)
    assert splits.shape == "prompt_response"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"prompt": "a", "response": "b"}\n{"prompt": "c"}\n', "data.jsonl: row 2: missing column 'response'"),
        ('{"prompt": "a"}\n', "data.jsonl: row 1: missing column 'response' (prompt/response rows need both"),
        ('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": ""}\n', "row 2: column 'response' is empty"),
        ('{"prompt": "a", "response": "b"}\n{"prompt": "a", "respo\n', "data.jsonl: row 2: malformed JSON line"),
        ('{"prompt": "a", "response": 3}\n', "row 1: column 'response' must be text, got int"),
        ('{"question": "a", "answer": "b"}\n', "no usable columns (found answer, question)"),
        ('["not", "an", "object"]\n', "row 1: expected a JSON object"),
        ('{"messages": [{"role": "user", "content": "hi"}]}\n', "row 1: column 'messages': no assistant message"),
        ('{"messages": [{"role": "robot", "content": "hi"}]}\n', "message 0 has role 'robot'"),
        ('{"messages": []}\n', "column 'messages' must be a non-empty list"),
    ],
)
def test_malformed_jsonl_names_file_row_and_column(tmp_path: Path, tokenizer: Any, content: str, message: str) -> None:
    (tmp_path / "data.jsonl").write_text(content)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, DatasetConfig(), tokenizer)
    assert message in str(err.value)


def test_csv_row_with_extra_fields_names_row_and_line(tmp_path: Path, tokenizer: Any) -> None:
    (tmp_path / "d.csv").write_text("prompt,response\nq1,a1\nq2,a2,extra\n")
    with pytest.raises(DatasetError, match=r"d.csv: row 2 \(line 3\): 3 fields, but the header has 2"):
        load_dataset(tmp_path, DatasetConfig(), tokenizer)


def test_csv_missing_value_names_row_and_column(tmp_path: Path, tokenizer: Any) -> None:
    _write(tmp_path / "d.parquet", [{"prompt": "q", "response": "a"}, {"prompt": "q", "response": None}])
    with pytest.raises(DatasetError, match=r"d.parquet: row 2: column 'response' is empty"):
        load_dataset(tmp_path, DatasetConfig(), tokenizer)


@pytest.mark.parametrize("name", ["empty.jsonl", "empty.csv", "empty.parquet"])
def test_empty_file_is_rejected(tmp_path: Path, tokenizer: Any, name: str) -> None:
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DatasetError, match=f"{name}: the file is empty"):
        load_dataset(tmp_path, DatasetConfig(), tokenizer)


def test_header_only_csv_has_no_rows(tmp_path: Path, tokenizer: Any) -> None:
    (tmp_path / "d.csv").write_text("prompt,response\n")
    with pytest.raises(DatasetError, match=r"d.csv: the file has no rows"):
        load_dataset(tmp_path, DatasetConfig(), tokenizer)


def test_corrupt_parquet_is_reported(tmp_path: Path, tokenizer: Any) -> None:
    (tmp_path / "d.parquet").write_bytes(b"PAR1 definitely not parquet")
    with pytest.raises(DatasetError, match=r"d.parquet: not a readable parquet file"):
        load_dataset(tmp_path, DatasetConfig(), tokenizer)


def test_missing_dataset_path_and_empty_dir(tmp_path: Path, tokenizer: Any) -> None:
    with pytest.raises(DatasetError, match=r"dataset_path: .*nope.jsonl does not exist"):
        load_dataset(tmp_path, DatasetConfig(dataset_path="nope.jsonl"), tokenizer)
    with pytest.raises(DatasetError, match="no dataset files"):
        load_dataset(tmp_path, DatasetConfig(), tokenizer)


def test_extension_override_reads_files_without_suffix(tmp_path: Path, tokenizer: Any) -> None:
    _write(tmp_path / "download-0", ROWS[:2])
    splits = load_dataset(tmp_path, DatasetConfig(dataset_extension="jsonl"), tokenizer)
    assert len(splits.train) == 2


def test_collator_pads_and_masks_padding() -> None:
    from kaito.runtime.tuning.datasets import Example

    collate = CausalCollator(pad_token_id=0, pad_to_multiple_of=4)
    batch = collate([Example([5, 6, 7], [IGNORE_INDEX, 6, 7]), Example([8], [8])])

    assert batch["input_ids"].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0], [1, 0, 0, 0]]
    ignore = IGNORE_INDEX
    assert batch["labels"].tolist() == [[ignore, 6, 7, ignore], [8, ignore, ignore, ignore]]
    assert collate.tokens_seen == 4


def test_json_array_file_and_a_dataset_path_to_one_file(tmp_path: Path, tokenizer: Any) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "rows.json").write_text(json.dumps(ROWS[:3]))
    _write(tmp_path / "ignored.jsonl", ROWS)
    splits = load_dataset(tmp_path, DatasetConfig(dataset_path="sub/rows.json"), tokenizer)
    assert len(splits.train) == 3


def test_chat_messages_as_json_text_in_csv(tmp_path: Path, tokenizer: Any) -> None:
    msgs = json.dumps([{"role": "user", "content": "Ping"}, {"role": "assistant", "content": "Pong."}])
    _write(tmp_path / "chat.csv", [{"messages": msgs}])
    splits = load_dataset(tmp_path, DatasetConfig(), tokenizer)
    assert splits.shape == "messages"
    assert _trained_text(tokenizer, splits.train[0]).startswith("Pong.")
