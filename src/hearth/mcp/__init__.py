"""Hearth as an MCP host: the user's configured servers (config), their processes and sessions
(hosts), and a tool result as text for a model (results). Beside `engines`; `services` uses it."""

#: What a model reads for a call the user refused: Jan's own words, so a conversation reads the
#: same in Jan (here, not in a submodule, so a face can name it without loading the SDK).
DENIED = "The user has chosen to disallow the tool call."
