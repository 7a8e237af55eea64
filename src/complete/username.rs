//! One spelling per username, for login throttling: variants that an account directory
//! may treat as the same name must count against the same name.

use caseless::Caseless;
use unicode_normalization::UnicodeNormalization;

/// The canonical form of a username as typed: surrounding whitespace trimmed, Unicode
/// NFKC, then full default case folding (Unicode §3.13: `ß` folds to `ss`, `ﬁ` to `fi`,
/// `Σ`/`ς` to `σ`), so that `" Alice "`, `"ALICE"` and full-width `"ＡＬＩＣＥ"` are
/// all `alice`, and `"Straße"` and `"STRASSE"` are both `strasse`.
///
/// Folding can leave a string that is no longer NFKC (`ß` + acute folds to `ss` +
/// acute, but `SS` + acute normalizes to `sś`), and NFKC can turn a character at either
/// end into a space (`‾` is a space and a combining overline), so the result is
/// normalized and trimmed once more. Then the two spellings meet, and the function is
/// idempotent: a canonical name canonicalized again (when it is stored, and when it is
/// looked up) does not change.
///
/// The result is a throttling key, not an identity: it may merge names that the account
/// directory keeps apart (that only makes their limits shared), and it is never shown.
pub(crate) fn canonical_username(raw: &str) -> String {
    let folded: String = raw.trim().nfkc().default_case_fold().nfkc().collect();
    let trimmed = folded.trim();
    if trimmed.len() == folded.len() {
        folded
    } else {
        trimmed.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn surrounding_whitespace_is_trimmed() {
        assert_eq!(canonical_username(" Alice "), "alice");
        assert_eq!(canonical_username("\t\nalice\r\n"), "alice");
        // Unicode whitespace too: no-break space, ideographic space.
        assert_eq!(canonical_username("\u{a0}alice\u{3000}"), "alice");
    }

    #[test]
    fn inner_whitespace_is_kept() {
        assert_eq!(canonical_username("Mary Ann"), "mary ann");
        assert_ne!(
            canonical_username("Mary Ann"),
            canonical_username("MaryAnn")
        );
    }

    #[test]
    fn case_is_folded() {
        assert_eq!(canonical_username("ALICE"), "alice");
        assert_eq!(canonical_username("aLiCe"), "alice");
        assert_eq!(canonical_username("Alice@Example.COM"), "alice@example.com");
    }

    #[test]
    fn full_width_letters_are_their_ascii() {
        assert_eq!(canonical_username("ＡＬＩＣＥ"), "alice");
        assert_eq!(canonical_username("ａｌｉｃｅ"), "alice");
    }

    #[test]
    fn sharp_s_folds_to_ss() {
        // Full case folding: to_lowercase would keep `ß` and the two would differ.
        assert_eq!(canonical_username("Straße"), "strasse");
        assert_eq!(canonical_username("STRASSE"), "strasse");
        assert_eq!(canonical_username("STRAẞE"), "strasse");
        assert_ne!("Straße".to_lowercase(), "STRASSE".to_lowercase());
    }

    #[test]
    fn ligatures_are_their_letters() {
        assert_eq!(canonical_username("ﬁ"), "fi");
        assert_eq!(canonical_username("ﬁnn"), canonical_username("Finn"));
        assert_eq!(canonical_username("ﬃ"), "ffi");
    }

    #[test]
    fn canonically_equivalent_spellings_meet() {
        // Precomposed é and e + combining acute.
        assert_eq!(
            canonical_username("José"),
            canonical_username("Jose\u{301}")
        );
        assert_eq!(canonical_username("JOSÉ"), "josé");
        // Kelvin sign and Ångström sign are their letters.
        assert_eq!(canonical_username("\u{212a}"), "k");
        assert_eq!(canonical_username("\u{212b}"), "å");
    }

    #[test]
    fn greek_sigma_forms_meet() {
        assert_eq!(
            canonical_username("ΟΔΥΣΣΕΥΣ"),
            canonical_username("οδυσσευς")
        );
    }

    #[test]
    fn distinct_names_stay_distinct() {
        let names = [
            "alice",
            "alicia",
            "alice2",
            "bob",
            "b0b",
            "al ice",
            "alice.smith",
            "alice_smith",
            "josé",
            "jose",
            "straße",
            "strase",
            "ödön",
            "odon",
            "İstanbul",
            "istanbul",
            "Ⅳ",
            "V",
            "",
            "élan",
            "elan",
        ];
        let canon: Vec<String> = names.iter().map(|n| canonical_username(n)).collect();
        for (i, a) in canon.iter().enumerate() {
            for (j, b) in canon.iter().enumerate() {
                if i != j {
                    assert_ne!(a, b, "{:?} and {:?}", names[i], names[j]);
                }
            }
        }
    }

    #[test]
    fn empty_and_blank_are_empty() {
        assert_eq!(canonical_username(""), "");
        assert_eq!(canonical_username("   "), "");
    }

    #[test]
    fn folded_result_is_normalized_again() {
        // `ß` + acute folds to `ss` + acute, which NFKC composes to `sś`: without the
        // second pass it would differ from `SS` + acute.
        assert_eq!(canonical_username("ß\u{301}"), "s\u{15b}");
        assert_eq!(
            canonical_username("ß\u{301}"),
            canonical_username("SS\u{301}")
        );
        // `ǰ` folds to `j` + caron, which has no other precomposed form: back to `ǰ`.
        assert_eq!(canonical_username("\u{1f0}"), "\u{1f0}");
        assert_eq!(canonical_username("J\u{30c}"), "\u{1f0}");
    }

    #[test]
    fn compatibility_space_at_an_edge_is_trimmed() {
        // NFKC turns the overline into a space and a combining overline, the diaeresis
        // into a space and a combining diaeresis.
        for raw in ["\u{203e}a", "a\u{a8}", "\u{a8}"] {
            let once = canonical_username(raw);
            assert!(!once.starts_with(' ') && !once.ends_with(' '), "{once:?}");
            assert_eq!(canonical_username(&once), once, "{raw:?}");
        }
    }

    proptest! {
        #[test]
        fn canonical_is_idempotent(raw in any::<String>()) {
            let once = canonical_username(&raw);
            prop_assert_eq!(canonical_username(&once), once);
        }

        #[test]
        fn canonical_ignores_ascii_case_and_edges(raw in "[ \t]{0,3}[A-Za-z0-9._@-]{1,20}[ \t]{0,3}") {
            let lower = canonical_username(&raw.to_ascii_lowercase());
            prop_assert_eq!(canonical_username(&raw.to_ascii_uppercase()), lower.clone());
            prop_assert_eq!(lower, raw.trim().to_ascii_lowercase());
        }
    }
}
