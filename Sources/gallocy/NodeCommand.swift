import ArgumentParser
import Gallocy
import GallocyRaft
import Glibc

/// `gallocy node`: run one member of a cluster (CONTRACT.md 1.1). Thin: it parses the flags into
/// a `NodeConfiguration` and hands over to `NodeProcess`.
struct NodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node",
        abstract: "Run one member of a Gallocy cluster.",
        discussion: """
            The first start with an empty data directory bootstraps a cluster of this member and every \
            --peer (unless --join). Later starts recover from the data directory. SIGTERM or SIGINT \
            shut down gracefully. See docs/operations.md.
            """)

    @OptionGroup var flags: NodeFlags

    func run() throws {
        let configuration = try flags.makeConfiguration()
        let status = NodeProcess.run(configuration)
        if status != 0 { throw ExitCode(status) }
    }
}

/// The flags of a member, shared by `gallocy node` and the `gallocy example` commands (a process
/// running an example is a member too).
struct NodeFlags: ParsableArguments {
    @Option(help: "This member's id, a positive integer unique in the cluster.") var id: UInt64
    @Option(help: "The data directory (created if missing).") var data: String
    @Option(help: "host:port for peer (Raft) traffic.") var listen: String
    @Option(help: "host:port for the HTTP API.") var http: String
    @Option(help: "Another member's peer address, as <id>=<host:port>; one flag per member.") var peer: [String] = []
    @Flag(help: "Start empty without bootstrapping and wait to be added (POST /v1/members).") var join = false
    @Option(name: .customLong("heap-size"), help: "Heap size for a new cluster: bytes, or with K, M or G (default 256M).")
    var heapSize: String?
    @Option(name: .customLong("secret-file"), help: "A file holding the shared cluster secret; peers must prove it.")
    var secretFile: String?
    @Option(name: .customLong("log-level"), help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"
    @Option(name: .customLong("snapshot-every"), help: "Take a snapshot after this many applied entries.")
    var snapshotEvery: UInt64 = 50_000
    @Option(name: .customLong("tick-ms"), help: ArgumentHelp("Milliseconds per Raft tick.", visibility: .hidden))
    var tickMillis: Int = 100

    mutating func validate() throws {
        guard id > 0 else { throw ValidationError("--id must be a positive integer") }
        guard !data.isEmpty else { throw ValidationError("--data must name a directory") }
        guard NodeProcess.logLevels.contains(logLevel) else {
            throw ValidationError("--log-level must be one of \(NodeProcess.logLevels.joined(separator: ", "))")
        }
        guard snapshotEvery > 0 else { throw ValidationError("--snapshot-every must be positive") }
        guard (1...10_000).contains(tickMillis) else { throw ValidationError("--tick-ms must be in 1...10000") }
    }

    func makeConfiguration() throws -> NodeConfiguration {
        let listenAddress: PeerAddress
        let httpAddress: PeerAddress
        do { listenAddress = try PeerAddress(parsing: listen) } catch {
            throw ValidationError("--listen \(listen): \(error)")
        }
        do { httpAddress = try PeerAddress(parsing: http) } catch { throw ValidationError("--http \(http): \(error)") }
        var peers: [NodeID: PeerAddress] = [:]
        for text in peer {
            let parts = text.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, let peerID = UInt64(parts[0]), peerID > 0 else {
                throw ValidationError("--peer \(text): expected <id>=<host:port> with a positive id")
            }
            guard peerID != id else { throw ValidationError("--peer \(text): that is this member's own id") }
            guard peers[peerID] == nil else { throw ValidationError("--peer \(text): member \(peerID) is given twice") }
            do { peers[peerID] = try PeerAddress(parsing: parts[1]) } catch {
                throw ValidationError("--peer \(text): \(error)")
            }
        }
        var heap: UInt64?
        if let heapSize {
            guard let bytes = Self.parseSize(heapSize), bytes > 0 else {
                throw ValidationError("--heap-size \(heapSize): expected bytes, or a number with K, M or G")
            }
            guard bytes % 4096 == 0 else { throw ValidationError("--heap-size \(heapSize): must be a multiple of 4096") }
            heap = bytes
        }
        var secret: [UInt8]?
        if let secretFile {
            do { secret = try PeerTransport.readSecret(fromFile: secretFile) } catch {
                throw ValidationError("--secret-file \(secretFile): \(error)")
            }
        }
        var configuration = NodeConfiguration(
            id: id, dataDirectory: data, listen: listenAddress, httpHost: httpAddress.host, httpPort: httpAddress.port,
            peers: peers, join: join, heapSize: heap, secret: secret, logLevel: logLevel)
        configuration.snapshotEveryEntries = snapshotEvery
        configuration.tickInterval = .milliseconds(tickMillis)
        return configuration
    }

    /// "4096", "64K", "256M", "1G" (powers of 1024); nil for anything else or on overflow.
    static func parseSize(_ text: String) -> UInt64? {
        let units: [Character: UInt64] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40]
        var digits = text.uppercased()
        var multiplier: UInt64 = 1
        if digits.hasSuffix("B") && digits.count > 1 && units[digits.dropLast().last ?? " "] != nil { digits.removeLast() }
        if let last = digits.last, let unit = units[last] {
            multiplier = unit
            digits.removeLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isNumber), let value = UInt64(digits) else { return nil }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}
