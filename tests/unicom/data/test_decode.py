"""The decode policy (``unicom.data.decode``) on real photographs from ``skimage.data``, each
case against an independent reference and against the old opener (``convert("RGB")``), which
every case here shows to be wrong."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from unicom.data.decode import DecodePolicy, decode, parse_background, policy_mismatch
from unicom.data.images import open_image, skip_reason

from . import real_images as ri


def old_open(source) -> np.ndarray:
    """The opener before the policy: ``Image.open(...).convert("RGB")``."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    with Image.open(source) as f:
        f.load()
        return np.asarray(f.convert("RGB"))


def arr(img) -> np.ndarray:
    return np.asarray(img).astype(np.int64)


@pytest.mark.parametrize("hidden", ["photo", "stripes"])
def test_alpha_is_composited_onto_white_as_img2dataset(tmp_path, hidden):
    rgba, mask = ri.cutout(hidden)
    path = ri.save(rgba, tmp_path / "cutout.png", "PNG")
    got = arr(open_image(path))
    want = arr(ri.composite_white(rgba))
    assert np.array_equal(got, want)
    assert (got[mask == 0] == 255).all()                    # fully transparent: the background
    assert np.abs(arr(old_open(path)) - want)[mask == 0].mean() > 50  # the old opener shows what lies beneath


def test_composite_equals_img2dataset_formula_for_every_alpha_colour_and_background():
    """Every (alpha, colour) pair, on three backgrounds, against img2dataset's float formula."""
    grid = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1)   # [a, c] pairs
    rgba = Image.fromarray(np.concatenate([grid[..., 1:].repeat(3, -1), grid[..., :1]], -1).astype(np.uint8), "RGBA")
    px = np.asarray(rgba).astype(np.float64)
    for bg in ((255, 255, 255), (0, 0, 0), (17, 128, 250)):
        want = np.rint(px[..., 3:] / 255 * px[..., :3] + np.asarray(bg) * (255 - px[..., 3:]) / 255)
        assert np.array_equal(arr(decode(rgba, DecodePolicy(background=bg))), want.astype(np.int64))


def test_background_colour_is_a_setting(tmp_path):
    rgba, mask = ri.cutout("stripes")
    path = ri.save(rgba, tmp_path / "cutout.png", "PNG")
    black = arr(open_image(path, policy=DecodePolicy(background=(0, 0, 0))))
    grey = arr(open_image(path, policy=DecodePolicy.from_settings("#808080")))
    assert (black[mask == 0] == 0).all() and (grey[mask == 0] == 128).all()
    opaque = mask == 255
    assert np.array_equal(black[opaque], grey[opaque])       # opaque pixels do not depend on it


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_other_transparent_modes_are_composited(tmp_path, mode):
    rgba, mask = ri.cutout("stripes")
    if mode == "LA":
        img = Image.merge("LA", (rgba.convert("L"), rgba.getchannel("A")))
        want = ri.composite_white(img.convert("RGBA"))
    else:  # a palette image with one transparent index, as GIF and 8-bit PNG store them
        img = rgba.convert("RGB").quantize(64)
        img.info["transparency"] = int(np.asarray(img)[0, 0])
        want = ri.composite_white(img.convert("RGBA"))
    path = ri.save(img, tmp_path / f"{mode}.png", "PNG", **({"transparency": img.info["transparency"]}
                                                              if mode == "P" else {}))
    got = arr(open_image(path))
    assert np.array_equal(got, arr(want))
    assert not np.array_equal(arr(old_open(path)), got)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied(tmp_path, fmt):
    upright = ri.chelsea()                                  # 451 × 300, landscape
    path = ri.with_orientation(upright, tmp_path / f"exif6.{fmt.lower()}", fmt)
    got = open_image(path)
    assert got.size == upright.size
    with Image.open(path) as stored:                        # the physically rotated twin, made by hand
        twin = stored.convert("RGB").transpose(Image.Transpose.ROTATE_270)
    assert np.array_equal(arr(got), arr(twin))
    if fmt == "PNG":
        assert np.array_equal(arr(got), arr(upright))
    assert old_open(path).shape[:2] == (upright.width, upright.height)  # the old opener: sideways


def test_sixteen_bit_gradient_keeps_its_gradient(tmp_path):
    path = ri.gradient16(tmp_path / "gradient16.png")
    assert Image.open(path).mode.startswith("I;16")
    row = arr(open_image(path))[0, :, 0]
    want = np.rint(np.linspace(0, 65535, 512).round() * 255 / 65535)
    assert np.array_equal(row, want)
    assert len(np.unique(row)) == 256 and (np.diff(row) >= 0).all()
    assert (old_open(path)[..., 0] == 255).mean() > 0.99      # the old opener: clipped white


def test_sixteen_bit_photo_equals_its_8_bit_original(tmp_path):
    from skimage import data

    camera = data.camera()
    path = ri.sixteen_bit(camera, tmp_path / "camera16.png")
    got = arr(open_image(path))
    assert np.array_equal(got[..., 0], camera.astype(np.int64)) and np.array_equal(got[..., 0], got[..., 2])


def test_float_and_32_bit_images_scale_over_their_range():
    ramp = np.linspace(-1.0, 3.0, 101, dtype=np.float32).reshape(1, -1)
    ramp[0, 50] = np.nan
    got = arr(decode(Image.fromarray(ramp, "F")))[0, :, 0]
    want = np.rint((np.nan_to_num(ramp[0].astype(np.float64), nan=-1.0) + 1.0) * 255 / 4.0)
    want[50] = 0
    assert np.array_equal(got, want)
    ints = Image.fromarray((np.arange(64, dtype=np.int32) * 1000).reshape(1, -1), "I")
    assert arr(decode(ints))[0, -1, 0] == 255 and arr(decode(ints))[0, 0, 0] == 0


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_give_their_first_frame(tmp_path, fmt):
    frames = [ri.chelsea().resize((96, 64)), ri.astronaut().resize((96, 64))]
    path = ri.animated(frames, tmp_path / f"anim.{fmt.lower()}", fmt)
    with Image.open(path) as f:
        assert f.n_frames == 2
        f.seek(1)
        f.load()
        in_memory_second = f.copy()
        got_seeked = arr(decode(f))                         # an image left on frame 1 is decoded from frame 0
    got = arr(open_image(path))
    assert np.array_equal(got, got_seeked)
    # GIF stores a 256-colour palette: its first frame is the palette image Pillow opens on
    ref = arr(frames[0]) if fmt != "GIF" else arr(Image.open(path).convert("RGB"))
    assert np.array_equal(got, ref)
    assert np.abs(got - arr(in_memory_second.convert("RGB"))).mean() > 10


def test_real_animated_gif_from_skimage():
    path = ri.skimage_file("no_time_for_that_tiny.gif")
    with Image.open(path) as f:
        assert f.n_frames > 1
        first = np.asarray(f.convert("RGB"))
    assert np.array_equal(arr(open_image(path)), arr(first))


def test_cmyk_without_profile_is_the_plain_conversion(tmp_path):
    cmyk = ri.chelsea().convert("CMYK")
    path = ri.save(cmyk, tmp_path / "cmyk.jpg", "JPEG", quality=95)
    assert Image.open(path).mode == "CMYK"
    assert np.array_equal(arr(open_image(path)), arr(old_open(path)))


def test_icc_profile_is_converted_to_srgb(tmp_path):
    photo = ri.chelsea()
    path = ri.save(photo, tmp_path / "swapped.png", "PNG", icc_profile=ri.swapped_profile())
    got = arr(open_image(path))
    # under the profile, stored red is sRGB blue: the converted image is the channel-swapped photo, up to the
    # profile's gamma 2.2 against sRGB's curve
    assert np.abs(got - arr(photo)[..., ::-1]).mean() < 3
    assert np.abs(arr(old_open(path)) - arr(photo)[..., ::-1]).mean() > 20


def test_srgb_profile_leaves_pixels_bit_exact(tmp_path):
    photo = ri.astronaut()
    path = ri.save(photo, tmp_path / "srgb.jpg", "JPEG", quality=90, icc_profile=ri.srgb_profile())
    assert np.array_equal(arr(open_image(path)), arr(old_open(path)))


def test_plain_rgb_jpeg_is_untouched(tmp_path):
    path = ri.save(ri.astronaut(), tmp_path / "plain.jpg", "JPEG", quality=90)
    assert np.array_equal(arr(open_image(path)), arr(old_open(path)))


def test_size_limit_is_counted_as_too_large(tmp_path):
    path = ri.save(ri.chelsea(), tmp_path / "big.png", "PNG")
    with pytest.raises(Image.DecompressionBombError) as info:
        open_image(path, policy=DecodePolicy(max_pixels=300 * 451 - 1))
    assert skip_reason(info.value) == "too_large"
    assert open_image(path, policy=DecodePolicy(max_pixels=300 * 451)).size == (451, 300)
    assert open_image(path, policy=DecodePolicy(max_pixels=0)).size == (451, 300)


def test_shard_member_bytes_go_through_the_policy(tmp_path):
    from unicom.data.wds_reader import to_sample

    rgba, _ = ri.cutout("stripes")
    raw = {"__key__": "k", "__url__": "s.tar", "png": ri.encoded(rgba, "PNG")}
    sample = to_sample(raw, policy=DecodePolicy(background=(0, 0, 255)))
    a = arr(sample.image)
    assert (a[arr(rgba)[..., 3] == 0] == (0, 0, 255)).all()
    big = to_sample(raw, policy=DecodePolicy(max_pixels=100))
    assert big.reason == "too_large"


def test_background_parsing_and_policy_records():
    assert parse_background("white") == (255, 255, 255)
    assert parse_background("#102030") == (16, 32, 48)
    assert parse_background("1, 2, 3") == (1, 2, 3)
    with pytest.raises(ValueError, match="not a colour"):
        parse_background("blurple")
    with pytest.raises(ValueError, match="not a colour"):
        parse_background("1,2,300")
    rec = DecodePolicy().record()
    assert rec == {"version": 1, "background": "#ffffff"}
    assert policy_mismatch(rec) is None
    assert "background" in policy_mismatch({"version": 1, "background": "#000000"})
    assert "no image decode policy" in policy_mismatch(None)
