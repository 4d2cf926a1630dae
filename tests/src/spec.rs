//! SPEC.md against the code: tables the specification and hypercall-abi both state must
//! say the same thing, so the documentation cannot drift from the ABI.

use hypercall_abi::Hypercall;

/// The rows of the table in SPEC.md section `heading` (its first table), as (number,
/// name) pairs from the first two columns: `| 17 | `version` ... |`.
fn hypercall_rows(spec: &str, heading: &str) -> Result<Vec<(u64, String)>, String> {
    let section = spec.split_once(heading).ok_or_else(|| format!("no heading '{heading}'"))?.1;
    let table = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        // The header and the separator row.
        .skip(2);
    table
        .map(|row| {
            let mut cells = row.split('|').skip(1).map(str::trim);
            let number = cells.next().unwrap_or_default();
            let name = cells.next().unwrap_or_default();
            let number = number.parse().map_err(|_| format!("row '{row}': number '{number}'"))?;
            let name = name.split('`').nth(1).ok_or_else(|| format!("row '{row}': no `name`"))?;
            Ok((number, name.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = include_str!("../../SPEC.md");
    const ALL_HYPERCALLS: &str = "### 6.4. All hypercalls";

    #[test]
    fn section_6_4_lists_exactly_the_hypercalls_of_the_abi() {
        let rows = hypercall_rows(SPEC, ALL_HYPERCALLS).unwrap();
        let abi: Vec<(u64, String)> = Hypercall::ALL.iter().map(|(call, name)| (call.0, name.to_string())).collect();
        assert_eq!(rows, abi, "SPEC.md §6.4 against hypercall_abi::Hypercall::ALL");
    }

    #[test]
    fn a_drifted_table_is_seen() {
        let good = "### 6.4. All hypercalls\n\n| number | name | section |\n|---|---|---|\n| 0 | `set_trap_table` | §11.1 |\n| 17 | `version` | §6.1 |\n\nNumbers follow Xen's.\n";
        assert_eq!(
            hypercall_rows(good, ALL_HYPERCALLS).unwrap(),
            [(0, "set_trap_table".into()), (17, "version".into())]
        );
        let renumbered = good.replace("| 17 |", "| 18 |");
        assert_ne!(hypercall_rows(&renumbered, ALL_HYPERCALLS).unwrap(), hypercall_rows(good, ALL_HYPERCALLS).unwrap());
        assert!(hypercall_rows(&good.replace("| 17 |", "| x |"), ALL_HYPERCALLS).unwrap_err().contains("number 'x'"));
        assert!(hypercall_rows(&good.replace("`version`", "version"), ALL_HYPERCALLS)
            .unwrap_err()
            .contains("no `name`"));
        assert!(hypercall_rows(good, "### 6.5.").is_err());
    }
}
