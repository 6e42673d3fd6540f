import Crypto
import GallocyCodec
import GallocyRaft
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The peer transport of one member: Raft messages over TCP, one-way.
///
/// Each peer is reached only through the address configured for it (`setPeer`): this member
/// dials it, keeps one outbound connection per peer, and sends on it everything addressed to
/// that peer. Connections that peers dialed to our `listen` address only receive. Every
/// connection opens with a handshake (`PeerHandshake`): ids and cluster id are checked, and with
/// a shared secret both sides prove they hold it. Frames are described in `TransportFrame`.
///
/// Sending never blocks and never grows memory without bound: messages wait in a bounded
/// per-peer queue (the oldest are dropped and counted when it is full) and are written once per
/// event-loop tick, as far as the socket is writable. A lost connection is redialed with
/// jittered exponential back-off. Bytes that break the protocol close only their connection.
///
/// `onMessage` is called on a NIO event-loop thread, in arrival order per connection; calls for
/// different connections may run at the same time on different threads. It must return quickly
/// (hand the message to the Raft driver's queue), because the connection does not read while it
/// runs.
package final class PeerTransport: Sendable {
    /// The configuration the transport was started with (`clusterID` may have changed since:
    /// see `clusterID`).
    package let configuration: TransportConfiguration
    let group: any EventLoopGroup
    let logger: Logger
    let onMessage: @Sendable (Message) -> Void
    /// The HMAC key made from the shared secret, nil without one.
    let key: SymmetricKey?
    let backoff: ReconnectBackoff
    private let state: Mutex<State>

    private struct State {
        var links: [NodeID: PeerLink] = [:]
        var clusterID: UInt64
        var closed = false
        var serverChannel: (any Channel)?
        var inbound: [ObjectIdentifier: any Channel] = [:]
        /// Counters of messages received, per sender.
        var received: [NodeID: PeerCounters] = [:]
        /// Send-side counters of links that were removed, so that counters never go back.
        var retired: [NodeID: PeerCounters] = [:]
        var refused: UInt64 = 0
        var protocolErrors: UInt64 = 0
        var droppedUnroutable: UInt64 = 0
        var jitter: SplitMix64  // back-off jitter only, never nonces
        /// Warnings about inbound connections logged in the current window (see `shouldWarn`).
        var warningsInWindow = 0
        var warningWindowStart = NIODeadline.uptimeNanoseconds(0)
        /// When each recent reason was last warned about.
        var warnedReasons: [String: NIODeadline] = [:]
    }

    private init(
        configuration: TransportConfiguration, group: any EventLoopGroup, logger: Logger,
        onMessage: @escaping @Sendable (Message) -> Void
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.onMessage = onMessage
        self.key = configuration.secret.map { SymmetricKey(data: $0) }
        self.backoff = ReconnectBackoff(initial: configuration.initialBackoff, maximum: configuration.maxBackoff)
        let seed = configuration.jitterSeed ?? UInt64.random(in: .min ... .max)
        self.state = Mutex(State(clusterID: configuration.clusterID, jitter: SplitMix64(seed: seed)))
    }

    /// Binds `configuration.listen` and returns a running transport with no peers yet (add them
    /// with `setPeer`). `group` defaults to NIO's shared event-loop group; a group passed in is
    /// not shut down by `shutdown()`. Messages received are handed to `onMessage`.
    package static func start(
        configuration: TransportConfiguration, group: (any EventLoopGroup)? = nil,
        logger: Logger = Logger(label: "gallocy.transport"),
        onMessage: @escaping @Sendable (Message) -> Void
    ) async throws(TransportError) -> PeerTransport {
        if let secret = configuration.secret, secret.isEmpty {
            throw TransportError(.invalidSecret, "the shared secret is empty")
        }
        var logger = logger
        logger[metadataKey: "member"] = "\(configuration.id)"
        let transport = PeerTransport(
            configuration: configuration, group: group ?? MultiThreadedEventLoopGroup.singleton, logger: logger,
            onMessage: onMessage)
        let bootstrap = ServerBootstrap(group: transport.group)
            .serverChannelOption(.backlog, value: 256)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelInitializer { [weak transport] channel in
                channel.eventLoop.makeCompletedFuture {
                    guard let transport else { throw TransportError(.shutDown, "the transport is gone") }
                    try channel.pipeline.syncOperations.addHandler(AcceptorHandler(transport: transport))
                }
            }
        let server: any Channel
        do {
            server = try await bootstrap.bind(host: configuration.listen.host, port: configuration.listen.port).get()
        } catch {
            throw TransportError(.bindFailed, "cannot listen on \(configuration.listen): \(error)")
        }
        transport.state.withLock { $0.serverChannel = server }
        let port = server.localAddress?.port ?? configuration.listen.port
        transport.logger.info(
            "peer transport listening",
            metadata: [
                "address": "\(configuration.listen.host):\(port)",
                "authenticated": "\(transport.authenticatesPeers)",
            ])
        return transport
    }

    /// True when a shared secret is configured and every peer must prove it holds it. When
    /// false, the engine says once at startup that peers are not authenticated.
    package var authenticatesPeers: Bool { key != nil }

    /// The port actually bound (useful with port 0), nil after shutdown.
    package var localPort: Int? { state.withLock { $0.serverChannel?.localAddress?.port } }

    /// The cluster id checked in handshakes (0 = not yet known).
    package var clusterID: UInt64 { state.withLock { $0.clusterID } }

    /// Sets the cluster id once it is known (read from the bootstrap entry); from then on peers
    /// that name a different nonzero cluster id are refused. Existing connections are kept.
    package func setClusterID(_ id: UInt64) { state.withLock { $0.clusterID = id } }

    /// Sets or changes the address at which peer `id` is dialed, and starts connecting. A
    /// changed address closes the old connection and redials at once; messages already queued
    /// stay queued. Our own id is ignored.
    package func setPeer(id: NodeID, address: PeerAddress) {
        guard id != configuration.id, id != 0 else { return }
        enum Action {
            case none
            case start(PeerLink)
            case update(PeerLink)
        }
        let action: Action = state.withLock { s in
            guard !s.closed else { return .none }
            if let link = s.links[id] { return .update(link) }
            let link = PeerLink(id: id, address: address, transport: self, eventLoop: group.next())
            s.links[id] = link
            return .start(link)
        }
        switch action {
        case .none: return
        case .start(let link): link.connect()
        case .update(let link): link.updateAddress(address)
        }
    }

    /// Parses `address` (`host:port`) and calls `setPeer(id:address:)` with it.
    package func setPeer(id: NodeID, address: String) throws(TransportError) {
        setPeer(id: id, address: try PeerAddress(parsing: address))
    }

    /// Forgets peer `id`: closes its connection, cancels redialing, and drops (and counts)
    /// what was queued for it. Connections it dialed to us are kept until it closes them.
    package func removePeer(id: NodeID) {
        let link = state.withLock { s in s.links.removeValue(forKey: id) }
        guard let link else { return }
        _ = link.close()
        let counters = link.counters
        state.withLock { s in s.retired[id, default: PeerCounters()].addCounts(of: counters) }
    }

    /// The address peer `id` is dialed at, if it has one.
    package func address(of id: NodeID) -> PeerAddress? {
        let link = state.withLock { $0.links[id] }
        return link?.address
    }

    /// True while the outbound connection to `id` has completed its handshake (messages for it
    /// are being written rather than only queued).
    package func isConnected(to id: NodeID) -> Bool {
        let link = state.withLock { $0.links[id] }
        return link?.isReady ?? false
    }

    /// Queues `message` for `message.to` and returns at once. It is dropped (and counted in
    /// `droppedUnroutable`) if that peer has no address or is this member, or after shutdown.
    package func send(_ message: Message) {
        let link: PeerLink? = state.withLock { s in
            let link = s.closed ? nil : s.links[message.to]
            if link == nil { s.droppedUnroutable += 1 }
            return link
        }
        guard let link else {
            logger.debug("no address for the receiver of a message; dropped", metadata: ["to": "\(message.to)"])
            return
        }
        // Encoding here, on the caller's thread, keeps the event loops free for I/O.
        let payload = MessageCodec.encode(message)
        guard payload.count <= MessageCodec.maxMessageSize else {
            // The receiver would refuse it and close the connection: never send it.
            link.countDrop()
            logger.error(
                "message exceeds the transport limit; dropped",
                metadata: ["to": "\(message.to)", "bytes": "\(payload.count)"])
            return
        }
        link.enqueue(TransportFrame.encode(.message, payload))
    }

    /// Queues several messages (each routed by its own `to`).
    package func send(_ messages: some Sequence<Message>) {
        for message in messages { send(message) }
    }

    /// A snapshot of all counters.
    package func metrics() -> TransportMetrics {
        let (links, snapshot) = state.withLock { s in
            var m = TransportMetrics()
            m.refusedConnections = s.refused
            m.protocolErrors = s.protocolErrors
            m.droppedUnroutable = s.droppedUnroutable
            for (id, c) in s.retired { m.peers[id, default: PeerCounters()].addCounts(of: c) }
            for (id, c) in s.received { m.peers[id, default: PeerCounters()].addCounts(of: c) }
            return (Array(s.links.values), m)
        }
        var metrics = snapshot
        for link in links {
            let c = link.counters
            metrics.peers[link.id, default: PeerCounters()].addCounts(of: c)
            metrics.peers[link.id]?.queuedMessages = c.queuedMessages
            metrics.peers[link.id]?.queuedBytes = c.queuedBytes
        }
        return metrics
    }

    /// Closes the listener, every connection in both directions, and cancels redialing. Sends
    /// after this are dropped. Safe to call more than once.
    package func shutdown() async {
        let (links, server, inbound) = state.withLock { s in
            s.closed = true
            defer {
                s.links = [:]
                s.serverChannel = nil
                s.inbound = [:]
            }
            return (Array(s.links.values), s.serverChannel, Array(s.inbound.values))
        }
        var closing: [EventLoopFuture<Void>] = links.map { $0.close() }
        if let server { closing.append(server.close()) }
        for channel in inbound {
            channel.close(promise: nil)
            closing.append(channel.closeFuture)
        }
        for future in closing { try? await future.get() }
    }

    // MARK: - Used by the connection handlers

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Records an accepted connection so that shutdown can close it; false after shutdown or
    /// when `maxInboundConnections` are already open.
    func registerInbound(_ channel: any Channel) -> Bool {
        let (accepted, full) = state.withLock { s -> (Bool, Bool) in
            guard !s.closed else { return (false, false) }
            guard s.inbound.count < configuration.maxInboundConnections else {
                s.refused += 1
                return (false, true)
            }
            s.inbound[ObjectIdentifier(channel)] = channel
            return (true, false)
        }
        if full && shouldWarn(reason: "too many inbound connections") {
            logger.warning(
                "refused peer connection: too many inbound connections",
                metadata: ["limit": "\(configuration.maxInboundConnections)"])
        }
        return accepted
    }

    func unregisterInbound(_ channel: any Channel) {
        _ = state.withLock { s in s.inbound.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// Counts a message from `peer` and hands it to `onMessage`.
    func deliver(_ message: Message, from peer: NodeID, frameBytes: Int) {
        state.withLock { s in
            s.received[peer, default: PeerCounters()].messagesReceived += 1
            s.received[peer, default: PeerCounters()].bytesReceived += UInt64(frameBytes)
        }
        onMessage(message)
    }

    func countRefused() { state.withLock { $0.refused += 1 } }
    func countProtocolError() { state.withLock { $0.protocolErrors += 1 } }

    /// A jitter draw in 0..<1 for back-off.
    func nextJitter() -> Double {
        state.withLock { s in Double(s.jitter.next() >> 11) / Double(1 << 53) }
    }

    /// Whether a refused or broken inbound connection is logged at warning level: a peer that
    /// redials with the same problem every second, or a scanner, must not flood the log. The
    /// same reason is warned about once a minute, and at most 10 warnings go out per 10 seconds;
    /// the rest go to debug.
    func shouldWarn(reason: String) -> Bool {
        let now = NIODeadline.now()
        return state.withLock { s in
            if now - s.warningWindowStart > .seconds(10) {
                s.warningWindowStart = now
                s.warningsInWindow = 0
            }
            if let last = s.warnedReasons[reason], now - last < .seconds(60) { return false }
            if s.warnedReasons.count > 256 { s.warnedReasons.removeAll() }
            s.warningsInWindow += 1
            guard s.warningsInWindow <= 10 else { return false }
            s.warnedReasons[reason] = now
            return true
        }
    }
}
