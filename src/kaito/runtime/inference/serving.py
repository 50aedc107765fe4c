"""From validated requests to engine submissions: model-name routing, prompts, token limits, sampling params.

:class:`Service` is the HTTP-independent core of the server: it owns the loaded model, the engine and the
metrics, resolves ``model`` names (the base model or an adapter), renders prompts (the chat template for
messages, raw text for completions and the seed's ``prompt``), and turns each API's parameters into
:class:`SamplingParams` with the limits checked against the context window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from kaito.runtime.inference.adapters import COMBINED, AdapterSpec
from kaito.runtime.inference.engine import Engine
from kaito.runtime.inference.errors import bad_request, model_not_found
from kaito.runtime.inference.metrics import EngineMetrics
from kaito.runtime.inference.protocol import (
    ChatCompletionRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    _SamplingFields,
)
from kaito.runtime.inference.sampling import SamplingParams


@dataclass(frozen=True)
class Prepared:
    """A request ready for the engine: prompt token ids, sampling parameters, peft adapter (None: base)."""

    prompt_ids: list[int]
    params: SamplingParams
    adapter: str | None
    model: str


class Service:
    """The server's state shared by all handlers.

    Args:
        engine: the started (or to-be-started) engine.
        tokenizer: the model's tokenizer.
        base_name: API name of the base model.
        adapters: adapters attached to the model.
        max_model_len: context window served (tokens, prompt + output).
        metrics: instruments.
        log_prompts: log prompt/output text (off by default).
    """

    def __init__(
        self,
        *,
        engine: Engine,
        tokenizer: Any,
        base_name: str,
        adapters: list[AdapterSpec],
        max_model_len: int,
        metrics: EngineMetrics,
        log_prompts: bool = False,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.base_name = base_name
        self.adapters = {a.name: a for a in adapters}
        self.max_model_len = max_model_len
        self.metrics = metrics
        self.log_prompts = log_prompts
        self.created = int(time.time())

    def model_names(self) -> list[str]:
        """The names ``model`` may take: the base model first, then the adapters."""
        return [self.base_name, *self.adapters]

    def resolve_model(self, name: str | None) -> tuple[str, str | None]:
        """Map a request's ``model`` to (API name, peft adapter name or None).

        The base name (or no name) selects all adapters at their strengths when there are any (upstream
        Kaito's behaviour), else the plain model; an adapter's name selects that adapter alone.

        Raises:
            APIError: 404 ``model_not_found`` for any other name.
        """
        if name is None or name == self.base_name:
            return self.base_name, (COMBINED if self.adapters else None)
        if name in self.adapters:
            return name, name
        raise model_not_found(name, self.model_names())

    def render_chat(self, messages: list[ChatMessage], param: str = "messages") -> list[int]:
        """Apply the chat template (with the generation prompt) and tokenize.

        Raises:
            APIError: 400 when the template rejects the conversation (e.g. roles out of order) or is missing.
        """
        convo = [{"role": m.role, "content": m.text()} for m in messages]
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise bad_request(
                "this model has no chat template; use /v1/completions or /chat with a prompt", param=param
            )
        try:
            text = self.tokenizer.apply_chat_template(convo, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja raises TemplateError from the template's own raise_exception()
            raise bad_request(f"{param}: the model's chat template rejected the conversation: {exc}", param) from None
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def tokenize(self, text: str) -> list[int]:
        """Tokenize raw text with the tokenizer's special tokens (e.g. BOS), as transformers' pipelines do."""
        return list(self.tokenizer(text)["input_ids"])

    def _check_prompt(self, ids: list[int], param: str) -> None:
        if not ids:
            raise bad_request(f"{param}: the prompt is empty", param)
        if len(ids) >= self.max_model_len:
            raise bad_request(
                f"{param}: the prompt has {len(ids)} tokens but this model's context window is "
                f"{self.max_model_len} tokens (prompt plus output); shorten the prompt",
                param,
                code="context_length_exceeded",
            )
        vocab = len(self.tokenizer)
        if any(not 0 <= t < vocab for t in ids):
            raise bad_request(f"{param}: token ids must be in 0..{vocab - 1}", param)

    def _max_tokens(self, requested: int | None, prompt_len: int, param: str) -> int:
        room = self.max_model_len - prompt_len
        if requested is None:
            return room
        if requested > room:
            raise bad_request(
                f"{param}: {requested} output tokens were requested but the prompt has {prompt_len} tokens and "
                f"this model's context window is {self.max_model_len}; ask for at most {room}",
                param,
                code="context_length_exceeded",
            )
        return requested

    def _openai_params(self, req: _SamplingFields, max_tokens: int) -> SamplingParams:
        top_k = req.top_k or 0
        return SamplingParams(
            max_tokens=max_tokens,
            temperature=1.0 if req.temperature is None else req.temperature,
            top_p=1.0 if req.top_p is None else req.top_p,
            top_k=max(0, top_k),
            repetition_penalty=req.repetition_penalty,
            frequency_penalty=req.frequency_penalty,
            presence_penalty=req.presence_penalty,
            stop=req.stops(),
            seed=req.seed,
            ignore_eos=req.ignore_eos,
            min_tokens=req.min_tokens,
        )

    def prepare_chat_completion(self, req: ChatCompletionRequest) -> Prepared:
        """Validate and convert ``/v1/chat/completions`` (raises :class:`APIError`)."""
        name, adapter = self.resolve_model(req.model)
        ids = self.render_chat(req.messages)
        self._check_prompt(ids, "messages")
        field = "max_completion_tokens" if req.max_completion_tokens is not None else "max_tokens"
        max_tokens = self._max_tokens(req.max_completion_tokens or req.max_tokens, len(ids), field)
        return Prepared(ids, self._openai_params(req, max_tokens), adapter, name)

    def prepare_completion(self, req: CompletionRequest) -> Prepared:
        """Validate and convert ``/v1/completions`` (raises :class:`APIError`)."""
        name, adapter = self.resolve_model(req.model)
        prompt: Any = req.prompt  # a str or a list of token ids after validation
        ids = self.tokenize(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
        self._check_prompt(ids, "prompt")
        max_tokens = self._max_tokens(req.max_tokens if req.max_tokens is not None else 16, len(ids), "max_tokens")
        return Prepared(ids, self._openai_params(req, max_tokens), adapter, name)

    def prepare_seed_chat(self, req: ChatRequest) -> tuple[Prepared, str]:
        """Validate and convert the seed's ``/chat``; also returns the text to put before the output in
        ``Result`` (the prompt when ``return_full_text``, as transformers' text-generation pipeline does)."""
        if (req.prompt is None) == (req.messages is None):
            raise bad_request("give exactly one of prompt (text) or messages (a chat)", "prompt")
        name, adapter = self.resolve_model(req.model)
        g = req.generate_kwargs
        if req.messages is not None:
            if not req.messages:
                raise bad_request("messages: at least one message is required", "messages")
            ids, param, prefix = self.render_chat(req.messages), "messages", ""
            full = bool(g.return_full_text)
        else:
            assert req.prompt is not None
            ids, param, prefix = self.tokenize(req.prompt), "prompt", req.prompt
            full = g.return_full_text is not False
        self._check_prompt(ids, param)
        if g.max_new_tokens is not None:
            max_tokens = self._max_tokens(g.max_new_tokens, len(ids), "generate_kwargs.max_new_tokens")
        else:
            if g.max_length <= len(ids):
                raise bad_request(
                    f"generate_kwargs.max_length: {g.max_length} counts the prompt too, and the prompt already has "
                    f"{len(ids)} tokens; raise max_length or use max_new_tokens",
                    "generate_kwargs.max_length",
                )
            max_tokens = self._max_tokens(g.max_length - len(ids), len(ids), "generate_kwargs.max_length")
        stops = g.stop_strings
        params = SamplingParams(
            max_tokens=max_tokens,
            temperature=g.temperature if g.do_sample else 0.0,
            top_p=g.top_p,
            top_k=g.top_k,
            repetition_penalty=g.repetition_penalty,
            stop=((stops,) if isinstance(stops, str) else tuple(stops or ())),
            seed=g.seed,
            min_tokens=max(g.min_new_tokens, g.min_length - len(ids), 0),
        )
        return Prepared(ids, params, adapter, name), (prefix if full else "")
