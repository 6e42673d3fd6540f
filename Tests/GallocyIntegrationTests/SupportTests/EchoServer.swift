import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A loopback TCP server that sends back what it receives, for tests of the proxy.
final class EchoServer: Sendable {
    let port: UInt16
    private let listener: Int32
    private let stopped = Atomic<Bool>(false)
    private let threads = Atomic<Int>(0)
    private let connections = Atomic<Int>(0)

    /// Connections accepted so far.
    var acceptedConnections: Int { connections.load(ordering: .relaxed) }

    init(port: UInt16 = 0) throws {
        (listener, self.port) = try Loopback.listen(port: port)
        threads.add(1, ordering: .relaxed)
        Thread.detachNewThread { [self] in
            acceptLoop()
            threads.subtract(1, ordering: .relaxed)
        }
    }

    private func acceptLoop() {
        defer { close(listener) }
        while !stopped.load(ordering: .relaxed) {
            guard let fd = try? Loopback.accept(listener, timeout: .milliseconds(20)) else { continue }
            connections.add(1, ordering: .relaxed)
            threads.add(1, ordering: .relaxed)
            Thread.detachNewThread { [self] in
                echo(fd)
                threads.subtract(1, ordering: .relaxed)
            }
        }
    }

    private func echo(_ fd: Int32) {
        defer { close(fd) }
        while !stopped.load(ordering: .relaxed) {
            switch Loopback.receive(fd, timeout: .milliseconds(20)) {
            case .timedOut: continue
            case .bytes(let chunk):
                guard (try? Loopback.sendAll(fd, chunk, timeout: .seconds(5))) != nil else { return }
            case .endOfStream, .failed: return
            }
        }
    }

    /// Stops accepting and closes every connection; waits (bounded) for the threads.
    func stop() {
        stopped.store(true, ordering: .relaxed)
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while threads.load(ordering: .relaxed) > 0, ContinuousClock.now < deadline { usleep(2_000) }
    }

    deinit { stopped.store(true, ordering: .relaxed) }
}

/// A client connection for the proxy tests, closed on deinit.
final class TestConnection {
    let fd: Int32

    init(port: UInt16) throws { fd = try Loopback.connect(port: port, timeout: .seconds(2)) }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) throws { try Loopback.sendAll(fd, bytes, timeout: .seconds(5)) }

    /// Reads until `count` bytes arrived; stops early at the end of the stream, an error or the
    /// deadline, and returns what came with how it ended.
    func receive(count: Int, timeout: Duration = .seconds(5)) -> (bytes: [UInt8], end: Loopback.Received?) {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var bytes: [UInt8] = []
        while bytes.count < count {
            let remaining = max(ContinuousClock.now.duration(to: deadline), .zero)
            switch Loopback.receive(fd, timeout: remaining) {
            case .bytes(let chunk): bytes += chunk
            case let other: return (bytes, other)
            }
        }
        return (bytes, nil)
    }

    /// True if the connection is dead: a send or a receive reports the end or a reset.
    func isDead(within timeout: Duration = .seconds(2)) -> Bool {
        _ = try? send([0x21])
        let (_, end) = receive(count: 1, timeout: timeout)
        switch end {
        case .endOfStream, .failed: return true
        default: return false
        }
    }
}
