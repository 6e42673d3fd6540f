import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The proxy against a real echo server over loopback.
@Suite struct TestProxyTests {
    static func payload(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &random) }
    }

    @Test func bytesPassBothWays() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        defer { proxy.shutdown() }
        let connection = try TestConnection(port: proxy.port)
        try connection.send(Array("hello".utf8))
        #expect(connection.receive(count: 5).bytes == Array("hello".utf8))
        // A payload larger than any socket buffer, so both pumps must keep up with each other.
        let large = Self.payload(3 * 1024 * 1024)
        try connection.send(large)
        let answer = connection.receive(count: large.count, timeout: .seconds(20))
        #expect(answer.bytes.count == large.count)
        #expect(answer.bytes == large)
        #expect(proxy.connectionCount == 1)
        #expect(proxy.address == "127.0.0.1:\(proxy.port)")
    }

    @Test func cutResetsOpenConnectionsAndRefusesNewOnes() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        defer { proxy.shutdown() }
        let open = try TestConnection(port: proxy.port)
        try open.send([1, 2, 3])
        #expect(open.receive(count: 3).bytes == [1, 2, 3])

        proxy.cut()
        #expect(proxy.isCut)
        #expect(open.isDead())
        let connectionsBefore = echo.acceptedConnections
        // The proxy accepts and resets at once; the reset may even beat the end of connect.
        if let refused = try? TestConnection(port: proxy.port) { #expect(refused.isDead()) }
        // Nothing reached the server while cut.
        #expect(echo.acceptedConnections == connectionsBefore)
        try eventuallySync("links closed") { proxy.connectionCount == 0 }
    }

    @Test func healRestoresTraffic() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        defer { proxy.shutdown() }
        proxy.cut()
        proxy.heal()
        #expect(!proxy.isCut)
        let connection = try TestConnection(port: proxy.port)
        try connection.send([9, 8, 7])
        #expect(connection.receive(count: 3).bytes == [9, 8, 7])
    }

    @Test func blackholeHoldsConnectionsSilentlyUntilHealed() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        defer { proxy.shutdown() }
        proxy.cut(.blackhole)
        let held = try TestConnection(port: proxy.port)
        try held.send([1])
        let (bytes, end) = held.receive(count: 1, timeout: .milliseconds(300))
        #expect(bytes.isEmpty)
        #expect(end == .timedOut)
        proxy.heal()
        // Healing resets held connections so their clients reconnect, and new ones pass.
        #expect(held.isDead())
        let fresh = try TestConnection(port: proxy.port)
        try fresh.send([5])
        #expect(fresh.receive(count: 1).bytes == [5])
    }

    @Test func delayAddsLatencyPerChunk() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        defer { proxy.shutdown() }
        // Large against scheduling noise on a loaded machine, so both bounds below are safe.
        proxy.setDelay(.milliseconds(600))
        let connection = try TestConnection(port: proxy.port)
        let clock = ContinuousClock()
        let start = clock.now
        try connection.send([42])
        #expect(connection.receive(count: 1).bytes == [42])
        // One chunk each way: at least two delays.
        #expect(clock.now - start >= .milliseconds(1_200))
        proxy.setDelay(.zero)
        let fast = clock.now
        try connection.send([43])
        #expect(connection.receive(count: 1).bytes == [43])
        #expect(clock.now - fast < .milliseconds(1_200))
    }

    @Test func resetProbabilityOneResetsOnTheFirstChunk() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        defer { proxy.shutdown() }
        proxy.setResetProbability(1)
        let connection = try TestConnection(port: proxy.port)
        try connection.send([1])
        let (bytes, end) = connection.receive(count: 1, timeout: .seconds(2))
        #expect(bytes.isEmpty)
        #expect(end == .endOfStream || end == .failed(ECONNRESET))
    }

    @Test func deadTargetLooksLikeARefusedConnection() throws {
        let port = try FreePorts.take()
        let proxy = try TestProxy(targetPort: port)
        defer { proxy.shutdown() }
        // The reset may come before connect returns, or after.
        if let connection = try? TestConnection(port: proxy.port) { #expect(connection.isDead()) }
    }

    @Test func shutdownEndsEveryThreadAndConnection() throws {
        let echo = try EchoServer()
        defer { echo.stop() }
        let proxy = try TestProxy(targetPort: echo.port)
        let connections = try (0..<4).map { _ in try TestConnection(port: proxy.port) }
        for connection in connections {
            try connection.send([7])
            #expect(connection.receive(count: 1).bytes == [7])
        }
        #expect(proxy.connectionCount == 4)
        #expect(proxy.shutdown(timeout: .seconds(5)))
        for connection in connections { #expect(connection.isDead()) }
        #expect(proxy.connectionCount == 0)
        // The listening port is closed: connecting now fails.
        #expect(throws: TestSupportError.self) { _ = try Loopback.connect(port: proxy.port, timeout: .seconds(1)) }
    }
}

/// Polls a synchronous condition for at most `timeout`.
func eventuallySync(_ what: String, timeout: Duration = .seconds(5), _ condition: () -> Bool) throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TestSupportError(.timeout, "\(what): not within \(timeout)") }
        usleep(5_000)
    }
}
