import GallocyCodec
import GallocyRaft

/// How to start an in-process member: the same options as `gallocy node` (CONTRACT.md 1.1).
public struct MemberOptions: Sendable {
    /// This member's id, a positive integer unique in the cluster.
    public var id: UInt64
    /// The data directory (created if missing).
    public var dataDirectory: String
    /// host:port for peer (Raft) traffic.
    public var listen: String
    /// host:port for the HTTP API.
    public var http: String
    /// The peer address of every other member, by id.
    public var peers: [UInt64: String]
    /// Start empty without bootstrapping and wait to be added.
    public var join: Bool = false
    /// The heap size of a new cluster, in bytes (default 256 MiB).
    public var heapSize: UInt64?
    /// The shared cluster secret peers must prove (nil: no authentication).
    public var secret: [UInt8]?
    /// trace, debug, info, notice, warning, error or critical.
    public var logLevel: String = "warning"

    public init(id: UInt64, dataDirectory: String, listen: String, http: String, peers: [UInt64: String]) {
        self.id = id
        self.dataDirectory = dataDirectory
        self.listen = listen
        self.http = http
        self.peers = peers
    }

    func nodeConfiguration() throws(MemberError) -> NodeConfiguration {
        guard id > 0 else { throw MemberError(.invalidOptions, "id must be a positive integer") }
        guard !dataDirectory.isEmpty else { throw MemberError(.invalidOptions, "the data directory is empty") }
        func parse(_ text: String, _ what: String) throws(MemberError) -> PeerAddress {
            do { return try PeerAddress(parsing: text) } catch {
                throw MemberError(.invalidOptions, "\(what) \(text): \(error)")
            }
        }
        let listenAddress = try parse(listen, "listen")
        let httpAddress = try parse(http, "http")
        var parsedPeers: [NodeID: PeerAddress] = [:]
        for (peer, address) in peers {
            guard peer > 0, peer != id else { throw MemberError(.invalidOptions, "peer id \(peer) is invalid here") }
            parsedPeers[peer] = try parse(address, "peer \(peer)")
        }
        if let heapSize, heapSize == 0 || heapSize % 4096 != 0 {
            throw MemberError(.invalidOptions, "heap size \(heapSize) must be a positive multiple of 4096")
        }
        return NodeConfiguration(
            id: id, dataDirectory: dataDirectory, listen: listenAddress, httpHost: httpAddress.host,
            httpPort: httpAddress.port, peers: parsedPeers, join: join, heapSize: heapSize, secret: secret,
            logLevel: logLevel)
    }
}

/// How memory allocated with `Member.allocate(byteCount:mode:)` is kept coherent: `.release`
/// (release consistency, the default) or `.sequential` (page leases). Re-exported so that
/// programs need only `import Gallocy`.
public typealias AllocationMode = GallocyCodec.AllocationMode
