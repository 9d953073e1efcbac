"""The Keras input pipeline: ``tf.data`` reading a split for the core's plan.

One element is one request: a replica's shard of a global batch (training) or a block of
consecutive examples (evaluation), request k made from the plan by a ``numpy_function`` on
``Dataset.range`` (:class:`resnet_spec.training.plan.Shard`: indices, labels, pad-and-crop and
flip numbers, random-resized-crop draws). ``workers`` requests are read at a time
(``map(num_parallel_calls=workers, deterministic=True)``), the examples of each in one loop
inside the graph (``map_fn``), with TensorFlow's own operations, off the Python thread:

* image files: ``tf.io.read_file``, the header's size checked, then ``decode_jpeg`` with libjpeg's
  accurate integer DCT (what Pillow uses: the same pixels, bit for bit) or ``decode_image`` for
  PNG; the file's channels are
  converted with Pillow's rules (ITU-R 601 luma in Pillow's fixed point, alpha dropped or 255);
  other formats (BMP, GIF, TIFF, WebP) are decoded by Pillow through ``tf.numpy_function``;
* arrays (memory maps, HDF5): one ``tf.numpy_function`` batch read;

then each example goes through its geometry (:mod:`resnet_spec.training.geometry`:
``tf.image.resize`` bilinear with half-pixel centres, antialiased when asked; the crop box in
float64 with TensorFlow's ops) and the batch through ``Preprocessor.apply``; ``prefetch`` keeps
``PREFETCH`` requests per worker ready. Nothing random happens in the pipeline: the numbers come
from the plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from resnet_spec.training.errors import DataError
from resnet_spec.training.geometry import TRIES, Geometry
from resnet_spec.training.images import MAX_PIXELS
from resnet_spec.training.plan import Plan
from resnet_spec.training.preprocess import Preprocessor
from resnet_spec.training.sources import Split, decode_image

NATIVE_SUFFIXES = {".jpg", ".jpeg", ".png"}  # decoded by TensorFlow; the rest by Pillow
MAX_AUTO_WORKERS = 8
PREFETCH = 2  # requests read ahead per worker

Request = tuple[np.ndarray, ...]  # (indices, labels, numbers (n, 3) int32[, crops (n, TRIES, 4)][, paths])


def default_workers(split: Split, geometry: Geometry) -> int:
    import os

    if split.in_memory and geometry.mode == "none":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_AUTO_WORKERS, cores))


class Reader:
    """Builds the datasets of one split with one geometry and preprocessor."""

    def __init__(self, split: Split, geometry: Geometry, preprocessor: Preprocessor, workers: int) -> None:
        self.split, self.geometry, self.preprocessor = split, geometry, preprocessor
        self.workers = max(1, workers)
        self.native = split.is_files and split.suffixes() <= NATIVE_SUFFIXES

    # -------------------------------------------------------------- requests

    def training(self, plan: Plan, start: int, stop: int, parts: list[int], total: int) -> tf.data.Dataset:
        """The shards ``parts`` (replica ids among ``total``) of steps start .. stop - 1, in order."""

        def shard(number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            step, part = divmod(number, len(parts))
            drawn = plan.shard(start + step, parts[part], total)
            return drawn.indices, np.stack([drawn.tops, drawn.lefts, drawn.flips], axis=1).astype(np.int32), drawn.crops

        return self._dataset(max(0, stop - start) * len(parts), shard)

    def evaluation(self, batch: int) -> tf.data.Dataset:
        def block(number: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            indices = np.arange(number * batch, min((number + 1) * batch, len(self.split)))
            return indices, np.zeros((len(indices), 3), np.int32), None

        return self._dataset(-(-len(self.split) // batch), block)

    def _signature(self) -> tuple[tf.TensorSpec, ...]:
        spec = [tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.int64), tf.TensorSpec([None, 3], tf.int32)]
        if self.geometry.random:
            spec.append(tf.TensorSpec([None, TRIES, 4], tf.float64))
        if self.split.is_files:
            spec.append(tf.TensorSpec([None], tf.string))
        return tuple(spec)

    def _dataset(self, count: int, shard: Callable[[int], tuple[np.ndarray, np.ndarray, np.ndarray | None]]) -> tf.data.Dataset:
        """``count`` requests; request k is ``shard(k)``: (indices, pad-and-crop and flip numbers, crop draws)."""

        def request(number: np.ndarray) -> Request:
            """(indices, labels, numbers[, crops][, paths]) of request ``number``."""
            indices, numbers, crops = shard(int(number))
            parts: list[np.ndarray] = [indices.astype(np.int64), self.split.labels[indices].astype(np.int64), numbers]
            if self.geometry.random:
                assert crops is not None, "random_resized_crop needs the core's draws"
                parts.append(crops.astype(np.float64))
            if self.split.is_files:
                parts.append(np.array(self.split.files(indices), dtype=object).astype(bytes))
            return tuple(parts)

        signature = self._signature()

        def read(number: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
            made = tf.numpy_function(request, [number], [spec.dtype for spec in signature], stateful=False)
            parts = [tf.ensure_shape(part, spec.shape) for part, spec in zip(made, signature)]
            if not self.split.is_files and self.geometry.mode == "none":
                return self._block(*parts)  # a batch read per request, nothing per example
            return self._request(*parts)

        # One call per request, `workers` requests at a time: the request is made in Python
        # (`numpy_function`), its examples go through one `map_fn` (a loop inside the graph).
        # Measured per 8x8 JPEG against this: a `from_generator` source cost about 110 us of CPU
        # more (the decoding itself about 55), a per-example stream regrouped into requests about
        # 120 more. An unrolled graph instead of the loop saved under 20 but took 8 to 40 s to
        # start.
        loaded = tf.data.Dataset.range(count).map(read, num_parallel_calls=self.workers, deterministic=True)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
        options.deterministic = True
        # Fixed parallelism and buffer, like a DataLoader's workers and prefetch factor: tf.data's
        # autotuning, which has nothing left to tune here, cost about 20 us of CPU per 8x8 JPEG.
        options.autotune.enabled = False
        return loaded.prefetch(PREFETCH * self.workers).with_options(options)

    # -------------------------------------------------------------- reading

    def _read(self, indices: tf.Tensor) -> tf.Tensor:
        shape = self.split.example_shape
        assert shape is not None  # arrays have one
        block = tf.numpy_function(self.split.read, [indices], tf.as_dtype(self.split.dtype), stateful=False)
        return tf.ensure_shape(block, [None, *shape])

    def _block(self, indices: tf.Tensor, labels: tf.Tensor, numbers: tf.Tensor,
               *_: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:  # fmt: skip
        return self.preprocessor.apply(tf.cast(self._read(indices), tf.float32)), labels, numbers

    def _request(self, indices: tf.Tensor, labels: tf.Tensor, numbers: tf.Tensor,
                 *rest: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:  # fmt: skip
        """A request's examples read one by one (decoded, brought to the input's size), then
        preprocessed as a batch (the same elementwise arithmetic)."""
        crops = rest[0] if self.geometry.random else None
        if self.split.is_files:
            sources = rest[-1]

            def one(item: tuple[tf.Tensor, ...]) -> tf.Tensor:
                return self._file(item[0], item[1] if crops is not None else None)
        else:
            sources = self._read(indices)

            def one(item: tuple[tf.Tensor, ...]) -> tf.Tensor:
                return self._shape(item[0], item[1] if crops is not None else None)

        items = (sources, crops) if crops is not None else (sources,)
        images = tf.map_fn(one, items, fn_output_signature=self._example_spec())
        return self.preprocessor.apply(images), labels, numbers

    def _example_spec(self) -> tf.TensorSpec:
        g = self.geometry
        return tf.TensorSpec([g.height, g.width, g.channels], tf.float32)

    def _file(self, path: tf.Tensor, crops: tf.Tensor | None = None) -> tf.Tensor:
        if self.native:
            image = self._decode(tf.io.read_file(path))
            expect = self.split.expect
            if not (expect and expect[2] == self.geometry.channels):  # else asserted to have them already
                image = to_channels(image, self.geometry.channels)
        else:
            channels, expect = self.geometry.channels, self.split.expect
            image = tf.numpy_function(lambda p: decode_image(p.decode(), channels, expect), [path], tf.uint8,
                                      stateful=False)  # fmt: skip
            image = tf.ensure_shape(image, [None, None, channels])
        return self._shape(image, crops)

    def _decode(self, contents: tf.Tensor) -> tf.Tensor:
        """A JPEG (libjpeg's accurate integer DCT, as Pillow) or PNG, its size checked before it
        is decoded and its shape against ``split.expect`` (when the recipe converts nothing)."""
        jpeg = tf.io.is_jpeg(contents)
        expect = self.split.expect

        def decode_jpeg() -> tf.Tensor:
            return tf.io.decode_jpeg(contents, channels=0, dct_method="INTEGER_ACCURATE")

        def any_file() -> tf.Tensor:
            with tf.control_dependencies([guard_size(contents, jpeg)]):
                return tf.cond(jpeg, decode_jpeg, lambda: tf.io.decode_image(contents, channels=0, expand_animations=False))

        if expect and expect[0] and expect[1] and expect[0] * expect[1] <= MAX_PIXELS:
            # A JPEG's header must then name the input's size, which also bounds its pixels: one
            # check before decoding instead of the pixel limit (PNGs keep it; the shape check
            # after decoding is theirs, and a no-op for a JPEG checked here).
            axes = [axis for axis, want in enumerate(expect) if want]

            def sized_jpeg() -> tf.Tensor:
                header = tf.gather(tf.image.extract_jpeg_shape(contents), axes)
                check = tf.debugging.assert_equal(header, [expect[axis] for axis in axes],
                                                  message="image of another shape than the input")  # fmt: skip
                with tf.control_dependencies([check]):
                    return decode_jpeg()

            image = tf.cond(jpeg, sized_jpeg, any_file)
        else:
            image = any_file()
        return guard_expected(image, expect)

    def _shape(self, image: tf.Tensor, crops: tf.Tensor | None = None) -> tf.Tensor:
        return transform(image, self.geometry, crops)

    # -------------------------------------------------------------- errors

    def explain(self, indices: np.ndarray, error: Exception) -> DataError:
        """A one-line error for a request that failed to read: the file Pillow cannot decode
        either, or what TensorFlow said."""
        if self.split.is_files:
            for path in self.split.files(indices):
                decode_image(path, self.geometry.channels, self.split.expect)  # raises the DataError naming the file
        first = str(getattr(error, "message", error)).strip().splitlines()[0] if str(error).strip() else ""
        return DataError(f"{self.split.name}: TensorFlow could not read examples {indices[:4].tolist()}...: {first}")


def guard_size(contents: tf.Tensor, jpeg: tf.Tensor) -> tf.Tensor:
    """An assertion that a JPEG's or PNG's header declares at most MAX_PIXELS pixels, checked
    before TensorFlow decodes it (TensorFlow has no limit of its own); when it fails, :meth:`Reader.explain`
    names the file through Pillow ("decompression bomb"). ``jpeg``: ``tf.io.is_jpeg(contents)``."""

    def png_size() -> tf.Tensor:  # IHDR: width and height, big-endian, at bytes 16..24
        raw = tf.cast(tf.io.decode_raw(tf.strings.substr(contents, 16, 8), tf.uint8), tf.int64)
        width = raw[0] * 2**24 + raw[1] * 2**16 + raw[2] * 2**8 + raw[3]
        height = raw[4] * 2**24 + raw[5] * 2**16 + raw[6] * 2**8 + raw[7]
        return tf.stack([height, width])

    size = tf.cond(jpeg, lambda: tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64), png_size)
    return tf.debugging.assert_less_equal(size[0] * size[1], tf.constant(MAX_PIXELS, tf.int64),
                                          message="image over the pixel limit")  # fmt: skip


def guard_expected(image: tf.Tensor, expect: tuple[int, int, int] | None) -> tf.Tensor:
    """``image``, asserted to have the size and channels ``expect`` names (0: any), when the recipe
    converts nothing (:mod:`resnet_spec.training.checks`). ``ensure_shape`` checks when it runs, in
    one operation: a few microseconds an image."""
    if expect is None:
        return image
    return tf.ensure_shape(image, [want or None for want in expect])


def to_channels(image: tf.Tensor, channels: int) -> tf.Tensor:
    """A decoded uint8 image with its own channel count (1, 2, 3 or 4) converted to ``channels``
    by Pillow's rules: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16; gray is copied into RGB;
    alpha is dropped, or 255 where there was none."""

    def opaque() -> tf.Tensor:
        return tf.fill(tf.concat([tf.shape(image)[:2], [1]], 0), tf.constant(255, tf.uint8))

    def branch(native: int) -> Callable[[], tf.Tensor]:
        def convert() -> tf.Tensor:
            if native in (1, 2):  # L, LA
                gray = image[..., :1]
                if channels == 1:
                    return gray
                if channels == 3:
                    return tf.concat([gray, gray, gray], -1)
                return tf.concat([gray, gray, gray, image[..., 1:2] if native == 2 else opaque()], -1)
            rgb = image[..., :3]
            if channels == 1:
                x = tf.cast(rgb, tf.int32)
                return tf.cast((x[..., 0] * 19595 + x[..., 1] * 38470 + x[..., 2] * 7471 + 32768) // 65536, tf.uint8)[..., None]
            if channels == 3:
                return rgb
            return image[..., :4] if native == 4 else tf.concat([rgb, opaque()], -1)

        return convert

    out = tf.switch_case(tf.shape(image)[-1] - 1, [branch(1), branch(2), branch(3), branch(4)])
    return tf.ensure_shape(out, [None, None, channels])


def resize(image: tf.Tensor, height: Any, width: Any, antialias: bool) -> tf.Tensor:
    """Bilinear, half-pixel centres. An antialiased enlargement is plain bilinear interpolation
    (the filter widens only to shrink), and TensorFlow's antialiased kernel costs about three
    times the plain one, so it runs only when an axis shrinks."""
    image = tf.cast(image, tf.float32)
    size = tf.stack([height, width])
    if not antialias:
        return tf.image.resize(image, size, method="bilinear")
    shrinks = tf.reduce_any(tf.shape(image)[:2] > size)
    return tf.cond(shrinks, lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
                   lambda: tf.image.resize(image, size, method="bilinear"))  # fmt: skip


def transform(image: tf.Tensor, geometry: Geometry, draws: tf.Tensor | None) -> tf.Tensor:
    """One uint8 (h, w, c) example brought to the input's size as float32 (see the NumPy reference)."""
    out_h, out_w = geometry.height, geometry.width
    h, w = tf.shape(image)[0], tf.shape(image)[1]
    if geometry.mode == "none":
        out = tf.cast(image, tf.float32)
    elif geometry.mode == "stretch":
        same = tf.logical_and(tf.equal(h, out_h), tf.equal(w, out_w))
        out = tf.cond(same, lambda: tf.cast(image, tf.float32), lambda: resize(image, out_h, out_w, geometry.antialias))
    elif geometry.mode == "shorter_side":
        side = float(geometry.shorter_side or 0)
        hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
        portrait = tf.greater(h, w)
        nh = tf.where(portrait, tf.cast(tf.floor(side * hf / wf), tf.int32), int(side))
        nw = tf.where(portrait, int(side), tf.cast(tf.floor(side * wf / hf), tf.int32))
        same = tf.logical_and(tf.equal(nh, h), tf.equal(nw, w))
        scaled = tf.cond(same, lambda: tf.cast(image, tf.float32), lambda: resize(image, nh, nw, geometry.antialias))
        top, left = _center(nh, out_h), _center(nw, out_w)
        out = scaled[top : top + out_h, left : left + out_w]
    else:
        assert draws is not None
        top, left, bh, bw = crop_box(h, w, draws, geometry.ratio)
        out = resize(image[top : top + bh, left : left + bw], out_h, out_w, geometry.antialias)
    return tf.ensure_shape(out, [out_h, out_w, geometry.channels])


def _center(size: tf.Tensor, crop: int) -> tf.Tensor:
    return tf.cast(tf.round(tf.cast(size - crop, tf.float64) / 2.0), tf.int32)


def crop_box(height: tf.Tensor, width: tf.Tensor, draws: tf.Tensor, ratio: tuple[float, float]) -> tuple[tf.Tensor, ...]:
    """:func:`resnet_spec.training.geometry.crop_box` with TensorFlow's float64 operations."""
    hf, wf = tf.cast(height, tf.float64), tf.cast(width, tf.float64)
    target = hf * wf * draws[:, 0]
    aspect = draws[:, 1]
    w = tf.cast(tf.round(tf.sqrt(target * aspect)), tf.int32)
    h = tf.cast(tf.round(tf.sqrt(target / aspect)), tf.int32)
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
    tried_h, tried_w = h[first], w[first]
    tried_top = tf.cast(tf.floor(draws[first, 2] * tf.cast(height - tried_h + 1, tf.float64)), tf.int32)
    tried_left = tf.cast(tf.floor(draws[first, 3] * tf.cast(width - tried_w + 1, tf.float64)), tf.int32)
    in_ratio = wf / hf
    narrow, wide = in_ratio < ratio[0], in_ratio > ratio[1]
    fallback_w = tf.where(wide, tf.cast(tf.round(hf * ratio[1]), tf.int32), width)
    fallback_h = tf.where(narrow, tf.cast(tf.round(wf / ratio[0]), tf.int32), height)
    fallback_top, fallback_left = (height - fallback_h) // 2, (width - fallback_w) // 2
    ok = tf.reduce_any(fits)
    return (tf.where(ok, tried_top, fallback_top), tf.where(ok, tried_left, fallback_left),
            tf.where(ok, tried_h, fallback_h), tf.where(ok, tried_w, fallback_w))  # fmt: skip
