"""The `center` command (Typer): serve, db upgrade, keys show, item add|list|show|remove."""
