//! A call's stereo recording, written off the audio path.
//!
//! The call actor hands each 20 ms μ-law frame (caller or bot, stamped with
//! its stream time) to a per-call writer task through a bounded channel and
//! never waits: a full channel drops the frame and counts it. The writer
//! decodes frames into two raw PCM side files with positional writes, so
//! silence is simply a hole and memory stays at one batch per side whatever
//! the call's length. When the call ends the sides are interleaved into a
//! stereo WAV (caller left, bot right) in bounded chunks and the side files
//! are removed.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use switchboard_media::ulaw;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::media::FRAME_BYTES;

/// Longest recording kept; frames later than this are dropped.
const MAX_MS: u64 = 4 * 60 * 60 * 1000;
/// Frames buffered per side before a write (1 s).
const BATCH: usize = 50;
const RATE: u64 = 8000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Bot,
}

#[derive(Debug)]
struct RecFrame {
    side: Side,
    at_ms: u64,
    len: u8,
    ulaw: [u8; FRAME_BYTES],
}

/// The actor's end of a recording.
#[derive(Debug)]
pub(crate) struct Recording {
    tx: Option<mpsc::Sender<RecFrame>>,
    task: JoinHandle<io::Result<PathBuf>>,
    dropped: u64,
}

impl Recording {
    /// Starts the writer for `path` (its directory is created).
    pub(crate) fn start(path: PathBuf) -> Self {
        let (tx, rx) = mpsc::channel(4 * BATCH);
        let task = tokio::spawn(write_loop(path, rx));
        Self {
            tx: Some(tx),
            task,
            dropped: 0,
        }
    }

    pub(crate) fn caller(&mut self, at_ms: u64, ulaw: &[u8]) {
        self.push(Side::Caller, at_ms, ulaw);
    }

    pub(crate) fn bot(&mut self, at_ms: u64, ulaw: &[u8]) {
        self.push(Side::Bot, at_ms, ulaw);
    }

    fn push(&mut self, side: Side, at_ms: u64, bytes: &[u8]) {
        let Some(tx) = &self.tx else { return };
        let len = bytes.len().min(FRAME_BYTES);
        let mut frame = RecFrame {
            side,
            at_ms,
            len: len as u8,
            ulaw: [ulaw::SILENCE; FRAME_BYTES],
        };
        frame.ulaw[..len].copy_from_slice(&bytes[..len]);
        if tx.try_send(frame).is_err() {
            self.dropped += 1;
        }
    }

    /// Frames the writer could not keep up with.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Closes the recording and waits for the WAV.
    pub(crate) async fn finish(mut self) -> io::Result<PathBuf> {
        self.tx = None;
        match self.task.await {
            Ok(result) => result,
            Err(join) => Err(io::Error::other(format!("recording writer failed: {join}"))),
        }
    }
}

struct SideFile {
    file: File,
    path: PathBuf,
    /// Decoded samples waiting to be written at `batch_at` (sample index).
    batch: Vec<i16>,
    batch_at: u64,
    /// One past the last sample written.
    end: u64,
}

impl SideFile {
    fn create(path: PathBuf) -> io::Result<Self> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)?;
        Ok(Self {
            file,
            path,
            batch: Vec::with_capacity(BATCH * FRAME_BYTES),
            batch_at: 0,
            end: 0,
        })
    }

    fn put(&mut self, at_sample: u64, pcm: &[i16]) -> io::Result<()> {
        let contiguous = self.batch_at + self.batch.len() as u64 == at_sample;
        if !contiguous || self.batch.len() + pcm.len() > self.batch.capacity() {
            self.flush()?;
            self.batch_at = at_sample;
        }
        self.batch.extend_from_slice(pcm);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(self.batch.len() * 2);
        for s in &self.batch {
            bytes.extend_from_slice(&s.to_le_bytes());
        }
        self.file.write_all_at(&bytes, self.batch_at * 2)?;
        self.end = self.end.max(self.batch_at + self.batch.len() as u64);
        self.batch.clear();
        Ok(())
    }
}

async fn write_loop(path: PathBuf, mut rx: mpsc::Receiver<RecFrame>) -> io::Result<PathBuf> {
    let result = async {
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        tokio::fs::create_dir_all(&dir).await?;
        let caller_path = path.with_extension("caller.raw");
        let bot_path = path.with_extension("bot.raw");
        let mut sides = tokio::task::spawn_blocking(move || {
            Ok::<_, io::Error>((SideFile::create(caller_path)?, SideFile::create(bot_path)?))
        })
        .await
        .map_err(io::Error::other)??;
        let mut pending = Vec::with_capacity(BATCH);
        while rx.recv_many(&mut pending, BATCH).await > 0 {
            let batch = std::mem::take(&mut pending);
            let (caller, bot) = sides;
            let (caller, bot, batch) = tokio::task::spawn_blocking(move || {
                let (mut caller, mut bot) = (caller, bot);
                for frame in &batch {
                    if frame.at_ms >= MAX_MS {
                        continue;
                    }
                    let mut pcm = [0i16; FRAME_BYTES];
                    let n = ulaw::decode_into(&frame.ulaw[..usize::from(frame.len)], &mut pcm);
                    let at = frame.at_ms * RATE / 1000;
                    match frame.side {
                        Side::Caller => caller.put(at, &pcm[..n])?,
                        Side::Bot => bot.put(at, &pcm[..n])?,
                    }
                }
                Ok::<_, io::Error>((caller, bot, batch))
            })
            .await
            .map_err(io::Error::other)??;
            sides = (caller, bot);
            pending = batch;
            pending.clear();
        }
        let (caller, bot) = sides;
        let out = path.clone();
        tokio::task::spawn_blocking(move || interleave(caller, bot, &out))
            .await
            .map_err(io::Error::other)??;
        Ok(path.clone())
    }
    .await;
    if let Err(err) = &result {
        tracing::warn!(path = %path.display(), error = %err, "call recording failed");
    }
    result
}

/// Writes the stereo WAV from the two side files, then removes them.
fn interleave(mut caller: SideFile, mut bot: SideFile, out: &Path) -> io::Result<()> {
    caller.flush()?;
    bot.flush()?;
    let frames = caller.end.max(bot.end);
    let data_bytes = u32::try_from(frames * 4).map_err(|_| io::Error::other("recording too long for WAV"))?;
    let mut w = BufWriter::new(File::create(out)?);
    w.write_all(b"RIFF")?;
    w.write_all(&(36 + data_bytes).to_le_bytes())?;
    w.write_all(b"WAVEfmt ")?;
    w.write_all(&16u32.to_le_bytes())?;
    w.write_all(&1u16.to_le_bytes())?; // PCM
    w.write_all(&2u16.to_le_bytes())?; // channels
    w.write_all(&(RATE as u32).to_le_bytes())?;
    w.write_all(&(RATE as u32 * 4).to_le_bytes())?;
    w.write_all(&4u16.to_le_bytes())?;
    w.write_all(&16u16.to_le_bytes())?;
    w.write_all(b"data")?;
    w.write_all(&data_bytes.to_le_bytes())?;
    caller.file.seek(SeekFrom::Start(0))?;
    bot.file.seek(SeekFrom::Start(0))?;
    const CHUNK: usize = 4096;
    let mut left = vec![0u8; CHUNK * 2];
    let mut right = vec![0u8; CHUNK * 2];
    let mut out_buf = Vec::with_capacity(CHUNK * 4);
    let mut done = 0u64;
    while done < frames {
        let n = usize::try_from((frames - done).min(CHUNK as u64)).unwrap_or(CHUNK);
        read_side(&mut caller, &mut left[..n * 2], done)?;
        read_side(&mut bot, &mut right[..n * 2], done)?;
        out_buf.clear();
        for i in 0..n {
            out_buf.extend_from_slice(&left[i * 2..i * 2 + 2]);
            out_buf.extend_from_slice(&right[i * 2..i * 2 + 2]);
        }
        w.write_all(&out_buf)?;
        done += n as u64;
    }
    w.flush()?;
    drop(caller.file);
    drop(bot.file);
    let _ = std::fs::remove_file(&caller.path);
    let _ = std::fs::remove_file(&bot.path);
    Ok(())
}

/// Reads `buf.len()` bytes of a side from sample `from`; past its end is silence.
fn read_side(side: &mut SideFile, buf: &mut [u8], from: u64) -> io::Result<()> {
    buf.fill(0);
    if from >= side.end {
        return Ok(());
    }
    let available = usize::try_from((side.end - from) * 2)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    side.file.seek(SeekFrom::Start(from * 2))?;
    side.file.read_exact(&mut buf[..available])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sides_are_time_aligned_with_silence_between() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t").join("call.wav");
        let mut rec = Recording::start(path.clone());
        let loud = [ulaw::encode(8000); FRAME_BYTES];
        let quiet = [ulaw::encode(-4000); FRAME_BYTES];
        // Caller speaks for 100 ms from 0; the bot answers at 1 s for 60 ms.
        for k in 0..5 {
            rec.caller(k * 20, &loud);
        }
        for k in 0..3 {
            rec.bot(1000 + k * 20, &quiet);
        }
        assert_eq!(rec.dropped(), 0);
        let written = rec.finish().await.expect("finish");
        assert_eq!(written, path);
        let bytes = std::fs::read(&path).expect("wav");
        // 1060 ms of stereo 8 kHz.
        assert_eq!(&bytes[22..24], &2u16.to_le_bytes());
        let data = &bytes[44..];
        assert_eq!(data.len(), 8480 * 4);
        let sample = |i: usize, ch: usize| i16::from_le_bytes([data[i * 4 + ch * 2], data[i * 4 + ch * 2 + 1]]);
        let loud_pcm = ulaw::decode(ulaw::encode(8000));
        let quiet_pcm = ulaw::decode(ulaw::encode(-4000));
        assert_eq!(sample(0, 0), loud_pcm);
        assert_eq!(sample(799, 0), loud_pcm);
        assert_eq!(sample(800, 0), 0);
        assert_eq!(sample(0, 1), 0);
        assert_eq!(sample(7999, 1), 0);
        assert_eq!(sample(8000, 1), quiet_pcm);
        assert_eq!(sample(8479, 1), quiet_pcm);
        assert_eq!(sample(8000, 0), 0);
        // The side files are gone.
        assert!(!path.with_extension("caller.raw").exists());
        assert!(!path.with_extension("bot.raw").exists());
    }
}
