"""Tests of speech/server.py that need no Whisper model: WAV decoding and
resampling, multipart parsing, voice mapping, and the HTTP layer (with a
stand-in transcriber and the real espeak-ng).

Run: speech/.venv/bin/python -m unittest speech/test_server.py -v
"""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import sys
import threading
import unittest
import wave

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import server  # noqa: E402


def wav_of(samples: np.ndarray, rate: int, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.astype("<i2").tobytes())
    return out.getvalue()


def tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * 10_000).astype(np.int16)


class StandInTranscriber:
    """Reports what it was given instead of running Whisper."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, str, str | None]] = []

    def transcribe(self, audio: np.ndarray, language: str, prompt: str | None):
        self.calls.append((len(audio), language, prompt))
        text = f"{len(audio)} samples"
        return text, [{"id": 0, "start": 0.0, "end": len(audio) / 16_000, "text": text}]


class DecodeTests(unittest.TestCase):
    def test_8k_is_resampled_to_16k_keeping_the_tone(self):
        audio, duration = server.decode_wav(wav_of(tone(440, 8_000, 1.0), 8_000))
        self.assertEqual(len(audio), 16_000)
        self.assertAlmostEqual(duration, 1.0)
        peak_hz = np.argmax(np.abs(np.fft.rfft(audio))) * 16_000 / len(audio)
        self.assertAlmostEqual(peak_hz, 440, delta=2)
        self.assertAlmostEqual(float(np.max(np.abs(audio))), 10_000 / 32_768, delta=0.02)

    def test_stereo_is_averaged_to_mono(self):
        left = tone(300, 16_000, 0.5)
        stereo = np.stack([left, np.zeros_like(left)], axis=1).reshape(-1)
        audio, _ = server.decode_wav(wav_of(stereo, 16_000, channels=2))
        self.assertEqual(len(audio), len(left))
        np.testing.assert_allclose(audio, left.astype(np.float32) / 32_768 / 2, atol=1e-6)

    def test_not_a_wav_is_a_400(self):
        with self.assertRaises(server.ApiError) as ctx:
            server.decode_wav(b"ID3 this is an mp3")
        self.assertEqual(ctx.exception.status, 400)

    def test_language_tags(self):
        self.assertEqual(server.normalize_language("en-US"), "en")
        self.assertEqual(server.normalize_language(None), "en")
        with self.assertRaises(server.ApiError):
            server.normalize_language("fr")

    def test_voices(self):
        self.assertEqual(server.resolve_voice("alloy"), "en-us")
        self.assertEqual(server.resolve_voice("nova"), "en-us+f3")
        self.assertEqual(server.resolve_voice("en-gb"), "en-gb")
        with self.assertRaises(server.ApiError):
            server.resolve_voice("en; rm -rf /")


@unittest.skipIf(shutil.which("espeak-ng") is None, "espeak-ng missing: run scripts/install-speech")
class HttpTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.transcriber = StandInTranscriber()
        cls.srv = server.SpeechServer(("127.0.0.1", 0), cls.transcriber, shutil.which("espeak-ng"))
        cls.port = cls.srv.server_address[1]
        cls.thread = threading.Thread(target=cls.srv.serve_forever, daemon=True)
        cls.thread.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.shutdown()
        cls.srv.server_close()

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp, data

    def multipart(self, fields):
        boundary = "xXxBoundaryxXx"
        parts = []
        for name, value, filename in fields:
            disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
            parts.append(f"--{boundary}\r\nContent-Disposition: {disp}\r\n\r\n".encode() + value + b"\r\n")
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def test_health(self):
        resp, data = self.request("GET", "/health")
        self.assertEqual(resp.status, 200)
        self.assertEqual(json.loads(data), {"status": "ok", "stt": "whisper-tiny.en", "tts": "espeak-ng"})

    def test_transcription_formats(self):
        wav = wav_of(tone(200, 8_000, 0.5), 8_000)
        for fmt, check in [
            ("json", lambda d: self.assertEqual(json.loads(d), {"text": "8000 samples"})),
            ("text", lambda d: self.assertEqual(d, b"8000 samples")),
            ("verbose_json", lambda d: self.assertEqual(json.loads(d)["duration"], 0.5)),
        ]:
            body, headers = self.multipart(
                [("file", wav, "a.wav"), ("model", b"whisper-1", None), ("response_format", fmt.encode(), None)]
            )
            resp, data = self.request("POST", "/v1/audio/transcriptions", body, headers)
            self.assertEqual(resp.status, 200, data)
            check(data)

    def test_transcription_errors_are_openai_shaped(self):
        body, headers = self.multipart([("model", b"whisper-1", None)])
        resp, data = self.request("POST", "/v1/audio/transcriptions", body, headers)
        self.assertEqual(resp.status, 400)
        self.assertEqual(json.loads(data)["error"]["code"], "missing_file")

        body, headers = self.multipart([("file", b"x" * 100, "a.wav")])
        resp, data = self.request("POST", "/v1/audio/transcriptions", body, headers)
        self.assertEqual(resp.status, 400)
        self.assertEqual(json.loads(data)["error"]["type"], "invalid_request_error")

        too_big = {"Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(26 * 1024 * 1024)}
        resp, data = self.request("POST", "/v1/audio/transcriptions", b"", too_big)
        self.assertEqual(resp.status, 400)
        self.assertEqual(json.loads(data)["error"]["code"], "file_too_large")

    def test_speech_pcm_is_chunked_with_its_rate(self):
        req = json.dumps({"model": "tts-1", "input": "Hello there", "voice": "alloy", "response_format": "pcm"})
        resp, data = self.request("POST", "/v1/audio/speech", req, {"Content-Type": "application/json"})
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        self.assertEqual(resp.getheader("X-Sample-Rate"), "22050")
        self.assertEqual(len(data) % 2, 0)
        pcm = np.frombuffer(data, dtype="<i2")
        self.assertGreater(np.count_nonzero(np.abs(pcm) > 500), 22_050 * 0.1)

    def test_speech_wav_and_speed(self):
        def seconds(speed):
            req = json.dumps({"input": "one two three four five", "response_format": "wav", "speed": speed})
            resp, data = self.request("POST", "/v1/audio/speech", req)
            self.assertEqual(resp.status, 200)
            with wave.open(io.BytesIO(data)) as w:
                self.assertEqual((w.getnchannels(), w.getsampwidth(), w.getframerate()), (1, 2, 22_050))
                return w.getnframes() / w.getframerate()

        self.assertGreater(seconds(0.5), seconds(2.0))

    def test_speech_errors(self):
        for body, code in [
            ("not json", "invalid_json"),
            (json.dumps({"input": ""}), "invalid_input"),
            (json.dumps({"input": "x" * 4097}), "input_too_long"),
            (json.dumps({"input": "hi", "response_format": "mp3"}), "unsupported_format"),
            (json.dumps({"input": "hi", "voice": "zzqq"}), "synthesis_failed"),
        ]:
            resp, data = self.request("POST", "/v1/audio/speech", body)
            self.assertEqual(resp.status, 400, body)
            self.assertEqual(json.loads(data)["error"]["code"], code, body)


if __name__ == "__main__":
    unittest.main()
