from hearth.cli.main import app

app(prog_name="hearth")
