import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Hands out loopback ports for nodes to listen on.
///
/// A node binds its ports itself, after the test picked them, so a port must stay free in between.
/// Ports are taken below the kernel's ephemeral range (where outgoing connections, including the
/// proxies' and the nodes' own, get their local ports), checked by binding them once, and never
/// handed out twice by one test process.
enum FreePorts {
    private static let handedOut = Mutex<Set<UInt16>>([])

    /// The lowest ephemeral port (/proc/sys/net/ipv4/ip_local_port_range), 32768 if unreadable.
    static func ephemeralLowerBound() -> UInt16 {
        guard let text = try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8),
            let first = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).first,
            let low = UInt16(first), low > 1_024
        else { return 32_768 }
        return low
    }

    /// `count` distinct ports that were free a moment ago and are outside the ephemeral range.
    static func take(_ count: Int) throws -> [UInt16] {
        let upper = ephemeralLowerBound()
        let lower: UInt16 = upper > 12_000 ? upper - 10_000 : 2_000
        var result: [UInt16] = []
        var random = SystemRandomNumberGenerator()
        // Bounded: a machine where hundreds of random ports in this range are busy is not one
        // these tests can run on anyway.
        for _ in 0..<(count * 200) where result.count < count {
            let candidate = UInt16.random(in: lower..<upper, using: &random)
            let fresh = handedOut.withLock { $0.insert(candidate).inserted }
            guard fresh else { continue }
            guard let probe = try? Loopback.listen(port: candidate) else { continue }
            close(probe.fd)
            result.append(candidate)
        }
        guard result.count == count else {
            throw TestSupportError(
                .socket, "found only \(result.count) of \(count) free loopback ports in \(lower)..<\(upper)")
        }
        return result
    }

    /// One free port.
    static func take() throws -> UInt16 { try take(1)[0] }
}
