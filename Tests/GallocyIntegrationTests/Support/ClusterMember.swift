/// One member of a test cluster as the harness started it: its ports, files and exact flags, so
/// that a restart uses the same ones.
struct ClusterMember: Sendable {
    var id: Int
    /// Peer (Raft) traffic: `--listen 127.0.0.1:listenPort`.
    var listenPort: UInt16
    /// The HTTP API: `--http 127.0.0.1:httpPort`.
    var httpPort: UInt16
    var dataDirectory: String
    var standardOutputPath: String
    var standardErrorPath: String
    /// The arguments after the executable, from `node` on.
    var arguments: [String]
    /// The `--peer` address each peer id is reached at from this member (a proxy, or the peer's
    /// listen address when the cluster is not proxied).
    var peerAddresses: [Int: String]

    var listenAddress: String { "\(Loopback.host):\(listenPort)" }
    var httpAddress: String { "\(Loopback.host):\(httpPort)" }
}
