//! Cost of PHI encryption per patient record: encrypting and decrypting the
//! six PHI fields of a typical record, and the two blind indexes, compared
//! with a plain copy of the same bytes as the in-run baseline.

use std::hint::black_box;

use carapace_phi_crypto::envelope::{Binding, DataKey, DataKeyMaterial, normalise};
use criterion::{Criterion, criterion_group, criterion_main};

const FIELDS: [(&str, &str); 6] = [
    ("given_name", "Jane"),
    ("family_name", "Roe-Whitfield"),
    ("birth_date", "1980-02-03"),
    ("member_id", "MBR-0042-778812"),
    ("phone", "+1 (555) 010-0100"),
    ("email", "jane.roe-whitfield@example.org"),
];

fn record(c: &mut Criterion) {
    let key = DataKey::new(1, &DataKeyMaterial::generate());
    let org = [7u8; 16];
    let row = [9u8; 16];
    let at = |column| Binding {
        org: &org,
        table: "patients",
        column,
        row: &row,
    };
    let sealed: Vec<Vec<u8>> = FIELDS
        .iter()
        .map(|(col, v)| key.encrypt(&at(col), v.as_bytes()).unwrap_or_default())
        .collect();

    c.bench_function("baseline: copy the record's fields", |b| {
        b.iter(|| {
            FIELDS
                .iter()
                .map(|(_, v)| black_box(v.as_bytes().to_vec()))
                .collect::<Vec<_>>()
        })
    });
    c.bench_function("encrypt a patient record (6 fields)", |b| {
        b.iter(|| {
            FIELDS
                .iter()
                .map(|(col, v)| {
                    key.encrypt(&at(col), black_box(v.as_bytes()))
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>()
        })
    });
    c.bench_function("decrypt a patient record (6 fields)", |b| {
        b.iter(|| {
            FIELDS
                .iter()
                .zip(&sealed)
                .map(|((col, _), ct)| {
                    key.decrypt(&at(col), black_box(ct))
                        .map(|p| p.len())
                        .unwrap_or_default()
                })
                .sum::<usize>()
        })
    });
    c.bench_function("blind indexes of a record (member id, name+dob)", |b| {
        b.iter(|| {
            let m = key.blind_index(
                "patients",
                "member_id",
                normalise(black_box("MBR-0042-778812")).as_bytes(),
            );
            let n = key.blind_index(
                "patients",
                "family_name,birth_date",
                black_box(b"roe-whitfield|1980-02-03"),
            );
            (m, n)
        })
    });
}

criterion_group!(benches, record);
criterion_main!(benches);
