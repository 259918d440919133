"""The screens of the console. ``tui/navigation.py`` names them (``navigation.screens()``)."""
