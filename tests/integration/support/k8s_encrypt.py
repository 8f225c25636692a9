#!/usr/bin/env python3
"""Encrypts a value as kube-apiserver's encryption at rest stores it, independently of lifeboat
(Python's cryptography and PyNaCl), for the --from-etcd tests.

usage: k8s_encrypt.py PROVIDER KEYNAME BASE64KEY ETCDKEY < plain > stored
PROVIDER: aescbc (IV + AES-CBC, PKCS#7), aesgcm (nonce + AES-GCM, the etcd key as additional
authenticated data), secretbox (nonce + XSalsa20-Poly1305).
"""
import base64
import os
import sys

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def main():
    provider, key_name, key_b64, etcd_key = sys.argv[1:5]
    key = base64.b64decode(key_b64)
    plain = sys.stdin.buffer.read()
    prefix = f"k8s:enc:{provider}:v1:{key_name}:".encode()
    if provider == "aescbc":
        iv = os.urandom(16)
        padder = padding.PKCS7(128).padder()
        padded = padder.update(plain) + padder.finalize()
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        body = iv + enc.update(padded) + enc.finalize()
    elif provider == "aesgcm":
        nonce = os.urandom(12)
        body = nonce + AESGCM(key).encrypt(nonce, plain, etcd_key.encode())
    elif provider == "secretbox":
        import nacl.secret
        import nacl.utils

        nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
        body = bytes(nacl.secret.SecretBox(key).encrypt(plain, nonce))
    else:
        sys.exit(f"unknown provider {provider}")
    sys.stdout.buffer.write(prefix + body)


if __name__ == "__main__":
    main()
