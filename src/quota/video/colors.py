"""How decoded YUV pixels become RGB: the arguments of PyAV's ``VideoFrame.reformat`` / ``to_ndarray``
for each ``decode_colors`` mode.

``"decord"`` (the default, what the paper's reference code got): the conversion of decord 0.6.0, which
reads frames through an FFmpeg 4.1 filter graph ``scale=W:H`` ending in an ``rgb24`` buffer sink
(decord ``src/video/ffmpeg/threaded_decoder.cc`` and ``filter_graph.cc``). That scale filter
(FFmpeg 4.1 ``libavfilter/vf_scale.c``, ``scale_frame`` with ``in_color_matrix=auto``) takes, for
every frame:

- the YCbCr matrix from the frame's colourspace tag: BT.709, FCC, BT.601 (BT.470BG, SMPTE 170M),
  SMPTE 240M or BT.2020 as tagged; any other tag (unspecified, RGB, YCgCo, reserved) is read as
  BT.601;
- the range from the frame's range tag (``pc``/JPEG: full, ``tv``/MPEG: limited); an untagged frame
  is full range for the ``yuvj*`` pixel formats, limited otherwise;
- full-range RGB out.

``"bt601"``: every frame as BT.601, range from the pixel format only (``yuvj*`` full, the rest
limited), tags ignored. This is what quota's PyAV path gave before the setting existed (PyAV 15,
``to_ndarray(format="rgb24")`` without colour arguments); kept so earlier results can be reproduced.

The arguments are explicit on purpose: PyAV versions differ in what ``to_ndarray`` does without them
(PyAV 15 ignores the tags, PyAV 18 follows them), and PyAV 15 skips setting the colour tables when
the source and destination colourspace and range are equal, so the destination colourspace given
here always differs from the source one (it only labels the RGB output; RGB has no matrix).
"""

from __future__ import annotations

from typing import Any

from ..config import DECODE_COLORS
from ..errors import ConfigError

# swscale's colourspace numbers (SWS_CS_*), which sws_getCoefficients indexes by AVColorSpace value.
_SWS_BT709 = 1
_SWS_BT601 = 5
# AVColorSpace values FFmpeg 4.1's scale filter passes through (parse_yuv_type: 1..10 except YCgCo, 8).
_TAGGED_MATRICES = frozenset({1, 4, 5, 6, 7, 9, 10})
# AVColorRange values.
_RANGE_UNSPECIFIED, _RANGE_MPEG, _RANGE_JPEG = 0, 1, 2


def check_colors(colors: str) -> str:
    """``colors`` if it is one of :data:`quota.config.DECODE_COLORS`, else :class:`ConfigError`."""
    if colors not in DECODE_COLORS:
        raise ConfigError(f"unknown colour conversion {colors!r}; choose one of {', '.join(DECODE_COLORS)}")
    return colors


def reformat_colors(frame: Any, colors: str = "decord") -> dict[str, Any]:
    """Keyword arguments for ``frame.to_ndarray(format="rgb24", ...)`` (or ``reformat``) that convert a
    decoded PyAV ``VideoFrame`` to RGB as the ``colors`` mode says (see the module docstring).

    Frames that are already RGB (or paletted) get no arguments: there is no matrix to choose.
    """
    fmt = frame.format
    if fmt.is_rgb or fmt.has_palette:
        return {}
    full_by_format = fmt.name.startswith("yuvj")
    if colors == "decord":
        tag = int(frame.colorspace)
        matrix = tag if tag in _TAGGED_MATRICES else _SWS_BT601
        tagged_range = int(frame.color_range)
        full = tagged_range == _RANGE_JPEG or (tagged_range == _RANGE_UNSPECIFIED and full_by_format)
    elif colors == "bt601":
        matrix, full = _SWS_BT601, full_by_format
    else:
        check_colors(colors)
    return {
        "src_colorspace": matrix,
        "dst_colorspace": _SWS_BT709 if matrix != _SWS_BT709 else _SWS_BT601,
        "src_color_range": _RANGE_JPEG if full else _RANGE_MPEG,
        "dst_color_range": _RANGE_JPEG,
    }


__all__ = ["check_colors", "reformat_colors"]
