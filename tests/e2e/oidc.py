"""A made-up OIDC issuer for the tests: an RSA (or P-256) key of its own, its JWKS written to a
file the server reads (TINGXIE_OIDC_JWKS), and tokens shaped like the ones Knative Eventing
puts on each delivery (`authentication-oidc`: a service-account token for the sink's
audience)."""

import base64
import json
import time
import uuid
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIENCE = "tingxie-sink"
BROKER = "system:serviceaccount:knative-eventing:mt-broker-ingress-oidc"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uint(n: int, size: int | None = None) -> bytes:
    return n.to_bytes(size or (n.bit_length() + 7) // 8, "big")


class Issuer:
    def __init__(self, issuer: str = ISSUER, curve: bool = False):
        self.issuer = issuer
        self.kid = uuid.uuid4().hex[:12]
        self.key = ec.generate_private_key(ec.SECP256R1()) if curve else rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict:
        numbers = self.key.public_key().public_numbers()
        if isinstance(self.key, rsa.RSAPrivateKey):
            return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": b64(uint(numbers.n)), "e": b64(uint(numbers.e))}
        return {"kty": "EC", "crv": "P-256", "use": "sig", "kid": self.kid, "x": b64(uint(numbers.x, 32)), "y": b64(uint(numbers.y, 32))}

    def write_jwks(self, path: Path, *others: "Issuer") -> Path:
        path.write_text(json.dumps({"keys": [self.jwk(), *(o.jwk() for o in others)]}))
        return path

    def token(self, audience: str = AUDIENCE, expires_in: float = 600, **claims) -> str:
        now = int(time.time())
        rsa_key = isinstance(self.key, rsa.RSAPrivateKey)
        header = {"alg": "RS256" if rsa_key else "ES256", "kid": self.kid, "typ": "JWT"}
        body = {"iss": self.issuer, "aud": [audience], "sub": BROKER, "iat": now, "nbf": now, "exp": now + expires_in, **claims}
        message = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(body).encode())}".encode()
        if rsa_key:
            signature = self.key.sign(message, padding.PKCS1v15(), hashes.SHA256())
        else:
            r, s = decode_dss_signature(self.key.sign(message, ec.ECDSA(hashes.SHA256())))
            signature = uint(r, 32) + uint(s, 32)
        return f"{message.decode()}.{b64(signature)}"

    def env(self, jwks: Path) -> dict:
        """The server's settings that trust this issuer."""
        return {"TINGXIE_OIDC_ISSUER": self.issuer, "TINGXIE_OIDC_AUDIENCE": AUDIENCE, "TINGXIE_OIDC_JWKS": jwks}

    def bearer(self, **kwargs) -> dict:
        return {"authorization": f"Bearer {self.token(**kwargs)}"}
