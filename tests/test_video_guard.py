"""What quota reads as a video, and for how long (quota.video.guard): playlists, concat lists and formats off
the allow-list are refused before FFmpeg reads them; indexing and decoding stop at their bounds with one line."""

from __future__ import annotations

import pytest

from quota.cli import main
from quota.errors import VideoLimitError, VideoSourceError
from quota.testing.videos import make_video
from quota.video import clear_cache, guard, load_frames, probe

# A refused input must fail at once; before the guard these waited for ever (a live playlist) or looped
# with memory growing (a concat list that includes itself). The timeout turns a hang into a failure.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _fresh_index_cache():
    clear_cache()
    yield
    clear_cache()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("guard") / "clip.mp4", n_frames=30, fps=10, size=(64, 48))


def _inputs(folder):
    """Files FFmpeg would follow somewhere else, each under a name that looks like a video."""
    live = folder / "live.m3u8"  # a live playlist: no segment yet, no end tag, so FFmpeg keeps waiting
    live.write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n")
    itself = folder / "loop.m3u8"  # a playlist whose only entry is itself
    itself.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nloop.m3u8\n#EXT-X-ENDLIST\n")
    concat = folder / "movie.mp4"  # an ffconcat list named .mp4 that includes itself
    concat.write_text("ffconcat version 1.0\nfile movie.mp4\nfile movie.mp4\n")
    bare = folder / "bare.mkv"  # a concat list without its header line
    bare.write_text("file 'bare.mkv'\nfile 'bare.mkv'\n")
    return {"live": live, "loop": itself, "concat": concat, "bare": bare}


def test_playlists_and_concat_lists_are_refused_before_reading(tmp_path):
    for name, path in _inputs(tmp_path).items():
        with pytest.raises(VideoSourceError) as info:
            probe(path)
        assert "not a video file" in str(info.value), name


def test_a_format_off_the_allow_list_is_refused(tmp_path):
    from PIL import Image

    picture = tmp_path / "still.mp4"  # a PNG picture: FFmpeg opens it with its image demuxer
    Image.new("RGB", (32, 32), "red").save(picture, format="PNG")
    with pytest.raises(VideoSourceError, match="not in a video format quota reads"):
        probe(picture)
    assert guard.is_allowed("mov,mp4,m4a,3gp,3g2,mj2") and guard.is_allowed("matroska,webm")
    assert not guard.is_allowed("hls") and not guard.is_allowed("concat") and not guard.is_allowed("png_pipe")


def test_the_command_line_fails_with_one_line_on_a_live_playlist(tmp_path, capsys):
    live = _inputs(tmp_path)["live"]
    assert main(["plan", str(live), "what?", "--scorer", "uniform", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("quota: error:") and "HLS playlist" in err[0]


def test_the_bounds_stop_a_read_with_one_line(clip, monkeypatch, capsys):
    assert probe(clip).n_frames == 30  # within the default bounds
    clear_cache()
    monkeypatch.setattr(guard, "LIMITS", guard.Limits(max_packets=10))
    with pytest.raises(VideoLimitError, match="more than 10 packets"):
        probe(clip)
    assert main(["plan", str(clip), "what?", "--scorer", "uniform", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "max_packets" in err[0]

    monkeypatch.setattr(guard, "LIMITS", guard.Limits(probe_s=0.0))
    with pytest.raises(VideoLimitError, match="indexing the video took longer than 0 s"):
        probe(clip)
    monkeypatch.setattr(guard, "LIMITS", guard.Limits())
    probe(clip)  # indexed (and cached) within the bounds; now only the decoding is bounded to nothing
    monkeypatch.setattr(guard, "LIMITS", guard.Limits(decode_s=0.0))
    with pytest.raises(VideoLimitError, match="decoding the frames took longer than 0 s"):
        load_frames(clip, n=4)
