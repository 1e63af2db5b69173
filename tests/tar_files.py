"""Writing small webdataset tars by hand, for tests of bad shards (duplicate keys, odd members)."""
import io
import tarfile
from pathlib import Path
from typing import Iterable, Tuple


def write_tar(path: Path, members: Iterable[Tuple[str, bytes]]) -> None:
    """Write ``members`` (name, bytes) in order as a plain USTAR tar at ``path``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    Path(path).write_bytes(buf.getvalue())
