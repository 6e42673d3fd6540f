import Crypto
import GallocyCodec
import GallocyRaft
import NIOCore

/// The frames that open every peer connection, and the proofs exchanged in them.
///
///     dialer   -> hello      "GLCY" | u16 version | u64 cluster | u64 from | u64 to | u8 flags | 32-byte nonce Nd
///     acceptor -> challenge  u64 acceptor id | u64 cluster | u8 flags | 32-byte nonce Na
///     dialer   -> auth       proof: HMAC-SHA256(secret, "GLCY dialer 1" | Na | from | to | Nd), or empty
///     acceptor -> accept     proof: HMAC-SHA256(secret, "GLCY acceptor 1" | Nd | from | to | Na), or empty
///
/// Flag bit 0 says "I hold a secret". A side with a secret refuses a side without one (and the
/// other way round), so that a misconfigured member fails loudly instead of half-working. Each
/// side proves knowledge of the secret over the other side's fresh nonce, so a recorded
/// handshake cannot be replayed, and the two proofs use different labels, so one cannot be
/// reflected back as the other. Integers are little-endian like the rest of the wire format.
package enum PeerHandshake {
    /// The first four bytes of every hello: "GLCY".
    package static let magic: [UInt8] = Array("GLCY".utf8)
    /// The transport protocol version this build speaks.
    package static let protocolVersion: UInt16 = 1
    /// Nonce size in bytes.
    package static let nonceSize = 32
    /// Flag bit: the sender holds a shared secret.
    package static let hasSecretFlag: UInt8 = 1

    package struct Hello: Sendable, Hashable {
        package var version: UInt16
        package var clusterID: UInt64
        package var from: NodeID
        package var to: NodeID
        package var hasSecret: Bool
        package var nonce: [UInt8]

        package init(version: UInt16, clusterID: UInt64, from: NodeID, to: NodeID, hasSecret: Bool, nonce: [UInt8]) {
            self.version = version
            self.clusterID = clusterID
            self.from = from
            self.to = to
            self.hasSecret = hasSecret
            self.nonce = nonce
        }
    }

    package struct Challenge: Sendable, Hashable {
        package var acceptorID: NodeID
        package var clusterID: UInt64
        package var hasSecret: Bool
        package var nonce: [UInt8]

        package init(acceptorID: NodeID, clusterID: UInt64, hasSecret: Bool, nonce: [UInt8]) {
            self.acceptorID = acceptorID
            self.clusterID = clusterID
            self.hasSecret = hasSecret
            self.nonce = nonce
        }
    }

    /// A fresh nonce from the system's cryptographic random source.
    package static func makeNonce() -> [UInt8] {
        var rng = SystemRandomNumberGenerator()
        return (0..<nonceSize).map { _ in UInt8.random(in: .min ... .max, using: &rng) }
    }

    package static func encode(_ hello: Hello) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.writeRaw(magic)
        w.write(hello.version)
        w.write(hello.clusterID)
        w.write(hello.from)
        w.write(hello.to)
        w.write(hello.hasSecret ? hasSecretFlag : 0)
        w.writeRaw(hello.nonce)
        return w.bytes
    }

    /// Decodes a hello; the magic is checked first so that a stranger speaking another protocol
    /// is named as such in the log. The version is returned as sent: the caller decides.
    package static func decodeHello(_ payload: ByteBuffer) throws(CodecError) -> Hello {
        try read(payload) { (r: inout ByteReader) throws(CodecError) in
            let m = try r.readRaw(magic.count, "hello magic")
            guard m == magic else { throw CodecError(.invalidValue, "hello magic \(m) is not GLCY") }
            let version = try r.readUInt16("hello version")
            let cluster = try r.readUInt64("hello cluster id")
            let from = try r.readUInt64("hello from")
            let to = try r.readUInt64("hello to")
            let flags = try r.readUInt8("hello flags")
            let nonce = try readNonce(&r, "hello nonce")
            try r.expectEnd("hello")
            return Hello(
                version: version, clusterID: cluster, from: from, to: to,
                hasSecret: flags & hasSecretFlag != 0, nonce: nonce)
        }
    }

    package static func encode(_ challenge: Challenge) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.write(challenge.acceptorID)
        w.write(challenge.clusterID)
        w.write(challenge.hasSecret ? hasSecretFlag : 0)
        w.writeRaw(challenge.nonce)
        return w.bytes
    }

    package static func decodeChallenge(_ payload: ByteBuffer) throws(CodecError) -> Challenge {
        try read(payload) { (r: inout ByteReader) throws(CodecError) in
            let acceptor = try r.readUInt64("challenge acceptor id")
            let cluster = try r.readUInt64("challenge cluster id")
            let flags = try r.readUInt8("challenge flags")
            let nonce = try readNonce(&r, "challenge nonce")
            try r.expectEnd("challenge")
            return Challenge(
                acceptorID: acceptor, clusterID: cluster, hasSecret: flags & hasSecretFlag != 0, nonce: nonce)
        }
    }

    /// The dialer's proof that it holds `secret`, bound to both nonces and both ids.
    package static func dialerProof(
        secret: SymmetricKey, acceptorNonce: [UInt8], dialer: NodeID, acceptor: NodeID, dialerNonce: [UInt8]
    ) -> [UInt8] {
        proof("GLCY dialer 1", secret, acceptorNonce, dialer, acceptor, dialerNonce)
    }

    /// The acceptor's proof that it holds `secret`, bound to both nonces and both ids.
    package static func acceptorProof(
        secret: SymmetricKey, dialerNonce: [UInt8], dialer: NodeID, acceptor: NodeID, acceptorNonce: [UInt8]
    ) -> [UInt8] {
        proof("GLCY acceptor 1", secret, dialerNonce, dialer, acceptor, acceptorNonce)
    }

    /// Checks a proof received from the other side in constant time (swift-crypto's HMAC check).
    package static func isValid(proof: ByteBuffer, expected message: [UInt8], secret: SymmetricKey) -> Bool {
        guard proof.readableBytes == SHA256.byteCount else { return false }
        let bytes = proof.getBytes(at: proof.readerIndex, length: proof.readableBytes) ?? []
        return HMAC<SHA256>.isValidAuthenticationCode(bytes, authenticating: message, using: secret)
    }

    /// The bytes a dialer's proof authenticates (see `dialerProof`).
    package static func dialerProofInput(
        acceptorNonce: [UInt8], dialer: NodeID, acceptor: NodeID, dialerNonce: [UInt8]
    ) -> [UInt8] {
        proofInput("GLCY dialer 1", acceptorNonce, dialer, acceptor, dialerNonce)
    }

    /// The bytes an acceptor's proof authenticates (see `acceptorProof`).
    package static func acceptorProofInput(
        dialerNonce: [UInt8], dialer: NodeID, acceptor: NodeID, acceptorNonce: [UInt8]
    ) -> [UInt8] {
        proofInput("GLCY acceptor 1", dialerNonce, dialer, acceptor, acceptorNonce)
    }

    private static func proofInput(
        _ label: String, _ first: [UInt8], _ dialer: NodeID, _ acceptor: NodeID, _ second: [UInt8]
    ) -> [UInt8] {
        var w = ByteWriter(capacity: 128)
        w.writeString(label)
        w.writeRaw(first)
        w.write(dialer)
        w.write(acceptor)
        w.writeRaw(second)
        return w.bytes
    }

    private static func proof(
        _ label: String, _ secret: SymmetricKey, _ first: [UInt8], _ dialer: NodeID, _ acceptor: NodeID,
        _ second: [UInt8]
    ) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: proofInput(label, first, dialer, acceptor, second), using: secret))
    }

    private static func readNonce(_ r: inout ByteReader, _ what: String) throws(CodecError) -> [UInt8] {
        try r.readRaw(nonceSize, what)
    }

    private static func read<T>(
        _ payload: ByteBuffer, _ body: (inout ByteReader) throws(CodecError) -> T
    ) throws(CodecError) -> T {
        let result = payload.withUnsafeReadableBytes { raw in
            Result { () throws(CodecError) -> T in
                var reader = ByteReader(raw)
                return try body(&reader)
            }
        }
        return try result.get()
    }
}
