// The ring listener's TLS identity: an Ed25519 key and a self-signed X.509 certificate made when the
// worker starts, and the certificate's SHA-256 fingerprint. No CA is involved: the worker announces the
// fingerprint in its hello over its coordinator connection (wss://, which the worker verified against its
// CA and authenticated with the job token), the coordinator hands it to the rank that connects to this
// listener, and that rank pins it (incoming.ts). This is WebRTC's scheme (the DTLS certificate
// fingerprint travels in the signalled SDP, RFC 8122), with the coordinator as the signalling channel.
//
// Node can use a certificate but has no API to make one, and the openssl CLI is not on every host, so the
// DER is written here (RFC 5280, the fields a v3 certificate needs; Ed25519 per RFC 8410) and signed with
// node:crypto. The test checks it with Node's own X.509 parser and with `openssl x509`.
import { createHash, generateKeyPairSync, randomBytes, sign } from 'node:crypto';

/** What a TLS ring listener serves and what its connecting rank pins. */
export interface RingCertificate {
  /** PKCS#8 PEM of the Ed25519 private key. */
  keyPem: string;
  /** PEM of the self-signed certificate. */
  certPem: string;
  /** SHA-256 of the certificate's DER, lowercase hex (64 characters). */
  fingerprint: string;
}

/** A fingerprint as RingCertificate.fingerprint spells it. */
export const FINGERPRINT_PATTERN = /^[0-9a-f]{64}$/;

/** How long the certificate claims to be valid. Pinning ignores the dates; a worker runs for days at most. */
const VALID_DAYS = 365;
/** notBefore this far in the past, so that a peer whose clock is behind still reads it as valid. */
const BACKDATE_MS = 24 * 3600 * 1000;

/** DER length octets. */
function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
/** id-Ed25519 (1.3.101.112), with absent parameters as RFC 8410 requires. */
const ED25519 = sequence(Buffer.from([0x06, 0x03, 0x2b, 0x65, 0x70]));
/** id-at-commonName (2.5.4.3). */
const COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);

/** UTCTime for years before 2050, GeneralizedTime after (RFC 5280 4.1.2.5). */
function derTime(d: Date): Buffer {
  const iso = d.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, '') + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050
    ? tlv(0x17, Buffer.from(digits.slice(2), 'latin1'))
    : tlv(0x18, Buffer.from(digits, 'latin1'));
}

function name(cn: string): Buffer {
  return sequence(tlv(0x31, sequence(COMMON_NAME, tlv(0x0c, Buffer.from(cn, 'utf8')))));
}

/** SHA-256 of a certificate's DER, as RingCertificate.fingerprint spells it. */
export function certificateFingerprint(der: Uint8Array): string {
  return createHash('sha256').update(der).digest('hex');
}

/** A fresh Ed25519 key and a self-signed certificate for it (subject and issuer CN = `commonName`). */
export function generateRingCertificate(commonName = 'wolfpack ring listener', now = new Date()): RingCertificate {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, and no leading zero octet to strip
  const subject = name(commonName);
  const tbs = sequence(
    tlv(0xa0, tlv(0x02, Buffer.from([0x02]))), // [0] EXPLICIT version v3
    tlv(0x02, serial),
    ED25519,
    subject, // issuer: self-signed
    sequence(
      derTime(new Date(now.getTime() - BACKDATE_MS)),
      derTime(new Date(now.getTime() + VALID_DAYS * 24 * 3600 * 1000)),
    ),
    subject,
    publicKey.export({ type: 'spki', format: 'der' }),
  );
  const signature = sign(null, tbs, privateKey); // Ed25519 signs the message itself, no digest first
  const der = sequence(tbs, ED25519, tlv(0x03, Buffer.from([0x00]), signature));
  const b64 = der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n');
  return {
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string,
    certPem: `-----BEGIN CERTIFICATE-----\n${b64}-----END CERTIFICATE-----\n`,
    fingerprint: certificateFingerprint(der),
  };
}
