"""Image transforms shared by training, evaluation and embedding. Their input is an RGB image
already decoded by the decode policy (``unicom.data.decode``, docs/images.md): they do not
convert colours again."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence, Tuple

if TYPE_CHECKING:
    from PIL import Image
    from torchvision import transforms as T

CLIP_MEAN: Tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: Tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL image → RGB under the decode policy (``unicom.data.decode.to_rgb``: alpha onto the
    background, 16-bit scaled, profiles to sRGB …); an RGB image is returned as it is."""
    from .decode import to_rgb as policy_rgb

    return image if image.mode == "RGB" else policy_rgb(image)


def eval_transform(image_size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD) -> T.Compose:
    """The Unicom/CLIP eval transform: bicubic resize of the short side to ``image_size``,
    centre crop, to tensor [3, S, S] in [0, 1], then normalise with ``mean``/``std``. The image
    is an RGB image from the decode policy (``unicom.data.images.open_image``)."""
    from torchvision import transforms as T  # here, not at the top: configs import the constants above

    return T.Compose([
        T.Resize(image_size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(image_size),
        T.ToTensor(),
        T.Normalize(tuple(mean), tuple(std)),
    ])


def train_transform(image_size: int, mean: Sequence[float] = CLIP_MEAN, std: Sequence[float] = CLIP_STD,
                    scale: Tuple[float, float] = (0.08, 1.0), hflip: float = 0.5) -> T.Compose:
    """Training augmentation: random resized crop (bicubic, area ``scale``), horizontal flip
    with probability ``hflip``, to tensor, normalise (input: an RGB image from the decode policy)."""
    from torchvision import transforms as T

    ops = [T.RandomResizedCrop(image_size, scale=tuple(scale), interpolation=T.InterpolationMode.BICUBIC)]
    if hflip > 0:
        ops.append(T.RandomHorizontalFlip(hflip))
    ops += [T.ToTensor(), T.Normalize(tuple(mean), tuple(std))]
    return T.Compose(ops)
