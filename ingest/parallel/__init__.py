"""Rendering many sources at once: `many` (`render_many`), its `scheduler`, and the `workers`."""
