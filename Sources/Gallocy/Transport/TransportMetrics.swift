import GallocyRaft

/// Counters of one peer, as seen by this member. All counters only grow (also across a peer's
/// removal and re-addition); `queuedMessages` and `queuedBytes` are current levels.
package struct PeerCounters: Sendable, Hashable {
    /// Frame bytes handed to the socket for this peer.
    package var bytesSent: UInt64 = 0
    /// Messages handed to the socket for this peer.
    package var messagesSent: UInt64 = 0
    /// Frame bytes of messages received from this peer.
    package var bytesReceived: UInt64 = 0
    /// Messages received from this peer and delivered.
    package var messagesReceived: UInt64 = 0
    /// Messages for this peer dropped because its queue was full (or it was removed).
    package var drops: UInt64 = 0
    /// Connection attempts after the first one.
    package var reconnects: UInt64 = 0
    /// Handshakes to this peer that completed.
    package var connectionsEstablished: UInt64 = 0
    /// Messages waiting in this peer's queue.
    package var queuedMessages: Int = 0
    /// Frame bytes waiting in this peer's queue.
    package var queuedBytes: Int = 0

    package init() {}

    mutating func addCounts(of other: PeerCounters) {
        bytesSent += other.bytesSent
        messagesSent += other.messagesSent
        bytesReceived += other.bytesReceived
        messagesReceived += other.messagesReceived
        drops += other.drops
        reconnects += other.reconnects
        connectionsEstablished += other.connectionsEstablished
    }
}

/// A snapshot of the transport's counters, for the engine's metrics.
package struct TransportMetrics: Sendable, Hashable {
    /// Per peer id, for every peer that was configured or that connected to us.
    package var peers: [NodeID: PeerCounters] = [:]
    /// Inbound connections closed before or during the handshake (bad hello, wrong cluster or
    /// id, failed authentication, timeout).
    package var refusedConnections: UInt64 = 0
    /// Connections closed for bytes that broke the protocol after the handshake (bad length,
    /// kind or checksum, a message not addressed to this member).
    package var protocolErrors: UInt64 = 0
    /// Messages dropped because their `to` had no address (or was this member).
    package var droppedUnroutable: UInt64 = 0

    package init() {}

    /// The sum over all peers of one counter.
    package func total(_ counter: KeyPath<PeerCounters, UInt64>) -> UInt64 {
        peers.values.reduce(0) { $0 + $1[keyPath: counter] }
    }
}
