//! Image hashes at ingest: an inspection result or NCR that references an image in the
//! configured folder (`[runtime] image_dir`) gets the image's perceptual hash (`image_hash`)
//! before it is stored, so the agents, which do no I/O, can group defects by their pictures and
//! a replay of the log gives the same result without the pictures.
//!
//! Only relative references inside the folder are read (no URL, no absolute path, no `..`, no
//! symbolic link out of it). An image that cannot be read or decoded costs the hash, never the
//! event: the event is stored without one and the reason is logged with the event id.

use jidoka_connectors::image::{MAX_IMAGE_BYTES, format_hash, phash};
use jidoka_model::{Event, EventPayload};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

/// The folder image references are read from.
#[derive(Debug)]
pub struct ImageFolder {
    root: PathBuf,
    /// One picture decoded at a time: a large PNG takes a few hundred MB while it is decoded,
    /// and ingest requests arrive in parallel.
    decoding: Mutex<()>,
}

impl ImageFolder {
    /// The folder must exist.
    pub fn new(root: &Path) -> anyhow::Result<ImageFolder> {
        let root = root.canonicalize().map_err(|e| anyhow::anyhow!("runtime.image_dir: {}: {e}", root.display()))?;
        anyhow::ensure!(root.is_dir(), "runtime.image_dir: {} is not a folder", root.display());
        Ok(ImageFolder { root, decoding: Mutex::new(()) })
    }

    /// The file a reference names, if it is a relative path inside the folder.
    fn resolve(&self, reference: &str) -> Result<PathBuf, String> {
        if reference.contains("://") {
            return Err("a URL, not a path in the image folder".into());
        }
        let path = Path::new(reference);
        if path.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err("not a relative path inside the image folder".into());
        }
        let full = self.root.join(path).canonicalize().map_err(|e| e.to_string())?;
        if !full.starts_with(&self.root) {
            return Err("leads out of the image folder".into());
        }
        // Not a folder, a pipe or a device, which could block the read.
        if !full.is_file() {
            return Err("not a regular file".into());
        }
        Ok(full)
    }

    /// The hash of the image a reference names.
    pub fn hash(&self, reference: &str) -> Result<String, String> {
        let path = self.resolve(reference)?;
        let mut bytes = Vec::new();
        std::fs::File::open(&path)
            .and_then(|f| f.take(MAX_IMAGE_BYTES as u64 + 1).read_to_end(&mut bytes))
            .map_err(|e| e.to_string())?;
        let _one_at_a_time = self.decoding.lock().unwrap_or_else(|p| p.into_inner());
        // A decoder fault on a hostile file costs this picture's hash, not the batch.
        match std::panic::catch_unwind(|| phash(&bytes)) {
            Ok(hash) => hash.map(format_hash).map_err(|e| e.to_string()),
            Err(_) => Err("the image decoder failed on this file".into()),
        }
    }

    /// Whether any event references an image it has no hash for.
    pub fn wanted(events: &[Event]) -> bool {
        events.iter().any(|e| slots(&e.payload).is_some_and(|(r, h)| r.is_some() && h.is_none()))
    }

    /// Set the hash of every referenced image that has none; an image that cannot be hashed is
    /// logged with the event id and the reason, and its event kept as it is. Returns how many
    /// images were hashed and how many could not be.
    pub fn enrich(&self, events: &mut [Event]) -> (usize, usize) {
        let (mut hashed, mut failed) = (0, 0);
        for e in events.iter_mut() {
            let id = e.event_id.clone();
            let Some((Some(reference), hash @ None)) = slots_mut(&mut e.payload) else { continue };
            match self.hash(reference) {
                Ok(h) => {
                    *hash = Some(h);
                    hashed += 1;
                }
                Err(reason) => {
                    tracing::warn!(event_id = %id, image_ref = %reference, "data.image_ref: no image hash: {reason}");
                    failed += 1;
                }
            }
        }
        (hashed, failed)
    }
}

fn slots(p: &EventPayload) -> Option<(&Option<String>, &Option<String>)> {
    match p {
        EventPayload::NcrCreated(n) => Some((&n.image_ref, &n.image_hash)),
        EventPayload::InspectionResult(i) => Some((&i.image_ref, &i.image_hash)),
        _ => None,
    }
}

fn slots_mut(p: &mut EventPayload) -> Option<(&Option<String>, &mut Option<String>)> {
    match p {
        EventPayload::NcrCreated(n) => Some((&n.image_ref, &mut n.image_hash)),
        EventPayload::InspectionResult(i) => Some((&i.image_ref, &mut i.image_hash)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_relative_paths_inside_the_folder_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("images");
        std::fs::create_dir_all(root.join("st040")).unwrap();
        let mut pgm = b"P5 4 4 255\n".to_vec();
        pgm.extend_from_slice(&[10; 16]);
        std::fs::write(root.join("st040/a.pgm"), &pgm).unwrap();
        std::fs::write(dir.path().join("secret.pgm"), &pgm).unwrap();
        std::fs::write(root.join("st040/bad.png"), b"\x89PNG broken").unwrap();
        let folder = ImageFolder::new(&root).unwrap();
        assert_eq!(folder.hash("st040/a.pgm").unwrap().len(), 16);
        assert_eq!(folder.hash("./st040/a.pgm"), folder.hash("st040/a.pgm"));
        for (reference, want) in [
            ("../secret.pgm", "not a relative path"),
            ("/etc/passwd", "not a relative path"),
            ("http://cam/a.png", "a URL"),
            ("st040/missing.png", "No such file"),
            ("st040/bad.png", "PNG"),
        ] {
            let e = folder.hash(reference).unwrap_err();
            assert!(e.contains(want), "{reference}: {e}");
        }
        assert!(folder.hash("st040").unwrap_err().contains("not a regular file"));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.pgm"), root.join("link.pgm")).unwrap();
            assert!(folder.hash("link.pgm").unwrap_err().contains("out of the image folder"));
        }
        assert!(ImageFolder::new(&dir.path().join("nope")).is_err());
    }
}
