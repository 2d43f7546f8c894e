//! Following the CSV through rotation: what a reader of the file (the Sheets uploader,
//! the PostgreSQL sink) holds so that it finishes a rotated file before it moves on.
//!
//! When the CSV is moved away or deleted (logrotate, SIGHUP), [`CsvSink::check_path`]
//! starts a new file and a new *generation*; positions (rows, byte offsets) restart with
//! it. A reader keeps the file it is reading open, with the generation it belongs to, so
//! a rotation never makes it read rows of one file at the positions of another: it reads
//! the old file to its end through that handle (the sink fsynced it at the switch; an
//! unlinked file stays readable while open), and only then opens the new one and starts
//! there at the first data row. How a reader records the switch in its own cursor is its
//! business (the database's cursor row, the Sheets cursor file).

use std::fs::File;
use std::io;

use crate::sink::csv::CsvSink;

/// The CSV file a reader is in, and which generation of the sink's file it is.
#[derive(Debug)]
pub struct FollowedCsv {
    file: File,
    generation: u64,
}

impl FollowedCsv {
    /// Opens the file the sink writes now; refuses one replaced while being opened.
    pub fn open(sink: &CsvSink) -> io::Result<FollowedCsv> {
        let generation = sink.generation();
        let file = File::open(sink.path())?;
        if sink.generation() != generation {
            return Err(io::Error::other("the file was replaced while being opened"));
        }
        Ok(FollowedCsv { file, generation })
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    pub fn file_mut(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the sink writes to another file now: this one was rotated away.
    pub fn rotated(&self, sink: &CsvSink) -> bool {
        sink.generation() != self.generation
    }

    /// How far this file may be read: the sink's durable mark while it is the sink's
    /// file, its whole length once rotated away (fsynced at the switch).
    pub fn durable_end(&self, sink: &CsvSink) -> io::Result<u64> {
        if sink.generation() == self.generation {
            let (_, bytes) = sink.durable_position();
            // The mark is replaced after the generation, under the sink's lock: the same
            // generation after reading it means the mark is this file's.
            if sink.generation() == self.generation {
                return Ok(bytes);
            }
        }
        Ok(self.file.metadata()?.len())
    }

    /// Rotations since this file was opened that another file came and went in (its rows
    /// were never read here: they are in that moved file).
    pub fn skipped_files(&self, sink: &CsvSink) -> u64 {
        sink.generation().saturating_sub(self.generation + 1)
    }
}
