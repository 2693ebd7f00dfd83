//! Caller audio from WAV files: any 16-bit PCM WAV, mono or multi-channel,
//! at any sample rate, converted to 8 kHz mono for the phone line.
//!
//! Guarantees: mono files are read by `switchboard_media::wav::read_mono`;
//! multi-channel files are averaged to mono. Rates the media resampler
//! supports (8, 16, 22.05, 24, 48 kHz) go through it (anti-aliased FFT,
//! delay trimmed, so the output is time-aligned with the input); any other
//! rate (e.g. 44.1 kHz) goes through a windowed-sinc band-limited interpolator
//! with its cut-off below 4 kHz. The output has `round(len * 8000 / rate)` samples.

use std::path::Path;

use switchboard_media::resample::{Alignment, Resampler};
use switchboard_media::wav;

use crate::error::CallerError;

/// Telephone sample rate.
pub const PHONE_RATE: u32 = 8000;

/// Reads a WAV file and returns its audio as 8 kHz mono.
pub fn load_wav_8k(path: impl AsRef<Path>) -> Result<Vec<i16>, CallerError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| CallerError::Audio {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    wav_bytes_to_8k(&bytes).map_err(|reason| CallerError::Audio {
        path: path.to_owned(),
        reason,
    })
}

/// Writes 8 kHz mono samples (e.g. [`crate::CallReport::bot_audio`]) as a 16-bit PCM WAV.
pub fn save_wav_8k(path: impl AsRef<Path>, samples: &[i16]) -> Result<(), CallerError> {
    let path = path.as_ref();
    let err = |e: std::io::Error| CallerError::Audio {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).map_err(err)?);
    wav::write_mono(&mut file, PHONE_RATE, samples).map_err(err)?;
    std::io::Write::flush(&mut file).map_err(err)
}

/// [`load_wav_8k`] on bytes already in memory.
pub fn wav_bytes_to_8k(bytes: &[u8]) -> Result<Vec<i16>, String> {
    let (rate, mono) = match wav::read_mono(bytes) {
        Ok(w) => (w.sample_rate, w.samples),
        Err(wav::WavError::Unsupported(_)) => read_multichannel(bytes)?,
        Err(e) => return Err(e.to_string()),
    };
    to_8k(&mono, rate)
}

/// Converts mono audio at `rate` to 8 kHz.
pub fn to_8k(samples: &[i16], rate: u32) -> Result<Vec<i16>, String> {
    if rate == 0 {
        return Err("sample rate 0".to_owned());
    }
    if rate == PHONE_RATE {
        return Ok(samples.to_vec());
    }
    let expected = ((samples.len() as u64 * u64::from(PHONE_RATE) + u64::from(rate) / 2) / u64::from(rate)) as usize;
    let mut out = Vec::with_capacity(expected + 160);
    match Resampler::new(rate, PHONE_RATE, Alignment::Trimmed) {
        Ok(mut r) => {
            r.push(samples, |s| out.extend_from_slice(s));
            r.flush(|s| out.extend_from_slice(s));
        }
        Err(_) => sinc_resample(samples, rate, PHONE_RATE, &mut out),
    }
    out.truncate(expected);
    out.resize(expected, 0);
    Ok(out)
}

/// Band-limited interpolation with a Blackman-windowed sinc; used only for
/// rates the FFT resampler does not take. Quality is plenty for test speech.
fn sinc_resample(input: &[i16], rate_in: u32, rate_out: u32, out: &mut Vec<i16>) {
    // Cut-off a little under the output Nyquist so the band edge does not alias.
    let cutoff = 0.45 * f64::from(rate_out.min(rate_in)) / f64::from(rate_in);
    let half_width = (16.0 / cutoff).ceil() as i64;
    let step = f64::from(rate_in) / f64::from(rate_out);
    let n_out = (input.len() as u64 * u64::from(rate_out)).div_ceil(u64::from(rate_in));
    for j in 0..n_out {
        let center = j as f64 * step;
        let first = (center.floor() as i64 - half_width).max(0);
        let last = (center.floor() as i64 + half_width).min(input.len() as i64 - 1);
        let mut acc = 0.0;
        for i in first..=last {
            let x = i as f64 - center;
            let w = blackman(x / (half_width as f64 + 1.0));
            acc += f64::from(input[i as usize]) * 2.0 * cutoff * sinc(2.0 * cutoff * x) * w;
        }
        out.push(acc.round().clamp(-32768.0, 32767.0) as i16);
    }
}

fn sinc(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// Blackman window over `t` in `[-1, 1]`.
fn blackman(t: f64) -> f64 {
    if t.abs() >= 1.0 {
        return 0.0;
    }
    let a = std::f64::consts::PI * (t + 1.0);
    0.42 - 0.5 * a.cos() + 0.08 * (2.0 * a).cos()
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a 16-bit PCM WAV with any channel count, averaged to mono.
/// (`wav::read_mono` handles the mono case; it refuses the others.)
fn read_multichannel(bytes: &[u8]) -> Result<(u32, Vec<i16>), String> {
    const PCM: u16 = 1;
    const EXTENSIBLE: u16 = 0xFFFE;
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".to_owned());
    }
    let mut pos = 12;
    let mut format: Option<(u16, u16, u32, u16)> = None;
    while pos + 8 <= bytes.len() {
        let id = &bytes[pos..pos + 4];
        let size = u32_at(bytes, pos + 4).ok_or("truncated chunk header")? as usize;
        let body = pos + 8;
        match id {
            b"fmt " => {
                let f = bytes.get(body..body + size.min(40)).ok_or("truncated fmt chunk")?;
                let mut tag = u16_at(f, 0).ok_or("truncated fmt chunk")?;
                if tag == EXTENSIBLE {
                    tag = u16_at(f, 24).ok_or("truncated extensible fmt chunk")?;
                }
                format = Some((
                    tag,
                    u16_at(f, 2).ok_or("truncated fmt chunk")?,
                    u32_at(f, 4).ok_or("truncated fmt chunk")?,
                    u16_at(f, 14).ok_or("truncated fmt chunk")?,
                ));
            }
            b"data" => {
                let (tag, channels, rate, bits) = format.ok_or("data chunk before fmt chunk")?;
                if tag != PCM || bits != 16 || channels == 0 || rate == 0 {
                    return Err(format!(
                        "format tag {tag}, {bits} bits, {channels} channels, {rate} Hz: need 16-bit PCM"
                    ));
                }
                let end = if size == 0 {
                    bytes.len()
                } else {
                    body.saturating_add(size).min(bytes.len())
                };
                let frame_bytes = usize::from(channels) * 2;
                let mono = bytes[body..end]
                    .chunks_exact(frame_bytes)
                    .map(|frame| {
                        let sum: i32 = frame
                            .chunks_exact(2)
                            .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
                            .sum();
                        (sum / i32::from(channels)) as i16
                    })
                    .collect();
                return Ok((rate, mono));
            }
            _ => {}
        }
        pos = body.saturating_add(size).saturating_add(size & 1);
    }
    Err("missing data chunk".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, secs: f64, amplitude: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (amplitude * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    fn wav_bytes(rate: u32, channels: u16, interleaved: &[i16]) -> Vec<u8> {
        let data_len = (interleaved.len() * 2) as u32;
        let mut b = Vec::new();
        b.extend_from_slice(b"RIFF");
        b.extend_from_slice(&(36 + data_len).to_le_bytes());
        b.extend_from_slice(b"WAVEfmt ");
        b.extend_from_slice(&16u32.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&channels.to_le_bytes());
        b.extend_from_slice(&rate.to_le_bytes());
        b.extend_from_slice(&(rate * u32::from(channels) * 2).to_le_bytes());
        b.extend_from_slice(&(channels * 2).to_le_bytes());
        b.extend_from_slice(&16u16.to_le_bytes());
        b.extend_from_slice(b"data");
        b.extend_from_slice(&data_len.to_le_bytes());
        for s in interleaved {
            b.extend_from_slice(&s.to_le_bytes());
        }
        b
    }

    /// Upward zero crossings per second: the dominant frequency of a clean tone.
    fn frequency(samples: &[i16], rate: u32) -> f64 {
        let ups = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
        ups as f64 * f64::from(rate) / samples.len() as f64
    }

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn eight_khz_mono_passes_through_unchanged() {
        let s = sine(8000, 300.0, 0.5, 9000.0);
        assert_eq!(wav_bytes_to_8k(&wav_bytes(8000, 1, &s)).unwrap(), s);
    }

    #[test]
    fn stereo_is_averaged_and_resampled_with_the_media_resampler() {
        let left = sine(16_000, 440.0, 1.0, 10_000.0);
        let interleaved: Vec<i16> = left.iter().flat_map(|&l| [l, 0]).collect();
        let out = wav_bytes_to_8k(&wav_bytes(16_000, 2, &interleaved)).unwrap();
        assert_eq!(out.len(), 8000);
        assert!((frequency(&out[400..7600], 8000) - 440.0).abs() < 5.0);
        // Averaging with a silent channel halves the amplitude: RMS 10000/√2/2 ≈ 3536.
        let r = rms(&out[400..7600]);
        assert!((3300.0..3800.0).contains(&r), "rms {r}");
    }

    #[test]
    fn unsupported_rates_use_the_sinc_fallback_and_filter_above_4khz() {
        let tone = sine(44_100, 1000.0, 1.0, 10_000.0);
        let out = wav_bytes_to_8k(&wav_bytes(44_100, 1, &tone)).unwrap();
        assert_eq!(out.len(), 8000);
        assert!((frequency(&out[400..7600], 8000) - 1000.0).abs() < 5.0);
        let r = rms(&out[400..7600]);
        assert!((6800.0..7300.0).contains(&r), "rms {r}");
        // 6 kHz cannot be represented at 8 kHz: it must be filtered, not folded to 2 kHz.
        let high = sine(44_100, 6000.0, 1.0, 10_000.0);
        let out = wav_bytes_to_8k(&wav_bytes(44_100, 1, &high)).unwrap();
        assert!(rms(&out[400..7600]) < 300.0, "aliased: rms {}", rms(&out[400..7600]));
    }

    #[test]
    fn saved_wavs_load_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bot.wav");
        let s = sine(8000, 500.0, 0.3, 12_000.0);
        save_wav_8k(&path, &s).unwrap();
        assert_eq!(load_wav_8k(&path).unwrap(), s);
    }

    #[test]
    fn non_pcm_and_garbage_are_errors() {
        assert!(wav_bytes_to_8k(b"hello").is_err());
        let mut b = wav_bytes(8000, 1, &[0; 10]);
        b[34] = 8; // 8-bit samples
        assert!(wav_bytes_to_8k(&b).is_err());
        assert!(matches!(
            load_wav_8k("/nonexistent/x.wav"),
            Err(CallerError::Audio { .. })
        ));
    }
}
