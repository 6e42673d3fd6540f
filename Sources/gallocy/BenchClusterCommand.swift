import ArgumentParser
import Gallocy

/// `gallocy bench cluster`: a local three-member cluster, committed writes and linearizable reads
/// per second with latency percentiles (docs/engine.md, "Performance").
struct BenchClusterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cluster", abstract: "Start a local 3-member cluster and measure writes and reads through the HTTP API.")

    @Option(help: "Seconds per case.") var seconds: Double = 3
    @Option(help: "Concurrent client counts, comma-separated.") var clients: String = "1,16,256"
    @Option(help: "Write sizes in bytes, comma-separated (none: \"\").") var sizes: String = "8,4096"
    @Flag(help: "Skip the read cases.") var noReads = false
    @Option(help: "Threads that multiplex the clients' connections with poll (0: one blocking thread per client).")
    var clientThreads = 0
    @Option(
        help:
            "Connection counts, comma-separated: 0 is one connection per client; N shares N connections among the clients with HTTP/1.1 pipelining (one request outstanding per client)."
    )
    var conns: String = "0,16"
    @Option(help: "Run the members from this executable instead of this one (to compare builds).")
    var nodeExecutable: String?

    func run() throws {
        var bench = ClusterBenchmark()
        bench.seconds = seconds
        bench.clientCounts = clients.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        bench.sizes = sizes.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        bench.reads = !noReads
        bench.clientThreads = max(0, clientThreads)
        if let nodeExecutable { bench.executable = nodeExecutable }
        bench.connectionCounts = conns.split(separator: ",").compactMap { Int($0) }.filter { $0 >= 0 }
        guard !bench.connectionCounts.isEmpty else { throw ValidationError("--conns: expected numbers like 0,16") }
        guard !bench.clientCounts.isEmpty else { throw ValidationError("--clients: expected numbers like 1,16,256") }
        print(
            "case                                        ops/s      p50 ms    p99 ms    max ms   cpu µs/op: leader others clients   (ops, failures)")
        try bench.run { row in
            let name = row.name + String(repeating: " ", count: max(0, 40 - row.name.count))
            print(
                "\(name) \(fixed(row.perSecond, 9)) \(fixed(row.p50, 9)) \(fixed(row.p99, 9)) \(fixed(row.max, 9))   \(fixed(row.cpuPerOp.leader, 17)) \(fixed(row.cpuPerOp.followers, 6)) \(fixed(row.cpuPerOp.clients, 7))   (\(row.operations), \(row.failures))")
        }
    }

    private func fixed(_ value: Double, _ width: Int) -> String {
        let text = String(Int((value * 10).rounded()) / 10) + "." + String(Int((value * 10).rounded()) % 10)
        return String(repeating: " ", count: max(0, width - text.count)) + text
    }
}
