"""Which engine flags and file paths a layer of engine parameters may carry.

Only the user's own engines/<engine>/engine.json is trusted: a model.json may come from a shared
folder or a pull, a start body from any local process. They get a short list of numeric tuning
flags and file names inside the model's folder; nobody, not even engine.json, may pass the flags
that decide where the engine listens, its key or its name (Hearth sets those itself).
"""

from __future__ import annotations

import re

from hearth.core.errors import InvalidParameter

#: Flags that decide where the engine listens, who may talk to it, what it serves or what it
#: is called: Hearth sets these itself, and no layer may change them (not even engine.json).
ENGINE_OWNED_FLAGS = frozenset(
    {
        "--host", "--port", "--api-key", "--api-key-file", "--path", "--api-prefix",
        "--webui", "--ui", "--webui-config", "--webui-config-file", "--ssl-key-file",
        "--ssl-cert-file", "--reuse-port", "-a", "--alias", "-m", "--model", "-mu",
        "--model-url", "-hf", "-hfr", "--hf-repo", "-hff", "--hf-file", "-hft", "--hf-token",
        "--media-path", "--slot-save-path", "--chat-template-file", "--models-dir",
    }
)  # fmt: skip
#: The extra flags a model.json, a pull or a start request may carry: numbers and switches that
#: tune speed or memory. None of them opens a listener, reads or writes a file, or touches auth.
MODEL_SAFE_FLAGS: dict[str, bool] = {  # flag -> takes an integer value
    "-b": True, "--batch-size": True, "-ub": True, "--ubatch-size": True,
    "-tb": True, "--threads-batch": True, "--threads-http": True,
    "-n": True, "--n-predict": True, "-s": True, "--seed": True,
    "-lv": True, "--verbosity": True, "--log-verbosity": True,
    "--no-mmap": False, "--no-warmup": False, "-kvu": False, "--kv-unified": False,
}  # fmt: skip
#: Bounds on those values: a model folder must not be able to ask for a million threads or a
#: batch whose buffers fill the machine's memory.
_CAPS: tuple[tuple[frozenset[str], int], ...] = (
    (frozenset({"-tb", "--threads-batch", "--threads-http"}), 1024),
    (frozenset({"-b", "--batch-size", "-ub", "--ubatch-size"}), 65536),
    (frozenset({"-lv", "--verbosity", "--log-verbosity"}), 10),
)
_VALUE_CAP = 999_999_999  # seeds, --n-predict
ENGINE_JSON_HINT = "engines/llama-cpp/engine.json in your Hearth home"
USER_ONLY_WHY = (
    "names a program to run, which only your own {where} may do (a model folder, a pull, an "
    "import or an API request can come from anyone). Put it there instead."
)


def _flag_name(arg: str) -> str:
    return arg.split("=", 1)[0] if arg.startswith("--") else arg


def check_extra_args(args: list[str], *, trusted: bool, source: str) -> None:
    """Refuse flags a layer may not pass. engine.json (`trusted`) may pass anything but the
    flags Hearth owns; other layers only `MODEL_SAFE_FLAGS`, with integer values."""
    i = 0
    while i < len(args):
        arg = args[i]
        name = _flag_name(arg)
        if name in ENGINE_OWNED_FLAGS:
            raise InvalidParameter(
                f"Engine parameter 'extra_args' in {source} sets {name}, which Hearth sets "
                "itself (where the engine listens, its key, its name and files). Remove it.",
                param="extra_args",
                code="parameter_not_allowed",
            )
        if trusted:
            i += 1
            continue
        takes_value = MODEL_SAFE_FLAGS.get(name)
        if takes_value is None:
            allowed = ", ".join(sorted(f for f in MODEL_SAFE_FLAGS if f.startswith("--")))
            raise InvalidParameter(
                f"Engine parameter 'extra_args' in {source} may only carry these flags: "
                f"{allowed}; got {arg!r}. Other flags belong in your own {ENGINE_JSON_HINT}.",
                param="extra_args",
                code="parameter_not_allowed",
            )
        if takes_value:
            value = arg.split("=", 1)[1] if "=" in arg and arg.startswith("--") else None
            if value is None:
                i += 1
                value = args[i] if i < len(args) else ""
            top = next((cap for names, cap in _CAPS if name in names), _VALUE_CAP)
            if not re.fullmatch(r"-?\d{1,9}", value) or not -1 <= int(value) <= top:
                raise InvalidParameter(
                    f"Engine parameter 'extra_args' in {source}: {name} needs a whole number "
                    f"from -1 to {top}; got {value[:40]!r}.",
                    param="extra_args",
                )
        i += 1


def plain_relative_path(value: str, what: str) -> str:
    """A path inside a model's folder: relative, no '..', no NUL, no backslash, not too long."""
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or "\\" in value
        or "\x00" in value
        or len(value.encode("utf-8", "surrogatepass")) > 1024
        or any(p in ("", ".", "..") or len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts)
    ):
        raise ValueError(
            f'a file name inside the model\'s folder (like "mmproj.gguf"); {what} may not '
            "point elsewhere"
        )
    return value
