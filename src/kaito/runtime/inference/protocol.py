"""Request bodies of the API (OpenAI chat/completions and the seed's ``/chat``) and their validation.

Bodies are validated with pydantic; the first validation error becomes a 400 whose ``param`` is the dotted path of
the offending field (``messages.0.content``) and whose message says what is expected. Unknown OpenAI fields are
ignored (clients send many optional ones); fields we cannot honour (``n`` > 1, ``logprobs``, ``logit_bias``,
non-text content) are rejected with a 400 that says so, never silently dropped. Types are strict: a JSON string
is not taken for a number. Ranges follow the OpenAI API reference
(temperature 0..2, top_p 0..1, penalties -2..2, at most 4 stop sequences, which we extend to 16).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from kaito.runtime.inference.errors import APIError, bad_request
from kaito.runtime.inference.sampling import MAX_STOP_STRINGS

MAX_PROMPT_CHARS = 4 * 1024 * 1024
"""Characters in one text field (the body-size cap already bounds it; this keeps the message clear)."""


class _Model(BaseModel):
    # strict: JSON types are taken as sent ("max_tokens": "5" is a 400, not 5), as OpenAI's API does
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class TextPart(_Model):
    """A content part; only ``{"type": "text", "text": ...}`` is supported (text models)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Model):
    """One chat message. ``content`` is a string, a list of text parts, or null (assistant tool calls)."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The message's text, parts joined."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content)


class StreamOptions(_Model):
    """OpenAI ``stream_options``: ``include_usage`` adds a final chunk with token counts."""

    include_usage: bool = False


class _SamplingFields(_Model):
    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=-1)
    n: int = Field(default=1, ge=1, le=1, description="only n=1 is supported")
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    min_tokens: int = Field(default=0, ge=0)
    ignore_eos: bool = False
    logprobs: bool | int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP_STRINGS:
            raise ValueError(f"at most {MAX_STOP_STRINGS} stop sequences are supported")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty strings")
        return v

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, v: bool | int | None) -> bool | int | None:
        if v:
            raise ValueError("logprobs are not supported by this server; omit the field or set it to false")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _no_logit_bias(cls, v: dict[str, float] | None) -> dict[str, float] | None:
        if v:
            raise ValueError("logit_bias is not supported by this server; omit the field")
        return v

    def stops(self) -> tuple[str, ...]:
        """``stop`` as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatCompletionRequest(_SamplingFields):
    """``POST /v1/chat/completions``."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)


class CompletionRequest(_SamplingFields):
    """``POST /v1/completions``: ``prompt`` is a string or token ids (a one-element list of either also works)."""

    prompt: str | list[int] | list[str] | list[list[int]]
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(default=None, ge=1, le=1)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: Any) -> Any:
        if isinstance(v, list) and v and isinstance(v[0], (str, list)):
            if len(v) != 1:
                raise ValueError("only one prompt per request is supported; send one request per prompt")
            v = v[0]
        if isinstance(v, list) and not v:
            raise ValueError("prompt must not be empty")
        return v

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v: bool) -> bool:
        if v:
            raise ValueError("echo is not supported by this server")
        return v

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v: str | None) -> str | None:
        if v:
            raise ValueError("suffix (insertion) is not supported by this server")
        return v


GENERATE_KWARGS = {
    "max_length": "total tokens, prompt included (transformers semantics); default 200",
    "max_new_tokens": "tokens to generate; overrides max_length",
    "min_length": "minimum total tokens before EOS is allowed",
    "min_new_tokens": "minimum generated tokens before EOS is allowed",
    "temperature": "> 0 when do_sample is true",
    "top_k": "keep the k most likely tokens (default 10)",
    "top_p": "nucleus mass in (0, 1]",
    "do_sample": "false: greedy",
    "repetition_penalty": "> 0; 1 disables",
    "seed": "seed of this request's sampling",
    "stop_strings": "a string or a list of strings that end generation",
    "return_full_text": "include the prompt in Result (default true for prompt, false for messages)",
}
# accepted for compatibility and ignored: they have no effect with one greedy/sampled sequence
_IGNORED_KWARGS = {
    "early_stopping",
    "num_beams",
    "typical_p",
    "pad_token_id",
    "eos_token_id",
    "num_return_sequences",
    "use_cache",
    "length_penalty",
}


class GenerateKwargs(_Model):
    """The seed's ``generate_kwargs`` with its defaults (upstream Kaito's ``GenerateKwargs``): sampling with
    ``top_k=10``, ``temperature=1.0`` and ``max_length=200``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_length: int = Field(default=200, ge=1)
    max_new_tokens: int | None = Field(default=None, ge=1)
    min_length: int = Field(default=0, ge=0)
    min_new_tokens: int = Field(default=0, ge=0)
    temperature: float = Field(default=1.0, gt=0.0, le=100.0)
    top_k: int = Field(default=10, ge=0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    do_sample: bool = True
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    seed: int | None = None
    stop_strings: str | list[str] | None = None
    return_full_text: bool | None = None
    num_beams: int = Field(default=1, ge=1, le=1)
    num_return_sequences: int = Field(default=1, ge=1, le=1)
    early_stopping: Any = None
    typical_p: Any = None
    pad_token_id: Any = None
    eos_token_id: Any = None
    use_cache: Any = None
    length_penalty: Any = None

    @field_validator("stop_strings")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP_STRINGS or any(s == "" for s in stops):
            raise ValueError(f"give at most {MAX_STOP_STRINGS} non-empty stop strings")
        return v


class ChatRequest(_Model):
    """The seed's ``POST /chat``: exactly one of ``prompt`` (raw text) or ``messages`` (chat template)."""

    prompt: str | None = None
    messages: list[ChatMessage] | None = None
    generate_kwargs: GenerateKwargs = GenerateKwargs()
    model: str | None = None


def _is_union_tag(part: str) -> bool:
    # pydantic puts the union member it tried into the location ("str", "list[TextPart]", "function-after[...]")
    return part in ("str", "int", "float", "bool", "none") or "[" in part or part.startswith("function-")


def parse(model: type[_Model], body: Any) -> Any:
    """Validate ``body`` (decoded JSON) against ``model``.

    Raises:
        APIError: 400 naming the first invalid field (``param``) and why.
    """
    if not isinstance(body, dict):
        raise bad_request(f"the request body must be a JSON object, got {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        # for a union, pydantic reports one error per member: the deepest location is the most specific one
        errors = [(".".join(str(p) for p in e["loc"] if not _is_union_tag(str(p))), e) for e in exc.errors()]
        loc, err = max(errors, key=lambda item: item[0].count(".") + bool(item[0]))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(GENERATE_KWARGS))
            msg = f"unknown generation parameter; supported: {allowed}"
        elif err["type"] == "missing":
            msg = "field required"
        raise APIError(400, f"{loc or 'body'}: {msg}", param=loc or None) from None
