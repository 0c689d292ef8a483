"""Compatibility layers: users of other workflow tools bring their code and files as they are."""
