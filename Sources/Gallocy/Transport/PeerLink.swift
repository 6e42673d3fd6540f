import GallocyRaft
import Logging
import NIOCore
import NIOPosix
import Synchronization

/// The outbound side of one peer: its address, its bounded send queue, and the one connection
/// this member dials to it, redialed with back-off whenever it is lost.
///
/// Every connection attempt gets a new `generation`; callbacks from an older attempt (a late
/// connect, a close of a connection replaced by an address change) find a different
/// generation and do nothing, which keeps the state machine free of races without running
/// everything on one thread.
final class PeerLink: Sendable {
    let id: NodeID
    let eventLoop: any EventLoop
    /// Strong on purpose: the transport holds its links only until `removePeer` or `shutdown`,
    /// which close the link and break the cycle.
    let transport: PeerTransport
    private let state: Mutex<State>

    private enum Phase {
        /// No connection and no attempt scheduled (only between an address change and the
        /// redial).
        case idle
        /// Dialing; the future is stored once the bootstrap has returned it.
        case connecting(EventLoopFuture<any Channel>?)
        case handshaking(any Channel)
        case ready(any Channel)
        /// Waiting to redial; the task is stored once scheduled.
        case waiting(Scheduled<Void>?)
        case closed
    }

    private struct State {
        var address: PeerAddress
        var phase: Phase = .idle
        var generation: UInt64 = 0
        var queue: PeerSendQueue
        /// Consecutive failed attempts since the last completed handshake.
        var failures = 0
        var attempts: UInt64 = 0
        var flushScheduled = false
        var counters = PeerCounters()
        /// The last problem logged at warning level; the same problem again is logged at debug.
        var lastProblem: String?
        var loggedDropping = false
    }

    init(id: NodeID, address: PeerAddress, transport: PeerTransport, eventLoop: any EventLoop) {
        self.id = id
        self.eventLoop = eventLoop
        self.transport = transport
        let config = transport.configuration
        self.state = Mutex(
            State(
                address: address,
                queue: PeerSendQueue(maxCount: config.maxQueuedMessages, maxBytes: config.maxQueuedBytes)))
    }

    var address: PeerAddress { state.withLock { $0.address } }

    /// True while a connection has completed its handshake.
    var isReady: Bool {
        state.withLock { s in
            if case .ready = s.phase { return true }
            return false
        }
    }

    /// Counters, with the current queue levels.
    var counters: PeerCounters {
        state.withLock { s in
            var c = s.counters
            c.queuedMessages = s.queue.count
            c.queuedBytes = s.queue.bytes
            return c
        }
    }

    private var logger: Logger { transport.logger }

    /// Linux `TCP_USER_TIMEOUT` (netinet/tcp.h), in milliseconds; NIO has no name for it.
    private static let tcpUserTimeout = ChannelOptions.Types.SocketOption(
        level: .tcp, name: NIOBSDSocket.Option(rawValue: 18))

    // MARK: - Sending

    /// Queues one frame and makes sure a drain is scheduled if the connection is ready.
    func enqueue(_ frame: ByteBuffer) {
        let (schedule, firstDrop) = state.withLock { s -> (Bool, Bool) in
            if case .closed = s.phase { return (false, false) }
            let dropped = s.queue.append(frame)
            s.counters.drops += UInt64(dropped)
            let firstDrop = dropped > 0 && !s.loggedDropping
            if firstDrop { s.loggedDropping = true }
            guard case .ready = s.phase, !s.flushScheduled else { return (false, firstDrop) }
            s.flushScheduled = true
            return (true, firstDrop)
        }
        if firstDrop {
            logger.warning(
                "send queue for peer full; dropping its oldest messages",
                metadata: ["peer": "\(id)", "limit": "\(transport.configuration.maxQueuedMessages) messages"])
        }
        // One drain per event-loop tick however many messages arrive in it: one flush, one
        // syscall for the lot.
        if schedule { eventLoop.execute { self.drain() } }
    }

    func countDrop() { state.withLock { $0.counters.drops += 1 } }

    /// Writes queued frames while the channel is writable, then flushes once. Runs on the
    /// channel's event loop; called after `enqueue`, on handshake completion and when the
    /// channel becomes writable again.
    func drain() {
        let channel: (any Channel)? = state.withLock { s in
            s.flushScheduled = false
            if case .ready(let channel) = s.phase { return channel }
            return nil
        }
        guard let channel else { return }
        var wrote = false
        while channel.isWritable {
            // Take a batch per lock acquisition; writability is rechecked between batches.
            let batch: [ByteBuffer] = state.withLock { s in
                var batch: [ByteBuffer] = []
                var bytes = 0
                while batch.count < 64 && bytes < 1 << 20, let frame = s.queue.popFirst() {
                    bytes += frame.readableBytes
                    batch.append(frame)
                }
                s.counters.messagesSent += UInt64(batch.count)
                s.counters.bytesSent += UInt64(bytes)
                return batch
            }
            if batch.isEmpty { break }
            for frame in batch { channel.write(frame, promise: nil) }
            wrote = true
        }
        if wrote { channel.flush() }
    }

    // MARK: - Connecting

    /// Dials the current address (a new generation).
    func connect() {
        let attempt: (UInt64, PeerAddress)? = state.withLock { s in
            switch s.phase {
            case .closed, .connecting, .handshaking, .ready: return nil
            case .idle, .waiting: break
            }
            s.generation += 1
            if s.attempts > 0 { s.counters.reconnects += 1 }
            s.attempts += 1
            s.phase = .connecting(nil)
            return (s.generation, s.address)
        }
        guard let (generation, address) = attempt else { return }
        let config = transport.configuration
        var bootstrap = ClientBootstrap(group: eventLoop)
            .connectTimeout(config.connectTimeout)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.writeBufferWaterMark, value: config.writeBufferWaterMark)
        if let timeout = config.unacknowledgedDataTimeout {
            bootstrap = bootstrap.channelOption(
                Self.tcpUserTimeout, value: SocketOptionValue(clamping: max(1, timeout.nanoseconds / 1_000_000)))
        }
        let future =
            bootstrap
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(
                        DialerHandler(link: self, generation: generation))
                }
            }
            .connect(host: address.host, port: address.port)
        state.withLock { s in
            if s.generation == generation, case .connecting(nil) = s.phase { s.phase = .connecting(future) }
        }
        future.whenComplete { result in
            switch result {
            case .success(let channel): self.connected(channel, generation: generation)
            case .failure(let error): self.attemptFailed(generation: generation, reason: "\(error)")
            }
        }
    }

    private func connected(_ channel: any Channel, generation: UInt64) {
        let keep = state.withLock { s in
            guard s.generation == generation else { return false }
            if case .connecting = s.phase { s.phase = .handshaking(channel) }
            if case .closed = s.phase { return false }
            return true
        }
        if !keep { channel.close(promise: nil) }
    }

    /// The handshake on `channel` completed: start sending.
    func handshakeCompleted(_ channel: any Channel, generation: UInt64) {
        let outcome: (keep: Bool, recovered: String?) = state.withLock { s in
            guard s.generation == generation else { return (false, nil) }
            switch s.phase {
            case .closed, .ready, .idle, .waiting: return (false, nil)
            case .connecting, .handshaking: break
            }
            s.phase = .ready(channel)
            s.failures = 0
            s.counters.connectionsEstablished += 1
            s.loggedDropping = false
            let recovered = s.lastProblem
            s.lastProblem = nil
            s.flushScheduled = true
            return (true, recovered)
        }
        guard outcome.keep else {
            channel.close(promise: nil)
            return
        }
        let address = self.address
        if let problem = outcome.recovered {
            logger.info(
                "connected to peer", metadata: ["peer": "\(id)", "address": "\(address)", "after": "\(problem)"])
        } else {
            logger.debug("connected to peer", metadata: ["peer": "\(id)", "address": "\(address)"])
        }
        drain()
    }

    /// The connection of `generation` closed (after connecting, with or without a handshake).
    func connectionClosed(generation: UInt64, reason: String) {
        attemptFailed(generation: generation, reason: reason)
    }

    /// An attempt failed or a connection was lost: schedule the next attempt with back-off.
    private func attemptFailed(generation: UInt64, reason: String) {
        // Drawn before taking this link's lock, so that no path holds both locks at once.
        let jitter = transport.nextJitter()
        let plan: (delay: TimeAmount, address: PeerAddress, warn: Bool)? = state.withLock { s in
            guard s.generation == generation else { return nil }
            switch s.phase {
            case .closed, .idle, .waiting: return nil
            case .connecting, .handshaking, .ready: break
            }
            let wasReady: Bool
            if case .ready = s.phase { wasReady = true } else { wasReady = false }
            // A lost healthy connection is redialed at the shortest delay.
            let failures = wasReady ? 0 : s.failures
            if !wasReady { s.failures += 1 }
            s.phase = .waiting(nil)
            s.flushScheduled = false
            let warn = s.lastProblem != reason
            s.lastProblem = reason
            return (transport.backoff.delay(afterFailures: failures, random: jitter), s.address, warn)
        }
        guard let plan else { return }
        let metadata: Logger.Metadata = [
            "peer": "\(id)", "address": "\(plan.address)", "reason": "\(reason)",
            "retry_in_ms": "\(plan.delay.nanoseconds / 1_000_000)",
        ]
        if plan.warn {
            logger.warning("cannot reach peer; retrying with back-off", metadata: metadata)
        } else {
            logger.debug("cannot reach peer; retrying with back-off", metadata: metadata)
        }
        let task = eventLoop.scheduleTask(in: plan.delay) { self.retry(generation: generation) }
        let stored = state.withLock { s in
            guard s.generation == generation, case .waiting(nil) = s.phase else { return false }
            s.phase = .waiting(task)
            return true
        }
        if !stored { task.cancel() }
    }

    private func retry(generation: UInt64) {
        let due = state.withLock { s in
            guard s.generation == generation, case .waiting = s.phase else { return false }
            return true
        }
        if due { connect() }
    }

    /// Points the link at a new address: the old connection is closed and the new address is
    /// dialed at once.
    func updateAddress(_ address: PeerAddress) {
        let old: Phase? = state.withLock { s in
            guard s.address != address else { return nil }
            if case .closed = s.phase { return nil }
            s.address = address
            s.failures = 0
            s.lastProblem = nil
            s.generation += 1  // orphan every callback of the old connection
            let old = s.phase
            s.phase = .idle
            s.flushScheduled = false
            return old
        }
        guard let old else { return }
        _ = abandon(old)
        connect()
    }

    /// Closes the connection and cancels redialing for good; the queue is discarded (counted
    /// as drops). The future completes when the connection, if any, has closed.
    func close() -> EventLoopFuture<Void> {
        let old: Phase = state.withLock { s in
            let old = s.phase
            s.phase = .closed
            s.generation += 1
            s.counters.drops += UInt64(s.queue.removeAll())
            return old
        }
        return abandon(old)
    }

    /// Closes whatever connection `phase` holds, or cancels its scheduled redial; the future
    /// completes once that connection has closed.
    private func abandon(_ phase: Phase) -> EventLoopFuture<Void> {
        switch phase {
        case .idle, .closed, .connecting(nil):
            return eventLoop.makeSucceededVoidFuture()
        case .waiting(let task):
            task?.cancel()
            return eventLoop.makeSucceededVoidFuture()
        case .connecting(let future?):
            // A connect that succeeds later is closed by `connected` (its generation is stale);
            // waiting here lets shutdown return with no socket left open.
            return future.flatMap { channel in
                channel.close(promise: nil)
                return channel.closeFuture
            }.recover { _ in () }
        case .handshaking(let channel), .ready(let channel):
            channel.close(promise: nil)
            return channel.closeFuture
        }
    }
}
