import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP proxy on loopback between a node and one of its peers, so that a test can cut, delay or
/// disturb one link.
///
/// It listens on 127.0.0.1 on a port of its own and forwards each accepted connection, both
/// directions, to the target. Threads and blocking POSIX sockets keep it independent of the
/// engine's event loops: a proxy that stalls on purpose never stalls the code under test.
///
/// Threads of the proxy wait in `poll` with a short timeout, so every loop notices `shutdown` or
/// `cut` within about `TestProxy.pollInterval`; `shutdown` (also called on deinit) stops accepting,
/// resets every connection and waits, bounded, for the threads to end.
final class TestProxy: Sendable {
    /// What a cut link does with new connections.
    enum CutMode: Sendable, Equatable {
        /// Accepts and resets them at once: as if the peer's port were closed.
        case refuse
        /// Accepts them and never forwards a byte: as if packets were dropped. They are reset on heal.
        case blackhole
    }

    static let pollInterval: Duration = .milliseconds(50)

    let port: UInt16
    let targetHost: String
    let targetPort: UInt16
    private let core: Core

    /// "127.0.0.1:port", the address to give a node in place of its peer's.
    var address: String { "\(Loopback.host):\(port)" }

    /// Starts a proxy to `targetHost:targetPort` on a free loopback port.
    init(targetHost: String = Loopback.host, targetPort: UInt16, listenPort: UInt16 = 0) throws {
        let (listener, port) = try Loopback.listen(port: listenPort)
        self.port = port
        self.targetHost = targetHost
        self.targetPort = targetPort
        self.core = Core(listener: listener, targetHost: targetHost, targetPort: targetPort)
        core.startAccepting()
    }

    deinit { core.shutdown() }

    /// Resets every open connection and treats new ones by `mode` until `heal`.
    func cut(_ mode: CutMode = .refuse) { core.cut(mode) }

    /// Forwards new connections again; blackholed ones are reset so their clients reconnect.
    func heal() { core.heal() }

    var isCut: Bool { core.settings.withLock { $0.cut != nil } }

    /// Latency added before forwarding each chunk read from either side.
    func setDelay(_ delay: Duration) { core.settings.withLock { $0.delay = delay } }

    /// The probability, per forwarded chunk, that the proxy resets the whole connection instead.
    /// Dropping bytes inside a TCP stream would be corruption, not loss; a reset is what a lossy
    /// link costs a TCP user.
    func setResetProbability(_ probability: Double) {
        core.settings.withLock { $0.resetProbability = min(max(probability, 0), 1) }
    }

    /// Connections being forwarded now.
    var connectionCount: Int { core.settings.withLock { $0.links.count } }

    /// Connections accepted since the start, forwarded or not.
    var acceptedCount: Int { core.settings.withLock { $0.accepted } }

    /// Stops the proxy: no more accepting, every connection reset. Waits up to `timeout` for its
    /// threads; returns false if some did not end in time.
    @discardableResult
    func shutdown(timeout: Duration = .seconds(5)) -> Bool { core.shutdown(timeout: timeout) }
}

extension TestProxy {
    /// One forwarded connection: the accepted socket and the one to the target. The two pump
    /// threads share it; the second to finish closes both sockets, so no descriptor is closed while
    /// a thread may still use it.
    fileprivate final class Link: Sendable {
        let client: Int32
        let upstream: Int32
        private let finished = Atomic<Int>(0)
        private let resetRequested = Atomic<Bool>(false)

        init(client: Int32, upstream: Int32) {
            self.client = client
            self.upstream = upstream
        }

        /// Wakes both pumps (shutdown of both sockets); with `reset` the close sends RST.
        func stop(reset: Bool) {
            if reset {
                resetRequested.store(true, ordering: .relaxed)
                var option = linger(l_onoff: 1, l_linger: 0)
                setsockopt(client, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
                setsockopt(upstream, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
            }
            Glibc.shutdown(client, Int32(SHUT_RDWR))
            Glibc.shutdown(upstream, Int32(SHUT_RDWR))
        }

        /// Called by each pump when it ends; returns true for the last one, which closed the sockets.
        func pumpFinished() -> Bool {
            guard finished.add(1, ordering: .acquiringAndReleasing).newValue == 2 else { return false }
            close(client)
            close(upstream)
            return true
        }
    }

    fileprivate struct Settings: Sendable {
        var cut: CutMode?
        var delay: Duration = .zero
        var resetProbability: Double = 0
        var links: [Int: Link] = [:]
        var nextLink = 0
        var held: [Int32] = []
        var accepted = 0
        var stopped = false
        var threads = 0
    }

    fileprivate final class Core: Sendable {
        let listener: Int32
        let targetHost: String
        let targetPort: UInt16
        let settings = Mutex(Settings())

        init(listener: Int32, targetHost: String, targetPort: UInt16) {
            self.listener = listener
            self.targetHost = targetHost
            self.targetPort = targetPort
        }

        /// Starts a thread counted in `threads`, so that shutdown can wait for it.
        private func spawn(_ body: @escaping @Sendable () -> Void) -> Bool {
            let allowed = settings.withLock { settings -> Bool in
                if settings.stopped { return false }
                settings.threads += 1
                return true
            }
            guard allowed else { return false }
            Thread.detachNewThread { [self] in
                body()
                settings.withLock { $0.threads -= 1 }
            }
            return true
        }

        func startAccepting() {
            let started = spawn { [self] in acceptLoop() }
            if !started { close(listener) }
        }

        private func acceptLoop() {
            defer { close(listener) }
            while !settings.withLock({ $0.stopped }) {
                let accepted: Int32?
                do {
                    accepted = try Loopback.accept(listener, timeout: TestProxy.pollInterval)
                } catch {
                    // A failing listener cannot recover; the proxy then refuses like a dead peer.
                    return
                }
                guard let fd = accepted else { continue }
                let mode = settings.withLock { settings -> CutMode?? in
                    settings.accepted += 1
                    if settings.stopped { return .some(.refuse) }
                    if settings.cut == .blackhole { settings.held.append(fd) }
                    return .some(settings.cut)
                }
                switch mode {
                case .some(.some(.refuse)), .none:
                    Loopback.closeWithReset(fd)
                case .some(.some(.blackhole)):
                    continue
                case .some(.none):
                    if !spawn({ [self] in connectAndForward(fd) }) { Loopback.closeWithReset(fd) }
                }
            }
        }

        private func connectAndForward(_ client: Int32) {
            let upstream: Int32
            do {
                upstream = try Loopback.connect(host: targetHost, port: targetPort, timeout: .seconds(2))
            } catch {
                // The target is down: the client sees what it would see without the proxy.
                Loopback.closeWithReset(client)
                return
            }
            let link = Link(client: client, upstream: upstream)
            let id = settings.withLock { settings -> Int? in
                // A cut that happened while connecting applies to this connection too.
                guard settings.cut == nil, !settings.stopped else { return nil }
                settings.nextLink += 1
                settings.links[settings.nextLink] = link
                return settings.nextLink
            }
            guard let id else {
                Loopback.closeWithReset(client)
                Loopback.closeWithReset(upstream)
                return
            }
            let reverse = spawn { [self] in
                pump(from: upstream, to: client, link: link)
                finish(link, id: id)
            }
            if !reverse {
                // Shutting down: count the missing pump as finished so the sockets get closed.
                link.stop(reset: true)
                finish(link, id: id)
            }
            pump(from: client, to: upstream, link: link)
            finish(link, id: id)
        }

        private func finish(_ link: Link, id: Int) {
            if link.pumpFinished() {
                settings.withLock { _ = $0.links.removeValue(forKey: id) }
            }
        }

        private func pump(from source: Int32, to destination: Int32, link: Link) {
            // Bounded by the life of the connection: every pass waits at most pollInterval, and a
            // cut, a shutdown, an error or the end of the stream ends the loop.
            while true {
                let (stopped, cut) = settings.withLock { ($0.stopped, $0.cut != nil) }
                if stopped || cut {
                    link.stop(reset: true)
                    return
                }
                switch Loopback.receive(source, timeout: TestProxy.pollInterval) {
                case .timedOut:
                    continue
                case .endOfStream:
                    // Half-close: the other direction may still carry the answer.
                    Glibc.shutdown(destination, Int32(SHUT_WR))
                    return
                case .failed:
                    link.stop(reset: true)
                    return
                case .bytes(let chunk):
                    let (delay, probability) = settings.withLock { ($0.delay, $0.resetProbability) }
                    if probability > 0, Double.random(in: 0..<1) < probability {
                        link.stop(reset: true)
                        return
                    }
                    if delay > .zero { Self.sleep(delay) }
                    if settings.withLock({ $0.cut != nil || $0.stopped }) {
                        link.stop(reset: true)
                        return
                    }
                    do {
                        try Loopback.sendAll(destination, chunk, timeout: .seconds(10))
                    } catch {
                        link.stop(reset: true)
                        return
                    }
                }
            }
        }

        /// The delay is the feature here, not a wait for a condition.
        private static func sleep(_ duration: Duration) {
            let (seconds, attoseconds) = duration.components
            var request = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
            var remaining = timespec()
            while nanosleep(&request, &remaining) != 0, errno == EINTR { request = remaining }
        }

        func cut(_ mode: CutMode) {
            let links = settings.withLock { settings -> [Link] in
                settings.cut = mode
                return Array(settings.links.values)
            }
            for link in links { link.stop(reset: true) }
        }

        func heal() {
            let held = settings.withLock { settings -> [Int32] in
                settings.cut = nil
                defer { settings.held.removeAll() }
                return settings.held
            }
            for fd in held { Loopback.closeWithReset(fd) }
        }

        @discardableResult
        func shutdown(timeout: Duration = .seconds(5)) -> Bool {
            let (links, held) = settings.withLock { settings -> ([Link], [Int32]) in
                settings.stopped = true
                defer { settings.held.removeAll() }
                return (Array(settings.links.values), settings.held)
            }
            for link in links { link.stop(reset: true) }
            for fd in held { Loopback.closeWithReset(fd) }
            let deadline = ContinuousClock.now.advanced(by: timeout)
            while settings.withLock({ $0.threads }) > 0 {
                if ContinuousClock.now >= deadline { return false }
                Self.sleep(.milliseconds(5))
            }
            return true
        }
    }
}
