//! WAV (RIFF, 16-bit PCM) writing and reading for call recordings and fixtures.
//!
//! [`StereoRecorder`] builds a two-channel recording of a call: caller on the left,
//! bot on the right, each placed at its stream timestamp, so the two sides stay
//! time-aligned; gaps are filled with silence and a late or repeated timestamp
//! overwrites what was there. Memory is bounded by `max_duration_ms`: audio past
//! it is refused with a typed error instead of growing without limit.
//!
//! [`read_mono`] parses a mono 16-bit PCM WAV at any sample rate, walking the RIFF
//! chunks (it does not assume a 44-byte header) and tolerating the over-long `data`
//! size that streaming writers leave. [`write_mono`] writes one.
//!
//! Recording is not on the per-frame hot path budget: pushes copy samples into
//! preallocated-as-needed vectors (amortised growth).

use std::io::{self, Write};

/// Why a WAV could not be read or a recording extended.
#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("not a RIFF/WAVE file")]
    NotWave,
    #[error("missing `{0}` chunk")]
    MissingChunk(&'static str),
    #[error("unsupported format: {0}")]
    Unsupported(String),
    #[error("audio at {at_ms} ms is past the {max_ms} ms recording limit")]
    TooLong { at_ms: u64, max_ms: u64 },
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Mono 16-bit PCM audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonoWav {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

impl MonoWav {
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(self.sample_rate.max(1))
    }
}

const FORMAT_PCM: u16 = 1;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parse a mono, 16-bit PCM WAV.
pub fn read_mono(bytes: &[u8]) -> Result<MonoWav, WavError> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    let mut pos = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4).ok_or(WavError::NotWave)? as usize;
        let body = pos + 8;
        match id {
            b"fmt " => {
                let f = bytes
                    .get(body..body + size.min(40))
                    .ok_or(WavError::MissingChunk("fmt "))?;
                let mut tag = u16_at(f, 0).ok_or(WavError::MissingChunk("fmt "))?;
                if tag == FORMAT_EXTENSIBLE {
                    // The real format is the first two bytes of the SubFormat GUID.
                    tag = u16_at(f, 24).ok_or_else(|| WavError::Unsupported("truncated extensible fmt".into()))?;
                }
                let channels = u16_at(f, 2).ok_or(WavError::MissingChunk("fmt "))?;
                let rate = u32_at(f, 4).ok_or(WavError::MissingChunk("fmt "))?;
                let bits = u16_at(f, 14).ok_or(WavError::MissingChunk("fmt "))?;
                format = Some((tag, channels, rate, bits));
            }
            b"data" => {
                let (tag, channels, sample_rate, bits) = format.ok_or(WavError::MissingChunk("fmt "))?;
                if tag != FORMAT_PCM || bits != 16 || channels != 1 || sample_rate == 0 {
                    return Err(WavError::Unsupported(format!(
                        "format tag {tag}, {bits} bits, {channels} channels, {sample_rate} Hz (need PCM 16-bit mono)"
                    )));
                }
                // Streaming writers put a placeholder size (0 or 0xFFFFFFFF): take what is there.
                let end = if size == 0 {
                    bytes.len()
                } else {
                    body.saturating_add(size).min(bytes.len())
                };
                let data = &bytes[body..end];
                let samples = data.chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect();
                return Ok(MonoWav { sample_rate, samples });
            }
            _ => {}
        }
        // Chunks are padded to an even size.
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    Err(WavError::MissingChunk(if format.is_some() { "data" } else { "fmt " }))
}

fn write_header(w: &mut impl Write, sample_rate: u32, channels: u16, data_bytes: u32) -> io::Result<()> {
    let block_align = channels * 2;
    w.write_all(b"RIFF")?;
    w.write_all(&(36u32.saturating_add(data_bytes)).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&FORMAT_PCM.to_le_bytes())?;
    w.write_all(&channels.to_le_bytes())?;
    w.write_all(&sample_rate.to_le_bytes())?;
    w.write_all(&(sample_rate * u32::from(block_align)).to_le_bytes())?;
    w.write_all(&block_align.to_le_bytes())?;
    w.write_all(&16u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data_bytes.to_le_bytes())
}

fn data_size(samples: usize) -> io::Result<u32> {
    u32::try_from(samples * 2)
        .ok()
        .filter(|&n| n <= u32::MAX - 36)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "audio too long for a WAV file"))
}

/// Write `samples` as a mono 16-bit PCM WAV.
pub fn write_mono(mut w: impl Write, sample_rate: u32, samples: &[i16]) -> io::Result<()> {
    write_header(&mut w, sample_rate, 1, data_size(samples.len())?)?;
    let mut buf = Vec::with_capacity(samples.len() * 2);
    for s in samples {
        buf.extend_from_slice(&s.to_le_bytes());
    }
    w.write_all(&buf)
}

/// Which side of the call a sample belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller (left channel).
    Caller,
    /// The bot (right channel).
    Bot,
}

/// Two-channel call recording, time-aligned by stream timestamps.
#[derive(Debug, Clone)]
pub struct StereoRecorder {
    sample_rate: u32,
    max_samples: usize,
    max_ms: u64,
    caller: Vec<i16>,
    bot: Vec<i16>,
}

impl StereoRecorder {
    /// A recorder at `sample_rate` (8000 for phone audio) holding at most `max_duration_ms`.
    pub fn new(sample_rate: u32, max_duration_ms: u64) -> Self {
        let max_samples =
            usize::try_from(max_duration_ms.saturating_mul(u64::from(sample_rate)) / 1000).unwrap_or(usize::MAX);
        Self {
            sample_rate,
            max_samples,
            max_ms: max_duration_ms,
            caller: Vec::new(),
            bot: Vec::new(),
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Length of the recording so far (the longer side).
    pub fn duration_ms(&self) -> u64 {
        self.caller.len().max(self.bot.len()) as u64 * 1000 / u64::from(self.sample_rate.max(1))
    }

    /// Place `pcm` for `side` starting at stream time `at_ms`. Audio that would run
    /// past the limit is refused whole.
    pub fn push(&mut self, side: Side, at_ms: u64, pcm: &[i16]) -> Result<(), WavError> {
        let start = usize::try_from(at_ms.saturating_mul(u64::from(self.sample_rate)) / 1000).unwrap_or(usize::MAX);
        let end = start.saturating_add(pcm.len());
        if end > self.max_samples {
            return Err(WavError::TooLong {
                at_ms,
                max_ms: self.max_ms,
            });
        }
        let track = match side {
            Side::Caller => &mut self.caller,
            Side::Bot => &mut self.bot,
        };
        if track.len() < end {
            track.resize(end, 0);
        }
        track[start..end].copy_from_slice(pcm);
        Ok(())
    }

    /// Same as [`StereoRecorder::push`] for μ-law bytes (as they travel on the wire).
    pub fn push_ulaw(&mut self, side: Side, at_ms: u64, ulaw: &[u8]) -> Result<(), WavError> {
        let mut pcm = [0i16; 320];
        let mut at = at_ms;
        for part in ulaw.chunks(pcm.len()) {
            let n = crate::ulaw::decode_into(part, &mut pcm);
            self.push(side, at, &pcm[..n])?;
            at += n as u64 * 1000 / u64::from(self.sample_rate.max(1));
        }
        Ok(())
    }

    /// Write the recording as a stereo WAV (left = caller, right = bot).
    pub fn write_wav(&self, mut w: impl Write) -> io::Result<()> {
        let frames = self.caller.len().max(self.bot.len());
        write_header(&mut w, self.sample_rate, 2, data_size(frames * 2)?)?;
        let mut buf = Vec::with_capacity(frames * 4);
        for i in 0..frames {
            buf.extend_from_slice(&self.caller.get(i).copied().unwrap_or(0).to_le_bytes());
            buf.extend_from_slice(&self.bot.get(i).copied().unwrap_or(0).to_le_bytes());
        }
        w.write_all(&buf)
    }

    pub fn to_wav_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing into a Vec cannot fail except for the size check, which `new`'s limit
        // keeps far away (u32 bytes is over 37 hours of 8 kHz stereo).
        if self.write_wav(&mut out).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Split a stereo 16-bit WAV written by this module into its two channels.
    fn split_stereo(bytes: &[u8]) -> (u32, Vec<i16>, Vec<i16>) {
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u16_at(bytes, 22), Some(2));
        let rate = u32_at(bytes, 24).unwrap();
        let size = u32_at(bytes, 40).unwrap() as usize;
        assert_eq!(u32_at(bytes, 4).unwrap() as usize, 36 + size);
        let data = &bytes[44..44 + size];
        let mut l = Vec::new();
        let mut r = Vec::new();
        for f in data.chunks_exact(4) {
            l.push(i16::from_le_bytes([f[0], f[1]]));
            r.push(i16::from_le_bytes([f[2], f[3]]));
        }
        (rate, l, r)
    }

    #[test]
    fn stereo_recording_aligns_sides_by_timestamp_and_fills_gaps() {
        let mut rec = StereoRecorder::new(8000, 60_000);
        rec.push(Side::Caller, 0, &[100; 160]).unwrap();
        rec.push(Side::Caller, 40, &[200; 160]).unwrap(); // 20 ms gap
        rec.push(Side::Bot, 20, &[-300; 160]).unwrap();
        assert_eq!(rec.duration_ms(), 60);
        let (rate, l, r) = split_stereo(&rec.to_wav_bytes());
        assert_eq!(rate, 8000);
        assert_eq!(l.len(), 480);
        assert_eq!(r.len(), 480);
        assert!(l[..160].iter().all(|&s| s == 100));
        assert!(l[160..320].iter().all(|&s| s == 0), "gap is silence");
        assert!(l[320..].iter().all(|&s| s == 200));
        assert!(r[..160].iter().all(|&s| s == 0));
        assert!(r[160..320].iter().all(|&s| s == -300));
        assert!(r[320..].iter().all(|&s| s == 0), "shorter side padded");
    }

    #[test]
    fn ulaw_pushes_decode_and_advance_time() {
        let mut rec = StereoRecorder::new(8000, 10_000);
        rec.push_ulaw(Side::Bot, 100, &[crate::ulaw::encode(1000); 800])
            .unwrap();
        let (_, l, r) = split_stereo(&rec.to_wav_bytes());
        assert_eq!(r.len(), 800 + 800);
        assert!(r[..800].iter().all(|&s| s == 0));
        let expect = crate::ulaw::decode(crate::ulaw::encode(1000));
        assert!(r[800..].iter().all(|&s| s == expect));
        assert!(l.iter().all(|&s| s == 0));
    }

    #[test]
    fn recording_limit_is_enforced() {
        let mut rec = StereoRecorder::new(8000, 1000);
        assert!(rec.push(Side::Caller, 980, &[1; 160]).is_ok());
        assert!(matches!(
            rec.push(Side::Caller, 990, &[1; 160]),
            Err(WavError::TooLong {
                at_ms: 990,
                max_ms: 1000
            })
        ));
        assert!(matches!(
            rec.push(Side::Bot, u64::MAX, &[1; 1]),
            Err(WavError::TooLong { .. })
        ));
        assert_eq!(rec.duration_ms(), 1000);
    }

    #[test]
    fn mono_round_trip_at_any_rate() {
        for rate in [8000u32, 16000, 22050, 24000] {
            let samples: Vec<i16> = (0..1001).map(|i| (i * 37 % 65536 - 32768) as i16).collect();
            let mut buf = Vec::new();
            write_mono(&mut buf, rate, &samples).unwrap();
            assert_eq!(buf.len(), 44 + 2002);
            let wav = read_mono(&buf).unwrap();
            assert_eq!(
                wav,
                MonoWav {
                    sample_rate: rate,
                    samples
                }
            );
        }
    }

    #[test]
    fn reader_walks_chunks_and_tolerates_streaming_sizes() {
        let mut buf = Vec::new();
        write_mono(&mut buf, 22050, &[1, 2, 3]).unwrap();
        // Insert a LIST chunk with odd size (padded) between fmt and data.
        let mut with_list = buf[..36].to_vec();
        with_list.extend_from_slice(b"LIST");
        with_list.extend_from_slice(&3u32.to_le_bytes());
        with_list.extend_from_slice(&[b'a', b'b', b'c', 0]);
        with_list.extend_from_slice(&buf[36..]);
        assert_eq!(read_mono(&with_list).unwrap().samples, vec![1, 2, 3]);
        // Placeholder data size from a streaming writer.
        let mut streamed = buf.clone();
        streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(read_mono(&streamed).unwrap().samples, vec![1, 2, 3]);
    }

    #[test]
    fn reader_rejects_what_it_cannot_play() {
        assert!(matches!(read_mono(b"not a wav file at all"), Err(WavError::NotWave)));
        let mut rec = StereoRecorder::new(8000, 1000);
        rec.push(Side::Caller, 0, &[1; 10]).unwrap();
        assert!(
            matches!(read_mono(&rec.to_wav_bytes()), Err(WavError::Unsupported(_))),
            "stereo refused"
        );
        let mut buf = Vec::new();
        write_mono(&mut buf, 8000, &[1]).unwrap();
        buf[34] = 8; // 8-bit
        assert!(matches!(read_mono(&buf), Err(WavError::Unsupported(_))));
        assert!(matches!(read_mono(&buf[..36]), Err(WavError::MissingChunk("data"))));
    }

    #[test]
    fn espeak_fixture_parses() {
        let wav = read_mono(include_bytes!("../tests/fixtures/booking_8k.wav")).unwrap();
        assert_eq!(wav.sample_rate, 8000);
        assert!(wav.duration_ms() > 2000, "{} ms", wav.duration_ms());
        assert!(
            wav.samples.iter().any(|&s| s.unsigned_abs() > 5000),
            "has speech energy"
        );
    }
}
