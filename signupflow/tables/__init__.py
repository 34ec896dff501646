"""Faust tables and the web views that show them."""
