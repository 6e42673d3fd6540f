import NIOCore
import Synchronization

/// The open connections of an `HTTPAPIServer`, so that shutdown can ask each to finish its
/// current request and close, and then wait for them.
final class HTTPConnectionRegistry: Sendable {
    private struct Connections {
        var accepting = true
        var channels: [ObjectIdentifier: any Channel] = [:]
    }

    private let connections = Mutex(Connections())

    /// Records a new connection; false once shutdown has begun (the caller then closes it).
    func register(_ channel: any Channel) -> Bool {
        let registered = connections.withLock { state in
            guard state.accepting else { return false }
            state.channels[ObjectIdentifier(channel)] = channel
            return true
        }
        if registered {
            channel.closeFuture.whenComplete { [self] _ in
                _ = connections.withLock { $0.channels.removeValue(forKey: ObjectIdentifier(channel)) }
            }
        }
        return registered
    }

    /// Stops registering new connections and returns those open now; on every later call, none
    /// (each connection must be asked to quiesce only once).
    func close() -> [any Channel] {
        connections.withLock { state in
            guard state.accepting else { return [] }
            state.accepting = false
            return Array(state.channels.values)
        }
    }

    /// The connections open now.
    var open: [any Channel] {
        connections.withLock { Array($0.channels.values) }
    }
}
