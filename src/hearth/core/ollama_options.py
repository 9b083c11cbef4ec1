"""Ollama's sampling option names and what they are in an OpenAI/llama.cpp request body.

One table for every place that reads Ollama's names: `/api/chat` and `/api/generate` options
(server/ollama/translate.py), a registry's params layer on `hearth pull` (downloads/ollama.py),
a Modelfile's PARAMETER lines and `/set parameter` in `hearth run` (cli/). `stop` (a list) and
`num_ctx` (a load setting: engine_parameters.ctx_len) are handled by each reader. Pure data:
the CLI imports it at start-up.
"""

from __future__ import annotations

#: Ollama option -> (OpenAI/llama.cpp body field, the kind of its value).
OLLAMA_OPTIONS: dict[str, tuple[str, type]] = {
    "num_predict": ("max_tokens", int),
    "temperature": ("temperature", float),
    "top_k": ("top_k", int),
    "top_p": ("top_p", float),
    "min_p": ("min_p", float),
    "typical_p": ("typical_p", float),
    "repeat_penalty": ("repeat_penalty", float),
    "repeat_last_n": ("repeat_last_n", int),
    "presence_penalty": ("presence_penalty", float),
    "frequency_penalty": ("frequency_penalty", float),
    "seed": ("seed", int),
    "mirostat": ("mirostat", int),
    "mirostat_tau": ("mirostat_tau", float),
    "mirostat_eta": ("mirostat_eta", float),
}
