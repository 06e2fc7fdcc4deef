"""Memory follows samples, not seconds: the server configured as the CPU overlay deploys it
(knative/overlays/cpu/service-patch.yaml) decodes audio at the highest rate FLAC allows, with its
most channels, at the overlay's longest duration, and its peak RSS stays well inside the pod's
memory limit. And a client that declares a huge body and sends it slowly does not take the
body memory of everyone else."""

import re
import threading
import time
from functools import lru_cache

import pytest
import yaml

from conftest import REPO, reference_text
from test_hostile import S01, MemoryCap, ce_binary_headers, crc8, crc16, flac_utf8, post_audio, read_answer, serving, start_request, vm_hwm

MiB = 1024 * 1024
OVERLAY = REPO / "knative" / "overlays" / "cpu" / "service-patch.yaml"
# FLAC's largest rate (a 20-bit field, capped by the format at 655350 Hz) and channel count.
FLAC_MAX_RATE, FLAC_MAX_CHANNELS = 655_350, 8
# The peak RSS this test allows one maximal request, whatever its rate and channels: the model,
# the request's 16 kHz samples and its log-mel spectrogram (README, TINGXIE_MAX_AUDIO_SECONDS),
# with room for the allocator; under half the CPU pod's 1.5 GiB, so that the pod's second request
# fits beside it.
PEAK_LIMIT = 640 * MiB


def quantity(text: str) -> int:
    """A Kubernetes memory quantity (1536Mi, 4Gi, 2G) in bytes."""
    number, unit = re.fullmatch(r"(\d+)([KMGT]i?)?", text).groups()
    scale = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    return int(number) * scale[unit]


@lru_cache(maxsize=None)
def cpu_overlay() -> tuple:
    """The overlay's tingxie environment and the pod's memory limit in bytes."""
    env, memory = {}, None
    for op in yaml.safe_load(OVERLAY.read_text()):
        if op["path"].endswith("/env/-") and op["value"]["name"].startswith("TINGXIE_"):
            env[op["value"]["name"]] = op["value"]["value"]
        elif op["path"].endswith("/containers/0/resources"):
            memory = quantity(op["value"]["limits"]["memory"])
    return env, memory


@lru_cache(maxsize=None)
def constant_flac(rate: int, channels: int, seconds: float, declared: bool = True) -> bytes:
    """16-bit FLAC of `channels` channels at `rate` holding silence (CONSTANT subframes, 65535
    frames each: minutes of audio per kilobyte); STREAMINFO gives the length, or 0 (unknown)."""
    block, total = 65535, round(rate * seconds)
    streaminfo = block.to_bytes(2, "big") * 2 + b"\0" * 6  # min/max block size; frame sizes unknown
    fields = (rate << 44) | ((channels - 1) << 41) | (15 << 36) | (total if declared else 0)
    streaminfo += fields.to_bytes(8, "big") + b"\0" * 16  # MD5 unknown
    out = [b"fLaC", bytes([0x80, 0, 0, len(streaminfo)]), streaminfo]
    for i in range(-(-total // block)):
        n = min(block, total - i * block)
        # Block size in 16 bits after the number (code 7), rate from STREAMINFO, independent
        # channels, 16 bits per sample.
        head = bytes([0xFF, 0xF8, 0x70, ((channels - 1) << 4) | 0x08]) + flac_utf8(i) + (n - 1).to_bytes(2, "big")
        head += bytes([crc8(head)])
        frame = head + b"\x00\x00\x00" * channels
        out.append(frame + crc16(frame).to_bytes(2, "big"))
    return b"".join(out)


def cpu_server(tmp_path, moto):
    env, _ = cpu_overlay()
    return serving(tmp_path, moto, **env)


def test_the_longest_audio_at_the_highest_rate_stays_well_inside_the_cpu_pod(tmp_path, moto, s3):
    env, pod_limit = cpu_overlay()
    seconds = float(env["TINGXIE_MAX_AUDIO_SECONDS"])
    assert PEAK_LIMIT < pod_limit / 2
    audio = constant_flac(FLAC_MAX_RATE, FLAC_MAX_CHANNELS, seconds)
    assert len(audio) < 2 * MiB  # 20 minutes at 655 kHz in a small upload
    with cpu_server(tmp_path, moto) as srv:
        with MemoryCap(srv, pod_limit):
            r = post_audio(srv, audio, timeout=600, **{"content-type": "audio/flac"})
        assert r.status_code == 200, r.text  # (tiny.en hears "You" in silence)
        peak = vm_hwm(srv.proc.pid)
        print(f"peak RSS {peak / MiB:.0f} MiB for {seconds:g} s at {FLAC_MAX_RATE} Hz x {FLAC_MAX_CHANNELS}")
        assert peak < PEAK_LIMIT, f"peak RSS {peak / MiB:.0f} MiB, over {PEAK_LIMIT / MiB:.0f} MiB"


# 654999 Hz shares no factor with 16 kHz: the resampler's smallest exact block is a second of
# input, its largest FFT.
@pytest.mark.parametrize("rate", [FLAC_MAX_RATE, 654_999])
@pytest.mark.parametrize("declared", [False, True], ids=["length unknown", "length a lie"])
def test_audio_past_the_limit_is_refused_from_its_samples_within_the_bound(tmp_path, moto, s3, declared, rate):
    env, pod_limit = cpu_overlay()
    seconds = float(env["TINGXIE_MAX_AUDIO_SECONDS"])
    if declared:
        # STREAMINFO declares one second; the frames go on for longer than the limit.
        audio = constant_flac(rate, FLAC_MAX_CHANNELS, 1.0)[:42] + constant_flac(rate, FLAC_MAX_CHANNELS, seconds + 60)[42:]
    else:
        audio = constant_flac(rate, FLAC_MAX_CHANNELS, seconds + 60, declared=False)
    with cpu_server(tmp_path, moto) as srv:
        with MemoryCap(srv, pod_limit):
            r = post_audio(srv, audio, timeout=300, **{"content-type": "audio/flac"})
        assert r.status_code == 413, r.text
        assert "TINGXIE_MAX_AUDIO_SECONDS" in r.json()["error"]["message"], r.text
        peak = vm_hwm(srv.proc.pid)
        assert peak < PEAK_LIMIT, f"peak RSS {peak / MiB:.0f} MiB, over {PEAK_LIMIT / MiB:.0f} MiB"
        print(f"peak RSS {peak / MiB:.0f} MiB refusing {seconds + 60:g} s at {rate} Hz x {FLAC_MAX_CHANNELS}")
        assert post_audio(srv).status_code == 200  # and the server is fine


def test_a_slow_client_declaring_the_largest_event_leaves_body_memory_to_others(tmp_path, moto, s3):
    # The defaults: a body budget of one largest event, read and parsed.
    with serving(tmp_path, moto) as srv:
        largest = 100 * MiB // 3 * 4 + 64 * 1024
        slow = start_request(srv.port, "/", ce_binary_headers(), largest, b'{"audio": "')
        stop = threading.Event()

        def trickle():
            while not stop.wait(0.5):
                slow.sendall(b"A" * 1024)

        sender = threading.Thread(target=trickle, daemon=True)
        sender.start()
        try:
            time.sleep(1)
            for _ in range(3):
                r = post_audio(srv, S01)
                assert r.status_code == 200, r.text
                assert r.json()["text"] == reference_text("s01.wav")
            # The slow body is still being read, not refused.
            assert read_answer(slow, 0.1) is None
        finally:
            stop.set()
            sender.join()
            slow.close()
