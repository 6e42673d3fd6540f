import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// `gallocy bench cluster`: starts a local three-member cluster of `gallocy node` processes
/// (this executable) on loopback in a temporary directory, and measures committed writes and
/// linearizable reads through the HTTP API with 1, 16 and 256 concurrent clients. Each client
/// is a thread with one keep-alive connection to the leader (writes) or to a member in turn
/// (reads). Prints figures; never fails on them.
package struct ClusterBenchmark {
    package var seconds: Double = 3
    package var clientCounts = [1, 16, 256]
    package var sizes = [8, 4096]
    package var reads = true
    /// 0: each client is a thread with a blocking connection. Otherwise the clients' connections
    /// are spread over this many threads, each waiting on all of its connections with `poll`
    /// (every client still has one request at a time on its own keep-alive connection).
    package var clientThreads = 0
    /// Connection counts to measure each case with: 0 means one connection per client (the
    /// client's requests one at a time on it); N > 0 means the clients share N connections with
    /// HTTP/1.1 pipelining (each client still has one request outstanding and times it from send
    /// to its answer; answers come back in order per connection). A count not below the number
    /// of clients is the same as 0 and is skipped.
    package var connectionCounts = [0]
    package var executable: String = "/proc/self/exe"

    package init() {}

    package struct Row: Sendable {
        package var name: String
        package var operations: Int
        package var failures: Int
        package var perSecond: Double
        package var p50: Double
        package var p99: Double
        package var max: Double
        /// CPU time per operation in microseconds (user + system): the leader, the two other
        /// members together, and the benchmark's own client threads. Less sensitive to other
        /// jobs on the machine than the rates.
        package var cpuPerOp: (leader: Double, followers: Double, clients: Double) = (0, 0, 0)
    }

    /// Runs everything and calls `report` with each row as it is measured.
    package func run(report: (Row) -> Void) throws {
        let cluster = try LocalCluster(executable: executable)
        defer { cluster.stop() }
        let leader = try cluster.waitForLeader(timeout: 30)
        let block = try cluster.alloc(member: leader, size: 64 << 20)
        for size in sizes {
            for clients in clientCounts {
                for connections in connectionCounts(for: clients) {
                    let body = [UInt8](repeating: 0x5A, count: size)
                    let slots = UInt64((64 << 20) / max(size, 8))
                    let name = "write \(size) B, \(clients) clients" + Self.suffix(connections)
                    let row = measure(
                        name: name, clients: clients, connections: connections, cluster: cluster, leader: leader
                    ) { client, k in
                        let slot = (UInt64(client) &* 1_000_003 &+ UInt64(k)) % slots
                        let address = block + slot * UInt64(max(size, 8))
                        return ("PUT", "/v1/memory/0x" + String(address, radix: 16), body, cluster.httpPorts[leader - 1])
                    }
                    report(row)
                }
            }
        }
        for clients in clientCounts where reads {
            for connections in connectionCounts(for: clients) {
                let name = "read 8 B, \(clients) clients" + Self.suffix(connections)
                let row = measure(
                    name: name, clients: clients, connections: connections, cluster: cluster, leader: leader
                ) { client, _ in
                    ("GET", "/v1/memory/0x" + String(block, radix: 16) + "?len=8", [], cluster.httpPorts[client % 3])
                }
                report(row)
            }
        }
    }

    private func connectionCounts(for clients: Int) -> [Int] {
        var seen = Set<Int>()
        return connectionCounts.map { $0 >= clients ? 0 : $0 }.filter { seen.insert($0).inserted }
    }

    private static func suffix(_ connections: Int) -> String {
        connections == 0 ? "" : " / \(connections) conns"
    }

    private func measure(
        name: String, clients: Int, connections: Int, cluster: LocalCluster, leader: Int,
        request: @escaping @Sendable (Int, Int) -> (String, String, [UInt8], UInt16)
    ) -> Row {
        let cpuBefore = cluster.cpuSeconds()
        let latencies = Mutex<[Double]>([])
        let failures = Atomic<Int>(0)
        let group = DispatchGroup()
        let start = DispatchTime.now()
        let end = start.uptimeNanoseconds + UInt64(seconds * 1e9)
        // Pipelined: the connections spread over `clientThreads` threads (2 by default).
        let pipelinedThreads = connections > 0 ? min(connections, clientThreads > 0 ? clientThreads : 2) : 0
        for t in 0..<pipelinedThreads {
            group.enter()
            let mine = Array(stride(from: t, to: connections, by: pipelinedThreads))
            let thread = Thread {
                defer { group.leave() }
                let (done, failed) = PipelinedClients.run(
                    connections: mine, of: connections, clients: clients, until: end, request: request)
                failures.add(failed, ordering: .relaxed)
                latencies.withLock { $0 += done }
            }
            thread.start()
        }
        let threads = connections > 0 ? 0 : clientThreads > 0 ? min(clientThreads, clients) : 0
        for t in 0..<threads {
            group.enter()
            let mine = Array(stride(from: t, to: clients, by: threads))
            let thread = Thread {
                defer { group.leave() }
                let (done, failed) = PolledClients.run(clients: mine, until: end, request: request)
                failures.add(failed, ordering: .relaxed)
                latencies.withLock { $0 += done }
            }
            thread.start()
        }
        for client in 0..<clients where threads == 0 && connections == 0 {
            group.enter()
            let thread = Thread {
                defer { group.leave() }
                var mine: [Double] = []
                var connection: BenchConnection?
                var k = 0
                while DispatchTime.now().uptimeNanoseconds < end {
                    let (method, path, body, port) = request(client, k)
                    k += 1
                    let t0 = DispatchTime.now().uptimeNanoseconds
                    if connection == nil || connection?.port != port { connection = BenchConnection(port: port) }
                    guard let status = connection?.send(method, path, body: body), status == 200 else {
                        failures.add(1, ordering: .relaxed)
                        connection = nil
                        continue
                    }
                    mine.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
                }
                latencies.withLock { $0 += mine }
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1e9
        let sorted = latencies.withLock { $0 }.sorted()
        let cpuAfter = cluster.cpuSeconds()
        func percentile(_ q: Double) -> Double { sorted.isEmpty ? 0 : sorted[Int(q * Double(sorted.count - 1))] }
        var row = Row(
            name: name, operations: sorted.count, failures: failures.load(ordering: .relaxed),
            perSecond: Double(sorted.count) / elapsed, p50: percentile(0.5), p99: percentile(0.99),
            max: sorted.last ?? 0)
        if !sorted.isEmpty, cpuBefore.count == 4, cpuAfter.count == 4 {
            let used = zip(cpuAfter, cpuBefore).map { ($0 - $1) * 1e6 / Double(sorted.count) }
            let others = (1...3).filter { $0 != leader }.reduce(0.0) { $0 + used[$1 - 1] }
            row.cpuPerOp = (used[leader - 1], others, used[3])
        }
        return row
    }
}

/// Three `gallocy node` processes on loopback, in a temporary directory removed at `stop()`.
/// `@unchecked Sendable`: immutable after init except the pids, which only `stop()` reads.
final class LocalCluster: @unchecked Sendable {
    let directory: String
    let httpPorts: [UInt16]
    private var pids: [pid_t] = []

    init(executable: String) throws {
        var template = Array("/tmp/gallocy-bench-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw NodeError(.storage, "cannot create a temporary directory") }
        directory = String(cString: made)
        let ports = try (0..<6).map { _ in try Self.freePort() }
        httpPorts = [ports[1], ports[3], ports[5]]
        for id in 1...3 {
            var arguments = [
                "node", "--id", "\(id)", "--data", "\(directory)/n\(id)", "--listen", "127.0.0.1:\(ports[2 * (id - 1)])",
                "--http", "127.0.0.1:\(ports[2 * (id - 1) + 1])", "--log-level", "warning",
            ]
            for peer in 1...3 where peer != id { arguments += ["--peer", "\(peer)=127.0.0.1:\(ports[2 * (peer - 1)])"] }
            pids.append(try Self.spawn(executable, arguments, log: "\(directory)/n\(id).log"))
        }
    }

    static func spawn(_ executable: String, _ arguments: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw NodeError(.network, "cannot start \(executable): errno \(rc)") }
        return pid
    }

    static func freePort() throws -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw NodeError(.network, "socket failed") }
        defer { close(fd) }
        var address = loopbackAddress(port: 0)
        var length = socklen_t(address.count)
        let bound = address.withUnsafeMutableBytes { raw -> Bool in
            let pointer = raw.baseAddress!.assumingMemoryBound(to: sockaddr.self)
            return bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
        }
        guard bound else { throw NodeError(.network, "cannot find a free port") }
        return UInt16(address[2]) << 8 | UInt16(address[3])
    }

    /// A `sockaddr_in` for 127.0.0.1:`port` as bytes (family in host order, port and address in
    /// network order). Built by hand: the struct's members resolve to NIO's C module in some
    /// builds, which member import visibility then refuses.
    static func loopbackAddress(port: UInt16) -> [UInt8] {
        let family = UInt16(AF_INET)
        return [UInt8(family & 0xFF), UInt8(family >> 8), UInt8(port >> 8), UInt8(port & 0xFF), 127, 0, 0, 1]
            + [UInt8](repeating: 0, count: 8)
    }

    func waitForLeader(timeout: Double) throws -> Int {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            for (k, port) in httpPorts.enumerated() {
                let connection = BenchConnection(port: port)
                if connection.send("GET", "/v1/status") == 200, let body = connection.lastBody,
                    let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                    object["role"] as? String == "leader"
                {
                    // Wait until the bootstrap entry is applied (an alloc works).
                    _ = k
                    return (object["id"] as? Int) ?? (k + 1)
                }
            }
            usleep(100_000)
        }
        throw NodeError(.network, "no leader within \(Int(timeout)) s; logs in \(directory)")
    }

    func alloc(member: Int, size: Int) throws -> UInt64 {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let connection = BenchConnection(port: httpPorts[member - 1])
            if connection.send("POST", "/v1/alloc", body: Array("{\"size\": \(size)}".utf8)) == 200,
                let body = connection.lastBody,
                let object = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                let text = object["addr"] as? String, let address = UInt64(text.dropFirst(2), radix: 16)
            {
                return address
            }
            usleep(100_000)
        }
        throw NodeError(.network, "allocation failed; logs in \(directory)")
    }

    /// CPU seconds (user + system) used so far by each member, in id order, then by this process.
    /// Empty if a member's `/proc` entry cannot be read.
    func cpuSeconds() -> [Double] {
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        var result: [Double] = []
        for pid in pids {
            guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = text.lastIndex(of: ")")
            else { return [] }
            // Fields after the command name: state is field 3; utime and stime are 14 and 15.
            let fields = text[text.index(after: close)...].split(separator: " ")
            guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return [] }
            result.append((user + system) / ticks)
        }
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        let own = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return result + [own]
    }

    func stop() {
        for pid in pids { kill(pid, SIGTERM) }
        for pid in pids {
            var status: Int32 = 0
            _ = waitpid(pid, &status, 0)
        }
        pids = []
        _ = try? FileManager.default.removeItem(atPath: directory)
    }
}

/// A minimal blocking HTTP/1.1 keep-alive connection to 127.0.0.1, for the benchmark only.
final class BenchConnection {
    let port: UInt16
    private var fd: Int32 = -1
    private var buffer: [UInt8] = []
    private(set) var lastBody: [UInt8]?

    init(port: UInt16) {
        self.port = port
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let address = LocalCluster.loopbackAddress(port: port)
        let connected = address.withUnsafeBytes { raw in
            connect(fd, raw.baseAddress!.assumingMemoryBound(to: sockaddr.self), socklen_t(raw.count)) == 0
        }
        if !connected {
            close(fd)
            fd = -1
        } else {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            var timeout = timeval(tv_sec: 15, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
    }

    deinit { if fd >= 0 { close(fd) } }

    /// Hands the socket over to the caller (-1 if it did not connect); this object then owns
    /// nothing.
    func detach() -> Int32 {
        defer { fd = -1 }
        return fd
    }

    /// Sends one request and reads the answer; nil on any failure (the connection is then dead).
    func send(_ method: String, _ path: String, body: [UInt8] = []) -> Int? {
        guard fd >= 0 else { return nil }
        var request = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
        request += body
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return fail() }
            sent += n
        }
        // Headers.
        var headerEnd: Int?
        while headerEnd == nil {
            if let k = find([13, 10, 13, 10]) { headerEnd = k } else if !fill() { return fail() }
        }
        guard let end = headerEnd else { return fail() }
        let head = String(decoding: buffer[..<end], as: UTF8.self)
        buffer.removeFirst(end + 4)
        let lines = head.split(separator: "\r\n")
        guard let statusLine = lines.first, statusLine.count >= 12,
            let status = Int(statusLine.dropFirst(9).prefix(3))
        else { return fail() }
        var length = 0
        for line in lines.dropFirst() where line.lowercased().hasPrefix("content-length:") {
            length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        while buffer.count < length { if !fill() { return fail() } }
        lastBody = Array(buffer[..<length])
        buffer.removeFirst(length)
        return status
    }

    private func find(_ pattern: [UInt8]) -> Int? {
        guard buffer.count >= pattern.count else { return nil }
        for k in 0...(buffer.count - pattern.count) where buffer[k] == pattern[0] {
            if Array(buffer[k..<(k + pattern.count)]) == pattern { return k }
        }
        return nil
    }

    private func fill() -> Bool {
        var chunk = [UInt8](repeating: 0, count: 65536)
        let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n > 0 else { return false }
        buffer += chunk[..<n]
        return true
    }

    private func fail() -> Int? {
        if fd >= 0 { close(fd) }
        fd = -1
        return nil
    }
}

/// Benchmark clients multiplexed on one thread: each has one nonblocking keep-alive connection
/// and one request at a time; the thread waits on all of them with `poll`.
enum PolledClients {
    private struct Client {
        var id: Int
        var fd: Int32 = -1
        var port: UInt16 = 0
        var k = 0
        var out: [UInt8] = []
        var sent = 0
        var input: [UInt8] = []
        var started: UInt64 = 0
    }

    /// Runs `clients` until `end` (uptime nanoseconds); returns the latencies in ms and the
    /// number of failed requests.
    static func run(
        clients ids: [Int], until end: UInt64, request: (Int, Int) -> (String, String, [UInt8], UInt16)
    ) -> ([Double], Int) {
        var latencies: [Double] = []
        var failures = 0
        var clients = ids.map { Client(id: $0) }
        func begin(_ c: inout Client) {
            let (method, path, body, port) = request(c.id, c.k)
            c.k += 1
            if c.fd >= 0 && c.port != port {
                close(c.fd)
                c.fd = -1
            }
            if c.fd < 0 {
                let connection = BenchConnection(port: port)
                c.fd = connection.detach()
                c.port = port
                if c.fd >= 0 { _ = fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) }
            }
            c.out = Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body
            c.sent = 0
            c.input.removeAll(keepingCapacity: true)
            c.started = DispatchTime.now().uptimeNanoseconds
        }
        func fail(_ c: inout Client) {
            failures += 1
            if c.fd >= 0 { close(c.fd) }
            c.fd = -1
        }
        /// The status once a whole answer is in `input`.
        func complete(_ input: [UInt8]) -> Int? {
            guard input.count >= 4 else { return nil }
            var end: Int?
            for k in 0...(input.count - 4) where input[k] == 13 && input[k + 1] == 10 && input[k + 2] == 13 && input[k + 3] == 10 {
                end = k
                break
            }
            guard let end else { return nil }
            let head = String(decoding: input[..<end], as: UTF8.self)
            var length = 0
            for line in head.split(separator: "\r\n").dropFirst() where line.lowercased().hasPrefix("content-length:") {
                length = Int(line.dropFirst(15).trimmingCharacters(in: .whitespaces)) ?? 0
            }
            guard input.count >= end + 4 + length, head.count >= 12 else { return nil }
            return Int(head.dropFirst(9).prefix(3)) ?? 0
        }
        for k in clients.indices { begin(&clients[k]) }
        var fds = [pollfd](repeating: pollfd(), count: clients.count)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while DispatchTime.now().uptimeNanoseconds < end {
            for (k, c) in clients.enumerated() {
                fds[k] = pollfd(fd: c.fd, events: Int16(c.sent < c.out.count ? POLLOUT : POLLIN), revents: 0)
            }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            for k in clients.indices where fds[k].revents != 0 {
                if clients[k].fd < 0 {
                    begin(&clients[k])
                    continue
                }
                if clients[k].sent < clients[k].out.count {
                    let n = clients[k].out[clients[k].sent...].withUnsafeBytes {
                        Glibc.send(clients[k].fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                    }
                    if n > 0 { clients[k].sent += n } else if errno != EAGAIN { fail(&clients[k]); begin(&clients[k]) }
                    continue
                }
                let n = chunk.withUnsafeMutableBytes { recv(clients[k].fd, $0.baseAddress, $0.count, 0) }
                if n <= 0 {
                    if n < 0 && errno == EAGAIN { continue }
                    fail(&clients[k])
                    begin(&clients[k])
                    continue
                }
                clients[k].input += chunk[..<n]
                guard let status = complete(clients[k].input) else { continue }
                if status == 200 {
                    latencies.append(Double(DispatchTime.now().uptimeNanoseconds - clients[k].started) / 1e6)
                } else {
                    failures += 1
                }
                begin(&clients[k])
            }
        }
        for c in clients where c.fd >= 0 { close(c.fd) }
        return (latencies, failures)
    }
}

/// Benchmark clients sharing connections with HTTP/1.1 pipelining, all on one thread: client `c`
/// uses connection `c % total`; each client has one request outstanding at a time, queued on its
/// connection behind the others' (answers come back in request order), and times it from the
/// moment it is queued for sending to the moment its answer is parsed.
enum PipelinedClients {
    private struct Connection {
        var index: Int
        var clients: [Int]
        var fd: Int32 = -1
        var port: UInt16 = 0
        var out: [UInt8] = []
        var sent = 0
        var input: [UInt8] = []
        /// The clients whose requests are outstanding, in request order, with their start times.
        var waiting: [(client: Int, started: UInt64)] = []
        var next = 0
    }

    /// Runs connections `indices` (of `total`) with their share of `clients` until `end` (uptime
    /// nanoseconds); returns the latencies in ms and the number of failed requests.
    static func run(
        connections indices: [Int], of total: Int, clients: Int, until end: UInt64,
        request: (Int, Int) -> (String, String, [UInt8], UInt16)
    ) -> ([Double], Int) {
        var latencies: [Double] = []
        latencies.reserveCapacity(1 << 16)
        var failures = 0
        var counters = [Int](repeating: 0, count: clients)
        var connections = indices.map { index in
            Connection(index: index, clients: Array(stride(from: index, to: clients, by: total)))
        }
        func enqueue(_ c: inout Connection, client: Int) {
            let (method, path, body, _) = request(client, counters[client])
            counters[client] += 1
            c.out += Array("\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: \(body.count)\r\n\r\n".utf8)
            c.out += body
            c.waiting.append((client, DispatchTime.now().uptimeNanoseconds))
        }
        func open(_ c: inout Connection) {
            if c.fd >= 0 { close(c.fd) }
            failures += c.waiting.count
            c.waiting.removeAll()
            c.out.removeAll()
            c.sent = 0
            c.input.removeAll()
            c.next = 0
            c.port = request(c.index, 0).3
            c.fd = BenchConnection(port: c.port).detach()
            if c.fd >= 0 { _ = fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK) }
            for client in c.clients { enqueue(&c, client: client) }
        }
        func flush(_ c: inout Connection) -> Bool {
            while c.sent < c.out.count {
                let n = c.out[c.sent...].withUnsafeBytes {
                    Glibc.send(c.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL))
                }
                if n > 0 {
                    c.sent += n
                } else {
                    return n < 0 && errno == EAGAIN
                }
            }
            c.out.removeAll(keepingCapacity: true)
            c.sent = 0
            return true
        }
        for k in connections.indices {
            open(&connections[k])
            if !flush(&connections[k]) { open(&connections[k]) }
        }
        var fds = [pollfd](repeating: pollfd(), count: connections.count)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while DispatchTime.now().uptimeNanoseconds < end {
            for (k, c) in connections.enumerated() {
                let events = c.sent < c.out.count ? POLLIN | POLLOUT : POLLIN
                fds[k] = pollfd(fd: c.fd, events: Int16(events), revents: 0)
            }
            guard poll(&fds, nfds_t(fds.count), 100) > 0 else { continue }
            for k in connections.indices where fds[k].revents != 0 {
                if connections[k].fd < 0 {
                    open(&connections[k])
                    continue
                }
                if fds[k].revents & Int16(POLLIN | POLLERR | POLLHUP) != 0 {
                    let n = chunk.withUnsafeMutableBytes { recv(connections[k].fd, $0.baseAddress, $0.count, 0) }
                    if n <= 0 {
                        if n < 0 && errno == EAGAIN { continue }
                        open(&connections[k])
                        continue
                    }
                    connections[k].input += chunk[..<n]
                    var consumed = 0
                    while let (status, length) = parse(connections[k].input, from: consumed) {
                        consumed += length
                        let now = DispatchTime.now().uptimeNanoseconds
                        let (client, started) = connections[k].waiting[connections[k].next]
                        connections[k].next += 1
                        if status == 200 {
                            latencies.append(Double(now - started) / 1e6)
                        } else {
                            failures += 1
                        }
                        if now < end { enqueue(&connections[k], client: client) }
                    }
                    if consumed > 0 {
                        connections[k].input.removeFirst(consumed)
                        if connections[k].next > 64 {
                            connections[k].waiting.removeFirst(connections[k].next)
                            connections[k].next = 0
                        }
                    }
                }
                if !flush(&connections[k]) { open(&connections[k]) }
            }
        }
        for c in connections where c.fd >= 0 { close(c.fd) }
        return (latencies, failures)
    }

    /// The status and total length of the complete answer at `start` of `input`, if it is all
    /// there.
    private static func parse(_ input: [UInt8], from start: Int) -> (Int, Int)? {
        input.withUnsafeBufferPointer { b -> (Int, Int)? in
            let count = b.count
            guard count - start >= 16 else { return nil }
            var k = start
            var length = 0
            var headEnd = -1
            // Walk the header lines.
            while k + 3 < count {
                if b[k] == 13 && b[k + 1] == 10 {
                    if b[k + 2] == 13 && b[k + 3] == 10 {
                        headEnd = k + 4
                        break
                    }
                    // A line starts at k + 2: content-length?
                    let line = k + 2
                    if line + 15 < count, b[line] | 0x20 == 0x63, b[line + 8] | 0x20 == 0x6C, b[line + 14] == 0x3A {
                        var j = line + 15
                        while j < count && b[j] == 0x20 { j += 1 }
                        var value = 0
                        while j < count, b[j] >= 0x30, b[j] <= 0x39 {
                            value = value * 10 + Int(b[j] - 0x30)
                            j += 1
                        }
                        length = value
                    }
                }
                k += 1
            }
            guard headEnd > 0, count >= headEnd + length else { return nil }
            let status = Int(b[start + 9] - 0x30) * 100 + Int(b[start + 10] - 0x30) * 10 + Int(b[start + 11] - 0x30)
            return (status, headEnd + length - start)
        }
    }
}
