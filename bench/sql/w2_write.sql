-- W2, the PHI write: the SQL Carapace runs for POST /api/v1/patients.
\set n random(1, :count)
SELECT org AS o, gen_random_uuid() AS p FROM bench_ids WHERE n = :n \gset
BEGIN;
SELECT set_config('app.org_id', ':o', true);
INSERT INTO patients (org_id, id, key_version, given_name, family_name, birth_date, member_id, phone, email, member_id_idx, name_dob_idx, created_at, updated_at) VALUES (':o', ':p', 1, decode(md5(random()::text) || md5(random()::text), 'hex'), decode(md5(random()::text) || md5(random()::text), 'hex'), decode(md5(random()::text), 'hex'), decode(md5(random()::text) || md5(random()::text), 'hex'), NULL, NULL, decode(md5(random()::text) || md5(random()::text), 'hex'), decode(md5(random()::text) || md5(random()::text), 'hex'), now(), now());
INSERT INTO patient_id_hashes (hash) VALUES (decode(md5(':p') || md5(':o'), 'hex'));
INSERT INTO care_assignments (org_id, patient_id, subject, created_at) VALUES (':o', ':p', 'bench-clinician', now());
INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type, resource_id, outcome, body) VALUES (':o', gen_random_uuid(), now(), 'bench-clinician', 'patient.create', 'patient', ':p', 'allowed', '{"id":"00000000-0000-7000-8000-000000000000","org":"00000000-0000-0000-0000-000000000000","at":"2026-11-23T18:00:00.000000Z","actor":"bench-clinician","actor_kind":"user","acting_for":null,"action":"patient.read","resource_type":"patient","resource_id":"00000000-0000-0000-0000-000000000000","phi_fields":["given_name","family_name","birth_date","member_id","phone","email"],"outcome":"allowed","origin":{"request_id":"00000000000000000000000000000000","client_ip":"127.0.0.1","user_agent":null},"detail":null}');
COMMIT;
