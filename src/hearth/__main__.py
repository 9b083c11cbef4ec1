from hearth.cli.main import app

app()
