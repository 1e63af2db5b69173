"""Where and how code runs: devices and seeding, torch.distributed set-up and collectives, the
autocast precision, and the one faiss import."""
