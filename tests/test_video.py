"""Frame-exact video reading: every frame returned is the frame asked for, on every container/codec
we make, and bad files raise typed errors."""

from __future__ import annotations

import struct
import warnings

import av
import numpy as np
import pytest

import quota
from quota.errors import (
    ConfigError,
    EmptyVideoError,
    NoVideoStreamError,
    QuotaError,
    VideoDecodeError,
    VideoError,
    VideoNotFoundError,
)
from quota.testing import videos as tv
from quota.video import DecodeStats, clear_cache, load_frames, probe, pyav_backend, uniform_indices
from quota.video.probe import build_index, display_rotation, matrix_rotation, side_data_rotation

ALL_KINDS = list(tv.KINDS)
#: Kinds whose decoding order differs from presentation order, or that use variable frame rates.
HARD_KINDS = ["h264_bframes", "h264_mkv", "hevc", "mpeg4_avi", "vfr", "vp9", "10bit", "open_gop", "h264_ts",
              "h264_raw"]


@pytest.fixture(scope="module")
def vdir(tmp_path_factory):
    return tmp_path_factory.mktemp("videos")


_reference_cache: dict = {}


def reference(path) -> list[np.ndarray]:
    """Every frame of ``path`` by a plain PyAV decode from the start, rotated as displayed."""
    key = str(path)
    if key not in _reference_cache:
        with av.open(key) as c:
            frames = []
            for f in c.decode(video=0):
                k = display_rotation(f) // 90
                frames.append(np.rot90(f.to_ndarray(format="rgb24"), k))
        _reference_cache[key] = frames
    return _reference_cache[key]


def assert_exact(frames, path):
    ref = reference(path)
    numbers = tv.frame_numbers(frames.pixels)
    assert numbers == frames.indices.tolist()
    for j, i in enumerate(frames.indices):
        np.testing.assert_array_equal(frames.pixels[j], ref[i], err_msg=f"frame {i} of {path}")


# --- exactness on every kind of file --------------------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_is_frame_exact(vdir, kind):
    path = tv.cached_video(kind, vdir)
    n_total = tv.KINDS[kind]["n_frames"]
    for n in (None, 7):
        frames = load_frames(path, n=n)
        expect = uniform_indices(n_total, n or 96)
        assert frames.indices.tolist() == expect
        assert frames.pixels.dtype == np.uint8 and frames.pixels.ndim == 4
        assert_exact(frames, path)
        np.testing.assert_allclose(frames.timestamps, tv.expected_times(kind)[frames.indices], atol=1.5e-3)
        assert frames.path == str(path)


@pytest.mark.parametrize("kind", HARD_KINDS)
@pytest.mark.parametrize("skip_limit", [0, 48])
def test_random_frame_sets_match_a_full_decode(vdir, kind, skip_limit, monkeypatch):
    """Random sets of frames, read by seeking (skip_limit 0) or by skipping packets, equal a plain
    decode from the start pixel for pixel."""
    monkeypatch.setattr(pyav_backend, "SKIP_LIMIT", skip_limit)
    path = tv.cached_video(kind, vdir)
    total = probe(path).n_frames
    rng = np.random.default_rng(hash((kind, skip_limit)) % 2**32)
    for _ in range(12):
        size = int(rng.integers(1, 12))
        want = rng.choice(total, size=size, replace=False).tolist()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no frame may be lost
            frames = load_frames(path, indices=want, threads=int(rng.integers(0, 3)))
        assert frames.indices.tolist() == want
        assert_exact(frames, path)


def test_seeks_instead_of_decoding_everything(vdir):
    path = tv.cached_video("h264_bframes", vdir)  # 300 frames, keyframes at 0, 120, 240
    stats = DecodeStats()
    frames = load_frames(path, indices=[0, 299], stats=stats)
    assert_exact(frames, path)
    assert stats.seeks >= 1
    assert stats.decoded < 120  # frame 0, then 240..299: not the 300 frames


def test_dense_frames_are_read_sequentially(vdir, monkeypatch):
    monkeypatch.setattr(pyav_backend, "SKIP_LIMIT", 0)
    path = tv.cached_video("h264_bframes", vdir)
    stats = DecodeStats()
    frames = load_frames(path, indices=list(range(10, 110, 3)), stats=stats)
    assert_exact(frames, path)
    assert stats.seeks <= 1  # one keyframe (0) covers them all: no seek between them


def test_open_gop_leading_frames(vdir, monkeypatch):
    """In an open GOP, B-frames decoded after a keyframe but shown before it refer to the previous
    GOP: they must be decoded from the keyframe before."""
    monkeypatch.setattr(pyav_backend, "SKIP_LIMIT", 0)
    path = tv.cached_video("open_gop", vdir)
    index = probe(path)
    keys = np.flatnonzero(index.keyframe)
    last_key = keys[np.searchsorted(keys, index.decode_pos, side="right") - 1]
    leading = np.flatnonzero(index.entry < last_key)
    assert len(leading) >= 3  # the file does have such frames
    for k in leading[:6]:
        frames = load_frames(path, indices=[int(k)])
        assert_exact(frames, path)


def test_file_without_timestamps_is_counted_by_decoding(vdir):
    path = tv.cached_video("h264_raw", vdir)
    index = probe(path)
    assert not index.seekable
    assert index.n_frames == 100
    frames = load_frames(path, indices=[0, 33, 99])
    assert_exact(frames, path)
    np.testing.assert_allclose(frames.timestamps, [0, 33 / 25, 99 / 25])


def test_unwanted_non_reference_frames_are_skipped(vdir):
    path = tv.cached_video("h264_bframes", vdir)
    stats = DecodeStats()
    load_frames(path, n=5, stats=stats)
    assert stats.converted == 5
    assert stats.decoded < stats.packets  # B-frames nobody refers to were not decoded


def test_variable_frame_rate_gives_true_times(vdir):
    path = tv.cached_video("vfr", vdir)
    index = probe(path)
    times = tv.expected_times("vfr")
    np.testing.assert_allclose(index.timestamps, times, atol=1e-3)
    frames = load_frames(path, indices=[0, 59, 60, 119])
    assert_exact(frames, path)
    np.testing.assert_allclose(frames.timestamps, times[[0, 59, 60, 119]], atol=1e-3)
    # a 0.5 s pause sits between frames 59 and 60
    assert frames.timestamps[2] - frames.timestamps[1] > 0.5
    assert index.fps == pytest.approx(index.n_frames / index.duration)


@pytest.mark.parametrize("kind, shape", [("rotated90", (64, 48)), ("rotated270", (64, 48)),
                                         ("rotated180", (48, 64))])
def test_rotation_is_applied(vdir, kind, shape):
    path = tv.cached_video(kind, vdir)
    frames = load_frames(path, n=5)
    assert frames.pixels.shape[1:3] == shape
    assert tv.marker_error(frames.pixels[0]) < 40  # red top-left, green top-right ...
    assert tv.frame_numbers(frames.pixels) == frames.indices.tolist()
    # max_side scales the displayed frame
    small = load_frames(path, n=2, max_side=32)
    assert max(small.pixels.shape[1:3]) == 32
    assert (small.pixels.shape[1] > small.pixels.shape[2]) == (shape[0] > shape[1])


# --- rotation written and read the same way on every PyAV version ------------------------------------

ROTATION_METHODS = ["header"] + (["stream"] if tv.has_rotation_setter() else [])


@pytest.mark.parametrize("method", ROTATION_METHODS)
@pytest.mark.parametrize("ext, codec", [(".mp4", "libx264"), (".mov", "mjpeg"), (".mkv", "libx264"),
                                        (".webm", "libvpx-vp9")])
@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_round_trip_in_every_container(tmp_path, ext, codec, rotation, method):
    path = tv.make_video(tmp_path / f"r{ext}", n_frames=6, fps=10, size=(64, 48), codec=codec, gop=3,
                         rotation=rotation, rotation_method=method)
    index = probe(path, cache=False)
    assert index.rotation == rotation
    assert (index.width, index.height) == (64, 48)
    assert index.display_size == ((48, 64) if rotation % 180 else (64, 48))
    frames = load_frames(path, n=6)
    assert frames.pixels.shape[1:3] == ((64, 48) if rotation % 180 else (48, 64))
    assert tv.frame_numbers(frames.pixels) == list(range(6))  # markers in place: rotation applied
    assert_exact(frames, path)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_header_matrix_is_the_one_ffmpeg_reports(tmp_path, rotation):
    path = tv.make_video(tmp_path / "r.mp4", n_frames=2, rotation=rotation, rotation_method="header", audio=True)
    with av.open(str(path)) as c:
        frame = next(c.decode(video=0))
        sd = [x for x in frame.side_data if x.type.name == "DISPLAYMATRIX"]
    assert len(sd) == 1
    assert struct.unpack("=9i", bytes(sd[0])) == tv.rotation_matrix(rotation)
    assert side_data_rotation(frame) == rotation
    assert display_rotation(frame) == rotation


def test_header_rotation_needs_a_video_track(tmp_path):
    audio = tv.make_audio_only(tmp_path / "a.m4a")
    with pytest.raises(ValueError, match="no MP4/MOV video track"):
        tv.set_mp4_rotation(audio, 90)


def test_matrix_rotation():
    for r in (0, 90, 180, 270):
        assert matrix_rotation(tv.rotation_matrix(r)) == r
        assert tv.rotation_matrix(r - 360) == tv.rotation_matrix(r)
    # scaled and mirrored matrices: the rotation of the unmirrored part
    assert matrix_rotation([0, -2, 0, 2, 0, 0, 0, 0, 1]) == 90
    assert matrix_rotation([-65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]) == 180  # horizontal flip
    assert matrix_rotation([0] * 9) == 0
    with pytest.raises(ValueError):
        matrix_rotation([1, 0, 0])
    with pytest.raises(ValueError):
        tv.rotation_matrix(45)


class _FrameWithoutRotation:
    """A decoded frame seen through an older PyAV: side data, no ``rotation`` attribute."""

    def __init__(self, frame):
        self.side_data = frame.side_data


@pytest.mark.parametrize("kind", ["rotated90", "rotated270", "rotated180", "h264_bframes"])
def test_rotation_fallback_without_frame_rotation(vdir, kind):
    path = tv.cached_video(kind, vdir)
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frame = next(c.decode(stream))
        expected = tv.KINDS[kind].get("rotation", 0)
        assert display_rotation(frame, stream) == expected
        assert display_rotation(_FrameWithoutRotation(frame), stream) == expected
    assert side_data_rotation(object()) is None


def test_rotation_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="cannot hold a display rotation"):
        tv.make_video(tmp_path / "r.avi", n_frames=2, codec="mjpeg", rotation=90)
    with pytest.raises(ValueError, match="multiple of 90"):
        tv.make_video(tmp_path / "r.mp4", n_frames=2, rotation=45)
    with pytest.raises(ValueError, match="rotation_method"):
        tv.make_video(tmp_path / "r.mp4", n_frames=2, rotation=90, rotation_method="exif")
    if not tv.has_rotation_setter():
        with pytest.raises(ValueError, match="set_display_rotation"):
            tv.make_video(tmp_path / "r.mp4", n_frames=2, rotation=90, rotation_method="stream")


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4"])
def test_constant_quality_encoders_keep_the_pattern_sharp(tmp_path, codec):
    # quality 3 (set through codec options on every PyAV version): mean error about 1.7 of 255;
    # the encoders' defaults give about 3.6
    path = tv.make_video(tmp_path / f"{codec}.avi", n_frames=10, codec=codec)
    frames = load_frames(path, n=10)
    errors = [np.abs(px.astype(int) - tv.frame_pattern(i, 64, 48)).mean() for i, px in enumerate(frames.pixels)]
    assert max(errors) < 2.5


@pytest.mark.parametrize("kind", ["odd_size", "yuv444", "10bit", "mjpeg"])
def test_colour_conversion_and_sizes(vdir, kind):
    path = tv.cached_video(kind, vdir)
    spec = tv.KINDS[kind]
    frames = load_frames(path, n=4)
    w, h = spec["size"]
    assert frames.pixels.shape == (4, h, w, 3)
    for px in frames.pixels:
        assert tv.marker_error(px) < 40, f"colours off in {kind}"


def test_max_side_scales_in_the_decoder(tmp_path):
    path = tv.make_video(tmp_path / "big.mp4", n_frames=12, fps=12, size=(320, 180), gop=6)
    frames = load_frames(path, n=6, max_side=96)
    assert frames.pixels.shape == (6, 54, 96, 3)
    assert tv.frame_numbers(frames.pixels) == frames.indices.tolist()
    assert load_frames(path, n=2, max_side=1000).pixels.shape == (2, 180, 320, 3)  # never upscaled
    with pytest.raises(ConfigError):
        load_frames(path, max_side=0)


def test_one_frame_video(vdir):
    path = tv.cached_video("one_frame", vdir)
    frames = load_frames(path)
    assert len(frames) == 1 and frames.indices.tolist() == [0]
    assert frames.timestamps.tolist() == [0.0]
    assert frames.duration == pytest.approx(0.04)
    assert frames.fps == pytest.approx(25)


def test_short_video_gives_every_frame_once(vdir):
    path = tv.cached_video("rotated180", vdir)  # 40 frames < 96
    frames = load_frames(path)
    assert frames.indices.tolist() == list(range(40))
    frames = load_frames(path, n=500)
    assert frames.indices.tolist() == list(range(40))


def test_sampling_options_and_explicit_indices(vdir):
    path = tv.cached_video("h264_bframes", vdir)
    assert len(load_frames(path, max_frames=10)) == 10
    assert len(load_frames(path, base=20)) == 20
    assert len(load_frames(path, max_fps=2)) == 24  # 12 s
    frames = load_frames(path, indices=[250, 3, 250, 17])
    assert frames.indices.tolist() == [250, 3, 250, 17]
    assert tv.frame_numbers(frames.pixels) == [250, 3, 250, 17]
    with pytest.raises(ConfigError):
        load_frames(path, indices=[300])
    with pytest.raises(ConfigError):
        load_frames(path, n=4, base=3)
    with pytest.raises(ConfigError):
        load_frames(path, fps_cap=2)
    with pytest.raises(ConfigError):
        load_frames(path, backend="opencv")


def test_time_prompt_and_metadata(vdir):
    path = tv.cached_video("h264_bframes", vdir)
    frames = load_frames(path, n=3)
    assert frames.duration == pytest.approx(12.0)
    assert frames.fps == 25.0
    assert frames.timestamps.tolist() == pytest.approx([0.0, 5.96, 11.96])
    text = frames.time_prompt()
    assert "lasts for 12.00 seconds" in text and "at 0.00s,5.96s,11.96s." in text and "3 frames" in text


def test_sample_video_is_made_once():
    a = tv.sample_video("mjpeg")
    assert tv.sample_video("mjpeg") == a and a.exists()
    assert len(load_frames(a, n=3)) == 3


def test_package_level_lazy_import():
    assert quota.load_frames is load_frames


def test_audio_stream_is_ignored(vdir):
    path = tv.cached_video("with_audio", vdir)
    frames = load_frames(path, n=5)
    assert_exact(frames, path)


def test_index_is_cached_and_refreshed(tmp_path):
    path = tv.make_video(tmp_path / "c.mp4", n_frames=10, fps=10)
    a = probe(path)
    assert probe(path) is a
    tv.make_video(path, n_frames=20, fps=10)
    b = probe(path)
    assert b is not a and b.n_frames == 20
    clear_cache()
    assert probe(path) is not b


# --- bad input: typed errors that name the file ---------------------------------------------------


def _raises(exc_type, path, **kwargs):
    with pytest.raises(exc_type) as info:
        load_frames(path, **kwargs)
    err = info.value
    assert isinstance(err, QuotaError)
    assert str(path) in str(err)
    assert "Traceback" not in str(err)
    return err


def test_missing_file(tmp_path):
    err = _raises(VideoNotFoundError, tmp_path / "nope.mp4")
    assert isinstance(err, FileNotFoundError) and "not found" in str(err)


def test_directory(tmp_path):
    # a folder is read as frame images (quota.video.frame_folder); one without images is a clear error,
    # while probe() still wants a file
    err = _raises(VideoError, tmp_path)
    assert "no frame images" in str(err)
    with pytest.raises(VideoNotFoundError, match="directory"):
        probe(tmp_path)


def test_text_file_named_mp4(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 20)
    err = _raises(VideoDecodeError, path)
    assert "cannot be opened" in str(err)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    _raises(VideoDecodeError, path)


def test_truncated_mp4(vdir, tmp_path):
    # PyAV writes the mp4 index at the end: half a file has no index at all.
    src = tv.cached_video("h264_bframes", vdir)
    _raises(VideoDecodeError, tv.truncate_file(src, tmp_path / "half.mp4", 0.5))


def _tolerant_decode(path) -> dict[int, np.ndarray]:
    """pts -> RGB of every frame a plain decode gets out of a damaged file."""
    out = {}
    with av.open(str(path)) as c:
        for pkt in c.demux(video=0):
            try:
                for f in pkt.decode():
                    out[f.pts] = f.to_ndarray(format="rgb24")
            except av.FFmpegError:
                pass
    return out


@pytest.mark.parametrize("name, fraction", [("half.mkv", 0.6), ("most.mkv", 0.95), ("faststart.mp4", 0.5)])
def test_truncated_file_reads_what_is_left(tmp_path, name, fraction):
    """A file cut short but still openable (Matroska, or MP4 with its index first) gives the frames
    that are left, the same ones a plain decode gets."""
    src = tv.make_video(tmp_path / f"full{name[-4:]}", n_frames=200, fps=25, gop=50, bframes=3,
                        preset="veryfast", faststart=True)
    path = tv.truncate_file(src, tmp_path / name, fraction)
    index = probe(path)
    assert 0 < index.n_frames < 200
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a frame cut in the middle may be left out
        frames = load_frames(path)
    ref = _tolerant_decode(path)
    assert len(frames) >= min(96, index.n_frames) - 1
    for j, k in enumerate(frames.indices):
        np.testing.assert_array_equal(frames.pixels[j], ref[int(index.pts[k])])
    # frames cut off at the end shift nothing before them
    early = frames.indices[frames.indices < index.n_frames - 10]
    assert tv.frame_numbers(frames.pixels[: len(early)]) == early.tolist()


def test_truncated_to_the_header_only(vdir, tmp_path):
    src = tv.cached_video("h264_mkv", vdir)
    path = tv.truncate_file(src, tmp_path / "head.mkv", 0.02)
    _raises(VideoDecodeError, path)  # EmptyVideoError or a decode error: both VideoDecodeError


def test_audio_only(tmp_path):
    path = tv.make_audio_only(tmp_path / "sound.m4a")
    err = _raises(NoVideoStreamError, path)
    assert "no video stream" in str(err) and "audio" in str(err)


def test_zero_frame_stream(tmp_path):
    path = tv.make_empty_video(tmp_path / "zero.avi")
    assert len(av.open(str(path)).streams.video) == 1  # the stream is there, without frames
    err = _raises(EmptyVideoError, path)
    assert "no frames" in str(err)


@pytest.mark.parametrize("ext", ["mkv", "mp4", "webm"])
def test_containers_without_frames(tmp_path, ext):
    path = tv.make_empty_video(tmp_path / f"zero.{ext}", codec="libvpx-vp9" if ext == "webm" else "libx264")
    _raises(EmptyVideoError, path)


def test_wrong_frame_count_in_header(vdir, tmp_path):
    src = tv.cached_video("mjpeg", vdir)  # 100 frames
    path = tv.avi_with_wrong_count(src, tmp_path / "lying.avi", reported=250)
    index = probe(path)
    assert index.n_frames == 100
    frames = load_frames(path, n=5)
    assert frames.indices.tolist() == [0, 24, 49, 74, 99]
    assert tv.frame_numbers(frames.pixels) == [0, 24, 49, 74, 99]


def test_ten_hour_video_decodes_only_sampled_frames(tmp_path):
    # 10 h at one frame every 10 s in MJPEG (every frame a keyframe): 3,600 frames, tiny and quick to write;
    # the 736 sampled frames are a fifth of them.
    path = tv.make_video(tmp_path / "long.avi", n_frames=3_600, fps=0.1, size=(48, 32), codec="mjpeg")
    stats = DecodeStats()
    frames = load_frames(path, stats=stats)
    assert len(frames) == 96 + 640
    assert frames.duration == pytest.approx(36_000.0)
    assert stats.decoded == len(frames)  # nothing but the sampled frames was decoded
    assert frames.pixels.nbytes == len(frames) * 32 * 48 * 3
    assert tv.frame_numbers(frames.pixels[::37]) == frames.indices[::37].tolist()


# --- decord backend ---------------------------------------------------------------------------------

def _have_decord() -> bool:
    try:
        import decord  # noqa: F401
    except Exception:
        return False
    return True


needs_decord = pytest.mark.skipif(not _have_decord(), reason="decord is not installed")


@needs_decord
@pytest.mark.parametrize("kind", ["h264_bframes", "h264_mkv", "vp9", "mjpeg", "yuv444", "vfr", "with_audio", "10bit",
                                  "odd_size"])
def test_decord_gives_the_same_pixels(vdir, kind):
    path = tv.cached_video(kind, vdir)
    total = probe(path).n_frames
    want = sorted(set(np.random.default_rng(0).choice(total, size=9, replace=False).tolist()) | {0, total - 1})
    a = load_frames(path, indices=want, backend="pyav")
    stats = DecodeStats()
    b = load_frames(path, indices=want, backend="decord", stats=stats)
    assert stats.backend == "decord"
    np.testing.assert_array_equal(a.pixels, b.pixels)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)


@needs_decord
@pytest.mark.parametrize("kind, reason", [("rotated90", "rotated"), ("hevc", "B-frames"),
                                          ("mpeg4_avi", "B-frames"), ("h264_ts", "B-frames"),
                                          ("open_gop", "open GOP"), ("h264_raw", "no timestamps")])
def test_decord_falls_back_where_it_is_not_exact(vdir, kind, reason):
    path = tv.cached_video(kind, vdir)
    stats = DecodeStats()
    with pytest.warns(RuntimeWarning, match=reason):
        frames = load_frames(path, n=5, backend="decord", stats=stats)
    assert stats.backend == "pyav"
    assert_exact(frames, path)


def test_build_index_counts_packets_not_headers(vdir):
    path = tv.cached_video("h264_mkv", vdir)  # Matroska reports no frame count
    index = build_index(path)
    assert index.reported_frames == 0
    assert index.n_frames == 200
    assert index.n_keyframes == 4


def test_demo_video_command_writes_a_ball_moving_right(tmp_path, capsys):
    from quota.testing.videos import main

    out = tmp_path / "sample.mp4"
    assert main([str(out), "--seconds", "2", "--fps", "10"]) == 0
    assert "20 frames" in capsys.readouterr().out
    frames = load_frames(out, n=3)
    red = (frames.pixels[..., 0] > 180) & (frames.pixels[..., 1] < 80)
    xs = [np.nonzero(mask)[1].mean() for mask in red]
    assert xs[0] < xs[1] < xs[2]
