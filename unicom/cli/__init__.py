"""Command-line plumbing shared by every command: flags from config dataclasses, deprecated
aliases, progress bars and the one-job-per-output-folder lock."""
