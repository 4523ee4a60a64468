"""Each transform, on real arrays: shapes, value ranges and the statistics they promise."""
import cv2
import numpy as np
import pytest

from utils.autoaugment import IMAGENET_POLICY, OPERATIONS, imagenet_autoaugment
from utils.transforms import (
    ImageDecodeError,
    PreprocessConfig,
    center_crop,
    color_jitter,
    decode_image,
    eval_transform,
    interpolation_name,
    normalize_to_chw,
    random_resized_crop,
    resize_short,
    rotate,
    train_transform,
)


def gradient_image(height=120, width=200):
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 40)], -1).astype(np.uint8)


def encode(image_rgb, ext=".png"):
    ok, data = cv2.imencode(ext, cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def test_resize_short_keeps_aspect():
    out = resize_short(gradient_image(120, 200), 60, "bilinear")
    assert out.shape == (60, 100, 3)


def test_center_crop_takes_the_middle():
    image = np.arange(10 * 10 * 3, dtype=np.uint8).reshape(10, 10, 3)
    assert np.array_equal(center_crop(image, 4), image[3:7, 3:7])


def test_center_crop_pads_tiny_images():
    assert center_crop(np.ones((1, 1, 3), np.uint8), 4).shape == (4, 4, 3)


def test_normalize_matches_definition():
    image = gradient_image(8, 8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    expected = ((image / 255.0 - mean) / std).transpose(2, 0, 1)
    assert np.allclose(normalize_to_chw(image, mean, std), expected, atol=1e-5)


def test_random_resized_crop_respects_area_and_ratio():
    cfg = PreprocessConfig(lower_scale=0.5, lower_ratio=0.9, upper_ratio=1.1)
    rng = np.random.default_rng(0)
    # each crop of a uniquely-coloured image: recover the box from the output's corner colours
    image = gradient_image(200, 256)
    for _ in range(20):
        out = random_resized_crop(image, 32, cfg, rng)
        assert out.shape == (32, 32, 3)
    # crop area fraction: a crop of a 1-channel ramp spans a range of x proportional to crop width
    widths = []
    for _ in range(200):
        out = random_resized_crop(image, 64, cfg, np.random.default_rng(len(widths)))
        widths.append((int(out[:, -1, 0].mean()) - int(out[:, 0, 0].mean())) / 255 * 256)
    widths = np.asarray(widths)
    assert widths.min() >= np.sqrt(0.5 * 200 * 256 * 0.9) * 0.85
    assert widths.max() <= 256


def test_train_transform_is_reproducible_per_seed():
    cfg = PreprocessConfig(crop_size=32, use_aa=True, rotate_degrees=10, color_jitter=0.4)
    image = gradient_image()
    a = train_transform(image, cfg, np.random.default_rng([1, 2, 3]))
    b = train_transform(image, cfg, np.random.default_rng([1, 2, 3]))
    c = train_transform(image, cfg, np.random.default_rng([1, 2, 4]))
    assert a.shape == (3, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_flip_happens_half_the_time():
    cfg = PreprocessConfig(crop_size=16, lower_scale=1.0, lower_ratio=200 / 120, upper_ratio=200 / 120)
    image = gradient_image()
    flips = 0
    for seed in range(200):
        out = train_transform(image, cfg, np.random.default_rng(seed))
        flips += out[0, 8, 0] > out[0, 8, -1]  # red increases left->right unless flipped
    assert 70 < flips < 130


def test_eval_transform_shape_and_determinism():
    cfg = PreprocessConfig(crop_size=24, resize_short=32)
    out = eval_transform(gradient_image(), cfg)
    assert out.shape == (3, 24, 24)
    assert np.array_equal(out, eval_transform(gradient_image(), cfg))


def test_rotate_by_zero_is_identity_and_180_reverses():
    image = gradient_image(31, 31)
    assert np.array_equal(rotate(image, 0), image)
    turned = rotate(image, 180)
    assert abs(int(turned[15, 2, 0]) - int(image[15, 28, 0])) <= 12


def test_color_jitter_zero_strength_is_identity():
    image = gradient_image()
    assert np.array_equal(color_jitter(image, 0.0, np.random.default_rng(0)), image)
    changed = color_jitter(image, 0.8, np.random.default_rng(0))
    assert changed.shape == image.shape and not np.array_equal(changed, image)


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_each_autoaugment_operation_keeps_shape_and_dtype(name):
    image = gradient_image(40, 50)
    out = OPERATIONS[name](image, 8, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8


def test_autoaugment_policy_is_the_imagenet_one():
    assert len(IMAGENET_POLICY) == 25
    assert all(len(sub) == 2 for sub in IMAGENET_POLICY)
    out = imagenet_autoaugment(gradient_image(), np.random.default_rng(3))
    assert out.shape == gradient_image().shape


def test_invert_and_solarize_semantics():
    image = gradient_image(10, 10)
    assert np.array_equal(OPERATIONS["Invert"](image, 0, None), 255 - image)
    assert np.array_equal(OPERATIONS["Solarize"](image, 0, None), image)  # threshold 256: nothing flips


@pytest.mark.parametrize("kind", ["gray", "rgba", "palette", "png16", "jpeg"])
def test_decode_converts_everything_to_rgb(kind):
    rgb = gradient_image(20, 30)
    if kind == "gray":
        data = cv2.imencode(".png", rgb[..., 0])[1].tobytes()
    elif kind == "rgba":
        data = cv2.imencode(".png", np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)]))[1].tobytes()
    elif kind == "palette":
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(rgb).convert("P").save(buffer, format="PNG")
        data = buffer.getvalue()
    elif kind == "png16":
        data = cv2.imencode(".png", rgb.astype(np.uint16) * 257)[1].tobytes()
    else:
        data = encode(rgb, ".jpg")
    out = decode_image(data)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8


def test_decode_cmyk_jpeg():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(gradient_image(16, 16)).convert("CMYK").save(buffer, format="JPEG")
    assert decode_image(buffer.getvalue()).shape == (16, 16, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", encode(gradient_image(), ".jpg")[:200]])
def test_decode_refuses_broken_data(data):
    with pytest.raises(ImageDecodeError):
        decode_image(data, "x.jpg")


def test_decode_refuses_decompression_bomb_before_decoding():
    header = bytearray(encode(np.zeros((1, 1, 3), np.uint8), ".png"))
    header[16:24] = (100_000).to_bytes(4, "big") + (100_000).to_bytes(4, "big")
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        decode_image(bytes(header), "bomb.png")


def test_interpolation_names_and_cv2_codes():
    assert interpolation_name("BICUBIC") == "bicubic"
    assert interpolation_name(1) == "bilinear"
    with pytest.raises(ValueError, match="--interpolation"):
        interpolation_name("fancy")
