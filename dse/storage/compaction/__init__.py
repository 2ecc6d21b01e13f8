"""Compaction of the index directory: engine generations, and `dse compact` (rows of deleted pages reclaimed).

`generations`: which engine directories a catalogue state names, loading them consistently,
resolving a view's rows only in a catalogue of its generation. `run`: the compaction itself.
"""
