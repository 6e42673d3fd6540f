import GallocyCodec
import NIOCore

/// One unit on a peer connection:
///
///     u32 length (little-endian, counts the kind byte and the payload) | u8 kind | payload
///
/// Message frames carry `MessageCodec` bytes, which have their own version and CRC32C; the
/// handshake frames are small and are checked field by field (and, with a secret, by HMAC).
/// Lengths are bounded before anything is buffered: a handshake frame by `maxHandshakeLength`, a
/// message frame by `maxMessageLength`; a frame over its bound closes the connection.
package struct TransportFrame: Sendable {
    /// What a frame carries. The raw values are part of the wire format: never renumber.
    package enum Kind: UInt8, Sendable, Hashable, CaseIterable {
        /// Dialer to acceptor, first frame: magic, version, cluster id, ids, dialer nonce.
        case hello = 1
        /// Acceptor to dialer: its id and cluster id, whether it requires a secret, its nonce.
        case challenge = 2
        /// Dialer to acceptor: the dialer's proof (empty without a secret).
        case auth = 3
        /// Acceptor to dialer: the acceptor's proof (empty without a secret); messages may follow.
        case accept = 4
        /// Either side, before closing during the handshake: a reason for the other side's log.
        case refuse = 5
        /// Dialer to acceptor after the handshake: one `MessageCodec` message.
        case message = 6
    }

    /// Bytes before the payload: the u32 length and the kind byte.
    package static let headerSize = 5
    /// The largest length field of a handshake frame (they are all well under 200 bytes).
    package static let maxHandshakeLength = 1024
    /// The largest length field of a message frame: a message of `MessageCodec.maxMessageSize`
    /// plus the kind byte, with a little slack so that a bound exactly at the codec's limit
    /// reports the codec's error rather than a framing error.
    package static let maxMessageLength = MessageCodec.maxMessageSize + 1 + 4096

    package var kind: Kind
    package var payload: ByteBuffer

    package init(kind: Kind, payload: ByteBuffer) {
        self.kind = kind
        self.payload = payload
    }

    /// A whole frame (header and payload) ready to write.
    package static func encode(
        _ kind: Kind, _ payload: some Collection<UInt8>, allocator: ByteBufferAllocator = ByteBufferAllocator()
    ) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: headerSize + payload.count)
        buffer.writeInteger(UInt32(1 + payload.count), endianness: .little)
        buffer.writeInteger(kind.rawValue)
        buffer.writeBytes(payload)
        return buffer
    }
}

/// Cuts frames out of the bytes of one connection, checking each length before buffering it.
package struct TransportFrameReader {
    /// Why the bytes are not a frame stream; the connection is closed with this reason.
    package struct Violation: Error, Sendable, CustomStringConvertible {
        package var description: String
    }

    private var buffer: ByteBuffer?

    package init() {}

    /// Bytes received and not yet cut into frames.
    package var bufferedBytes: Int { buffer?.readableBytes ?? 0 }

    /// Adds bytes read from the socket.
    package mutating func append(_ bytes: inout ByteBuffer) {
        if buffer == nil || buffer?.readableBytes == 0 {
            // Taking the socket's buffer as is avoids a copy in the common case.
            buffer = bytes
        } else {
            buffer?.writeBuffer(&bytes)
        }
    }

    /// The next whole frame, nil if more bytes are needed. Throws on a length of 0 or over
    /// `maxLength`, or an unknown kind, before waiting for the rest of that frame.
    package mutating func next(maxLength: Int) throws(Violation) -> TransportFrame? {
        guard var buf = buffer, buf.readableBytes >= TransportFrame.headerSize,
            let length = buf.getInteger(at: buf.readerIndex, endianness: .little, as: UInt32.self),
            let rawKind = buf.getInteger(at: buf.readerIndex + 4, as: UInt8.self)
        else { return nil }
        guard length >= 1, Int(length) <= maxLength else {
            throw Violation(description: "frame length \(length) outside 1...\(maxLength)")
        }
        guard let kind = TransportFrame.Kind(rawValue: rawKind) else {
            throw Violation(description: "unknown frame kind \(rawKind)")
        }
        guard buf.readableBytes >= 4 + Int(length) else { return nil }
        buf.moveReaderIndex(forwardBy: TransportFrame.headerSize)
        guard let payload = buf.readSlice(length: Int(length) - 1) else { return nil }
        // Compact once the consumed prefix dominates, so a long-lived connection's buffer does
        // not keep every byte it ever received.
        if buf.readableBytes == 0 {
            buffer = nil
        } else {
            if buf.readerIndex > 1 << 20 && buf.readerIndex > buf.readableBytes { buf.discardReadBytes() }
            buffer = buf
        }
        return TransportFrame(kind: kind, payload: payload)
    }
}
