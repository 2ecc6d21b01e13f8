"""An OpenAI-compatible chat endpoint as the `llm` rewriter's generator (standard library only).

`POST {url}/chat/completions` with `{"model", "messages": [system, user], "max_tokens",
"temperature"}` and, when the environment variable `api_key_env` is set, the header
`Authorization: Bearer <its value>` (the key is read from the environment only, never from an
option, so it stays out of command lines, logs and cache keys). `url` is the API's base, e.g.
`http://127.0.0.1:8000/v1` (vLLM, llama.cpp's server, Ollama) or `https://api.openai.com/v1`; a
URL already ending in `/chat/completions` is used as it is. Temperature 0 by default, so a
rewrite is as repeatable as the server makes it (BRIGHT sampled at 0.8; set `temperature`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any

from dse.rewrite.base import RewriteError


class EndpointError(RewriteError):
    """The chat endpoint could not be reached or gave no usable answer (the message names its URL)."""


class ChatEndpoint:
    """Generates through `/v1/chat/completions`.

    Args:
        url: The API's base URL (http or https).
        model: The model name the endpoint serves (sent as `model`).
        api_key_env: Environment variable holding the API key (unset: no Authorization header).
        max_new_tokens: Sent as `max_tokens`.
        temperature: Sent as `temperature`.
        timeout: Seconds to wait for an answer.

    Raises:
        ValueError: a URL that is not http(s), an empty model name, or options out of range.
    """

    def __init__(self, url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", max_new_tokens: int = 512,
                 temperature: float = 0.0, timeout: float = 120.0) -> None:
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"llm rewriter url {url!r}: give the endpoint's http(s) base URL, e.g. "
                             "http://127.0.0.1:8000/v1")
        if not model:
            raise ValueError("llm rewriter with url=: give model= (the model name the endpoint serves)")
        if max_new_tokens < 1 or timeout <= 0 or not 0 <= temperature <= 2:
            raise ValueError(f"max_new_tokens must be >= 1, timeout > 0 and temperature in [0, 2]; got "
                             f"{max_new_tokens}, {timeout}, {temperature}")
        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = str(model)
        self.api_key_env = str(api_key_env)
        self.max_new_tokens, self.temperature, self.timeout = int(max_new_tokens), float(temperature), float(timeout)

    @property
    def identity(self) -> str:
        """The endpoint, its model and the decoding options (never the key)."""
        return (f"openai-chat {self.url} model={self.model} temperature={self.temperature} "
                f"max_tokens={self.max_new_tokens}")

    def request_body(self, system: str, prompt: str) -> dict[str, Any]:
        """The JSON body sent for one prompt."""
        return {"model": self.model, "messages": [{"role": "system", "content": system},
                                                  {"role": "user", "content": prompt}],
                "max_tokens": self.max_new_tokens, "temperature": self.temperature}

    def generate(self, system: str, prompt: str) -> str:
        """The assistant message's content for one prompt.

        Raises:
            EndpointError: connection refused or timed out, an HTTP error, or an answer that is
                not a chat completion (each message names the URL).
        """
        data = json.dumps(self.request_body(system, prompt)).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        req = urllib.request.Request(self.url, data=data, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - the user's endpoint
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            hint = f" (is ${self.api_key_env} set to a valid key?)" if exc.code in (401, 403) else ""
            raise EndpointError(f"llm rewriter: {self.url} answered HTTP {exc.code} {exc.reason}{hint}: "
                                f"{detail}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise EndpointError(f"llm rewriter: cannot reach {self.url}: {reason} (is the endpoint running? "
                                f"timeout {self.timeout:g} s)") from None
        return _content(raw, self.url)


def _content(raw: bytes, url: str) -> str:
    """`choices[0].message.content` of a chat completion (EndpointError naming `url` otherwise)."""
    try:
        body = json.loads(raw)
    except ValueError:
        raise EndpointError(f"llm rewriter: {url} did not answer JSON: {raw[:200].decode('utf-8', 'replace')!r}") from None
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise EndpointError(f"llm rewriter: {url} answered JSON without choices[0].message.content: "
                            f"{json.dumps(body)[:200]}") from None
    if not isinstance(content, str):
        raise EndpointError(f"llm rewriter: {url} answered a {type(content).__name__} as the message content, "
                            "not text")
    return content.strip()
