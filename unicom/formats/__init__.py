"""Every on-disk contract of the toolkit, one module per format (``docs/formats.md``).

Each module declares its folder and file names once and holds the readers and writers; no
other module spells those names. Import the submodule you need (``from unicom.formats import
features``); this package imports nothing heavy itself.
"""
