"""Small synthetic videos for tests, made with PyAV (no ffmpeg binary needed).

Every frame shows its own frame number as a grid of black and white cells, so a test can read back
which frame a decoder returned (:func:`read_frame_number`). Four corner cells carry fixed colours
(red top-left, green top-right, blue bottom-left, black bottom-right): they reveal a wrong rotation
or a broken colour conversion.

``make_video`` writes one file; ``cached_video`` builds a named kind from :data:`KINDS` once per
folder, so a test session can share them::

    from quota.testing.videos import make_video, read_frame_number
    path = make_video(tmp_path / "clip.mp4", n_frames=50, fps=10, size=(64, 48))
"""

from __future__ import annotations

import os
import struct
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

GRID_ROWS = 4
GRID_COLS = 6
#: Cells that hold fixed colours, as (row, col) -> RGB.
MARKERS: dict[tuple[int, int], tuple[int, int, int]] = {
    (0, 0): (255, 0, 0),
    (0, GRID_COLS - 1): (0, 255, 0),
    (GRID_ROWS - 1, 0): (0, 0, 255),
    (GRID_ROWS - 1, GRID_COLS - 1): (0, 0, 0),
}
#: Cells that carry the bits of the frame number, most significant first.
BIT_CELLS: tuple[tuple[int, int], ...] = tuple(
    (r, c) for r in range(GRID_ROWS) for c in range(GRID_COLS) if (r, c) not in MARKERS
)
#: Largest frame number the pattern can hold.
MAX_FRAME_NUMBER = 2 ** len(BIT_CELLS) - 1

#: Containers that can carry a display rotation.
_ROTATABLE = ("mp4", "mov", "matroska", "webm")

_CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi",
               ".ts": "mpegts", ".flv": "flv", ".h264": "h264"}


def _cell_edges(length: int, cells: int) -> np.ndarray:
    return np.linspace(0, length, cells + 1).round().astype(int)


def frame_pattern(number: int, width: int, height: int) -> np.ndarray:
    """The picture of frame ``number``: uint8 RGB ``[height, width, 3]``.

    Raises:
        ValueError: if the number does not fit the pattern or the size is too small to read back.
    """
    if not 0 <= number <= MAX_FRAME_NUMBER:
        raise ValueError(f"frame number {number} outside 0..{MAX_FRAME_NUMBER}")
    if width < 2 * GRID_COLS or height < 2 * GRID_ROWS:
        raise ValueError(f"frame size {width}x{height} too small for a {GRID_COLS}x{GRID_ROWS} grid")
    img = np.zeros((height, width, 3), dtype=np.uint8)
    ys, xs = _cell_edges(height, GRID_ROWS), _cell_edges(width, GRID_COLS)
    nbits = len(BIT_CELLS)
    for k, (r, c) in enumerate(BIT_CELLS):
        if (number >> (nbits - 1 - k)) & 1:
            img[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = 255
    for (r, c), rgb in MARKERS.items():
        img[ys[r] : ys[r + 1], xs[c] : xs[c + 1]] = rgb
    return img


def _cell_means(pixels: np.ndarray) -> np.ndarray:
    """Mean RGB of the central half of every cell: float ``[rows, cols, 3]``."""
    h, w = pixels.shape[:2]
    ys, xs = _cell_edges(h, GRID_ROWS), _cell_edges(w, GRID_COLS)
    out = np.zeros((GRID_ROWS, GRID_COLS, 3))
    for r in range(GRID_ROWS):
        y0, y1 = ys[r], ys[r + 1]
        qy = max((y1 - y0) // 4, 0)
        for c in range(GRID_COLS):
            x0, x1 = xs[c], xs[c + 1]
            qx = max((x1 - x0) // 4, 0)
            cell = pixels[y0 + qy : max(y1 - qy, y0 + qy + 1), x0 + qx : max(x1 - qx, x0 + qx + 1)]
            out[r, c] = cell.reshape(-1, 3).mean(axis=0)
    return out


def marker_error(pixels: np.ndarray) -> float:
    """Largest distance (0..255 per channel) of a corner cell from its expected colour."""
    means = _cell_means(np.asarray(pixels))
    return max(float(np.abs(means[r, c] - np.array(rgb)).max()) for (r, c), rgb in MARKERS.items())


def read_frame_number(pixels: np.ndarray, tolerance: float = 80.0) -> int:
    """The frame number drawn by :func:`frame_pattern` into ``pixels`` (uint8 RGB ``[H, W, 3]``).

    Raises:
        ValueError: if the corner colours are off by more than ``tolerance`` (a frame decoded with
            the wrong rotation or colours, or not one of ours).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"expected one RGB frame [H, W, 3], got shape {pixels.shape}")
    err = marker_error(pixels)
    if err > tolerance:
        raise ValueError(f"corner markers off by {err:.0f} (wrong orientation or colours?)")
    means = _cell_means(pixels).mean(axis=2)
    number = 0
    for r, c in BIT_CELLS:
        number = (number << 1) | int(means[r, c] >= 128)
    return number


def _container_format(path: Path) -> str:
    try:
        return _CONTAINERS[path.suffix.lower()]
    except KeyError:
        raise ValueError(f"unknown video extension {path.suffix!r}; use one of {sorted(_CONTAINERS)}")


#: ``make_video(color=...)``: the AVColorRange each colour-tag option stores and tags (None: no tags).
_COLOR_TAGS = {None: None, "bt709": 1, "bt709-full": 2}


def _default_pix_fmt(codec: str) -> str:
    return {"mjpeg": "yuvj420p", "ffv1": "yuv420p", "png": "rgb24"}.get(codec, "yuv420p")


def make_video(
    path: str | os.PathLike,
    n_frames: int,
    fps: float = 10.0,
    size: tuple[int, int] = (64, 48),
    codec: str = "libx264",
    *,
    gop: int | None = None,
    bframes: int = 0,
    pix_fmt: str | None = None,
    rotation: int = 0,
    times: Sequence[float] | None = None,
    preset: str = "ultrafast",
    crf: int = 18,
    audio: bool = False,
    first: int = 0,
    frame_fn=None,
    codec_params: str = "",
    faststart: bool = False,
    rotation_method: str = "auto",
    color: str | None = None,
) -> Path:
    """Write a test video whose frame ``i`` shows the number ``first + i``.

    Args:
        path: output file; the container follows the extension (.mp4 .mov .mkv .webm .avi).
        n_frames: number of frames.
        fps: nominal frame rate (frames per second).
        size: stored ``(width, height)`` in pixels, before any rotation.
        codec: PyAV encoder name (``libx264``, ``libx265``, ``libvpx-vp9``, ``mjpeg``, ``ffv1``,
            ``mpeg4`` ...).
        gop: keyframe interval in frames (default: codec default; 1 makes every frame a keyframe).
        bframes: consecutive B-frames allowed (H.264/H.265/MPEG-4).
        pix_fmt: stored pixel format (``yuv420p``, ``yuv444p``, ``yuv420p10le`` ...).
        rotation: display rotation in degrees counter-clockwise (0, 90, 180, 270) written as a
            display matrix; the *displayed* picture is the pattern, so the stored one is rotated
            the other way.
        times: presentation time in seconds of each frame, for variable frame rate files
            (default ``i / fps``).
        preset: x264/x265 speed preset.
        crf: x264/x265 quality (lower is better).
        audio: also write a short silent audio stream.
        first: number shown by the first frame.
        frame_fn: optional ``f(i) -> uint8 [H, W, 3]`` picture (displayed orientation) instead of
            the numbered pattern.
        codec_params: extra ``key=value:key=value`` settings for x264/x265 (``open-gop=1`` ...).
        faststart: MP4/MOV only: put the index (``moov``) before the data, as streaming sites do.
        rotation_method: how a rotation is written: ``stream`` with PyAV's
            ``VideoStream.set_display_rotation`` (newer PyAV only); ``header`` by writing the
            matrix into the MP4/MOV track header after encoding (for .mkv/.webm: into an MP4
            that is then remuxed), which works on any PyAV; ``auto`` picks ``stream`` where
            PyAV has it.
        color: ``None``: no colour tags (the pictures are stored with the encoder's BT.601
            conversion); ``"bt709"`` / ``"bt709-full"``: stored with the BT.709 matrix in limited
            (``tv``) / full (``pc``) range, and tagged so (matrix, primaries and transfer BT.709, and
            the range), as cameras and phones write HD video.

    Returns:
        the path written.

    Raises:
        ValueError: bad arguments, or a rotation asked of a container that cannot hold one
            (only .mp4, .mov, .mkv and .webm can).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = _container_format(path)
    k, method = _rotation_plan(path, fmt, rotation, rotation_method)
    if times is not None and len(times) != n_frames:
        raise ValueError(f"times has {len(times)} entries for {n_frames} frames")
    if color not in _COLOR_TAGS:
        raise ValueError(f"color must be one of {', '.join(map(repr, _COLOR_TAGS))}, got {color!r}")
    encode = {
        "n_frames": n_frames, "fps": fps, "size": size, "codec": codec, "gop": gop, "bframes": bframes,
        "pix_fmt": pix_fmt, "k": k, "times": times, "preset": preset, "crf": crf, "first": first,
        "frame_fn": frame_fn, "codec_params": codec_params, "color": color,
        "audio_codec": ("aac" if fmt in ("mp4", "mov") else "pcm_s16le") if audio else None,
    }
    if not k or method == "stream":
        _encode(path, fmt, set_rotation=bool(k), faststart=faststart, **encode)
    else:
        _encode_with_header_rotation(path, fmt, k * 90, faststart, encode)
    return path


def _rotation_plan(path: Path, fmt: str, rotation: int, rotation_method: str) -> tuple[int, str]:
    """``(quarter turns, method)`` for writing ``rotation`` into a ``fmt`` file, or ``ValueError``."""
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    k = (rotation // 90) % 4
    if rotation_method not in ("auto", "stream", "header"):
        raise ValueError(f"rotation_method must be 'auto', 'stream' or 'header', got {rotation_method!r}")
    if k and fmt not in _ROTATABLE:
        raise ValueError(f"{path.suffix} files cannot hold a display rotation; use .mp4, .mov, .mkv or .webm")
    method = rotation_method
    if method == "auto":
        method = "stream" if has_rotation_setter() else "header"
    if k and method == "stream" and not has_rotation_setter():
        raise ValueError("this PyAV has no VideoStream.set_display_rotation; use rotation_method='header'")
    return k, method


def _encode_with_header_rotation(path: Path, fmt: str, rotation: int, faststart: bool, encode: dict) -> None:
    """Encode, then write the rotation matrix into the MP4/MOV track header. Matroska/WebM: write an
    MP4, put the matrix in its header and copy the packets over (the MP4 demuxer hands the matrix to
    the Matroska muxer as stream side data)."""
    if fmt in ("mp4", "mov"):
        _encode(path, fmt, set_rotation=False, faststart=faststart, **encode)
        set_mp4_rotation(path, rotation)
        return
    tmp = path.with_name(f"tmp-rotate-{os.getpid()}-{path.stem}.mp4")
    try:
        _encode(tmp, "mp4", set_rotation=False, faststart=False, **encode)
        set_mp4_rotation(tmp, rotation)
        _remux(tmp, path, fmt)
    finally:
        tmp.unlink(missing_ok=True)


def has_rotation_setter() -> bool:
    """Whether this PyAV can write a display rotation itself (``VideoStream.set_display_rotation``)."""
    from av.video.stream import VideoStream

    return hasattr(VideoStream, "set_display_rotation")


def _encode(path: Path, fmt: str, *, n_frames: int, fps: float, size: tuple[int, int], codec: str,
            gop: int | None, bframes: int, pix_fmt: str | None, k: int, set_rotation: bool,
            times: Sequence[float] | None, preset: str, crf: int, first: int, frame_fn,
            codec_params: str, audio_codec: str | None, faststart: bool, color: str | None = None) -> None:
    """Encode the frames of :func:`make_video` into ``path``; the stored picture is the shown one
    turned ``k`` quarter turns clockwise, and the stream's display rotation is set only when
    ``set_rotation`` (PyAV's setter)."""
    import av

    width, height = size
    disp_w, disp_h = (height, width) if k % 2 else (width, height)
    rate = Fraction(fps).limit_denominator(1001)
    container_options = {"movflags": "faststart"} if faststart and fmt in ("mp4", "mov") else {}
    with av.open(str(path), "w", format=fmt, options=container_options) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = pix_fmt or _default_pix_fmt(codec)
        color_range = _COLOR_TAGS[color]
        if color_range is not None:  # BT.709 tags on the stream (the encoder writes them into the bitstream)
            cc = stream.codec_context
            cc.colorspace = cc.color_primaries = cc.color_trc = 1  # AVCOL_*_BT709
            cc.color_range = color_range
        if times is not None:
            stream.time_base = Fraction(1, 1000)
            stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = _encoder_options(stream, codec, gop=gop, bframes=bframes, preset=preset, crf=crf,
                                          codec_params=codec_params)
        if set_rotation and k:
            stream.set_display_rotation(k * 90)
        astream = None
        if audio_codec is not None:
            astream = out.add_stream(audio_codec, rate=8000)
            astream.layout = "mono"

        for i in range(n_frames):
            shown = frame_fn(i) if frame_fn is not None else frame_pattern(first + i, disp_w, disp_h)
            stored = np.ascontiguousarray(np.rot90(shown, -k)) if k else shown
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            if color_range is not None:  # store the picture with the matrix and range the tags name
                # (the source colourspace only has to differ from the target one: PyAV 15 sets no
                # colour tables when both colourspaces and ranges are equal; RGB has no matrix)
                frame = frame.reformat(format=stream.pix_fmt, src_colorspace="ITU601", dst_colorspace="ITU709",
                                       src_color_range="JPEG", dst_color_range=color_range)
            if times is not None:
                frame.pts = int(round(times[i] * 1000))
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = i
                frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
        if astream is not None:
            _write_silence(astream, out, seconds=min(n_frames / fps, 2.0))


def _encoder_options(stream, codec: str, *, gop: int | None, bframes: int, preset: str, crf: int,
                     codec_params: str) -> dict[str, str]:
    """Encoder options for ``codec`` (GOP and B-frames of other codecs go on ``stream``'s context)."""
    options: dict[str, str] = {}
    if codec in ("libx264", "libx265"):
        params = [f"bframes={bframes}"]
        if gop is not None:
            params += [f"keyint={gop}", f"min-keyint={gop}", "scenecut=0"]
        if codec_params:
            params.append(codec_params)
        if codec == "libx265":
            params.append("log-level=none")
        return {"preset": preset, "crf": str(crf),
                "x264-params" if codec == "libx264" else "x265-params": ":".join(params)}
    if gop is not None:
        stream.codec_context.gop_size = gop
    if bframes:
        stream.codec_context.max_b_frames = bframes
    if codec == "libvpx-vp9":
        options.update({"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"})
    elif codec in ("mjpeg", "mpeg4"):
        # Constant quality 3 (what ffmpeg's -q:v 3 sets): quantiser 3 in lambda units
        # (FF_QP2LAMBDA = 118). Given as codec options, which every PyAV version passes
        # on to FFmpeg; the global_quality attribute exists only in newer PyAV.
        options["flags"] = "+qscale"
        options["global_quality"] = str(3 * 118)
    return options


def _iter_boxes(data: bytes | bytearray, start: int, end: int):
    """``(type, offset, header_size, size)`` of each ISO-BMFF box in ``data[start:end]``."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack_from(">Q", data, pos + 8)[0]
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            break
        yield kind, pos, header, size
        pos += size


def _child(data: bytes | bytearray, parent: tuple, kind: bytes):
    _, pos, header, size = parent
    for box in _iter_boxes(data, pos + header, pos + size):
        if box[0] == kind:
            return box
    return None


def rotation_matrix(rotation: int) -> tuple[int, ...]:
    """The 9-entry MP4 ``tkhd`` / FFmpeg display matrix for a counter-clockwise ``rotation``
    (multiple of 90 degrees): 16.16 fixed point, 2.30 for the last column, no translation."""
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    cos, sin = [(1, 0), (0, 1), (-1, 0), (0, -1)][(rotation // 90) % 4]
    one = 1 << 16
    return (cos * one, -sin * one, 0, sin * one, cos * one, 0, 0, 0, 1 << 30)


def set_mp4_rotation(path: str | os.PathLike, rotation: int) -> int:
    """Write the display matrix of ``rotation`` (degrees counter-clockwise) into the track header
    (``moov/trak/tkhd``) of every video track of an MP4/MOV file, in place, as FFmpeg's muxer does
    when a stream carries a display matrix. Works with any PyAV version.

    Returns:
        the number of video tracks changed.

    Raises:
        ValueError: if the file has no video track header (not an MP4/MOV file).
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    matrix = rotation_matrix(rotation)
    changed = 0
    for moov in _iter_boxes(data, 0, len(data)):
        if moov[0] != b"moov":
            continue
        for trak in _iter_boxes(data, moov[1] + moov[2], moov[1] + moov[3]):
            if trak[0] != b"trak":
                continue
            mdia = _child(data, trak, b"mdia")
            hdlr = _child(data, mdia, b"hdlr") if mdia else None
            tkhd = _child(data, trak, b"tkhd")
            if hdlr is None or tkhd is None:
                continue
            # hdlr: version+flags (4), pre_defined (4), handler_type (4)
            if bytes(data[hdlr[1] + hdlr[2] + 8 : hdlr[1] + hdlr[2] + 12]) != b"vide":
                continue
            body = tkhd[1] + tkhd[2]
            version = data[body]
            # version+flags, creation and modification times, track id, reserved, duration
            # (32- or 64-bit times), then reserved (8), layer, alternate group, volume, reserved
            offset = body + 4 + (32 if version == 1 else 20) + 8 + 8
            if offset + 36 > tkhd[1] + tkhd[3]:
                continue
            struct.pack_into(">9i", data, offset, *matrix)
            changed += 1
    if not changed:
        raise ValueError(f"{path}: no MP4/MOV video track header (moov/trak/tkhd) found")
    path.write_bytes(bytes(data))
    return changed


def _remux(src: Path, dst: Path, fmt: str) -> None:
    """Copy every stream of ``src`` into a new ``fmt`` container at ``dst`` without re-encoding."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w", format=fmt) as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux(*[s for s in inp.streams if s.index in mapping]):
            if packet.dts is None and packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)


def _write_silence(astream, out, seconds: float) -> None:
    import av

    rate = astream.codec_context.sample_rate
    fmt = astream.codec_context.format.name
    chunk = 1024
    total = int(rate * seconds)
    for start in range(0, max(total, chunk), chunk):
        samples = np.zeros((1, chunk), dtype=np.float32 if fmt.startswith("flt") else np.int16)
        frame = av.AudioFrame.from_ndarray(samples, format=fmt, layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in astream.encode(frame):
            out.mux(packet)
    for packet in astream.encode():
        out.mux(packet)


def make_audio_only(path: str | os.PathLike, seconds: float = 1.0) -> Path:
    """A file with one audio stream and no video (``.m4a``/``.mp4`` AAC, ``.wav``/``.mkv`` PCM)."""
    import av

    path = Path(path)
    suffix = path.suffix.lower()
    fmt = {".m4a": "mp4", ".mp4": "mp4", ".wav": "wav", ".mkv": "matroska"}.get(suffix)
    if fmt is None:
        raise ValueError(f"unknown audio extension {suffix!r}")
    with av.open(str(path), "w", format=fmt) as out:
        astream = out.add_stream("aac" if fmt == "mp4" else "pcm_s16le", rate=8000)
        astream.layout = "mono"
        _write_silence(astream, out, seconds)
    return path


def make_empty_video(path: str | os.PathLike, size: tuple[int, int] = (64, 48), codec: str = "mjpeg") -> Path:
    """A container with a video stream header but not one frame in it.

    Use ``.avi``: FFmpeg drops a track without samples from ``.mp4``/``.mov`` and cannot open a
    Matroska file without a cluster, so only AVI keeps a stream with zero frames.
    """
    import av

    path = Path(path)
    with av.open(str(path), "w", format=_container_format(path)) as out:
        stream = out.add_stream(codec, rate=10)
        stream.width, stream.height = size
        stream.pix_fmt = _default_pix_fmt(codec)
        out.start_encoding()  # write the header even though no frame follows
        for packet in stream.encode():
            out.mux(packet)
    return path


def truncate_file(src: str | os.PathLike, dst: str | os.PathLike, fraction: float = 0.5) -> Path:
    """Copy the first ``fraction`` of the bytes of ``src`` to ``dst`` (a damaged download)."""
    data = Path(src).read_bytes()
    dst = Path(dst)
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


def avi_with_wrong_count(src: str | os.PathLike, dst: str | os.PathLike, reported: int) -> Path:
    """Copy an AVI file, rewriting the frame counts in its headers (``avih`` and the video ``strh``).

    The stream data stays intact; only the count the container reports becomes ``reported``.
    """
    data = bytearray(Path(src).read_bytes())
    pos = data.find(b"avih")
    if pos < 0:
        raise ValueError(f"{src}: no avih header, not an AVI file")
    # avih: cb(4) then MicroSecPerFrame, MaxBytesPerSec, PaddingGranularity, Flags, TotalFrames
    struct.pack_into("<I", data, pos + 8 + 16, reported)
    pos = data.find(b"strh")
    while pos >= 0:
        if data[pos + 8 : pos + 12] == b"vids":
            # strh: fccType, fccHandler, Flags, Priority+Language, InitialFrames, Scale, Rate, Start, Length
            struct.pack_into("<I", data, pos + 8 + 32, reported)
        pos = data.find(b"strh", pos + 4)
    dst = Path(dst)
    dst.write_bytes(bytes(data))
    return dst


#: Named test videos: keyword arguments of :func:`make_video` plus the file name.
KINDS: dict[str, dict] = {
    # H.264 with B-frames (B-pyramid) and a long GOP: the hard case for seeking.
    "h264_bframes": dict(name="h264_bframes.mp4", n_frames=300, fps=25, size=(64, 48), codec="libx264",
                         gop=120, bframes=3, preset="veryfast"),
    "h264_mkv": dict(name="h264.mkv", n_frames=200, fps=30, size=(64, 48), codec="libx264", gop=50, bframes=2,
                     preset="veryfast"),
    "vp9": dict(name="vp9.webm", n_frames=150, fps=24, size=(64, 48), codec="libvpx-vp9", gop=60),
    "mjpeg": dict(name="mjpeg.avi", n_frames=100, fps=10, size=(64, 48), codec="mjpeg"),
    "mpeg4_avi": dict(name="mpeg4.avi", n_frames=120, fps=25, size=(64, 48), codec="mpeg4", gop=30, bframes=2),
    "hevc": dict(name="hevc.mp4", n_frames=120, fps=25, size=(64, 48), codec="libx265", gop=48, bframes=3),
    "vfr": dict(name="vfr.mkv", n_frames=120, fps=20, size=(64, 48), codec="libx264", gop=40, bframes=2,
                preset="veryfast",
                times=[round(0.05 * i + (0.5 if i >= 60 else 0.0) + (0.03 if i % 7 == 3 else 0.0), 3)
                       for i in range(120)]),
    "rotated90": dict(name="rot90.mp4", n_frames=40, fps=10, size=(64, 48), codec="libx264", gop=20,
                      rotation=90),
    "rotated270": dict(name="rot270.mp4", n_frames=40, fps=10, size=(64, 48), codec="libx264", gop=20,
                       rotation=270),
    "rotated180": dict(name="rot180.mkv", n_frames=40, fps=10, size=(64, 48), codec="libx264", gop=20,
                       rotation=180),
    "odd_size": dict(name="odd.webm", n_frames=40, fps=10, size=(67, 49), codec="libvpx-vp9", gop=15),
    "yuv444": dict(name="yuv444.mkv", n_frames=40, fps=10, size=(64, 48), codec="libx264", gop=15,
                   pix_fmt="yuv444p"),
    "10bit": dict(name="10bit.mp4", n_frames=40, fps=10, size=(64, 48), codec="libx264", gop=15,
                  pix_fmt="yuv420p10le", bframes=2, preset="veryfast"),
    # Open GOPs: B-frames after a keyframe (in decoding order) that refer to the GOP before it.
    "open_gop": dict(name="open_gop.mkv", n_frames=200, fps=25, size=(64, 48), codec="libx264", gop=40,
                     bframes=3, preset="veryfast", codec_params="open-gop=1"),
    "h264_ts": dict(name="h264.ts", n_frames=150, fps=25, size=(64, 48), codec="libx264", gop=50, bframes=3,
                    preset="veryfast"),
    # A raw H.264 stream has no timestamps: frames are counted by decoding.
    "h264_raw": dict(name="raw.h264", n_frames=100, fps=25, size=(64, 48), codec="libx264", gop=30, bframes=2,
                     preset="veryfast"),
    "one_frame": dict(name="one.mp4", n_frames=1, fps=25, size=(64, 48), codec="libx264"),
    "with_audio": dict(name="with_audio.mp4", n_frames=50, fps=25, size=(64, 48), codec="libx264", audio=True),
}


def cached_video(kind: str, directory: str | os.PathLike) -> Path:
    """The test video ``kind`` (a key of :data:`KINDS`) in ``directory``, made on first use."""
    spec = dict(KINDS[kind])
    path = Path(directory) / spec.pop("name")
    if not path.exists():
        tmp = path.with_name("tmp-" + path.name)
        make_video(tmp, **spec)
        os.replace(tmp, path)
    return path


_process_dir: Path | None = None


def sample_video(kind: str = "h264_bframes", directory: str | os.PathLike | None = None) -> Path:
    """Test video ``kind`` made once per process (in a temporary folder unless ``directory`` is given).

    Handy for tests of other modules that just need some real video file::

        frames = load_frames(sample_video(), n=8)
    """
    global _process_dir
    if directory is None:
        if _process_dir is None:
            import tempfile

            _process_dir = Path(tempfile.mkdtemp(prefix="quota-test-videos-"))
        directory = _process_dir
    return cached_video(kind, directory)


def expected_times(kind: str) -> np.ndarray:
    """Presentation time in seconds of every frame of test video ``kind``."""
    spec = KINDS[kind]
    if spec.get("times") is not None:
        return np.asarray(spec["times"], dtype=np.float64)
    return np.arange(spec["n_frames"]) / float(spec["fps"])


def frame_numbers(frames: Iterable[np.ndarray]) -> list[int]:
    """:func:`read_frame_number` of every frame in ``frames`` (``[T, H, W, 3]``)."""
    return [read_frame_number(f) for f in frames]


__all__ = [
    "frame_pattern",
    "read_frame_number",
    "marker_error",
    "frame_numbers",
    "make_video",
    "set_mp4_rotation",
    "rotation_matrix",
    "has_rotation_setter",
    "make_audio_only",
    "make_empty_video",
    "truncate_file",
    "avi_with_wrong_count",
    "cached_video",
    "sample_video",
    "expected_times",
    "KINDS",
    "MAX_FRAME_NUMBER",
]


def demo_frame(i: int, n_frames: int, width: int = 320, height: int = 240) -> np.ndarray:
    """A simple scene for demos: a red ball crossing a grey room from left to right, ``uint8 [H, W, 3]``."""
    img = np.full((height, width, 3), 200, dtype=np.uint8)
    img[int(height * 0.75):] = (120, 90, 60)  # floor
    cx = int((i + 0.5) / max(n_frames, 1) * width)
    cy, r = int(height * 0.6), max(4, height // 12)
    yy, xx = np.ogrid[:height, :width]
    img[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (220, 30, 30)
    return img


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m quota.testing.videos OUT.mp4 [--seconds S] [--fps F]``: write a short demo video."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m quota.testing.videos",
                                     description="Write a short synthetic video (a red ball crossing a room).")
    parser.add_argument("out", help="output file (.mp4, .mkv, .webm, .avi)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--fps", type=float, default=25.0)
    args = parser.parse_args(argv)
    n = max(1, int(round(args.seconds * args.fps)))
    path = make_video(args.out, n, args.fps, (320, 240), frame_fn=lambda i: demo_frame(i, n))
    print(f"wrote {path} ({n} frames, {args.seconds:g}s at {args.fps:g} fps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
