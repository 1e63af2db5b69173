"""``unicom-sample``: write the sample set (``make sample``)."""
from __future__ import annotations

import argparse
import time

from ..cli.flags import HelpFormatter, add_renamed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unicom-sample", formatter_class=HelpFormatter, description=(
        "Write a small deterministic LAION-style webdataset (img2dataset layout) with "
        "ground-truth concepts, one deliberately bad shard and held-out concepts."))
    add_renamed(p, "--output", "--out", default="data/sample", help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed; the set is a pure function of it")
    p.add_argument("--per-concept", type=int, default=60, help="training images per concept")
    p.add_argument("--heldout-per-concept", type=int, default=40, help="images per held-out concept")
    p.add_argument("--shard-size", type=int, default=500, help="samples per shard")
    p.add_argument("--image-size", type=int, default=96, help="image side in pixels")
    return p


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    from .generate import generate_sample_set

    t0 = time.time()
    m = generate_sample_set(a.output, seed=a.seed, per_concept=a.per_concept, heldout_per_concept=a.heldout_per_concept,
                            shard_size=a.shard_size, image_size=a.image_size)
    print(f"wrote {m['num_train_samples']} training samples in {m['num_shards']} shards "
          f"(bad shard {m['bad_shard']}: {len(m['bad_samples'])} bad samples), "
          f"{sum(m['heldout_counts'].values())} held-out images of {len(m['heldout_concepts'])} concepts "
          f"to {a.output} in {time.time() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
