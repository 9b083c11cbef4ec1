"""The web page's files (HTML, CSS, ES modules, vendored libraries), served by
`hearth.server.web`. A package only so that `importlib.resources` finds them in any install."""
