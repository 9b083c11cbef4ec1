"""What every layer may import: settings, the error tree, the home's instance and key, small
leaves with no Hearth imports above them."""
