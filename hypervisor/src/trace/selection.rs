//! Which domains `trace=` selects: all of them, or a list of domain ids and image names.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One item of a `trace=` list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// A domain id (decimal, from 1).
    Id(u32),
    /// Every domain started from this image.
    Image(String),
}

/// The domains `trace=` names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `trace=all` (or a bare `trace`).
    All,
    /// `trace=<id|image>[,<id|image>]...`.
    Some(Vec<Selector>),
}

impl Selection {
    /// Parses the value of `trace=`; the error says what is wrong with it.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value == "all" {
            return Ok(Self::All);
        }
        let mut selectors = Vec::new();
        for item in value.split(',') {
            if item.is_empty() {
                return Err("an empty item; write trace=all or trace=<id|image>[,<id|image>]...".to_string());
            }
            // Digits are an id (as domain ids are written: `d1` is 1); a name wins nothing.
            let selector = if item.bytes().all(|byte| byte.is_ascii_digit()) {
                match item.parse::<u32>() {
                    Ok(id) if id > 0 => Selector::Id(id),
                    _ => return Err(alloc::format!("'{item}' is not a domain id (ids start at 1)")),
                }
            } else {
                Selector::Image(item.to_string())
            };
            selectors.push(selector);
        }
        Ok(Self::Some(selectors))
    }

    /// Whether domain `id`, started from `image`, is traced.
    pub fn includes(&self, id: u32, image: &str) -> bool {
        match self {
            Self::All => true,
            Self::Some(selectors) => selectors.iter().any(|selector| match selector {
                Selector::Id(wanted) => *wanted == id,
                Selector::Image(wanted) => wanted == image,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_and_lists_select_by_id_and_image() {
        assert!(Selection::parse("all").unwrap().includes(7, "x"));
        let some = Selection::parse("2,pingpong").unwrap();
        assert!(some.includes(2, "hello"));
        assert!(some.includes(5, "pingpong"));
        assert!(!some.includes(1, "hello"));
    }

    #[test]
    fn bad_lists_are_refused_with_the_reason() {
        assert!(Selection::parse("").unwrap_err().contains("empty item"));
        assert!(Selection::parse("1,,2").unwrap_err().contains("empty item"));
        assert!(Selection::parse("0").unwrap_err().contains("ids start at 1"));
        assert!(Selection::parse("99999999999").unwrap_err().contains("not a domain id"));
    }
}
