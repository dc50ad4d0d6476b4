//! Identifier case folding: one rule for every path (planning, writes, the
//! catalogs, COPY, the wire's column names). As in PostgreSQL and
//! DataFusion's planner, an unquoted identifier is lowered in ASCII only
//! (`Ärger` stays `Ärger`, `NAME` becomes `name`); a quoted one is kept as
//! written.

use datafusion::sql::sqlparser::ast::Ident;

/// Fold the text of an unquoted identifier.
pub fn fold(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// An identifier's name: as written if quoted, else folded.
pub fn normalize(i: &Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        fold(&i.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_ascii_only_and_keeps_quoted() {
        assert_eq!(normalize(&Ident::new("ÄrgerLIST")), "Ärgerlist");
        assert_eq!(normalize(&Ident::with_quote('"', "ÄrgerLIST")), "ÄrgerLIST");
        assert_eq!(fold("ΣΊΣΥΦΟΣ"), "ΣΊΣΥΦΟΣ");
    }
}
