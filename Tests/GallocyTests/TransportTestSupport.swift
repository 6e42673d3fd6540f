import Gallocy
import GallocyRaft
import Logging
import NIOCore
import NIOPosix
import Synchronization
import Testing

/// Messages a test transport received, in arrival order.
final class TransportInbox: Sendable {
    private let messages = Mutex<[Message]>([])

    func append(_ message: Message) { messages.withLock { $0.append(message) } }
    var all: [Message] { messages.withLock { $0 } }
    var count: Int { messages.withLock { $0.count } }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` passes; returns whether
/// it held. Tests wait on conditions, never for a fixed time.
func transportWait(timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while clock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// A transport for member `id` on 127.0.0.1 (port 0 unless given), delivering into `inbox`.
func startTransport(
    id: NodeID, port: Int = 0, clusterID: UInt64 = 0, secret: String? = nil, inbox: TransportInbox,
    tune: (inout TransportConfiguration) -> Void = { _ in }
) async throws -> PeerTransport {
    var config = TransportConfiguration(
        id: id, listen: PeerAddress(host: "127.0.0.1", port: port), clusterID: clusterID,
        secret: secret.map { Array($0.utf8) }, jitterSeed: id)
    tune(&config)
    var logger = Logger(label: "test.transport")
    logger.logLevel = .warning
    return try await PeerTransport.start(configuration: config, logger: logger) { inbox.append($0) }
}

/// The loopback address a transport listens on.
func listenAddress(of transport: PeerTransport) throws -> PeerAddress {
    PeerAddress(host: "127.0.0.1", port: try #require(transport.localPort))
}

/// A small message from `from` to `to`, told apart by `index`.
func probeMessage(from: NodeID, to: NodeID, index: UInt64 = 0) -> Message {
    Message(type: .heartbeat, from: from, to: to, term: 1, index: index)
}

/// A raw TCP client that writes bytes to a port and reports whether the server closed it.
struct RawPeerSocket {
    let channel: any Channel

    static func connect(to address: PeerAddress) async throws -> RawPeerSocket {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: address.host, port: address.port).get()
        return RawPeerSocket(channel: channel)
    }

    func write(_ bytes: [UInt8]) async throws {
        try await channel.writeAndFlush(ByteBuffer(bytes: bytes)).get()
    }

    /// True once the server has closed the connection (NIO closes our side on its EOF).
    var isClosed: Bool { !channel.isActive }

    func close() async { try? await channel.close().get() }
}

/// The bytes of one frame, written by hand for the garbage tests.
func rawTransportFrame(kind: UInt8, _ payload: [UInt8]) -> [UInt8] {
    let length = UInt32(1 + payload.count)
    return [
        UInt8(truncatingIfNeeded: length), UInt8(truncatingIfNeeded: length >> 8),
        UInt8(truncatingIfNeeded: length >> 16), UInt8(truncatingIfNeeded: length >> 24), kind,
    ] + payload
}

/// A hello and an empty auth (the no-secret handshake) from `from` to `to`, sent in one go: the
/// acceptor handles frames in order, so whatever follows is read as post-handshake traffic.
func rawTransportHandshake(from: NodeID, to: NodeID) -> [UInt8] {
    let hello = PeerHandshake.Hello(
        version: PeerHandshake.protocolVersion, clusterID: 0, from: from, to: to, hasSecret: false,
        nonce: PeerHandshake.makeNonce())
    return rawTransportFrame(kind: TransportFrame.Kind.hello.rawValue, PeerHandshake.encode(hello))
        + rawTransportFrame(kind: TransportFrame.Kind.auth.rawValue, [])
}
