"""vLLM's OpenAI wire format: validated requests in, response and SSE chunk bodies out.

Pure (pydantic at the trust boundary, plain dicts out). Shapes follow vLLM's
``vllm/entrypoints/openai/protocol.py``: errors are ``{"error": {"message", "type",
"param", "code"}}`` with 400 ``BadRequestError`` for malformed or invalid requests and
404 ``NotFoundError`` for an unknown model; streamed chat starts with a role chunk, sends
one chunk per token, puts ``finish_reason`` on the last token's chunk, then — when
``stream_options.include_usage`` — a chunk with empty ``choices`` and ``usage``.
Embeddings (``EmbeddingRequest``, ``embedding_list``) follow vLLM's pooling API: one
``{"index", "object": "embedding", "embedding"}`` per input, float lists or base64 of
little-endian float32, and ``usage`` with prompt tokens only.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import struct
from typing import Any, Literal, TypeVar

import pydantic


class ApiError(Exception):
    """An error to return as vLLM does: HTTP status, error type, message, parameter."""

    def __init__(self, status: int, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param

    @property
    def type(self) -> str:
        return {400: "BadRequestError", 404: "NotFoundError"}.get(
            self.status, "InternalServerError"
        )

    def body(self) -> dict[str, object]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.status,
            }
        }


class StreamOptions(pydantic.BaseModel):
    include_usage: bool = False
    continuous_usage_stats: bool = False


class _Common(pydantic.BaseModel):
    # Clients send many sampling fields the simulator ignores; accept them as vLLM does.
    model_config = pydantic.ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = pydantic.Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    ignore_eos: bool = False
    user: str | None = None


class CompletionRequest(_Common):
    prompt: str | list[str] | list[int]


class ContentPart(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    type: str
    text: str = ""


class Message(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")
    role: str
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text for part in self.content)
        return self.content or ""


class ChatRequest(_Common):
    messages: list[Message] = pydantic.Field(min_length=1)
    max_completion_tokens: int | None = pydantic.Field(default=None, ge=1)

    @property
    def requested_max_tokens(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


Kind = Literal["chat", "completion"]
_M = TypeVar("_M", bound=pydantic.BaseModel)


class EmbeddingRequest(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="allow")

    model: str | None = None
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = pydantic.Field(default=None, ge=1)

    @pydantic.field_validator("input")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if value in ("", []) or (isinstance(value, list) and [] in value):
            raise ValueError("input must not be empty")
        return value

    def inputs(self) -> list[str | list[int]]:
        """One entry per embedding to return: a text or a list of token ids."""
        value = self.input
        if isinstance(value, str):
            return [value]
        ids = [v for v in value if isinstance(v, int)]
        if len(ids) == len(value):
            return [ids]
        return [v for v in value if not isinstance(v, int)]


def parse(kind: Kind, raw: bytes) -> CompletionRequest | ChatRequest:
    """Validate a request body; ``ApiError`` 400 naming the fault otherwise."""
    model_type: type[CompletionRequest | ChatRequest] = (
        ChatRequest if kind == "chat" else CompletionRequest
    )
    return _validated(model_type, raw)


def parse_embedding(raw: bytes) -> EmbeddingRequest:
    """Validate an embeddings request; ``ApiError`` 400 naming the fault otherwise."""
    return _validated(EmbeddingRequest, raw)


def _validated(model_type: type[_M], raw: bytes) -> _M:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"Invalid JSON body: {exc}") from exc
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    if not data.get("model"):
        raise ApiError(400, "Field required: 'model'", param="model")
    try:
        return model_type.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        param = ".".join(str(p) for p in first["loc"])
        raise ApiError(400, f"{param}: {first['msg']}", param=param) from exc


def context_error(*, requested: int, prompt: int, max_model_len: int) -> ApiError:
    """vLLM's message when prompt + max_tokens exceed the context window."""
    return ApiError(
        400,
        f"'max_tokens' or 'max_completion_tokens' is too large: {requested}. This model's "
        f"maximum context length is {max_model_len} tokens and your request has {prompt} "
        f"input tokens ({requested} > {max_model_len} - {prompt}).",
        param="max_tokens",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    """Identity of one response: what every chunk and the final body repeat."""

    kind: Kind
    request_id: str
    model: str
    created: int

    @property
    def object_name(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"

    def _envelope(self, choices: list[dict[str, Any]], obj: str) -> dict[str, Any]:
        return {
            "id": self.request_id,
            "object": obj,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        }

    def role_chunk(self) -> dict[str, Any]:
        choice = {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
        return self._envelope([choice], "chat.completion.chunk")

    def token_chunk(self, text: str, finish_reason: str | None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": finish_reason}
        if self.kind == "chat":
            choice["delta"] = {"content": text}
            obj = "chat.completion.chunk"
        else:
            choice["text"] = text
            obj = "text_completion"
        if finish_reason is not None:
            choice["stop_reason"] = None
        return self._envelope([choice], obj)

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        body = self._envelope([], obj)
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body

    def full(
        self, text: str, finish_reason: str, prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "logprobs": None,
            "finish_reason": finish_reason,
            "stop_reason": None,
        }
        if self.kind == "chat":
            choice["message"] = {"role": "assistant", "content": text, "tool_calls": []}
        else:
            choice["text"] = text
        body = self._envelope([choice], self.object_name)
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "completion_tokens": completion_tokens,
    }


def embedding_list(
    request_id: str, model: str, created: int, vectors: list[list[float]], *,
    encoding: Literal["float", "base64"], prompt_tokens: int,
) -> dict[str, Any]:  # fmt: skip
    """``POST /v1/embeddings``'s answer as vLLM gives it."""
    data = [
        {"index": i, "object": "embedding", "embedding": _encoded(v, encoding)}
        for i, v in enumerate(vectors)
    ]
    return {
        "id": request_id,
        "object": "list",
        "created": created,
        "model": model,
        "data": data,
        "usage": usage(prompt_tokens, 0),
    }


def _encoded(vector: list[float], encoding: Literal["float", "base64"]) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def sse(payload: dict[str, Any]) -> bytes:
    """One server-sent event carrying ``payload``."""
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def models_list(model: str, *, max_model_len: int, created: int) -> dict[str, Any]:
    """``GET /v1/models`` as vLLM answers it."""
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "vllm",
                "root": model,
                "parent": None,
                "max_model_len": max_model_len,
            }
        ],
    }
