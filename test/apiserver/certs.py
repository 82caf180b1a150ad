"""A throw-away CA, serving certificate and client certificates per run,
made with the openssl CLI (Python's stdlib cannot create certificates)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess

DEFAULT_SANS = ["127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default",
                "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]


class CertError(RuntimeError):
    pass


def _openssl(*args: str, cwd: str) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise CertError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def _san_entry(name: str) -> str:
    try:
        ipaddress.ip_address(name)
        return f"IP:{name}"
    except ValueError:
        return f"DNS:{name}"


def generate(cert_dir: str, extra_sans: list[str] | None = None) -> dict[str, str]:
    """Writes ca.crt, ca.key, server.crt, server.key into `cert_dir` (kept if
    already there, so a restarted server keeps its identity) and returns their paths."""
    if shutil.which("openssl") is None:
        raise CertError("needs 'openssl' (Debian package openssl; scripts/setup.sh installs it)")
    os.makedirs(cert_dir, exist_ok=True)
    paths = {name: os.path.join(cert_dir, name) for name in ("ca.crt", "ca.key", "server.crt", "server.key")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    sans = list(dict.fromkeys(DEFAULT_SANS + list(extra_sans or [])))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
             "-subj", "/CN=microseg-test-apiserver-ca",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=cert_dir)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=kube-apiserver",
             cwd=cert_dir)
    with open(os.path.join(cert_dir, "server.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                f"subjectAltName={','.join(_san_entry(s) for s in sans)}\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "7", "-extfile", "server.ext", cwd=cert_dir)
    for path in (paths["ca.key"], paths["server.key"]):
        os.chmod(path, 0o600)
    return paths


def generate_client(cert_dir: str, user: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    """A client certificate signed by the run's CA (generate() first), as
    kube-apiserver's x509 authenticator reads it: CN = user name, O = groups.
    Returns the paths of <user>.crt and <user>.key."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in user)
    paths = {"crt": os.path.join(cert_dir, f"client-{safe}.crt"), "key": os.path.join(cert_dir, f"client-{safe}.key")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    subject = f"/CN={user}" + "".join(f"/O={group}" for group in groups)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", paths["key"], "-out", f"client-{safe}.csr", "-subj", subject, cwd=cert_dir)
    with open(os.path.join(cert_dir, "client.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", f"client-{safe}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", paths["crt"], "-days", "7", "-extfile", "client.ext", cwd=cert_dir)
    os.chmod(paths["key"], 0o600)
    return paths
