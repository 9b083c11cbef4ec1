"""Hearth as an MCP host: the user's configured servers (config), their processes and sessions
(hosts), and a tool result as text for a model (results). Beside `engines`; `services` uses it."""
