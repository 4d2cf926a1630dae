//! Reading a Debian package without dpkg: a `.deb` is an `ar` archive holding
//! `debian-binary`, `control.tar.*` and `data.tar.*`, the files the package installs. This
//! module takes one file out of `data.tar.xz`.
//!
//! The `ar` format: the magic `!<arch>\n`, then members, each a 60-byte header of
//! space-padded ASCII fields (name 16, date 12, uid 6, gid 6, mode 8, size 10, then the
//! two bytes `` `\n ``) and its data, padded to an even length. The archive is checked as
//! it is read: a bad header or a size past its end is an error naming the member's offset.

use crate::{Error, Result};
use std::io::Read;

const MAGIC: &[u8] = b"!<arch>\n";
const HEADER_LEN: usize = 60;

/// One member of an `ar` archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member<'a> {
    /// Its name (GNU ar's trailing `/` removed).
    pub name: String,
    /// Its bytes.
    pub data: &'a [u8],
}

/// The members of the `ar` archive `bytes`, in order. `what` names the archive in errors.
pub fn ar_members<'a>(bytes: &'a [u8], what: &str) -> Result<Vec<Member<'a>>> {
    let bad =
        |offset: usize, why: &str| Error::failed(format!("{what} is not a valid ar archive: {why} at byte {offset}"));
    if !bytes.starts_with(MAGIC) {
        return Err(bad(0, "no !<arch> magic"));
    }
    let mut members = Vec::new();
    let mut offset = MAGIC.len();
    while offset < bytes.len() {
        let header = bytes.get(offset..offset + HEADER_LEN).ok_or_else(|| bad(offset, "a header cut short"))?;
        if &header[58..60] != b"`\n" {
            return Err(bad(offset, "a header without its end marker"));
        }
        let field = |range: std::ops::Range<usize>| std::str::from_utf8(&header[range]).map(str::trim_end);
        let name = field(0..16).map_err(|_| bad(offset, "a name that is not text"))?;
        let size: usize = field(48..58)
            .ok()
            .and_then(|size| size.parse().ok())
            .ok_or_else(|| bad(offset, "a size that is not a number"))?;
        let start = offset + HEADER_LEN;
        let end = start
            .checked_add(size)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| bad(offset, "a member past the end"))?;
        let name = name.strip_suffix('/').unwrap_or(name).to_string();
        members.push(Member { name, data: &bytes[start..end] });
        offset = end + (size % 2);
    }
    Ok(members)
}

/// The contents of `path` (as the package installs it, e.g. `bin/busybox`) from the
/// package `deb`: its `data.tar.xz` is decompressed and searched up to that file.
pub fn extract_file(deb: &[u8], path: &str, what: &str) -> Result<Vec<u8>> {
    let members = ar_members(deb, what)?;
    if !members.iter().any(|member| member.name == "debian-binary" && member.data.starts_with(b"2.")) {
        return Err(Error::failed(format!("{what} is not a Debian package (no debian-binary 2.x member)")));
    }
    let data = members
        .iter()
        .find(|member| member.name.starts_with("data.tar"))
        .ok_or_else(|| Error::failed(format!("{what} has no data.tar member")))?;
    if data.name != "data.tar.xz" {
        return Err(Error::failed(format!(
            "{what} holds {}, and only xz-compressed package data is read (Debian's default since 2014)",
            data.name
        )));
    }
    // The archive is read as it is decompressed, and decompression stops once the file
    // is found: a kernel's 70 MB package holds 400 MB of modules after its vmlinuz.
    let (reader, mut writer) =
        std::io::pipe().map_err(|error| Error::failed(format!("{what}: cannot make a pipe: {error}")))?;
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let decoded = lzma_rs::xz_decompress(&mut std::io::BufReader::new(data.data), &mut writer);
            decoded.map_err(|error| format!("{error:?}"))
        });
        // The reader is closed when this returns, which ends the decoder's writes.
        let found = file_from_tar(reader, path, what);
        match (found, decoder.join()) {
            (Ok(contents), _) => Ok(contents),
            (Err(_), Ok(Err(error))) => Err(Error::failed(format!("{what}: data.tar.xz does not decompress: {error}"))),
            (Err(_), Err(_)) => Err(Error::failed(format!("{what}: the xz decoder failed"))),
            (Err(error), Ok(Ok(()))) => Err(error),
        }
    })
}

/// `path` from the tar archive read from `tar` (members are named `./bin/busybox` in
/// packages).
fn file_from_tar(tar: impl Read, path: &str, what: &str) -> Result<Vec<u8>> {
    let broken = |error: std::io::Error| Error::failed(format!("{what}: the data archive is damaged: {error}"));
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let name = entry.path().map_err(broken)?.to_string_lossy().into_owned();
        if name.trim_start_matches("./") == path && entry.header().entry_type().is_file() {
            let mut contents = Vec::new();
            entry.read_to_end(&mut contents).map_err(broken)?;
            return Ok(contents);
        }
    }
    Err(Error::failed(format!("{what} does not install {path}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An `ar` member as ar writes it.
    fn ar_member(archive: &mut Vec<u8>, name: &str, data: &[u8]) {
        archive.extend_from_slice(
            format!("{name:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", 0, 0, 0, "100644", data.len()).as_bytes(),
        );
        archive.extend_from_slice(data);
        if data.len() % 2 == 1 {
            archive.push(b'\n');
        }
    }

    fn tar_with(path: &str, contents: &[u8]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        let mut directory = tar::Header::new_gnu();
        directory.set_entry_type(tar::EntryType::Directory);
        directory.set_path("./bin/").unwrap();
        directory.set_size(0);
        directory.set_cksum();
        builder.append(&directory, &[][..]).unwrap();
        let mut header = tar::Header::new_gnu();
        header.set_path(path).unwrap();
        header.set_size(contents.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder.append(&header, contents).unwrap();
        builder.into_inner().unwrap()
    }

    fn xz(bytes: &[u8]) -> Vec<u8> {
        let mut compressed = Vec::new();
        lzma_rs::xz_compress(&mut std::io::BufReader::new(bytes), &mut compressed).unwrap();
        compressed
    }

    fn package(data_name: &str, data: &[u8]) -> Vec<u8> {
        let mut deb = MAGIC.to_vec();
        ar_member(&mut deb, "debian-binary", b"2.0\n");
        ar_member(&mut deb, "control.tar.xz", &xz(b"control"));
        ar_member(&mut deb, data_name, data);
        deb
    }

    #[test]
    fn a_file_comes_out_of_a_package() {
        let deb = package("data.tar.xz", &xz(&tar_with("./bin/busybox", b"\x7fELF odd-length")));
        assert_eq!(extract_file(&deb, "bin/busybox", "test.deb").unwrap(), b"\x7fELF odd-length");
        let error = extract_file(&deb, "bin/sh", "test.deb").unwrap_err();
        assert_eq!(error.message, "test.deb does not install bin/sh");
    }

    #[test]
    fn members_are_read_with_padding_and_gnu_names() {
        let mut archive = MAGIC.to_vec();
        ar_member(&mut archive, "odd/", b"abc");
        ar_member(&mut archive, "even", b"abcd");
        let members = ar_members(&archive, "a").unwrap();
        assert_eq!(
            members,
            [Member { name: "odd".into(), data: b"abc" }, Member { name: "even".into(), data: b"abcd" }]
        );
    }

    #[test]
    fn damaged_archives_are_errors_never_panics() {
        let deb = package("data.tar.xz", &xz(&tar_with("./bin/busybox", b"x")));
        for length in 0..deb.len() {
            let _ = extract_file(&deb[..length], "bin/busybox", "cut.deb");
        }
        assert!(ar_members(b"!<arch>\nshort", "a").unwrap_err().message.contains("a header cut short at byte 8"));
        let mut wrong_size = MAGIC.to_vec();
        ar_member(&mut wrong_size, "x", b"12");
        wrong_size[8 + 48] = b'9';
        assert!(ar_members(&wrong_size, "a").unwrap_err().message.contains("a member past the end"));
        assert!(ar_members(b"PK\x03\x04", "a.deb").unwrap_err().message.contains("no !<arch> magic"));
        let mut not_debian = MAGIC.to_vec();
        ar_member(&mut not_debian, "data.tar.xz", b"");
        assert!(extract_file(&not_debian, "x", "n.deb").unwrap_err().message.contains("not a Debian package"));
        let zstd = package("data.tar.zst", b"\x28\xb5\x2f\xfd");
        assert!(extract_file(&zstd, "x", "z.deb").unwrap_err().message.contains("holds data.tar.zst"));
        let garbage = package("data.tar.xz", b"not xz at all");
        assert!(extract_file(&garbage, "x", "g.deb").unwrap_err().message.contains("does not decompress"));
    }
}
