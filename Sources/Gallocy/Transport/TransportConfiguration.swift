import GallocyRaft
import NIOCore

/// How a `PeerTransport` listens, whom it claims to be, and how much it may buffer.
package struct TransportConfiguration: Sendable {
    /// This member's id: the `to` that inbound hellos must name and the `from` of outbound ones.
    package var id: NodeID
    /// Where to accept peer connections (`--listen`); port 0 picks a free port (see
    /// `PeerTransport.localPort`).
    package var listen: PeerAddress
    /// The cluster id, 0 while not yet known. Hellos whose cluster id is nonzero and differs are
    /// refused; it can be set later with `PeerTransport.setClusterID(_:)`.
    package var clusterID: UInt64
    /// The shared secret (`--secret-file` contents); nil runs without authentication.
    package var secret: [UInt8]?
    /// The most messages queued for one peer while its connection is down or not writable.
    package var maxQueuedMessages: Int
    /// The most bytes queued for one peer (encoded frames). A single message larger than this
    /// is still accepted when the queue is empty, so the bound is this plus one message.
    package var maxQueuedBytes: Int
    /// First reconnect delay after a failure; it doubles per failure up to `maxBackoff`, and
    /// each delay is drawn uniformly from its upper half (jitter), so that members that lost
    /// each other at the same instant do not redial in lockstep.
    package var initialBackoff: TimeAmount
    /// The longest reconnect delay.
    package var maxBackoff: TimeAmount
    /// Seed for the back-off jitter; nil seeds from the system's random source.
    package var jitterSeed: UInt64?
    /// A connection that has not finished its handshake by then is closed (a silent or slow
    /// stranger must not hold a socket forever).
    package var handshakeTimeout: TimeAmount
    /// Give up on a TCP connect after this long (then back off and retry).
    package var connectTimeout: TimeAmount
    /// Close an outbound connection whose sent bytes stay unacknowledged this long (Linux
    /// `TCP_USER_TIMEOUT`), so that a peer or link that vanished without a FIN or RST is
    /// noticed and redialed in seconds rather than after the kernel's many-minute retry.
    /// Nil leaves the system default.
    package var unacknowledgedDataTimeout: TimeAmount?
    /// The most inbound connections open at once (handshaking or established); more are
    /// closed on arrival, so that a flood of connections cannot exhaust file descriptors.
    package var maxInboundConnections: Int
    /// The socket send-buffer bounds within which the transport keeps writing; above `high` it
    /// stops until the channel drains below `low` (NIO's writability).
    package var writeBufferWaterMark: ChannelOptions.Types.WriteBufferWaterMark

    package init(
        id: NodeID, listen: PeerAddress, clusterID: UInt64 = 0, secret: [UInt8]? = nil,
        maxQueuedMessages: Int = 4096, maxQueuedBytes: Int = 64 << 20,
        initialBackoff: TimeAmount = .milliseconds(20), maxBackoff: TimeAmount = .seconds(1),
        jitterSeed: UInt64? = nil, handshakeTimeout: TimeAmount = .seconds(5),
        connectTimeout: TimeAmount = .seconds(2), unacknowledgedDataTimeout: TimeAmount? = .seconds(10),
        maxInboundConnections: Int = 1024,
        writeBufferWaterMark: ChannelOptions.Types.WriteBufferWaterMark = .init(low: 256 << 10, high: 1 << 20)
    ) {
        self.id = id
        self.listen = listen
        self.clusterID = clusterID
        self.secret = secret
        self.maxQueuedMessages = maxQueuedMessages
        self.maxQueuedBytes = maxQueuedBytes
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.jitterSeed = jitterSeed
        self.handshakeTimeout = handshakeTimeout
        self.connectTimeout = connectTimeout
        self.unacknowledgedDataTimeout = unacknowledgedDataTimeout
        self.maxInboundConnections = maxInboundConnections
        self.writeBufferWaterMark = writeBufferWaterMark
    }
}
