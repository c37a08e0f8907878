//! Reading a file someone else wrote, with a bound: a scenario, a config, a model's
//! config or a key is small, and a file that is not (a mistake or an attack: a device, a
//! multi-GB file) is refused before it is read into memory.

use std::io::Read;
use std::path::Path;

/// The most a scenario, config file or model `config.json` may hold.
pub const MAX_TEXT_BYTES: u64 = 4 << 20;

/// The text of `path`, if it holds at most `max` bytes of UTF-8. The error says which
/// bound it broke; the caller adds which file it was and what it is for.
pub fn read_text(path: &Path, max: u64) -> std::io::Result<String> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Err(too_big(len, max));
    }
    // The size a file reports can be wrong (a FIFO, /proc): read one byte past the bound.
    let mut bytes = Vec::with_capacity(len as usize);
    f.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64, max));
    }
    String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

fn too_big(len: u64, max: u64) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{len} bytes or more, over the limit of {max} for this kind of file (is it the right file?)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_the_bound_is_refused_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("vigil-bounded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.toml");
        std::fs::write(&small, "a = 1\n").unwrap();
        assert_eq!(read_text(&small, 16).unwrap(), "a = 1\n");
        let big = dir.join("big.toml");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(10 << 30).unwrap(); // sparse: 10 GiB claimed, no disk used
        let e = read_text(&big, MAX_TEXT_BYTES).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        assert!(read_text(&small, 16).unwrap_err().to_string().contains("not UTF-8"));
        // /dev/zero reports no size and never ends: the bound stops the read.
        let e = read_text(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
