"""One-shot set-up of the compose stack's stand-ins (runs in the moto image,
which carries Python, `cryptography` and `boto3`).

    bootstrap.py certs DIR       a CA and PostgreSQL's server certificate
                                 (names: postgres, localhost), kept if present
    bootstrap.py aws ENDPOINT    in the local KMS/S3 stand-in: the key
                                 alias/carapace and the witness bucket with
                                 Object Lock, each created once

Nothing here is for production: there, the CA is your database provider's,
the key is a KMS key and the bucket a real one with Object Lock.
"""

import datetime
import os
import sys

POSTGRES_UID = 999  # the postgres user of the official PostgreSQL image


def certs(out):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    if os.path.exists(os.path.join(out, "server.pem")):
        print(f"certificates already in {out}")
        return
    os.makedirs(out, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    later = now + datetime.timedelta(days=825)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("carapace compose CA"))
        .issuer_name(name("carapace compose CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(name("postgres"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(later)
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("postgres"), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    with open(os.path.join(out, "ca.pem"), "wb") as f:
        f.write(ca.public_bytes(pem))
    with open(os.path.join(out, "server.pem"), "wb") as f:
        f.write(server.public_bytes(pem))
    key_path = os.path.join(out, "server.key")
    with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
        f.write(
            key.private_bytes(
                pem,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    if os.geteuid() == 0:
        os.chown(key_path, POSTGRES_UID, POSTGRES_UID)
    os.chmod(os.path.join(out, "ca.pem"), 0o644)
    os.chmod(os.path.join(out, "server.pem"), 0o644)
    print(f"CA and server certificate written to {out}")


def aws(endpoint):
    import boto3

    session = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name="us-east-1"
    )
    kms = session.client("kms", endpoint_url=endpoint)
    aliases = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
    if "alias/carapace" not in aliases:
        key = kms.create_key(Description="carapace compose key-encryption key")
        kms.create_alias(AliasName="alias/carapace", TargetKeyId=key["KeyMetadata"]["KeyId"])
        print("KMS key alias/carapace created")
    s3 = session.client("s3", endpoint_url=endpoint)
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if "carapace-witness" not in buckets:
        s3.create_bucket(Bucket="carapace-witness", ObjectLockEnabledForBucket=True)
        print("witness bucket carapace-witness created (Object Lock)")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("certs", "aws"):
        sys.exit(__doc__)
    {"certs": certs, "aws": aws}[sys.argv[1]](sys.argv[2])
