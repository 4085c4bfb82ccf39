//! Which files a source reads, and reading them a bounded line at a time.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Longest line kept; the rest of a longer line is skipped, never buffered.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Most files one call reads, however many a pattern matches.
pub const MAX_FILES: usize = 1000;

/// One configured path or pattern, resolved against the configuration directory.
#[derive(Debug, Clone)]
pub struct PathPattern {
    /// As written in the configuration.
    pub configured: String,
    pub dir: PathBuf,
    /// The file name part; may contain `*`.
    pub name: String,
}

impl PathPattern {
    pub fn new(configured: &str, config_dir: &Path) -> Self {
        let path = Path::new(configured);
        let path = if path.is_relative() && !config_dir.as_os_str().is_empty() {
            config_dir.join(path)
        } else {
            path.to_path_buf()
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            Some(_) | None => PathBuf::from("."),
        };
        PathPattern {
            configured: configured.to_string(),
            dir,
            name,
        }
    }

    /// The readable regular files this pattern names now, sorted by path.
    pub fn expand(&self) -> Vec<LogFile> {
        if !self.name.contains('*') {
            let path = self.dir.join(&self.name);
            return LogFile::open_meta(&path).into_iter().collect();
        }
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<LogFile> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                // As in a shell, `*` does not match a leading dot.
                (!name.starts_with('.') || self.name.starts_with('.'))
                    && wildcard_match(&self.name, &name)
            })
            .filter_map(|entry| LogFile::open_meta(&entry.path()))
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files
    }
}

/// `*` matches any run of characters (including none); everything else literally.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == name;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogFile {
    pub path: PathBuf,
    pub size: u64,
}

impl LogFile {
    /// Only regular files (symlinks followed) that can be opened for reading.
    fn open_meta(path: &Path) -> Option<LogFile> {
        let meta = std::fs::metadata(path).ok()?;
        if !meta.is_file() {
            return None;
        }
        File::open(path).ok()?;
        Some(LogFile {
            path: path.to_path_buf(),
            size: meta.len(),
        })
    }
}

/// Every file the patterns name, each once, capped at [`MAX_FILES`]. The flag says
/// whether the cap cut the list.
pub fn expand_all(patterns: &[PathPattern]) -> (Vec<LogFile>, bool) {
    let mut files: Vec<LogFile> = patterns.iter().flat_map(PathPattern::expand).collect();
    files.sort();
    files.dedup_by(|a, b| a.path == b.path);
    let capped = files.len() > MAX_FILES;
    files.truncate(MAX_FILES);
    (files, capped)
}

/// Reads lines of at most `cap` bytes. A longer line is cut at `cap`; the rest of it
/// is consumed without being kept.
pub struct LineReader<R> {
    inner: R,
    cap: usize,
    buf: Vec<u8>,
}

/// One line as read.
pub struct Line<'a> {
    /// The kept bytes, decoded lossily, without the line ending.
    pub text: std::borrow::Cow<'a, str>,
    /// Bytes consumed from the file, line ending included.
    pub consumed: u64,
    pub cut: bool,
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, cap: usize) -> Self {
        LineReader {
            inner,
            cap,
            buf: Vec::with_capacity(1024),
        }
    }

    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let mut consumed = 0u64;
        let mut cut = false;
        loop {
            let available = match self.inner.fill_buf() {
                Ok(bytes) => bytes,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            };
            if available.is_empty() {
                if consumed == 0 {
                    return Ok(None);
                }
                break;
            }
            let (chunk, used, done) = match available.iter().position(|b| *b == b'\n') {
                Some(at) => (&available[..at], at + 1, true),
                None => (available, available.len(), false),
            };
            let room = self.cap.saturating_sub(self.buf.len());
            if chunk.len() > room {
                cut = true;
            }
            self.buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            self.inner.consume(used);
            consumed += used as u64;
            if done {
                break;
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line {
            text: String::from_utf8_lossy(&self.buf),
            consumed,
            cut,
        }))
    }
}

pub fn open_lines(path: &Path) -> io::Result<LineReader<BufReader<File>>> {
    let file = File::open(path)?;
    Ok(LineReader::new(
        BufReader::with_capacity(64 * 1024, file),
        MAX_LINE_BYTES,
    ))
}

/// The complete lines within the first and the last `window` bytes of a file (the
/// whole file when it is small), for cheap descriptions.
pub fn sample_lines(path: &Path, window: u64) -> io::Result<(Vec<String>, Vec<String>)> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    let mut head = Vec::new();
    (&mut file).take(window).read_to_end(&mut head)?;
    let head_complete = size <= window;
    let head_lines = complete_lines(&head, false, !head_complete);
    if head_complete {
        return Ok((head_lines.clone(), head_lines));
    }
    let start = size.saturating_sub(window);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.take(window).read_to_end(&mut tail)?;
    let tail_lines = complete_lines(&tail, start > 0, false);
    Ok((head_lines, tail_lines))
}

fn complete_lines(bytes: &[u8], skip_first: bool, skip_last: bool) -> Vec<String> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').collect();
    if skip_first && !lines.is_empty() {
        lines.remove(0);
    }
    if (skip_last || bytes.ends_with(b"\n")) && !lines.is_empty() {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|l| {
            let l = l.strip_suffix(b"\r").unwrap_or(l);
            let l = &l[..l.len().min(MAX_LINE_BYTES)];
            String::from_utf8_lossy(l).into_owned()
        })
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard_match("*.log", "gateway.log"));
        assert!(wildcard_match("app-*.ndjson", "app-1.ndjson"));
        assert!(wildcard_match("*", "x"));
        assert!(wildcard_match("a*b*c", "abc"));
        assert!(wildcard_match("a*b*c", "a-b-b-c"));
        assert!(!wildcard_match("a*b*c", "a-c-b"));
        assert!(!wildcard_match("*.log", "gateway.log.1"));
        assert!(!wildcard_match("ab*ba", "aba"));
        assert!(wildcard_match("plain.log", "plain.log"));
    }

    #[test]
    fn long_lines_are_cut_and_the_rest_skipped() {
        let mut data = vec![b'x'; 200];
        data.extend_from_slice(b"\nshort\r\nlast");
        let mut reader = LineReader::new(std::io::Cursor::new(data), 50);
        let first = reader
            .next_line()
            .ok()
            .flatten()
            .map(|l| (l.text.len(), l.cut, l.consumed));
        assert_eq!(first, Some((50, true, 201)));
        let second = reader
            .next_line()
            .ok()
            .flatten()
            .map(|l| (l.text.into_owned(), l.cut));
        assert_eq!(second, Some(("short".to_string(), false)));
        let third = reader
            .next_line()
            .ok()
            .flatten()
            .map(|l| l.text.into_owned());
        assert_eq!(third.as_deref(), Some("last"));
        assert!(reader.next_line().ok().flatten().is_none());
    }
}
