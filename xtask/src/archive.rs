//! The boot archive (contract: "Boot archive"): a ustar file, one regular member per guest
//! image, named by the image name the command line uses.

use crate::{Error, Result};

/// Longest member name a ustar header holds without a prefix field.
pub const NAME_MAX: usize = 100;

/// Checks that `name` can be an image name: non-empty, at most [`NAME_MAX`] bytes, no
/// directory separator, and nothing the command-line grammar uses as a separator.
pub fn check_name(name: &str) -> Result<()> {
    let bad = name.is_empty()
        || name.len() > NAME_MAX
        || name.contains(['/', ',', ' ', '=', '\0'])
        || name == "."
        || name == "..";
    if bad {
        Err(Error::usage(format!(
            "image name '{name}' cannot go into the boot archive: it must be 1..={NAME_MAX} bytes without '/', ',', '=', spaces or NULs"
        )))
    } else {
        Ok(())
    }
}

/// Builds the archive from `(name, bytes)` pairs, in order.
pub fn build(members: &[(String, Vec<u8>)]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in members {
        check_name(name)?;
        let mut header = tar::Header::new_ustar();
        header.set_path(name).map_err(|error| Error::usage(format!("image name '{name}': {error}")))?;
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        builder
            .append(&header, bytes.as_slice())
            .map_err(|error| Error::failed(format!("cannot add '{name}' to the boot archive: {error}")))?;
    }
    builder.into_inner().map_err(|error| Error::failed(format!("cannot finish the boot archive: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn members_round_trip_in_order_as_ustar() {
        let members = vec![
            ("hello".to_string(), b"\x7fELF hello".to_vec()),
            ("empty".to_string(), Vec::new()),
            ("companion".to_string(), vec![0xa5; 1000]),
        ];
        let bytes = build(&members).unwrap();
        assert_eq!(bytes.len() % 512, 0);
        assert_eq!(&bytes[257..263], b"ustar\0", "POSIX ustar magic");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            assert_eq!(entry.header().mode().unwrap(), 0o644);
            assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
            let name = entry.path().unwrap().to_str().unwrap().to_string();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            seen.push((name, content));
        }
        assert_eq!(seen, members);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "a/b", "a,b", "a b", "x=y", &"n".repeat(101)] {
            assert!(build(&[(name.to_string(), vec![1])]).is_err(), "{name:?}");
        }
        assert!(build(&[("n".repeat(100), vec![1])]).is_ok());
    }
}
