//! Names of x86 exception vectors, for the one-line reports of killed domains.

/// Short name of `vector` as the manuals write it.
pub fn name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE",
        1 => "#DB",
        2 => "NMI",
        3 => "#BP",
        4 => "#OF",
        5 => "#BR",
        6 => "#UD",
        7 => "#NM",
        8 => "#DF",
        10 => "#TS",
        11 => "#NP",
        12 => "#SS",
        13 => "#GP",
        14 => "#PF",
        16 => "#MF",
        17 => "#AC",
        18 => "#MC",
        19 => "#XM",
        20 => "#VE",
        21 => "#CP",
        9 | 15 | 22..=31 => "reserved exception",
        _ => "interrupt",
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::name(13), "#GP");
        assert_eq!(super::name(14), "#PF");
        assert_eq!(super::name(15), "reserved exception");
        assert_eq!(super::name(32), "interrupt");
    }
}
