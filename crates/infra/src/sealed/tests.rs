use super::*;

#[test]
fn every_entry_is_consistent() {
    for (i, t) in REGISTRY.iter().enumerate() {
        assert!(
            REGISTRY[..i].iter().all(|o| o.table != t.table),
            "{} registered twice",
            t.table
        );
        assert!(!t.columns.is_empty(), "{}: no sealed column", t.table);
        let keys: Vec<&str> = t.key.iter().map(|k| k.name()).collect();
        let row = match t.row {
            RowBinding::Uuid(c) => {
                assert!(t.key.contains(&KeyPart::Uuid(c)), "{}: row", t.table);
                c
            }
            RowBinding::BytesPrefix(c) => {
                assert!(t.key.contains(&KeyPart::Bytes(c)), "{}: row", t.table);
                c
            }
        };
        assert!(keys.contains(&row));
        if t.version == VersionAt::Header {
            assert_eq!(
                t.columns.len(),
                1,
                "{}: one header-versioned column",
                t.table
            );
        }
        for c in t.columns {
            assert!(!keys.contains(&c.column), "{}.{}", t.table, c.column);
            if let BindingName::Numbered { by, .. } = c.binding {
                assert!(
                    t.key.contains(&KeyPart::Int(by)),
                    "{}.{}",
                    t.table,
                    c.column
                );
            }
        }
        for index in t.blind_indexes {
            for source in index.from {
                assert!(
                    t.columns.iter().any(|c| c.column == *source),
                    "{}.{}: {source} is not sealed here",
                    t.table,
                    index.column
                );
            }
        }
    }
}

#[test]
fn a_joined_index_normalises_each_part() {
    let key = DataKey::new(
        1,
        &carapace_phi_crypto::envelope::DataKeyMaterial::generate(),
    );
    let index = patients::NAME_DOB_INDEX;
    assert_eq!(
        blind_index(&key, "patients", &index, &["  Roe ", "1980-02-03"]),
        blind_index(&key, "patients", &index, &["roe", "1980-02-03"]),
    );
    assert_ne!(
        blind_index(&key, "patients", &index, &["roe", "1980-02-03"]),
        blind_index(&key, "patients", &index, &["roe", "1980-02-04"]),
    );
}
