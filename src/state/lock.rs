//! An advisory lock on the export directory for the whole run. The OS drops it when the process
//! dies, so a crashed run never blocks the next one.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};

use crate::error::Error;
use crate::output::Layout;

/// Held for the whole run; released on drop.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Take the lock or fail at once, naming the holder. Touches nothing when it fails.
    pub fn acquire(layout: &Layout) -> Result<Self, Error> {
        let path = layout.lock();
        let io_err = |source| Error::OutputDir { path: path.clone(), source };
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {
                let holder = format!("pid {}, started {}\n", std::process::id(), super::now_rfc3339());
                file.set_len(0).map_err(io_err)?;
                file.rewind().map_err(io_err)?;
                file.write_all(holder.as_bytes()).map_err(io_err)?;
                Ok(Self { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                Err(Error::Locked {
                    path: layout.root().to_path_buf(),
                    holder: if holder.is_empty() { "holder unknown".into() } else { holder.to_owned() },
                })
            }
            Err(TryLockError::Error(e)) => Err(io_err(e)),
        }
    }
}
