//! A native OCI image writer: `image --assemble` packs a runtime image from a Debian
//! root tarball (mmdebstrap's, from the cache) and a dist, with no engine. What makes
//! it reproducible (CONTAINERS.md §4): entries sorted by path, every mtime set to
//! SOURCE_DATE_EPOCH, owners and modes copied from the root (never from this machine),
//! no sparse entries (umoci refuses them), hard links after the files they name, gzip
//! from one fixed encoder setting, and JSON with sorted keys. Device nodes are left out
//! (runtimes mount /dev; writing them needs privileges to unpack); xattrs are not carried.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub const MEDIA_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

struct HashWriter<W> {
    inner: W,
    hash: Sha256,
    n: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let k = self.inner.write(buf)?;
        self.hash.update(&buf[..k]);
        self.n += k as u64;
        Ok(k)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hash_writer<W: Write>(inner: W) -> HashWriter<W> {
    HashWriter {
        inner,
        hash: Sha256::new(),
        n: 0,
    }
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A blob in the layout.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Blob {
    /// `sha256:HEX`.
    pub digest: String,
    pub size: u64,
}

/// A layer: its blob (compressed) and its diff id (the uncompressed tar's digest).
#[derive(Debug, Clone)]
pub struct LayerBlob {
    pub blob: Blob,
    pub diff_id: String,
}

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Data {
    /// A file on this machine (the dist).
    Path(PathBuf),
    /// A span of the root tarball.
    Tar {
        offset: u64,
        size: u64,
    },
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub enum Node {
    Dir,
    File(Data),
    Symlink(String),
    /// A hard link to another entry of the same layer.
    Hardlink(String),
}

/// One entry of a layer: a relative path with no `.`/`..` element, and who owns it.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: String,
    pub gname: String,
    pub node: Node,
}

impl Entry {
    pub fn root_owned(path: &str, mode: u32, node: Node) -> Entry {
        Entry {
            path: path.into(),
            mode,
            uid: 0,
            gid: 0,
            uname: "root".into(),
            gname: "root".into(),
            node,
        }
    }
}

/// `./usr/bin/x` → `usr/bin/x`; None for the root itself; Err for `..`, absolute or
/// control-character paths (a tarball is untrusted).
pub fn normalise(p: &str) -> Result<Option<String>, String> {
    if p.chars().any(|c| c.is_control()) {
        return Err(format!(
            "`{}` holds a control character",
            crate::safe::show(p)
        ));
    }
    let parts: Vec<&str> = p
        .trim_start_matches('/')
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if p.starts_with('/') || parts.contains(&"..") {
        return Err(format!(
            "`{}` is absolute or climbs out with `..`",
            crate::safe::show(p)
        ));
    }
    Ok((!parts.is_empty()).then(|| parts.join("/")))
}

/// A Debian root tarball, indexed: its entries (minus device nodes) and where each
/// file's bytes lie in it.
pub struct RootTar {
    pub path: PathBuf,
    pub entries: BTreeMap<String, Entry>,
    /// Device nodes and FIFOs left out.
    pub skipped: usize,
}

impl RootTar {
    /// Reads the tarball's index (one pass; the bytes are copied later by offset).
    pub fn index(path: &Path) -> Result<RootTar, String> {
        let f = File::open(path).map_err(|e| e.to_string())?;
        let mut a = tar::Archive::new(f);
        let mut entries = BTreeMap::new();
        let mut skipped = 0;
        for e in a.entries_with_seek().map_err(|e| e.to_string())? {
            let mut e = e.map_err(|e| e.to_string())?;
            let raw = e.path().map_err(|e| e.to_string())?;
            let raw = raw.to_str().ok_or("a path that is not UTF-8")?.to_string();
            let Some(p) = normalise(&raw)? else { continue };
            let h = e.header();
            let mode = h.mode().map_err(|e| e.to_string())?;
            let (uid, gid) = (
                h.uid().map_err(|e| e.to_string())?,
                h.gid().map_err(|e| e.to_string())?,
            );
            let uname = h.username().ok().flatten().unwrap_or("").to_string();
            let gname = h.groupname().ok().flatten().unwrap_or("").to_string();
            let link = || -> Result<String, String> {
                let l = e
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .ok_or("a link with no target")?;
                Ok(l.to_str().ok_or("a link that is not UTF-8")?.to_string())
            };
            let node = match h.entry_type() {
                tar::EntryType::Directory => Node::Dir,
                tar::EntryType::Symlink => Node::Symlink(link()?),
                tar::EntryType::Link => {
                    let t = link()?;
                    Node::Hardlink(normalise(&t)?.ok_or("a hard link to the root")?)
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => Node::File(Data::Tar {
                    offset: e.raw_file_position(),
                    size: e.size(),
                }),
                tar::EntryType::GNUSparse => {
                    // Expanded here: a layer never holds sparse entries.
                    let mut b = Vec::new();
                    e.read_to_end(&mut b).map_err(|e| e.to_string())?;
                    Node::File(Data::Bytes(b))
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    skipped += 1;
                    continue;
                }
                t => return Err(format!("{raw}: an entry of type {t:?}")),
            };
            entries.insert(
                p.clone(),
                Entry {
                    path: p,
                    mode,
                    uid,
                    gid,
                    uname,
                    gname,
                    node,
                },
            );
        }
        Ok(RootTar {
            path: path.to_path_buf(),
            entries,
            skipped,
        })
    }

    /// A file's bytes (small files: dpkg's status, diversions, a driver).
    pub fn read(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, String> {
        let Some(e) = self.entries.get(path) else {
            return Ok(None);
        };
        let mut e = e;
        // One hard link hop (dpkg never makes chains).
        if let Node::Hardlink(t) = &e.node {
            e = self.entries.get(t).ok_or("a hard link to nothing")?;
        }
        match &e.node {
            Node::File(Data::Tar { offset, size }) => {
                if *size > max {
                    return Err(format!("{path} is larger than {max} bytes"));
                }
                let mut f = File::open(&self.path).map_err(|e| e.to_string())?;
                f.seek(SeekFrom::Start(*offset))
                    .map_err(|e| e.to_string())?;
                let mut b = vec![0; *size as usize];
                f.read_exact(&mut b).map_err(|e| e.to_string())?;
                Ok(Some(b))
            }
            Node::File(Data::Bytes(b)) => Ok(Some(b.clone())),
            _ => Err(format!("{path} is not a regular file")),
        }
    }
}

/// An OCI image layout being written (a staging directory).
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn create(root: &Path) -> io::Result<Layout> {
        fs::create_dir_all(root.join("blobs/sha256"))?;
        fs::write(
            root.join("oci-layout"),
            b"{\"imageLayoutVersion\":\"1.0.0\"}",
        )?;
        Ok(Layout {
            root: root.to_path_buf(),
        })
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn put(&self, bytes: &[u8]) -> io::Result<Blob> {
        let digest = format!("sha256:{}", hex(Sha256::digest(bytes)));
        fs::write(self.blob_path(&digest), bytes)?;
        Ok(Blob {
            digest,
            size: bytes.len() as u64,
        })
    }

    /// Writes one gzip layer of `entries` (sorted here; hard links last), every mtime
    /// `epoch`. `root` supplies the bytes of `Data::Tar` entries.
    pub fn layer(
        &self,
        entries: Vec<Entry>,
        epoch: i64,
        root: Option<&RootTar>,
    ) -> io::Result<LayerBlob> {
        let tmp = self.root.join("blobs/.layer.tmp");
        let file = hash_writer(io::BufWriter::new(File::create(&tmp)?));
        let gz = flate2::GzBuilder::new()
            .mtime(0)
            .operating_system(255)
            .write(file, flate2::Compression::new(6));
        let mut b = tar::Builder::new(hash_writer(gz));
        b.mode(tar::HeaderMode::Deterministic);
        let mut entries = entries;
        entries.sort_by(|a, b| {
            let la = matches!(a.node, Node::Hardlink(_));
            let lb = matches!(b.node, Node::Hardlink(_));
            (la, &a.path).cmp(&(lb, &b.path))
        });
        let mut src = match root {
            Some(r) => Some(File::open(&r.path)?),
            None => None,
        };
        for e in &entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.gid);
            h.set_mtime(epoch.max(0) as u64);
            h.set_username(&e.uname)?;
            h.set_groupname(&e.gname)?;
            match &e.node {
                Node::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    b.append_data(&mut h, format!("{}/", e.path), io::empty())?;
                }
                Node::Symlink(t) | Node::Hardlink(t) => {
                    h.set_entry_type(if matches!(e.node, Node::Symlink(_)) {
                        tar::EntryType::Symlink
                    } else {
                        tar::EntryType::Link
                    });
                    h.set_size(0);
                    b.append_link(&mut h, &e.path, t)?;
                }
                Node::File(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    match d {
                        Data::Path(p) => {
                            let f = File::open(p)?;
                            h.set_size(f.metadata()?.len());
                            b.append_data(&mut h, &e.path, f)?;
                        }
                        Data::Bytes(v) => {
                            h.set_size(v.len() as u64);
                            b.append_data(&mut h, &e.path, &v[..])?;
                        }
                        Data::Tar { offset, size } => {
                            let f = src.as_mut().ok_or_else(|| {
                                io::Error::other("an entry from a root tarball with no tarball")
                            })?;
                            f.seek(SeekFrom::Start(*offset))?;
                            h.set_size(*size);
                            b.append_data(&mut h, &e.path, (&mut *f).take(*size))?;
                        }
                    }
                }
            }
        }
        let diff = b.into_inner()?;
        let diff_id = format!("sha256:{}", hex(diff.hash.finalize()));
        let mut file = diff.inner.finish()?;
        file.flush()?;
        let digest = format!("sha256:{}", hex(file.hash.finalize()));
        let size = file.n;
        file.inner
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        fs::rename(&tmp, self.blob_path(&digest))?;
        Ok(LayerBlob {
            blob: Blob { digest, size },
            diff_id,
        })
    }

    /// `index.json` naming each manifest (with its platform and ref name).
    pub fn index(&self, manifests: &[serde_json::Value]) -> io::Result<Blob> {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": manifests,
        });
        let bytes = serde_json::to_vec(&index).map_err(io::Error::other)?;
        fs::write(self.root.join("index.json"), &bytes)?;
        Ok(Blob {
            digest: format!("sha256:{}", hex(Sha256::digest(&bytes))),
            size: bytes.len() as u64,
        })
    }

    /// The layout as one tar (an `oci-archive:`), entries sorted, mtimes `epoch`.
    pub fn archive(&self, out: &Path, epoch: i64) -> io::Result<()> {
        let mut files = Vec::new();
        collect(&self.root, &self.root, &mut files)?;
        files.sort();
        let tmp = crate::fsutil::temp_path(out);
        let _ = fs::remove_file(&tmp);
        let mut b = tar::Builder::new(io::BufWriter::new(File::create(&tmp)?));
        for rel in &files {
            let p = self.root.join(rel);
            let mut h = tar::Header::new_ustar();
            h.set_mtime(epoch.max(0) as u64);
            h.set_uid(0);
            h.set_gid(0);
            if p.is_dir() {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, format!("{rel}/"), io::empty())?;
            } else {
                let f = File::open(&p)?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(f.metadata()?.len());
                b.append_data(&mut h, rel, f)?;
            }
        }
        let w = b.into_inner()?;
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, out)
    }
}

fn collect(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue; // a staging temp file
        }
        let rel = p
            .strip_prefix(base)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        out.push(rel);
        if p.is_dir() {
            collect(base, &p, out)?;
        }
    }
    Ok(())
}

/// The entries of a directory tree on this machine under `prefix` in the image (the
/// dist), sorted, owned by root, modes kept (0755 or 0644 by the execute bit).
pub fn tree_entries(dir: &Path, prefix: &str, out: &mut Vec<Entry>) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let name = n.to_str().ok_or_else(|| {
            io::Error::other(format!("{}: a name that is not UTF-8", dir.display()))
        })?;
        crate::safe::file_name(name).map_err(io::Error::other)?;
        let p = dir.join(name);
        let inside = format!("{prefix}/{name}");
        let m = fs::symlink_metadata(&p)?;
        if m.file_type().is_symlink() {
            let t = fs::read_link(&p)?;
            let t = t
                .to_str()
                .ok_or_else(|| io::Error::other("a link that is not UTF-8"))?;
            out.push(Entry::root_owned(&inside, 0o777, Node::Symlink(t.into())));
        } else if m.is_dir() {
            out.push(Entry::root_owned(&inside, 0o755, Node::Dir));
            tree_entries(&p, &inside, out)?;
        } else if m.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let mode = if m.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            out.push(Entry::root_owned(&inside, mode, Node::File(Data::Path(p))));
        } else {
            return Err(io::Error::other(format!(
                "{} is not a file, directory or symlink",
                p.display()
            )));
        }
    }
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn file_sha256(p: &Path) -> io::Result<String> {
    let mut f = File::open(p)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex(h.finalize()))
}

/// SHA-256 of bytes, `sha256:HEX`.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_or_refused() {
        assert_eq!(
            normalise("./usr/bin/x").unwrap().as_deref(),
            Some("usr/bin/x")
        );
        assert_eq!(normalise("./").unwrap(), None);
        assert!(normalise("./usr/../../etc").is_err());
        assert!(normalise("/etc/passwd").is_err());
        assert!(normalise("a\nb").is_err());
    }

    #[test]
    fn a_layer_is_the_same_bytes_whatever_the_order_or_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x");
        fs::write(&f, b"hello").unwrap();
        let entries = vec![
            Entry::root_owned("usr/bin/ollama", 0o755, Node::File(Data::Path(f.clone()))),
            Entry::root_owned("usr/bin", 0o755, Node::Dir),
            Entry::root_owned("usr/bin/o2", 0o755, Node::Hardlink("usr/bin/ollama".into())),
            Entry::root_owned("usr/lib/a.so", 0o777, Node::Symlink("a.so.1".into())),
        ];
        let l1 = Layout::create(&dir.path().join("a")).unwrap();
        let a = l1.layer(entries.clone(), 1_700_000_000, None).unwrap();
        let mut rev = entries;
        rev.reverse();
        let l2 = Layout::create(&dir.path().join("b")).unwrap();
        let b = l2.layer(rev, 1_700_000_000, None).unwrap();
        assert_eq!(a.blob, b.blob);
        assert_eq!(a.diff_id, b.diff_id);
        // The tar: sorted, the hard link after its target, every mtime the epoch.
        let gz = fs::File::open(l1.blob_path(&a.blob.digest)).unwrap();
        let mut t = tar::Archive::new(flate2::read::GzDecoder::new(gz));
        let got: Vec<(String, u64)> = t
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mtime().unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["usr/bin/", "usr/bin/ollama", "usr/lib/a.so", "usr/bin/o2"]
        );
        assert!(got.iter().all(|(_, m)| *m == 1_700_000_000));
    }
}
