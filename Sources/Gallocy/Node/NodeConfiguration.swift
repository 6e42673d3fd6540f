import GallocyRaft
import Logging

/// Everything a member needs to start (the flags of `gallocy node`, parsed).
package struct NodeConfiguration: Sendable {
    package var id: NodeID
    package var dataDirectory: String
    package var listen: PeerAddress
    package var httpHost: String
    package var httpPort: Int
    /// Peer-traffic addresses given with `--peer`; they win over addresses learned from the log.
    package var peers: [NodeID: PeerAddress]
    /// Start empty and wait to be added (`--join`): no bootstrap.
    package var join: Bool
    /// `--heap-size` when given explicitly (nil: the default, and no conflict check).
    package var heapSize: UInt64?
    package var secret: [UInt8]?
    package var logLevel: Logger.Level
    /// One Raft tick.
    package var tickInterval: Duration = .milliseconds(100)
    package var electionTick: Int = 10
    package var heartbeatTick: Int = 1
    /// Take a snapshot once this many entries were applied since the last one.
    package var snapshotEveryEntries: UInt64 = 50_000
    /// ... or once this many entry bytes were applied since the last one.
    package var snapshotEveryBytes: UInt64 = 64 << 20
    /// Entries kept in the log below a snapshot (see `RaftDriver.compactionPoint`).
    package var snapshotTail: UInt64 = 64
    /// How long a request waits for its entry to apply (under the HTTP layer's 10 s).
    package var requestDeadline: Duration = .seconds(9)
    /// How often a proposal that has not applied yet is proposed again (same bytes).
    package var reproposeInterval: Duration = .milliseconds(1500)

    /// The heap base every cluster uses: a fixed, page-aligned address far from where Linux puts
    /// heaps, stacks and libraries on x86-64 and arm64, so an application can map it anywhere.
    package static let heapBase: UInt64 = 0x6000_0000_0000
    package static let defaultHeapSize: UInt64 = 256 << 20
    package static let pageSize: UInt32 = 4096

    package init(
        id: NodeID, dataDirectory: String, listen: PeerAddress, httpHost: String, httpPort: Int,
        peers: [NodeID: PeerAddress], join: Bool, heapSize: UInt64?, secret: [UInt8]?, logLevel: String
    ) {
        self.id = id
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.httpHost = httpHost
        self.httpPort = httpPort
        self.peers = peers
        self.join = join
        self.heapSize = heapSize
        self.secret = secret
        self.logLevel = Logger.Level(rawValue: logLevel) ?? .info
    }
}
