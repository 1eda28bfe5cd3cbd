# Builds ESP packets independently (Python `cryptography`) for the Rust decapsulation tests.
import hmac, hashlib, struct
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

inner = bytes.fromhex("4500001c00010000400100000ac800050a4d000a0800f7ff00000000")  # ICMP echo
spi, seq = 0x01020304, 7

def pad(n, align):
    p = (align - (n + 2) % align) % align
    return bytes(range(1, p + 1)) + bytes([p, 4])

def cbc(alg, block, key, iv, mac_alg, mac_key, icv):
    pt = inner + pad(len(inner), block)
    e = Cipher(alg(key), modes.CBC(iv)).encryptor()
    ct = e.update(pt) + e.finalize()
    signed = struct.pack(">II", spi, seq) + iv + ct
    return signed + hmac.new(mac_key, signed, mac_alg).digest()[:icv]

aes_key = bytes(range(16)); aes_iv = bytes(range(0x10, 0x20)); sha256_key = bytes(range(0x40, 0x60))
print("aes128_sha256", cbc(algorithms.AES, 16, aes_key, aes_iv, hashlib.sha256, sha256_key, 16).hex())
des_key = bytes(range(0x20, 0x38)); des_iv = bytes(range(0x60, 0x68)); md5_key = bytes(range(0x70, 0x80))
print("3des_md5", cbc(TripleDES, 8, des_key, des_iv, hashlib.md5, md5_key, 12).hex())
# GCM, with the IV our encapsulation uses for packet `seq` (the counter).
gkey = bytes(range(16)); salt = bytes.fromhex("a0a1a2a3"); iv = struct.pack(">Q", seq)
aad = struct.pack(">II", spi, seq)
ct = AESGCM(gkey).encrypt(salt + iv, inner + pad(len(inner), 4), aad)
print("gcm128", (aad + iv + ct).hex())
# AES-192-GCM (RustCrypto's aes-gcm in the datapath, ring has no 192): key 0..23.
gkey192 = bytes(range(24))
ct = AESGCM(gkey192).encrypt(salt + iv, inner + pad(len(inner), 4), aad)
print("gcm192", (aad + iv + ct).hex())
