"""_widgets."""
